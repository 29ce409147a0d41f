"""Winograd F(2x2, 3x3) and F(4x4, 3x3) (3x3 stride-1 convs with >= 16 channels, forward and the
projection's transposed convs) against the NumPy float64 reference and against the direct GEMM
path; each variant forced in turn where it matters."""

from __future__ import annotations

import os

import models
import npref
import numpy as np
import pytest

import pydeconv

LAYERS = ["conv1_2", "relu2_1", "conv2_2", "pool2"]
RULES = ["deconvnet", "guided", "backprop"]


@pytest.fixture(scope="module")
def setup():
    graph, params = models.vgg_like()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + tuple(graph["input"]["shape"]), 5)
    acts, switches = npref.forward(graph, params, x)
    return graph, params, net, x, acts, switches


@pytest.fixture(params=[True, 2, 4], ids=["auto", "F2", "F4"])
def wmode(request):
    """Each test runs with the cost model's choice and with each tile size forced."""
    before = pydeconv.get_winograd()
    pydeconv.set_winograd(request.param)
    yield request.param
    pydeconv.set_winograd(before)


@pytest.fixture
def winograd_off():
    before = pydeconv.get_winograd()
    pydeconv.set_winograd(False)
    yield
    pydeconv.set_winograd(before)


_ENV = os.environ.get("PYDECONV_WINOGRAD", "")


def test_default_follows_environment():
    assert pydeconv.get_winograd() == {"0": False, "2": 2, "4": 4}.get(_ENV, True)


def test_set_winograd_modes():
    before = pydeconv.get_winograd()
    try:
        for mode in (False, 2, 4, True):
            pydeconv.set_winograd(mode)
            assert pydeconv.get_winograd() == mode and type(pydeconv.get_winograd()) is type(mode)
        for bad in (3, 1, 0, "4", None, 2.0):
            with pytest.raises(pydeconv.PydeconvError, match="set_winograd"):
                pydeconv.set_winograd(bad)
        assert pydeconv.get_winograd() is True
    finally:
        pydeconv.set_winograd(before)


def test_forward_matches_reference(setup, wmode):
    graph, params, net, x, acts, switches = setup
    _, trace = net.forward(x, threads=2)
    for name in net.layers:
        npref.assert_close(trace.activation(name), acts[name], err_msg=name)
    for name, ref in switches.items():
        np.testing.assert_array_equal(trace.switches(name), ref, err_msg=name)


def test_thread_counts_bit_identical(setup, wmode):
    _, _, net, x, _, _ = setup
    _, t1 = net.forward(x, threads=1)
    _, t2 = net.forward(x, threads=2)
    for name in net.layers:
        np.testing.assert_array_equal(t1.activation(name), t2.activation(name), err_msg=name)
    for layer in LAYERS:
        p1 = net.project(t1, layer, channel=3, at="max", threads=1)
        p2 = net.project(t2, layer, channel=3, at="max", threads=2)
        np.testing.assert_array_equal(p1, p2, err_msg=layer)


@pytest.mark.skipif(pydeconv.get_reference_kernels(), reason="reference kernels: no Winograd")
def test_winograd_is_used_and_agrees_with_direct(setup, winograd_off):
    _, _, net, x, _, _ = setup
    _, direct = net.forward(x, threads=2)
    pydeconv.set_winograd(True)
    _, wino = net.forward(x, threads=2)
    a, b = wino.activation("conv1_2"), direct.activation("conv1_2")
    assert not np.array_equal(a, b)  # a different summation: Winograd did run
    npref.assert_close(a, b, err_msg="conv1_2")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer", LAYERS)
def test_projection_matches_reference(setup, layer, rule, wmode):
    graph, params, net, x, acts, switches = setup
    _, trace = net.forward(x, threads=2)
    for channel, at in [(0, "max"), (5, "map"), (7, (2, 1))]:
        if at == (2, 1) and trace.activation(layer).ndim != 4:
            continue
        got = net.project(trace, layer, channel=channel, at=at, rule=rule)
        start = npref.start_signal(acts[layer], channel, at)
        ref = npref.project(graph, params, acts, switches, layer, start, rule)
        npref.assert_close(got, ref, err_msg=f"{layer} ch{channel} {at} {rule}")


def test_many_channels_batched(setup, wmode):
    """All channels of a layer in one batched pass (regions per sample) vs one at a time."""
    _, _, net, x, _, _ = setup
    _, trace = net.forward(x, threads=2)
    many = net.project(trace, "conv2_2", channel=list(range(16)), at="max")
    for c in (0, 7, 15):
        one = net.project(trace, "conv2_2", channel=c, at="max")
        npref.assert_close(many[:, c], one, err_msg=f"channel {c}")


@pytest.fixture(scope="module")
def small_maps():
    """13x13 maps at 64-96 channels: F(4x4) there qualifies for the transformed-filter cache (the
    filter transform is ~20% of a call). The net's budget (a quarter of its parameter bytes or
    128 MiB, whichever is more) has room for both convs' transformed filters (0.45 + 0.89 MB)."""
    b = models._Builder("small_maps", (32, 13, 13), 11)
    b.conv("conv_a", "input", 64, 3, padding=1)
    b.add("relu_a", "relu", "conv_a")
    b.conv("conv_b", "relu_a", 96, 3, padding=1)
    b.add("relu_b", "relu", "conv_b")
    b.add("flat", "flatten", "relu_b")
    b.linear("fc", "flat", 100)
    graph, params = b.done()
    x = models.random_input((1, 32, 13, 13), 12)
    acts, _ = npref.forward(graph, params, x)
    return graph, params, x, acts


def test_filter_cache_gives_the_uncached_result(small_maps, wmode):
    """The first forward keeps the transformed filters (F(4x4) only: under F(2x2) the transform
    is a smaller share), later ones read them: every pass equals a fresh net's first bit for bit,
    at 1 and 2 threads, and the reference within rounding."""
    graph, params, x, acts = small_maps
    net = pydeconv.build(graph, params)
    assert net.cache_bytes() == 0
    fresh = pydeconv.build(graph, params).forward(x, threads=1, keep="all")[1]
    for t in (1, 1, 2, 2):
        _, trace = net.forward(x, threads=t, keep="all")
        for name in ("conv_a", "conv_b", "fc"):
            np.testing.assert_array_equal(
                trace.activation(name), fresh.activation(name), err_msg=name
            )
            npref.assert_close(trace.activation(name), acts[name], err_msg=name)
    params_bytes = sum(4 * v.size for v in params.values())
    if wmode == 2 or pydeconv.get_reference_kernels():
        assert net.cache_bytes() == 0
    else:
        budget = max(params_bytes // 4, 128 << 20)
        assert 4 * 36 * (64 * 32 + 96 * 64) <= net.cache_bytes() <= budget
