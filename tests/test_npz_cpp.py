"""The C++ .npz reader against files written by NumPy itself.

The layout test always runs: it pins the facts csrc/src/npz.cpp relies on (NumPy 2.x writes ZIP64
local headers whose sizes read 0xFFFFFFFF; savez stores, savez_compressed deflates). The reader
tests run the `npzdump` tool (tests/cpp/tools/npzdump.cpp) found in the build folder named by the
environment variable PYDECONV_CPP_TOOLS, when it is set.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

_TOOLS = os.environ.get("PYDECONV_CPP_TOOLS", "")
_NPZDUMP = Path(_TOOLS) / "npzdump" if _TOOLS else None
needs_npzdump = pytest.mark.skipif(
    _NPZDUMP is None or not _NPZDUMP.is_file(),
    reason="set PYDECONV_CPP_TOOLS to a build folder containing npzdump",
)


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv1/weight": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
        "conv1/bias": np.arange(4, dtype=np.float32) - 1.5,
        "__graph__": np.frombuffer(b'{"format": "pydeconv"}', dtype=np.uint8),
        "f8": np.linspace(-1, 1, 7),
        "f2": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
        "i8": np.array([[-(2**40), 3]], dtype=np.int64),
        "i4": np.array(-7, dtype=np.int32),  # 0-d
        "b1": np.array([True, False, True]),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "big": np.full((300, 300), 0.25, dtype=np.float32),  # compresses well
    }


@pytest.fixture(params=["savez", "savez_compressed"])
def npz_file(request, tmp_path) -> tuple[str, Path]:
    path = tmp_path / f"{request.param}.npz"
    getattr(np, request.param)(path, **_arrays())
    return request.param, path


def test_numpy_writes_the_layout_the_cpp_reader_expects(npz_file):
    kind, path = npz_file
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    assert [i.filename for i in infos] == [f"{name}.npy" for name in _arrays()]
    for info in infos:
        fields = struct.unpack_from("<IHHHHHIIIHH", data, info.header_offset)
        signature, method = fields[0], fields[3]
        csize, usize, extra_len = fields[7], fields[8], fields[10]
        assert signature == 0x04034B50
        assert method == (0 if kind == "savez" else 8)
        # Sizes live only in the central directory (and the local ZIP64 extra field).
        assert (csize, usize) == (0xFFFFFFFF, 0xFFFFFFFF)
        assert extra_len == 20
        assert info.file_size > 0 and info.compress_size > 0


def _dump(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(_NPZDUMP), str(path)], capture_output=True, text=True, timeout=30)


@needs_npzdump
def test_npzdump_reads_numpy_files(npz_file):
    _, path = npz_file
    result = _dump(path)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    expected = _arrays()
    assert [line[0] for line in lines] == list(expected)
    for name, dtype, shape, total in lines:
        arr = expected[name]
        assert dtype == arr.dtype.str
        assert tuple(json.loads(shape)) == arr.shape
        expected_sum = float(arr.astype(np.float64).sum())
        assert float(total) == pytest.approx(expected_sum, rel=1e-12, abs=1e-12)


@needs_npzdump
def test_npzdump_rejects_pickled_and_corrupt_files(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obj=np.array([{"a": 1}, None], dtype=object))
    result = _dump(pickled)
    assert result.returncode == 1
    assert "object arrays" in result.stderr and "obj.npy" in result.stderr

    corrupt = tmp_path / "corrupt.npz"
    np.savez(corrupt, w=np.ones(16, dtype=np.float32))
    data = bytearray(corrupt.read_bytes())
    with zipfile.ZipFile(corrupt) as z:
        info = z.getinfo("w.npy")
    data[info.header_offset + 30 + len("w.npy") + 20 + info.file_size - 1] ^= 0xFF  # last data byte
    corrupt.write_bytes(bytes(data))
    result = _dump(corrupt)
    assert result.returncode == 1
    assert "CRC-32 mismatch" in result.stderr
