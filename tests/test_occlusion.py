"""pydeconv occlude (Zeiler & Fergus Fig. 7): the maps against a brute-force loop of single-image
NumPy forwards (tests/npref.py), the square's positions at the edges, a detector's score, the
report in a browser, and bad input."""

from __future__ import annotations

import json

import darknet_files
import models
import npref
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import detect
from pydeconv import image as pimg
from pydeconv.analysis import extras, occlusion, outputs
from pydeconv.cli import main
from pydeconv.errors import ChannelError, LayerNotFoundError, PydeconvError


def _photo(path, h=50, w=41, seed=0):
    rng = np.random.default_rng(seed)
    # smooth blobs rather than noise, so that occluding a region changes something coherent
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [128 + 100 * np.sin(yy / (5 + c) + xx / (7 - c)) * np.cos(xx / 9 + c) for c in range(3)],
        axis=2,
    ) + rng.normal(0, 10, (h, w, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path)
    return path


def _net(kind, labels=True):
    graph, params = {
        "zfnet": lambda: models.zfnet_like(seed=3, size=37),
        "dag": lambda: models.small_dag(seed=4),
    }[kind]()
    if labels:
        k = int(
            np.prod(
                npref.forward(graph, params, np.zeros((1, *graph["input"]["shape"])))[0][
                    graph["outputs"][0]
                ].shape[1:]
            )
        )
        graph["labels"] = [f"label{i}" for i in range(k)]
    return graph, params, pydeconv.build(graph, params)


def _brute_force(graph, params, x, layer, channel, size, ys, xs, fill):
    """Per position: a fresh copy of the input with the square filled, one NumPy forward."""
    out = graph["outputs"][0]
    act = np.zeros((len(ys), len(xs)))
    probs = np.zeros((len(ys), len(xs), 0)).tolist()
    for i, top in enumerate(ys):
        for j, left in enumerate(xs):
            xo = x.astype(np.float64).copy()
            for c in range(xo.shape[1]):
                xo[0, c, top : top + size, left : left + size] = fill[c]
            acts, _ = npref.forward(graph, params, xo)
            act[i, j] = acts[layer][0, channel].sum()
            z = acts[out][0].reshape(-1)
            if graph["layers"][-1]["kind"] != "softmax":
                z = np.exp(z - z.max())
                z = z / z.sum()
            probs[i][j] = z
    return act, np.asarray(probs)


@pytest.mark.parametrize(
    "kind,layer,size,stride,fill,batch",
    [
        ("zfnet", "conv3", 7, 4, "mean", 3),  # 37 = 0..28 step 4, then 30 flush with the edge
        ("zfnet", "relu4", 10, 9, 0.7, 8),  # 0, 9, 18, 27 fits exactly
        ("dag", "relu3", 3, 2, "grey", 5),  # 12 x 10 input; net ends in linear: softmax applied
    ],
)
def test_maps_equal_brute_force(tmp_path, kind, layer, size, stride, fill, batch):
    graph, params, net = _net(kind)
    x = pimg.load(_photo(tmp_path / "p.png"), net)
    res = occlusion.occlude(net, x, layer, size=size, stride=stride, fill=fill, batch=batch)
    _, h, w = net.input_shape
    assert res.ys == occlusion.offsets(h, size, stride)
    assert res.xs == occlusion.offsets(w, size, stride)
    fills = outputs.fill_values(net, fill)
    if fill == "grey":
        pre = net.preprocess
        want = (128 * pre["scale"] - np.asarray(pre["mean"])) / np.asarray(pre["std"])
        np.testing.assert_allclose(fills, want, rtol=1e-6)
    elif fill == "mean":
        assert np.all(fills == 0)
    # the strongest map on the unoccluded image
    acts, _ = npref.forward(graph, params, x.astype(np.float64))
    a0 = acts[layer][0]
    assert res.channel == int(np.argmax(a0.reshape(a0.shape[0], -1).max(axis=1)))
    assert res.baseline_activation == pytest.approx(a0[res.channel].sum(), rel=1e-4)
    act, probs = _brute_force(graph, params, x, layer, res.channel, size, res.ys, res.xs, fills)
    npref.assert_close(res.activation, act, err_msg="(b) total activation")
    p0 = acts[graph["outputs"][0]][0].reshape(-1)
    if graph["layers"][-1]["kind"] != "softmax":
        p0 = np.exp(p0 - p0.max()) / np.exp(p0 - p0.max()).sum()
        assert res.probability_source == "softmax of the output"
    else:
        assert res.probability_source == "output (softmax layer)"
    assert res.target == int(np.argmax(p0)) and not res.target_given
    npref.assert_close(res.probability, probs[:, :, res.target], err_msg="(d) probability")
    np.testing.assert_allclose(res.top_probability, probs.max(axis=2), rtol=1e-4, atol=1e-6)
    # the most probable class wherever the runner-up is not within float rounding of it
    ordered = np.sort(probs, axis=2)
    clear = ordered[:, :, -1] - ordered[:, :, -2] > 1e-4
    assert np.array_equal(res.top_class[clear], probs.argmax(axis=2)[clear])
    # the projection is the engine's, of the strongest unit of that map
    _, trace = net.forward(x)
    want = net.project(trace, layer, channel=res.channel, at="max")[0]
    np.testing.assert_array_equal(res.projection, want)


def test_positions_cover_every_pixel_and_stay_inside():
    for extent in (1, 7, 37, 40):
        for size in range(1, extent + 1, 3):
            for stride in (1, 2, 5, 11, 100):
                offs = occlusion.offsets(extent, size, stride)
                assert offs[0] == 0 and offs[-1] == extent - size
                assert all(b > a for a, b in zip(offs, offs[1:]))
                assert all(b - a <= stride for a, b in zip(offs, offs[1:]))
                covered = np.zeros(extent, bool)
                for o in offs:
                    covered[o : o + size] = True
                assert covered.all() or stride > size  # gaps only where the step skips them
    assert occlusion.offsets(37, 7, 4) == [0, 4, 8, 12, 16, 20, 24, 28, 30]
    assert occlusion.offsets(36, 9, 9) == [0, 9, 18, 27]
    assert occlusion.offsets(10, 3, 7) == [0, 7]
    assert occlusion.offsets(10, 10, 3) == [0]
    with pytest.raises(PydeconvError, match="larger than the input"):
        occlusion.offsets(10, 11, 1)
    with pytest.raises(PydeconvError, match="stride must be a positive integer"):
        occlusion.offsets(10, 3, 0)


def test_class_given_batch_and_memory(tmp_path):
    graph, params, net = _net("zfnet")
    x = pimg.load(_photo(tmp_path / "p.png"), net)
    a = occlusion.occlude(net, x, "conv2", size=9, stride=7, target=4, channel=2, batch=4)
    assert a.target == 4 and a.target_given and a.channel == 2
    # a memory budget below one image's estimate: batch 1, the same numbers
    b = occlusion.occlude(
        net, x, "conv2", size=9, stride=7, target=4, channel=2, batch=4, max_memory=1
    )
    assert a.batch == 4 and b.batch == 1
    np.testing.assert_allclose(a.activation, b.activation, rtol=1e-5)
    np.testing.assert_allclose(a.probability, b.probability, rtol=1e-5)
    assert outputs.batch_for(net, 64, 3 * outputs.per_sample_bytes(net) + 5) == 3


# --- a detector ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def darknet_net(tmp_path_factory):
    folder = tmp_path_factory.mktemp("darknet")
    cfg, weights = darknet_files.write(folder, "tiny", darknet_files.V3_TINY, seed=5)
    return cfg, weights, pydeconv.load(cfg, weights=weights)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def test_detection_scores_equal_single_forwards(tmp_path, darknet_net):
    _, _, net = darknet_net
    x = pimg.load(_photo(tmp_path / "p.png", 70, 60), net)
    hs = detect.heads(net)
    dets, _ = detect.detect(net, x, head_list=hs, conf=0.0, max_det=50)
    det = dets[0]
    res = occlusion.occlude(net, x, "conv_6", size=16, stride=12, detection=det, heads=hs, batch=5)
    assert res.probability is None and res.top_class is None
    assert res.detection["layout"] == "darknet" and res.detection["channel"] == det.channel
    # the formula at the unoccluded image gives the detection's own score
    outs, _ = net.forward(x)
    s0, l0 = occlusion.detection_score(outs, hs[det.head], det)
    assert s0[0] == pytest.approx(det.score, rel=1e-6) and l0[0] == pytest.approx(det.logit)
    fill = outputs.fill_values(net, "mean")
    for i, top in enumerate(res.ys):
        for j, left in enumerate(res.xs):
            xo = x.copy()
            xo[:, :, top : top + 16, left : left + 16] = fill[:, None, None]
            o, trace = net.forward(xo)
            t = o[det.layer][0].astype(np.float64)
            logit = t[det.channel, det.y, det.x]
            obj = t[det.objectness_channel, det.y, det.x]
            assert res.logit[i, j] == pytest.approx(logit, rel=1e-5, abs=1e-6)
            assert res.score[i, j] == pytest.approx(_sig(obj) * _sig(logit), rel=1e-5, abs=1e-9)
            assert res.activation[i, j] == pytest.approx(
                float(trace.activation("conv_6")[0, res.channel].sum(dtype=np.float64)),
                rel=1e-5,
            )


def test_cli_detection_report(tmp_path, darknet_net, capsys, report_browser):
    cfg, _, net = darknet_net
    image = _photo(tmp_path / "p.png", 70, 60)
    out = tmp_path / "det"
    argv = ["occlude", cfg, image, "--detection", "2", "--conf", "0", "--size", "20"]
    rc = main([str(a) for a in argv + ["--stride", "11", "-o", str(out)]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert "score of detection 2" in text
    doc = json.loads((out / "occlusion.json").read_text())
    assert doc["detection"]["rank"] == 2 and doc["probability"] is None
    assert doc["layer"] == doc["detection"]["layer"]  # --layer defaults to the detection's
    assert np.asarray(doc["score"]).shape == (
        len(doc["positions"]["y"]),
        len(doc["positions"]["x"]),
    )
    assert (out / "score.png").is_file()
    report_browser(out, tmp_path / "shots")


# --- the command line and the report -------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("occ")
    graph, params, net = _net("zfnet")
    net.save(str(d / "zf.npz"))
    return d / "zf.npz"


def test_cli_report(tmp_path, model_file, capsys, report_browser):
    image = _photo(tmp_path / "p.png")
    out = tmp_path / "occ"
    argv = ["occlude", model_file, image, "--layer", "conv3", "--size", "8", "--stride", "6"]
    rc = main([str(a) for a in argv + ["--batch", "4", "--fill", "grey", "-o", out]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert "total activation unoccluded" in text and "open " in text
    doc = json.loads((out / "occlusion.json").read_text())
    assert doc["size"] == 8 and doc["stride"] == 6 and doc["fill"]["spec"] == "grey"
    assert doc["positions"]["y"] == occlusion.offsets(37, 8, 6)
    assert doc["class_name"] == f"label{doc['class']}" and doc["model"] == str(model_file)
    net = pydeconv.load(model_file)
    x = pimg.load(image, net)
    res = occlusion.occlude(net, x, "conv3", size=8, stride=6, fill="grey")
    np.testing.assert_array_equal(np.asarray(doc["activation"]), res.activation)
    np.testing.assert_array_equal(np.asarray(doc["top_class"]), res.top_class)
    rows = (out / "occlusion.csv").read_text().splitlines()
    assert rows[0].startswith("row,col,top,left,activation,probability")
    assert len(rows) == 1 + res.activation.size
    for name in ("input", "activation", "projection", "probability", "top_class"):
        assert (out / f"{name}.png").is_file()
    report_browser(out, tmp_path / "shots")
    # an existing report is replaced only with --force
    assert main([str(a) for a in argv + ["-o", out]]) == 1
    assert "exists" in capsys.readouterr().err
    assert main([str(a) for a in argv + ["-o", out, "--force"]]) == 0


def test_report_without_matplotlib(tmp_path, model_file, monkeypatch, report_browser):
    real = extras.optional
    monkeypatch.setattr(
        extras, "optional", lambda m: None if m.startswith("matplotlib") else real(m)
    )
    monkeypatch.setattr(extras, "pyplot", lambda: None)
    net = pydeconv.load(model_file)
    x = pimg.load(_photo(tmp_path / "p.png"), net)
    res = occlusion.occlude(net, x, "conv2", size=10, stride=9)
    occlusion.write_report(res, net, x, tmp_path / "plain", str(model_file), "p.png")
    html = (tmp_path / "plain" / "index.html").read_text()
    assert extras.PLOTS_NOTE.split(":")[0] in html
    img = Image.open(tmp_path / "plain" / "activation.png")
    assert img.width > 240  # the Pillow heat map: the image enlarged, a ramp bar beside it
    report_browser(tmp_path / "plain", tmp_path / "shots")


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--layer", "fc6"], "not a feature map"),
        (["--layer", "nope"], "nope"),
        (["--layer", "conv3", "--class", "10"], "class 10 is out of range"),
        (["--layer", "conv3", "--channel", "99"], "channel 99 out of range"),
        (["--layer", "conv3", "--size", "38"], "larger than the input"),
        (["--layer", "conv3", "--size", "1", "--stride", "1"], "1369 square positions"),
        (["--layer", "conv3", "--fill", "blue"], "fill must be"),
        (["--layer", "conv3", "--detection", "1"], "no detection head"),
        (["--layer", "conv3", "--anchors", "1,2"], "go with --detection"),
        ([], "give --layer"),
    ],
)
def test_cli_errors(tmp_path, model_file, capsys, monkeypatch, extra, words):
    monkeypatch.setattr(occlusion, "MAX_POSITIONS", 1000)
    image = _photo(tmp_path / "p.png")
    out = tmp_path / "o"
    rc = main([str(a) for a in ["occlude", model_file, image, *extra, "-o", out]])
    err = capsys.readouterr().err
    assert rc == 1 and words in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_api_errors(tmp_path, model_file):
    net = pydeconv.load(model_file)
    x = pimg.load(_photo(tmp_path / "p.png"), net)
    with pytest.raises(LayerNotFoundError):
        occlusion.occlude(net, x, "conv9")
    with pytest.raises(ChannelError):
        occlusion.occlude(net, x, "conv3", channel=-1)
    with pytest.raises(PydeconvError, match="shape"):
        occlusion.occlude(net, x[:, :, :10], "conv3")
    with pytest.raises(PydeconvError, match="batch size"):
        occlusion.occlude(net, x, "conv3", batch=0)
    with pytest.raises(PydeconvError, match="finite"):
        occlusion.occlude(net, x, "conv3", fill=float("nan"))
    with pytest.raises(PydeconvError, match="unknown rule"):
        occlusion.occlude(net, x, "conv3", rule="lrp")


def test_interrupted_run_leaves_no_report(tmp_path, model_file, monkeypatch):
    net = pydeconv.load(model_file)
    x = pimg.load(_photo(tmp_path / "p.png"), net)
    res = occlusion.occlude(net, x, "conv3", size=10, stride=9)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(occlusion.heatmap, "class_map", boom)
    with pytest.raises(KeyboardInterrupt):
        occlusion.write_report(res, net, x, tmp_path / "r", "m", "i")
    assert not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]


def test_real_yolov3_tiny_cup(tmp_path, capsys):
    """The real YOLOv3-tiny (fetched once, as the demo does) on the coffee photo: occluding the
    cup takes its score down most where the square sits on the cup."""
    from pydeconv.demo import DATA_DIR
    from pydeconv.fetch import FetchError, fetch_yolov3_tiny

    try:
        fetch_yolov3_tiny()
    except FetchError as exc:  # offline: nothing to test against
        pytest.skip(f"YOLOv3-tiny could not be fetched: {exc}")
    out = tmp_path / "cup"
    argv = ["occlude", "yolov3-tiny", DATA_DIR / "coffee.jpg", "--detection", "1"]
    rc = main([str(a) for a in argv + ["--size", "64", "--stride", "32", "-o", out]])
    text, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads((out / "occlusion.json").read_text())
    det = doc["detection"]
    assert det["label"] == "cup" and det["score"] == pytest.approx(0.613, abs=0.005)
    score = np.asarray(doc["score"])
    i, j = np.unravel_index(np.argmin(score), score.shape)
    x1, y1, x2, y2 = det["box"]
    assert x1 <= doc["centres"]["x"][j] <= x2 and y1 <= doc["centres"]["y"][i] <= y2
    assert score[i, j] < 0.5 * det["score"]
    # a square in the image's corner, far from the cup, leaves the score as it was
    assert score[0, 0] == pytest.approx(det["score"], abs=0.05)
