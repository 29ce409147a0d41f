"""Image sets for the analyses: what a user names on the command line, as a sorted file list.

- a folder: every image file below it (recursively), sorted by relative path;
- a glob pattern (``photos/*.jpg``, ``data/**/*.png``);
- a list file, named ``@LIST`` or ending in ``.txt``/``.lst``: one path per line (relative paths
  are relative to the list's folder; blank lines and ``#`` comments ignored);
- a single image file.

The order is deterministic (the analyses' image ids are positions in this list, and resumed or
sharded runs must agree on them). Unreadable images are not an error here: :func:`iter_batches`
skips them and records ``(path, message)`` in the ``skipped`` list it is given, so a report can
count and list them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import image as pimg
from pydeconv.errors import ImageError, PydeconvError

# What a folder walk picks up: the formats Pillow decodes that photos come in.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
_LIST_SUFFIXES = (".txt", ".lst")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _walk(folder: Path) -> list[Path]:
    found = [
        Path(root) / name
        for root, dirs, files in os.walk(folder, followlinks=False)
        for name in files
        if _is_image(Path(name))
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_list(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PydeconvError(f"{path}: cannot read the image list ({exc})") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            out.append(p if p.is_absolute() else path.parent / p)
    return out


def collect(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files ``sources`` name (folders, globs, list files, files), in a stable order;
    duplicates are dropped (first occurrence kept). PydeconvError if a source matches nothing
    or the whole set is empty."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[Path] = []
    for src in sources:
        text = os.fspath(src)
        path = Path(text[1:] if text.startswith("@") else text)
        if text.startswith("@") or (path.is_file() and path.suffix.lower() in _LIST_SUFFIXES):
            found = _read_list(path)
        elif path.is_dir():
            found = _walk(path)
        elif path.exists():
            found = [path]
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            raise ImageError(f"{text}: no such image, folder or list file")
        if not found:
            raise ImageError(f"{text}: no image files there")
        out.extend(found)
    if not out:
        raise ImageError("the image set is empty")
    return list(dict.fromkeys(out))


@dataclass
class LabelledSet:
    """Images in class folders: ``root/<class>/<image>``; classes sorted by name."""

    paths: list[Path]
    labels: np.ndarray  # int64, index into classes
    classes: list[str]


def labelled(root: str | os.PathLike[str], min_per_class: int = 1) -> LabelledSet:
    """The class-folder set under ``root`` (one sub-folder per class, images anywhere below it).
    PydeconvError if there are fewer than two classes or a class has fewer than
    ``min_per_class`` images (naming the class)."""
    base = Path(root)
    if not base.is_dir():
        raise ImageError(f"{base}: not a folder of class folders")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise PydeconvError(
            f"{base}: a labelled set needs at least two class folders, found {len(classes)}"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for i, name in enumerate(classes):
        files = _walk(base / name)
        if len(files) < min_per_class:
            raise PydeconvError(
                f"{base / name}: class '{name}' has {len(files)} image(s), "
                f"at least {min_per_class} needed"
            )
        paths.extend(files)
        labels.extend([i] * len(files))
    return LabelledSet(paths, np.asarray(labels, dtype=np.int64), classes)


def iter_batches(
    net: Any,
    paths: Sequence[Path],
    batch_size: int,
    skipped: list[tuple[str, str]],
    ids: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Decode and preprocess ``paths`` for ``net`` in batches: yields ``(ids, x)`` with ``x``
    (len(ids), C, H, W) float32 and ``ids`` the images' ids (positions in ``paths``, or the
    given ``ids``). An image that cannot be decoded is appended to ``skipped`` as
    ``(path, message)`` and left out; a batch is never empty."""
    if batch_size < 1:
        raise PydeconvError(f"batch size must be >= 1, got {batch_size}")
    ids = list(range(len(paths))) if ids is None else list(ids)
    if len(ids) != len(paths):
        raise PydeconvError("iter_batches: ids and paths differ in length")
    got_ids: list[int] = []
    got: list[np.ndarray] = []
    for i, path in zip(ids, paths):
        try:
            got.append(pimg.load(path, net)[0])
        except ImageError as exc:
            skipped.append((str(path), str(exc)))
            continue
        got_ids.append(i)
        if len(got) == batch_size:
            yield got_ids, np.stack(got)
            got_ids, got = [], []
    if got:
        yield got_ids, np.stack(got)
