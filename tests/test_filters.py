"""pydeconv filters (Zeiler & Fergus Fig. 6): the filter grid's tiles, per-layer statistics against
NumPy, dead filters, the report in a browser, and bad input."""

from __future__ import annotations

import json
import math

import models
import numpy as np
import pytest

import pydeconv
from pydeconv.analysis import filters
from pydeconv.cli import main
from pydeconv.errors import LayerNotFoundError, PydeconvError


@pytest.fixture(scope="module")
def zf():
    graph, params = models.zfnet_like(seed=11, size=37)
    params = dict(params)
    w = params["conv2/weight"].copy()
    w[3] = 0.0  # a dead filter
    w[5] *= 1e-4  # and one all but dead
    params["conv2/weight"] = w
    w1 = params["conv1/weight"].copy()
    w1[0] = 0.0
    w1[0, 0, 1, 2] = 0.5  # red, positive: the tile is mid-grey with one light red pixel
    w1[0, 1, 3, 3] = -0.25  # green, negative: a darker green tap
    params["conv1/weight"] = w1
    return graph, params, pydeconv.build(graph, params)


def test_statistics_equal_numpy(zf):
    graph, params, net = zf
    rows = filters.statistics(net, dead_eps=0.01, radius=0.1)
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "conv3", "conv4"]
    for r in rows:
        w = params[f"{r['layer']}/weight"].astype(np.float64)
        norms = np.array([np.sqrt((f**2).sum()) for f in w])
        rms = np.array([np.sqrt((f**2).mean()) for f in w])
        assert r["filters"] == w.shape[0] and r["shape"] == list(w.shape[1:])
        assert r["norm_mean"] == pytest.approx(norms.mean())
        assert r["norm_std"] == pytest.approx(norms.std())
        assert r["norm_min"] == pytest.approx(norms.min())
        assert r["norm_max"] == pytest.approx(norms.max())
        assert r["rms_mean"] == pytest.approx(rms.mean())
        assert r["rms_max"] == pytest.approx(rms.max())
        assert r["above_radius"] == pytest.approx(np.mean(rms > 0.1))
        assert r["dead"] == int(np.sum(norms < 0.01 * norms.max()))
    conv2 = rows[1]
    assert conv2["dead"] == 2 and conv2["dead_fraction"] == pytest.approx(2 / 12)
    # grouped conv3: its filters have ic/groups input channels
    assert rows[2]["shape"] == [6, 3, 3]  # conv2 has 12 channels
    assert filters.statistics(net, dead_eps=0)[1]["dead"] == 0
    assert filters.statistics(net, radius=0)[0]["above_radius"] == 1.0


def test_tiles_are_contrast_normalised(zf):
    *_, net = zf
    tiles = filters.filter_tiles(net, min_side=7)
    assert len(tiles) == 8 and tiles[0].size == (7, 7)
    a = np.asarray(tiles[0]).astype(int)
    # 0.5 + w / (2 max|w|), max|w| = 0.5: the red tap 1.0 -> 255, the green one 0.25 -> 64
    assert tuple(a[1, 2]) == (255, 128, 128)
    assert tuple(a[3, 3]) == (128, 64, 128)
    assert tuple(a[0, 0]) == (128, 128, 128)
    # a layer with 6 input channels per filter: summed, grey
    grey = np.asarray(filters.filter_tiles(net, "conv2")[0])
    assert np.array_equal(grey[..., 0], grey[..., 1])


def test_cli_report(tmp_path, zf, capsys, report_browser):
    *_, net = zf
    model = tmp_path / "zf.npz"
    net.save(str(model))
    out = tmp_path / "f"
    rc = main([str(a) for a in ["filters", model, "-o", out]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert "conv2" in text and "open " in text
    doc = json.loads((out / "filters.json").read_text())
    assert doc["layer"] == "conv1" and doc["model"] == str(model)
    assert doc["layers"] == json.loads(json.dumps(filters.statistics(net)))
    rows = (out / "filters.csv").read_text().splitlines()
    assert rows[0] == ",".join(filters.CSV_FIELDS) and len(rows) == 5
    assert "conv2 2/12" in (out / "index.html").read_text()
    report_browser(out, tmp_path / "shots")
    rc = main([str(a) for a in ["filters", model, "--layer", "conv4", "-o", tmp_path / "f4"]])
    assert rc == 0
    assert json.loads((tmp_path / "f4" / "filters.json").read_text())["layer"] == "conv4"


def test_errors(tmp_path, zf, capsys):
    *_, net = zf
    with pytest.raises(LayerNotFoundError):
        filters.weights(net, "conv7")
    with pytest.raises(PydeconvError, match="'relu1' is a relu layer, not a conv2d"):
        filters.weights(net, "relu1")
    with pytest.raises(PydeconvError, match="dead_eps must be"):
        filters.statistics(net, dead_eps=math.nan)
    graph, params = models.single_layer("relu", (3, 4, 4))
    with pytest.raises(PydeconvError, match="no conv2d layer"):
        filters.statistics(pydeconv.build(graph, params))
    model = tmp_path / "zf.npz"
    net.save(str(model))
    rc = main([str(a) for a in ["filters", model, "--layer", "fc6", "-o", tmp_path / "o"]])
    err = capsys.readouterr().err
    assert rc == 1 and "not a conv2d" in err and not (tmp_path / "o").exists()
