"""The per-rule record (issue 14): each registry row declares how the signal goes down under each
rule, and Net.rules(layer, rule) / `pydeconv info MODEL --rules RULE` list it for every layer a
projection passes, in the order the signal meets them."""

from __future__ import annotations

import models
import npref
import pytest

import pydeconv
from pydeconv import _core, cli
from pydeconv.errors import LayerNotFoundError, PydeconvError

ROWS = {r["name"]: r for r in _core.layer_registry()}


def _net(kind, attrs=None):
    """conv1 -> KIND -> pool -> conv2, and a side branch conv_side off the input that conv2's
    projection never passes."""
    b = models._Builder("rules", (3, 9, 9), 0)
    b.conv("conv1", "input", 4, 3, padding=1)
    b.add("act", kind, "conv1", attrs)
    b.add("pool", "max_pool2d", "act", {"kernel_size": [2, 2]})
    b.conv("conv2", "pool", 5, 3, padding=1)
    b.conv("conv_side", "input", 2, 1)
    graph, params = b.done()
    graph["outputs"] = ["conv2", "conv_side"]
    return pydeconv.build(graph, params)


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "backprop"])
def test_silu_net_reports_the_silu_row(rule):
    rows = _net("silu").rules("conv2", rule)
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("conv2", "conv2d"),
        ("pool", "max_pool2d"),
        ("act", "silu"),
        ("conv1", "conv2d"),
    ]
    assert rows[2]["rule"] == ROWS["silu"]["rules"][rule]
    if rule != "deconvnet":  # deconvnet's relu(g) is the same text for both kinds
        assert rows[2]["rule"] != ROWS["relu"]["rules"][rule]  # never relu's
    assert rows[0]["rule"] == ROWS["conv2d"]["rule"]
    assert rows[1]["rule"] == ROWS["max_pool2d"]["rule"]


def test_silu_rules_differ_by_rule():
    net = _net("silu")
    texts = {rule: net.rules("conv2", rule)[2]["rule"] for rule in pydeconv.net.RULES}
    assert texts["deconvnet"] == "relu(g)"
    assert "relu(g)" in texts["guided"] and "s*(1+x*(1-s))" in texts["guided"]
    assert texts["backprop"].startswith("g*")


def test_saturating_kind_passes_the_gradient_under_every_rule():
    net = _net("sigmoid")
    texts = {net.rules("conv2", rule)[2]["rule"] for rule in pydeconv.net.RULES}
    assert texts == {ROWS["sigmoid"]["rule"]}


def test_clip_decides_from_its_min():
    relu6 = _net("clip", {"min": 0.0, "max": 6.0})
    band = _net("clip", {"min": -1.0, "max": 1.0})
    assert relu6.rules("conv2", "deconvnet")[2]["rule"] == "relu(g)"
    assert relu6.rules("conv2", "guided")[2]["rule"] == "relu(g)*[min<x<max]"
    for rule in pydeconv.net.RULES:
        assert band.rules("conv2", rule)[2]["rule"] == "g*[min<x<max]"
    # info() reports the line that applies: the rectifying summary or the gradient.
    assert relu6.layer_info("act")["rule"] == ROWS["clip"]["rule"]
    assert band.layer_info("act")["rule"] == "g*[min<x<max]"


def test_branches_each_once_in_the_order_the_signal_meets_them():
    b = models._Builder("branches", (3, 7, 7), 0)
    b.conv("a", "input", 3, 1)
    b.add("a_act", "elu", "a")
    b.conv("b", "input", 3, 1)
    b.add("b_act", "tanh", "b")
    b.add("sum", "add", ["a_act", "b_act"])
    b.add("out", "hardswish", "sum")
    graph, params = b.done()
    net = pydeconv.build(graph, params)
    rows = net.rules("out", "guided")
    assert [r["name"] for r in rows] == ["out", "sum", "b_act", "b", "a_act", "a"]
    assert rows[2]["rule"] == ROWS["tanh"]["rule"]
    assert rows[4]["rule"] == ROWS["elu"]["rules"]["guided"]
    assert [r["name"] for r in net.rules("b_act", "backprop")] == ["b_act", "b"]


def test_side_branch_and_start_layer():
    net = _net("mish")
    assert [r["name"] for r in net.rules("conv_side")] == ["conv_side"]
    assert net.rules("act")[0] == {"name": "act", "kind": "mish", "rule": "relu(g)"}


def test_bad_arguments():
    net = _net("gelu")
    with pytest.raises(LayerNotFoundError):
        net.rules("nope", "guided")
    with pytest.raises(PydeconvError, match="rule"):
        net.rules("conv2", "lrp")
    with pytest.raises(PydeconvError, match="rule"):
        net.rules("conv2", 3)  # type: ignore[arg-type]


def test_cli_info_rules(tmp_path, capsys):
    path = tmp_path / "silu.npz"
    _net("silu").save(path)
    assert cli.main(["info", str(path), "--rules", "guided", "--from", "conv2"]) == 0
    out = capsys.readouterr().out
    assert "projection from conv2 under guided" in out
    listing = out.split("projection from conv2 under guided", 1)[1].splitlines()
    line = next(ln for ln in listing if ln.split()[:2] == ["act", "silu"])
    assert line.endswith(ROWS["silu"]["rules"]["guided"])
    assert cli.main(["info", str(path), "--rules", "deconvnet"]) == 0
    out = capsys.readouterr().out
    assert "projection from conv2 under deconvnet" in out
    assert "projection from conv_side under deconvnet" in out


KINDS = [
    ("leaky_relu", None),
    ("prelu", None),
    ("clip", {"min": 0.0, "max": 0.6}),
    ("clip", {"min": -0.4, "max": 0.6}),
    ("sigmoid", None),
    ("tanh", None),
    ("silu", None),
    ("hardsigmoid", None),
    ("hardswish", None),
    ("mish", None),
    ("elu", None),
    ("gelu", {"tanh": 1}),
]


@pytest.mark.parametrize("keep", ["all", "minimal"])
@pytest.mark.parametrize("kind,attrs", KINDS, ids=[f"{k}{i}" for i, (k, _) in enumerate(KINDS)])
def test_activation_inside_a_chain(kind, attrs, keep, kernels):
    """conv -> KIND -> conv, projected from the last conv: the activation's backward then works in
    place on its output's signal (the row's kBackwardInPlace) and, under keep="minimal", on the
    input the executor kept for it (kNeedsInput); every rule against npref."""
    b = models._Builder("chain", (3, 7, 9), 4)
    b.conv("conv1", "input", 5, 3, padding=1)
    if kind == "prelu":
        b.add("act", kind, "conv1", attrs, {"slope": b.rng.uniform(-0.5, 0.5, 5)})
    else:
        b.add("act", kind, "conv1", attrs)
    b.conv("conv2", "act", 4, 3, padding=1)
    graph, params = b.done()
    net = pydeconv.build(graph, params)
    x = 2 * models.random_input((2, 3, 7, 9), 5)
    acts, switches = npref.forward(graph, params, x)
    _, trace = net.forward(x, keep=keep if keep == "all" else ["conv2"])
    start = models.random_input(acts["conv2"].shape, 6)
    for rule in pydeconv.net.RULES:
        got = net.project(trace, "conv2", at=start, rule=rule)
        ref = npref.project(graph, params, acts, switches, "conv2", start, rule)
        npref.assert_close(got, ref, err_msg=f"{kind} {keep} {rule}")
