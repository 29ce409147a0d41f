"""pydeconv.analysis.evolution (Fig. 4): three checkpoints of one small architecture made here;
each channel's strongest unit over a set of images against a brute-force NumPy search over the
forward activations, its projection against net.project, the grid and JSON, the report in a
real browser, the CLI, and the errors (different architectures, channels, layers)."""

from __future__ import annotations

import json

import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import image as pimg
from pydeconv.analysis import evolution
from pydeconv.cli import main
from pydeconv.errors import ChannelError, GraphError, ShapeError

PREPROCESS = {
    "size": [37, 37],
    "channel_order": "RGB",
    "scale": 1 / 255,
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
}
LAYER, CHANNELS = "relu3", [1, 5, 9]


def _save(path, graph, params, size=37):
    graph = dict(graph, preprocess=dict(PREPROCESS, size=[size, size]))
    pydeconv.build(graph, params).save(str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints: seed 0, seed 0 with its weights moved halfway to seed 1's, seed 1; five
    images and an unreadable file."""
    d = tmp_path_factory.mktemp("evolution")
    g0, p0 = models.zfnet_like(seed=0)
    _, p1 = models.zfnet_like(seed=1)
    mid = {k: ((p0[k] + p1[k]) / 2).astype(np.float32) for k in p0}
    ckpts = [
        _save(d / "epoch1.npz", g0, p0),
        _save(d / "epoch5.npz", g0, mid),
        _save(d / "epoch9.npz", g0, p1),
    ]
    rng = np.random.default_rng(8)
    imgs = d / "imgs"
    imgs.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 37 + i, 3), dtype=np.uint8), "RGB").save(
            imgs / f"im{i}.png"
        )
    (imgs / "zz-broken.png").write_bytes(b"not a png")
    return d, ckpts, imgs


def test_strongest_units_and_projections(files):
    _, ckpts, imgs = files
    res = evolution.run(ckpts, [imgs], LAYER, CHANNELS, rule="guided", batch_size=2, threads=1)
    paths = [str(p) for p in sorted(imgs.glob("*.png"))]
    assert res.images == paths
    assert [p for p, _ in res.skipped] == [str(imgs / "zz-broken.png")]
    assert len(res.units) == 3 and all(len(u) == 3 for u in res.units)
    for m, ckpt in enumerate(ckpts):
        net = pydeconv.load(str(ckpt))
        x = np.concatenate([pimg.load(p, net) for p in paths[:5]])
        act, _ = net.forward(x, upto=LAYER)
        for k, c in enumerate(CHANNELS):
            flat = act[:, c].reshape(-1)  # image-major, then row-major: first max wins ties
            best = int(np.argmax(flat))
            image, pos = divmod(best, act.shape[2] * act.shape[3])
            u = res.units[m][k]
            assert (u.channel, u.image, u.y, u.x) == (c, image, *divmod(pos, act.shape[3]))
            assert u.value == pytest.approx(float(flat[best]), rel=1e-5)
            _, trace = net.forward(x[image : image + 1])
            want = net.project(trace, LAYER, channel=c, at=(u.y, u.x), rule="guided")[0]
            np.testing.assert_allclose(res.projections[m][k], want, rtol=1e-5, atol=1e-6)
            assert res.fields[m][k] == pimg.receptive_field(net, LAYER, u.y, u.x)
    # the checkpoints differ, so their strongest units' projections do too
    assert not np.array_equal(res.projections[0][0], res.projections[2][0])


def test_report_in_the_browser(files, tmp_path, report_browser):
    _, ckpts, imgs = files
    res = evolution.run(ckpts, [imgs / "im1.png", imgs / "im3.png"], LAYER, CHANNELS)
    out = evolution.write_report(res, tmp_path / "evo")
    assert sorted(p.name for p in out.iterdir()) == [
        "evolution.json",
        "evolution.png",
        "index.html",
    ]
    data = json.loads((out / "evolution.json").read_text())
    assert data["format"] == "pydeconv-evolution" and data["layer"] == LAYER
    assert data["channels"] == CHANNELS and data["models"] == [str(c) for c in ckpts]
    assert [len(c["units"]) for c in data["checkpoints"]] == [3, 3, 3]
    u = data["checkpoints"][1]["units"][2]
    v = res.units[1][2]
    assert (u["channel"], u["image"], u["y"], u["x"]) == (9, v.image, v.y, v.x)
    assert u["path"] == str(imgs / ("im1.png" if v.image == 0 else "im3.png"))
    grid = Image.open(out / "evolution.png")
    assert grid.width > 3 * 96 and grid.height > 3 * 96  # 3 x 3 tiles, enlarged to >= 96 px
    report_browser(out, tmp_path / "shots")


def test_cli(files, tmp_path, capsys):
    d, ckpts, imgs = files
    out = tmp_path / "cli"
    argv = ["evolution", *map(str, ckpts), "--image", str(imgs), "--layer", LAYER]
    assert main([*argv, "--channels", "1,5,9", "-o", str(out)]) == 0
    assert "skipped 1 unreadable image" in capsys.readouterr().out
    data = json.loads((out / "evolution.json").read_text())
    assert data["rule"] == "deconvnet" and len(data["skipped"]) == 1
    with pytest.raises(SystemExit) as exc:  # argparse: a usage error
        main([*argv, "--channels", "1,x", "-o", str(tmp_path / "bad")])
    assert exc.value.code == 2 and "1,5,9" in capsys.readouterr().err
    assert main([*argv, "--channels", "99", "-o", str(tmp_path / "bad")]) != 0
    assert "channel 99 out of range" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_different_architectures_are_named(files, tmp_path):
    _, ckpts, imgs = files
    g, p = models.zfnet_like(seed=0)
    g2 = json.loads(json.dumps(g))
    g2["layers"][2]["name"] = "norm1"  # lrn1 renamed
    for layer in g2["layers"]:
        layer["inputs"] = ["norm1" if i == "lrn1" else i for i in layer["inputs"]]
    other = _save(tmp_path / "renamed.npz", g2, p)
    with pytest.raises(GraphError, match=r"renamed.npz: layer #2 is 'norm1'.*has 'lrn1'"):
        evolution.run([ckpts[0], other], [imgs / "im0.png"], LAYER, [0])
    g3, p3 = models.zfnet_like(seed=0, size=41)
    bigger = _save(tmp_path / "bigger.npz", g3, p3, size=41)
    with pytest.raises(GraphError, match="bigger.npz: input shape"):
        evolution.run([ckpts[0], bigger], [imgs / "im0.png"], LAYER, [0])


def test_errors(files):
    _, ckpts, imgs = files
    with pytest.raises(ShapeError, match="not a feature map"):
        evolution.run(ckpts[:1], [imgs], "fc6", [0])
    with pytest.raises(ChannelError, match="channel 16 out of range"):
        evolution.run(ckpts[:1], [imgs], LAYER, [16])
    with pytest.raises(pydeconv.errors.ImageError):
        evolution.run(ckpts[:1], [imgs / "nothing-here.png"], LAYER, [0])
