"""How specialised each layer is (pydeconv.analysis.specialise): every number against a
reimplementation (NumPy float64 forward, SciPy's entropy and cosine distances) on an atlas.json
written here from a small net's top-k, the report in a browser, and bad input."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import models
import npref
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import cli
from pydeconv import image as pimg
from pydeconv.analysis import specialise as sp
from pydeconv.errors import PydeconvError

PRE = {"size": [20, 20], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
LAYERS = ["pool1", "relu2_3"]
CLASSES = ["ankle", "bag", "coat"]
K = 4


def _images(folder, n, seed):
    """Greyscale images whose brightness differs by class, so the top-k lean to some class."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        base = rng.integers(0, 256 - 60 * seed, (28, 28))
        p = folder / f"{i:02d}.png"
        Image.fromarray((base + 30 * seed).astype(np.uint8), "L").save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small net (saved), 3 class folders of 5 images, and an atlas.json of its top-4 per
    channel at two layers (each image at most once per channel, at its strongest position)."""
    root = tmp_path_factory.mktemp("spec")
    graph, params = models.vgg_like(seed=4, size=20)
    graph["preprocess"] = dict(PRE)
    net = pydeconv.build(graph, params)
    net.save(root / "net.npz")
    paths = [p for c, name in enumerate(CLASSES) for p in _images(root / "data" / name, 5, c)]
    x = np.concatenate([pimg.load(p, net) for p in paths])
    acts, _ = npref.forward(graph, params, x)
    units = {}
    for layer in LAYERS:
        a = acts[layer]
        n, c, h, w = a.shape
        flat = a.reshape(n, c, h * w)
        pos = flat.argmax(axis=2)
        val = flat.max(axis=2)
        units[layer] = []
        for ch in range(c):
            order = sorted(range(n), key=lambda i: (-val[i, ch], i))[:K]
            units[layer].append(
                [
                    {
                        "image": i,
                        "path": str(paths[i]),
                        "y": int(pos[i, ch] // w),
                        "x": int(pos[i, ch] % w),
                        "value": float(val[i, ch]),
                    }
                    for i in order
                ]
            )
    # the last channel of pool1 keeps only one unit: no diversity, class measures still defined
    units["pool1"][-1] = units["pool1"][-1][:1]
    atlas = root / "atlas"
    atlas.mkdir()
    doc = {
        "format": "pydeconv-atlas",
        "version": 1,
        "model": str(root / "net.npz"),
        "layers": LAYERS,
        "k": K,
        "ranking": "activation",
        "class": None,
        # one path relative to the atlas folder (as an atlas written with relative paths has it)
        "images": [str(p) for p in paths[:-1]] + ["../data/coat/04.png"],
        "skipped": [],
        "units": units,
    }
    (atlas / "atlas.json").write_text(json.dumps(doc))
    (atlas / "index.html").write_text("<html></html>")
    return {"root": root, "atlas": atlas, "doc": doc, "acts": acts, "paths": paths}


def _ref_class(units, image_class):
    counts = Counter(image_class[u["image"]] for u in units)
    n = [counts.get(c, 0) for c in range(len(CLASSES))]
    p = [v / sum(n) for v in n]
    top = max(p)
    rest = sum(p) - top
    rest /= len(p) - 1
    entropy = pytest.importorskip("scipy.stats").entropy(p, base=2)
    return n, (top - rest) / (top + rest), entropy, entropy / math.log2(len(CLASSES))


def _ref_diversity(acts, layer, units):
    pdist = pytest.importorskip("scipy.spatial.distance").pdist
    if len(units) < 2:
        return None
    vecs = np.stack([acts[layer][u["image"], :, u["y"], u["x"]] for u in units])
    return float(np.mean(pdist(vecs, "cosine")))


def test_every_number_matches_a_reimplementation(setup):
    result = sp.measure(setup["atlas"], labels=setup["root"] / "data")
    assert result["classes"] == CLASSES and result["measures"] == list(sp.MEASURES)
    image_class = [c for c in range(3) for _ in range(5)]
    for layer in LAYERS:
        rows = result["channels"][layer]
        assert len(rows) == setup["acts"][layer].shape[1]
        for ch, (row, units) in enumerate(zip(rows, setup["doc"]["units"][layer])):
            counts, sel, ent, ent_norm = _ref_class(units, image_class)
            assert row["counts"] == counts and row["n"] == len(units)
            assert row["dominant"] == CLASSES[int(np.argmax(counts))]
            assert row["dominant_share"] == pytest.approx(max(counts) / len(units))
            assert row["selectivity"] == pytest.approx(sel, abs=1e-12)
            assert row["entropy_bits"] == pytest.approx(ent, abs=1e-12)
            assert row["entropy_norm"] == pytest.approx(ent_norm, abs=1e-12)
            want = _ref_diversity(setup["acts"], layer, units)
            if want is None:
                assert row["diversity"] is None and (layer, ch) == ("pool1", len(rows) - 1)
            else:
                assert row["diversity"] == pytest.approx(want, rel=1e-4, abs=1e-6)
        for m in sp.MEASURES:
            vals = np.array([r[m] for r in rows if r[m] is not None])
            s = result["summary"][layer][m]
            assert s["count"] == len(vals)
            assert s["mean"] == pytest.approx(vals.mean())
            assert s["median"] == pytest.approx(np.median(vals))
            assert (s["q1"], s["q3"]) == pytest.approx(tuple(np.quantile(vals, [0.25, 0.75])))
            assert (s["min"], s["max"]) == (vals.min(), vals.max())


def test_class_measures_at_the_ends():
    one = sp.class_measures([0, 9, 0, 0])
    assert one == {"selectivity": 1.0, "entropy_bits": 0.0, "entropy_norm": 0.0}
    even = sp.class_measures([3, 3, 3])
    assert even["selectivity"] == pytest.approx(0.0, abs=1e-15)
    assert even["entropy_bits"] == pytest.approx(math.log2(3))
    assert even["entropy_norm"] == pytest.approx(1.0)
    # 2 of 4 in one class, 1 + 1 in two others, one class empty: p_rest = 0.5 / 3
    two = sp.class_measures([2, 1, 1, 0])
    assert two["selectivity"] == pytest.approx((0.5 - 0.5 / 3) / (0.5 + 0.5 / 3))
    assert two["entropy_bits"] == pytest.approx(1.5)
    assert sp.class_measures([0, 0])["selectivity"] is None


def test_diversity_at_the_ends():
    assert sp.diversity(np.array([[1.0, 2.0], [2.0, 4.0]])) == pytest.approx(0.0)
    assert sp.diversity(np.array([[1.0, 0.0], [0.0, 3.0]])) == pytest.approx(1.0)
    assert sp.diversity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    # zero and NaN rows (an unreadable image) are left out
    rows = np.array([[1.0, 0.0], [0.0, 0.0], [np.nan, np.nan], [0.0, 1.0]])
    assert sp.diversity(rows) == pytest.approx(1.0)
    assert sp.diversity(np.array([[1.0, 0.0]])) is None
    assert sp.diversity(np.zeros((0, 4))) is None


def test_without_labels_only_the_diversity(setup):
    result = sp.measure(setup["atlas"])
    assert result["measures"] == ["diversity"] and result["labels"] is None
    assert "selectivity" not in result["channels"]["pool1"][0]
    with_labels = sp.measure(setup["atlas"], labels=setup["root"] / "data")
    for layer in LAYERS:
        assert [r["diversity"] for r in result["channels"][layer]] == [
            r["diversity"] for r in with_labels["channels"][layer]
        ]


def test_cli_report_in_the_browser(setup, tmp_path, capsys, report_browser):
    out = tmp_path / "spec"
    data = str(setup["root"] / "data")
    assert cli.main(["specialise", str(setup["atlas"]), "--labels", data, "-o", str(out)]) == 0
    assert "pool1: selectivity median" in capsys.readouterr().out
    result = json.loads((out / "specialisation.json").read_text())
    assert result["layers"] == LAYERS and result["k"] == K
    with open(out / "specialisation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(result["channels"][layer]) for layer in LAYERS)
    assert float(rows[0]["selectivity"]) == result["channels"]["pool1"][0]["selectivity"]
    for m in sp.MEASURES:
        assert (out / f"{m}.png").is_file()
    page = (out / "index.html").read_text()
    assert "most selective channels" in page and "cosine distance" in page
    report_browser(out, tmp_path / "shots")
    # no labels: the diversity alone; --no-diversity with labels needs no model
    out2 = tmp_path / "spec2"
    assert cli.main(["specialise", str(setup["atlas"]), "-o", str(out2)]) == 0
    assert json.loads((out2 / "specialisation.json").read_text())["measures"] == ["diversity"]
    report_browser(out2, tmp_path / "shots2")
    out3 = tmp_path / "spec3"
    argv = ["specialise", str(setup["atlas"]), "--labels", data, "--no-diversity"]
    assert cli.main(argv + ["--model", str(tmp_path / "gone.npz"), "-o", str(out3)]) == 0
    assert "diversity" not in json.loads((out3 / "specialisation.json").read_text())["measures"]


def _write(folder, doc):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "atlas.json").write_text(json.dumps(doc))
    return folder


def test_errors(setup, tmp_path, capsys):
    doc = setup["doc"]
    data = setup["root"] / "data"
    with pytest.raises(PydeconvError, match="no atlas.json there"):
        sp.measure(tmp_path)
    bad = tmp_path / "a"
    for change, message in (
        (
            {"format": "pydeconv-occlusion"},
            "format: 'pydeconv-occlusion', expected 'pydeconv-atlas'",
        ),
        ({"version": 2}, "version: 2, this pydeconv reads 1"),
        ({"k": 0}, "k: 0 is not an integer >= 1"),
        ({"layers": ["pool1", "pool2"]}, "units.pool2: missing"),
        (
            {"units": {**doc["units"], "pool1": [[{"image": 99, "y": 0, "x": 0, "value": 1.0}]]}},
            r"units.pool1\[0\]\[0\]: image 99 / position out of range \(15 images\)",
        ),
        (
            {"units": {**doc["units"], "pool1": [[{"image": 0, "y": 0}]]}},
            r"units.pool1\[0\]\[0\]: expected",
        ),
    ):
        _write(bad, {**doc, **change})
        with pytest.raises(PydeconvError, match=message) as err:
            sp.measure(bad, labels=data)
        assert "atlas.json" in str(err.value)
    (bad / "atlas.json").write_text("{not json")
    with pytest.raises(PydeconvError, match="not a readable JSON file"):
        sp.read_atlas(bad)
    # labels that do not hold the atlas's images
    other = tmp_path / "other"
    for name in ("x", "y"):
        (other / name).mkdir(parents=True)
        Image.new("L", (4, 4)).save(other / name / "0.png")
    used = len({u["image"] for layer in LAYERS for ch in doc["units"][layer] for u in ch})
    message = f"{used} of the atlas's {used} top-k images are not in a class folder"
    with pytest.raises(PydeconvError, match=message):
        sp.measure(setup["atlas"], labels=other)
    # an atlas from another model
    graph, params = models.zfnet_like()
    graph["preprocess"] = dict(PRE, size=[37, 37])
    zf = pydeconv.build(graph, params)
    with pytest.raises(PydeconvError, match="layer pool1: the atlas has 24 channels, the model 8"):
        sp.measure(setup["atlas"], model=zf)
    with pytest.raises(PydeconvError, match="nothing to measure"):
        sp.measure(setup["atlas"], diversity_on=False)
    assert cli.main(["specialise", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pydeconv: error:") and "no atlas.json" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_labels_from_a_train_test_layout(setup, tmp_path):
    """A DATA_DIR with train/ and test/ (pydeconv fashion-mnist's layout): the class is the folder
    below either; the numbers equal those of the flat layout."""
    import shutil

    paths = []
    for i, src in enumerate(setup["paths"]):
        dst = tmp_path / "data" / ("train" if i % 5 < 3 else "test") / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        paths.append(str(dst))
    atlas = _write(tmp_path / "atlas", {**setup["doc"], "images": paths})
    split = sp.measure(atlas, labels=tmp_path / "data", diversity_on=False)
    flat = sp.measure(setup["atlas"], labels=setup["root"] / "data", diversity_on=False)
    assert split["classes"] == CLASSES
    assert split["channels"] == flat["channels"] and split["summary"] == flat["summary"]
