"""Every ONNX operator form the importer maps to the issue-14 layer kinds, and the fusions at
import: small models written by the test (tests/onnx_writer.py), imported, built and run, every
output compared with ONNX Runtime, and projections from every output run under all three rules
(tests/onnx_check.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx_check import compare, kinds, rand
from onnx_writer import OnnxBuilder

import pydeconv
from pydeconv.errors import GraphError
from pydeconv.onnx import import_onnx

pytest.importorskip("onnxruntime")


def conv(b, rng, x, cin, cout, k=3, name=None, **attrs):
    pads = {"pads": [k // 2] * 4} if "pads" not in attrs and "auto_pad" not in attrs else {}
    return b.node(
        "Conv",
        [x, b.init(f"w{len(b.inits)}", rand(rng, cout, cin // attrs.get("group", 1), k, k))]
        + [b.init(f"b{len(b.inits)}", rand(rng, cout))],
        name=name,
        kernel_shape=[k, k],
        **pads,
        **attrs,
    )


def one_op(opset, op, *const_inputs, shape=("N", 4, 6, 6), **attrs):
    """x -> Conv -> op(x, consts...) -> output y; returns (builder, layer kinds expected after
    the conv)."""
    rng = np.random.default_rng(abs(hash(op)) % 1000)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", list(shape))
    t = conv(b, rng, x, shape[1], shape[1])
    inputs = [t] + [
        ("" if c is None else b.init(f"c{i}", np.asarray(c))) for i, c in enumerate(const_inputs)
    ]
    b.output(b.node(op, inputs, outputs=["y"], **attrs))
    return b


ACTIVATIONS = [
    (13, "LeakyRelu", (), {"alpha": 0.2}, "leaky_relu", {"alpha": pytest.approx(0.2)}),
    (13, "LeakyRelu", (), {}, "leaky_relu", {"alpha": pytest.approx(0.01)}),
    (6, "Clip", (), {"min": -0.5, "max": 0.75}, "clip", {"min": -0.5, "max": 0.75}),
    (6, "Clip", (), {"min": 0.0}, "relu", None),
    (13, "Clip", (np.float32(0), np.float32(6)), {}, "clip", {"min": 0.0, "max": 6.0}),
    (13, "Clip", (np.float32(0),), {}, "relu", None),
    (13, "Clip", (None, np.float32(0.5)), {}, "clip", {"max": 0.5}),
    (11, "Clip", (np.float32(-1), np.float32(1)), {}, "clip", {"min": -1.0, "max": 1.0}),
    (13, "Sigmoid", (), {}, "sigmoid", None),
    (13, "Tanh", (), {}, "tanh", None),
    (
        13,
        "HardSigmoid",
        (),
        {"alpha": 0.3, "beta": 0.4},
        "hardsigmoid",
        {"alpha": pytest.approx(0.3), "beta": pytest.approx(0.4)},
    ),
    (13, "HardSigmoid", (), {}, "hardsigmoid", {"alpha": pytest.approx(0.2), "beta": 0.5}),
    (14, "HardSwish", (), {}, "hardswish", None),
    (18, "Mish", (), {}, "mish", None),
    (13, "Elu", (), {"alpha": 0.7}, "elu", {"alpha": pytest.approx(0.7)}),
    (20, "Gelu", (), {}, "gelu", {"tanh": 0}),
    (20, "Gelu", (), {"approximate": "tanh"}, "gelu", {"tanh": 1}),
    (13, "Relu", (), {}, "relu", None),
]


@pytest.mark.parametrize(
    "opset, op, consts, attrs, kind, layer_attrs",
    ACTIVATIONS,
    ids=[f"{a[1]}-opset{a[0]}-{i}" for i, a in enumerate(ACTIVATIONS)],
)
def test_activations(tmp_path, opset, op, consts, attrs, kind, layer_attrs):
    b = one_op(opset, op, *consts, **attrs)
    x = rand(np.random.default_rng(1), 2, 4, 6, 6, scale=3.0)
    _, graph, _, _ = compare(tmp_path, b, x, atol=2e-5)
    assert kinds(graph) == ["conv2d", kind]
    assert graph["layers"][1].get("attrs") == layer_attrs


@pytest.mark.parametrize("slope_shape", [(4, 1, 1), (1,), (1, 4, 1, 1)])
def test_prelu_slope_becomes_one_value_per_channel(tmp_path, slope_shape):
    rng = np.random.default_rng(2)
    slope = rand(rng, *slope_shape)
    b = one_op(13, "PRelu", slope)
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 4, 6, 6, scale=2.0), atol=1e-5)
    layer = graph["layers"][1]
    assert layer["kind"] == "prelu" and layer["params"] == {"slope": [4]}


def test_prelu_slope_along_width_is_refused(tmp_path):
    b = one_op(13, "PRelu", np.ones(6, np.float32))  # broadcasts against W, not C
    with pytest.raises(GraphError, match="one value per channel"):
        import_onnx(b.save(str(tmp_path / "m.onnx")))


# -- fusions ------------------------------------------------------------------------------------
def gated(b, x, gate_op, **attrs):
    g = b.node(gate_op, [x], **attrs)
    return b.node("Mul", [x, g])


@pytest.mark.parametrize(
    "opset, gate, attrs, kind",
    [
        (13, "Sigmoid", {}, "silu"),
        (13, "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, "hardswish"),
        (13, "HardSigmoid", {"alpha": 0.2, "beta": 0.5}, None),  # not HardSwish: a mul
    ],
)
def test_gated_activations_fuse(tmp_path, opset, gate, attrs, kind):
    rng = np.random.default_rng(3)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", ["N", 3, 6, 6])
    t = conv(b, rng, x, 3, 4, name="/stem/conv/Conv")
    g = b.node(gate, [t], name="/stem/act/Gate", **attrs)
    b.output(b.node("Mul", [g, t], name="/stem/act/Mul", outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 3, 6, 6, scale=3.0), atol=2e-5)
    if kind is None:
        assert kinds(graph) == ["conv2d", "hardsigmoid", "mul"]
        return
    assert kinds(graph) == ["conv2d", kind]
    # The fused layer is listed under both ONNX nodes it came from.
    layer = graph["layers"][1]
    assert layer["name"] == "stem.act"
    assert layer["aliases"] == ["_stem_act_Mul", "_stem_act_Gate"]


def test_mish_from_softplus_tanh_mul(tmp_path):
    rng = np.random.default_rng(4)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 3)
    s = b.node("Softplus", [t], name="sp")
    s = b.node("Tanh", [s], name="th")
    b.output(b.node("Mul", [t, s], name="mish", outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5, scale=3.0), atol=2e-5)
    assert kinds(graph) == ["conv2d", "mish"]
    assert graph["layers"][1]["name"] == "mish"
    assert graph["layers"][1]["aliases"] == ["sp", "th"]


@pytest.mark.parametrize("association", ["torch", "half_first", "mul_by_rsqrt2"])
def test_gelu_from_its_erf_decomposition(tmp_path, association):
    """torch.onnx before opset 20 writes GELU as x * (1 + Erf(x / sqrt 2)) * 0.5."""
    rng = np.random.default_rng(5)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 3)
    if association == "mul_by_rsqrt2":
        d = b.node("Mul", [t, b.init("r2", np.float32(1 / math.sqrt(2)))])
    else:
        d = b.node("Div", [t, b.init("s2", np.float32(math.sqrt(2)))])
    e = b.node("Erf", [d])
    a = b.node("Add", [e, b.init("one", np.float32(1))])
    if association == "half_first":
        h = b.node("Mul", [t, b.init("half", np.float32(0.5))])
        b.output(b.node("Mul", [h, a], outputs=["y"]))
    else:
        m = b.node("Mul", [t, a])
        b.output(b.node("Mul", [m, b.init("half", np.float32(0.5))], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5, scale=3.0), atol=2e-5)
    assert kinds(graph) == ["conv2d", "gelu"]
    assert graph["layers"][1]["attrs"] == {"tanh": 0}
    assert len(graph["layers"][1]["aliases"]) == 4  # the five nodes: one is the name


@pytest.mark.parametrize("cube", ["mul", "pow"])
def test_gelu_from_its_tanh_decomposition(tmp_path, cube):
    """GELU(approximate='tanh') as torch.onnx writes it before opset 20."""
    rng = np.random.default_rng(21)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 3)
    if cube == "mul":
        c = b.node("Mul", [t, b.node("Mul", [t, t])])
    else:
        c = b.node("Pow", [t, b.init("three", np.float32(3))])
    k = b.node("Mul", [b.init("kappa", np.float32(0.044715)), c])
    inner = b.node(
        "Mul", [b.init("beta", np.float32(math.sqrt(2 / math.pi))), b.node("Add", [t, k])]
    )
    a = b.node("Add", [b.init("one", np.float32(1)), b.node("Tanh", [inner])])
    m = b.node("Mul", [t, a])
    b.output(b.node("Mul", [b.init("half", np.float32(0.5)), m], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5, scale=3.0), atol=2e-5)
    assert kinds(graph) == ["conv2d", "gelu"]
    assert graph["layers"][1]["attrs"] == {"tanh": 1}


def test_fusion_needs_the_inner_tensor_unused_elsewhere(tmp_path):
    rng = np.random.default_rng(6)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 3)
    s = b.node("Sigmoid", [t], outputs=["gate"])
    b.output(b.node("Mul", [t, s], outputs=["y"]))
    b.output(s)  # the sigmoid is an output too: no fusion
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5), atol=2e-5)
    assert kinds(graph) == ["conv2d", "sigmoid", "mul"]


def test_conv_batch_norm_folds_only_when_the_conv_has_no_other_reader(tmp_path):
    rng = np.random.default_rng(7)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 6, 6])

    def bn(t, c):
        return b.node(
            "BatchNormalization",
            [
                t,
                b.init(f"g{len(b.inits)}", rand(rng, c) + 1),
                b.init(f"be{len(b.inits)}", rand(rng, c)),
                b.init(f"m{len(b.inits)}", rand(rng, c)),
                b.init(f"v{len(b.inits)}", np.abs(rand(rng, c)) + 0.5),
            ],
            epsilon=1e-3,
        )

    a = bn(conv(b, rng, x, 3, 4), 4)  # folded
    c = conv(b, rng, a, 4, 4)
    d = bn(c, 4)  # not folded: c is read by the Add too
    b.output(b.node("Add", [d, c], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 3, 6, 6), atol=5e-5)
    assert kinds(graph) == ["conv2d", "conv2d", "batch_norm", "add"]


# -- constants on activations -------------------------------------------------------------------
def test_constant_arithmetic_folds_or_becomes_affine(tmp_path):
    rng = np.random.default_rng(8)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    t = b.node("Sub", [x, b.init("mean", rand(rng, 1, 3, 1, 1))])  # affine
    t = b.node("Div", [t, b.init("std", np.abs(rand(rng, 3, 1, 1)) + 0.5)])  # into it
    t = conv(b, rng, t, 3, 4)
    t = b.node("Mul", [t, b.init("k", rand(rng, 4, 1, 1))])  # into the conv
    t = b.node("Relu", [t])
    t = b.node("Sub", [b.init("c", np.float32(0.5)), t])  # c - x: affine, scale -1
    t = b.node("Mul", [t, b.init("k2", np.float32(3.0))])  # into that affine
    b.output(b.node("Add", [t, b.init("k3", rand(rng, 4, 1, 1))], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 3, 5, 5), atol=2e-5)
    assert kinds(graph) == ["affine", "conv2d", "relu", "affine"]
    assert graph["layers"][0]["params"] == {"scale": [3], "bias": [3]}


@pytest.mark.parametrize(
    "gate_shape", [(1, 4, 1, 1), (1, 1, 6, 6), (1, 1, 1, 1), (1, 4, 6, 6)], ids=str
)
def test_mul_of_two_activations_broadcasts(tmp_path, gate_shape):
    rng = np.random.default_rng(9)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 4, 6, 6])
    t = conv(b, rng, x, 4, 4)
    if gate_shape[1] == 4 and gate_shape[2] == 1:  # SE: pool, squeeze, excite
        g = b.node("GlobalAveragePool", [t])
        g = conv(b, rng, g, 4, 4, k=1)
    elif gate_shape[1] == 1 and gate_shape[2] == 6:
        g = conv(b, rng, t, 4, 1)
    elif gate_shape[1] == 1:
        g = conv(b, rng, b.node("GlobalAveragePool", [t]), 4, 1, k=1)
    else:
        g = conv(b, rng, t, 4, 4)
    g = b.node("Sigmoid", [g])
    b.output(b.node("Mul", [t, g], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 4, 6, 6), atol=2e-5)
    assert kinds(graph)[-2:] == ["sigmoid", "mul"]


# -- resizing ------------------------------------------------------------------------------------
RESIZES = [
    (11, "Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                    "nearest_mode": "floor"}, "scales", [1, 1, 2, 2], {"scale": [2, 2]}),
    (13, "Resize", {"mode": "nearest"}, "scales", [1, 1, 2, 3], {"scale": [2, 3]}),
    (13, "Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                    "nearest_mode": "floor"}, "sizes", [1, 4, 12, 15], {"scale": [2, 3]}),
    (13, "Resize", {"mode": "linear"}, "scales", [1, 1, 2, 2],
     {"scale": [2, 2], "bilinear": 1, "align_corners": 0}),
    (13, "Resize", {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     "scales", [1, 1, 3, 2], {"scale": [3, 2], "bilinear": 1, "align_corners": 0}),
    (13, "Resize", {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     "sizes", [1, 4, 12, 10], {"scale": [2, 2], "bilinear": 1, "align_corners": 1}),
    (19, "Resize", {"mode": "nearest", "axes": [2, 3], "coordinate_transformation_mode":
                    "asymmetric", "nearest_mode": "floor"}, "scales", [2, 2], {"scale": [2, 2]}),
    (10, "Resize", {"mode": "nearest"}, "scales10", [1, 1, 2, 2], {"scale": [2, 2]}),
    (9, "Upsample", {"mode": "nearest"}, "scales10", [1, 1, 2, 2], {"scale": [2, 2]}),
    (7, "Upsample", {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 2.0]}, None, None,
     {"scale": [2, 2]}),
]  # fmt: skip


@pytest.mark.parametrize(
    "opset, op, attrs, form, values, layer_attrs", RESIZES, ids=[str(i) for i in range(10)]
)
def test_resize_and_upsample_forms(tmp_path, opset, op, attrs, form, values, layer_attrs):
    rng = np.random.default_rng(10)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", ["N", 4, 6, 5])
    t = conv(b, rng, x, 4, 4)
    roi = b.init("roi", np.zeros(0, np.float32)) if opset == 11 else ""  # required in opset 11
    if form == "scales":
        inputs = [t, roi, b.init("scales", np.array(values, np.float32))]
    elif form == "sizes":
        inputs = [t, roi, "", b.init("sizes", np.array(values, np.int64))]
    elif form == "scales10":
        inputs = [t, b.init("scales", np.array(values, np.float32))]
    else:
        inputs = [t]
    b.output(b.node(op, inputs, outputs=["y"], **attrs))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 4, 6, 5), atol=2e-5)
    assert kinds(graph) == ["conv2d", "upsample"]
    assert graph["layers"][1]["attrs"] == layer_attrs


@pytest.mark.parametrize(
    "attrs, scales, message",
    [
        ({"mode": "nearest"}, [1, 1, 1.5, 2], "not integers"),
        ({"mode": "cubic"}, [1, 1, 2, 2], "mode 'cubic'"),
        ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 2, 2],
         "asymmetric"),
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 2, 2],
         "round_prefer_floor"),
        ({"mode": "nearest"}, [1, 2, 2, 2], "H and W"),
    ],
)  # fmt: skip
def test_resize_refusals_name_the_node_and_field(tmp_path, attrs, scales, message):
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 4, 6, 6])
    r = b.node("Resize", [x, "", b.init("s", np.array(scales, np.float32))], name="up", **attrs)
    b.output(b.node("Relu", [r], outputs=["y"]))
    with pytest.raises(GraphError, match=f"m.onnx: Resize node 'up': .*{message}"):
        import_onnx(b.save(str(tmp_path / "m.onnx")))


# -- split, slice, pad, concat -------------------------------------------------------------------
@pytest.mark.parametrize(
    "opset, form",
    [(11, "attribute"), (13, "input"), (18, "num_outputs"), (13, "equal")],
)
def test_split_forms_become_slices(tmp_path, opset, form):
    rng = np.random.default_rng(11)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 7 if form != "equal" else 6)
    outs = ["s0", "s1", "s2"]
    if form == "attribute":
        b.node("Split", [t], outputs=outs, axis=1, split=[2, 4, 1])
        sizes = [2, 4, 1]
    elif form == "input":
        b.node("Split", [t, b.init("split", np.array([2, 4, 1], np.int64))], outputs=outs, axis=1)
        sizes = [2, 4, 1]
    elif form == "num_outputs":
        b.node("Split", [t], outputs=outs, axis=1, num_outputs=3)  # 3, 3, 1
        sizes = [3, 3, 1]
    else:
        b.node("Split", [t], outputs=outs, axis=1)
        sizes = [2, 2, 2]
    b.output(b.node("Relu", ["s0"], outputs=["y0"]))
    b.output(b.node("Concat", ["s2", "s1"], axis=1, outputs=["y1"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 3, 5, 5), atol=2e-5)
    slices = [layer["attrs"] for layer in graph["layers"] if layer["kind"] == "slice"]
    ends = np.cumsum(sizes)
    assert sorted((s["start"], s["end"]) for s in slices) == [
        (int(e - n), int(e)) for e, n in zip(ends, sizes)
    ]


@pytest.mark.parametrize(
    "opset, args",
    [
        (13, {"starts": [2], "ends": [2**62], "axes": [1]}),
        (13, {"starts": [-3], "ends": [-1], "axes": [-3]}),
        (13, {"starts": [0, 1], "ends": [9, 4], "axes": [2, 1]}),  # the H slice is whole
        (9, {"starts": [1], "ends": [5], "axes": [1]}),
    ],
)
def test_slice_on_the_channel_axis(tmp_path, opset, args):
    rng = np.random.default_rng(12)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 6)
    if opset < 10:
        s = b.node("Slice", [t], **args)
    else:
        s = b.node(
            "Slice",
            [t] + [b.init(f"{k}", np.array(v, np.int64)) for k, v in args.items()],
        )
    b.output(b.node("Relu", [s], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5), atol=2e-5)
    assert kinds(graph) == ["conv2d", "slice", "relu"]


def test_slice_of_the_height_is_refused(tmp_path):
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    s = b.node(
        "Slice",
        [x, b.init("s", np.array([1], np.int64)), b.init("e", np.array([3], np.int64)),
         b.init("a", np.array([2], np.int64))],
        name="cut",
    )  # fmt: skip
    b.output(b.node("Relu", [s], outputs=["y"]))
    with pytest.raises(GraphError, match="Slice node 'cut': only a slice of the channel axis"):
        import_onnx(b.save(str(tmp_path / "m.onnx")))


@pytest.mark.parametrize(
    "opset, mode, pads, value, layer_attrs",
    [
        (13, "constant", [0, 0, 1, 2, 0, 0, 3, 0], 0.0, {"padding": [1, 2, 3, 0]}),
        (13, "constant", [0, 0, 1, 1, 0, 0, 1, 1], -2.5, {"padding": [1, 1, 1, 1], "value": -2.5}),
        (13, "reflect", [0, 0, 2, 1, 0, 0, 1, 2], None, {"padding": [2, 1, 1, 2], "reflect": 1}),
        (2, "constant", [0, 0, 1, 0, 0, 0, 0, 1], 1.5, {"padding": [1, 0, 0, 1], "value": 1.5}),
        (2, "reflect", [0, 0, 1, 1, 0, 0, 1, 1], None, {"padding": [1, 1, 1, 1], "reflect": 1}),
    ],
)
def test_pad_forms(tmp_path, opset, mode, pads, value, layer_attrs):
    rng = np.random.default_rng(13)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", ["N", 3, 5, 6])
    t = conv(b, rng, x, 3, 3)
    if opset >= 6:  # ONNX Runtime has no LeakyRelu-1
        t = b.node("LeakyRelu", [t], alpha=0.1)
    if opset < 11:
        extra = {} if value is None else {"value": value}
        p = b.node("Pad", [t], mode=mode, pads=pads, **extra)
    else:
        inputs = [t, b.init("pads", np.array(pads, np.int64))]
        if value is not None:
            inputs.append(b.init("v", np.float32(value)))
        p = b.node("Pad", inputs, mode=mode)
    # a 2x2/1 max pool after a zero pad of values that may be negative: the pad stays a layer
    b.output(b.node("MaxPool", [p], kernel_shape=[2, 2], strides=[1, 1], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 3, 5, 6, scale=2.0), atol=2e-5)
    act = ["leaky_relu"] if opset >= 6 else []
    assert kinds(graph) == ["conv2d", *act, "pad", "max_pool2d"]
    assert graph["layers"][-2]["attrs"] == layer_attrs
    assert graph["layers"][-1]["attrs"]["padding"] == [0, 0, 0, 0]


def test_one_input_concat_is_an_alias(tmp_path):
    """torchvision's DenseNet starts each dense block with a Concat of one tensor."""
    rng = np.random.default_rng(14)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    t = conv(b, rng, x, 3, 4)
    c = b.node("Concat", [t], axis=1)
    b.output(b.node("Relu", [c], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5))
    assert kinds(graph) == ["conv2d", "relu"]


# -- channel shuffle, transposed conv, layer norm -------------------------------------------------
def shuffle(b, t, n, c, h, w, groups, computed=False):
    """ShuffleNetV2's channel_shuffle as torch exports it; ``computed``: the targets come from
    Shape arithmetic, as the dynamic exports write them."""
    if computed:
        shape = b.node("Shape", [t])
        hw = b.node(
            "Slice",
            [shape, b.init(f"h{len(b.inits)}", np.array([2], np.int64)),
             b.init(f"e{len(b.inits)}", np.array([4], np.int64))],
        )  # fmt: skip
        batch = b.node("Gather", [shape, b.init(f"z{len(b.inits)}", np.array([0], np.int64))])
        mid = b.init(f"g{len(b.inits)}", np.array([groups, c // groups], np.int64))
        first = b.node("Concat", [batch, mid, hw], axis=0)
        second = b.node(
            "Concat", [batch, b.init(f"m{len(b.inits)}", np.array([-1], np.int64)), hw], axis=0
        )
    else:
        first = b.init(f"s{len(b.inits)}", np.array([n, groups, c // groups, h, w], np.int64))
        second = b.init(f"s{len(b.inits)}", np.array([n, -1, h, w], np.int64))
    r = b.node("Reshape", [t, first])
    r = b.node("Transpose", [r], perm=[0, 2, 1, 3, 4])
    return b.node("Reshape", [r, second])


@pytest.mark.parametrize("computed", [False, True])
def test_channel_shuffle_pattern(tmp_path, computed):
    rng = np.random.default_rng(15)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 6, 6])
    t = conv(b, rng, x, 3, 6)
    b.output(shuffle(b, t, 1, 6, 6, 6, 2, computed), ["N", 6, 6, 6])
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 6, 6))
    assert kinds(graph) == ["conv2d", "channel_shuffle"]
    assert graph["layers"][1]["attrs"] == {"groups": 2}
    assert len(graph["layers"][1]["aliases"]) == 2  # three nodes: one gives the name


@pytest.mark.parametrize(
    "attrs, layer_padding",
    [
        ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, [1, 1, 1, 1]),
        ({"strides": [2, 1], "pads": [0, 1, 2, 0], "group": 2, "dilations": [1, 2]}, [0, 1, 2, 0]),
        ({"strides": [2, 2], "output_shape": [10, 9]}, None),
        ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, None),
    ],
)
def test_conv_transpose(tmp_path, attrs, layer_padding):
    rng = np.random.default_rng(16)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 4, 5, 5])
    groups = attrs.get("group", 1)
    w = b.init("w", rand(rng, 4, 6 // groups, 3, 3))
    t = b.node("ConvTranspose", [x, w, b.init("b", rand(rng, 6))], kernel_shape=[3, 3], **attrs)
    b.output(b.node("Relu", [t], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 4, 5, 5), atol=2e-5)
    assert kinds(graph) == ["conv_transpose2d", "relu"]
    if layer_padding is not None:
        assert graph["layers"][0]["attrs"]["padding"] == layer_padding


def test_layer_norm_channels_last_block(tmp_path):
    """ConvNeXt: depthwise conv, Transpose to NHWC, LayerNorm over C, pointwise MatMuls with GELU,
    a per-channel gamma, Transpose back, residual Add."""
    rng = np.random.default_rng(17)
    b = OnnxBuilder(opset=20)
    x = b.input("x", ["N", 4, 6, 6])
    d = conv(b, rng, x, 4, 4, k=7, group=4)
    t = b.node("Transpose", [d], perm=[0, 2, 3, 1])
    t = b.node(
        "LayerNormalization",
        [t, b.init("ln_s", rand(rng, 4) + 1), b.init("ln_b", rand(rng, 4))],
        axis=-1,
        epsilon=1e-6,
    )
    t = b.node("MatMul", [t, b.init("pw1", rand(rng, 4, 8))])
    t = b.node("Add", [t, b.init("pw1b", rand(rng, 8))])
    t = b.node("Gelu", [t])
    t = b.node("MatMul", [t, b.init("pw2", rand(rng, 8, 4))])
    t = b.node("Add", [b.init("pw2b", rand(rng, 4)), t])
    t = b.node("Mul", [t, b.init("gamma", rand(rng, 4))])
    t = b.node("Transpose", [t], perm=[0, 3, 1, 2])
    b.output(b.node("Add", [x, t], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 4, 6, 6), atol=5e-5)
    assert kinds(graph) == ["conv2d", "layer_norm", "conv2d", "gelu", "conv2d", "add"]
    assert graph["layers"][1]["attrs"] == {"epsilon": pytest.approx(1e-6)}


def test_transposed_tensor_into_a_conv_is_laid_out(tmp_path):
    """A conv reading a Transpose'd view as it is: a transpose layer lays it out first."""
    rng = np.random.default_rng(18)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 4, 6, 5])
    t = b.node("Transpose", [x], perm=[0, 2, 3, 1])
    t = b.node("Relu", [t])
    b.output(conv(b, rng, t, 6, 4, name="c"))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 2, 4, 6, 5))
    assert kinds(graph) == ["relu", "transpose", "conv2d"]
    assert graph["layers"][1]["attrs"] == {"perm": [1, 2, 0]}


def test_constant_on_a_transposed_view_needs_the_channels_last(tmp_path):
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 4, 6, 5])
    t = b.node("Transpose", [x], perm=[0, 2, 1, 3])  # (N, H, C, W)
    t = b.node("Mul", [t, b.init("k", np.ones((1, 1, 4, 1), np.float32))], name="scale")
    b.output(b.node("Flatten", [t], outputs=["y"]))
    with pytest.raises(GraphError, match="Mul node 'scale': .*only supported with the channels"):
        import_onnx(b.save(str(tmp_path / "m.onnx")))


# -- float16, multi-output ----------------------------------------------------------------------
def test_float16_weights_behind_casts(tmp_path):
    """A float16 export that keeps float32 inputs: float16 initializers Cast to float32."""
    rng = np.random.default_rng(19)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 5, 5])
    w = b.node("Cast", [b.init("w16", rand(rng, 4, 3, 3, 3).astype(np.float16))], to=1)
    bias = b.node("Cast", [b.init("b16", rand(rng, 4).astype(np.float16), storage="typed")], to=1)
    t = b.node("Conv", [x, w, bias], kernel_shape=[3, 3])
    b.output(b.node("Sigmoid", [t], outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 5, 5), atol=1e-5)
    assert kinds(graph) == ["conv2d", "sigmoid"]


def test_every_graph_output_is_returned_and_projects(tmp_path):
    rng = np.random.default_rng(20)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 8, 8])
    t = b.node("Relu", [conv(b, rng, x, 3, 4)])
    p = b.node("MaxPool", [t], kernel_shape=[2, 2], strides=[2, 2])
    b.output(conv(b, rng, t, 4, 5, k=1), ["N", 5, 8, 8])
    b.output(conv(b, rng, p, 4, 6, k=1), ["N", 6, 4, 4])
    net, graph, outs, _ = compare(tmp_path, b, rand(rng, 2, 3, 8, 8))
    assert len(net.outputs) == 2 and [o.shape for o in outs.values()] == [
        (2, 5, 8, 8),
        (2, 6, 4, 4),
    ]


def test_the_layer_table_lists_the_nodes_a_layer_came_from(tmp_path, capsys):
    from pydeconv.cli import main

    rng = np.random.default_rng(22)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 6, 6])
    t = conv(b, rng, x, 3, 4, name="/stem/conv/Conv")
    c = 4
    t = b.node(
        "BatchNormalization",
        [t] + [b.init(f"bn{i}", np.abs(rand(rng, c)) + 0.5) for i in range(4)],
        name="/stem/bn/BatchNormalization",
    )
    b.output(b.node("Relu", [t], name="/stem/act/Relu", outputs=["y"]))
    path = b.save(str(tmp_path / "m.onnx"))
    net = pydeconv.load(path)
    row = net.layer_info("_stem_bn_BatchNormalization")  # the folded node's name finds the conv
    assert row["name"] == "stem.conv" and row["kind"] == "conv2d"
    assert row["aliases"] == ["_stem_conv_Conv", "_stem_bn_BatchNormalization"]
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "layers made of several ONNX nodes" in out
    assert "  stem.conv: _stem_conv_Conv, _stem_bn_BatchNormalization" in out


def test_shape_arithmetic_after_slice_and_resize_folds(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape after a Resize and a channel Slice: the
    shapes are known, so it folds to a flatten."""
    rng = np.random.default_rng(23)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 4, 4])
    t = conv(b, rng, x, 3, 4)
    t = b.node("Resize", [t, "", b.init("sc", np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    t = b.node(
        "Slice",
        [t, b.init("s0", np.array([1], np.int64)), b.init("s1", np.array([3], np.int64)),
         b.init("s2", np.array([1], np.int64))],
    )  # fmt: skip
    shape = b.node("Shape", [t])
    n = b.node("Gather", [shape, b.init("zero", np.array(0, np.int64))], axis=0)
    n = b.node("Unsqueeze", [n, b.init("ax", np.array([0], np.int64))])
    target = b.node("Concat", [n, b.init("m1", np.array([-1], np.int64))], axis=0)
    flat = b.node("Reshape", [t, target])
    b.output(b.node("Gemm", [flat, b.init("fc", rand(rng, 3, 128))], transB=1, outputs=["y"]))
    _, graph, _, _ = compare(tmp_path, b, rand(rng, 1, 3, 4, 4), atol=2e-5)
    assert kinds(graph) == ["conv2d", "upsample", "slice", "flatten", "linear"]
