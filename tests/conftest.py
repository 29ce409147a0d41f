"""Shared fixtures: thread counts and kernel selection, each restoring the engine's state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# These tests run thousands of tiny parallel regions; on a shared, oversubscribed machine libgomp's
# default spin-waiting turns each into a scheduler-quantum stall (10x slower suites).  Must be set
# before the engine (and so libgomp) is loaded; an explicit setting from the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
# Pool blocks (activations, gradients) start as NaN bytes: a kernel that reads memory it never
# wrote, or a gradient not cleared where it is read, fails the tests instead of seeing zeros.
os.environ.setdefault("PYDECONV_POISON", "1")

import pydeconv  # noqa: E402

# Subprocesses run the pydeconv under test: the one this process imported (the installed package
# under `pip install ".[test]" && pytest tests`, or a checkout built in place), never a checkout
# without its compiled _core that happens to be their working directory or script folder
# (PYTHONSAFEPATH: neither goes first on sys.path).
PACKAGE_PARENT = str(Path(pydeconv.__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p
)
os.environ["PYTHONSAFEPATH"] = "1"

THREADS = (1, 2)


@pytest.fixture(params=THREADS, ids=lambda n: f"threads{n}")
def threads(request):
    """The thread count to pass to forward/project; the global setting is restored afterwards."""
    before = pydeconv.get_num_threads()
    yield request.param
    pydeconv.set_num_threads(before)


def _reference_kernels_now():
    getter = getattr(pydeconv, "get_reference_kernels", None)
    if getter is not None:
        return bool(getter())
    return os.environ.get("PYDECONV_REFERENCE", "") == "1"


@pytest.fixture(params=[False, True], ids=["fast", "reference"])
def kernels(request):
    """Runs a test once on the optimised kernels and once with the reference kernels forced; the
    previous selection is restored even when the test fails."""
    before = _reference_kernels_now()
    pydeconv.set_reference_kernels(request.param)
    try:
        yield request.param
    finally:
        pydeconv.set_reference_kernels(before)


@pytest.fixture(scope="session")
def report_browser():
    """tests/browser.py's check_report, with the browser closed at the end of the session."""
    import browser

    yield browser.check_report
    browser.close()
