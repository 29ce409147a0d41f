"""pydeconv invariance (Zeiler & Fergus Fig. 5): distances and probabilities against NumPy
forwards (tests/npref.py) of the transformed images, the transforms themselves, the report in a
browser, and bad input."""

from __future__ import annotations

import json

import models
import npref
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv.analysis import invariance as inv
from pydeconv.cli import main
from pydeconv.errors import LayerNotFoundError, PydeconvError

MEAN = [0.5, 0.4, 0.3]


def _photo(h=45, w=52, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [128 + 90 * np.sin(yy / (4 + c) - xx / (6 + c)) for c in range(3)], axis=2
    ) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def zf():
    graph, params = models.zfnet_like(seed=7, size=37)
    graph["preprocess"] = {"mean": MEAN}
    graph["labels"] = [f"label{i}" for i in range(10)]
    return graph, params, pydeconv.build(graph, params)


def _pre(img):
    """FORMAT.md's preprocessing, written out: pixels / 255 - mean."""
    a = np.asarray(img.convert("RGB"), np.float64).transpose(2, 0, 1) / 255.0
    return (a - np.asarray(MEAN)[:, None, None])[None]


def test_transforms(zf):
    *_, net = zf
    base = inv.base_image(_photo(), net)
    assert base.size == (37, 37)
    fill = inv.mean_pixel(net)
    assert fill == (128, 102, 77)  # 0.5, 0.4, 0.3 times 255, rounded
    a = np.asarray(base)
    for dy in (-9, -1, 0, 3, 36, 40):
        got = np.asarray(inv.transform(base, "translate", dy, fill))
        want = np.empty_like(a)
        want[:] = fill
        if dy >= 0:
            want[dy:] = a[: 37 - dy] if dy < 37 else want[dy:]
        else:
            want[:dy] = a[-dy:]
        np.testing.assert_array_equal(got, want, err_msg=f"dy={dy}")
    assert np.array_equal(np.asarray(inv.transform(base, "scale", 1.0, fill)), a)
    assert np.array_equal(np.asarray(inv.transform(base, "rotate", 0, fill)), a)
    # a quarter turn of a square image is a NumPy rot90 (counter-clockwise)
    sq = Image.fromarray(a[:36, :36])
    np.testing.assert_array_equal(
        np.asarray(inv.transform(sq, "rotate", 90, fill)), np.rot90(a[:36, :36])
    )
    # scale 2 about the centre: the middle half, enlarged
    big = np.asarray(inv.transform(sq, "scale", 2.0, fill)).astype(int)
    mid = np.asarray(sq.crop((9, 9, 27, 27)).resize((36, 36), Image.Resampling.BILINEAR))
    assert np.abs(big - mid.astype(int)).mean() < 12
    # shrinking uncovers the border: the mean pixel there
    small = np.asarray(inv.transform(base, "scale", 0.5, fill))
    assert tuple(small[0, 0]) == fill and tuple(small[-1, -1]) == fill


def test_numbers_equal_numpy(zf):
    graph, params, net = zf
    picture = _photo()
    layers = ["conv1", "relu4", "fc7"]
    sweeps = {"translate": [-6, 0, 5], "scale": [0.8, 1.0, 1.3], "rotate": [0, 45, 200]}
    res = inv.invariance(net, picture, layers, sweeps, batch=2)
    shifted = inv.invariance(net, picture, ["conv1"], {"translate": [4.6, -0.2]})
    assert shifted.sweeps[0].values == [5.0, 0.0]  # whole pixels, as applied
    base = inv.base_image(picture, net)
    acts0, _ = npref.forward(graph, params, _pre(base))
    p0 = acts0["prob"][0]
    assert res.target == int(np.argmax(p0)) and res.probability_source == "output (softmax layer)"
    assert res.baseline_probability == pytest.approx(p0[res.target], rel=1e-4)
    for layer in layers:
        assert res.norms[layer] == pytest.approx(np.linalg.norm(acts0[layer]), rel=1e-4)
    fill = inv.mean_pixel(net)
    for s in res.sweeps:
        assert s.values == [float(v) for v in sweeps[s.kind]]
        for i, v in enumerate(s.values):
            acts, _ = npref.forward(graph, params, _pre(inv.transform(base, s.kind, v, fill)))
            for layer in layers:
                d = np.linalg.norm((acts[layer] - acts0[layer]).reshape(-1))
                scale = np.linalg.norm(acts0[layer])
                assert s.distance[layer][i] == pytest.approx(d, rel=1e-3, abs=1e-4 * scale)
                assert s.relative[layer][i] == pytest.approx(d / scale, rel=1e-3, abs=1e-4)
            assert s.probability[i] == pytest.approx(acts["prob"][0, res.target], rel=1e-3)
        # the identity in each sweep: distance 0
        ident = s.values.index(0.0 if s.kind != "scale" else 1.0)
        assert all(s.distance[layer][ident] == 0 for layer in layers)


def test_class_and_softmax_of_logits(zf):
    graph, params = models.small_dag(seed=2)
    net = pydeconv.build(graph, params)
    res = inv.invariance(net, _photo(), ["relu3"], {"rotate": [0, 90]}, target=2)
    assert res.target == 2 and res.target_given
    assert res.probability_source == "softmax of the output"
    acts, _ = npref.forward(graph, params, _pre_plain(inv.base_image(_photo(), net)))
    z = acts["fc"][0]
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert res.sweeps[0].probability[0] == pytest.approx(p[2], rel=1e-4)


def _pre_plain(img):
    return (np.asarray(img.convert("RGB"), np.float64).transpose(2, 0, 1) / 255.0)[None]


def test_cli_report(tmp_path, zf, capsys, report_browser):
    *_, net = zf
    model = tmp_path / "zf.npz"
    net.save(str(model))
    image = tmp_path / "p.png"
    _photo().save(image)
    out = tmp_path / "inv"
    argv = ["invariance", model, image, "--layers", "conv1,fc7", "--translate=-8,-4,0,4,8"]
    rc = main([str(a) for a in argv + ["--scale", "1,1.2,1.5", "--rotate", "0,90", "-o", out]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert "translate -8..8: largest relative distance conv1" in text
    doc = json.loads((out / "invariance.json").read_text())
    assert doc["layers"] == ["conv1", "fc7"] and set(doc["sweeps"]) == {
        "translate",
        "scale",
        "rotate",
    }
    assert doc["sweeps"]["translate"]["values"] == [-8, -4, 0, 4, 8]
    res = inv.invariance(net, _photo(), ["conv1", "fc7"], {"translate": [-8, -4, 0, 4, 8]})
    assert doc["sweeps"]["translate"]["distance"]["fc7"] == res.sweeps[0].distance["fc7"]
    rows = (out / "invariance.csv").read_text().splitlines()
    assert rows[0].startswith("transform,value,conv1 distance") and len(rows) == 1 + 5 + 3 + 2
    assert (out / "translate-distance.png").is_file() and (out / "rotate-images.png").is_file()
    report_browser(out, tmp_path / "shots")


def test_without_matplotlib(tmp_path, zf, monkeypatch):
    from pydeconv.analysis import extras

    real = extras.optional
    monkeypatch.setattr(
        extras, "optional", lambda m: None if m.startswith("matplotlib") else real(m)
    )
    monkeypatch.setattr(extras, "pyplot", lambda: None)
    *_, net = zf
    res = inv.invariance(net, _photo(), ["conv1"], {"scale": [1, 2]})
    inv.write_report(res, net, _photo(), tmp_path / "r", "m.npz", "p.png")
    assert extras.PLOTS_NOTE.split(":")[0] in (tmp_path / "r" / "index.html").read_text()
    assert not list((tmp_path / "r").glob("*-distance.png"))
    assert (tmp_path / "r" / "invariance.csv").is_file()


def test_errors(zf):
    *_, net = zf
    pic = _photo()
    with pytest.raises(LayerNotFoundError):
        inv.invariance(net, pic, ["conv9"])
    with pytest.raises(PydeconvError, match="at least one layer"):
        inv.invariance(net, pic, [])
    with pytest.raises(PydeconvError, match="scale factors must be positive"):
        inv.invariance(net, pic, ["conv1"], {"scale": [1, 0]})
    with pytest.raises(PydeconvError, match="unknown transform 'shear'"):
        inv.invariance(net, pic, ["conv1"], {"shear": [1]})
    with pytest.raises(PydeconvError, match="sweep is empty"):
        inv.invariance(net, pic, ["conv1"], {"rotate": []})
    with pytest.raises(PydeconvError, match="class 10 is out of range"):
        inv.invariance(net, pic, ["conv1"], {"rotate": [0]}, target=10)
    with pytest.raises(PydeconvError, match="not a finite number"):
        inv.invariance(net, pic, ["conv1"], {"rotate": [float("nan")]})


def test_cli_errors(tmp_path, zf, capsys):
    *_, net = zf
    model = tmp_path / "zf.npz"
    net.save(str(model))
    image = tmp_path / "p.png"
    _photo().save(image)
    rc = main(
        [str(a) for a in ["invariance", model, image, "--layers", "nope", "-o", tmp_path / "o"]]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "nope" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main([str(a) for a in ["invariance", model, image, "--layers", "conv1", "--scale", "x"]])
    assert "expected numbers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
