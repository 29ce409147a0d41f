"""Fashion-MNIST from Debian's dataset-fashion-mnist: the IDX reader, the class-folder export and
the ``pydeconv fashion-mnist`` verb (CI installs the package: .ci/run)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from pydeconv import cli
from pydeconv.analysis import fashion_mnist as fm
from pydeconv.analysis import imageset
from pydeconv.errors import PydeconvError

if not fm.files("train")[0].is_file():
    pytest.skip(
        "needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
        allow_module_level=True,
    )


def _idx(path, magic, dims, data, gz=True):
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    raw = head + bytes(data)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def test_real_files_read_with_their_sizes():
    images, labels = fm.load("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    # The published test split is balanced: 1000 images per class.
    assert np.bincount(labels).tolist() == [1000] * 10
    # The reader agrees with a plain parse of the same bytes.
    with gzip.open(fm.files("test")[0], "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 0x803
    assert np.array_equal(
        images[7], np.frombuffer(raw[16 + 7 * 784 : 16 + 8 * 784], np.uint8).reshape(28, 28)
    )


def test_export_writes_the_chosen_images_deterministically(tmp_path):
    written = fm.export(tmp_path / "a", per_class=3, split="test", seed=5)
    again = fm.export(tmp_path / "b", per_class=3, split="test", seed=5)
    other = fm.export(tmp_path / "c", per_class=3, split="test", seed=6)
    assert written == again and written != other
    images, labels = fm.load("test")
    s = imageset.labelled(tmp_path / "a" / "test")
    assert sorted(s.classes) == sorted(fm.folder_name(c) for c in fm.CLASSES)
    assert len(s.paths) == 30
    for path, lab in zip(s.paths, s.labels):
        i = int(path.stem)
        cls = fm.CLASSES[labels[i]]
        assert fm.folder_name(cls) == s.classes[lab] and i in written[cls]
        assert np.array_equal(np.asarray(Image.open(path)), images[i])
    with pytest.raises(PydeconvError, match="not an empty folder"):
        fm.export(tmp_path / "a", per_class=1, split="test")


def test_export_errors(tmp_path):
    with pytest.raises(PydeconvError, match="1000 images in this split, 1001 asked"):
        fm.export(tmp_path, per_class=1001, split="test")
    with pytest.raises(PydeconvError, match="unknown split"):
        fm.export(tmp_path, per_class=1, split="val")
    with pytest.raises(PydeconvError, match=">= 1"):
        fm.export(tmp_path, per_class=0, split="test")


@pytest.mark.parametrize(
    ("magic", "dims", "size", "gz", "message"),
    [
        (2049, [4], 4 * 784, True, "magic number 0x00000801, expected 0x00000803"),
        (2051, [4, 28, 28], 4 * 784 - 10, True, "truncated in the data"),
        (2051, [4, 28], 0, True, "truncated in the dimension sizes"),
        (2051, [4, 28, 28], 4 * 784 + 1, True, "trailing bytes"),
        (2051, [0, 28, 28], 0, True, "item count 0 out of range"),
        (2051, [4, 5000, 28], 0, True, "rows 5000 out of range"),
        (2051, [4, 28, 28], 4 * 784, False, "not a readable gzip file"),
    ],
)
def test_corrupt_idx_files_name_the_file_and_field(tmp_path, magic, dims, size, gz, message):
    path = _idx(tmp_path / "x-images-idx3-ubyte.gz", magic, dims, [0] * size, gz=gz)
    with pytest.raises(PydeconvError, match=message) as err:
        fm.read_idx(path, "images")
    assert str(path) in str(err.value)


def test_missing_and_mismatched_files(tmp_path):
    with pytest.raises(PydeconvError, match="no such file"):
        fm.load("train", root=tmp_path)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, [3, 2, 2], [0] * 12)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, [2], [0, 1])
    with pytest.raises(PydeconvError, match="3 images but t10k-labels-idx1-ubyte.gz has 2"):
        fm.load("test", root=tmp_path)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, [3], [0, 1, 10])
    with pytest.raises(PydeconvError, match="label 10 out of range"):
        fm.load("test", root=tmp_path)


def test_cli_writes_both_splits_and_a_report(tmp_path, capsys, report_browser):
    out = tmp_path / "fmnist"
    argv = ["fashion-mnist", str(out), "--train-per-class", "2", "--test-per-class", "1"]
    assert cli.main(argv) == 0
    train = imageset.labelled(out / "train")
    test = imageset.labelled(out / "test")
    assert len(train.paths) == 20 and len(test.paths) == 10
    meta = json.loads((out / "fashion-mnist.json").read_text())
    assert meta["per_class"] == {"train": 2, "test": 1} and meta["classes"] == list(fm.CLASSES)
    assert {int(p.stem) for p in train.paths} == {
        i for v in meta["indices"]["train"].values() for i in v
    }
    report_browser(out, tmp_path / "shots")
    assert cli.main(argv) == 1  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert cli.main(argv + ["--force"]) == 0
    assert cli.main(["fashion-mnist", str(tmp_path / "x"), "--root", str(tmp_path)]) == 1
    assert "no such file" in capsys.readouterr().err
