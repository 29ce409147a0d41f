"""YOLOv8 graphs imported whole, post-processing included (issue 14, "ONNX breadth"): the DFL
(Reshape, Transpose, Softmax over 16 bins, a 1x1 conv by arange(16)), the anchor arithmetic with
constant tensors and the Concat of boxes and scores become layers (reshape, transpose, concat along
W, affine by broadcast tensors, add with weights), so a detection's class score in the final
(1, 4 + nc, 1, anchors) output is a unit that projects to the pixels by its exact gradient.

- A small torch twin with Ultralytics' decode (no ultralytics): both exporters, forward against
  torch and ONNX Runtime, projections of score and box units under all three rules against torch
  autograd (deconvnet/guided: torch's SiLU with the rule's backward, as tests/test_rules_torch.py).
- The real Ultralytics export (tests/real_yolov8.py): imported without ``outputs=``, forward against
  ONNX Runtime, decoded detections against decoding ONNX Runtime's output, and the top detection's
  score projection against the raw head's logit projection chained through the decode's exact
  Jacobian (sigmoid'; the DFL softmax's for a box side).
"""

from __future__ import annotations

import numpy as np
import pytest
import real_yolov8
from onnx_check import RULES, file_bytes, ort_run
from torch_twins import cbs, export, seeded, set_rule, unit_gradient_error

import pydeconv
from pydeconv import detect
from pydeconv.image import load as load_image
from pydeconv.onnx import import_onnx

torch = pytest.importorskip("torch")
nn = torch.nn


class YoloV8Whole(nn.Module):
    """A YOLOv8-shaped detector: a stride-8/16/32 trunk, per scale a box head (4 x 16 bins) and a
    class head, and Ultralytics' export-mode decode (Detect._inference, DFL, dist2bbox(xywh)) with
    the anchor points and strides as constant buffers, as in an exported file."""

    def __init__(self, nc=2, size=64):
        super().__init__()
        self.nc = nc
        self.b0 = nn.Sequential(cbs(3, 8, 3, 2), cbs(8, 8, 3, 2), cbs(8, 16, 3, 2))
        self.b1, self.b2 = cbs(16, 16, 3, 2), cbs(16, 16, 3, 2)
        self.box = nn.ModuleList(
            nn.Sequential(cbs(16, 16, 3, 1), nn.Conv2d(16, 64, 1)) for _ in range(3)
        )
        self.cls = nn.ModuleList(
            nn.Sequential(cbs(16, 8, 3, 1), nn.Conv2d(8, nc, 1)) for _ in range(3)
        )
        self.dfl = nn.Conv2d(16, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(16, dtype=torch.float).view(1, 16, 1, 1)
        points, strides = [], []
        for s in (8, 16, 32):
            n = size // s
            sy, sx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
            points.append(torch.stack((sx, sy), -1).view(-1, 2))
            strides.append(torch.full((n * n, 1), float(s)))
        self.register_buffer("anchors", torch.cat(points).transpose(0, 1).unsqueeze(0))
        self.register_buffer("strides", torch.cat(strides).transpose(0, 1))

    def forward(self, x):
        p3 = self.b0(x)
        p4 = self.b1(p3)
        p5 = self.b2(p4)
        feats = [torch.cat([b(f), c(f)], 1) for b, c, f in zip(self.box, self.cls, (p3, p4, p5))]
        xc = torch.cat([f.view(f.shape[0], 64 + self.nc, -1) for f in feats], 2)
        box, cls = xc.split((64, self.nc), 1)
        b, _, a = box.shape
        d = self.dfl(box.view(b, 4, 16, a).transpose(2, 1).softmax(1)).view(b, 4, a)
        lt, rb = d.chunk(2, 1)
        x1y1, x2y2 = self.anchors - lt, self.anchors + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
        return torch.cat((dbox, cls.sigmoid()), 1)


@pytest.fixture(scope="module", params=["torchscript", "dynamo"])
def twin(request, tmp_path_factory):
    if request.param == "dynamo":
        pytest.importorskip("onnxscript")
    model = seeded(YoloV8Whole)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype("f4"))
    path = str(tmp_path_factory.mktemp("twin") / f"yolov8_{request.param}.onnx")
    export(model, x, path, request.param == "dynamo")
    graph, params = import_onnx(path)
    net = pydeconv.build(graph, params)
    out, trace = net.forward(x.numpy())
    return request.param, model, x, path, graph, net, out, trace


def test_twin_imports_whole(twin):
    exporter, model, x, path, graph, net, out, _ = twin
    kinds = [layer["kind"] for layer in graph["layers"]]
    for kind in ("reshape", "transpose", "softmax", "affine", "sigmoid"):
        assert kind in kinds, (kind, kinds)
    attrs = [layer.get("attrs", {}) for layer in graph["layers"]]
    assert {"axis": 3} in attrs and {"weights": [1.0, -1.0]} in attrs
    assert len(graph["outputs"]) == 1 and out.shape == (1, 6, 1, 84)
    with torch.no_grad():
        want = model(x).numpy()
    (ort,) = ort_run(path, x.numpy()).values()  # the one graph output
    got = out.reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, ort, rtol=1e-5, atol=1e-4)
    worst = float(np.abs(got - ort).max())
    print(f"\nyolov8 whole twin/{exporter}: max abs difference vs ONNX Runtime {worst:.2g}")


# (channel, anchor): x, w, h of boxes and both class scores, at anchors of each scale.
UNITS = [(0, 20), (2, 70), (3, 83), (4, 9), (5, 66), (4, 80)]


@pytest.mark.parametrize("rule", RULES)
def test_twin_projection_is_the_exact_gradient(twin, rule):
    """From one unit of the post-processed output, under each rule, against torch autograd of the
    same unit (torch's SiLU with the rule's backward); a one-position start signal, so the
    projection is region-limited down to the decode's global layers."""
    _, model, x, _, graph, net, out, trace = twin
    layer = graph["outputs"][0]
    set_rule(model, rule)
    try:
        for channel, anchor in UNITS:
            unit_gradient_error(
                model, x, net, trace, layer, out.shape, channel, anchor, rule, rtol=1e-3
            )
    finally:
        set_rule(model, "backprop")
    # channel/at (the start value kept: the unit's own value) is value * that gradient.
    channel, anchor = UNITS[3]
    got = net.project(trace, layer, channel=channel, at=(0, anchor), rule=rule)
    start = np.zeros(out.shape, np.float32)
    start[0, channel, 0, anchor] = out[0, channel, 0, anchor]
    np.testing.assert_array_equal(got, net.project(trace, layer, at=start, rule=rule))


def test_twin_detections_map_to_their_units(twin):
    _, _, x, _, graph, net, out, trace = twin
    head = detect.heads(net)
    assert [(h.layer, h.layout, h.classes) for h in head] == [
        (graph["outputs"][0], "v8_decoded", 2)
    ]
    dets, _ = detect.detect(net, x.numpy(), conf=0.0, iou=0.5, max_det=5)
    assert dets
    for d in dets:
        assert d.unit == {"layer": graph["outputs"][0], "channel": 4 + d.class_id, "at": (0, d.x)}
        assert d.logit == pytest.approx(float(out[0, d.channel, 0, d.x])) == pytest.approx(d.score)
        cx, cy, w, h = out[0, :4, 0, d.x]
        np.testing.assert_allclose(d.box, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1e-5)


# -- the real Ultralytics export, whole ----------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    path = real_yolov8.fetch()
    graph, params = import_onnx(path)
    net = pydeconv.build(graph, params)
    x = load_image(pydeconv.__path__[0] + "/data/astronaut.jpg", net)
    out, trace = net.forward(x)
    want = ort_run(file_bytes(path), x, ["output0"])["output0"]
    return path, graph, net, x, out, trace, want


def _head_layers(graph):
    """The three raw head layers (cat(cv2, cv3) per scale): what the reshapes before the Concat
    along the anchors read."""
    by_name = {layer["name"]: layer for layer in graph["layers"]}
    cat = next(la for la in graph["layers"] if la.get("attrs", {}).get("axis") == 3)
    return [by_name[name]["inputs"][0] for name in cat["inputs"]]


def test_real_imports_whole_and_equals_onnx_runtime(real):
    _, graph, net, _, out, _, want = real
    kinds = [layer["kind"] for layer in graph["layers"]]
    assert kinds.count("reshape") == 5 and kinds.count("transpose") == 1
    assert graph["outputs"] == [graph["layers"][-1]["name"]] and out.shape == (1, 6, 1, 8400)
    got = out.reshape(want.shape)
    box, score = np.abs(got - want)[:, :4], np.abs(got - want)[:, 4:]
    print(
        f"\nreal yolov8 whole: max abs difference vs ONNX Runtime {float(box.max()):.2g} on boxes "
        f"(up to {float(np.abs(want[:, :4]).max()):.4g} px), {float(score.max()):.2g} on scores"
    )
    np.testing.assert_allclose(got[:, :4], want[:, :4], rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(got[:, 4:], want[:, 4:], rtol=1e-4, atol=1e-5)
    assert len(_head_layers(graph)) == 3


def test_real_detections_equal_decoding_onnx_runtime(real):
    _, graph, net, x, out, _, want = real
    head = detect.heads(net)
    assert [(h.layout, h.classes) for h in head] == [("v8_decoded", 2)]
    mine, _ = detect.detect(net, x, conf=0.05)
    theirs = detect.decode({head[0].layer: want}, head, (640, 640), conf=0.05)
    assert mine and len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert (a.class_id, a.x) == (b.class_id, b.x)
        assert a.score == pytest.approx(b.score, abs=1e-5)
        np.testing.assert_allclose(a.box, b.box, atol=2e-3)


def test_real_top_detection_projection_is_exact(real):
    """The top detection's score unit, projected (backprop) from the final output, equals the raw
    head's logit projection times sigmoid'(logit); its box width unit equals the raw head's
    projection of the DFL bins' expectation derivative (the softmax Jacobian), times the stride.
    Both exact chains through the decode; deconvnet and guided run, finite and non-zero."""
    _, graph, net, x, out, trace, _ = real
    layer = graph["outputs"][0]
    (top, *_), _ = detect.detect(net, x, conf=0.05)
    a = top.x
    sizes = [80 * 80, 40 * 40, 20 * 20]
    scale = int(np.searchsorted(np.cumsum(sizes), a, side="right"))
    cell = a - sum(sizes[:scale])
    head = _head_layers(graph)[scale]
    side = 80 >> scale
    y, xx = divmod(cell, side)
    raw = trace.activation(head)[0, :, y, xx].astype(np.float64)

    start = np.zeros(out.shape, np.float32)
    start[0, top.channel, 0, a] = 1.0
    got = net.project(trace, layer, at=start, rule="backprop")
    assert np.all(np.isfinite(got)) and np.any(got != 0)
    s = 1 / (1 + np.exp(-raw[64 + top.class_id]))
    hstart = np.zeros((1,) + tuple(trace.activation(head).shape[1:]), np.float32)
    hstart[0, 64 + top.class_id, y, xx] = 1.0
    want = s * (1 - s) * net.project(trace, head, at=hstart, rule="backprop")
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(np.abs(want).max()))
    assert s == pytest.approx(top.score, abs=1e-5)

    # The box width w = (lt_x + rb_x) * stride; each side's distance is sum_j j * p_j over the
    # softmax p of its 16 bins, d dist / d bin_j = p_j (j - dist).
    start[:] = 0
    start[0, 2, 0, a] = 1.0
    got = net.project(trace, layer, at=start, rule="backprop")
    hstart[:] = 0
    for side_index in (0, 2):  # left, right
        logits = raw[16 * side_index : 16 * side_index + 16]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        dist = float((p * np.arange(16)).sum())
        hstart[0, 16 * side_index : 16 * side_index + 16, y, xx] = (
            (8 << scale) * p * (np.arange(16) - dist)
        )
    want = net.project(trace, head, at=hstart, rule="backprop")
    assert np.any(want != 0)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(np.abs(want).max()))

    for rule in ("deconvnet", "guided"):
        image = net.project(trace, **top.unit, rule=rule)
        assert image.shape == (1, 3, 640, 640) and np.all(np.isfinite(image))
        assert np.any(image != 0)


def test_twin_keep_minimal_projects_the_same(twin):
    """keep="minimal" keeps what the decode's backward needs (the DFL softmax's output, the
    sigmoid's input): the same projection bits as keep="all"."""
    _, _, x, _, graph, net, out, trace = twin
    layer = graph["outputs"][0]
    small, lean = net.forward(x.numpy(), keep="minimal")
    np.testing.assert_array_equal(small, out)
    for channel, anchor in UNITS:
        for rule in RULES:
            want = net.project(trace, layer, channel=channel, at=(0, anchor), rule=rule)
            got = net.project(lean, layer, channel=channel, at=(0, anchor), rule=rule)
            np.testing.assert_array_equal(got, want)


def test_twin_labels_name_the_classes(twin):
    """labels= at import: one per class of the whole graph's (1, 4 + K, anchors) output."""
    _, _, x, path, _, _, _, _ = twin
    graph, params = import_onnx(path, labels=["fallen", "standing"])
    net = pydeconv.build(graph, params)
    dets, _ = detect.detect(net, x.numpy(), conf=0.0, max_det=3)
    assert dets and all(d.label == ("fallen", "standing")[d.class_id] for d in dets)
