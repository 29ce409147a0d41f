"""Layer aliases (docs/FORMAT.md): other names a layer answers to, checked by the C++ reader and
resolved by the engine's one name lookup, and the LayerNotFoundError that suggests the closest."""

from __future__ import annotations

import copy

import models
import numpy as np
import pytest

import pydeconv
from pydeconv.errors import GraphError, LayerNotFoundError


@pytest.fixture(scope="module")
def aliased():
    graph, params = models.zfnet_like(seed=2, size=37)
    for layer in graph["layers"]:
        if layer["name"] in ("conv2", "pool2"):
            layer["aliases"] = [f"long_{layer['name']}_name"]
    return graph, params


def test_every_call_takes_an_alias(aliased, tmp_path):
    net = pydeconv.build(*aliased)
    x = models.random_input((1, 3, 37, 37), 4)
    assert "long_conv2_name" not in net.layers  # names are reported, aliases accepted
    assert net.layer_info("long_conv2_name") == net.layer_info("conv2")
    _, t_alias = net.forward(x, upto="long_pool2_name", keep=["long_conv2_name"])
    _, trace = net.forward(x, upto="pool2")
    assert t_alias.layers == trace.layers and t_alias.layers[-1] == "pool2"
    np.testing.assert_array_equal(trace.activation("long_conv2_name"), trace.activation("conv2"))
    np.testing.assert_array_equal(trace.switches("long_pool2_name"), trace.switches("pool2"))
    for at in ("max", "map", (2, 3)):
        np.testing.assert_array_equal(
            net.project(trace, "long_conv2_name", channel=[1, 2], at=at),
            net.project(trace, "conv2", channel=[1, 2], at=at),
        )
    patch = pydeconv.image.crop_patch(x, net, "long_conv2_name", 1, 1)
    assert patch.size == pydeconv.image.crop_patch(x, net, "conv2", 1, 1).size
    # The aliases survive a save and load.
    net.save(tmp_path / "m.npz")
    again = pydeconv.load(tmp_path / "m.npz")
    assert again.layer_info("long_pool2_name")["name"] == "pool2"
    conv2 = next(layer for layer in again.graph["layers"] if layer["name"] == "conv2")
    assert conv2["aliases"] == ["long_conv2_name"]


@pytest.mark.parametrize(
    "case",
    [
        ("not a list", "conv2", "long", "'aliases' must be a list"),
        ("not a string", "conv2", [3], "'aliases' must be a list"),
        ("empty", "conv2", [""], "'aliases' must be a list"),
        ("a layer's name", "conv2", ["conv1"], "is the name of a layer"),
        ("the input's name", "conv2", ["input"], "input"),
        ("twice", "conv2", ["x", "x"], "used twice"),
        ("another layer's alias", "conv3", ["long_conv2_name"], "used twice"),
        ("with a slash", "conv2", ["a/b"], "'/'"),
    ],
    ids=lambda c: c[0],
)
def test_bad_aliases_are_refused(aliased, case):
    _, layer, value, words = case
    graph, params = copy.deepcopy(aliased[0]), aliased[1]
    next(lj for lj in graph["layers"] if lj["name"] == layer)["aliases"] = value
    with pytest.raises(GraphError, match=words.replace("(", r"\(")):
        pydeconv.build(graph, params)


def test_unknown_layer_suggests_the_closest_names():
    graph, params = models.zfnet_like(seed=2, size=37)
    for i in range(40):  # more layers than any truncated list would show
        graph["layers"].append(
            {"name": f"extra{i}", "kind": "relu", "inputs": [graph["layers"][-1]["name"]]}
        )
    graph.pop("outputs", None)
    net = pydeconv.build(graph, params)
    _, trace = net.forward(models.random_input((1, 3, 37, 37), 1))
    for call in (
        lambda: net.layer_info("cnv4"),
        lambda: trace.activation("cnv4"),
        lambda: net.project(trace, "cnv4", channel=0),
    ):
        with pytest.raises(LayerNotFoundError) as exc:
            call()
        msg = str(exc.value)
        assert "'cnv4'" in msg and "closest: 'conv4'" in msg, msg
        assert "net.layers" in msg and "pydeconv info MODEL" in msg
        assert f"all {len(net.layers)}" in msg
        # one line: the name asked for and three suggestions
        assert msg.count("'") == 2 * 4 and "\n" not in msg
