"""Every layer kind on its own, forward and projected, against the NumPy float64 reference.

Shapes are deliberately odd (channels 1/3/13, sizes 1/7/13, stride > kernel, asymmetric padding,
dilation, groups, ceil_mode windows that run past or would start in the padding) and every case runs
at 1 and 2 threads and with the reference kernels forced.
"""

from __future__ import annotations

import models
import npref
import numpy as np
import pytest

import pydeconv


def _pool(k, s=None, pad=None, ceil=False, **extra):
    attrs = {"kernel_size": k if isinstance(k, list) else [k, k], "ceil_mode": ceil, **extra}
    if s is not None:
        attrs["stride"] = s if isinstance(s, list) else [s, s]
    if pad is not None:
        attrs["padding"] = pad
    return attrs


def _conv(k, out, s=1, pad=(0, 0, 0, 0), d=1, g=1):
    k = k if isinstance(k, list) else [k, k]
    s = s if isinstance(s, list) else [s, s]
    return {
        "kernel_size": k,
        "stride": s,
        "padding": list(pad),
        "dilation": [d, d],
        "groups": g,
        "out_channels": out,
    }


# (id, kind, per-sample input shape, attrs)
CASES = [
    ("conv_1x1_on_1x1", "conv2d", (1, 1, 1), _conv(1, 1)),
    ("conv_k3_asym_pad", "conv2d", (3, 7, 7), _conv(3, 5, pad=(0, 1, 2, 1))),
    ("conv_stride_gt_kernel", "conv2d", (13, 13, 13), _conv(3, 4, s=4, pad=(1, 1, 1, 1))),
    ("conv_dilation_asym", "conv2d", (3, 13, 7), _conv(3, 4, d=2, pad=(2, 1, 0, 3))),
    ("conv_k7_s2_zf", "conv2d", (3, 13, 13), _conv(7, 8, s=2, pad=(1, 2, 3, 1))),
    ("conv_rect_kernel", "conv2d", (3, 7, 13), _conv([2, 5], 6, s=[1, 2], pad=(1, 0, 0, 2))),
    ("conv_groups3", "conv2d", (3, 7, 7), _conv(3, 6, pad=(1, 1, 1, 1), g=3)),
    ("conv_depthwise", "conv2d", (13, 7, 7), _conv(3, 13, pad=(1, 1, 1, 1), g=13)),
    ("conv_depthwise_x2", "conv2d", (13, 7, 13), _conv(3, 26, s=2, d=2, pad=(2, 2, 2, 2), g=13)),
    ("conv_wide", "conv2d", (16, 9, 9), _conv(3, 40, pad=(1, 1, 1, 1))),
    ("conv_pointwise", "conv2d", (13, 7, 13), _conv(1, 17)),
    ("conv_pointwise_strided", "conv2d", (13, 7, 13), _conv(1, 5, s=2, pad=(0, 1, 1, 0))),
    # Sizes past the GEMM's blocking: k = 288 > KC (two k blocks), m = 70 and n = 169 ragged
    # against the 6x16 micro-tile, and enough work to run in parallel.
    ("conv_gemm_blocks", "conv2d", (32, 13, 13), _conv(3, 70, pad=(1, 1, 1, 1))),
    # A column buffer larger than one tile: im2col/col2im run over several row tiles.
    ("conv_row_tiles", "conv2d", (32, 66, 66), _conv(3, 3, pad=(1, 1, 1, 1))),
    ("relu", "relu", (3, 7, 7), {}),
    ("relu_1x1", "relu", (13, 1, 1), {}),
    ("max_3s2_ceil", "max_pool2d", (3, 7, 7), _pool(3, 2, ceil=True)),
    ("max_3s2_pad_ceil", "max_pool2d", (13, 13, 13), _pool(3, 2, [1, 1, 1, 1], ceil=True)),
    ("max_stride_gt_kernel", "max_pool2d", (3, 7, 7), _pool(2, 3, ceil=True)),
    ("max_asym_pad", "max_pool2d", (3, 8, 8), _pool(3, 2, [1, 0, 0, 1], ceil=True)),
    # ceil_mode would add a window starting in the bottom/right padding: it must be dropped.
    ("max_last_window_in_pad", "max_pool2d", (3, 6, 6), _pool(2, 2, [0, 0, 1, 1], ceil=True)),
    ("max_sppf", "max_pool2d", (3, 7, 7), _pool(5, 1, [2, 2, 2, 2])),
    ("max_1x1", "max_pool2d", (1, 1, 1), _pool(1)),
    ("max_rect", "max_pool2d", (13, 7, 13), _pool([2, 3], [1, 2], [1, 1, 0, 1])),
    ("max_whole_plane", "max_pool2d", (3, 13, 13), _pool(13)),
]
AVG_CASES = [
    ("3s2_pad_ceil", (3, 7, 7), _pool(3, 2, [1, 1, 1, 1], True)),
    ("stride_gt_kernel", (3, 7, 7), _pool(2, 3, None, True)),
    ("asym_pad", (13, 8, 8), _pool(3, 2, [1, 0, 0, 1], True)),
    ("last_window_in_pad", (3, 6, 6), _pool(2, 2, [0, 0, 1, 1], True)),
    # The last window runs past the padded input (row 7 inside, 8 in the padding, 9 beyond).
    ("past_padding", (3, 8, 8), _pool(3, 2, [1, 1, 1, 1], True)),
    ("s1", (13, 13, 13), _pool(3, 1, [1, 1, 1, 1])),
    ("1x1", (1, 1, 1), _pool(1)),
]
for _cip in (False, True):
    _tag = "incpad" if _cip else "excpad"
    CASES += [
        (f"avg_{cid}_{_tag}", "avg_pool2d", shape, dict(attrs, count_include_pad=_cip))
        for cid, shape, attrs in AVG_CASES
    ]
CASES += [
    ("gap_1x1", "global_avg_pool", (1, 1, 1), {}),
    ("gap_13x7x13", "global_avg_pool", (13, 7, 13), {}),
    ("gap_3x1x7", "global_avg_pool", (3, 1, 7), {}),
    ("lrn_default", "lrn", (13, 7, 7), {}),
    ("lrn_strong", "lrn", (13, 7, 7), {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}),
    ("lrn_even_size", "lrn", (13, 1, 7), {"size": 4, "alpha": 1.0, "beta": 0.6, "bias": 1.5}),
    (
        "lrn_wider_than_channels",
        "lrn",
        (3, 7, 7),
        {"size": 7, "alpha": 2.0, "beta": 0.9, "bias": 1.0},
    ),
    ("lrn_one_channel", "lrn", (1, 7, 7), {"size": 5, "alpha": 1.0, "beta": 0.75, "bias": 1.0}),
    ("bn_1", "batch_norm", (1, 7, 7), {}),
    ("bn_13", "batch_norm", (13, 1, 13), {}),
    ("linear_3x7x7", "linear", (3, 7, 7), {"out_features": 5}),
    ("linear_13", "linear", (13, 1, 1), {"out_features": 13}),
    ("linear_1", "linear", (1, 1, 1), {"out_features": 1}),
    ("linear_large", "linear", (64, 4, 4), {"out_features": 300}),
    ("flatten", "flatten", (3, 7, 7), {}),
    ("flatten_1x1", "flatten", (13, 1, 1), {}),
    ("dropout", "dropout", (3, 7, 7), {}),
    ("softmax_13", "softmax", (13, 1, 1), {}),
    ("softmax_spatial", "softmax", (3, 7, 5), {}),
    ("add_2", "add", (3, 7, 7), {"n_inputs": 2}),
    ("add_3", "add", (13, 1, 7), {"n_inputs": 3}),
    ("concat_2", "concat", (3, 7, 7), {"n_inputs": 2}),
    ("concat_3", "concat", (1, 7, 13), {"n_inputs": 3}),
]
_UP = "upsample"
CASES += [
    ("mul_square", "mul", (3, 7, 7), {}),
    ("mul_se_gate", "mul", (13, 7, 5), {"broadcast": "channel"}),
    ("mul_gate_first", "mul", (13, 5, 7), {"broadcast": "channel", "swap": True}),
    ("mul_spatial", "mul", (3, 7, 13), {"broadcast": "spatial"}),
    ("mul_scalar", "mul", (3, 5, 7), {"broadcast": "scalar", "swap": True}),
    ("mul_rows", "mul", (13, 5, 7), {"broadcast": "rows"}),
    ("mul_1x1", "mul", (13, 1, 1), {"broadcast": "spatial"}),
    ("mul_threaded", "mul", (16, 48, 48), {"broadcast": "channel"}),
    ("mul_threaded_spatial", "mul", (16, 48, 48), {"broadcast": "spatial", "swap": True}),
    ("affine_both", "affine", (13, 7, 5), {}),
    ("affine_scalar_scale", "affine", (3, 7, 7), {"params": "scale", "scalar": True}),
    ("affine_bias_only", "affine", (3, 1, 7), {"params": "bias"}),
    ("affine_scalar_bias", "affine", (1, 5, 7), {"params": "bias", "scalar": True}),
    ("up_nearest_2", _UP, (3, 7, 5), {"scale": [2]}),
    ("up_nearest_2x3", _UP, (13, 5, 7), {"scale": [2, 3]}),
    ("up_nearest_1x1", _UP, (1, 1, 1), {"scale": [3, 2]}),
    ("up_bilinear_2", _UP, (3, 7, 5), {"scale": [2], "bilinear": 1}),
    ("up_bilinear_3x2", _UP, (3, 5, 7), {"scale": [3, 2], "bilinear": 1}),
    ("up_bilinear_ac_2", _UP, (3, 7, 5), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("up_bilinear_ac_3x1", _UP, (13, 5, 7), {"scale": [3, 1], "bilinear": 1, "align_corners": 1}),
    ("up_bilinear_ac_1x1", _UP, (3, 1, 1), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("up_bilinear_1x2_row", _UP, (3, 1, 7), {"scale": [1, 2], "bilinear": 1}),
    ("up_nearest_threaded", _UP, (16, 24, 24), {"scale": [2]}),
    ("up_bilinear_threaded", _UP, (16, 24, 24), {"scale": [2], "bilinear": 1}),
    ("slice_middle", "slice", (13, 7, 5), {"start": 3, "end": 10}),
    ("slice_first", "slice", (3, 7, 7), {"start": 0, "end": 1}),
    ("slice_last_1x1", "slice", (13, 1, 1), {"axis": 1, "start": 12, "end": 13}),
    ("slice_rows", "slice", (3, 7, 5), {"axis": 2, "start": 2, "end": 6}),
    ("slice_cols", "slice", (3, 5, 7), {"axis": 3, "start": 1, "end": 3}),
    ("slice_last_col", "slice", (13, 1, 7), {"axis": 3, "start": 6, "end": 7}),
    ("pad_const_asym", "pad", (3, 7, 5), {"padding": [1, 2, 0, 3]}),
    ("pad_const_value", "pad", (13, 5, 7), {"padding": [2], "value": -1.5}),
    ("pad_const_2values", "pad", (1, 1, 1), {"padding": [1, 2], "value": 0.25}),
    ("pad_reflect_asym", "pad", (3, 7, 5), {"padding": [1, 2, 3, 0], "reflect": 1}),
    ("pad_reflect_max", "pad", (3, 7, 5), {"padding": [6, 4, 6, 4], "reflect": 1}),
    ("pad_reflect_row", "pad", (13, 1, 7), {"padding": [0, 3, 0, 1], "reflect": 1}),
    ("shuffle_3", "channel_shuffle", (12, 5, 7), {"groups": 3}),
    ("shuffle_4", "channel_shuffle", (12, 7, 5), {"groups": 4}),
    ("shuffle_1", "channel_shuffle", (3, 7, 7), {"groups": 1}),
    ("shuffle_13_1x1", "channel_shuffle", (13, 1, 1), {"groups": 13}),
]
# the activations (values at their kinks: test_activation_kinks below)
CASES += [
    ("leaky_relu", "leaky_relu", (3, 7, 7), {}),
    ("leaky_relu_1x1", "leaky_relu", (13, 1, 1), {"alpha": 0.3}),
    ("leaky_relu_neg_alpha", "leaky_relu", (1, 7, 13), {"alpha": -0.5}),
    ("prelu", "prelu", (3, 7, 7), {}),
    ("prelu_13", "prelu", (13, 1, 7), {}),
    ("clip_relu6", "clip", (3, 7, 7), {"min": 0.0, "max": 6.0}),
    ("clip_min0_low_max", "clip", (13, 7, 5), {"min": 0.0, "max": 0.5}),
    ("clip_band", "clip", (3, 7, 7), {"min": -0.5, "max": 0.75}),
    ("clip_default", "clip", (1, 1, 1), {}),
    ("sigmoid", "sigmoid", (3, 7, 7), {}),
    ("sigmoid_1x1", "sigmoid", (13, 1, 1), {}),
    ("tanh", "tanh", (3, 7, 7), {}),
    ("tanh_1", "tanh", (1, 1, 7), {}),
    ("silu", "silu", (3, 7, 7), {}),
    # Enough elements (2 * 32 * 66 * 66) for the threaded paths.
    ("silu_large", "silu", (32, 66, 66), {}),
    ("hardsigmoid", "hardsigmoid", (3, 7, 7), {}),
    ("hardsigmoid_steep", "hardsigmoid", (13, 7, 5), {"alpha": 0.75, "beta": 0.25}),
    ("hardswish", "hardswish", (3, 7, 7), {}),
    ("hardswish_1x1", "hardswish", (13, 1, 1), {}),
    ("mish", "mish", (3, 7, 7), {}),
    ("mish_13", "mish", (13, 1, 7), {}),
    ("elu", "elu", (3, 7, 7), {}),
    ("elu_alpha", "elu", (13, 7, 5), {"alpha": 0.5}),
    ("gelu", "gelu", (3, 7, 7), {}),
    ("gelu_tanh", "gelu", (13, 1, 7), {"tanh": 1}),
]


def _convt(k, out, s=1, pad=(0, 0, 0, 0), op=0, d=1, g=1):
    return dict(
        _conv(k, out, s, pad, d, g), output_padding=op if isinstance(op, list) else [op, op]
    )


CASES += [
    ("convt_k3_s1", "conv_transpose2d", (3, 7, 7), _convt(3, 5, pad=(1, 1, 1, 1))),
    # C_out >= 6 per group at stride 1: the forward takes conv2d_backward's flipped-kernel path.
    ("convt_k3_s1_wide", "conv_transpose2d", (8, 7, 5), _convt(3, 16, pad=(0, 1, 2, 1))),
    ("convt_k4_s2_decoder", "conv_transpose2d", (13, 5, 6), _convt(4, 6, s=2, pad=(1, 1, 1, 1))),
    ("convt_k2_s2_unet", "conv_transpose2d", (13, 7, 7), _convt(2, 13, s=2)),
    (
        "convt_groups3_op",
        "conv_transpose2d",
        (6, 5, 5),
        _convt(3, 9, s=2, pad=(1, 1, 1, 1), op=1, g=3),
    ),
    # Output padding past the bottom/right padding: rows and columns that only the bias reaches.
    (
        "convt_op_past_pad",
        "conv_transpose2d",
        (3, 4, 5),
        _convt(3, 4, s=3, pad=(0, 1, 0, 0), op=[2, 1]),
    ),
    # Stride 1 with output padding below the dilation, asymmetric padding.
    (
        "convt_dilation_asym",
        "conv_transpose2d",
        (3, 7, 5),
        _convt(3, 4, d=2, pad=(2, 1, 0, 3), op=1),
    ),
    ("convt_rect", "conv_transpose2d", (3, 5, 7), _convt([2, 5], 6, s=[2, 1], pad=(1, 0, 0, 2))),
    ("convt_1x1_on_1x1", "conv_transpose2d", (1, 1, 1), _convt(1, 1)),
    (
        "convt_depthwise",
        "conv_transpose2d",
        (13, 7, 7),
        _convt(3, 13, s=2, pad=(1, 1, 1, 1), op=1, g=13),
    ),
    # Large enough to run the GEMMs threaded and over several k blocks.
    ("convt_gemm_blocks", "conv_transpose2d", (40, 9, 9), _convt(3, 32, s=2, pad=(1, 1, 1, 1))),
    # Depthwise convs (groups == C == OC, 3x3 / 5x5, stride 1 / 2): kernels/depthwise.cpp.
    ("dw_k3_s2", "conv2d", (13, 7, 8), _conv(3, 13, s=2, pad=(1, 1, 1, 1), g=13)),
    ("dw_k5_s1_asym", "conv2d", (7, 9, 6), _conv(5, 7, pad=(2, 0, 1, 3), g=7)),
    ("dw_k5_s2", "conv2d", (6, 11, 13), _conv(5, 6, s=2, pad=(2, 2, 2, 2), g=6)),
    ("dw_rect_stride", "conv2d", (5, 7, 9), _conv(3, 5, s=[1, 2], pad=(0, 1, 2, 1), g=5)),
    ("dw_threaded", "conv2d", (96, 28, 28), _conv(3, 96, pad=(1, 1, 1, 1), g=96)),
    ("ln_13", "layer_norm", (13, 7, 7), {}),
    ("ln_one_channel", "layer_norm", (1, 3, 5), {}),
    ("ln_eps", "layer_norm", (3, 1, 13), {"epsilon": 0.1}),
    # Past the threaded kernels' threshold (64k elements).
    ("ln_threaded", "layer_norm", (96, 20, 20), {}),
]

# Per layer kind, its cases above: each runs forward (test_forward) and projected under all three
# rules (test_project) against npref. tests/test_registry.py checks every registered kind has some.
CASES_BY_KIND: dict[str, list[str]] = {}
for _cid, _kind, _, _ in CASES:
    CASES_BY_KIND.setdefault(_kind, []).append(_cid)

# Nets whose interesting layer is not the only one: (id, builder, layer).
NETS = [
    ("merge_add", lambda: models.merge_net("add", (3, 7, 7), (4, 4, 4)), "add"),
    ("merge_concat", lambda: models.merge_net("concat", (3, 7, 13), (1, 3, 13)), "concat"),
] + [
    (f"head_{name}", models.head_net, name) for name in ("fc1", "relu", "dropout", "fc2", "softmax")
]
# each kind between two convs, projected from the second (at="max": one
# position, so the gradients around the kind are region-limited), and an SE gate.
REGION_CASES = [
    ("mul_gate", "mul", (4, 9, 7), {"broadcast": "channel"}),
    ("mul_spatial", "mul", (4, 9, 7), {"broadcast": "spatial", "swap": True}),
    ("mul_rows", "mul", (4, 9, 7), {"broadcast": "rows"}),
    ("affine", "affine", (4, 9, 7), {}),
    ("up_nearest", "upsample", (4, 5, 7), {"scale": [2, 3]}),
    ("up_bilinear", "upsample", (4, 5, 7), {"scale": [3, 2], "bilinear": 1}),
    ("up_bilinear_ac", "upsample", (4, 5, 7), {"scale": [2], "bilinear": 1, "align_corners": 1}),
    ("slice", "slice", (4, 9, 7), {"start": 1, "end": 3}),
    ("slice_cols", "slice", (4, 9, 7), {"axis": 3, "start": 2, "end": 6}),
    ("pad_const", "pad", (4, 9, 7), {"padding": [2, 0, 1, 3], "value": 0.5}),
    ("pad_reflect", "pad", (4, 9, 7), {"padding": [3, 2, 1, 4], "reflect": 1}),
    ("shuffle", "channel_shuffle", (4, 9, 7), {"groups": 2}),
]
NETS += [
    (f"region_{rid}", lambda k=kind, s=shape, a=attrs: models.sandwich_net(k, s, a), "conv_b")
    for rid, kind, shape, attrs in REGION_CASES
] + [("se_gate", models.se_net, "mul")]
NETS += [
    # Region-limited projections through the transposed conv (its input_region) and the layer
    # norm: one position of the last layer reaches a small rectangle of each.
    (f"decoder_{name}", models.decoder_net, name)
    for name in ("up", "ln", "head")
] + [(f"inverted_residual_{name}", models.inverted_residual, name) for name in ("dw", "project")]

ALL = [
    (cid, lambda k=kind, s=shape, a=attrs: models.single_layer(k, s, a, seed=7), kind)
    for cid, kind, shape, attrs in CASES
] + NETS
IDS = [c[0] for c in ALL]


def _setup(build, seed=3):
    graph, params = build()
    net = pydeconv.build(graph, params)
    x = models.random_input((2,) + tuple(graph["input"]["shape"]), seed)
    acts, switches = npref.forward(graph, params, x)
    return graph, params, net, x, acts, switches


@pytest.mark.parametrize("cid,build,layer", ALL, ids=IDS)
def test_forward(cid, build, layer, threads, kernels):
    graph, params, net, x, acts, switches = _setup(build)
    out, trace = net.forward(x, threads=threads)
    for name in net.layers:
        npref.assert_close(trace.activation(name), acts[name], err_msg=f"{cid}: {name}")
    npref.assert_close(out, acts[graph["layers"][-1]["name"]], err_msg=f"{cid}: output")
    for name, ref in switches.items():
        got = trace.switches(name)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, ref, err_msg=f"{cid}: switches of {name}")


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize("cid,build,layer", ALL, ids=IDS)
def test_project(cid, build, layer, rule, threads, kernels):
    graph, params, net, x, acts, switches = _setup(build)
    _, trace = net.forward(x, threads=threads)
    # A signed random start signal, so that the rules differ wherever a ReLU is crossed.
    start = np.random.default_rng(5).standard_normal(acts[layer].shape).astype(np.float32)
    got = net.project(trace, layer, at=start, rule=rule, threads=threads)
    ref = npref.project(graph, params, acts, switches, layer, start, rule)
    npref.assert_close(got, ref, err_msg=f"{cid}: at=array")
    channel = acts[layer].shape[1] - 1
    got = net.project(trace, layer, channel=channel, at="max", rule=rule, threads=threads)
    start = npref.start_signal(acts[layer], channel, "max")
    ref = npref.project(graph, params, acts, switches, layer, start, rule)
    npref.assert_close(got, ref, err_msg=f"{cid}: at=max")


# Inputs full of ties: the switch must be the first index of the window in row-major order.
TIE_INPUTS = {
    "zeros": lambda shape, rng: np.zeros(shape),
    "constant": lambda shape, rng: np.full(shape, 1.5),
    "relu_of_noise": lambda shape, rng: np.maximum(rng.standard_normal(shape) - 0.5, 0.0),
    "few_levels": lambda shape, rng: rng.integers(0, 3, shape).astype(float),
    "negative_constant": lambda shape, rng: np.full(shape, -2.0),
}
TIE_POOLS = [
    ("3s2_pad_ceil", (3, 13, 13), _pool(3, 2, [1, 1, 1, 1], ceil=True)),
    ("2s2_last_in_pad", (1, 7, 7), _pool(2, 2, [0, 0, 1, 1], ceil=True)),
    ("sppf", (13, 7, 7), _pool(5, 1, [2, 2, 2, 2])),
    ("asym", (3, 8, 13), _pool([3, 2], [2, 1], [1, 0, 0, 1], ceil=True)),
]


@pytest.mark.parametrize("tie", TIE_INPUTS)
@pytest.mark.parametrize("pid,shape,attrs", TIE_POOLS, ids=[p[0] for p in TIE_POOLS])
def test_max_pool_switch_ties(pid, shape, attrs, tie, threads, kernels):
    graph, params = models.single_layer("max_pool2d", shape, attrs)
    net = pydeconv.build(graph, params)
    x = TIE_INPUTS[tie]((2,) + shape, np.random.default_rng(11)).astype(np.float32)
    acts, switches = npref.forward(graph, params, x)
    out, trace = net.forward(x, threads=threads)
    np.testing.assert_array_equal(out, acts["max_pool2d"].astype(np.float32))
    np.testing.assert_array_equal(trace.switches("max_pool2d"), switches["max_pool2d"])
    g = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    got = net.project(trace, "max_pool2d", at=g, rule="deconvnet", threads=threads)
    npref.assert_close(
        got, npref.max_unpool2d(g.astype(np.float64), switches["max_pool2d"], x.shape)
    )


def test_max_pool_tie_rule_is_row_major_first():
    """A hand-made plane: both windows hold their maximum twice; the first in row-major order
    wins."""
    graph, params = models.single_layer("max_pool2d", (1, 2, 4), _pool(2))
    net = pydeconv.build(graph, params)
    x = np.array([[[[0, 5, 7, 1], [5, 2, 3, 7]]]], dtype=np.float32)
    _, trace = net.forward(x)
    np.testing.assert_array_equal(trace.switches("max_pool2d"), [[[[1, 2]]]])


# activations at and next to their kinks -----------------------------------
KINKS = [0.0, -0.0, 1e-3, -1e-3, 1e-6, -1e-6, 3.0, -3.0, 3.001, -3.001, 2.999, -2.999, 2.5,
         -2.5, 6.0, 6.001, 5.999, -0.5, 0.5, 0.75, -0.75, 1.0, 20.0, -20.0, 90.0, -90.0, 0.25,
         -1.5]  # fmt: skip
KINK_CASES = [
    ("leaky_relu", {}),
    ("leaky_relu", {"alpha": -0.5}),
    ("prelu", {}),
    ("clip", {"min": 0.0, "max": 6.0}),
    ("clip", {"min": -0.5, "max": 0.75}),
    ("clip", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("silu", {}),
    ("hardsigmoid", {}),
    ("hardsigmoid", {"alpha": 0.5, "beta": 0.5}),
    ("hardswish", {}),
    ("mish", {}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("gelu", {}),
    ("gelu", {"tanh": 1}),
]


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize(
    "kind,attrs", KINK_CASES, ids=[f"{k}_{i}" for i, (k, _) in enumerate(KINK_CASES)]
)
def test_activation_kinks(kind, attrs, rule, threads, kernels):
    """Inputs exactly at and next to every kink (0, +-3, clip's and hardsigmoid's ends, large
    magnitudes), forward and projected with a signed start signal, against npref."""
    shape = (3, 4, 7)
    graph, params = models.single_layer(kind, shape, attrs, seed=7)
    net = pydeconv.build(graph, params)
    x = np.resize(np.array(KINKS, np.float32), (2,) + shape)
    acts, switches = npref.forward(graph, params, x)
    out, trace = net.forward(x, threads=threads)
    npref.assert_close(out, acts[kind], err_msg=f"{kind} {attrs} forward")
    start = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
    got = net.project(trace, kind, at=start, rule=rule, threads=threads)
    ref = npref.project(graph, params, acts, switches, kind, start, rule)
    npref.assert_close(got, ref, err_msg=f"{kind} {attrs} {rule}")


# -- head: the layout kinds of a detection head's decode, and affine by broadcast tensors ---------
def decode_net(in_shape=(4, 5, 6), seed=0):
    """A miniature YOLOv8 decode: two 1x1/strided heads flattened to (C, 1, H*W) and joined along
    W, a DFL (reshape, transpose, softmax, 1x1 conv, reshape), anchor arithmetic (affine by
    (1, C|1, 1, W) tensors, add with weights [1, -1]) and the class sigmoid, joined along C."""
    b = models._Builder("decode", in_shape, seed)
    b.conv("p3", "input", 8, 1)
    b.conv("p4", "input", 8, 3, stride=2, padding=1)
    h3, w3 = b.shapes["p3"][1:]
    h4, w4 = b.shapes["p4"][1:]
    b.add("f3", "reshape", "p3", {"shape": [8, 1, h3 * w3]})
    b.add("f4", "reshape", "p4", {"shape": [8, 1, h4 * w4]})
    a = h3 * w3 + h4 * w4
    b.add("cat", "concat", ["f3", "f4"], {"axis": 3})
    b.add("box", "slice", "cat", {"start": 0, "end": 6})
    b.add("cls", "slice", "cat", {"start": 6, "end": 8})
    b.add("bins", "reshape", "box", {"shape": [2, 3, a]})
    b.add("dflt", "transpose", "bins", {"perm": [1, 0, 2]})
    b.add("soft", "softmax", "dflt")
    b.add(
        "dfl",
        "conv2d",
        "soft",
        {"kernel_size": [1, 1]},
        {"weight": np.arange(3.0).reshape(1, 3, 1, 1)},
    )
    b.add("dist", "reshape", "dfl", {"shape": [2, 1, a]})
    b.add("lt", "slice", "dist", {"start": 0, "end": 1})
    b.add("rb", "slice", "dist", {"start": 1, "end": 2})
    anchors = b.rng.uniform(0, 5, (1, 1, 1, a))
    b.add("x1", "affine", "lt", None, {"scale": -np.ones(1), "bias": anchors})
    b.add("x2", "affine", "rb", None, {"bias": anchors + 0.5})
    b.add("wh", "add", ["x2", "x1"], {"weights": [1.0, -1.0]})
    b.add("c", "add", ["x1", "x2"])
    b.add("xy", "affine", "c", None, {"scale": np.full(1, 0.5)})
    b.add("xywh", "concat", ["xy", "wh"])
    b.add("pix", "affine", "xywh", None, {"scale": b.rng.uniform(4, 16, (1, 1, 1, a))})
    b.add("score", "sigmoid", "cls")
    b.add("out", "concat", ["pix", "score"])
    return b.done()


HEAD_CASES = [
    ("reshape_flat", "reshape", (3, 4, 7), {"shape": [3, 1, 28]}),
    ("reshape_mix", "reshape", (6, 2, 5), {"shape": [5, 4, 3]}),
    ("transpose_ch", "transpose", (3, 4, 7), {"perm": [1, 0, 2]}),
    ("transpose_cycle", "transpose", (3, 4, 7), {"perm": [2, 0, 1]}),
    ("concat_w", "concat", (3, 4, 7), {"axis": 3, "n_inputs": 3}),
    ("concat_h", "concat", (3, 4, 7), {"axis": 2}),
    ("add_weights", "add", (3, 4, 7), {"weights": [1.0, -2.5]}),
]
CASES += HEAD_CASES
for _cid, _kind, _, _ in HEAD_CASES:
    CASES_BY_KIND.setdefault(_kind, []).append(_cid)
# The decode projected from its output (every kind above, affine's broadcast tensors) and from
# inside, and the global-rf kinds between two convs, projected from one position of the second.
HEAD_ALL = [
    (cid, lambda k=kind, s=shape, a=attrs: models.single_layer(k, s, a, seed=7), kind)
    for cid, kind, shape, attrs in HEAD_CASES
] + [
    ("decode", decode_net, "out"),
    ("decode_dfl", decode_net, "dfl"),
    (
        "region_reshape",
        lambda: models.sandwich_net("reshape", (4, 9, 7), {"shape": [4, 7, 9]}),
        "conv_b",
    ),
    (
        "region_transpose",
        lambda: models.sandwich_net("transpose", (4, 9, 7), {"perm": [0, 2, 1]}),
        "conv_b",
    ),
]


@pytest.mark.parametrize("cid,build,layer", HEAD_ALL, ids=[c[0] for c in HEAD_ALL])
def test_forward_head(cid, build, layer, threads, kernels):
    test_forward(cid, build, layer, threads, kernels)


@pytest.mark.parametrize("rule", npref.RULES)
@pytest.mark.parametrize("cid,build,layer", HEAD_ALL, ids=[c[0] for c in HEAD_ALL])
def test_project_head(cid, build, layer, rule, threads, kernels):
    test_project(cid, build, layer, rule, threads, kernels)
