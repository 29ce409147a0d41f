"""pydeconv correspond (Zeiler & Fergus Table 1): Delta against a NumPy reimplementation on a small
net, the random control, the boxes file, the report in a browser, and bad input."""

from __future__ import annotations

import json

import models
import npref
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import image as pimg
from pydeconv.analysis import correspondence as cor
from pydeconv.cli import main
from pydeconv.errors import LayerNotFoundError, PydeconvError


def _photo(seed, h=40, w=44):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [128 + 80 * np.cos(yy / (3 + c + seed % 3) + xx / (5 + c)) for c in range(3)], axis=2
    ) + rng.normal(0, 15, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def zf():
    graph, params = models.zfnet_like(seed=13, size=37)
    return graph, params, pydeconv.build(graph, params)


def test_delta_by_hand():
    signs = np.array([[1, 0, -1, 1], [1, 1, -1, -1], [0, 0, -1, 1]], np.int8)
    # pairs: (0,1) differ at 1 and 3; (0,2) at 0; (1,2) at 0, 1, 3: mean 2 of 4 entries
    assert cor.delta(signs) == (0.5, 12)
    assert cor.delta(np.ones((5, 7), np.int8)) == (0.0, 0)
    with pytest.raises(PydeconvError, match="at least two"):
        cor.delta(signs[:1])


def _reference(graph, params, x, boxes, layers, fill):
    """eps_i = f(x_i) - f(x~_i) with NumPy forwards; Delta as the module notes define it."""
    out = {}
    acts = [npref.forward(graph, params, x[i : i + 1].astype(np.float64))[0] for i in range(len(x))]
    occ = []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        xo = x[i : i + 1].astype(np.float64).copy()
        xo[0, :, y1:y2, x1:x2] = np.asarray(fill)[:, None, None]
        occ.append(npref.forward(graph, params, xo)[0])
    for layer in layers:
        signs = np.stack([np.sign(a[layer] - o[layer]).reshape(-1) for a, o in zip(acts, occ)])
        n, d = signs.shape
        pairs = [(signs[i] != signs[j]).sum() for i in range(n) for j in range(n) if i != j]
        out[layer] = (sum(pairs) / len(pairs) / d, int(sum(pairs)))
    return out


def test_delta_equals_numpy(zf):
    graph, params, net = zf
    x = np.concatenate([pimg.from_pil(_photo(s), net) for s in range(4)])
    boxes = [(5, 6, 15, 14), (20, 3, 30, 12), (0, 25, 9, 37), (14, 14, 23, 23)]
    layers = ["conv1", "relu3", "fc7"]
    res = cor.correspondence(net, x, boxes, layers, batch=3)
    ref = _reference(graph, params, x, boxes, layers, np.zeros(3))
    for layer in layers:
        # an entry whose change is within float32 rounding of zero may take either sign
        assert res.delta[layer] == pytest.approx(ref[layer][0], abs=2e-3), layer
        assert abs(res.delta_sum[layer] - ref[layer][1]) <= 2e-3 * ref[layer][1] + 2, layer
    # conv1 units outside every box do not change: sign 0 for all images there
    assert 0 < res.delta["conv1"] < res.delta["fc7"]


def test_random_control(zf):
    *_, net = zf
    x = np.concatenate([pimg.from_pil(_photo(s), net) for s in range(3)])
    boxes = [(5, 6, 15, 14), (20, 3, 30, 12), (0, 25, 9, 37)]
    a = cor.correspondence(net, x, boxes, ["relu4"], random=4, seed=7)
    b = cor.correspondence(net, x, boxes, ["relu4"], random=4, seed=7)
    assert a.random == b.random and a.random_boxes == b.random_boxes  # seeded
    assert len(a.random["relu4"]) == 4 and len(a.random_boxes) == 4
    for rb in a.random_boxes:
        for (x1, y1, x2, y2), (bx1, by1, bx2, by2) in zip(rb, boxes):
            assert (x2 - x1, y2 - y1) == (bx2 - bx1, by2 - by1)
            assert 0 <= x1 and 0 <= y1 and x2 <= 37 and y2 <= 37
    # each repetition's Delta is that of a plain run on its boxes
    for rb, d in zip(a.random_boxes, a.random["relu4"]):
        assert cor.correspondence(net, x, rb, ["relu4"]).delta["relu4"] == d
    assert a.random_mean("relu4") == pytest.approx(np.mean(a.random["relu4"]))
    c = cor.correspondence(net, x, boxes, ["relu4"], random=4, seed=8)
    assert c.random_boxes != a.random_boxes
    # shared: one top-left corner per repetition for every image
    s = cor.correspondence(net, x, boxes, ["relu4"], random=5, seed=1, random_mode="shared")
    assert s.random_mode == "shared" and len(s.random["relu4"]) == 5
    for rb in s.random_boxes:
        assert len({(x1, y1) for x1, y1, _, _ in rb}) == 1
        assert all(x2 <= 37 and y2 <= 37 for _, _, x2, y2 in rb)
    with pytest.raises(PydeconvError, match="random_mode must be"):
        cor.correspondence(net, x, boxes, ["relu4"], random=1, random_mode="same")


def test_boxes_file_forms():
    imgs = ["a/one.jpg", "b/two.png"]
    assert cor.match_boxes([[1, 2, 3, 4], [0, 0, 5, 5]], imgs) == (
        "input",
        [(1, 2, 3, 4), (0, 0, 5, 5)],
    )
    units, raw = cor.match_boxes(
        {"units": "image", "boxes": {"one.jpg": [10, 20, 30, 40], "b/two.png": [0, 0, 8, 8]}}, imgs
    )
    assert units == "image" and raw == [(10, 20, 30, 40), (0, 0, 8, 8)]
    # image pixels: scaled by the resize to the input (here 100x50 -> 37x37)
    got = cor.to_input(raw, units, [(100, 50), (37, 37)], (37, 37), imgs)
    assert got == [(4, 15, 11, 30), (0, 0, 8, 8)]
    # clipped to the input
    assert cor.to_input([(-5, -5, 50, 10)], "input", [(1, 1)], (37, 37), ["x"]) == [(0, 0, 37, 10)]
    for data, words in [
        ([[1, 2, 3, 4]], "1 boxes for 2 images"),
        ({"one.jpg": [1, 2, 3, 4]}, "no box for image b/two.png"),
        ([[1, 2, 3], [0, 0, 1, 1]], "four numbers"),
        ([[3, 2, 1, 4], [0, 0, 1, 1]], "empty box"),
        ({"units": "cm", "boxes": []}, "units must be"),
        ("boxes", "expected a list"),
    ]:
        with pytest.raises(PydeconvError, match=words):
            cor.match_boxes(data, imgs)
    with pytest.raises(PydeconvError, match="outside the 37x37 input"):
        cor.to_input([(40, 0, 50, 10)], "input", [(1, 1)], (37, 37), ["x"])


def test_cli_report(tmp_path, zf, capsys, report_browser):
    *_, net = zf
    model = tmp_path / "zf.npz"
    net.save(str(model))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for s in range(3):
        _photo(s).save(folder / f"dog{s}.png")
    (folder / "dog9.png").write_bytes(b"not a png")  # unreadable: skipped, listed
    boxes = {"dog0.png": [5, 6, 15, 14], "dog1.png": [20, 3, 30, 12], "dog2.png": [0, 25, 9, 37]}
    boxes["dog9.png"] = [1, 1, 5, 5]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "cor"
    argv = ["correspond", model, folder, "--boxes", tmp_path / "boxes.json"]
    rc = main([str(a) for a in argv + ["--layers", "conv2,fc7", "--random", "3", "-o", out]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert "conv2: Delta" in text and "random" in text and "skipped 1" in err
    doc = json.loads((out / "correspondence.json").read_text())
    assert [p.split("/")[-1] for p in doc["images"]] == ["dog0.png", "dog1.png", "dog2.png"]
    assert doc["skipped"][0]["path"].endswith("dog9.png")
    assert doc["random"]["repetitions"] == 3 and len(doc["random"]["delta"]["fc7"]) == 3
    assert doc["random"]["mode"] == "independent"
    x = np.concatenate([pimg.load(p, net) for p in doc["images"]])
    res = cor.correspondence(net, x, [tuple(b) for b in doc["boxes"]], ["conv2", "fc7"])
    assert doc["delta"] == res.delta
    rows = (out / "correspondence.csv").read_text().splitlines()
    assert rows[0].startswith("layer,delta,delta_sum,random_mean") and len(rows) == 3
    assert "dog9.png" in (out / "index.html").read_text()
    report_browser(out, tmp_path / "shots")


def test_errors(tmp_path, zf, capsys):
    *_, net = zf
    x = np.concatenate([pimg.from_pil(_photo(s), net) for s in range(2)])
    boxes = [(0, 0, 5, 5), (1, 1, 6, 6)]
    with pytest.raises(LayerNotFoundError):
        cor.correspondence(net, x, boxes, ["nope"])
    with pytest.raises(PydeconvError, match="at least two images"):
        cor.correspondence(net, x[:1], boxes[:1], ["conv1"])
    with pytest.raises(PydeconvError, match="random repetitions"):
        cor.correspondence(net, x, boxes, ["conv1"], random=-1)
    with pytest.raises(PydeconvError, match="MiB"):
        cor.correspondence(net, x, boxes, ["conv1"], max_memory=1000)
    model = tmp_path / "zf.npz"
    net.save(str(model))
    _photo(0).save(tmp_path / "a.png")
    (tmp_path / "b.json").write_text("[[0, 0, 5, 5]]")
    rc = main(
        [
            str(a)
            for a in [
                "correspond",
                model,
                tmp_path / "a.png",
                "--boxes",
                tmp_path / "b.json",
                "--layers",
                "conv1",
                "-o",
                tmp_path / "o",
            ]
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "at least two readable images" in err
    (tmp_path / "bad.json").write_text("{")
    rc = main(
        [
            str(a)
            for a in [
                "correspond",
                model,
                tmp_path / "a.png",
                "--boxes",
                tmp_path / "bad.json",
                "--layers",
                "conv1",
                "-o",
                tmp_path / "o",
            ]
        ]
    )
    assert rc == 1 and "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
