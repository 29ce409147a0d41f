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
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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


def test_isa_setting():
    before = _core.isa()  # PYDECONV_ISA's, or the best this CPU runs
    assert before in ("portable", "avx2", "avx512")
    try:
        _core.set_isa("portable")
        assert _core.isa() == "portable" and _core.sgemm_isa() == "portable"
        with pytest.raises(pydeconv.PydeconvError, match="unknown ISA"):
            _core.set_isa("sse9")
        assert _core.isa() == "portable"
        _core.set_isa("auto")
        assert _core.isa() in ("portable", "avx2", "avx512")  # never "auto"
    finally:
        _core.set_isa(before)


def test_isa_environment():
    r = _run("from pydeconv import _core; print(_core.isa())", PYDECONV_ISA="portable")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "portable"
    code = (
        "import pydeconv\n"
        "from pydeconv import _core\n"
        "try:\n    _core.isa()\nexcept pydeconv.PydeconvError as e:\n    print(e)\n"
    )
    r = _run(code, PYDECONV_ISA="sse9")
    assert r.returncode == 0, r.stderr
    assert "PYDECONV_ISA=sse9: unknown ISA" in r.stdout


@pytest.mark.parametrize("given,want", [(None, "unset"), ("passive", "passive")])
def test_openmp_wait_policy_is_the_environments(given, want):
    """pydeconv leaves OMP_WAIT_POLICY to the environment (passive waiting costs 1.5-1.8x on an
    idle host, bench/README.md): importing it neither sets nor changes the variable."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, pydeconv; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want
