"""ONNX operators -> pydeconv layers: one function per operator, one table (``OPERATORS``).

Each function receives the ``Mapper`` (the layers built so far and what every ONNX tensor became)
and one node whose constant inputs were already folded. It either appends a layer, folds the node
into the layer before it (a constant Add becomes that layer's bias), or makes the node's output an
alias of its input (Identity, Dropout, layout-only Transposes and Reshapes).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import GraphError
from .mapper import NHWC, NHWC_FLAT, Mapper
from .model import Node
from .shapes import conv_padding, reshape_target


def _fail(node: Node, why: str) -> GraphError:
    return GraphError(f"{node.op_type} node '{node.label()}': {why}")


def _only_first_output(m: Mapper, node: Node) -> None:
    for extra in node.outputs[1:]:
        if extra and m.uses.get(extra, 0):
            raise _fail(node, f"its output '{extra}' is used, only the first output is supported")


def _window_attrs(m: Mapper, node: Node, kernel: list[int]) -> dict:
    """kernel_size/stride/padding/dilation in FORMAT.md spelling (ONNX strides default to 1)."""
    if len(kernel) != 2:
        raise _fail(node, f"only 2-D windows are supported, got kernel {kernel}")
    stride = list(node.attrs.get("strides", [1, 1]))
    dilation = list(node.attrs.get("dilations", [1, 1]))
    x = m.shape(node.inputs[0])
    if len(x) != 4:
        raise _fail(node, f"expects an NCHW input, got shape {x}")
    padding = conv_padding(node, x[2:], tuple(kernel), tuple(stride), tuple(dilation))
    return {"kernel_size": list(kernel), "stride": stride, "padding": padding, "dilation": dilation}


def map_conv(m: Mapper, node: Node) -> None:
    weight = m.const(node, 1, "weight")
    if weight.ndim != 4:
        raise _fail(node, f"only 2-D convolution is supported (weight shape {list(weight.shape)})")
    kernel = list(node.attrs.get("kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        raise _fail(node, f"kernel_shape {kernel} disagrees with the weight {list(weight.shape)}")
    attrs = _window_attrs(m, node, kernel)
    attrs["groups"] = int(node.attrs.get("group", 1))
    params = {"weight": weight}
    if len(node.inputs) > 2 and node.inputs[2]:
        params["bias"] = m.const(node, 2, "bias").reshape(-1)
    m.emit(node, "conv2d", [m.src(node.inputs[0])], attrs, params)


def _pool(m: Mapper, node: Node, kind: str) -> None:
    _only_first_output(m, node)
    attrs = _window_attrs(m, node, list(node.attrs.get("kernel_shape", [])))
    if attrs.pop("dilation") != [1, 1]:
        raise _fail(node, "pooling with dilations other than 1 is not supported")
    attrs["ceil_mode"] = bool(node.attrs.get("ceil_mode", 0))
    if kind == "avg_pool2d":
        attrs["count_include_pad"] = bool(node.attrs.get("count_include_pad", 0))
    m.emit(node, kind, [m.src(node.inputs[0])], attrs)


def map_max_pool(m: Mapper, node: Node) -> None:
    _pool(m, node, "max_pool2d")


def map_average_pool(m: Mapper, node: Node) -> None:
    _pool(m, node, "avg_pool2d")


def map_global_average_pool(m: Mapper, node: Node) -> None:
    if len(m.shape(node.inputs[0])) != 4:
        raise _fail(node, "expects an NCHW input")
    m.emit(node, "global_avg_pool", [m.src(node.inputs[0])])


def map_reduce_mean(m: Mapper, node: Node) -> None:
    """A mean over H and W (PyTorch's newer exporter writes avg-pool-to-1x1 this way)."""
    x = m.shape(node.inputs[0])
    axes = m.axes(node, len(x))
    if len(x) != 4 or axes != [2, 3]:
        raise _fail(
            node, f"only a mean over axes [2, 3] of an NCHW tensor is supported (axes {axes})"
        )
    if node.attrs.get("keepdims", 1):
        m.emit(node, "global_avg_pool", [m.src(node.inputs[0])])
    else:
        pooled = m.emit(node, "global_avg_pool", [m.src(node.inputs[0])], suffix="_pool")
        m.emit(node, "flatten", [pooled])


def map_lrn(m: Mapper, node: Node) -> None:
    if "size" not in node.attrs:
        raise _fail(node, "the required attribute 'size' is missing")
    attrs = {
        "size": int(node.attrs["size"]),
        "alpha": float(node.attrs.get("alpha", 1e-4)),
        "beta": float(node.attrs.get("beta", 0.75)),
        "bias": float(node.attrs.get("bias", 1.0)),
    }
    m.emit(node, "lrn", [m.src(node.inputs[0])], attrs)


def map_batch_norm(m: Mapper, node: Node) -> None:
    _only_first_output(m, node)
    if node.attrs.get("training_mode", 0):
        raise _fail(node, "training_mode=1 is not supported")
    params = {
        key: m.const(node, i, key).reshape(-1)
        for i, key in enumerate(("scale", "bias", "mean", "var"), start=1)
    }
    attrs = {"epsilon": float(node.attrs.get("epsilon", 1e-5))}
    m.emit(node, "batch_norm", [m.src(node.inputs[0])], attrs, params)


def _linear(m: Mapper, node: Node, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """weight is (out, in) over the flattened input; undo an NHWC flatten by permuting columns."""
    source = node.inputs[0]
    layout = m.layout.get(source)
    if layout and layout[0] == NHWC_FLAT:
        c, h, w = layout[1]
        # tf2onnx flattened (h, w, c); pydeconv's flatten is (c, h, w): move the columns to match.
        weight = weight.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(weight.shape[0], -1)
    features = math.prod(m.shape(source)[1:])
    if weight.shape[1] != features:
        raise _fail(node, f"weight has {weight.shape[1]} inputs, the input has {features} features")
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    m.emit(node, "linear", [m.src(source, allow_layout=True)], params=params)


def map_gemm(m: Mapper, node: Node) -> None:
    if node.attrs.get("transA", 0):
        raise _fail(node, "transA=1 is not supported")
    if len(m.shape(node.inputs[0])) != 2:
        raise _fail(node, "expects a 2-D input")
    b = m.const(node, 1, "B")
    weight = b if node.attrs.get("transB", 0) else b.T
    weight = weight * np.float32(node.attrs.get("alpha", 1.0))
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c = m.const(node, 2, "C")
        if c.size not in (1, weight.shape[0]) or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
            raise _fail(node, f"bias C of shape {list(c.shape)} is not a per-output vector")
        bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)) * np.float32(
            node.attrs.get("beta", 1.0)
        )
    _linear(m, node, weight, bias)


def map_matmul(m: Mapper, node: Node) -> None:
    if len(m.shape(node.inputs[0])) != 2:
        raise _fail(node, "expects a 2-D input (batch, features)")
    b = m.const(node, 1, "B")
    if b.ndim != 2:
        raise _fail(node, f"B must be a 2-D constant, got shape {list(b.shape)}")
    _linear(m, node, b.T, None)  # MatMul's B is (in, out); linear wants (out, in)


def map_flatten(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    axis = node.attrs.get("axis", 1)
    if axis not in (1, 1 - len(x)):
        raise _fail(node, f"only axis 1 is supported, got {axis}")
    _flatten(m, node, x)


def _flatten(m: Mapper, node: Node, x: tuple) -> None:
    source = node.inputs[0]
    layout = m.layout.get(source)
    if len(x) == 2:
        m.alias(node.outputs[0], source)  # already (batch, features)
        return
    m.emit(node, "flatten", [m.src(source, allow_layout=True)])
    if layout and layout[0] == NHWC:
        m.layout[node.outputs[0]] = (NHWC_FLAT, layout[1])


def map_reshape(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    target = [int(v) for v in m.const(node, 1, "shape").reshape(-1)]
    out = reshape_target(x, target, bool(node.attrs.get("allowzero", 0)))
    if len(out) != 2 or out[0] != x[0]:
        raise _fail(node, f"only a flatten to (batch, features) is supported, not {x} -> {target}")
    _flatten(m, node, x)


def map_squeeze(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    axes = m.axes(node, len(x))
    if len(x) != 4 or x[2:] != (1, 1) or axes not in (None, [2, 3]):
        raise _fail(node, "only squeezing a (N, C, 1, 1) tensor to (N, C) is supported")
    _flatten(m, node, x)


def map_transpose(m: Mapper, node: Node) -> None:
    source = node.inputs[0]
    x = m.shape(source)
    perm = list(node.attrs.get("perm", range(len(x) - 1, -1, -1)))
    if perm == [0, 3, 1, 2] and m.is_raw_input(source):
        m.nhwc_input(node, source)  # tf2onnx/Keras: NHWC graph input made NCHW
    elif perm == [0, 2, 3, 1] and len(x) == 4 and source not in m.layout:
        m.alias(node.outputs[0], source)  # NCHW -> NHWC, only allowed before a flatten + linear
        m.layout[node.outputs[0]] = (NHWC, tuple(x[1:]))
    elif perm == list(range(len(x))):
        m.alias(node.outputs[0], source)
    else:
        raise _fail(
            node,
            f"perm {perm} is not supported (only the NHWC input transpose (0,3,1,2) and "
            f"an NHWC transpose (0,2,3,1) before flatten + linear)",
        )


def map_softmax(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    default = -1 if m.opset >= 13 else 1
    axis = node.attrs.get("axis", default) % len(x)
    # Before opset 13 softmax ran over everything after `axis` flattened; same thing when H=W=1.
    ok = axis == 1 and (len(x) == 2 or m.opset >= 13 or math.prod(x[2:]) == 1)
    if not ok:
        raise _fail(node, f"softmax over axis {axis} of a rank {len(x)} tensor is not supported")
    m.emit(node, "softmax", [m.src(node.inputs[0])])


def map_identity(m: Mapper, node: Node) -> None:
    """Identity and Dropout (inference) pass their input through: no layer."""
    _only_first_output(m, node)
    m.alias(node.outputs[0], node.inputs[0])


def map_cast(m: Mapper, node: Node) -> None:
    if node.attrs.get("to", 1) != 1:
        raise _fail(node, "only a cast to float32 of an activation is supported")
    m.alias(node.outputs[0], node.inputs[0])


def map_concat(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    if node.attrs.get("axis", 0) % len(x) != 1:
        raise _fail(node, "only concatenation along the channel axis is supported")
    m.emit(node, "concat", [m.src(name) for name in node.inputs])


def _split_constant(m: Mapper, node: Node):
    """(activation input, constant input) of a binary node, or (None, None) if none is constant."""
    a, b = node.inputs
    if b in m.consts and a not in m.consts:
        return a, m.consts[b]
    if a in m.consts and b not in m.consts:
        return b, m.consts[a]
    return None, None


def map_add(m: Mapper, node: Node) -> None:
    x, c = _split_constant(m, node)
    if x is None:
        shapes = [m.shape(name) for name in node.inputs]
        if shapes[0] != shapes[1]:
            raise _fail(node, f"adding tensors of different shapes {shapes} is not supported")
        m.emit(node, "add", [m.src(name) for name in node.inputs])
    else:
        m.add_constant(node, x, c)


def map_sub(m: Mapper, node: Node) -> None:
    a, b = node.inputs
    if b not in m.consts or a in m.consts:
        raise _fail(node, "only subtracting a constant from an activation is supported")
    m.add_constant(node, a, -m.consts[b])


def map_mul(m: Mapper, node: Node) -> None:
    x, c = _split_constant(m, node)
    if x is None:
        raise _fail(node, "multiplying two activations is not supported")
    m.scale_by_constant(node, x, c)


def map_div(m: Mapper, node: Node) -> None:
    a, b = node.inputs
    if b not in m.consts or a in m.consts:
        raise _fail(node, "only dividing an activation by a constant is supported")
    m.scale_by_constant(node, a, np.float32(1.0) / m.consts[b].astype(np.float32))


def map_relu(m: Mapper, node: Node) -> None:
    m.emit(node, "relu", [m.src(node.inputs[0])])


OPERATORS: dict[str, Callable[[Mapper, Node], None]] = {
    "Conv": map_conv,
    "Relu": map_relu,
    "MaxPool": map_max_pool,
    "AveragePool": map_average_pool,
    "GlobalAveragePool": map_global_average_pool,
    "ReduceMean": map_reduce_mean,
    "LRN": map_lrn,
    "BatchNormalization": map_batch_norm,
    "Gemm": map_gemm,
    "MatMul": map_matmul,
    "Flatten": map_flatten,
    "Reshape": map_reshape,
    "Squeeze": map_squeeze,
    "Transpose": map_transpose,
    "Softmax": map_softmax,
    "Dropout": map_identity,
    "Identity": map_identity,
    "Cast": map_cast,
    "Concat": map_concat,
    "Add": map_add,
    "Sub": map_sub,
    "Mul": map_mul,
    "Div": map_div,
}
