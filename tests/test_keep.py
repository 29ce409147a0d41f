"""forward(keep=[...]): the minimal trace plus the layers asked for, same projections as
keep='all'."""

from __future__ import annotations

import numpy as np
import pytest
from models import random_input, zfnet_like

import pydeconv


@pytest.fixture(scope="module")
def net():
    graph, params = zfnet_like(seed=5, size=37)
    return pydeconv.build(graph, params)


def test_keep_list_keeps_those_layers_and_projects_identically(net):
    x = random_input((2,) + net.input_shape, seed=9)
    _, full = net.forward(x, keep="all")
    _, some = net.forward(x, keep=["conv2", "relu4"])
    np.testing.assert_array_equal(some.activation("conv2"), full.activation("conv2"))
    np.testing.assert_array_equal(some.activation("relu4"), full.activation("relu4"))
    with pytest.raises(pydeconv.PydeconvError, match="conv3"):
        some.activation("conv3")  # not asked for: dropped
    for layer in ("conv2", "relu4"):
        for rule in ("deconvnet", "guided", "backprop"):
            a = net.project(full, layer, channel=[0, 3], at="max", rule=rule)
            b = net.project(some, layer, channel=[0, 3], at="max", rule=rule)
            np.testing.assert_array_equal(a, b)


def test_keep_list_names_are_checked(net):
    x = random_input((1,) + net.input_shape, seed=1)
    with pytest.raises(pydeconv.LayerNotFoundError, match="nope"):
        net.forward(x, keep=["conv2", "nope"])
    with pytest.raises(pydeconv.PydeconvError, match="keep"):
        net.forward(x, keep="some")


def test_projection_does_not_modify_an_explicit_start(net):
    x = random_input((1,) + net.input_shape, seed=2)
    _, trace = net.forward(x)
    start = np.zeros_like(trace.activation("relu2"))
    start[0, 1, 2, 1] = 1.5
    before = start.copy()
    net.project(trace, "relu2", at=start, rule="guided")
    np.testing.assert_array_equal(start, before)


def test_trace_layers_lists_what_ran_even_when_outputs_were_dropped(net):
    x = random_input((1,) + net.input_shape, seed=3)
    _, full = net.forward(x, upto="conv3")
    _, minimal = net.forward(x, upto="conv3", keep="minimal")
    assert minimal.layers == full.layers == net.layers[: net.layers.index("conv3") + 1]
