"""ONNX operators on rank-3 tensors and the layout operators a detection head's decode is made of,
each written here (tests/onnx_writer.py) and compared with ONNX Runtime: a rank-3 tensor (N, A, B)
is pydeconv's (N, A, 1, B) (docs/FORMAT.md), so its outputs compare after a reshape. Then the bad
graphs: each refused with a GraphError naming the node and what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import RULES, ort_run, rand
from onnx_writer import OnnxBuilder

import pydeconv
from pydeconv.errors import GraphError
from pydeconv.onnx import import_onnx

pytest.importorskip("onnxruntime")


def head(b, rng, x, cin, cout):
    return b.node(
        "Conv",
        [
            x,
            b.init(f"w{len(b.inits)}", rand(rng, cout, cin, 1, 1)),
            b.init(f"b{len(b.inits)}", rand(rng, cout)),
        ],
        kernel_shape=[1, 1],
    )


def run(tmp_path, b, x):
    """Import, build, forward; every output equal to ONNX Runtime's (after the rank-3 reshape);
    backprop from every output equal to a finite-difference-free check: the sum of projections of
    one-hot starts equals the projection of their sum (linearity of the backprop rule)."""
    path = b.save(str(tmp_path / "m.onnx"))
    graph, params = import_onnx(path)
    net = pydeconv.build(graph, params)
    names = [name for name, _ in b.outputs]
    want = ort_run(path, x, names)
    out, trace = net.forward(x)
    got = out if isinstance(out, dict) else {graph["outputs"][0]: out}
    for layer, name in zip(graph["outputs"], names):
        mine = got[layer]
        assert mine.size == want[name].size
        np.testing.assert_allclose(
            mine.reshape(want[name].shape), want[name], rtol=1e-5, atol=1e-5, err_msg=name
        )
        for rule in RULES:
            image = net.project(trace, layer, channel=0, rule=rule)
            assert image.shape == x.shape and np.all(np.isfinite(image))
    return graph, net, trace


def kinds(graph):
    return [layer["kind"] for layer in graph["layers"]]


def test_reshape_to_rank3_concat_along_anchors_split_and_sub(tmp_path):
    rng = np.random.default_rng(0)
    b = OnnxBuilder(opset=13)
    x = b.input("x", ["N", 3, 6, 4])
    p3 = head(b, rng, x, 3, 6)
    p4 = b.node("MaxPool", [head(b, rng, x, 3, 6)], kernel_shape=[2, 2], strides=[2, 2])
    flat = [
        b.node("Reshape", [t, b.init(f"s{i}", np.array([1, 6, -1], np.int64))])
        for i, t in enumerate((p3, p4))
    ]
    cat = b.node("Concat", flat, axis=2)  # (1, 6, 30)
    b.node("Split", [cat, b.init("sp", np.array([2, 4], np.int64))], axis=1, outputs=["lo", "hi"])
    lo, hi = "lo", "hi"
    sub = b.node(
        "Sub",
        [
            b.node(
                "Slice",
                [
                    hi,
                    b.init("st", np.array([2])),
                    b.init("en", np.array([4])),
                    b.init("ax", np.array([1])),
                ],
            ),
            lo,
        ],
    )
    b.output(b.node("Transpose", [sub], perm=[0, 2, 1], outputs=["y"]))  # (1, 30, 2)
    graph, net, _ = run(tmp_path, b, rand(rng, 1, 3, 6, 4))
    assert kinds(graph)[-3:] == ["slice", "add", "transpose"] and "concat" in kinds(graph)
    assert kinds(graph).count("reshape") == 2
    assert graph["layers"][-2]["attrs"] == {"weights": [1.0, -1.0]}
    assert tuple(net.layer_info(graph["outputs"][0])["shape"]) == (30, 1, 2)


def test_dfl_reshape_transpose_softmax_conv(tmp_path):
    rng = np.random.default_rng(1)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 4, 5])
    t = b.node("Reshape", [head(b, rng, x, 3, 8), b.init("s", np.array([1, 8, 20], np.int64))])
    t = b.node("Reshape", [t, b.init("s2", np.array([1, 2, 4, 20], np.int64))])
    t = b.node("Transpose", [t], perm=[0, 2, 1, 3])
    t = b.node("Softmax", [t], axis=1)
    w = b.init("dfl", np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1))
    t = b.node("Conv", [t, w], kernel_shape=[1, 1])
    b.output(b.node("Reshape", [t, b.init("s3", np.array([1, 2, 20], np.int64))], outputs=["y"]))
    graph, _, _ = run(tmp_path, b, rand(rng, 1, 3, 4, 5))
    assert kinds(graph) == [
        "conv2d",
        "reshape",
        "reshape",
        "transpose",
        "softmax",
        "conv2d",
        "reshape",
    ]


@pytest.mark.parametrize(
    "const_shape", [(1, 2, 20), (1, 20), (2, 1), (1, 1, 20), (20,), (1,)], ids=str
)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "RSub"])
def test_constant_tensors_on_rank3(tmp_path, op, const_shape):
    """Anchor points (1, 2, A), strides (1, A), per-channel and scalar constants, either side."""
    rng = np.random.default_rng(2)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 4, 5])
    t = b.node("Reshape", [head(b, rng, x, 3, 2), b.init("s", np.array([1, 2, 20], np.int64))])
    c = b.init("c", rng.uniform(0.5, 2.0, const_shape).astype(np.float32))
    ins = [c, t] if op == "RSub" else [t, c]
    b.output(b.node("Sub" if op == "RSub" else op, ins, outputs=["y"]))
    graph, _, _ = run(tmp_path, b, rand(rng, 1, 3, 4, 5))
    assert kinds(graph)[-1] in ("affine", "reshape", "conv2d")


def test_concat_along_h_and_w_of_rank4(tmp_path):
    rng = np.random.default_rng(3)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 4, 5])
    a, c = head(b, rng, x, 3, 2), head(b, rng, x, 3, 2)
    h = b.node("Concat", [a, c], axis=2)  # (1, 2, 8, 5)
    w = b.node("Concat", [a, c, a], axis=-1)  # (1, 2, 4, 15)
    b.output(b.node("Relu", [h], outputs=["yh"]))
    b.output(b.node("Relu", [w], outputs=["yw"]))
    graph, _, _ = run(tmp_path, b, rand(rng, 1, 3, 4, 5))
    axes = [la.get("attrs", {}).get("axis") for la in graph["layers"] if la["kind"] == "concat"]
    assert axes == [2, 3]


# -- refused, naming the node and the field -------------------------------------------------------
def _refused(tmp_path, build, match):
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 4, 4])
    b.output(build(b, x))
    with pytest.raises(GraphError, match=match):
        import_onnx(b.save(str(tmp_path / "bad.onnx")))


@pytest.mark.parametrize(
    "build, match",
    [
        # a reshape to a wrong element count
        (
            lambda b, x: b.node(
                "Reshape", [x, b.init("s", np.array([1, 3, 16], np.int64))], name="r", outputs=["y"]
            ),
            r"Reshape node 'r'.*cannot reshape \(1, 2, 4, 4\) to \[1, 3, 16\]",
        ),
        # across the batch
        (
            lambda b, x: b.node(
                "Reshape", [x, b.init("s", np.array([2, 16], np.int64))], name="r", outputs=["y"]
            ),
            r"Reshape node 'r'.*keeps the batch",
        ),
        # a permutation that moves the batch, and one that is not a permutation
        (
            lambda b, x: b.node(
                "Transpose", [b.node("Relu", [x])], perm=[1, 0, 2, 3], name="t", outputs=["y"]
            ),
            r"Transpose node 't'.*perm \[1, 0, 2, 3\]",
        ),
        (
            lambda b, x: b.node(
                "Transpose",
                [b.node("Reshape", [x, b.init("s", np.array([1, 2, 16], np.int64))])],
                perm=[0, 2, 2],
                name="t",
                outputs=["y"],
            ),
            r"Transpose node 't'.*perm \[0, 2, 2\]",
        ),
        # inputs that differ outside the concatenation axis
        (
            lambda b, x: b.node(
                "Concat",
                [x, b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])],
                axis=3,
                name="c",
                outputs=["y"],
            ),
            r"Concat node 'c'.*does not match \[1, 2, 4, 4\] outside axis 3",
        ),
        # subtracting tensors of different shapes
        (
            lambda b, x: b.node(
                "Sub",
                [x, b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])],
                name="s",
                outputs=["y"],
            ),
            r"Sub node 's'.*do not broadcast|Sub node 's'.*different shapes",
        ),
        # a constant tensor that does not broadcast
        (
            lambda b, x: b.node(
                "Mul", [x, b.init("k", np.ones((1, 3, 1, 4), np.float32))], name="m", outputs=["y"]
            ),
            r"Mul node 'm'.*do not broadcast",
        ),
    ],
    ids=[
        "reshape_count",
        "reshape_batch",
        "perm_batch",
        "perm_repeat",
        "concat_dims",
        "sub_shapes",
        "const_bcast",
    ],
)
def test_bad_layout_graphs(tmp_path, build, match):
    _refused(tmp_path, build, match)


@pytest.mark.parametrize("other", [(1, 1, 20), (1, 2, 1), (1, 2, 20)], ids=str)
def test_mul_of_two_rank3_activations(tmp_path, other):
    """Scores times a per-anchor gate, a per-channel gate or an equal tensor: (N, A, B) broadcast
    as pydeconv's (N, A, 1, B)."""
    rng = np.random.default_rng(4)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 4, 5])
    t = b.node("Reshape", [head(b, rng, x, 3, 2), b.init("s", np.array([1, 2, 20], np.int64))])
    g = b.node("Sigmoid", [head(b, rng, x, 3, other[1])])
    if other[2] == 1:
        g = b.node("GlobalAveragePool", [g])  # (1, 2, 1, 1)
    g = b.node("Reshape", [g, b.init("s2", np.array(other, np.int64))])
    b.output(b.node("Mul", [t, g], outputs=["y"]))
    graph, _, _ = run(tmp_path, b, rand(rng, 1, 3, 4, 5))
    assert kinds(graph)[-1] == "mul"


def test_transposed_graph_output_is_laid_out(tmp_path):
    """A graph that ends in an NHWC view: a transpose layer lays it out as ONNX returns it."""
    rng = np.random.default_rng(5)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 4, 5])
    t = b.node("Transpose", [head(b, rng, x, 3, 2)], perm=[0, 2, 3, 1])
    b.output(b.node("Relu", [t], outputs=["y"]))
    graph, net, _ = run(tmp_path, b, rand(rng, 1, 3, 4, 5))
    assert kinds(graph) == ["conv2d", "relu", "transpose"]
    assert tuple(net.layer_info(graph["outputs"][0])["shape"]) == (4, 5, 2)


def test_dense_to_image_reshape(tmp_path):
    """(N, F) -> (N, C, H, W): a decoder's Gemm output made an image again, then a conv."""
    rng = np.random.default_rng(6)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 3, 4, 5])
    t = b.node("Flatten", [x])
    t = b.node("Gemm", [t, b.init("W", rand(rng, 24, 60)), b.init("c", rand(rng, 24))], transB=1)
    t = b.node("Reshape", [t, b.init("s", np.array([1, 2, 3, 4], np.int64))])
    b.output(head(b, rng, t, 2, 3))
    graph, _, _ = run(tmp_path, b, rand(rng, 1, 3, 4, 5))
    assert kinds(graph) == ["flatten", "linear", "reshape", "conv2d"]
