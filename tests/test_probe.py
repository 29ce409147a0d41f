"""The retrain-depth probe (pydeconv.analysis.probe): its features against NumPy/PyTorch
reimplementations, its accuracies against a scikit-learn pipeline built here from the same
features, the stop-layer rule, a Fashion-MNIST run end to end in a browser, and bad input."""

from __future__ import annotations

import csv
import json

import models
import npref
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import cli
from pydeconv import image as pimg
from pydeconv.analysis import fashion_mnist as fm
from pydeconv.analysis import probe
from pydeconv.errors import LayerNotFoundError, PydeconvError

PRE = {"size": [20, 20], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
LAYERS = ["relu1_2", "pool1", "relu2_3", "pool2"]
needs_fmnist = pytest.mark.skipif(
    not fm.files("train")[0].is_file(),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)


def _net():
    graph, params = models.vgg_like(seed=3, size=20)
    graph["preprocess"] = dict(PRE)
    return graph, params, pydeconv.build(graph, params)


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    """A Fashion-MNIST sample: 20 training and 10 test images per class (300 images)."""
    if not fm.files("train")[0].is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    out = tmp_path_factory.mktemp("fmnist")
    fm.export(out, 20, "train", seed=1)
    fm.export(out, 10, "test", seed=1)
    return out


def _grey_images(folder, n, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(p)
        paths.append(p)
    return paths


# --- features --------------------------------------------------------------------------------


def test_grey_image_into_rgb_model_repeats_the_channel(tmp_path):
    _, _, net = _net()
    (path,) = _grey_images(tmp_path, 1)
    x = pimg.load(path, net)
    assert x.shape == (1, 3, 20, 20)
    assert np.array_equal(x[0, 0], x[0, 1]) and np.array_equal(x[0, 0], x[0, 2])


@pytest.mark.parametrize("grid", [None, 1, 3, 4])
def test_features_match_numpy_and_torch(tmp_path, grid):
    torch = pytest.importorskip("torch")
    graph, params, net = _net()
    paths = _grey_images(tmp_path, 7)
    layers = probe.check_layers(net, LAYERS[::-1])
    assert layers == LAYERS  # execution order
    skipped = []
    ids, feats = probe.features(net, paths, layers, grid=grid, batch_size=3, skipped=skipped)
    assert ids == list(range(7)) and skipped == []
    x = np.concatenate([pimg.load(p, net) for p in paths])
    acts, _ = npref.forward(graph, params, x)
    for layer in layers:
        a = torch.from_numpy(acts[layer])
        if grid is None:
            want = a.mean(dim=(2, 3)).numpy()
        else:
            want = torch.nn.functional.adaptive_avg_pool2d(a, grid).reshape(len(paths), -1).numpy()
        assert feats[layer].shape == want.shape
        np.testing.assert_allclose(feats[layer], want, rtol=1e-4, atol=1e-5, err_msg=layer)


def test_grid_pooling_equals_adaptive_avg_pool_on_any_size():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for h, w, g in ((1, 1, 3), (2, 5, 3), (7, 3, 4), (13, 13, 5), (6, 6, 6), (3, 9, 16)):
        a = rng.standard_normal((2, 3, h, w))
        want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(a), g).reshape(2, -1)
        np.testing.assert_allclose(probe.pool(a, g), want.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(probe.pool(a), a.mean(axis=(2, 3)), rtol=1e-12)


def test_unreadable_images_are_skipped_with_their_ids(tmp_path):
    _, _, net = _net()
    paths = _grey_images(tmp_path, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    skipped = []
    ids, feats = probe.features(
        net, [paths[0], bad, paths[1], paths[2]], ["pool1"], skipped=skipped
    )
    assert ids == [0, 2, 3] and feats["pool1"].shape == (3, 24)
    assert skipped[0][0] == str(bad) and "cannot decode" in skipped[0][1]


# --- the stop layer --------------------------------------------------------------------------


def _stop_reference(acc, tol):
    for i in range(len(acc)):
        if acc[i] >= max(acc[i:]) - tol - 1e-12:
            return i
    raise AssertionError


@pytest.mark.parametrize(
    ("acc", "tol", "want"),
    [
        ([0.5, 0.7, 0.9, 0.85], 0.01, 2),  # rises, then falls: stop at the peak
        ([0.5, 0.895, 0.9], 0.01, 1),  # the last step gains less than tol
        ([0.5, 0.895, 0.9], 0.0, 2),
        ([0.9, 0.8, 0.7], 0.01, 0),  # falls from the first layer on
        ([0.6, 0.6, 0.6], 0.0, 0),  # flat: nothing gained by going deeper
        ([0.5, 0.8, 0.8, 0.95], 0.01, 3),  # a plateau, then a real gain above it
        ([0.5, 0.8, 0.75, 0.805], 0.01, 1),  # dip and recovery within tol
        ([0.42], 0.01, 0),
    ],
)
def test_stop_layer_rule(acc, tol, want):
    assert probe.stop_layer(acc, tol) == want == _stop_reference(acc, tol)


def test_stop_layer_on_random_curves():
    rng = np.random.default_rng(0)
    for _ in range(200):
        acc = np.round(rng.uniform(0, 1, rng.integers(1, 8)), 2)
        tol = float(rng.choice([0.0, 0.01, 0.05]))
        i = probe.stop_layer(acc, tol)
        assert i == _stop_reference(list(acc), tol)
        assert acc[i] >= acc[i:].max() - tol - 1e-12


# --- the probe against scikit-learn ----------------------------------------------------------


@needs_fmnist
@pytest.mark.parametrize("grid", [None, 2])
def test_accuracies_equal_a_sklearn_pipeline(fmnist, grid):
    pipeline = pytest.importorskip("sklearn.pipeline")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    linear_model = pytest.importorskip("sklearn.linear_model")
    _, _, net = _net()
    result = probe.run(net, fmnist, ["pool2", "relu1_2"], grid=grid, c=0.5, seed=3)
    split = probe.split_data(fmnist)
    assert result["train_images"] == 200 and result["test_images"] == 100
    assert result["chance"] == pytest.approx(0.1)
    _, train = probe.features(net, split.train, result["layers"], grid=grid)
    _, test = probe.features(net, split.test, result["layers"], grid=grid)
    for row in result["results"]:
        layer = row["layer"]
        clf = pipeline.make_pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(C=0.5, max_iter=5000),
        )
        clf.fit(train[layer], split.train_labels)
        assert row["train_accuracy"] == np.mean(clf.predict(train[layer]) == split.train_labels)
        assert row["test_accuracy"] == np.mean(clf.predict(test[layer]) == split.test_labels)
        assert row["converged"]
    accs = [r["test_accuracy"] for r in result["results"]]
    assert result["stop_layer"] == result["layers"][_stop_reference(accs, 0.01)]
    assert max(accs) > 0.5  # random conv features still separate Fashion-MNIST well above chance


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    for cls, n in (("a", 8), ("b", 5), ("c", 2)):
        _grey_images(tmp_path / cls, n)
    s = probe.split_data(tmp_path, test_fraction=0.25, seed=1)
    assert np.bincount(s.test_labels).tolist() == [2, 1, 1]
    assert np.bincount(s.train_labels).tolist() == [6, 4, 1]
    assert not set(s.train) & set(s.test)
    again = probe.split_data(tmp_path, test_fraction=0.25, seed=1)
    other = probe.split_data(tmp_path, test_fraction=0.25, seed=2)
    assert again.test == s.test and other.test != s.test


# --- end to end ------------------------------------------------------------------------------


@needs_fmnist
def test_cli_on_fashion_mnist_in_the_browser(fmnist, tmp_path, capsys, report_browser):
    _, _, net = _net()
    model = tmp_path / "net.npz"
    net.save(model)
    out = tmp_path / "report"
    argv = ["probe", str(model), str(fmnist), "--layers", "pool2,relu1_2,pool1", "-o", str(out)]
    assert cli.main(argv + ["--pool", "grid", "2"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "probe.json").read_text())
    assert result["layers"] == ["relu1_2", "pool1", "pool2"] and result["pool"] == "grid 2"
    assert result["model"] == str(model) and result["seed"] == 0
    assert len(result["classes"]) == 10 and result["train_per_class"] == [20] * 10
    assert result["stop_layer"] in result["layers"]
    assert f"stops improving after {result['stop_layer']}" in printed
    with open(out / "probe.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["layer"] for r in rows] == result["layers"]
    assert [float(r["test_accuracy"]) for r in rows] == [
        r["test_accuracy"] for r in result["results"]
    ]
    page = (out / "index.html").read_text()
    assert "stops improving after" in page and "probe.png" in page
    report_browser(out, tmp_path / "shots")
    assert cli.main(argv) == 1  # the report exists: --force
    assert cli.main(argv + ["--force"]) == 0
    assert json.loads((out / "probe.json").read_text())["pool"] == "gap"


@needs_fmnist
def test_without_matplotlib_numbers_and_a_note(fmnist, tmp_path, monkeypatch):
    _, _, net = _net()
    result = probe.run(net, fmnist, ["pool1"])
    monkeypatch.setattr(probe.extras, "pyplot", lambda: None)
    probe.write(result, tmp_path / "r")
    assert not (tmp_path / "r" / "probe.png").exists()
    assert "pip install" in (tmp_path / "r" / "index.html").read_text()
    assert json.loads((tmp_path / "r" / "probe.json").read_text())["stop_layer"] == "pool1"


# --- bad input -------------------------------------------------------------------------------


def test_errors(tmp_path, capsys):
    _, _, net = _net()
    one = tmp_path / "one"
    _grey_images(one / "cats", 3)
    _grey_images(one / "dogs", 1)
    with pytest.raises(PydeconvError, match="class 'dogs' has 1 image"):
        probe.run(net, one, ["pool1"])
    only = tmp_path / "only"
    _grey_images(only / "cats", 3)
    with pytest.raises(PydeconvError, match="at least two class folders, found 1"):
        probe.run(net, only, ["pool1"])
    with pytest.raises(LayerNotFoundError, match="nope"):
        probe.run(net, one, ["pool1", "nope"])
    graph, params = models.zfnet_like()
    zf = pydeconv.build(graph, params)
    with pytest.raises(PydeconvError, match="layer fc6: output 20 is not a feature map"):
        probe.check_layers(zf, ["pool1", "fc6"])
    with pytest.raises(PydeconvError, match="named twice"):
        probe.check_layers(net, ["pool1", "pool1"])
    with pytest.raises(PydeconvError, match="grid must be in"):
        probe.run(net, one, ["pool1"], grid=0)
    with pytest.raises(PydeconvError, match="max_iter must be"):
        probe.run(net, one, ["pool1"], max_iter=0)
    cats = tmp_path / "cats"
    _grey_images(cats / "a", 3)
    _grey_images(cats / "b", 3)
    old = pydeconv.set_limits(max_tensor_bytes=1000)
    try:
        with pytest.raises(PydeconvError, match=r"features of 6 images .* past max_tensor_bytes"):
            probe.run(net, cats, ["pool1", "relu2_3"], grid=2)
    finally:
        pydeconv.set_limits(old)
    split = tmp_path / "split"
    _grey_images(split / "train" / "a", 2)
    _grey_images(split / "train" / "b", 2)
    _grey_images(split / "test" / "a", 1)
    _grey_images(split / "test" / "c", 1)
    with pytest.raises(PydeconvError, match="different class folders .*b, c"):
        probe.split_data(split)
    model = tmp_path / "net.npz"
    net.save(model)
    out = str(tmp_path / "out")
    for argv, message in (
        (["--layers", "pool1"], "class 'dogs' has 1 image"),
        (["--layers", "pool1", "--pool", "grid", "x"], "--pool takes 'gap' or 'grid G'"),
        (["--layers", "pool1,nope"], "nope"),
    ):
        assert cli.main(["probe", str(model), str(one), "-o", out] + argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("pydeconv: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
