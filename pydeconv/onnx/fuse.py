"""Fusions at import: patterns of ONNX nodes that are one pydeconv layer.

Exporters write some activations as several nodes. Each pattern below becomes one node (its
``sources`` name every ONNX node it replaces, so the layer table shows them) placed where the
pattern's last node was; the pattern's inner tensors must be read by nothing else. Every fusion
computes the same function as the nodes it replaces, and its layer goes down by the rule the
projection table declares for that activation (docs/PROJECTION.md): a SiLU net is projected with
the SiLU row, never as a sigmoid gate times its input.

- ``x * Sigmoid(x)`` -> SiLU (PyTorch's SiLU, Ultralytics' ``Conv`` blocks, EfficientNet);
- ``x * HardSigmoid(x)`` with alpha 1/6, beta 1/2 -> HardSwish (torch's exporters before opset 14);
- ``x * Tanh(Softplus(x))`` -> Mish (before opset 18);
- ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` in either association -> Gelu, and its tanh form
  ``x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`` (torch's exporters before opset 20);
- ``Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W)`` -> a channel
  shuffle (ShuffleNet);
- ``Reshape (-1) -> Gather (indices 0, 1, 2, ... of any shape)`` -> one Reshape to the indices'
  shape (torch's dynamo exporter writes ``as_strided`` after an adaptive average pool so);
- ``Transpose (p) of data and of updates -> ScatterND -> Transpose (p)``, ``p`` a permutation that
  is its own inverse -> one ScatterND on the untransposed tensors with every element's index
  (torch's dynamo exporter writes a slice assignment ``y[..., 0:2] = ...`` along the last axis so,
  swapping it with the batch axis).

Conv + BatchNormalization and constant Add/Mul are folded into the layer by the mapping itself
(mapper.py), where the parameters are at hand.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .model import Node
from .shapes import Shape, reshape_target

FUSED_DOMAIN = "pydeconv.fused"


# The fewest inputs each operator a pattern matches reads. A node with fewer (or without an
# output) matches no pattern and is left to the mapping, whose error names it.
_ARITY = {"Mul": 2, "Add": 2, "Div": 2, "Pow": 2, "Gather": 2}


def _well_formed(node: Node) -> bool:
    return bool(node.outputs and node.outputs[0]) and len(node.inputs) >= _ARITY.get(
        node.op_type, 1
    )


def _number(value: object) -> float | None:
    """An attribute that is one number (else None: no pattern matches it)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return None


class _Graph:
    def __init__(self, nodes: list[Node], consts: dict[str, np.ndarray], outputs: list[str]):
        self.nodes = nodes
        self.consts = consts
        self.producer = {out: i for i, node in enumerate(nodes) for out in node.outputs if out}
        self.uses = Counter(name for node in nodes for name in node.inputs if name)
        self.readers: dict[str, list[int]] = {}
        for i, node in enumerate(nodes):
            for name in dict.fromkeys(node.inputs):
                self.readers.setdefault(name, []).append(i)
        self.uses.update(outputs)
        self.removed: set[int] = set()
        self.replaced: dict[int, Node] = {}

    def made_by(self, tensor: str, op: str) -> Node | None:
        """The live node of type ``op`` that makes ``tensor``, if any."""
        i = self.producer.get(tensor)
        if i is None or i in self.removed or i in self.replaced:
            return None
        node = self.nodes[i]
        if not _well_formed(node):
            return None
        return node if node.op_type == op and node.domain in ("", "ai.onnx") else None

    def inner(self, tensor: str) -> bool:
        """A tensor only the pattern reads."""
        return self.uses[tensor] == 1

    def scalar(self, tensor: str) -> float | None:
        value = self.consts.get(tensor)
        if value is None or value.size != 1:
            return None
        return float(value.reshape(-1)[0])

    def split_const(self, node: Node) -> tuple[str | None, float | None]:
        """(activation, scalar constant) of a binary node with one scalar constant input."""
        a, b = (node.inputs + ["", ""])[:2]
        if self.scalar(b) is not None and a not in self.consts:
            return a, self.scalar(b)
        if self.scalar(a) is not None and b not in self.consts:
            return b, self.scalar(a)
        return None, None

    def replace(self, last: Node, fused: Node, inner: list[Node]) -> None:
        self.replaced[self.index(last)] = fused
        for node in inner:
            self.removed.add(self.index(node))

    def index(self, node: Node) -> int:
        return self.producer[node.outputs[0]]

    def result(self) -> list[Node]:
        return [
            self.replaced.get(i, node) for i, node in enumerate(self.nodes) if i not in self.removed
        ]


def _fused(op: str, inputs: list[str], last: Node, parts: list[Node], domain: str = "", **attrs):
    ordered = sorted(parts, key=lambda n: n is last)  # the node that made the output comes last
    return Node(
        op_type=op,
        inputs=inputs,
        outputs=list(last.outputs[:1]),
        name=last.name,
        domain=domain,
        attrs=attrs,
        sources=[n.name or n.outputs[0] for n in ordered],
    )


def _close(value: float | None, target: float, tol: float = 1e-4) -> bool:
    return value is not None and abs(value - target) <= tol * max(1.0, abs(target))


def _gated(g: _Graph, mul: Node) -> bool:
    """x * f(x) for f = Sigmoid, HardSigmoid(1/6, 1/2), Tanh(Softplus(x))."""
    if len(mul.inputs) != 2 or any(name in g.consts for name in mul.inputs):
        return False
    for x, gate in (mul.inputs, mul.inputs[::-1]):
        if not g.inner(gate):
            continue
        sig = g.made_by(gate, "Sigmoid")
        if sig is not None and sig.inputs[0] == x:
            g.replace(mul, _fused("SiLU", [x], mul, [sig, mul], domain=FUSED_DOMAIN), [sig])
            return True
        hard = g.made_by(gate, "HardSigmoid")
        if (
            hard is not None
            and hard.inputs[0] == x
            and _close(_number(hard.attrs.get("alpha", 0.2)), 1 / 6)
            and _close(_number(hard.attrs.get("beta", 0.5)), 0.5)
        ):
            g.replace(mul, _fused("HardSwish", [x], mul, [hard, mul]), [hard])
            return True
        tanh = g.made_by(gate, "Tanh")
        soft = g.made_by(tanh.inputs[0], "Softplus") if tanh is not None else None
        if (
            tanh is not None
            and soft is not None
            and soft.inputs[0] == x
            and g.inner(tanh.inputs[0])
        ):
            g.replace(mul, _fused("Mish", [x], mul, [soft, tanh, mul]), [soft, tanh])
            return True
    return False


def _erf_gelu(g: _Graph, erf: Node) -> bool:
    """Erf(x / sqrt 2) + 1, times x, times 0.5 (either association)."""
    scaled = erf.inputs[0]
    div = g.made_by(scaled, "Div")
    mul = g.made_by(scaled, "Mul")
    first = div or mul
    if first is None or not g.inner(scaled) or not g.inner(erf.outputs[0]):
        return False
    x, c = g.split_const(first)
    if x is None or (first is div and first.inputs[0] != x):
        return False
    if not (_close(c, math.sqrt(2)) if first is div else _close(c, 1 / math.sqrt(2))):
        return False
    return _gelu_tail(g, x, [first, erf], "none")


def _tanh_gelu(g: _Graph, tanh: Node) -> bool:
    """Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)) + 1, times x, times 0.5: torch's exporters before
    opset 20 for GELU(approximate='tanh')."""
    inner = tanh.inputs[0]
    scale = g.made_by(inner, "Mul")
    if scale is None or not g.inner(inner) or not g.inner(tanh.outputs[0]):
        return False
    summed, c = g.split_const(scale)
    add = g.made_by(summed, "Add") if summed else None
    if add is None or summed is None or not _close(c, math.sqrt(2 / math.pi)):
        return False
    if not g.inner(summed):
        return False
    for x, term in (add.inputs, add.inputs[::-1]):
        kappa = g.made_by(term, "Mul")
        cubed, k = g.split_const(kappa) if kappa else (None, None)
        if kappa is None or cubed is None or not _close(k, 0.044715) or not g.inner(term):
            continue
        cube = _cube(g, cubed, x)
        if cube is not None:
            return _gelu_tail(g, x, cube + [kappa, add, scale, tanh], "tanh")
    return False


def _cube(g: _Graph, tensor: str, x: str) -> list[Node] | None:
    """The nodes that make x^3: Pow(x, 3), or x * (x * x)."""
    if not g.inner(tensor):
        return None
    power = g.made_by(tensor, "Pow")
    if power is not None and power.inputs[0] == x and _close(g.scalar(power.inputs[1]), 3.0):
        return [power]
    outer = g.made_by(tensor, "Mul")
    if outer is None or x not in outer.inputs:
        return None
    other = outer.inputs[1] if outer.inputs[0] == x else outer.inputs[0]
    square = g.made_by(other, "Mul")
    if square is None or square.inputs != [x, x] or not g.inner(other):
        return None
    return [square, outer]


def _gelu_tail(g: _Graph, x: str, head: list[Node], approximate: str) -> bool:
    """The common end of both GELU forms: f + 1, times x, times 0.5 (either association);
    ``head[-1]`` makes f."""
    made = head[-1].outputs[0]
    add = _only_reader(g, made, "Add")
    if add is None or not _close(g.split_const(add)[1], 1.0) or not g.inner(add.outputs[0]):
        return False
    times = _only_reader(g, add.outputs[0], "Mul")
    if times is None:
        return False
    other = times.inputs[1] if times.inputs[0] == add.outputs[0] else times.inputs[0]
    if other == x:  # (x * (1 + f)) * 0.5
        half = _only_reader(g, times.outputs[0], "Mul") if g.inner(times.outputs[0]) else None
        if half is None or not _close(g.split_const(half)[1], 0.5):
            return False
        parts = head + [add, times, half]
        fused = _fused("Gelu", [x], half, parts, approximate=approximate)
        g.replace(half, fused, parts[:-1])
        return True
    pre = g.made_by(other, "Mul")  # (x * 0.5) * (1 + f)
    if pre is None or not g.inner(other) or g.split_const(pre) != (x, 0.5):
        return False
    parts = [pre] + head + [add, times]
    g.replace(times, _fused("Gelu", [x], times, parts, approximate=approximate), parts[:-1])
    return True


def _only_reader(g: _Graph, tensor: str, op: str) -> Node | None:
    readers = g.readers.get(tensor, [])
    if len(readers) != 1 or g.nodes[readers[0]].op_type != op:
        return None
    if not _well_formed(g.nodes[readers[0]]):
        return None
    i = readers[0]
    return None if i in g.removed or i in g.replaced else g.nodes[i]


def _channel_shuffle(g: _Graph, first: Node, shapes: dict[str, Shape]) -> bool:
    x = first.inputs[0]
    shape = shapes.get(x)
    if shape is None or len(shape) != 4 or len(first.inputs) < 2:
        return False
    target = g.consts.get(first.inputs[1])
    if target is None:
        return False
    try:
        five = reshape_target(shape, [int(v) for v in target.reshape(-1)])
    except ValueError:
        return False
    n, c, h, w = shape
    if len(five) != 5 or five[0] != n or five[3:] != (h, w) or five[1] * five[2] != c:
        return False
    if not g.inner(first.outputs[0]):
        return False
    transpose = _only_reader(g, first.outputs[0], "Transpose")
    if transpose is None or list(transpose.attrs.get("perm", [])) != [0, 2, 1, 3, 4]:
        return False
    if not g.inner(transpose.outputs[0]):
        return False
    last = _only_reader(g, transpose.outputs[0], "Reshape")
    if last is None or shapes.get(last.outputs[0]) != tuple(shape):
        return False
    parts = [first, transpose, last]
    fused = _fused("ChannelShuffle", [x], last, parts, domain=FUSED_DOMAIN, groups=int(five[1]))
    g.replace(last, fused, parts[:-1])
    return True


def _gathered_reshape(g: _Graph, gather: Node, shapes: dict[str, Shape]) -> bool:
    if _number(gather.attrs.get("axis", 0)) != 0 or len(gather.inputs) != 2:
        return False
    flat, indices = gather.inputs
    reshape = g.made_by(flat, "Reshape")
    index = g.consts.get(indices)
    shape = shapes.get(flat)
    if reshape is None or index is None or shape is None or len(shape) != 1 or not g.inner(flat):
        return False
    if index.size != shape[0] or not np.array_equal(index.reshape(-1), np.arange(shape[0])):
        return False
    target = f"{gather.outputs[0]}__shape"
    g.consts[target] = np.array(index.shape, np.int64)
    parts = [reshape, gather]
    fused = _fused("Reshape", [reshape.inputs[0], target], gather, parts)
    g.replace(gather, fused, [reshape])
    return True


def _transposed_scatter(g: _Graph, scatter: Node, shapes: dict[str, Shape]) -> bool:
    if len(scatter.inputs) < 3 or scatter.attrs.get("reduction", "none") != "none":
        return False
    data_t, indices, updates_t = scatter.inputs[:3]
    first, second = g.made_by(data_t, "Transpose"), g.made_by(updates_t, "Transpose")
    last = _only_reader(g, scatter.outputs[0], "Transpose")
    index = g.consts.get(indices)
    shape_t = shapes.get(updates_t)
    if first is None or second is None or last is None or index is None or shape_t is None:
        return False
    perms = [n.attrs.get("perm") for n in (first, second, last)]
    if perms[0] is None or any(list(p or []) != list(perms[0]) for p in perms):
        return False
    perm = [int(v) for v in perms[0]]
    rank = len(perm)
    if sorted(perm) != list(range(rank)) or any(perm[perm[k]] != k for k in range(rank)):
        return False
    depth = index.shape[-1] if index.ndim else 0
    if not g.inner(data_t) or not g.inner(updates_t) or not 0 < depth <= rank:
        return False
    if tuple(index.shape[:-1]) + tuple(shape_t[depth:]) != tuple(shape_t):
        return False
    # Every updated element's full index, in the transposed layout, then in the original one:
    # transposed index j is original index i with i[perm[k]] = j[k] (perm is its own inverse).
    full = np.empty(tuple(shape_t) + (rank,), np.int64)
    lead = index.reshape(index.shape[:-1] + (1,) * (rank - depth) + (depth,))
    full[..., :depth] = lead
    if depth < rank:
        full[..., depth:] = np.stack(list(np.indices(tuple(shape_t[depth:]))), -1).reshape(
            (1,) * depth + tuple(shape_t[depth:]) + (rank - depth,)
        )
    original = np.ascontiguousarray(np.transpose(full, perm + [rank])[..., perm])
    target = f"{last.outputs[0]}__indices"
    g.consts[target] = original
    inputs = [first.inputs[0], target, second.inputs[0]]
    fused = _fused("ScatterND", inputs, last, [first, second, scatter, last])
    g.replace(last, fused, [first, second, scatter])
    return True


def fuse(
    nodes: list[Node], consts: dict[str, np.ndarray], shapes: dict[str, Shape], outputs: list[str]
) -> list[Node]:
    """The nodes with every pattern above replaced by its one node."""
    g = _Graph(nodes, consts, outputs)
    for i, node in enumerate(nodes):
        if i in g.removed or i in g.replaced or node.domain not in ("", "ai.onnx"):
            continue
        if not _well_formed(node):
            continue
        if node.op_type == "Erf":
            _erf_gelu(g, node)
        elif node.op_type == "Tanh":
            _tanh_gelu(g, node)
        elif node.op_type == "Reshape":
            _channel_shuffle(g, node, shapes)
        elif node.op_type == "Gather":
            _gathered_reshape(g, node, shapes)
        elif node.op_type == "ScatterND":
            _transposed_scatter(g, node, shapes)
    for i, node in enumerate(nodes):
        if i in g.removed or i in g.replaced or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Mul" and _well_formed(node):
            _gated(g, node)
    return g.result()
