"""Adjoint tests: <A x, y> == <x, A^T y> with A x the engine's forward of a bias-free one-layer net
and A^T y its backprop projection.  They catch flipped kernels and padding off-by-ones exactly.
Layers that are not linear (lrn, batch_norm with its shift, softmax) are checked at the forward
point: the engine's projection against npref's, and against central finite differences of npref's
forward.
"""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv

N = 2


def _dot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def _adjoint_pair(graph, params, layer, seed=0, threads=None):
    """Returns (<A x, y>, <x, A^T y>, scale) for random x and y, using the engine only."""
    net = pydeconv.build(graph, params)
    x = models.random_input((N,) + tuple(graph["input"]["shape"]), seed)
    out, trace = net.forward(x, threads=threads)
    ax = trace.activation(layer)
    y = models.random_input(ax.shape, seed + 1)
    aty = net.project(trace, layer, at=y, rule="backprop", threads=threads)
    assert aty.shape == x.shape
    # float32 sums of K products carry errors of order eps * sum |terms|.
    scale = np.sum(np.abs(np.asarray(ax, np.float64) * y)) + np.sum(
        np.abs(np.asarray(aty, np.float64) * x)
    )
    return _dot(ax, y), _dot(x, aty), scale


def _check(lhs, rhs, scale):
    assert abs(lhs - rhs) <= 1e-5 * scale + 1e-12, (lhs, rhs, scale)


def _conv(k, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, **extra):
    return {
        "kernel_size": list(k),
        "stride": list(stride),
        "padding": list(padding),
        "dilation": list(dilation),
        "groups": groups,
        **extra,
    }


CONV = [
    ("plain", (3, 7, 7), {"kernel_size": [3, 3]}),
    (
        "stride2_asym_pad",
        (3, 13, 13),
        {"kernel_size": [7, 7], "stride": [2, 2], "padding": [1, 2, 3, 1]},
    ),
    (
        "stride_gt_kernel",
        (13, 13, 13),
        {"kernel_size": [2, 2], "stride": [3, 3], "padding": [1, 0, 1, 0]},
    ),
    ("dilation", (3, 13, 7), _conv((3, 3), dilation=(2, 3), padding=(2, 3, 1, 0))),
    ("groups", (6, 7, 7), _conv((3, 3), groups=3, padding=(1, 1, 1, 1), out_channels=9)),
    ("depthwise", (13, 7, 7), _conv((3, 3), (2, 2), (1, 1, 1, 1), groups=13)),
    ("rect", (3, 7, 13), _conv((1, 5), (2, 1), (0, 2, 0, 2), out_channels=4)),
    ("one_pixel", (1, 1, 1), {"kernel_size": [1, 1]}),
    ("pointwise", (13, 7, 5), {"kernel_size": [1, 1], "out_channels": 6}),
    (
        "gemm_blocks",
        (32, 13, 13),
        {"kernel_size": [3, 3], "padding": [1, 1, 1, 1], "out_channels": 70},
    ),
    (
        "row_tiles",
        (32, 66, 66),
        {"kernel_size": [3, 3], "padding": [1, 1, 1, 1], "out_channels": 3},
    ),
]


CONV += [
    # The depthwise kernels (kernels/depthwise.cpp): groups == C == OC, 3x3 / 5x5, stride 1 / 2.
    ("dw_k3_s1", (13, 7, 7), _conv((3, 3), padding=(1, 1, 1, 1), groups=13)),
    ("dw_k5_s2_asym", (6, 11, 9), _conv((5, 5), (2, 2), (2, 1, 0, 2), groups=6)),
    ("dw_k3_rect_stride", (5, 8, 9), _conv((3, 3), (2, 1), (0, 1, 1, 0), groups=5)),
]


@pytest.mark.parametrize("cid,shape,attrs", CONV, ids=[c[0] for c in CONV])
def test_conv2d(cid, shape, attrs, threads):
    graph, params = models.single_layer("conv2d", shape, attrs, seed=1, with_params=False)
    _check(*_adjoint_pair(graph, params, "conv2d", threads=threads))


def _pool(k, stride, padding, ceil_mode=False):
    return {
        "kernel_size": list(k),
        "stride": list(stride),
        "padding": list(padding),
        "ceil_mode": ceil_mode,
    }


POOLS = [
    ("3s2_pad_ceil", (3, 7, 7), _pool((3, 3), (2, 2), (1, 1, 1, 1), True)),
    ("asym_ceil", (13, 8, 13), _pool((3, 2), (2, 3), (1, 0, 0, 1), True)),
    ("overlap_s1", (3, 7, 7), _pool((5, 5), (1, 1), (2, 2, 2, 2))),
    ("past_padding", (1, 8, 8), _pool((3, 3), (2, 2), (1, 1, 1, 1), True)),
]


@pytest.mark.parametrize("cid,shape,attrs", POOLS, ids=[p[0] for p in POOLS])
def test_max_pool_through_fixed_switches(cid, shape, attrs, threads):
    """With its switches S fixed, max pooling is the gather x -> x[S] and unpooling its
    transpose."""
    graph, params = models.single_layer("max_pool2d", shape, attrs)
    net = pydeconv.build(graph, params)
    x = models.random_input((N,) + shape, 4)
    out, trace = net.forward(x, threads=threads)
    s = trace.switches("max_pool2d")
    planes = x.reshape(N * shape[0], -1)
    gathered = np.take_along_axis(planes, s.reshape(N * shape[0], -1), axis=1)
    np.testing.assert_array_equal(out.reshape(gathered.shape), gathered)
    y = models.random_input(out.shape, 5)
    aty = net.project(trace, "max_pool2d", at=y, rule="backprop", threads=threads)
    _check(_dot(out, y), _dot(x, aty), np.sum(np.abs(np.asarray(out, np.float64) * y)))
    npref.assert_close(aty, npref.max_unpool2d(y.astype(np.float64), s, x.shape))


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("cid,shape,attrs", POOLS, ids=[p[0] for p in POOLS])
def test_avg_pool(cid, shape, attrs, count_include_pad, threads):
    graph, params = models.single_layer(
        "avg_pool2d", shape, dict(attrs, count_include_pad=count_include_pad)
    )
    _check(*_adjoint_pair(graph, params, "avg_pool2d", threads=threads))


LINEAR_ONES = [
    ("global_avg_pool", (13, 7, 13), {}),
    ("linear", (3, 7, 5), {"out_features": 6}),
    ("linear", (13, 1, 1), {"out_features": 1}),
    ("linear", (64, 4, 4), {"out_features": 300}),
    ("flatten", (3, 7, 5), {}),
    ("dropout", (3, 7, 5), {}),
    ("batch_norm", (13, 7, 5), {}),
    ("add", (3, 7, 5), {"n_inputs": 3}),
    ("concat", (3, 7, 5), {"n_inputs": 2}),
    ("affine", (13, 7, 5), {}),
    ("affine", (3, 7, 5), {"params": "scale", "scalar": True}),
    ("upsample", (3, 7, 5), {"scale": [2, 3]}),
    ("upsample", (13, 5, 7), {"scale": [3, 2], "bilinear": 1}),
    ("upsample", (3, 5, 7), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("upsample", (1, 1, 7), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("upsample", (16, 24, 24), {"scale": [2], "bilinear": 1}),
    ("slice", (13, 7, 5), {"start": 3, "end": 10}),
    ("pad", (3, 7, 5), {"padding": [1, 2, 0, 3]}),
    ("pad", (13, 7, 5), {"padding": [6, 4, 2, 1], "reflect": 1}),
    ("channel_shuffle", (12, 7, 5), {"groups": 3}),
]
LINEAR_ONES += [
    ("conv_transpose2d", (3, 7, 5), _conv((3, 3), padding=(1, 1, 1, 1), out_channels=4)),
    ("conv_transpose2d", (13, 5, 6), _conv((4, 4), (2, 2), (1, 2, 0, 1), out_channels=8)),
    (
        "conv_transpose2d",
        (6, 5, 7),
        _conv((3, 2), (3, 2), (0, 1, 1, 0), (1, 2), groups=3, output_padding=[2, 1]),
    ),
    ("conv_transpose2d", (8, 7, 7), _conv((3, 3), dilation=(2, 2), out_channels=16)),
    # A depthwise transposed conv: its forward takes the depthwise kernel (kernels/depthwise.cpp).
    ("conv_transpose2d", (6, 7, 5), _conv((3, 3), (2, 2), (1, 1, 1, 1), groups=6)),
]


@pytest.mark.parametrize(
    "kind,shape,attrs", LINEAR_ONES, ids=[f"{k}_{s[0]}" for k, s, _ in LINEAR_ONES]
)
def test_linear_kinds(kind, shape, attrs, threads):
    graph, params = models.single_layer(kind, shape, attrs, seed=2, with_params=False)
    _check(*_adjoint_pair(graph, params, kind, threads=threads))


@pytest.mark.parametrize("kind", ["add", "concat"])
def test_merge_through_branches(kind, threads):
    """Distinct branches meeting in add/concat: each part of the signal goes back through its
    own."""
    graph, params = models.merge_net(kind, (3, 7, 5), (2, 5, 3))
    _check(*_adjoint_pair(graph, params, kind, threads=threads))


# Nonlinear layers, linearised at the forward point x0: J^T y against npref and against central
# finite differences <y, (f(x0 + e v) - f(x0 - e v)) / 2e> along a few random directions v.
JACOBIAN = [
    ("lrn", (13, 7, 5), {"size": 5, "alpha": 0.8, "beta": 0.75, "bias": 1.0}),
    ("lrn", (3, 7, 5), {"size": 4, "alpha": 2.0, "beta": 0.9, "bias": 1.5}),
    ("lrn", (7, 1, 1), {}),
    ("batch_norm", (13, 7, 5), {}),
    ("softmax", (13, 3, 2), {}),
    # mul is bilinear (x * gate(x)), its Jacobian the product rule
    ("mul", (3, 7, 5), {}),
    ("mul", (13, 7, 5), {"broadcast": "channel"}),
    ("mul", (3, 7, 5), {"broadcast": "spatial", "swap": True}),
    ("mul", (3, 5, 7), {"broadcast": "scalar"}),
    ("mul", (13, 5, 7), {"broadcast": "rows", "swap": True}),
    ("mul", (16, 48, 48), {"broadcast": "channel"}),
    # the activations' gradients (backprop; the other rules: test_layers)
    ("leaky_relu", (3, 7, 5), {"alpha": 0.2}),
    ("prelu", (13, 7, 5), {}),
    ("clip", (3, 7, 6), {"min": 0.0, "max": 0.8}),
    ("clip", (13, 7, 4), {"min": -0.4, "max": 0.9}),
    ("sigmoid", (3, 7, 5), {}),
    ("tanh", (13, 3, 2), {}),
    ("silu", (3, 7, 5), {}),
    ("hardsigmoid", (3, 7, 5), {"alpha": 0.6, "beta": 0.4}),
    ("hardswish", (3, 7, 5), {}),
    ("mish", (3, 7, 5), {}),
    ("elu", (3, 7, 5), {"alpha": 0.7}),
    ("gelu", (3, 7, 5), {}),
    ("gelu", (13, 7, 3), {"tanh": 1}),
]
JACOBIAN += [
    ("layer_norm", (13, 7, 5), {}),
    ("layer_norm", (3, 1, 7), {"epsilon": 0.5}),
    ("layer_norm", (2, 3, 3), {}),
]


JACOBIAN_IDS = [f"{k}_{s[0]}_{a.get('size', a.get('broadcast', ''))}" for k, s, a in JACOBIAN]

# Per layer kind, the tests here that check its backward as a linear map (an adjoint test, or
# the Jacobian at the forward point for the nonlinear kinds). tests/test_registry.py checks every
# registered kind appears, but for ReLU, whose backward the rule decides (test_layers projects it
# under each rule against npref).
BACKWARD_TESTS: dict[str, set[str]] = {
    "conv2d": {"test_conv2d"},
    "max_pool2d": {"test_max_pool_through_fixed_switches"},
    "avg_pool2d": {"test_avg_pool"},
}
for _kind, _, _ in LINEAR_ONES:
    BACKWARD_TESTS.setdefault(_kind, set()).add("test_linear_kinds")
for _kind, _, _ in JACOBIAN:
    BACKWARD_TESTS.setdefault(_kind, set()).add("test_jacobian_at_forward_point")


@pytest.mark.parametrize("kind,shape,attrs", JACOBIAN, ids=JACOBIAN_IDS)
def test_jacobian_at_forward_point(kind, shape, attrs, threads):
    graph, params = models.single_layer(kind, shape, attrs, seed=3)
    net = pydeconv.build(graph, params)
    x = models.random_input((N,) + shape, 6)
    _, trace = net.forward(x, threads=threads)
    y = models.random_input(trace.activation(kind).shape, 7)
    aty = net.project(trace, kind, at=y, rule="backprop", threads=threads)
    acts, switches = npref.forward(graph, params, x)
    ref = npref.project(graph, params, acts, switches, kind, y, "backprop")
    npref.assert_close(aty, ref)
    rng = np.random.default_rng(8)
    eps = 1e-6
    x64 = x.astype(np.float64)
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        plus = npref.forward(graph, params, x64 + eps * v)[0][kind]
        minus = npref.forward(graph, params, x64 - eps * v)[0][kind]
        fd = _dot(plus - minus, y) / (2 * eps)
        assert abs(_dot(ref, v) - fd) <= 1e-6 * max(1.0, abs(fd))  # npref's own gradient
        assert (
            abs(_dot(aty, v) - fd) <= 1e-4 * np.sum(np.abs(np.asarray(aty, np.float64) * v)) + 1e-6
        )


def test_se_gate_through_branches(threads):
    """An SE block (x * gate(x), the gate from global pooling and two 1x1 convs): the product
    rule sends the signal down both branches; against npref and finite differences."""
    graph, params = models.se_net()
    net = pydeconv.build(graph, params)
    x = models.random_input((N,) + tuple(graph["input"]["shape"]), 9)
    _, trace = net.forward(x, threads=threads)
    y = models.random_input(trace.activation("mul").shape, 10)
    aty = net.project(trace, "mul", at=y, rule="backprop", threads=threads)
    acts, switches = npref.forward(graph, params, x)
    ref = npref.project(graph, params, acts, switches, "mul", y, "backprop")
    npref.assert_close(aty, ref)
    # The gate's branch carries part of it: x's branch alone (y * gate down conv "x") differs.
    gate = acts["excite"]
    x_only = npref.conv2d_transpose(
        y * gate,
        x.shape,
        np.asarray(params["x/weight"], np.float64),
        npref._conv_attrs(graph["layers"][0], np.asarray(params["x/weight"])),
    )
    assert np.abs(ref - x_only).max() > 1e-3 * np.abs(ref).max()
    rng = np.random.default_rng(11)
    eps = 1e-6
    x64 = x.astype(np.float64)
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        plus = npref.forward(graph, params, x64 + eps * v)[0]["mul"]
        minus = npref.forward(graph, params, x64 - eps * v)[0]["mul"]
        fd = _dot(plus - minus, y) / (2 * eps)
        assert (
            abs(_dot(aty, v) - fd) <= 1e-4 * np.sum(np.abs(np.asarray(aty, np.float64) * v)) + 1e-6
        )


BACKWARD_TESTS["mul"].add("test_se_gate_through_branches")


# -- head: the layout kinds of a detection head's decode and affine's broadcast tensors ------------
HEAD_LINEAR = [
    ("reshape", (3, 7, 5), {"shape": [5, 1, 21]}),
    ("reshape", (6, 2, 5), {"shape": [5, 4, 3]}),
    ("transpose", (3, 7, 5), {"perm": [1, 0, 2]}),
    ("transpose", (13, 4, 5), {"perm": [2, 0, 1]}),
    ("concat", (3, 7, 5), {"axis": 3, "n_inputs": 3}),
    ("concat", (13, 2, 5), {"axis": 2}),
    ("add", (3, 7, 5), {"weights": [1.0, -1.0, 0.25], "n_inputs": 3}),
]


@pytest.mark.parametrize(
    "kind,shape,attrs", HEAD_LINEAR, ids=[f"{k}_{i}" for i, (k, _, _) in enumerate(HEAD_LINEAR)]
)
def test_head_linear_kinds(kind, shape, attrs, threads):
    graph, params = models.single_layer(kind, shape, attrs, seed=2, with_params=False)
    _check(*_adjoint_pair(graph, params, kind, threads=threads))


@pytest.mark.parametrize("scale_shape", [(1, 1, 1, 5), (1, 3, 7, 1), (1, 3, 7, 5), (3,)])
def test_affine_broadcast_tensor(scale_shape, threads):
    """affine by a (1, C|1, H|1, W|1) scale (a zero bias tensor keeps the broadcast path on):
    linear, its adjoint the same scale."""
    rng = np.random.default_rng(4)
    graph = {
        "format": "pydeconv",
        "version": 1,
        "input": {"name": "x", "shape": [3, 7, 5]},
        "layers": [
            {
                "name": "affine",
                "kind": "affine",
                "inputs": ["x"],
                "params": {"scale": list(scale_shape), "bias": [1, 1, 1, 5]},
            }
        ],
    }
    params = {
        "affine/scale": rng.uniform(-2, 2, scale_shape).astype(np.float32),
        "affine/bias": np.zeros((1, 1, 1, 5), np.float32),
    }
    _check(*_adjoint_pair(graph, params, "affine", threads=threads))


for _kind, _, _ in HEAD_LINEAR:
    BACKWARD_TESTS.setdefault(_kind, set()).add("test_head_linear_kinds")
