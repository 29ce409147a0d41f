"""Conv + ReLU fused in the executor: the conv writes the ReLU's output (and, under keep='minimal',
its mask) in its own pass. Every case the executor distinguishes, against the NumPy reference."""

from __future__ import annotations

import models
import npref
import pytest

import pydeconv


def _net():
    """conv_a feeds a ReLU only (its buffer may be reused); conv_b feeds a ReLU *and* an add (the
    pre-ReLU values must survive); 24+ channels so Winograd runs too. conv_c (1x1) and conv_d
    (3x3/2, 2 groups, also feeding an add) run as direct GEMMs, whose epilogue applies the ReLU."""
    b = models._Builder("fusion", (16, 12, 11), 3)
    b.conv("conv_a", "input", 24, 3, padding=1)
    b.add("relu_a", "relu", "conv_a")
    b.conv("conv_b", "relu_a", 24, 3, padding=1)
    b.add("relu_b", "relu", "conv_b")
    b.add("sum", "add", ["relu_b", "conv_b"])
    b.conv("conv_c", "sum", 8, 1)
    b.add("relu_c", "relu", "conv_c")
    b.conv("conv_d", "relu_c", 8, 3, stride=2, padding=1, groups=2)
    b.add("relu_d", "relu", "conv_d")
    b.add("sum_d", "add", ["relu_d", "conv_d"])
    return b.done()


@pytest.fixture(scope="module")
def setup():
    graph, params = _net()
    net = pydeconv.build(graph, params)
    x = models.random_input((2, 16, 12, 11), 4)
    acts, switches = npref.forward(graph, params, x)
    return graph, params, net, x, acts, switches


@pytest.mark.parametrize("keep", ["all", "minimal", ["conv_a"], ["conv_b", "relu_a"]])
def test_forward_and_kept_activations(setup, keep):
    graph, params, net, x, acts, _ = setup
    out, trace = net.forward(x, keep=keep)
    npref.assert_close(out, acts["sum_d"])
    for name in trace.layers if keep == "all" else ([] if keep == "minimal" else keep):
        npref.assert_close(trace.activation(name), acts[name], err_msg=name)
    if keep == "all":  # the conv's own output is the pre-ReLU one
        assert (trace.activation("conv_a") < 0).any()
        assert (trace.activation("conv_d") < 0).any()


def test_upto_the_conv_does_not_rectify(setup):
    _, _, net, x, acts, _ = setup
    out, _ = net.forward(x, upto="conv_b", keep="minimal")
    npref.assert_close(out, acts["conv_b"])
    assert (out < 0).any()


@pytest.mark.parametrize("layer", ["relu_c", "relu_d"])
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "backprop"])
@pytest.mark.parametrize("keep", ["all", "minimal"])
def test_projections_use_the_fused_masks(setup, rule, keep, layer):
    graph, params, net, x, acts, switches = setup
    _, trace = net.forward(x, keep=keep if keep == "all" else [layer])
    got = net.project(trace, layer, channel=2, at="map", rule=rule)
    start = npref.start_signal(acts[layer], 2, "map")
    ref = npref.project(graph, params, acts, switches, layer, start, rule)
    npref.assert_close(got, ref)
