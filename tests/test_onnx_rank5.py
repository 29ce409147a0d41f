"""Rank-5 ONNX tensors held as rank 4 with two adjacent axes merged (docs/FORMAT.md): graphs
written here (tests/onnx_writer.py) with Reshape into rank 5, Transpose, Sigmoid, Split, Slice,
Concat, Add/Sub/Mul/Div by constants and by each other, and Pow(x, 2), each compared with a
float64 NumPy evaluation of the ONNX operators (tests/onnx_numpy.py) and ONNX Runtime; backprop
projections against central finite differences of that evaluation. Then the rank-5 patterns that
cannot be mapped: a GraphError naming the node, and with outputs="auto" the import stops at the
tensor before the rank-5 view.
"""

from __future__ import annotations

import numpy as np
import onnx_numpy
import pytest
from onnx_check import RULES, rand
from onnx_writer import OnnxBuilder

import pydeconv
from pydeconv.errors import GraphError
from pydeconv.onnx import import_onnx


def conv(b, rng, x, cin, cout):
    w = b.init(f"w{len(b.inits)}", rand(rng, cout, cin, 1, 1))
    bias = b.init(f"b{len(b.inits)}", rand(rng, cout))
    return b.node("Conv", [x, w, bias], kernel_shape=[1, 1])


def shape(b, values):
    return b.init(f"s{len(b.inits)}", np.array(values, np.int64))


def imported(tmp_path, b, x):
    """Import, build, forward: the one output equal to the NumPy evaluation (and ONNX Runtime when
    installed); returns the pieces and the reference."""
    path = b.save(str(tmp_path / "m.onnx"))
    graph, params = import_onnx(path)
    net = pydeconv.build(graph, params)
    out, trace = net.forward(x)
    (name, _), *_ = b.outputs
    want = onnx_numpy.run(b, x)[name]
    assert out.size == want.size
    np.testing.assert_allclose(out.reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    try:
        from onnx_check import ort_run

        ort = ort_run(path, x, [name])[name]
        np.testing.assert_allclose(out.reshape(want.shape), ort, rtol=1e-5, atol=1e-5)
    except pytest.skip.Exception:
        pass
    return graph, net, out, trace, want


def finite_difference(b, x, name, index, eps=1e-4):
    """d output[index] / d x by central differences of the float64 NumPy evaluation."""
    grad = np.zeros(x.shape)
    flat = x.astype(np.float64).reshape(-1)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += eps
        down[i] -= eps
        hi = onnx_numpy.run(b, up.reshape(x.shape))[name].reshape(-1)[index]
        lo = onnx_numpy.run(b, down.reshape(x.shape))[name].reshape(-1)[index]
        grad.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return grad


def check_gradients(b, x, graph, net, out, trace, indices):
    layer = graph["outputs"][0]
    (name, _), *_ = b.outputs
    for index in indices:
        start = np.zeros(out.size, np.float32)
        start[index] = 1.0
        got = net.project(trace, layer, at=start.reshape(out.shape), rule="backprop")
        want = finite_difference(b, x, name, index)
        scale = float(np.abs(want).max())
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * scale)
        for rule in RULES:
            image = net.project(trace, layer, at=start.reshape(out.shape), rule=rule)
            assert np.all(np.isfinite(image))


def yolov5_head(b, rng, x, nc=2, h=3, w=4):
    """A YOLOv5 Detect head (v6/v7 export): view, permute, sigmoid, split, the box arithmetic with
    grid and anchor_grid constants, ** 2, concat, the final view."""
    no = 5 + nc
    y = conv(b, rng, x, 2, 3 * no)
    y = b.node("Reshape", [y, shape(b, [1, 3, no, h, w])])
    y = b.node("Sigmoid", [b.node("Transpose", [y], perm=[0, 1, 3, 4, 2])])
    b.node(
        "Split", [y, shape(b, [2, 2, nc + 1])], axis=4, outputs=["xy", "wh", "conf"], name="split"
    )
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.broadcast_to(np.stack((gx, gy), 2), (1, 3, h, w, 2)) - 0.5
    anchors = np.array([[10, 13], [16, 30], [33, 23]], np.float32).reshape(1, 3, 1, 1, 2)
    two = b.init("two", np.array(2.0, np.float32))
    xy = b.node("Mul", ["xy", two])
    xy = b.node("Add", [xy, b.init("grid", grid.astype(np.float32))])
    xy = b.node("Mul", [xy, b.init("stride", np.array(8.0, np.float32))])
    wh = b.node("Pow", [b.node("Mul", ["wh", two]), b.init("e", np.array(2.0, np.float32))])
    wh = b.node("Mul", [wh, b.init("anchor_grid", np.ascontiguousarray(anchors))])
    y = b.node("Concat", [xy, wh, "conf"], axis=4)
    return b.node("Reshape", [y, shape(b, [1, 3 * h * w, no])], outputs=["y"])


def test_yolov5_head(tmp_path):
    rng = np.random.default_rng(0)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 3, 4])
    b.output(yolov5_head(b, rng, x), [1, 36, 7])
    x = rand(rng, 1, 2, 3, 4, scale=1.0)
    graph, net, out, trace, _ = imported(tmp_path, b, x)
    layers = [(la["kind"], la.get("attrs")) for la in graph["layers"]]
    assert ("reshape", {"shape": [3, 7, 12]}) in layers
    assert ("transpose", {"perm": [0, 2, 1]}) in layers
    assert ("slice", {"axis": 3, "start": 2, "end": 4}) in layers
    assert ("concat", {"axis": 3}) in layers and ("reshape", {"shape": [36, 1, 7]}) in layers
    assert out.shape == (1, 36, 1, 7)
    # an x, a w (through Pow), an objectness and a class score
    check_gradients(b, x, graph, net, out, trace, [7 * 5 + 0, 7 * 17 + 2, 7 * 30 + 4, 7 * 35 + 6])


def test_merge_chosen_for_the_transpose_slice_concat_mul(tmp_path):
    """A Transpose (0, 3, 1, 2, 4) keeps axes 1, 2 together: they are the merged pair; a Slice
    along the last axis, a Concat along axis 1, a Mul of two rank-5 activations and a Sub/Div by
    constant tensors; a Reshape back to rank 4."""
    rng = np.random.default_rng(1)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 4, 6])
    y = b.node("Reshape", [conv(b, rng, x, 2, 6), shape(b, [1, 2, 3, 4, 6])])  # (1, 2, 3, 4, 6)
    t = b.node("Transpose", [y], perm=[0, 3, 1, 2, 4])  # (1, 4, 2, 3, 6)
    s = b.node(
        "Slice", [t, shape(b, [1]), shape(b, [5]), shape(b, [4]), shape(b, [1])]
    )  # (1, 4, 2, 3, 4)
    c = b.node("Concat", [s, b.node("Sigmoid", [s])], axis=1)  # (1, 8, 2, 3, 4)
    m = b.node("Mul", [c, b.node("Tanh", [c])])
    k = rng.standard_normal((8, 1, 3, 1)).astype(np.float32)
    m = b.node("Sub", [m, b.init("k", k)])
    m = b.node("Div", [m, b.init("d", np.full((1, 1, 1, 1, 4), 2.0, np.float32))])
    b.output(b.node("Reshape", [m, shape(b, [1, 8, 6, 4])], outputs=["y"]), [1, 8, 6, 4])
    x = rand(rng, 1, 2, 4, 6, scale=1.0)
    graph, net, out, trace, _ = imported(tmp_path, b, x)
    layers = [(la["kind"], la.get("attrs")) for la in graph["layers"]]
    assert ("transpose", {"perm": [1, 0, 2]}) in layers
    assert ("slice", {"axis": 3, "start": 1, "end": 5}) in layers
    assert ("mul", None) in layers and out.shape == (1, 8, 6, 4)
    check_gradients(b, x, graph, net, out, trace, [0, 77, 191])


def test_pow_on_rank4(tmp_path):
    rng = np.random.default_rng(2)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 3, 3])
    p = b.node("Pow", [conv(b, rng, x, 2, 3), b.init("e", np.array([2.0], np.float32))])
    b.output(b.node("Pow", [p, b.init("one", np.array(1.0, np.float32))], outputs=["y"]))
    x = rand(rng, 1, 2, 3, 3, scale=1.0)
    graph, net, out, trace, _ = imported(tmp_path, b, x)
    assert [la["kind"] for la in graph["layers"]] == ["conv2d", "mul"]
    check_gradients(b, x, graph, net, out, trace, [0, 13])


def slice_indices(shape, axis, start):
    """ScatterND's indices for data[..., start:start + shape[axis], ...] = updates of ``shape``:
    every element's full index (what the TorchScript exporter writes for a slice assignment)."""
    grid = np.stack(np.indices(shape), -1)
    grid[..., axis] += start
    return grid.astype(np.int64)


@pytest.mark.parametrize("rank5", [True, False], ids=["rank5", "rank4"])
def test_slice_assignment(tmp_path, rank5):
    """YOLOv5's older decode: y[..., 0:2] = f(y[..., 0:2]); y[..., 2:4] = g(y[..., 2:4]) as Slice
    + ScatterND (an Expand that keeps the shape before it), on a rank-5 view and on rank 4."""
    rng = np.random.default_rng(4)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 3, 4])
    y = conv(b, rng, x, 2, 3 * 6)
    full = [1, 3, 3, 4, 6] if rank5 else [1, 18, 3, 4]
    if rank5:
        y = b.node("Reshape", [y, shape(b, [1, 3, 6, 3, 4])])
        y = b.node("Transpose", [y], perm=[0, 1, 3, 4, 2])  # (1, 3, 3, 4, 6)
    y = b.node("Sigmoid", [y])
    axis = len(full) - 1 if rank5 else 1  # the last axis of the rank-5 view, else the channels
    for start, scale in ((0, 2.0), (2, -3.0)):
        part = b.node("Slice", [y, shape(b, [start]), shape(b, [start + 2]), shape(b, [axis])])
        part = b.node("Mul", [part, b.init(f"k{start}", np.array(scale, np.float32))])
        upd = list(full)
        upd[axis] = 2
        part = b.node("Expand", [part, shape(b, upd)])
        y = b.node("ScatterND", [y, b.init(f"i{start}", slice_indices(upd, axis, start)), part])
    if rank5:
        y = b.node("Reshape", [y, shape(b, [1, 36, 6])])
    b.output(b.node("Relu", [y], outputs=["y"]))
    x = rand(rng, 1, 2, 3, 4, scale=1.0)
    graph, net, out, trace, _ = imported(tmp_path, b, x)
    kinds = [la["kind"] for la in graph["layers"]]
    assert "concat" in kinds and "slice" in kinds
    # units of the doubled slice, of untouched data and the last (the tripled slice is negative:
    # no gradient past the Relu)
    check_gradients(b, x, graph, net, out, trace, [0, 4 if rank5 else 48, out.size - 1])


def test_slice_assignment_between_transposes(tmp_path):
    """The dynamo exporter's slice assignment along the last axis: Transpose (4, 1, 2, 3, 0) of
    data and updates, ScatterND of whole rows along axis 0, Transpose back: fused into one
    ScatterND (fuse.py), then mapped as above."""
    rng = np.random.default_rng(5)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 3, 4])
    y = b.node("Reshape", [conv(b, rng, x, 2, 18), shape(b, [1, 3, 6, 3, 4])])
    y = b.node("Sigmoid", [b.node("Transpose", [y], perm=[0, 1, 3, 4, 2])])  # (1, 3, 3, 4, 6)
    swap = [4, 1, 2, 3, 0]
    part = b.node("Slice", [y, shape(b, [2]), shape(b, [4]), shape(b, [4])])
    part = b.node("Mul", [part, b.init("k", np.array(3.0, np.float32))])
    scattered = b.node(
        "ScatterND",
        [
            b.node("Transpose", [y], perm=swap),
            b.init("i", np.array([[2], [3]], np.int64)),
            b.node("Transpose", [part], perm=swap),
        ],
    )
    y = b.node("Transpose", [scattered], perm=swap)
    b.output(b.node("Reshape", [y, shape(b, [1, 36, 6])], outputs=["y"]))
    x = rand(rng, 1, 2, 3, 4, scale=1.0)
    graph, net, out, trace, _ = imported(tmp_path, b, x)
    kinds = [la["kind"] for la in graph["layers"]]
    assert kinds.count("transpose") == 1 and "concat" in kinds
    check_gradients(b, x, graph, net, out, trace, [2, 3, out.size - 1])


def test_scatter_that_is_not_a_slice_assignment(tmp_path):
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 2, 2])
    y = b.node("Reshape", [b.node("Relu", [x]), shape(b, [1, 2, 2, 2, 1])], outputs=["v"])
    indices = slice_indices([1, 2, 2, 2, 1], 4, 0)
    indices[0, 0, 0, 0, 0, 3] = 1  # one element elsewhere
    up = b.node("Sigmoid", [y])
    b.output(b.node("ScatterND", [y, b.init("i", indices), up], name="sc", outputs=["y"]))
    path = b.save(str(tmp_path / "bad.onnx"))
    with pytest.raises(GraphError, match=r"ScatterND node 'sc'.*only a slice assignment"):
        import_onnx(path)
    graph, _ = import_onnx(path, outputs="auto")
    assert [la["kind"] for la in graph["layers"]] == ["relu"]


def _graph(tmp_path, tail):
    """conv -> Reshape (1, 2, 3, 2, 2) -> ``tail``; returns the file."""
    rng = np.random.default_rng(3)
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 2, 2])
    y = b.node("Reshape", [conv(b, rng, x, 2, 6), shape(b, [1, 2, 3, 2, 2])], outputs=["v"])
    b.output(tail(b, y))
    return b.save(str(tmp_path / "bad.onnx"))


BAD = {
    "batch_moved": (
        lambda b, y: b.node("Transpose", [y], perm=[1, 0, 2, 3, 4], name="t", outputs=["y"]),
        r"Transpose node 't'.*keep the batch axis first",
    ),
    "pair_separated": (
        lambda b, y: b.node("Transpose", [y], perm=[0, 4, 3, 2, 1], name="t", outputs=["y"]),
        r"Transpose node 't'.*separates the axes 3, 4",
    ),
    "split_inside_pair": (  # the Relu reads the view, so H, W (3, 4) stay merged
        lambda b, y: b.node(
            "Split",
            [b.node("Relu", [y], outputs=["r"]), shape(b, [1, 1])],
            axis=3,
            name="s",
            outputs=["y", "z"],
        ),
        r"Split node 's'.*axis 3 of the rank-5 tensor 'r'.*merged",
    ),
    "softmax": (
        lambda b, y: b.node("Softmax", [y], axis=2, name="sm", outputs=["y"]),
        r"Softmax node 'sm'.*rank-5 tensors map only through",
    ),
    "pow_3": (
        lambda b, y: b.node(
            "Pow", [y, b.init("e", np.array(3.0, np.float32))], name="p", outputs=["y"]
        ),
        r"Pow node 'p'.*exponents 1 and 2",
    ),
    "rank5_output": (
        lambda b, y: b.node("Sigmoid", [y], outputs=["y"]),
        r"graph output 'y' is a rank-5 tensor of shape \[1, 2, 3, 2, 2\]",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unmappable_rank5(tmp_path, case):
    tail, match = BAD[case]
    path = _graph(tmp_path, tail)
    with pytest.raises(GraphError, match=match):
        import_onnx(path)
    # outputs="auto": the import stops at the tensor before the rank-5 view (the conv's output)
    graph, params = import_onnx(path, outputs="auto")
    assert [la["kind"] for la in graph["layers"]] == ["conv2d"]
    net = pydeconv.build(graph, params)
    out, _ = net.forward(np.ones((1, 2, 2, 2), np.float32))
    assert out.shape == (1, 6, 2, 2)
