"""The feature atlas (pydeconv.analysis.atlas, `pydeconv atlas`): the report in a browser,
atlas.json, the projections from the mined positions, resume and Ctrl-C on the command line,
and one-line errors."""

from __future__ import annotations

import io
import json

import models
import numpy as np
import pytest
from PIL import Image
from test_mine import make_images

import pydeconv
from pydeconv import cli
from pydeconv import image as pimg
from pydeconv.analysis import atlas, mine

LAYERS = ["conv1_2", "conv2_3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("atlas")
    graph, params = models.vgg_like(seed=3, size=20)
    model = folder / "vgg_like.npz"
    pydeconv.build(graph, params).save(model)
    (folder / "images").mkdir()
    make_images(folder / "images", n=14)
    (folder / "images" / "zz-broken.png").write_bytes(b"not a picture")
    return pydeconv.load(model), model, folder / "images"


def run(capsys, *argv):
    code = cli.main(["--threads", "1", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_report_in_browser(setup, tmp_path, capsys, report_browser):
    net, model, images = setup
    out = tmp_path / "atlas"
    code, stdout, err = run(
        capsys, "atlas", model, images, "--layers", ",".join(LAYERS), "-o", out, "-k", "4",
        "--batch-size", "4",
    )  # fmt: skip
    assert code == 0, err
    assert f"open {(out / 'index.html').resolve()}" in stdout
    assert "skipped 1 unreadable image" in err
    doc = json.loads((out / "atlas.json").read_text())
    assert doc["format"] == "pydeconv-atlas" and doc["version"] == 1
    assert doc["model"] == str(model) and doc["layers"] == LAYERS and doc["k"] == 4
    assert doc["ranking"] == "activation" and doc["class"] is None
    assert len(doc["images"]) == 15
    assert [s["path"] for s in doc["skipped"]] == [str(images / "zz-broken.png")]
    for layer in LAYERS:
        c, h, w = net.layer_info(layer)["shape"]
        units = doc["units"][layer]
        assert len(units) == c
        for row in units:
            assert len(row) == 4 and len({u["image"] for u in row}) == 4
            assert [u["value"] for u in row] == sorted((u["value"] for u in row), reverse=True)
            for u in row:
                assert doc["images"][u["image"]] == u["path"] and 0 <= u["y"] < h
        assert (out / f"layer_{layer}.html").is_file()
        assert len(list((out / f"layer_{layer}").glob("c*.png"))) == c
    assert not (out / ".units").exists()  # the scratch pictures are gone
    index = (out / "index.html").read_text()
    assert "zz-broken.png" in index and "Skipped images (1)" in index
    assert "deconvnet" in (out / "layer_conv2_3.html").read_text()
    shots = report_browser(out, tmp_path / "shots")
    assert len(shots) == 1 + len(LAYERS)
    # The state beside the report is the finished mining state.
    st = mine.MineState.load(atlas.default_state_path(out))
    assert st.finished == 15 and st.units(LAYERS[1]) == doc["units"][LAYERS[1]]


def test_projections_start_at_the_mined_positions(setup):
    """Each tile's projection is the unit's own: the engine's at="max" position equals the mined
    one (return_positions), and the tile equals a projection from that (y, x) made here."""
    net, _, images = setup
    paths = sorted(images.glob("im*.png"))
    st = mine.mine(net, paths, LAYERS, k=3, batch_size=4)
    logged = []
    units = atlas.project_units(net, st, rule="guided", threads=1, log=logged.append)
    assert not any("near-tie" in m for m in logged)
    order = net.preprocess["channel_order"]
    for layer in LAYERS:
        _, _, w = st.shapes[layer]
        for ch in (0, 5, 11):
            for rank in range(3):
                i, p = int(st.ids[layer][ch, rank]), int(st.pos[layer][ch, rank])
                y, x = divmod(p, w)
                xin = pimg.load(st.images[i], net)
                _, trace = net.forward(xin, keep=[layer])
                proj = net.project(trace, layer, channel=ch, at=(y, x), rule="guided")[0]
                crop = pimg.mask_to_receptive_field(proj, net, layer, y, x)
                want = np.asarray(atlas._small(pimg.render(crop, order)), dtype=int)
                got = np.asarray(Image.open(io.BytesIO(units[(layer, ch, rank)][0])), dtype=int)
                # The same unit: equal up to float rounding (one channel alone here, a batch of
                # channels there), i.e. at most one grey level apart.
                assert got.shape == want.shape and np.abs(got - want).max() <= 1
                patch = np.asarray(atlas._small(pimg.crop_patch(xin, net, layer, y, x)))
                got = np.asarray(Image.open(io.BytesIO(units[(layer, ch, rank)][1])))
                assert np.array_equal(got, patch)


def test_custom_ranking_renders_from_mined_positions(setup, tmp_path):
    """A non-activation ranking (the --class plumbing) projects from the mined (y, x), which
    need not be the activation's maximum, and records ranking and class in atlas.json."""
    net, _, images = setup
    paths = sorted(images.glob("im*.png"))

    def score(net, trace, layer, act):  # the weakest position wins: never the engine's "max"
        return -act

    index = atlas.atlas(
        net, paths, ["conv2_3"], tmp_path / "out", k=2, batch_size=4, score=score,
        ranking="relevance", class_=1,
    )  # fmt: skip
    doc = json.loads((index.parent / "atlas.json").read_text())
    assert doc["ranking"] == "relevance" and doc["class"] == 1
    u = doc["units"]["conv2_3"][0][0]
    xin = pimg.load(u["path"], net)
    _, trace = net.forward(xin, keep=["conv2_3"])
    fmap = trace.activation("conv2_3")[0, 0]
    assert fmap[u["y"], u["x"]] == fmap.min()
    assert "relevance to class 1" in (index.parent / "index.html").read_text()


def test_class_option_calls_relevance(setup, tmp_path, capsys, monkeypatch):
    """--class C ranks by pydeconv.analysis.relevance.relevance(net, trace, layer, C)."""
    import sys
    import types

    net, model, images = setup
    calls = []

    def relevance(net, trace, layer, cls, score_layer=None):
        calls.append((layer, cls))
        return np.array(trace.activation(layer)) * 2.0

    fake = types.ModuleType("pydeconv.analysis.relevance")
    fake.relevance = relevance
    monkeypatch.setitem(sys.modules, "pydeconv.analysis.relevance", fake)
    out = tmp_path / "rel"
    code, _, err = run(
        capsys, "atlas", model, images, "--layers", "conv2_3", "-o", out, "-k", "2", "--class", "3"
    )
    assert code == 0, err
    assert calls and all(c == ("conv2_3", 3) for c in calls)
    doc = json.loads((out / "atlas.json").read_text())
    assert doc["ranking"] == "relevance" and doc["class"] == 3


def test_ctrl_c_keeps_finished_images_and_no_half_report(setup, tmp_path, capsys, monkeypatch):
    net, model, images = setup
    args = ("atlas", model, images, "--layers", "conv2_3", "-o", tmp_path / "a", "-k", "3")
    args += ("--batch-size", "4", "--save-every", "1000")
    code, _, _ = run(capsys, *args)
    assert code == 0
    whole = json.loads((tmp_path / "a" / "atlas.json").read_text())

    real = mine.activation_score
    calls = {"n": 0}

    def interrupting(net, trace, layer, act):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return act

    out = tmp_path / "b"
    args = ("atlas", model, images, "--layers", "conv2_3", "-o", out, "-k", "3")
    args += ("--batch-size", "4", "--save-every", "1000")
    monkeypatch.setattr(mine, "activation_score", interrupting)
    code, _, err = run(capsys, *args)
    assert code == 130 and "--resume" in err
    assert not out.exists() and not list(tmp_path.glob(".b*"))
    state = atlas.default_state_path(out)
    assert mine.MineState.load(state).finished == 8
    monkeypatch.setattr(mine, "activation_score", real)
    code, _, err = run(capsys, *args)
    assert code == 1 and "a mining state exists" in err
    code, _, err = run(capsys, *args, "--resume")
    assert code == 0, err
    assert "resuming" in err and "8/15 images finished" in err
    assert json.loads((out / "atlas.json").read_text())["units"] == whole["units"]

    # Ctrl-C while the report is written: no report, no temporary folder left behind.
    def broken_tile(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(atlas, "_tile", broken_tile)
    code, _, _ = run(capsys, "atlas", model, images, "--layers", "conv2_3", "-o", tmp_path / "c")
    assert code == 130
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c*"))


@pytest.mark.parametrize(
    "extra, match",
    [
        (("--layers", "conv9"), "unknown layer 'conv9'"),
        (("--layers", "conv2_3", "-k", "40"), "k=40 is larger than the image count (15)"),
        (("--layers", "conv2_3", "-k", "0"), "-k must be >= 1"),
        (("--layers", "conv2_3", "--resume"), "no mining state to resume"),
        (("--layers", "conv2_3", "--rule", "guided", "--batch-size", "0"), "--batch-size"),
    ],
)
def test_cli_errors_are_one_line(setup, tmp_path, capsys, extra, match):
    _, model, images = setup
    code, _, err = run(capsys, "atlas", model, images, "-o", tmp_path / "o", *extra)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("pydeconv: error: ") and match in err
    assert not (tmp_path / "o").exists()


def test_cli_errors_empty_set_and_dense_layer(tmp_path, capsys):
    net = pydeconv.build(*models.zfnet_like(size=37))
    model = tmp_path / "zf.npz"
    net.save(model)
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty"
    code, _, err = run(capsys, "atlas", model, empty, "--layers", "conv1", "-o", tmp_path / "x")
    assert code == 1 and "no image files there" in err and err.count("\n") == 1
    make_images(tmp_path / "empty", n=3)
    code, _, err = run(
        capsys, "atlas", model, tmp_path / "empty", "--layers", "fc6", "-o", tmp_path / "o"
    )
    assert code == 1 and "'fc6' is not a feature map" in err and err.count("\n") == 1


def test_cli_dask_equals_single_process(setup, tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    _, model, images = setup
    args = ("atlas", model, images, "--layers", "conv1_2,conv2_3", "-k", "3", "--batch-size", "4")
    code, _, err = run(capsys, *args, "-o", tmp_path / "one")
    assert code == 0, err
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        code, _, err = run(
            capsys, *args, "-o", tmp_path / "dask", "--dask", cluster.scheduler_address
        )
    assert code == 0, err
    assert "shard(s) on 2 Dask worker(s)" in err
    one = json.loads((tmp_path / "one" / "atlas.json").read_text())
    many = json.loads((tmp_path / "dask" / "atlas.json").read_text())
    assert many["units"] == one["units"] and many["skipped"] == one["skipped"]
    a = mine.MineState.load(atlas.default_state_path(tmp_path / "one"))
    b = mine.MineState.load(atlas.default_state_path(tmp_path / "dask"))
    assert a.equal(b)


def test_progress_line(capsys):
    show = mine.Progress(total=40, done=10, enabled=True)
    show(20)
    show(40, True)
    err = capsys.readouterr().err
    assert "pydeconv: atlas: 20/40 images" in err and "images/s, ETA" in err
    assert "\rpydeconv: atlas: 40/40 images" in err and err.endswith("\n")
    quiet = mine.Progress(total=40, enabled=False)
    quiet(20, True)
    assert capsys.readouterr().err == ""


def test_mined_position_that_is_not_the_engines_max(setup, monkeypatch):
    """A mined position the engine's at="max" does not choose: a near-tie (float rounding of
    another batch) is projected from the mined position and logged; more is an error."""
    net, _, images = setup
    paths = sorted(images.glob("im*.png"))[:4]
    st = mine.mine(net, paths, ["conv2_3"], k=1, batch_size=4)
    _, _, w = st.shapes["conv2_3"]
    xin = pimg.load(st.images[int(st.ids["conv2_3"][0, 0])], net)
    _, trace = net.forward(xin, keep=["conv2_3"])
    fmap = np.array(trace.activation("conv2_3")[0, 0])
    y, x = divmod(int(np.argmin(fmap)), w)  # surely not the maximum
    st.pos["conv2_3"][0, 0] = y * w + x
    with pytest.raises(pydeconv.PydeconvError, match="was the state mined with another model"):
        atlas.project_units(net, st)
    monkeypatch.setattr(atlas, "NEAR_TIE", 1e9)
    logged = []
    units = atlas.project_units(net, st, log=logged.append)
    assert any("1 unit(s) had a near-tie" in m for m in logged)
    proj = net.project(trace, "conv2_3", channel=0, at=(y, x))[0]
    crop = pimg.mask_to_receptive_field(proj, net, "conv2_3", y, x)
    want = np.asarray(atlas._small(pimg.render(crop, net.preprocess["channel_order"])), dtype=int)
    got = np.asarray(Image.open(io.BytesIO(units[("conv2_3", 0, 0)][0])), dtype=int)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1


def test_dask_without_the_extra_is_one_line(setup, tmp_path, capsys, monkeypatch):
    import sys

    _, model, images = setup
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails: not installed
    code, _, err = run(
        capsys, "atlas", model, images, "--layers", "conv2_3", "-k", "2", "-o", tmp_path / "o",
        "--dask", "tcp://127.0.0.1:1",
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1
    assert "pip install 'pydeconv[dask]'" in err and not (tmp_path / "o").exists()


def test_class_ranking_end_to_end(setup, tmp_path, capsys):
    """--class C: each channel's top-k by relevance (activation x gradient of class C's logit,
    pydeconv.analysis.relevance), equal to a brute force over single-image forwards."""
    from pydeconv.analysis import imageset
    from pydeconv.analysis.relevance import relevance

    net, model, images = setup
    out = tmp_path / "rel"
    code, _, err = run(
        capsys, "atlas", model, images, "--layers", "conv2_3", "-o", out, "-k", "3", "--class",
        "1", "--top-channels", "2", "--batch-size", "1",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads((out / "atlas.json").read_text())
    assert doc["ranking"] == "relevance" and doc["class"] == 1
    paths = [p for p in imageset.collect([images]) if p.name != "zz-broken.png"]
    scores = []
    for p in paths:
        _, trace = net.forward(pimg.load(p, net), keep=["conv2_3"])
        scores.append(relevance(net, trace, "conv2_3", 1)[0])
    r = np.stack(scores)  # (images, C, H, W)
    c, h, w = r.shape[1:]
    best = r.reshape(len(paths), c, -1)
    for ch in range(c):
        per_image = best[:, ch].max(axis=1)
        top = np.argsort(-per_image, kind="stable")[:3]
        got = doc["units"]["conv2_3"][ch]
        assert [u["path"] for u in got] == [str(paths[i]) for i in top]
        np.testing.assert_allclose([u["value"] for u in got], per_image[top], rtol=1e-5)
        for u, i in zip(got, top):
            assert (u["y"], u["x"]) == divmod(int(best[i, ch].argmax()), w)
    # --top-channels 2: the two channels with the strongest best unit are shown, all are listed
    strongest = sorted(np.argsort(-best.max(axis=(0, 2)), kind="stable")[:2].tolist())
    assert doc["shown"]["conv2_3"] == strongest
    assert sorted(p.name for p in (out / "layer_conv2_3").glob("c*.png")) == [
        f"c{ch:04d}.png" for ch in strongest
    ]
    assert len(doc["units"]["conv2_3"]) == c


def test_shown_channels(setup):
    net, model, images = setup
    st = mine.mine(net, sorted(images.glob("*.png"))[:6], ["conv1_2"], k=2, batch_size=2)
    c = net.layer_info("conv1_2")["shape"][0]
    assert atlas.shown_channels(st)["conv1_2"] == list(range(c))
    assert atlas.shown_channels(st, [3, 1, 3])["conv1_2"] == [1, 3]
    top = atlas.shown_channels(st, 3)["conv1_2"]
    strength = st.values["conv1_2"][:, 0]
    assert top == sorted(np.argsort(-strength, kind="stable")[:3].tolist())
    with pytest.raises(pydeconv.errors.ChannelError, match="out of range"):
        atlas.shown_channels(st, [c])
    with pytest.raises(pydeconv.errors.ChannelError, match=">= 1"):
        atlas.shown_channels(st, 0)
