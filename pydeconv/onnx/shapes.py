"""Static shape inference for the ONNX operators the importer meets.

Shapes are tracked from the graph input's shape (a symbolic batch dimension counts as 1) so that
exporter-generated shape arithmetic (Shape -> Gather -> Concat -> Reshape) folds to constants.
An operator this module does not know leaves its outputs without a shape; that only matters if a
later Shape node needs it, and such a graph is then reported as unsupported by the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import GraphError
from .model import Node

Shape = tuple[int, ...]


def conv_padding(
    node: Node, in_hw: Shape, kernel: Shape, stride: Shape, dilation: Shape
) -> list[int]:
    """ONNX pads/auto_pad -> [top, left, bottom, right].

    ONNX orders pads x1_begin, x2_begin, x1_end, x2_end, which for 2-D is exactly t, l, b, r."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("", "NOTSET"):
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise GraphError(f"{node.op_type} node '{node.label()}': pads {pads} is not 2-D")
        return pads
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, stride, dilation):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            # SAME_UPPER puts the odd extra pixel at the end, SAME_LOWER at the beginning.
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
        return begin + end
    raise GraphError(f"{node.op_type} node '{node.label()}': unknown auto_pad '{auto_pad}'")


def window_out(size: int, pad_begin: int, pad_end: int, k: int, s: int, d: int, ceil: bool) -> int:
    """FORMAT.md output size; with ceil_mode a window starting in the end padding is dropped."""
    span = size + pad_begin + pad_end - d * (k - 1) - 1
    if span < 0:
        raise GraphError(f"a {k}x window does not fit an input of size {size}")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + pad_begin:
        out -= 1
    return out


def _windowed(node: Node, shape: Shape, kernel: Shape, ceil: bool) -> Shape:
    stride = tuple(node.attrs.get("strides", [1, 1]))
    dilation = tuple(node.attrs.get("dilations", [1, 1]))
    pads = conv_padding(node, shape[2:], kernel, stride, dilation)
    oh = window_out(shape[2], pads[0], pads[2], kernel[0], stride[0], dilation[0], ceil)
    ow = window_out(shape[3], pads[1], pads[3], kernel[1], stride[1], dilation[1], ceil)
    return oh, ow


def _conv(node, shapes, consts):
    x, w = shapes[0], shapes[1]
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        return None
    return (x[0], w[0]) + _windowed(node, x, tuple(w[2:]), False)


def _pool(node, shapes, consts):
    x = shapes[0]
    if x is None or len(x) != 4 or "kernel_shape" not in node.attrs:
        return None
    ceil = bool(node.attrs.get("ceil_mode", 0))
    return x[:2] + _windowed(node, x, tuple(node.attrs["kernel_shape"]), ceil)


def _global_pool(node, shapes, consts):
    x = shapes[0]
    return None if x is None else x[:2] + (1,) * (len(x) - 2)


def _same(node, shapes, consts):
    return shapes[0]


def _broadcast(node, shapes, consts):
    if any(s is None for s in shapes):
        return None
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise GraphError(
            f"{node.op_type} node '{node.label()}': shapes {shapes} do not broadcast"
        ) from None


def _expand(node, shapes, consts):
    """Expand: the input broadcast against a constant shape (bidirectionally, as ONNX does)."""
    if shapes[0] is None or len(node.inputs) < 2 or node.inputs[1] not in consts:
        return None
    target = tuple(int(d) for d in consts[node.inputs[1]].reshape(-1))
    try:
        return tuple(np.broadcast_shapes(shapes[0], target))
    except ValueError:
        raise GraphError(
            f"Expand node '{node.label()}': {list(shapes[0])} does not broadcast to {list(target)}"
        ) from None


def _gemm(node, shapes, consts):
    a, b = shapes[0], shapes[1]
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    rows = a[1] if node.attrs.get("transA", 0) else a[0]
    return rows, (b[0] if node.attrs.get("transB", 0) else b[1])


def _matmul(node, shapes, consts):
    a, b = shapes[0], shapes[1]
    if a is None or b is None or len(b) != 2 or len(a) < 1:
        return None
    return tuple(a[:-1]) + (b[1],)


def _flatten(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    axis = node.attrs.get("axis", 1)
    axis = axis + len(x) if axis < 0 else axis
    return math.prod(x[:axis]), math.prod(x[axis:])


def reshape_target(shape: Shape, target: list[int], allowzero: bool = False) -> Shape:
    """Resolve an ONNX Reshape target (0 copies the input dimension, -1 is inferred)."""
    out = [shape[i] if (t == 0 and not allowzero) else int(t) for i, t in enumerate(target)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise GraphError(f"Reshape target {target} is invalid")
    total = math.prod(shape)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            raise GraphError(f"cannot reshape {shape} to {target}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise GraphError(f"cannot reshape {shape} to {target}")
    return tuple(out)


def _reshape(node, shapes, consts):
    x = shapes[0]
    target = consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if x is None or target is None:
        return None
    try:
        return reshape_target(
            x, [int(v) for v in target.reshape(-1)], bool(node.attrs.get("allowzero", 0))
        )
    except GraphError as exc:  # name the node
        raise GraphError(f"Reshape node '{node.label()}': {exc}") from None


def _transpose(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    perm = node.attrs.get("perm", list(range(len(x)))[::-1])
    return tuple(x[p] for p in perm)


def _concat(node, shapes, consts):
    if any(s is None for s in shapes):
        return None
    axis = node.attrs.get("axis", 0) % len(shapes[0])
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def axes_of(node: Node, consts: dict, rank: int) -> list[int] | None:
    """Axes from the attribute (old opsets) or the second input (opset 13+; ReduceMean 18+),
    made non-negative for a tensor of the given rank; None when absent."""
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in consts:
            raise GraphError(f"{node.op_type} node '{node.label()}': axes input is not a constant")
        axes = [int(a) for a in consts[node.inputs[1]].reshape(-1)]
    elif "axes" in node.attrs:
        axes = list(node.attrs["axes"])
    else:
        return None
    return sorted(a % rank for a in axes)


def _reduce(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    axes = axes_of(node, consts, len(x))
    if axes is None:
        axes = [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(len(x)))
    if node.attrs.get("keepdims", 1):
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def _squeeze(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    axes = axes_of(node, consts, len(x))
    return tuple(d for i, d in enumerate(x) if not (d == 1 if axes is None else i in axes))


def _unsqueeze(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    count = len(axes_of(node, consts, 1) or [])  # normalising needs the output rank: count first
    axes = axes_of(node, consts, len(x) + count) or []
    out = list(x)
    for a in axes:
        out.insert(a, 1)
    return tuple(out)


def _view(shape: Shape) -> np.ndarray:
    """A zero-stride array of ``shape``: NumPy computes a slice's shape without allocating."""
    return np.broadcast_to(np.zeros((), np.bool_), tuple(shape))


def _const_ints(node, consts, index) -> list[int] | None:
    if len(node.inputs) <= index or not node.inputs[index]:
        return None
    value = consts.get(node.inputs[index])
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _slice_shape(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    if len(node.inputs) > 1:
        starts, ends = _const_ints(node, consts, 1), _const_ints(node, consts, 2)
        if starts is None or ends is None:
            return None
        axes = _const_ints(node, consts, 3) or list(range(len(starts)))
        steps = _const_ints(node, consts, 4) or [1] * len(starts)
    else:
        starts, ends = node.attrs.get("starts"), node.attrs.get("ends")
        if starts is None or ends is None:
            return None
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    index = [slice(None)] * len(x)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise GraphError(f"Slice node '{node.label()}': step 0")
        index[axis % len(x)] = slice(start, end, step)
    return _view(x)[tuple(index)].shape


def _split(node, shapes, consts):
    """Every output's shape (a list: Split has several)."""
    x = shapes[0]
    if x is None:
        return None
    axis = node.attrs.get("axis", 0) % len(x)
    count = len(node.outputs)
    sizes = _const_ints(node, consts, 1) if len(node.inputs) > 1 and node.inputs[1] else None
    if sizes is None and len(node.inputs) > 1 and node.inputs[1]:
        return None
    if sizes is None:
        sizes = node.attrs.get("split")
    if sizes is None:
        parts = node.attrs.get("num_outputs", count)
        size = -(-x[axis] // parts)
        sizes = [max(0, min(size, x[axis] - i * size)) for i in range(parts)]
    if len(sizes) != count or sum(sizes) != x[axis]:
        raise GraphError(
            f"Split node '{node.label()}': sizes {list(sizes)} do not split {x[axis]} in {count}"
        )
    return [tuple(x[:axis]) + (int(v),) + tuple(x[axis + 1 :]) for v in sizes]


def _pad(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    pads = node.attrs.get("pads") if len(node.inputs) < 2 else _const_ints(node, consts, 1)
    if pads is None:
        return None
    axes = _const_ints(node, consts, 3) if len(node.inputs) > 3 else None
    axes = [a % len(x) for a in axes] if axes else list(range(len(x)))
    if len(pads) != 2 * len(axes):
        raise GraphError(f"Pad node '{node.label()}': {len(pads)} pads for {len(axes)} axes")
    out = list(x)
    for i, a in enumerate(axes):
        out[a] += pads[i] + pads[i + len(axes)]
    return tuple(out)


def _resize(node, shapes, consts):
    x = shapes[0]
    if x is None:
        return None
    if node.op_type == "Upsample" and "scales" in node.attrs:
        scales = list(node.attrs["scales"])
    elif node.op_type == "Upsample" or len(node.inputs) == 2:
        given = consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if given is None:
            return None
        scales = [float(v) for v in given.reshape(-1)]
    else:
        axes = [a % len(x) for a in node.attrs.get("axes", range(len(x)))]
        given = consts.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if given is not None and given.size:
            scales = [1.0] * len(x)
            for a, v in zip(axes, given.reshape(-1)):
                scales[a] = float(v)
        else:
            sizes = _const_ints(node, consts, 3)
            if sizes is None:
                return None
            out = list(x)
            for a, v in zip(axes, sizes):
                out[a] = v
            return tuple(out)
    if len(scales) != len(x):
        raise GraphError(
            f"{node.op_type} node '{node.label()}': {len(scales)} scales, rank {len(x)}"
        )
    return tuple(int(math.floor(d * s)) for d, s in zip(x, scales))


def _conv_transpose(node, shapes, consts):
    x, w = shapes[0], shapes[1]
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        return None
    groups = node.attrs.get("group", 1)
    out = [x[0], w[1] * groups]
    if "output_shape" in node.attrs:
        return tuple(out + [int(v) for v in node.attrs["output_shape"][-2:]])
    stride = node.attrs.get("strides", [1, 1])
    dilation = node.attrs.get("dilations", [1, 1])
    out_pad = node.attrs.get("output_padding", [0, 0])
    pads = node.attrs.get("pads", [0, 0, 0, 0])
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    for i in range(2):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(x[2 + i] * stride[i])
        else:
            full = (x[2 + i] - 1) * stride[i] + dilation[i] * (w[2 + i] - 1) + out_pad[i] + 1
            out.append(full - (0 if auto_pad == "VALID" else pads[i] + pads[i + 2]))
    return tuple(out)


def _gather(node, shapes, consts):
    x, index = shapes[0], shapes[1]
    if x is None or index is None:
        return None
    axis = node.attrs.get("axis", 0) % len(x)
    return tuple(x[:axis]) + tuple(index) + tuple(x[axis + 1 :])


_RULES: dict[str, Callable] = {
    "Gather": _gather,
    "Slice": _slice_shape,
    "Split": _split,
    "Pad": _pad,
    "Resize": _resize,
    "Upsample": _resize,
    "ConvTranspose": _conv_transpose,
    "PRelu": _broadcast,
    "Conv": _conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concat": _concat,
    "ReduceMean": _reduce,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Add": _broadcast,
    "Sub": _broadcast,
    "Mul": _broadcast,
    "Div": _broadcast,
    "Pow": _broadcast,
    "Expand": _expand,
    "ScatterND": lambda node, shapes, consts: shapes[0],
}
for _op in (
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "LRN",
    "BatchNormalization",
    "Dropout",
    "Identity",
    "Softmax",
    "LogSoftmax",
    "Cast",
    "PRelu",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Elu",
    "Gelu",
    "Erf",
    "Softplus",
    "Exp",
    "Log",
    "Neg",
    "Sqrt",
    "Abs",
    "Reciprocal",
    "LayerNormalization",
    "InstanceNormalization",
):
    _RULES[_op] = _same


def infer_shape(
    node: Node, shapes: dict[str, Shape], consts: dict[str, np.ndarray]
) -> Shape | list[Shape] | None:
    """The shape of the node's first output (a list of every output's for Split), or None when it
    cannot be known statically."""
    rule = _RULES.get(node.op_type)
    if rule is None or not node.inputs:
        return None
    ins = [consts[n].shape if n in consts else shapes.get(n) for n in node.inputs if n]
    return rule(node, ins, consts)
