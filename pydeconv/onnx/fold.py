"""Constant folding with NumPy, before operators are mapped to layers.

Exporters compute reshape targets at run time (Shape -> Gather -> Unsqueeze -> Concat -> Reshape)
and store some weights behind Cast/Transpose/arithmetic nodes. Every node whose inputs are all
constants (or, for Shape, whose input shape is statically known) is evaluated here and removed, so
the mapping only sees operators on activations. Floating constants are float32, integer and bool
ones int64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import GraphError, PydeconvError
from ..limits import get_limits, limit_str
from .model import BFLOAT16, BOOL, DOUBLE, FLOAT, FLOAT16, Node
from .shapes import Shape, axes_of, infer_shape, reshape_target


@dataclass
class Folded:
    nodes: list[Node]  # what is left to map, in order
    consts: dict[str, np.ndarray]  # every constant tensor (initializers + folded)
    shapes: dict[str, Shape]  # static shapes of the non-constant tensors (batch 1 if symbolic)


def normalise(value) -> np.ndarray:
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    return array.astype(np.int64)


def _constant(node: Node, ins: list) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = node.attrs[key]
            return np.asarray(value, dtype=np.float32 if "float" in key else None)
    raise GraphError(f"Constant node '{node.label()}' has no supported value attribute")


def _gather(node: Node, ins: list) -> np.ndarray:
    data, indices = ins
    return np.take(data, indices, axis=node.attrs.get("axis", 0))


def _unsqueeze(node: Node, ins: list) -> np.ndarray:
    data = ins[0]
    count = len(_axes(node, ins, 1))
    return data.reshape(reshape_for_unsqueeze(data.shape, _axes(node, ins, data.ndim + count)))


def reshape_for_unsqueeze(shape, axes) -> tuple:
    out = list(shape)
    for a in sorted(axes):
        out.insert(a, 1)
    return tuple(out)


def _squeeze(node: Node, ins: list) -> np.ndarray:
    axes = _axes(node, ins, ins[0].ndim, required=False)
    return np.squeeze(ins[0], axis=None if axes is None else tuple(axes))


def _axes(node: Node, ins: list, rank: int, required: bool = True):
    consts = {node.inputs[1]: ins[1]} if len(ins) > 1 and ins[1] is not None else {}
    axes = axes_of(node, consts, rank)
    if axes is None and required:
        raise GraphError(f"{node.op_type} node '{node.label()}' has no axes")
    return axes


def _cast(node: Node, ins: list) -> np.ndarray:
    to = node.attrs.get("to", FLOAT)
    if to in (FLOAT, FLOAT16, DOUBLE, BFLOAT16):
        return ins[0].astype(np.float32)
    if to == BOOL:
        return (ins[0] != 0).astype(np.int64)
    return ins[0].astype(np.int64)  # float -> int truncates toward zero, as ONNX does


def _slice(node: Node, ins: list) -> np.ndarray:
    data = ins[0]
    if len(ins) > 1:  # opset 10+: starts, ends, axes, steps are inputs
        starts, ends = ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), np.int64)
    else:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis) % data.ndim] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


def _reshape(node: Node, ins: list) -> np.ndarray:
    target = reshape_target(
        ins[0].shape, [int(v) for v in ins[1].reshape(-1)], bool(node.attrs.get("allowzero", 0))
    )
    return ins[0].reshape(target)


def _div(node: Node, ins: list) -> np.ndarray:
    a, b = ins
    if a.dtype.kind == "i" and b.dtype.kind == "i":
        if np.any(b == 0):
            raise GraphError(f"Div node '{node.label()}' divides an integer constant by zero")
        quotient = np.abs(a) // np.abs(b)  # ONNX integer division truncates toward zero
        return np.where((a < 0) != (b < 0), -quotient, quotient)
    return a / b


def _reduce_prod(node: Node, ins: list) -> np.ndarray:
    data = ins[0]
    if len(ins) > 1 and ins[1] is not None:
        axes = tuple(int(a) for a in ins[1].reshape(-1))
    else:
        axes = tuple(node.attrs.get("axes", range(data.ndim)))
    return np.prod(data, axis=axes, keepdims=bool(node.attrs.get("keepdims", 1)))


def _constant_of_shape(node: Node, ins: list) -> np.ndarray:
    value = node.attrs.get("value", np.zeros(1, np.float32))
    return np.full([int(d) for d in ins[0].reshape(-1)], value.reshape(-1)[0], dtype=value.dtype)


FOLDERS: dict[str, Callable[[Node, list], np.ndarray]] = {
    "Constant": _constant,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda node, ins: np.concatenate(ins, axis=node.attrs.get("axis", 0)),
    "Cast": _cast,
    "Slice": _slice,
    "Reshape": _reshape,
    "Flatten": lambda node, ins: _reshape(
        node, [ins[0], np.array([int(np.prod(ins[0].shape[: node.attrs.get("axis", 1)])), -1])]
    ),
    "Transpose": lambda node, ins: np.transpose(ins[0], node.attrs.get("perm")),
    "Identity": lambda node, ins: ins[0],
    "ConstantOfShape": _constant_of_shape,
    "Add": lambda node, ins: ins[0] + ins[1],
    "Sub": lambda node, ins: ins[0] - ins[1],
    "Mul": lambda node, ins: ins[0] * ins[1],
    "Div": _div,
    "Neg": lambda node, ins: -ins[0],
    "Sqrt": lambda node, ins: np.sqrt(ins[0]),
    "Pow": lambda node, ins: np.power(ins[0], ins[1]),
    "Floor": lambda node, ins: np.floor(ins[0]),
    "Ceil": lambda node, ins: np.ceil(ins[0]),
    "Abs": lambda node, ins: np.abs(ins[0]),
    "Min": lambda node, ins: np.minimum.reduce(ins),
    "Max": lambda node, ins: np.maximum.reduce(ins),
    "Equal": lambda node, ins: (ins[0] == ins[1]).astype(np.int64),
    "Where": lambda node, ins: np.where(ins[0] != 0, ins[1], ins[2]),
    "ReduceProd": _reduce_prod,
    "Expand": lambda node, ins: np.array(
        np.broadcast_to(ins[0], np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1])))
    ),
}


def _shape_of(node: Node, shape: Shape) -> np.ndarray:
    # Opset 15 added start/end attributes that slice the shape.
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", None)
    return np.array(shape[start:end], dtype=np.int64)


def fold_constants(
    nodes: list[Node], initializers: dict[str, np.ndarray], input_name: str, input_shape: Shape
) -> Folded:
    """Evaluate constant subgraphs; track static shapes of everything else from the input's."""
    _check_input(input_name, input_shape)
    consts = {name: normalise(value) for name, value in initializers.items()}
    shapes: dict[str, Shape] = {input_name: tuple(input_shape)}
    remaining = []
    for node in nodes:
        ins = [consts.get(name) if name else None for name in node.inputs]
        present = [name for name in node.inputs if name]
        foldable = node.op_type in FOLDERS and all(name in consts for name in present)
        if node.op_type == "Shape" and present and (present[0] in consts or present[0] in shapes):
            shape = consts[present[0]].shape if present[0] in consts else shapes[present[0]]
            consts[node.outputs[0]] = _shape_of(node, shape)
        elif node.op_type == "Size" and present and present[0] in shapes:
            consts[node.outputs[0]] = np.array(int(np.prod(shapes[present[0]])), dtype=np.int64)
        elif foldable and not (node.op_type == "Constant" and node.inputs):
            with node_errors(node, "cannot evaluate it on constants"):
                _check_result_size(node, ins)
                value = FOLDERS[node.op_type](node, ins)
            consts[node.outputs[0]] = normalise(value)
        else:
            remaining.append(node)
            with node_errors(node, "cannot infer its output shape"):
                inferred = infer_shape(node, shapes, consts)
                if isinstance(inferred, list):  # Split: one shape per output
                    for out, shape in zip(node.outputs, inferred):
                        if out:
                            shapes[out] = tuple(int(d) for d in shape)
                elif inferred is not None and node.outputs:
                    shapes[node.outputs[0]] = tuple(int(d) for d in inferred)
    return Folded(remaining, consts, shapes)


@contextmanager
def node_errors(node: Node, doing: str) -> Iterator[None]:
    """Attributes and inputs of the wrong type, length or value (a list where an int is due, a
    zero stride, a missing input) surface in NumPy or in arithmetic as TypeError, IndexError,
    ZeroDivisionError...: each becomes a GraphError naming the node, its operator and the cause."""
    try:
        yield
    except PydeconvError:  # a ValueError too: keep its own message
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, MemoryError) as exc:
        raise GraphError(
            f"{node.op_type} node '{node.label()}': {doing} ({type(exc).__name__}: {exc})"
        ) from None


def _check_input(name: str, shape: Shape) -> None:
    """The input's declared dims against the limits, before any shape is computed from them."""
    limits = get_limits()
    if any(d > limits.max_dim for d in shape):
        raise GraphError(
            f"input '{name}' has shape {list(shape)}: a dimension is past {limit_str('max_dim')}"
        )
    if math.prod(shape) * 4 > limits.max_tensor_bytes:  # its pixels: the C++ reader, at build
        raise GraphError(
            f"input '{name}' has shape {list(shape)}: past {limit_str('max_tensor_bytes')}"
        )


def _check_result_size(node: Node, ins: list) -> None:
    """Folders that build a tensor from a declared shape (ConstantOfShape) or by broadcasting two
    constants: the result's size against the limits, before NumPy allocates it."""
    if node.op_type == "ConstantOfShape" and ins and ins[0] is not None:
        dims = [int(d) for d in np.asarray(ins[0]).reshape(-1)]
    elif (
        node.op_type in ("Add", "Sub", "Mul", "Div")
        and len(ins) == 2
        and all(i is not None for i in ins)
    ):
        dims = list(np.broadcast_shapes(np.shape(ins[0]), np.shape(ins[1])))
    elif node.op_type == "Expand" and len(ins) == 2 and all(i is not None for i in ins):
        target = tuple(int(d) for d in np.asarray(ins[1]).reshape(-1))
        if any(d < 0 for d in target):
            raise GraphError(f"Expand node '{node.label()}': negative dims {list(target)}")
        try:
            dims = list(np.broadcast_shapes(np.shape(ins[0]), target))
        except ValueError:
            raise GraphError(
                f"Expand node '{node.label()}': {list(np.shape(ins[0]))} does not broadcast to "
                f"{list(target)}"
            ) from None
    else:
        return
    limits = get_limits()
    if (
        any(d < 0 or d > limits.max_dim for d in dims)
        or math.prod(dims) * 8 > limits.max_tensor_bytes
    ):
        raise GraphError(
            f"{node.op_type} node '{node.label()}': a constant of shape {dims} is past "
            f"{limit_str('max_dim')} or {limit_str('max_tensor_bytes')}"
        )
