"""Walks the layer registry (`_core.layer_registry()`, one row per kind in
csrc/src/layers/registry.cpp) and fails when a kind lacks any of what adding one takes
(docs/CONTRIBUTING.md): a schema, forward and backward tests, reference kernels, a row in
docs/PROJECTION.md and in the README's table. Then it drives each kind's schema checks: every
attribute out of its range or arity, every unknown or missing field is refused with an error that
names the layer and the field.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import test_adjoint
import test_layers

import pydeconv
from pydeconv import _core
from pydeconv.errors import GraphError

ROOT = Path(__file__).resolve().parents[1]
ROWS = _core.layer_registry()
KINDS = [r["name"] for r in ROWS]
BY_KIND = {r["name"]: r for r in ROWS}

# A valid one-layer spec per kind on a (3, 9, 9) input: (attrs, params, number of inputs).
W = np.full
VALID = {
    "conv2d": ({"kernel_size": [3, 3]}, {"weight": W((4, 3, 3, 3), 0.1, np.float32)}, 1),
    "relu": ({}, {}, 1),
    "max_pool2d": ({"kernel_size": [2, 2]}, {}, 1),
    "avg_pool2d": ({"kernel_size": [3, 3], "stride": [2, 2]}, {}, 1),
    "global_avg_pool": ({}, {}, 1),
    "lrn": ({"size": [3]}, {}, 1),
    "batch_norm": ({}, {p: W((3,), 1.0, np.float32) for p in ("scale", "bias", "mean", "var")}, 1),
    "linear": ({}, {"weight": W((5, 243), 0.1, np.float32)}, 1),
    "flatten": ({}, {}, 1),
    "dropout": ({"ratio": [0.5]}, {}, 1),
    "softmax": ({}, {}, 1),
    "add": ({}, {}, 2),
    "concat": ({}, {}, 3),
    "mul": ({}, {}, 2),
    "affine": ({}, {"scale": W((3,), 0.5, np.float32), "bias": W((1,), 0.1, np.float32)}, 1),
    "upsample": ({"scale": [2, 3], "bilinear": [1]}, {}, 1),
    "slice": ({"axis": [1], "start": [0], "end": [2]}, {}, 1),
    "pad": ({"padding": [1, 2, 3, 4], "value": [0.5]}, {}, 1),
    "channel_shuffle": ({"groups": [3]}, {}, 1),
    "leaky_relu": ({"alpha": [0.1]}, {}, 1),
    "prelu": ({}, {"slope": W((3,), 0.25, np.float32)}, 1),
    "clip": ({"min": [0.0], "max": [6.0]}, {}, 1),
    "sigmoid": ({}, {}, 1),
    "tanh": ({}, {}, 1),
    "silu": ({}, {}, 1),
    "hardsigmoid": ({"alpha": [0.2], "beta": [0.5]}, {}, 1),
    "hardswish": ({}, {}, 1),
    "mish": ({}, {}, 1),
    "elu": ({"alpha": [1.0]}, {}, 1),
    "gelu": ({"tanh": [1]}, {}, 1),
}
VALID |= {
    "conv_transpose2d": ({"stride": [2, 2]}, {"weight": W((3, 4, 3, 3), 0.1, np.float32)}, 1),
    "layer_norm": ({}, {"scale": W((3,), 1.0, np.float32)}, 1),
}
# -- head
VALID |= {
    "reshape": ({"shape": [3, 1, 81]}, {}, 1),
    "transpose": ({"perm": [1, 0, 2]}, {}, 1),
}
# Kinds whose backward is not one linear map: the projection rule decides (test_layers projects
# each under all three rules against npref instead of an adjoint test).
RULE_DEPENDENT = {"relu"}
# the rectifying activations (clip when min == 0)
RULE_DEPENDENT |= {"leaky_relu", "prelu", "clip", "silu", "hardswish", "mish", "elu", "gelu"}


def _kernel_sources():
    text = ""
    for path in sorted((ROOT / "csrc").rglob("*")):
        if path.suffix in (".hpp", ".cpp", ".inc"):
            text += path.read_text(encoding="utf-8")
    return text


def _table_kinds(text: str) -> set[str]:
    """The backticked names in the first column of a markdown table's rows."""
    kinds = set()
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and line.lstrip().startswith("|"):
            kinds |= set(re.findall(r"`([a-z0-9_]+)`", cells[1]))
    return kinds


def test_registry_lists_each_kind_once():
    assert len(KINDS) == len(set(KINDS)) and KINDS
    assert set(KINDS) == set(VALID), "give each new kind a valid spec in VALID above"


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_complete(kind):
    row = BY_KIND[kind]
    schema = row["schema"]
    assert schema["min_inputs"] >= 1
    assert schema["max_inputs"] == 0 or schema["max_inputs"] >= schema["min_inputs"]
    names = [a["name"] for a in schema["attrs"]] + [p["name"] for p in schema["params"]]
    assert len(names) == len(set(names))
    for a in schema["attrs"]:
        assert a["type"] in ("int", "bool", "number", "ignored")
        assert a["range"] in ("any", "positive", "non-negative", "one")
        if a["type"] != "ignored":
            assert 1 <= a["n_min"] <= a["n_max"]
            # A default is a constant of the declared arity, or the note says where it comes from.
            assert (a["n_min"] <= len(a["default"]) <= a["n_max"]) or a["note"] or a["required"], a
    assert row["rule"].strip()


@pytest.mark.parametrize("kind", KINDS)
def test_kind_has_forward_and_backward_tests(kind):
    assert test_layers.CASES_BY_KIND.get(kind), (
        f"no forward/projection case in tests/test_layers.py for {kind}"
    )
    if kind in RULE_DEPENDENT:
        return
    tests = test_adjoint.BACKWARD_TESTS.get(kind)
    assert tests, f"no adjoint or Jacobian test in tests/test_adjoint.py for {kind}"
    for name in tests:
        assert callable(getattr(test_adjoint, name, None)), name


@pytest.mark.parametrize("kind", KINDS)
def test_kind_has_reference_kernels(kind):
    """Each named reference kernel is declared and defined in csrc/ ("copy": the kind only
    copies)."""
    ref = BY_KIND[kind]["reference"]
    names = [n.strip() for n in ref.split(",") if n.strip()]
    assert names, f"{kind}: the registry row names no reference kernel"
    if names == ["copy"]:
        return
    src = _kernel_sources()
    for name in names:
        assert name.endswith("_ref"), name
        defs = re.findall(rf"\b{name}\s*\([^;{{]*\)\s*{{", src)
        assert defs, f"{kind}: reference kernel {name} is not defined under csrc/"


def test_projection_doc_has_a_row_per_kind():
    doc = _table_kinds((ROOT / "docs" / "PROJECTION.md").read_text(encoding="utf-8"))
    assert set(KINDS) <= doc, f"missing in docs/PROJECTION.md: {sorted(set(KINDS) - doc)}"
    assert doc <= set(KINDS), f"not layer kinds: {sorted(doc - set(KINDS))}"


def test_readme_layer_table_matches_registry():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layer kinds", 1)[1].split("\n## ", 1)[0]
    readme = _table_kinds(section)
    assert readme == set(KINDS)


# -- the schema checks every kind gets before its own shape rule ----------------------------------
def _build(kind, attrs, params, n_inputs):
    layer = {
        "name": "L1",
        "kind": kind,
        "inputs": ["x"] * n_inputs,
        "attrs": attrs,
        "params": {k: list(v.shape) for k, v in params.items()},
    }
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "x", "shape": [3, 9, 9]},
        "layers": [layer],
    }
    return pydeconv.build(graph, {f"L1/{k}": v for k, v in params.items()})


def _refused(kind, attrs, params, n_inputs, field):
    with pytest.raises(GraphError) as info:
        _build(kind, attrs, params, n_inputs)
    msg = str(info.value)
    assert "'L1'" in msg and kind in msg and field in msg, msg


@pytest.mark.parametrize("kind", KINDS)
def test_schema_refuses_bad_specs(kind):
    attrs, params, n_in = VALID[kind]
    schema = BY_KIND[kind]["schema"]
    _build(kind, attrs, params, n_in)
    _refused(kind, dict(attrs, bogus=[1]), params, n_in, "'bogus'")
    _refused(kind, attrs, dict(params, bogus=W((1,), 1.0, np.float32)), n_in, "'bogus'")
    lo, hi = schema["min_inputs"], schema["max_inputs"]
    if lo > 1:  # no inputs at all: refused for every kind alike, before its schema
        _refused(kind, attrs, params, lo - 1, "input")
    if hi:
        _refused(kind, attrs, params, hi + 1, "input")
    for p in schema["params"]:
        if p["required"]:
            _refused(
                kind, attrs, {k: v for k, v in params.items() if k != p["name"]}, n_in, p["name"]
            )
        if p["name"] in params:
            bad = params[p["name"]].copy()
            bad.flat[0] = np.nan
            _refused(kind, attrs, dict(params, **{p["name"]: bad}), n_in, p["name"])
    for a in schema["attrs"]:
        name = a["name"]
        if a["required"]:
            _refused(kind, {k: v for k, v in attrs.items() if k != name}, params, n_in, name)
        if a["type"] == "ignored":
            continue
        _refused(kind, dict(attrs, **{name: [1] * (a["n_max"] + 1)}), params, n_in, name)
        if a["type"] in ("int", "bool"):
            _refused(kind, dict(attrs, **{name: [1.5] * a["n_min"]}), params, n_in, name)
        _refused(kind, dict(attrs, **{name: [float("inf")] * a["n_min"]}), params, n_in, name)
        out = {"positive": 0, "non-negative": -1, "one": 2}.get(a["range"])
        if out is not None:
            _refused(kind, dict(attrs, **{name: [out] * a["n_min"]}), params, n_in, name)


# the per-rule record ----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_row_declares_each_rule(kind):
    """Every row says how the signal goes down under each rule; a kind that does not rectify
    passes the same text (its gradient) under all three, a rectifying one differs between
    deconvnet and backprop, and only the rule-dependent kinds rectify."""
    row = BY_KIND[kind]
    texts = row["rules"]
    assert set(texts) == {"deconvnet", "guided", "backprop"}
    assert all(t.strip() for t in texts.values())
    assert row["rectifying"] == (kind in RULE_DEPENDENT)
    if row["rectifying"]:
        assert texts["deconvnet"] == "relu(g)" and texts["backprop"] != texts["deconvnet"]
    else:
        assert texts["deconvnet"] == texts["guided"] == texts["backprop"] == row["rule"]


def test_prelu_slope_must_match_channels():
    _refused("prelu", {}, {"slope": W((2,), 0.25, np.float32)}, 1, "slope")


def test_clip_min_above_max_is_refused():
    _refused("clip", {"min": [2.0], "max": [1.0]}, {}, 1, "min")


# -- head: the extended rows' own checks
def test_reshape_needs_the_same_element_count():
    _refused("reshape", {"shape": [3, 2, 81]}, {}, 1, "'shape'")


def test_transpose_needs_a_permutation():
    _refused("transpose", {"perm": [0, 0, 2]}, {}, 1, "'perm'")
    _refused("transpose", {"perm": [0, 1, 3]}, {}, 1, "'perm'")


def test_concat_axis_checks():
    _refused("concat", {"axis": [4]}, {}, 2, "'axis'")
    with pytest.raises(GraphError, match="differ in a dim other than W"):
        graph = {
            "format": "pydeconv",
            "version": 1,
            "input": {"name": "x", "shape": [3, 9, 9]},
            "layers": [
                {"name": "a", "kind": "slice", "inputs": ["x"], "attrs": {"start": 0, "end": 2}},
                {"name": "L1", "kind": "concat", "inputs": ["x", "a"], "attrs": {"axis": 3}},
            ],
        }
        pydeconv.build(graph, {})


def test_add_weights_one_per_input():
    _refused("add", {"weights": [1.0, -1.0, 2.0]}, {}, 2, "'weights'")


def test_affine_tensor_must_broadcast():
    _refused("affine", {}, {"scale": W((1, 3, 2, 9), 1.0, np.float32)}, 1, "'scale'")
    _refused("affine", {}, {"bias": W((2, 3, 9, 9), 1.0, np.float32)}, 1, "'bias'")
