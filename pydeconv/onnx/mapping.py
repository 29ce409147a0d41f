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
from . import rank5
from .mapper import FLAT, PERMUTED, Mapper
from .model import BFLOAT16, DOUBLE, FLOAT, FLOAT16, Node
from .shapes import conv_padding, reshape_target

# pydeconv's axis (1 C, 2 H, 3 W) of an ONNX axis, per rank of a batch-first tensor: a rank-3
# (N, A, B) is pydeconv's (N, A, 1, B) (docs/FORMAT.md), so its axis 2 runs along W.
ENGINE_AXES = {2: {1: 1}, 3: {1: 1, 2: 3}, 4: {1: 1, 2: 2, 3: 3}}


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
    """BatchNormalization: folded into the convolution that is its only input (weights and bias:
    the same function, and a linear layer goes down by its exact gradient under every rule, so
    the projection is unchanged), else a batch_norm layer."""
    _only_first_output(m, node)
    if node.attrs.get("training_mode", 0):
        raise _fail(node, "training_mode=1 is not supported")
    params = {
        key: m.const(node, i, key).reshape(-1)
        for i, key in enumerate(("scale", "bias", "mean", "var"), start=1)
    }
    epsilon = float(node.attrs.get("epsilon", 1e-5))
    source = node.inputs[0]
    layer = m._foldable(source)
    if layer is not None and layer["kind"] == "conv2d" and source not in m.layout:
        name = layer["name"]
        weight = m.params[f"{name}/weight"]
        if all(p.shape == (weight.shape[0],) for p in params.values()):
            factor = params["scale"] / np.sqrt(params["var"] + np.float32(epsilon))
            bias = m.params.get(f"{name}/bias", np.zeros(weight.shape[0], np.float32))
            m.params[f"{name}/weight"] = np.ascontiguousarray(
                weight * factor.reshape(-1, 1, 1, 1), dtype=np.float32
            )
            m.params[f"{name}/bias"] = np.ascontiguousarray(
                (bias - params["mean"]) * factor + params["bias"], dtype=np.float32
            )
            layer.setdefault("params", {})["bias"] = [int(weight.shape[0])]
            m.folded(layer, node)
            m.alias(node.outputs[0], source)
            return
    m.emit(node, "batch_norm", [m.src(source)], {"epsilon": epsilon}, params)


def _linear(m: Mapper, node: Node, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """weight is (out, in) over the flattened input; undo a permuted flatten (tf2onnx's NHWC,
    MTCNN's (0, 3, 2, 1)) by permuting its columns into pydeconv's (C, H, W) order."""
    source = node.inputs[0]
    layout = m.layout.get(source)
    if layout and layout[0] == FLAT:
        _, perm, chw = layout
        axes = [p - 1 for p in perm[1:]]  # the CHW axis at each flattened position
        dims = [chw[a] for a in axes]
        back = [1 + axes.index(a) for a in range(3)]
        weight = weight.reshape(-1, *dims).transpose(0, *back).reshape(weight.shape[0], -1)
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
    x = m.shape(node.inputs[0])
    b = m.const(node, 1, "B")
    if b.ndim != 2:
        raise _fail(node, f"B must be a 2-D constant, got shape {list(b.shape)}")
    if len(x) == 4 and m.channels_last(node.inputs[0]):
        # ConvNeXt's pointwise Linear on a channels-last tensor: a 1x1 convolution.
        if b.shape[0] != x[-1]:
            raise _fail(node, f"B {list(b.shape)} does not take {x[-1]} channels")
        weight = np.ascontiguousarray(b.T[:, :, None, None])
        attrs: dict = {"kernel_size": [1, 1], "stride": [1, 1], "padding": [0, 0, 0, 0]}
        attrs.update({"dilation": [1, 1], "groups": 1})
        m.emit(node, "conv2d", [m.src_elementwise(node.inputs[0])], attrs, {"weight": weight})
        m.same_layout(node.outputs[0], node.inputs[0])
        return
    if len(x) != 2:
        raise _fail(node, "expects a 2-D input (batch, features) or a channels-last image tensor")
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
    if layout and layout[0] == PERMUTED:
        m.layout[node.outputs[0]] = (FLAT, layout[1], layout[2])


def map_reshape(m: Mapper, node: Node) -> None:
    """A flatten to (batch, features), or a reshape between rank-2/3/4 tensors that keeps the
    batch: a ``reshape`` layer to the per-sample shape (rank 3 (N, A, B) is (A, 1, B)), or no layer
    when that shape is unchanged ((N, C, H*W) -> (N, C, 1, H*W)). A rank-5 tensor is held with two
    axes merged (rank5.py): the same elements in the same order."""
    source = node.inputs[0]
    x = m.shape(source)  # a rank-5 tensor's merged rank-4 shape
    onnx = m.rank5[source][0] if source in m.rank5 else x
    target = [int(v) for v in m.const(node, 1, "shape").reshape(-1)]
    out = reshape_target(onnx, target, bool(node.attrs.get("allowzero", 0)))
    if len(out) == 5 and source in m.rank5 and tuple(out) == tuple(onnx):
        rank5.register(m, node.outputs[0], out, m.rank5[source][1], rank5.roots_of(m, [source]))
        m.alias(node.outputs[0], source)  # a no-op reshape keeps the merged pair
        return
    if len(out) == 5:
        if len(x) not in (2, 3, 4) or out[0] != x[0]:
            raise _fail(
                node, f"only a reshape that keeps the batch is supported, not {list(x)} -> {target}"
            )
        k = rank5.choose_merge(m, node.outputs[0], out)
        sample = rank5.merged(out, k)[1:]
        before = Mapper.sample_shape(x) if source not in m.rank5 else tuple(x[1:])
        rank5.register(m, node.outputs[0], out, k, rank5.roots_of(m, [source]))
        if before == sample and source not in m.layout:
            m.alias(node.outputs[0], source)
        else:
            m.emit(node, "reshape", [m.src(source)], {"shape": list(sample)})
        return
    if tuple(out) == tuple(x) and node.inputs[0] not in m.layout:
        m.alias(node.outputs[0], node.inputs[0])  # a no-op reshape
        return
    if len(x) == 4 and len(out) == 4 and out[0] == x[0] and out[2:] == (1, 1) and x[2:] == (1, 1):
        m.alias(node.outputs[0], node.inputs[0])
        return
    if len(out) == 2 and out[0] == x[0]:
        _flatten(m, node, x)
        return
    if len(out) not in (3, 4) or len(x) not in (2, 3, 4) or out[0] != x[0]:
        raise _fail(
            node,
            f"only a reshape that keeps the batch between tensors of rank 2 to 4 is supported "
            f"(a flatten, or (N, C, H, W) <-> (N, A, B)), not {list(x)} -> {target}",
        )
    shape = Mapper.sample_shape(out)
    if Mapper.sample_shape(x) == shape and node.inputs[0] not in m.layout:
        m.alias(node.outputs[0], node.inputs[0])
        m.shapes[node.outputs[0]] = tuple(out)
        return
    m.emit(node, "reshape", [m.src(node.inputs[0])], {"shape": list(shape)})


def map_squeeze(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    axes = m.axes(node, len(x))
    if len(x) != 4 or x[2:] != (1, 1) or axes not in (None, [2, 3]):
        raise _fail(node, "only squeezing a (N, C, 1, 1) tensor to (N, C) is supported")
    _flatten(m, node, x)


def map_transpose(m: Mapper, node: Node) -> None:
    source = node.inputs[0]
    x = m.shape(source)
    perm = [int(p) for p in node.attrs.get("perm", range(len(x) - 1, -1, -1))]
    if source in m.rank5:
        perm = [int(p) for p in node.attrs.get("perm", range(4, -1, -1))]
        rank5.transpose(m, node, perm)
        return
    if perm == [0, 3, 1, 2] and m.is_raw_input(source):
        m.nhwc_input(node, source)  # tf2onnx/Keras: NHWC graph input made NCHW
        return
    if perm == list(range(len(x))):
        m.alias(node.outputs[0], source)
        return
    if len(x) == 3 and sorted(perm) == [0, 1, 2] and perm[0] == 0 and source not in m.layout:
        # (N, A, B) is (N, A, 1, B): ONNX axes 1 and 2 are pydeconv's per-sample axes 0 and 2.
        axis = {1: 0, 2: 2}
        m.emit(node, "transpose", [m.src(source)], {"perm": [axis[perm[1]], 1, axis[perm[2]]]})
        return
    layout = m.layout.get(source)
    if (
        len(x) != 4
        or sorted(perm) != [0, 1, 2, 3]
        or perm[0] != 0
        or (layout and layout[0] != PERMUTED)
    ):
        raise _fail(
            node,
            f"perm {perm} is not supported: only permutations of the (C, H, W) axes of an "
            f"image tensor, which are followed by element-wise operators, a flatten + linear, "
            f"or (channels last) LayerNormalization/MatMul, and then transposed back",
        )
    before = layout[1] if layout else (0, 1, 2, 3)
    composed = tuple(before[p] for p in perm)
    m.shapes[node.outputs[0]] = tuple(x[p] for p in perm)
    m.alias(node.outputs[0], source)
    m.layout.pop(node.outputs[0], None)
    if composed != (0, 1, 2, 3):
        chw = layout[2] if layout else tuple(x[1:])
        m.layout[node.outputs[0]] = (PERMUTED, composed, chw)


def map_softmax(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    default = -1 if m.opset >= 13 else 1
    axis = node.attrs.get("axis", default) % len(x)
    # Before opset 13 softmax ran over everything after `axis` flattened; same thing when H=W=1.
    ok = axis == 1 and (len(x) in (2, 3) or m.opset >= 13 or math.prod(x[2:]) == 1)
    ok = ok and (len(x) != 3 or m.opset >= 13 or x[2] == 1)
    if not ok:
        raise _fail(node, f"softmax over axis {axis} of a rank {len(x)} tensor is not supported")
    m.emit(node, "softmax", [m.src(node.inputs[0])])


def map_identity(m: Mapper, node: Node) -> None:
    """Identity and Dropout (inference) pass their input through: no layer."""
    _only_first_output(m, node)
    m.alias(node.outputs[0], node.inputs[0])


def map_cast(m: Mapper, node: Node) -> None:
    """A cast between floating types (float16 models cast the input and outputs): pydeconv
    computes in float32 throughout, so no layer."""
    if node.attrs.get("to", 1) not in (FLOAT, FLOAT16, DOUBLE, BFLOAT16):
        raise _fail(node, "only a cast to a floating type of an activation is supported")
    m.alias(node.outputs[0], node.inputs[0])


def map_concat(m: Mapper, node: Node) -> None:
    """Along the channels (axis 1), or along H/W of a rank-4 tensor or B of a rank-3 one (a
    detection head's anchors; pydeconv's axis 3)."""
    inputs = [name for name in node.inputs if name]
    if inputs[0] in m.rank5:
        _concat5(m, node, inputs)
        return
    x = m.shape(inputs[0])
    axis = node.attrs.get("axis", 0) % len(x)
    engine = ENGINE_AXES.get(len(x), {}).get(axis)
    if engine is None:
        raise _fail(
            node,
            f"only concatenation along the channel axis (or H, W of rank 4, axis 2 of rank 3) is "
            f"supported, got axis {axis} of shape {list(x)}",
        )
    if len(inputs) == 1:
        m.alias(node.outputs[0], inputs[0])  # torchvision DenseNet: a one-input Concat
        return
    for name in inputs:
        shape = m.shape(name)
        if len(shape) != len(x) or any(
            a != b for i, (a, b) in enumerate(zip(shape, x)) if i != axis
        ):
            raise _fail(
                node,
                f"input '{name}' of shape {list(shape)} does not match {list(x)} outside axis "
                f"{axis}",
            )
    attrs = {"axis": engine} if engine != 1 else None
    m.emit(node, "concat", [m.src(name) for name in inputs], attrs)


def _concat5(m: Mapper, node: Node, inputs: list[str]) -> None:
    """Rank-5 inputs held with the same axes merged, joined along an axis outside the pair."""
    shape, k = m.rank5[inputs[0]]
    axis = int(node.attrs.get("axis", 0)) % 5
    engine = rank5.engine_axis(m, inputs[0], axis)
    for name in inputs:
        other = m.rank5.get(name)
        if (
            other is None
            or other[1] != k
            or any(a != b for i, (a, b) in enumerate(zip(other[0], shape)) if i != axis)
        ):
            got = list(other[0]) if other else list(m.shape(name))
            raise _fail(
                node,
                f"input '{name}' of shape {got} does not match the rank-5 {list(shape)} outside "
                f"axis {axis}",
            )
    out = list(shape)
    out[axis] = sum(m.rank5[name][0][axis] for name in inputs)
    rank5.register(m, node.outputs[0], tuple(out), k, rank5.roots_of(m, inputs))
    if len(inputs) == 1:
        m.alias(node.outputs[0], inputs[0])
        return
    attrs = {"axis": engine} if engine != 1 else None
    m.emit(node, "concat", [m.src(name) for name in inputs], attrs)


def _split_constant(m: Mapper, node: Node):
    """(activation input, constant input) of a binary node, or (None, None) if none is constant."""
    a, b = node.inputs
    if b in m.consts and a not in m.consts:
        return a, m.consts[b]
    if a in m.consts and b not in m.consts:
        return b, m.consts[a]
    return None, None


def _binary_inputs(m: Mapper, node: Node) -> list[str]:
    """Both inputs of an element-wise binary layer: one layout (both NCHW or both the same
    permuted view); the output takes it."""
    perms = {m.permutation(name) for name in node.inputs}
    if len(perms) != 1 or any(m.layout.get(n, (None,))[0] == FLAT for n in node.inputs):
        raise _fail(node, "its inputs are laid out differently (one of them is Transpose'd)")
    names = [m.src_elementwise(name) for name in node.inputs]
    return names


def map_add(m: Mapper, node: Node) -> None:
    x, c = _split_constant(m, node)
    if x is None:
        shapes = [m.shape(name) for name in node.inputs]
        if shapes[0] != shapes[1]:
            raise _fail(node, f"adding tensors of different shapes {shapes} is not supported")
        m.emit(node, "add", _binary_inputs(m, node))
        m.same_layout(node.outputs[0], node.inputs[0])
    else:
        m.add_constant(node, x, c)


def map_sub(m: Mapper, node: Node) -> None:
    a, b = node.inputs
    if b in m.consts and a not in m.consts:
        m.add_constant(node, a, -m.consts[b])
    elif a in m.consts and b not in m.consts:
        full = m.constant_tensor(m.consts[a], b)  # c - x: scale -1, bias c
        if full is not None:
            m._affine(node, b, -np.ones(m.shape(b)[1], np.float32), full)
            return
        vector = m.channel_vector(m.consts[a], b)
        m._affine(node, b, -np.ones_like(vector), vector)
    elif a not in m.consts and b not in m.consts:
        shapes = [m.shape(name) for name in node.inputs]
        if shapes[0] != shapes[1]:
            raise _fail(node, f"subtracting tensors of different shapes {shapes} is not supported")
        m.emit(node, "add", _binary_inputs(m, node), {"weights": [1.0, -1.0]})
        m.same_layout(node.outputs[0], node.inputs[0])
    else:
        raise _fail(node, "subtracting two constants was not folded")  # pragma: no cover


def map_mul(m: Mapper, node: Node) -> None:
    x, c = _split_constant(m, node)
    if x is not None:
        m.scale_by_constant(node, x, c)
        return
    # Two activations: an SE gate (N, C, 1, 1), a spatial map (N, 1, H, W), or equal shapes.
    out = m.shape(node.outputs[0])
    for name in node.inputs:
        shape = m.shape(name)
        if len(shape) != len(out) or shape[0] != out[0] or len(out) not in (2, 3, 4):
            raise _fail(
                node, f"cannot multiply tensors of shapes {[m.shape(n) for n in node.inputs]}"
            )
        if any(d not in (1, o) for d, o in zip(shape[1:], out[1:])):
            raise _fail(node, f"input '{name}' of shape {list(shape)} does not broadcast to {out}")
    if m.permutation(node.inputs[0]) is not None or m.permutation(node.inputs[1]) is not None:
        raise _fail(node, "multiplying Transpose'd tensors is not supported")
    m.emit(node, "mul", [m.src(name) for name in node.inputs])


def map_pow(m: Mapper, node: Node) -> None:
    """x ** 2 (YOLOv5's box size): a ``mul`` of the activation by itself; x ** 1: no layer."""
    a, b = node.inputs
    if a in m.consts or b not in m.consts:
        raise _fail(node, "only an activation raised to a constant power is supported")
    exponent = np.unique(m.consts[b].astype(np.float64))
    if exponent.size != 1 or float(exponent[0]) not in (1.0, 2.0):
        raise _fail(node, f"only the exponents 1 and 2 are supported, got {exponent.tolist()}")
    if m.shape(node.outputs[0]) != m.shape(a):
        raise _fail(node, f"the exponent of shape {list(m.consts[b].shape)} broadcasts the input")
    if float(exponent[0]) == 1.0:
        m.alias(node.outputs[0], a)
        return
    if m.permutation(a) is not None or a in m.layout:
        raise _fail(node, "squaring a Transpose'd tensor is not supported")
    source = m.src(a)
    m.emit(node, "mul", [source, source])


def map_expand(m: Mapper, node: Node) -> None:
    """An Expand that keeps the shape (the exporters' ``expand_as`` before a slice assignment):
    no layer."""
    if m.shape(node.outputs[0]) != m.shape(node.inputs[0]):
        raise _fail(
            node,
            f"only an Expand that keeps the shape is supported, not {list(m.shape(node.inputs[0]))}"
            f" -> {list(m.shape(node.outputs[0]))}",
        )
    m.alias(node.outputs[0], node.inputs[0])


def map_scatter_nd(m: Mapper, node: Node) -> None:
    """``data[..., s:e] = updates`` as the exporters write a slice assignment (YOLOv5's older
    decode): ScatterND whose constant indices list every element of one contiguous slice along one
    axis (the batch and the other axes whole). It is a ``concat`` along that axis of the data
    before the slice, the updates and the data after it (``slice`` layers)."""
    if node.attrs.get("reduction", "none") != "none":
        raise _fail(node, f"reduction '{node.attrs['reduction']}' is not supported")
    if len(node.inputs) < 3 or not all(node.inputs[:3]):
        raise _fail(node, "needs data, indices and updates")
    data, indices_name, updates = node.inputs[:3]
    if data in m.consts or updates in m.consts:
        raise _fail(node, "data and updates must be activations")
    indices = m.consts.get(indices_name)
    if indices is None:
        raise _fail(node, f"indices '{indices_name}' must be a constant")
    onnx = m.rank5[data][0] if data in m.rank5 else m.shape(data)
    up = m.rank5[updates][0] if updates in m.rank5 else m.shape(updates)
    rank = len(onnx)
    found = None
    if indices.ndim == rank + 1 and indices.shape[-1] == rank and tuple(indices.shape[:-1]) == up:
        grid = np.stack(list(np.indices(tuple(int(d) for d in up))), -1)
        for axis in range(1, rank):
            others = [i for i in range(rank) if i != axis]
            if any(up[i] != onnx[i] for i in others):
                continue
            start = int(indices.reshape(-1, rank)[0, axis])
            if start + up[axis] <= onnx[axis] and np.array_equal(
                indices, grid + start * np.eye(rank, dtype=np.int64)[axis]
            ):
                found = (axis, start, start + up[axis])
                break
    if found is None:
        raise _fail(
            node,
            f"only a slice assignment data[..., s:e] = updates along one axis is supported "
            f"(indices of shape {list(indices.shape)}, data {list(onnx)}, updates {list(up)})",
        )
    axis, start, end = found
    if data in m.rank5:
        k = m.rank5[data][1]
        if m.rank5.get(updates, (None, None))[1] != k:
            raise _fail(node, "data and updates are rank-5 tensors held with different axes merged")
        engine = rank5.engine_axis(m, data, axis)
        rank5.register(m, node.outputs[0], onnx, k, rank5.roots_of(m, [data, updates]))
    else:
        choice = ENGINE_AXES.get(rank, {}).get(axis) if rank >= 3 else None
        if choice is None:
            raise _fail(
                node, f"a slice assignment along axis {axis} of shape {list(onnx)} is not supported"
            )
        engine = choice
    parts = []
    if start > 0:
        parts.append(
            m.emit(
                node,
                "slice",
                [m.src(data)],
                {"axis": engine, "start": 0, "end": start},
                suffix="_before",
            )
        )
    parts.append(m.src(updates))
    if end < onnx[axis]:
        attrs = {"axis": engine, "start": end, "end": int(onnx[axis])}
        parts.append(m.emit(node, "slice", [m.src(data)], attrs, suffix="_after"))
    if len(parts) == 1:
        m.alias(node.outputs[0], updates)
        return
    m.emit(node, "concat", parts, {"axis": engine} if engine != 1 else None)


def map_div(m: Mapper, node: Node) -> None:
    a, b = node.inputs
    if b not in m.consts or a in m.consts:
        raise _fail(node, "only dividing an activation by a constant is supported")
    divisor = m.consts[b].astype(np.float32)
    if np.any(divisor == 0):
        raise _fail(node, f"the divisor '{b}' holds a zero")
    m.scale_by_constant(node, a, np.float32(1.0) / divisor)


# -- activations -----------------------------------------------------------------------------------
def _activation(m: Mapper, node: Node, kind: str, attrs: dict | None = None, params=None) -> None:
    """An element-wise layer: any layout of its input carries over to its output."""
    source = node.inputs[0]
    m.emit(node, kind, [m.src_elementwise(source)], attrs, params)
    m.same_layout(node.outputs[0], source)


def map_relu(m: Mapper, node: Node) -> None:
    _activation(m, node, "relu")


def map_leaky_relu(m: Mapper, node: Node) -> None:
    _activation(m, node, "leaky_relu", {"alpha": float(node.attrs.get("alpha", 0.01))})


def map_prelu(m: Mapper, node: Node) -> None:
    """PRelu's slope, broadcast against the input as ONNX does, must be one value per channel:
    torch writes it (C, 1, 1), or (1,) for a single shared slope."""
    slope = m.const(node, 1, "slope")
    x = m.shape(node.inputs[0])
    if len(x) < 2 or slope.ndim > len(x):
        raise _fail(node, f"slope of shape {list(slope.shape)} does not fit the input {list(x)}")
    if m.permutation(node.inputs[0]) is not None and not m.channels_last(node.inputs[0]):
        raise _fail(node, "a PRelu on a Transpose'd view needs the channels last")
    padded = (1,) * (len(x) - slope.ndim) + slope.shape
    channels = x[-1] if m.channels_last(node.inputs[0]) else x[1]
    axis = len(x) - 1 if m.channels_last(node.inputs[0]) else 1
    per_channel = all(d == 1 for i, d in enumerate(padded) if i != axis)
    if not per_channel or padded[axis] not in (1, channels):
        raise _fail(node, f"slope of shape {list(slope.shape)} is not one value per channel")
    vector = np.broadcast_to(slope.reshape(-1), (channels,)).astype(np.float32)
    _activation(m, node, "prelu", params={"slope": vector})


def _clip_bounds(m: Mapper, node: Node) -> tuple[float | None, float | None]:
    if m.opset < 11 and len(node.inputs) == 1:
        low, high = node.attrs.get("min"), node.attrs.get("max")
        return (None if low is None else float(low)), (None if high is None else float(high))
    bounds: list[float | None] = []
    for index, what in ((1, "min"), (2, "max")):
        if len(node.inputs) > index and node.inputs[index]:
            value = m.const(node, index, what).reshape(-1)
            if value.size != 1:
                raise _fail(node, f"{what} must be a scalar, got {value.size} values")
            bounds.append(float(value[0]))
        else:
            bounds.append(None)
    return bounds[0], bounds[1]


def map_clip(m: Mapper, node: Node) -> None:
    low, high = _clip_bounds(m, node)
    if low is not None and high is not None and low > high:
        raise _fail(node, f"min {low} is above max {high}")
    if high is not None and math.isinf(high) and high > 0:
        high = None
    if low is not None and math.isinf(low) and low < 0:
        low = None
    if low == 0.0 and high is None:
        _activation(m, node, "relu")
        return
    attrs = {}
    if low is not None:
        attrs["min"] = low
    if high is not None:
        attrs["max"] = high
    _activation(m, node, "clip", attrs)


def map_sigmoid(m: Mapper, node: Node) -> None:
    _activation(m, node, "sigmoid")


def map_tanh(m: Mapper, node: Node) -> None:
    _activation(m, node, "tanh")


def map_silu(m: Mapper, node: Node) -> None:
    """x * Sigmoid(x), fused at import (fuse.py)."""
    _activation(m, node, "silu")


def map_hard_sigmoid(m: Mapper, node: Node) -> None:
    attrs = {
        "alpha": float(node.attrs.get("alpha", 0.2)),
        "beta": float(node.attrs.get("beta", 0.5)),
    }
    _activation(m, node, "hardsigmoid", attrs)


def map_hard_swish(m: Mapper, node: Node) -> None:
    _activation(m, node, "hardswish")


def map_mish(m: Mapper, node: Node) -> None:
    _activation(m, node, "mish")


def map_elu(m: Mapper, node: Node) -> None:
    _activation(m, node, "elu", {"alpha": float(node.attrs.get("alpha", 1.0))})


def map_gelu(m: Mapper, node: Node) -> None:
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise _fail(node, f"approximate '{approximate}' is not 'none' or 'tanh'")
    _activation(m, node, "gelu", {"tanh": int(approximate == "tanh")})


# -- structure -------------------------------------------------------------------------------------
def _channel_axis(m: Mapper, node: Node, axis: int, rank: int) -> None:
    if rank not in (2, 3, 4) or axis % rank != 1:
        raise _fail(
            node, f"only the channel axis (1) of an NCHW tensor is supported, got axis {axis}"
        )


def _slice_layer(
    m: Mapper, node: Node, output: str, start: int, end: int, index: int, axis: int = 1
) -> None:
    suffix = "" if index == 0 else f"_{index}"
    m.emit(
        node,
        "slice",
        [m.src(node.inputs[0])],
        {"axis": axis, "start": int(start), "end": int(end)},
        suffix=suffix,
        output=output,
    )


def _split_sizes(m: Mapper, node: Node, channels: int) -> list[int]:
    """Split's three forms: the ``split`` attribute (opset < 13), the ``split`` input (13+),
    ``num_outputs`` (18+, the last part smaller); else equal parts."""
    count = len(node.outputs)
    if len(node.inputs) > 1 and node.inputs[1]:
        sizes = (
            [int(v) for v in m.consts[node.inputs[1]].reshape(-1)]
            if node.inputs[1] in m.consts
            else None
        )
        if sizes is None:
            raise _fail(node, f"split input '{node.inputs[1]}' must be a constant")
    elif "split" in node.attrs:
        sizes = [int(v) for v in node.attrs["split"]]
    else:
        parts = int(node.attrs.get("num_outputs", count))
        if parts != count:
            raise _fail(node, f"num_outputs {parts} but {count} outputs")
        size = -(-channels // parts)
        sizes = [min(size, channels - i * size) for i in range(parts)]
    if len(sizes) != count or any(v < 0 for v in sizes) or sum(sizes) != channels:
        raise _fail(node, f"split sizes {sizes} do not divide {channels} channels in {count}")
    return sizes


def map_split(m: Mapper, node: Node) -> None:
    source = node.inputs[0]
    if source in m.rank5:
        shape, k = m.rank5[source]
        axis = int(node.attrs.get("axis", 0)) % 5
        engine = rank5.engine_axis(m, source, axis)
        start = 0
        for index, (output, size) in enumerate(
            zip(node.outputs, _split_sizes(m, node, shape[axis]))
        ):
            if output and m.uses.get(output, 0):
                if size == 0:
                    raise _fail(node, f"output '{output}' is empty")
                out = list(shape)
                out[axis] = size
                rank5.register(m, output, tuple(out), k, rank5.roots_of(m, [source]))
                _slice_layer(m, node, output, start, start + size, index, engine)
            start += size
        return
    x = m.shape(node.inputs[0])
    _channel_axis(m, node, int(node.attrs.get("axis", 0)), len(x))
    start = 0
    for index, (output, size) in enumerate(zip(node.outputs, _split_sizes(m, node, x[1]))):
        if output and m.uses.get(output, 0):
            if size == 0:
                raise _fail(node, f"output '{output}' is empty")
            _slice_layer(m, node, output, start, start + size, index)
        start += size


def _slice_args(m: Mapper, node: Node, rank: int) -> list[tuple[int, int, int, int]]:
    """(axis, start, end, step) per sliced axis, from the inputs (opset 10+) or attributes."""
    if len(node.inputs) > 1:

        def values(index, default):
            if len(node.inputs) > index and node.inputs[index]:
                if node.inputs[index] not in m.consts:
                    raise _fail(node, f"input '{node.inputs[index]}' must be a constant")
                return [int(v) for v in m.consts[node.inputs[index]].reshape(-1)]
            return default

        starts, ends = values(1, None), values(2, None)
        axes = values(3, list(range(len(starts))))
        steps = values(4, [1] * len(starts))
    else:
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes = list(node.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise _fail(node, "starts, ends, axes and steps differ in length")
    return [(a % rank, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)]


def _slice5(m: Mapper, node: Node) -> None:
    """A slice of a rank-5 tensor along one axis outside its merged pair, step 1."""
    source = node.inputs[0]
    shape, k = m.rank5[source]
    out, along = list(shape), None
    for axis, s, e, step in _slice_args(m, node, 5):
        size = shape[axis]
        s = max(0, min(size, s + size if s < 0 else s))
        e = max(0, min(size, e + size if e < 0 else e))
        if step == 1 and s == 0 and e == size:
            continue
        if step != 1 or along is not None:
            raise _fail(
                node, "only a slice of one axis with step 1 of a rank-5 tensor is supported"
            )
        if e <= s:
            raise _fail(node, f"the slice [{s}, {e}) of axis {axis} is empty")
        along = (rank5.engine_axis(m, source, axis), s, e)
        out[axis] = e - s
    rank5.register(m, node.outputs[0], tuple(out), k, rank5.roots_of(m, [source]))
    if along is None:
        m.alias(node.outputs[0], source)
        return
    _slice_layer(m, node, node.outputs[0], along[1], along[2], 0, along[0])


def map_slice(m: Mapper, node: Node) -> None:
    if node.inputs[0] in m.rank5:
        _slice5(m, node)
        return
    x = m.shape(node.inputs[0])
    start, end = 0, x[1] if len(x) > 1 else 0
    for axis, s, e, step in _slice_args(m, node, len(x)):
        size = x[axis]
        s = max(0, min(size, s + size if s < 0 else s))
        e = max(0, min(size, e + size if e < 0 else e))
        whole = step == 1 and s == 0 and e == size
        if whole:
            continue
        if axis != 1 or len(x) not in (2, 3, 4) or step != 1:
            raise _fail(
                node,
                f"only a slice of the channel axis with step 1 is supported (axis {axis}, "
                f"step {step} of shape {list(x)})",
            )
        if e <= s:
            raise _fail(node, f"the slice [{s}, {e}) of {size} channels is empty")
        start, end = s, e
    if (start, end) == (0, x[1]):
        m.alias(node.outputs[0], node.inputs[0])
        return
    _slice_layer(m, node, node.outputs[0], start, end, 0)


def map_pad(m: Mapper, node: Node) -> None:
    x = m.shape(node.inputs[0])
    mode = node.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect"):
        raise _fail(node, f"mode '{mode}' is not supported (constant and reflect are)")
    value = 0.0
    if m.opset < 11:
        pads = [int(v) for v in node.attrs.get("pads", [])]
        value = float(node.attrs.get("value", 0.0))
    else:
        pads = [int(v) for v in m.const(node, 1, "pads").reshape(-1)]
        if len(node.inputs) > 2 and node.inputs[2]:
            value = float(m.const(node, 2, "constant_value").reshape(-1)[0])
        if len(node.inputs) > 3 and node.inputs[3]:
            axes = [int(a) % len(x) for a in m.consts[node.inputs[3]].reshape(-1)]
            full = [0] * (2 * len(x))
            for i, a in enumerate(axes):
                full[a], full[a + len(x)] = pads[i], pads[i + len(axes)]
            pads = full
    if len(x) != 4 or len(pads) != 8:
        raise _fail(node, f"pads {pads} do not pad an NCHW tensor")
    if any(p < 0 for p in pads):
        raise _fail(node, f"negative pads {pads} (cropping) are not supported")
    if pads[0] or pads[1] or pads[4] or pads[5]:
        raise _fail(node, f"pads {pads} pad the batch or channel axis; only H and W are supported")
    attrs: dict = {"padding": [pads[2], pads[3], pads[6], pads[7]]}
    if mode == "reflect":
        if pads[2] >= x[2] or pads[6] >= x[2] or pads[3] >= x[3] or pads[7] >= x[3]:
            raise _fail(node, f"reflect pads {pads} must be smaller than the input {list(x)}")
        attrs["reflect"] = 1
    elif value != 0.0:
        attrs["value"] = value
    m.emit(node, "pad", [m.src(node.inputs[0])], attrs)


def _integer_scales(node: Node, x: tuple, scales: list[float]) -> list[int]:
    if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
        raise _fail(node, f"scales {scales} must resize H and W of an NCHW tensor only")
    ints = [int(round(v)) for v in scales[2:]]
    if any(abs(v - i) > 1e-6 * max(1.0, v) or i < 1 for v, i in zip(scales[2:], ints)):
        raise _fail(
            node,
            f"scales {scales[2:]} are not integers >= 1: only integer upsampling is supported",
        )
    return ints


def _resize_scales(m: Mapper, node: Node, x: tuple) -> list[float]:
    """The four scales of a Resize (opset 10: input 1; 11+: scales input 2 or sizes input 3,
    18+: with axes) or an Upsample (opset 7: attribute; 9: input 1)."""
    if node.op_type == "Upsample":
        if "scales" in node.attrs:
            return [float(v) for v in node.attrs["scales"]]
        return [float(v) for v in m.const(node, 1, "scales").reshape(-1)]
    if m.opset < 11:
        return [float(v) for v in m.const(node, 1, "scales").reshape(-1)]
    axes = [int(a) % len(x) for a in node.attrs.get("axes", range(len(x)))]
    if len(node.inputs) > 2 and node.inputs[2] and m.consts.get(node.inputs[2], np.zeros(0)).size:
        given = [float(v) for v in m.const(node, 2, "scales").reshape(-1)]
    elif len(node.inputs) > 3 and node.inputs[3]:
        sizes = (
            [int(v) for v in m.consts[node.inputs[3]].reshape(-1)]
            if node.inputs[3] in m.consts
            else None
        )
        if sizes is None:
            raise _fail(node, f"sizes input '{node.inputs[3]}' must be a constant")
        if node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise _fail(node, "keep_aspect_ratio_policy other than 'stretch' is not supported")
        given = [s / x[a] for s, a in zip(sizes, axes)]
    else:
        raise _fail(node, "has neither scales nor sizes")
    scales = [1.0] * len(x)
    if len(given) != len(axes):
        raise _fail(node, f"{len(given)} scales for {len(axes)} axes")
    for a, v in zip(axes, given):
        scales[a] = v
    return scales


def map_resize(m: Mapper, node: Node) -> None:
    """Resize/Upsample by integer factors: nearest (out[y] = in[y // s], what PyTorch exports as
    asymmetric + floor, and what half_pixel + round_prefer_* gives) or linear (torch's bilinear:
    half_pixel / pytorch_half_pixel is align_corners=0, align_corners is 1)."""
    x = m.shape(node.inputs[0])
    if len(x) != 4:
        raise _fail(node, f"expects an NCHW input, got shape {list(x)}")
    scale = _integer_scales(node, x, _resize_scales(m, node, x))
    mode = node.attrs.get("mode", "nearest")
    if node.attrs.get("antialias", 0):
        raise _fail(node, "antialias=1 is not supported")
    legacy = node.op_type == "Upsample" or m.opset < 11
    coord = (
        "asymmetric" if legacy else node.attrs.get("coordinate_transformation_mode", "half_pixel")
    )
    attrs: dict = {"scale": scale}
    if mode == "nearest":
        rounding = "floor" if legacy else node.attrs.get("nearest_mode", "round_prefer_floor")
        ok = (coord in ("asymmetric", "tf_half_pixel_for_nn") and rounding == "floor") or (
            coord in ("half_pixel", "pytorch_half_pixel")
            and rounding in ("round_prefer_floor", "round_prefer_ceil")
        )
        if not ok and scale != [1, 1]:
            raise _fail(
                node,
                f"nearest resize with coordinate_transformation_mode '{coord}' and nearest_mode "
                f"'{rounding}' does not copy in[y // s] (supported: asymmetric + floor, "
                f"half_pixel + round_prefer_floor/ceil)",
            )
    elif mode in ("linear", "bilinear"):
        if coord in ("half_pixel", "pytorch_half_pixel"):
            attrs.update({"bilinear": 1, "align_corners": 0})
        elif coord == "align_corners":
            attrs.update({"bilinear": 1, "align_corners": 1})
        else:
            raise _fail(
                node,
                f"linear resize with coordinate_transformation_mode '{coord}' is not supported "
                f"(half_pixel, pytorch_half_pixel and align_corners are)",
            )
    else:
        raise _fail(node, f"mode '{mode}' is not supported (nearest and linear are)")
    if scale == [1, 1]:
        m.alias(node.outputs[0], node.inputs[0])
        return
    m.emit(node, "upsample", [m.src(node.inputs[0])], attrs)


def map_channel_shuffle(m: Mapper, node: Node) -> None:
    """Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W), fused at
    import (fuse.py)."""
    m.emit(node, "channel_shuffle", [m.src(node.inputs[0])], {"groups": int(node.attrs["groups"])})


def map_conv_transpose(m: Mapper, node: Node) -> None:
    weight = m.const(node, 1, "weight")
    x = m.shape(node.inputs[0])
    if weight.ndim != 4 or len(x) != 4:
        raise _fail(
            node, f"only 2-D transposed convolution is supported (weight {list(weight.shape)})"
        )
    kernel = list(node.attrs.get("kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        raise _fail(node, f"kernel_shape {kernel} disagrees with the weight {list(weight.shape)}")
    stride = [int(v) for v in node.attrs.get("strides", [1, 1])]
    dilation = [int(v) for v in node.attrs.get("dilations", [1, 1])]
    groups = int(node.attrs.get("group", 1))
    out_pad = [int(v) for v in node.attrs.get("output_padding", [0, 0])]
    out = m.shape(node.outputs[0])
    # Padding: given, or the total that reaches output_shape / auto_pad's size (split as ONNX does).
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if "output_shape" in node.attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        padding = [0, 0, 0, 0]
        for i in range(2):
            full = (x[2 + i] - 1) * stride[i] + out_pad[i] + (kernel[i] - 1) * dilation[i] + 1
            total = full - out[2 + i]
            if total < 0:
                raise _fail(node, f"output_shape {list(out[2:])} is larger than the full output")
            small, large = total // 2, total - total // 2
            # ONNX: SAME_UPPER puts the odd pixel at the end, anything else at the beginning.
            upper = auto_pad == "SAME_UPPER"
            padding[i], padding[2 + i] = (small, large) if upper else (large, small)
    elif auto_pad in ("NOTSET", "", "VALID"):
        padding = [int(v) for v in node.attrs.get("pads", [0, 0, 0, 0])]
    else:
        raise _fail(node, f"unknown auto_pad '{auto_pad}'")
    attrs = {
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "output_padding": out_pad,
        "dilation": dilation,
        "groups": groups,
    }
    params = {"weight": weight}
    if len(node.inputs) > 2 and node.inputs[2]:
        params["bias"] = m.const(node, 2, "bias").reshape(-1)
    m.emit(node, "conv_transpose2d", [m.src(node.inputs[0])], attrs, params)


def map_layer_norm(m: Mapper, node: Node) -> None:
    """LayerNormalization over the channels: the last axis of a channels-last view (ConvNeXt's
    Transpose (0, 2, 3, 1) -> LayerNormalization -> Transpose (0, 3, 1, 2)), or axis 1 of an
    (N, C, 1, 1) tensor."""
    _only_first_output(m, node)
    source = node.inputs[0]
    x = m.shape(source)
    axis = int(node.attrs.get("axis", -1)) % len(x)
    channels_last = m.channels_last(source) and axis == len(x) - 1
    if not (
        channels_last
        or (len(x) == 4 and axis == 1 and x[2:] == (1, 1) and not m.layout.get(source))
    ):
        raise _fail(
            node,
            f"only a normalisation over the channels is supported (axis {axis} of shape "
            f"{list(x)}{', channels last' if m.channels_last(source) else ''})",
        )
    channels = x[-1] if channels_last else x[1]
    scale = m.const(node, 1, "scale").reshape(-1)
    params = {"scale": np.broadcast_to(scale, (channels,))}
    if len(node.inputs) > 2 and node.inputs[2]:
        params["bias"] = np.broadcast_to(m.const(node, 2, "bias").reshape(-1), (channels,))
    _activation(m, node, "layer_norm", {"epsilon": float(node.attrs.get("epsilon", 1e-5))}, params)


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
    "Pow": map_pow,
    "Expand": map_expand,
    "ScatterND": map_scatter_nd,
    "LeakyRelu": map_leaky_relu,
    "PRelu": map_prelu,
    "Clip": map_clip,
    "Sigmoid": map_sigmoid,
    "Tanh": map_tanh,
    "HardSigmoid": map_hard_sigmoid,
    "HardSwish": map_hard_swish,
    "Mish": map_mish,
    "Elu": map_elu,
    "Gelu": map_gelu,
    "Resize": map_resize,
    "Upsample": map_resize,
    "Split": map_split,
    "Slice": map_slice,
    "Pad": map_pad,
    "ConvTranspose": map_conv_transpose,
    "LayerNormalization": map_layer_norm,
}

# Nodes fuse.py makes from a pattern of ONNX nodes (their domain is FUSED_DOMAIN): SiLU as
# x * Sigmoid(x), a channel shuffle as Reshape -> Transpose -> Reshape.
FUSED: dict[str, Callable[[Mapper, Node], None]] = {
    "SiLU": map_silu,
    "ChannelShuffle": map_channel_shuffle,
}
