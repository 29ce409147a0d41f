"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from Debian's ``dataset-fashion-mnist`` package:
a real, offline, labelled image set for the analyses, their tests and docs.

``apt-get install dataset-fashion-mnist`` puts the four IDX files (gzip) under
:data:`DEFAULT_ROOT`. :func:`read_idx` reads one (magic number, sizes and length checked, every
problem a PydeconvError naming the file and the field), :func:`load` a split's images and labels,
and :func:`export` writes a deterministic sample of a split as class folders
(``OUT/train/<class>/<index>.png``), the layout :func:`pydeconv.analysis.imageset.labelled` and
``pydeconv probe`` read. The CLI verb ``pydeconv fashion-mnist OUT_DIR`` writes both splits, a
``fashion-mnist.json`` saying which images were taken and an ``index.html`` showing them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pydeconv import report
from pydeconv.errors import PydeconvError
from pydeconv.fileio import write_atomic

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: The 10 classes, in the order of the label values 0..9.
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS = {"train": "train", "test": "t10k"}  # split -> the IDX files' prefix
_MAGIC = {2049: ("labels", 1), 2051: ("images", 3)}  # 0x00000801 / 0x00000803: uint8, ndim
_MAX_COUNT = 1_000_000  # more items than any MNIST-style file has: a corrupt header
_MAX_SIDE = 4096


class FashionMnistError(PydeconvError):
    """A Fashion-MNIST file is missing, truncated or not what it should be."""


def folder_name(cls: str) -> str:
    """A class's folder name: its name with "/" (T-shirt/top) replaced by "_"."""
    return cls.replace("/", "_")


def files(split: str, root: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The (images, labels) IDX files of ``split`` ("train" or "test")."""
    if split not in SPLITS:
        raise FashionMnistError(f"unknown split {split!r} (expected 'train' or 'test')")
    base = Path(DEFAULT_ROOT if root is None else root)
    prefix = SPLITS[split]
    return (
        base / f"{prefix}-images-idx3-ubyte.gz",
        base / f"{prefix}-labels-idx1-ubyte.gz",
    )


def _read_exact(f: gzip.GzipFile, n: int, path: Path, field: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise FashionMnistError(
            f"{path}: truncated in the {field} (expected {n} bytes, got {len(data)})"
        )
    return data


def read_idx(path: str | os.PathLike[str], kind: str) -> np.ndarray:
    """One gzip IDX file of unsigned bytes: ``kind`` "images" gives (N, rows, cols) uint8,
    "labels" (N,) uint8. The magic number, the sizes the header declares (checked before the data
    is read) and the exact length are checked."""
    path = Path(path)
    if not path.is_file():
        hint = (
            " (Debian: apt-get install dataset-fashion-mnist)"
            if path.parent == DEFAULT_ROOT
            else ""
        )
        raise FashionMnistError(f"{path}: no such file{hint}")
    try:
        with gzip.open(path, "rb") as f:
            magic = int.from_bytes(_read_exact(f, 4, path, "magic number"), "big")
            if magic not in _MAGIC or _MAGIC[magic][0] != kind:
                want = next(m for m, (k, _) in _MAGIC.items() if k == kind)
                raise FashionMnistError(
                    f"{path}: magic number {magic:#010x}, expected {want:#010x} "
                    f"(an IDX file of {kind})"
                )
            ndim = _MAGIC[magic][1]
            header = _read_exact(f, 4 * ndim, path, "dimension sizes")
            dims = [int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            if not 1 <= dims[0] <= _MAX_COUNT:
                raise FashionMnistError(
                    f"{path}: item count {dims[0]} out of range [1, {_MAX_COUNT}]"
                )
            for name, v in zip(("rows", "columns"), dims[1:]):
                if not 1 <= v <= _MAX_SIDE:
                    raise FashionMnistError(f"{path}: {name} {v} out of range [1, {_MAX_SIDE}]")
            n = int(np.prod(dims))
            data = _read_exact(f, n, path, "data")
            if f.read(1):
                raise FashionMnistError(f"{path}: trailing bytes after the {n} bytes of data")
    except (OSError, EOFError, zlib.error) as exc:
        raise FashionMnistError(f"{path}: not a readable gzip file ({exc})") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def load(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A split's images (N, 28, 28) uint8 and labels (N,) uint8 (indices into CLASSES)."""
    img_path, lab_path = files(split, root)
    labels = read_idx(lab_path, "labels")
    images = read_idx(img_path, "images")
    if len(images) != len(labels):
        raise FashionMnistError(
            f"{img_path}: {len(images)} images but {lab_path.name} has {len(labels)} labels"
        )
    if labels.max() >= len(CLASSES):
        raise FashionMnistError(
            f"{lab_path}: label {int(labels.max())} out of range [0, {len(CLASSES) - 1}]"
        )
    return images, labels


def choose(labels: np.ndarray, per_class: int, seed: int) -> list[np.ndarray]:
    """Per class, ``per_class`` indices drawn without replacement (seeded), sorted."""
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise FashionMnistError(f"images per class must be an integer >= 1, got {per_class!r}")
    rng = np.random.default_rng(seed)
    out = []
    for c, name in enumerate(CLASSES):
        pool = np.flatnonzero(labels == c)
        if per_class > len(pool):
            raise FashionMnistError(
                f"class '{name}' has {len(pool)} images in this split, {per_class} asked for"
            )
        out.append(np.sort(rng.choice(pool, size=per_class, replace=False)))
    return out


def export(
    out_dir: str | os.PathLike[str],
    per_class: int,
    split: str = "train",
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> dict[str, list[int]]:
    """Write ``per_class`` images of each class of ``split`` as greyscale PNGs
    ``out_dir/<split>/<class folder>/<index>.png`` (index: the image's position in the IDX file,
    5 digits). The choice depends only on (split, per_class, seed). Returns, per class name, the
    indices written. Refuses an ``out_dir/<split>`` that already has files in it."""
    images, labels = load(split, root)
    picked = choose(labels, per_class, seed)
    base = Path(out_dir) / split
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        raise FashionMnistError(f"{base}: exists and is not an empty folder")
    written = {}
    for name, idx in zip(CLASSES, picked):
        folder = base / folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            png = report.png_bytes(Image.fromarray(images[i], "L"))
            write_atomic(folder / f"{int(i):05d}.png", png, replace=False)
        written[name] = [int(i) for i in idx]
    return written


def _montage(out: Path, split: str, written: dict[str, list[int]], cols: int = 10) -> None:
    """One row per class: its first ``cols`` exported images, 2x enlarged."""
    side, gap = 56, 2
    img = Image.new("L", (cols * (side + gap), len(written) * (side + gap)), 255)
    for r, (name, idx) in enumerate(written.items()):
        for c, i in enumerate(idx[:cols]):
            with Image.open(out / split / folder_name(name) / f"{i:05d}.png") as tile:
                big = tile.resize((side, side), Image.Resampling.NEAREST)
            img.paste(big, (c * (side + gap), r * (side + gap)))
    write_atomic(out / f"{split}-samples.png", report.png_bytes(img.convert("RGB")))


def cmd_fashion_mnist(args: argparse.Namespace) -> int:
    from pydeconv.analysis.reportdir import report_folder
    from pydeconv.cli import log

    img_train, _ = files("train", args.root)
    img_test, _ = files("test", args.root)
    for p in (img_train, img_test):  # a missing package fails before any work
        if not p.is_file():
            read_idx(p, "images")
    with report_folder(args.out_dir, args.force) as tmp:
        chosen = {}
        sections = []
        for split, n in (("train", args.train_per_class), ("test", args.test_per_class)):
            chosen[split] = export(tmp, n, split, args.seed, args.root)
            _montage(tmp, split, chosen[split])
            sections.append(
                report.Section(
                    f"{split}: {n} images per class",
                    figures=[
                        report.Figure(
                            f"{split}-samples.png",
                            "one row per class, first 10 images",
                            [folder_name(c) for c in CLASSES],
                        )
                    ],
                )
            )
        meta = {
            "format": "pydeconv-fashion-mnist",
            "version": 1,
            "source": str(Path(DEFAULT_ROOT if args.root is None else args.root)),
            "seed": args.seed,
            "classes": list(CLASSES),
            "folders": [folder_name(c) for c in CLASSES],
            "per_class": {"train": args.train_per_class, "test": args.test_per_class},
            "indices": chosen,
        }
        write_atomic(tmp / "fashion-mnist.json", json.dumps(meta, indent=1).encode())
        notes = [
            "Fashion-MNIST (Zalando, MIT licence), from Debian's dataset-fashion-mnist package. "
            "Images are 28x28 greyscale PNGs named by their index in the IDX file; "
            "fashion-mnist.json lists them.",
            f"Chosen with seed {args.seed}; the same command writes the same images.",
        ]
        report.write_report(tmp / "index.html", "Fashion-MNIST sample", sections, notes)
    total = 10 * (args.train_per_class + args.test_per_class)
    log(f"wrote {total} images to {args.out_dir}/train and {args.out_dir}/test")
    return 0


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, writes) -> None:
    p = sub.add_parser(
        "fashion-mnist",
        parents=[common, writes],
        help="write a Fashion-MNIST sample as class folders (Debian's dataset-fashion-mnist)",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="OUT_DIR/train/<class>/, OUT_DIR/test/...")
    p.add_argument("--train-per-class", type=_positive, default=50, metavar="N")
    p.add_argument("--test-per-class", type=_positive, default=20, metavar="M")
    p.add_argument("--seed", type=int, default=0, help="which images are chosen (default 0)")
    p.add_argument(
        "--root",
        metavar="DIR",
        help=f"the folder of the four IDX .gz files (default {DEFAULT_ROOT})",
    )
    p.set_defaults(func=cmd_fashion_mnist)
