"""The settings are the engine's: C++ reads the PYDECONV_* environment variables once and the
Python setters forward to it (so a setting changed on either side is seen by both)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pydeconv
from pydeconv import _core

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (the environment is read once per process)."""
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=60, check=False)


def test_reference_setter_forwards_to_the_engine():
    before = pydeconv.get_reference_kernels()
    try:
        pydeconv.set_reference_kernels(True)
        assert _core.reference_kernels() is True
        _core.set_reference_kernels(False)
        assert pydeconv.get_reference_kernels() is False
    finally:
        pydeconv.set_reference_kernels(before)


@pytest.mark.parametrize("value, on", [("1", True), ("0", False), ("", False), ("yes", True)])
def test_reference_environment(value, on):
    r = _run("import pydeconv; print(pydeconv.get_reference_kernels())", PYDECONV_REFERENCE=value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(on)
