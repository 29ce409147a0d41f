"""pydeconv.analysis.sanity (Adebayo et al. 2018's cascading randomisation): the metrics against
NumPy (Spearman with ties) and hand computations (SSIM), the cascade's order and seeding, the
projections of each step against a net built by hand, the report in a real browser, the CLI and
its errors."""

from __future__ import annotations

import html
import json

import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import image as pimg
from pydeconv.analysis import extras, sanity
from pydeconv.cli import main
from pydeconv.errors import ChannelError, PydeconvError, ShapeError

pytest.importorskip("scipy.stats")
pytest.importorskip("skimage.metrics")

PREPROCESS = {
    "size": [37, 37],
    "channel_order": "RGB",
    "scale": 1 / 255,
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
}


def _rank(v):
    """Average ranks (1-based) with ties, in plain NumPy."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    sv = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _spearman_np(a, b):
    ra, rb = _rank(a.ravel()), _rank(b.ravel())
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def test_spearman_matches_numpy_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.integers(0, 4, (9, 11)).astype(np.float64)  # many ties
        b = a + rng.integers(0, 3, a.shape)
        assert sanity.spearman(a, b) == pytest.approx(_spearman_np(a, b), abs=1e-12)
    c = rng.standard_normal((6, 7))
    assert sanity.spearman(c, c) == pytest.approx(1.0)
    assert sanity.spearman(c, -c) == pytest.approx(-1.0)
    assert sanity.spearman(c, 3 * c**3 + 1) == pytest.approx(1.0)  # ranks only
    assert np.isnan(sanity.spearman(np.zeros((4, 4)), c[:4, :4]))  # no ranks


def _ssim_one_window(a, b):
    """SSIM by hand where the window covers the whole map (one window: its centre pixel),
    skimage's formula: sample (co)variances, C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 1."""
    a = a / np.abs(a).max()
    b = b / np.abs(b).max()
    n = a.size
    ma, mb = a.mean(), b.mean()
    va = ((a - ma) ** 2).sum() / (n - 1)
    vb = ((b - mb) ** 2).sum() / (n - 1)
    cov = ((a - ma) * (b - mb)).sum() / (n - 1)
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))


@pytest.mark.parametrize("side", [7, 5, 6])
def test_ssim_by_hand(side):
    """A 7x7 map with skimage's 7x7 window, and smaller maps where the window shrinks to 5."""
    rng = np.random.default_rng(side)
    a = rng.uniform(0, 2, (side, side))
    b = a + rng.uniform(0, 1, (side, side))
    assert sanity.ssim(a, a) == pytest.approx(1.0)
    if side == 6:  # window 5: the mean over the 2x2 windows that fit
        # each window's maps are scaled by the whole map's maximum, not their own
        got = sanity.ssim(a, b)
        a1, b1 = a / a.max(), b / b.max()
        want = np.mean(
            [
                _ssim_window_scaled(a1[i : i + 5, j : j + 5], b1[i : i + 5, j : j + 5])
                for i in range(2)
                for j in range(2)
            ]
        )
        assert got == pytest.approx(want, rel=1e-10)
    else:
        assert sanity.ssim(a, b) == pytest.approx(_ssim_one_window(a, b), rel=1e-10)
    with pytest.raises(ShapeError):
        sanity.ssim(np.ones((2, 5)), np.ones((2, 5)))


def _ssim_window_scaled(a, b):
    n = a.size
    ma, mb = a.mean(), b.mean()
    va = ((a - ma) ** 2).sum() / (n - 1)
    vb = ((b - mb) ** 2).sum() / (n - 1)
    cov = ((a - ma) * (b - mb)).sum() / (n - 1)
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))


@pytest.fixture(scope="module")
def tiny():
    graph, params = models.zfnet_like(seed=0, size=37)
    graph["preprocess"] = dict(PREPROCESS)
    net = pydeconv.build(graph, params)
    x = models.random_input((1,) + net.input_shape, 4)
    return net, x


def test_cascade_order(tiny):
    net, _ = tiny
    assert sanity.cascade(net, "conv4") == ["conv4", "conv3", "conv2", "conv1"]
    assert sanity.cascade(net, "pool2") == ["conv2", "conv1"]  # from L down; nothing above
    assert sanity.cascade(net, "relu1") == ["conv1"]
    dag = pydeconv.build(*models.small_dag())
    # every parameterised layer the projection passes, in the order the signal meets them
    assert sanity.cascade(dag, "relu3") == ["conv_c", "conv_b", "conv_a", "conv1"]


def test_randomised_params(tiny):
    net, _ = tiny
    order = sanity.cascade(net, "conv4")
    a = sanity.randomised_params(net, order, seed=3)
    b = sanity.randomised_params(net, order, seed=3)
    c = sanity.randomised_params(net, order, seed=4)
    assert [sorted(p) for p in a] == [[f"{n}/bias", f"{n}/weight"] for n in order]
    for pa, pb, pc in zip(a, b, c, strict=True):
        for key in pa:
            np.testing.assert_array_equal(pa[key], pb[key])
            assert not np.array_equal(pa[key], pc[key])
            trained = net.params[key]
            assert pa[key].shape == trained.shape and pa[key].dtype == np.float32
    w = a[0]["conv4/weight"]  # 16*16*3*3 values: the std is close to the trained one
    assert w.std() == pytest.approx(net.params["conv4/weight"].std(), rel=0.1)
    assert abs(w.mean()) < 0.2 * w.std()


def test_run_steps_against_nets_built_by_hand(tiny):
    net, x = tiny
    res = sanity.run(net, x, "conv4", channel=5, seed=7, threads=1)
    assert res.cascade == ["conv4", "conv3", "conv2", "conv1"] and res.steps == 5
    act, _ = net.forward(x, upto="conv4")
    y, xx = np.unravel_index(np.argmax(act[0, 5]), act.shape[2:])
    assert res.position == (y, xx)
    start = np.zeros(act.shape, np.float32)
    start[0, 5, y, xx] = 1
    random = sanity.randomised_params(net, res.cascade, 7)
    for step in (0, 2, 4):
        params = dict(net.params)
        for layer in random[:step]:
            params.update(layer)
        model = pydeconv.build(net.graph, params)
        _, trace = model.forward(x)
        for rule in sanity.RULES:
            want = model.project(trace, "conv4", at=start, rule=rule, threads=1)[0]
            np.testing.assert_array_equal(res.projections[rule][step], want)
    top, left, bottom, right = pimg.receptive_field(net, "conv4", int(y), int(xx))
    assert res.field == (top, left, bottom, right)
    for rule in sanity.RULES:
        assert res.spearman[rule][0] == pytest.approx(1.0)
        assert res.ssim[rule][0] == pytest.approx(1.0)
        base = sanity.saliency(res.projections[rule][0])[top:bottom, left:right]
        for step in range(1, res.steps):
            m = sanity.saliency(res.projections[rule][step])[top:bottom, left:right]
            assert res.spearman[rule][step] == pytest.approx(
                _spearman_np(base, m), abs=1e-9, nan_ok=True
            )
            assert res.ssim[rule][step] == pytest.approx(sanity.ssim(base, m))
        # a fully randomised net's backprop map is another map
        assert res.ssim["backprop"][-1] < 0.99
    default = sanity.run(net, x, "conv4", rules=["guided"], seed=7)
    assert default.channel == int(np.argmax(act[0].reshape(16, -1).max(axis=1)))
    assert default.rules == ["guided"]


def test_report_in_the_browser(tiny, tmp_path, report_browser):
    net, x = tiny
    res = sanity.run(net, x, "relu3", seed=1)
    out = sanity.write_report(res, tmp_path / "report", model="tiny.npz", image="x.png")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "index.html",
        "sanity-grid.png",
        "sanity-metrics.png",
        "sanity.csv",
        "sanity.json",
    ]
    data = json.loads((out / "sanity.json").read_text())
    assert data["cascade"] == ["conv3", "conv2", "conv1"] and data["layer"] == "relu3"
    assert data["metrics"]["backprop"]["ssim"] == pytest.approx(res.ssim["backprop"])
    assert data["model"] == "tiny.npz" and data["seed"] == 1
    rows = (out / "sanity.csv").read_text().splitlines()
    assert rows[0] == "rule,step,randomised_down_to,spearman,ssim" and len(rows) == 1 + 3 * 4
    grid = Image.open(out / "sanity-grid.png")
    assert grid.width > grid.height  # 4 columns (steps), 3 rows (rules)
    shots = report_browser(out, tmp_path / "shots")
    assert len(shots) == 1


def test_report_without_matplotlib(tiny, tmp_path, monkeypatch):
    net, x = tiny
    res = sanity.run(net, x, "conv2", rules=["deconvnet"])
    monkeypatch.setattr(extras, "pyplot", lambda: None)
    out = sanity.write_report(res, tmp_path / "r")
    assert not (out / "sanity-metrics.png").exists()
    assert html.escape(extras.PLOTS_NOTE) in (out / "index.html").read_text()
    assert (out / "sanity.json").is_file() and (out / "sanity.csv").is_file()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("sanity")
    tiny[0].save(str(d / "tiny.npz"))
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8), "RGB").save(d / "img.png")
    return d


def test_cli(files, tmp_path, capsys):
    out = tmp_path / "s"
    argv = [str(files / "tiny.npz"), str(files / "img.png"), "--layer", "conv3"]
    rc = main(["sanity", *argv, "--rules", "guided", "backprop", "--seed", "2", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "guided: Spearman" in text and "deconvnet" not in text
    data = json.loads((out / "sanity.json").read_text())
    assert data["rules"] == ["guided", "backprop"] and data["seed"] == 2
    assert data["image"] == str(files / "img.png")
    assert main(["sanity", *argv, "-o", str(out)]) != 0  # exists, no --force
    assert "exists" in capsys.readouterr().err
    assert main(["sanity", *argv, "--force", "-o", str(out)]) == 0


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--layer", "fc6"], ["'fc6'", "not a feature map"]),
        (["--layer", "conv3", "--channel", "16"], ["channel 16 out of range", "16 channels"]),
        (["--layer", "conv33"], ["conv33"]),
    ],
)
def test_cli_errors(files, tmp_path, capsys, extra, words):
    out = tmp_path / "e"
    rc = main(["sanity", str(files / "tiny.npz"), str(files / "img.png"), *extra, "-o", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    for w in words:
        assert w in err
    assert not out.exists()


def test_api_errors(tiny):
    net, x = tiny
    with pytest.raises(ShapeError, match="not a feature map"):
        sanity.run(net, x, "prob")
    with pytest.raises(ChannelError, match="out of range"):
        sanity.run(net, x, "conv2", channel=-1)
    with pytest.raises(PydeconvError, match="unknown rule"):
        sanity.run(net, x, "conv2", rules=["lrp"])
    with pytest.raises(ShapeError):
        sanity.run(net, x[0], "conv2")
