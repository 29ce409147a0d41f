"""The per-ISA activation rows (act_rows.inc: sigmoid and SiLU by a polynomial e^x)
and depthwise plane kernels (depthwise_fwd.inc), run under every ISA this CPU has, against float64
NumPy: the clamped tails, zero, and each ISA's vector width with its scalar remainder."""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv
from pydeconv import _core


def _isas():
    """The ISAs set_isa accepts on this CPU."""
    before = _core.isa()
    ok = []
    try:
        for name in ("portable", "avx2", "avx512"):
            try:
                _core.set_isa(name)
            except ValueError:
                continue
            ok.append(name)
    finally:
        _core.set_isa(before)
    return ok


@pytest.fixture(params=_isas())
def isa(request):
    before = _core.isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


def _tails():
    # 0, tiny, the clamp edges (|x| around 87-88), far beyond, and 37 values (16 + 16 + 5: a
    # remainder after full vectors) over the working range.
    edge = [0.0, -0.0, 1e-30, -1e-30, 87.0, -87.0, 88.0, -88.0, 88.5, -88.5, 100.0, -100.0]
    edge += [1e4, -1e4, 3.4e38, -3.4e38]
    mid = np.linspace(-20.0, 20.0, 37).tolist()
    return np.array(edge + mid, dtype=np.float32)


@pytest.mark.parametrize("kind", ["sigmoid", "silu"])
def test_exp_rows_against_float64(isa, kind):
    x = _tails()
    graph, params = models.single_layer(kind, (1, 1, x.size))
    net = pydeconv.build(graph, params)
    got = net.forward(x.reshape(1, 1, 1, -1), threads=1)[0].ravel()
    xd = x.astype(np.float64)
    s = 1.0 / (1.0 + np.exp(-np.clip(xd, -700, 700)))
    want = s if kind == "sigmoid" else xd * s
    # A few ulp of the value, or 1e-36 absolute where the true value underflows.
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=1e-36)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
def test_depthwise_planes_against_reference(isa, k, stride):
    # 37 columns: full vectors of 16 and 8 plus a remainder, both padding sides.
    b = models._Builder("dw", (5, 9, 37), 2)
    b.conv("dw", "input", 5, k, stride=stride, padding=k // 2, groups=5)
    b.add("relu", "relu", "dw")
    graph, params = b.done()
    net = pydeconv.build(graph, params)
    x = models.random_input((2, 5, 9, 37), 3)
    acts, _ = npref.forward(graph, params, x)
    for threads in (1, 2):
        out, trace = net.forward(x, threads=threads, keep="all")
        npref.assert_close(trace.activation("dw"), acts["dw"])
        npref.assert_close(out, acts["relu"])


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_size": [5, 5], "stride": [1, 1], "padding": [2, 2, 2, 2]},  # SPPF
        {"kernel_size": [2, 2], "stride": [1, 1], "padding": [0, 0, 1, 1]},  # Darknet's 2/1
    ],
    ids=["5x5s1", "2x2s1"],
)
def test_max_pool_row_folds_keep_the_first_maximum(isa, attrs):
    """The 5x5/1 and 2x2/1 interior folds: values and switches exactly the reference's, with
    ties everywhere (values rounded to a few levels) so the first maximum in window order wins."""
    graph, params = models.single_layer("max_pool2d", (4, 9, 37), attrs)
    net = pydeconv.build(graph, params)
    x = np.round(models.random_input((2, 4, 9, 37), 5) * 1.5).astype(np.float32)
    acts, switches = npref.forward(graph, params, x)
    for threads in (1, 2):
        out, trace = net.forward(x, threads=threads)
        np.testing.assert_array_equal(out, acts["max_pool2d"].astype(np.float32))
        np.testing.assert_array_equal(trace.switches("max_pool2d"), switches["max_pool2d"])
