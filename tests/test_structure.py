"""The structure kinds of issue 14 (mul, affine, upsample, slice, pad, channel_shuffle) beyond
test_layers' forward/projection cases: their receptive-field arithmetic (upsampling divides the
stride, padding shifts the start, a spatially broadcast gate makes every output read the whole
image), and the shape checks the schema cannot make, each a GraphError naming the layer and the
field.
"""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest
import test_layers

import pydeconv
from pydeconv.errors import GraphError


def _rf(net, name):
    d = net.layer_info(name)
    return tuple(d["rf_size"]), tuple(d["rf_stride"]), tuple(d["rf_start"])


def _covers(net, name, shape, rows):
    """For every output row p of `name`: the rows of the input that reach it (an impulse response
    through the engine's own projection) lie inside the reported receptive field."""
    size, stride, start = (v[0] for v in _rf(net, name))
    x = models.random_input((1,) + shape, 0)
    _, trace = net.forward(x)
    for p in range(rows):
        g = net.project(trace, name, channel=0, at=(p, 0), rule="backprop")
        hit = np.nonzero(np.abs(g[0]).sum(axis=(0, 2)))[0]
        assert hit.size, p
        assert start + p * stride <= hit.min() and hit.max() < start + p * stride + size, (p, hit)


def _chain(in_shape, layers):
    b = models._Builder("chain", in_shape, 0)
    src = "input"
    for name, kind, attrs in layers:
        if kind == "conv2d":
            src = b.conv(
                name,
                src,
                attrs.get("oc", in_shape[0]),
                attrs["k"],
                attrs.get("s", 1),
                attrs.get("p", 0),
            )
        else:
            src = b.add(name, kind, src, attrs)
    return pydeconv.build(*b.done())


def test_upsample_divides_the_stride():
    # conv 3x3 stride 4 pad 1: size 3, stride 4, start -1. Nearest x2: output p reads input
    # p // 2, whose field starts at -1 + (p // 2) * 4: stride 2, start -1 - 2, size 3 + 2.
    net = _chain(
        (2, 17, 17),
        [
            ("c", "conv2d", {"k": 3, "s": 4, "p": 1}),
            ("up", "upsample", {"scale": [2]}),
            ("up3", "upsample", {"scale": [1, 3], "bilinear": 1}),
        ],
    )
    assert _rf(net, "c") == ((3, 3), (4, 4), (-1, -1))
    assert _rf(net, "up") == ((5, 5), (2, 2), (-3, -3))
    # A stride (2) the factor (3) does not divide: the field is taken as the whole image.
    assert _rf(net, "up3") == ((17, 17), (17, 17), (0, 0))
    _covers(net, "up", (2, 17, 17), 10)


@pytest.mark.parametrize("bilinear,align", [(0, 0), (1, 0), (1, 1)])
@pytest.mark.parametrize("stride,scale", [(3, 3), (2, 2), (4, 2)])
def test_upsample_field_covers_every_output(stride, scale, bilinear, align):
    attrs = {"scale": [scale], "bilinear": bilinear, "align_corners": align}
    net = _chain(
        (1, 13, 13),
        [
            ("c", "conv2d", {"k": 3, "s": stride, "p": 1}),
            ("up", "upsample", attrs),
            ("c2", "conv2d", {"k": 3, "p": 1}),
        ],
    )
    rows = net.layer_info("up")["shape"][1]
    _covers(net, "up", (1, 13, 13), rows)
    _covers(net, "c2", (1, 13, 13), rows)


def test_pad_shifts_the_start():
    net = _chain(
        (1, 9, 9),
        [
            ("c", "conv2d", {"k": 3, "p": 1}),
            ("pad", "pad", {"padding": [2, 1, 0, 3]}),
            ("refl", "pad", {"padding": [1], "reflect": 1}),
        ],
    )
    assert _rf(net, "pad") == ((3, 3), (1, 1), (-3, -2))
    assert _rf(net, "refl") == ((3, 3), (1, 1), (-4, -3))


def test_broadcast_gate_reads_the_whole_image():
    graph, params = models.se_net(in_shape=(3, 9, 7))
    net = pydeconv.build(graph, params)
    assert _rf(net, "mul") == ((9, 7), (9, 7), (0, 0))  # as after global pooling
    same = _chain(
        (3, 9, 7),
        [
            ("c", "conv2d", {"k": 3, "p": 1}),
            ("sl", "slice", {"start": 0, "end": 2}),
            ("sh", "channel_shuffle", {"groups": 2}),
        ],
    )
    assert _rf(same, "sh") == _rf(same, "c")


# -- shape checks: GraphError naming the layer and the field ---------------------------------------
def _net(in_shape, kind, attrs=None, params=None, inputs=None):
    layers = []
    if inputs is not None:
        layers += inputs
    layers.append(
        {
            "name": "L",
            "kind": kind,
            "inputs": [x["name"] for x in inputs] if inputs else ["x"],
            "attrs": attrs or {},
            "params": {k: list(v.shape) for k, v in (params or {}).items()},
        }
    )
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "x", "shape": list(in_shape)},
        "layers": layers,
    }
    return pydeconv.build(graph, {f"L/{k}": v for k, v in (params or {}).items()})


def _pool_to(name, k):
    return {"name": name, "kind": "avg_pool2d", "inputs": ["x"], "attrs": {"kernel_size": k}}


BAD = [
    (
        "mul_no_broadcast",
        (3, 8, 8),
        "mul",
        {},
        {},
        [_pool_to("a", [2, 2]), _pool_to("b", [4, 1])],
        "do not broadcast",
    ),
    (
        "mul_rank",
        (3, 8, 8),
        "mul",
        {},
        {},
        [{"name": "a", "kind": "flatten", "inputs": ["x"]}, _pool_to("b", [8, 8])],
        "rank",
    ),
    ("slice_end_past_c", (3, 5, 5), "slice", {"start": 1, "end": 4}, {}, None, "'end'"),
    ("slice_end_before_start", (3, 5, 5), "slice", {"start": 2, "end": 2}, {}, None, "'end'"),
    (
        "slice_rows_past_h",
        (3, 5, 4),
        "slice",
        {"axis": 2, "start": 1, "end": 6},
        {},
        None,
        "5 rows",
    ),
    ("slice_axis_4", (3, 5, 5), "slice", {"axis": 4, "start": 0, "end": 1}, {}, None, "'axis'"),
    (
        "slice_cols_of_rank2",
        (3, 5, 5),
        "slice",
        {"axis": 3, "start": 0, "end": 1},
        {},
        [{"name": "f", "kind": "flatten", "inputs": ["x"]}],
        "rank-4",
    ),
    (
        "reflect_too_wide",
        (3, 5, 4),
        "pad",
        {"padding": [1, 4, 1, 1], "reflect": 1},
        {},
        None,
        "'padding'",
    ),
    (
        "reflect_on_1_row",
        (3, 1, 4),
        "pad",
        {"padding": [1, 0, 0, 0], "reflect": 1},
        {},
        None,
        "'padding'",
    ),
    (
        "reflect_with_value",
        (3, 5, 5),
        "pad",
        {"padding": [1], "reflect": 1, "value": 2.0},
        {},
        None,
        "'value'",
    ),
    ("pad_three_values", (3, 5, 5), "pad", {"padding": [1, 1, 1]}, {}, None, "'padding'"),
    ("shuffle_groups", (6, 5, 5), "channel_shuffle", {"groups": 4}, {}, None, "'groups'"),
    ("affine_no_params", (3, 5, 5), "affine", {}, {}, None, "'scale' or 'bias'"),
    (
        "affine_scale_shape",
        (3, 5, 5),
        "affine",
        {},
        {"scale": np.ones(2, np.float32)},
        None,
        "'scale'",
    ),
    (
        "affine_bias_shape",
        (3, 5, 5),
        "affine",
        {},
        {"bias": np.ones((3, 1), np.float32)},
        None,
        "'bias'",
    ),
    (
        "upsample_rank2",
        (3, 5, 5),
        "upsample",
        {"scale": [2]},
        {},
        [{"name": "f", "kind": "flatten", "inputs": ["x"]}],
        "(N, C, H, W)",
    ),
]


@pytest.mark.parametrize("cid,shape,kind,attrs,params,inputs,field", BAD, ids=[b[0] for b in BAD])
def test_shape_checks_name_layer_and_field(cid, shape, kind, attrs, params, inputs, field):
    with pytest.raises(GraphError) as info:
        _net(shape, kind, attrs, params, inputs)
    msg = str(info.value)
    assert "'L'" in msg and kind in msg and field in msg, msg


def test_valid_edges_build():
    _net((3, 5, 4), "pad", {"padding": [4, 3, 4, 3], "reflect": 1})  # size - 1: allowed
    _net((6, 5, 5), "channel_shuffle", {"groups": 6})
    _net((3, 5, 5), "slice", {"start": 0, "end": 3})
    _net((3, 5, 4), "slice", {"axis": 3, "start": 0, "end": 4})
    _net(
        (3, 8, 8), "mul", {}, {}, [_pool_to("a", [8, 1]), _pool_to("b", [1, 8])]
    )  # (3,1,8)*(3,8,1)


# -- regions: a single position near each corner, so that every border case of each kind's
# input_region (reflect padding's mirrored rows, the last bilinear taps) is on the projection's
# path; the gradients around the kind are region-limited (NaN-poisoned outside their regions).
@pytest.mark.parametrize("rule", ["deconvnet", "backprop"])
@pytest.mark.parametrize(
    "rid,kind,shape,attrs", test_layers.REGION_CASES, ids=[c[0] for c in test_layers.REGION_CASES]
)
def test_region_limited_projection_at_the_borders(rid, kind, shape, attrs, rule, threads, kernels):
    graph, params = models.sandwich_net(kind, shape, attrs)
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + shape, 5)
    acts, switches = npref.forward(graph, params, x)
    _, trace = net.forward(x, threads=threads)
    h, w = acts["conv_b"].shape[2:]
    for y, xx in ((0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (h // 2, 1)):
        got = net.project(trace, "conv_b", channel=1, at=(y, xx), rule=rule, threads=threads)
        start = npref.start_signal(acts["conv_b"], 1, (y, xx))
        ref = npref.project(graph, params, acts, switches, "conv_b", start, rule)
        npref.assert_close(got, ref, err_msg=f"{rid} at ({y}, {xx})")


def test_keep_minimal_keeps_mul_inputs():
    """mul's backward reads both forward inputs: keep='minimal' keeps them, and its projections
    equal keep='all''s."""
    graph, params = models.se_net()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + tuple(graph["input"]["shape"]), 3)
    _, full = net.forward(x, keep="all")
    _, lean = net.forward(x, keep="minimal")
    for rule in ("deconvnet", "guided", "backprop"):
        a = net.project(full, "mul", channel=2, at="max", rule=rule)
        b = net.project(lean, "mul", channel=2, at="max", rule=rule)
        np.testing.assert_array_equal(a, b)
