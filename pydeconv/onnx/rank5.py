"""Rank-5 ONNX tensors that keep the batch first, as pydeconv's rank 4 (docs/FORMAT.md).

A rank-5 tensor ``(N, d1, d2, d3, d4)`` is held as the rank-4 tensor that merges two adjacent axes
``dk, dk+1`` (``k`` in 1..3) into one: merging adjacent axes keeps every element in its row-major
place, so a Reshape into or out of rank 5 is a ``reshape`` layer (or nothing). ``k`` is chosen
where the tensor is made (a Reshape) so that the Transposes reading it keep the merged pair
together, in order (YOLOv5's ``(N, 3, 5 + nc, H, W)`` merges ``H, W``: its permute
``(0, 1, 3, 4, 2)`` is the rank-4 ``transpose`` ``[0, 2, 1]`` to ``(N, 3, H*W, 5 + nc)``). Axes
outside the pair become pydeconv's axes 1..3 (C, H, W), so Split, Slice and Concat along them are
``slice`` and ``concat`` layers along that axis; element-wise operators keep ``k``, and their
constants are merged the same way (YOLOv5's ``grid`` and ``anchor_grid``, ``(1, 3, H, W, 2)``,
become ``affine`` tensors ``(1, 3, H*W, 2)``).

``Mapper.rank5`` holds, per rank-5 ONNX tensor, its ONNX shape and ``k``; ``Mapper.shapes`` holds
the merged rank-4 shape, which is what the other operators' mappings see. A rank-5 tensor read by
any other operator, a Transpose that splits the pair or moves the batch, or an axis inside the pair
is a GraphError (``outputs="auto"`` then cuts before the tensor's rank-5 view: ``Mapper.roots``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .mapper import Mapper
from .model import Node

# Operators that map rank-5 tensors themselves (mapping.py), and the element-wise ones this
# module maps through the rank-4 view.
OWN = ("Reshape", "Transpose", "Split", "Slice", "Concat", "ScatterND")
ELEMENTWISE = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "Tanh",
    "Clip",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Elu",
    "Gelu",
    "SiLU",
    "Identity",
    "Dropout",
    "Cast",
    "Expand",
)
_BINARY = ("Add", "Sub", "Mul", "Div")


def merged(shape: tuple, k: int) -> tuple[int, ...]:
    """The rank-4 shape of a rank-5 ``shape`` with axes ``k`` and ``k + 1`` merged."""
    s = [int(d) for d in shape]
    return tuple(s[:k] + [s[k] * s[k + 1]] + s[k + 2 :])


def engine_axis(m: Mapper, tensor: str, axis: int) -> int:
    """pydeconv's axis (1 C, 2 H, 3 W) of ONNX axis ``axis`` of a rank-5 tensor."""
    _, k = m.rank5[tensor]
    axis %= 5
    if axis == 0 or axis in (k, k + 1):
        where = "the batch axis" if axis == 0 else f"one of the axes {k}, {k + 1} merged into one"
        raise m.fail(f"axis {axis} of the rank-5 tensor '{tensor}' is {where} (docs/FORMAT.md)")
    return axis if axis < k else axis - 1


def register(m: Mapper, tensor: str, shape: tuple, k: int, roots: list[str]) -> None:
    """``tensor`` is a rank-5 ONNX tensor of ``shape``, held with axes ``k``, ``k + 1`` merged."""
    m.rank5[tensor] = (tuple(int(d) for d in shape), k)
    m.shapes[tensor] = merged(shape, k)
    m.roots[tensor] = list(dict.fromkeys(roots))


def roots_of(m: Mapper, tensors: list[str]) -> list[str]:
    """The rank-4 tensors the rank-5 ones were reshaped from (where ``outputs="auto"`` cuts)."""
    out: list[str] = []
    for t in tensors:
        out.extend(m.roots.get(t, [t]) if t in m.rank5 else [t])
    return out


def choose_merge(m: Mapper, tensor: str, shape: tuple) -> int:
    """The pair of axes to merge for a rank-5 tensor about to be made: the last pair (H, W of an
    (N, A, B, H, W) view) unless a Transpose reading it would split that pair."""
    readers = m.readers.get(tensor, [])
    for k in (3, 2, 1):
        ok = True
        for node in readers:
            if node.op_type == "Transpose":
                perm = [int(p) for p in node.attrs.get("perm", range(4, -1, -1))]
                ok = ok and any(perm[j] == k and perm[j + 1] == k + 1 for j in range(1, 4))
            elif node.op_type in ("Split", "Concat"):
                axis = int(node.attrs.get("axis", 0)) % 5
                ok = ok and axis not in (k, k + 1)
        if ok:
            return k
    return 3


def transpose(m: Mapper, node: Node, perm: list[int]) -> None:
    source = node.inputs[0]
    shape, k = m.rank5[source]
    if sorted(perm) != [0, 1, 2, 3, 4] or perm[0] != 0:
        raise m.fail(f"perm {perm} of a rank-5 tensor must keep the batch axis first")
    starts = [j for j in range(1, 4) if perm[j] == k and perm[j + 1] == k + 1]
    if not starts:
        raise m.fail(
            f"perm {perm} separates the axes {k}, {k + 1} that pydeconv holds merged in the "
            f"rank-5 tensor '{source}' of shape {list(shape)} (docs/FORMAT.md)"
        )
    j = starts[0]

    def group(axis: int) -> int:  # the per-sample pydeconv axis of an ONNX axis
        return axis - 1 if axis < k else (k - 1 if axis <= k + 1 else axis - 2)

    order = [perm[i] for i in range(1, 5) if i != j + 1]
    sample = [group(a) for a in order]
    out_shape = tuple(shape[p] for p in perm)
    register(m, node.outputs[0], out_shape, j, roots_of(m, [source]))
    if sample == [0, 1, 2]:
        m.alias(node.outputs[0], source)
        return
    m.emit(node, "transpose", [m.src(source)], {"perm": sample})


def _merge_constant(c: np.ndarray, shape: tuple, k: int) -> np.ndarray:
    """A constant broadcast against a rank-5 activation of ``shape``, with the same axes merged."""
    c = np.asarray(c)
    if c.ndim > 5:
        return c
    c = c.reshape((1,) * (5 - c.ndim) + c.shape)
    if c.shape[k] == 1 and c.shape[k + 1] == 1:
        return c.reshape(c.shape[:k] + (1,) + c.shape[k + 2 :])
    full = tuple(c.shape[:k]) + (shape[k], shape[k + 1]) + tuple(c.shape[k + 2 :])
    try:
        c = np.broadcast_to(c, full)
    except ValueError:
        return c  # does not broadcast: the mapping names the shapes
    return np.ascontiguousarray(c).reshape(merged(full, k))


def apply(handler: Callable[[Mapper, Node], None], m: Mapper, node: Node) -> None:
    """Map ``node``; one that reads rank-5 tensors goes through their rank-4 view."""
    reads = [i for i in node.inputs if i and i in m.rank5]
    if not reads or node.op_type in OWN:
        handler(m, node)
        return
    first = reads[0]
    shape, k = m.rank5[first]
    if node.op_type not in ELEMENTWISE or node.domain not in ("", "ai.onnx", "pydeconv.fused"):
        raise m.fail(
            f"reads the rank-5 tensor '{first}' of shape {list(shape)}: rank-5 tensors map only "
            f"through Reshape, Transpose, Split, Slice, Concat, ScatterND and element-wise "
            f"operators (docs/FORMAT.md)"
        )
    activations = [i for i in node.inputs if i and i not in m.consts]
    for name in activations:
        if name not in m.rank5:
            raise m.fail(
                f"combines the rank-5 tensor '{first}' with '{name}' of shape "
                f"{list(m.shape(name))}: only rank-5 tensors of one shape combine"
            )
        if m.rank5[name] != (shape, k):
            raise m.fail(
                f"combines rank-5 tensors of shapes {list(shape)} and {list(m.rank5[name][0])} "
                f"held with different axes merged"
            )
    inputs = list(node.inputs)
    if node.op_type in _BINARY:
        for i, name in enumerate(inputs):
            if name in m.consts:
                key = f"{name}@rank5:{k}:{'x'.join(map(str, shape))}"
                if key not in m.consts:
                    m.consts[key] = _merge_constant(m.consts[name], shape, k)
                inputs[i] = key
    for out in node.outputs:
        if out:
            onnx = m.shapes.get(out)
            if onnx is not None and tuple(onnx) != shape:
                raise m.fail(
                    f"its output of shape {list(onnx)} is not the shape {list(shape)} of its "
                    f"rank-5 input: only element-wise operators that keep the shape map"
                )
            register(m, out, shape, k, roots_of(m, reads))
    handler(m, dataclasses.replace(node, inputs=inputs))
