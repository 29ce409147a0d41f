"""Darknet's ``.weights`` file: a small header, then float32 blobs in cfg order, nothing else.

Header (little-endian): int32 major, minor, revision, then ``seen`` (images trained on): 8 bytes
when ``major * 10 + minor >= 2`` (and both below 1000), else 4. Darknet writes no framing around
the blobs, so the only consistency check it could make is the size: this reader requires the file
to hold exactly the floats the cfg asks for, and says where a short file ran out or how many
bytes a long one has left over (a cfg that does not belong to the weights shows up there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ModelFormatError


@dataclass
class Blob:
    """One float32 array the weights file holds for a layer, in file order."""

    layer: str  # "section 13 [convolutional]" (conv_13)
    field: str  # "biases", "scales", "rolling_mean", "rolling_variance", "weights"
    count: int


@dataclass
class Header:
    major: int
    minor: int
    revision: int
    seen: int

    @property
    def size(self) -> int:
        return 12 + (8 if self.major * 10 + self.minor >= 2 else 4)


def read_header(data: bytes) -> Header:
    if len(data) < 12:
        raise ModelFormatError(
            f"the file is {len(data)} bytes, shorter than a Darknet weights header (16 or 20)"
        )
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    if not (0 <= major < 1000 and 0 <= minor < 1000) or revision < 0:
        # Darknet reads major or minor past 1000 as "transposed weights" (an old connected-layer
        # layout); negative numbers are no version Darknet ever wrote.
        raise ModelFormatError(
            f"header version {major}.{minor}.{revision} is not a Darknet weights version "
            "(expected major and minor in 0..999, such as 0.2.0); is this a .weights file?"
        )
    wide = major * 10 + minor >= 2
    need = 12 + (8 if wide else 4)
    if len(data) < need:
        raise ModelFormatError(
            f"the file is {len(data)} bytes, shorter than its version {major}.{minor} header "
            f"({need} bytes)"
        )
    seen = int(np.frombuffer(data, "<u8" if wide else "<u4", 1, 12)[0])
    return Header(major, minor, revision, seen)


def read_blobs(path: str | os.PathLike, blobs: Sequence[Blob]) -> tuple[Header, list[np.ndarray]]:
    """The header and one float32 array per blob. Errors (ModelFormatError) do not name the
    file: the caller puts its name in front."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelFormatError(f"cannot read the weights ({exc.strerror or exc})") from None
    header = read_header(data)
    offset = header.size
    need = offset + 4 * sum(b.count for b in blobs)
    if len(data) < need:
        at = offset
        for b in blobs:
            if at + 4 * b.count > len(data):
                have = max(0, (len(data) - at) // 4)
                raise ModelFormatError(
                    f"the file is truncated: it ends in {b.layer}'s {b.field} ({have} of "
                    f"{b.count} floats present); the cfg needs {need:,} bytes, the file has "
                    f"{len(data):,}"
                )
            at += 4 * b.count
    if len(data) > need:
        raise ModelFormatError(
            f"the file has {len(data) - need:,} bytes after the last layer's weights: the cfg "
            f"needs {need:,} bytes (header {header.size} + {(need - header.size) // 4:,} floats), "
            f"the file has {len(data):,}; do the cfg and the weights belong together?"
        )
    out = []
    for b in blobs:
        arr = np.frombuffer(data, "<f4", b.count, offset).astype(np.float32)
        offset += 4 * b.count
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ModelFormatError(
                f"{b.layer}'s {b.field} hold NaN or infinity (first at element {bad})"
            )
        out.append(arr)
    return header, out
