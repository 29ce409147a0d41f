"""The sections of Darknet's classifiers: [connected], [avgpool], [softmax], [dropout], [cost].

``[connected]`` is a ``linear`` layer on the flattened (C, H, W) input, Darknet's order; its blobs
are biases, weights, then (batch_normalize) scales, rolling_mean, rolling_variance, folded in as
for a convolution. ``[avgpool]`` is Darknet's global average. ``[softmax]`` runs over all of its
input's values in Darknet, over channels in pydeconv: the same on a flat or 1x1 input, refused
elsewhere. ``[dropout]`` and ``[cost]`` do nothing at inference: their names are aliases.
"""

from __future__ import annotations

from .base import BN_FIELDS, Plan, Tensor, activation, unit
from .cfg import Section

CONNECTED_KEYS = frozenset({"output", "activation", "batch_normalize"})
SOFTMAX_KEYS = frozenset({"groups", "temperature"})
DROPOUT_KEYS = frozenset({"probability", "dropblock"})
COST_KEYS = frozenset({"type", "scale", "ratio", "noobject_scale", "thresh"})


def connected(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(CONNECTED_KEYS)
    n = sec.integer("output", 1, minimum=1)
    bn = sec.integer("batch_normalize", 0)
    if bn not in (0, 1):
        raise sec.fail("batch_normalize", f"must be 0 or 1, got {bn}")
    inputs = prev.c * prev.h * prev.w
    name = f"connected_{sec.index}"
    fields = ("biases", "weights") + (BN_FIELDS if bn else ())
    where = f"section {sec.index} [connected] ({name})"
    p.add_weighted(name, "linear", bool(bn), (n, inputs), where, fields)
    p.layers.append(
        {
            "name": name,
            "kind": "linear",
            "inputs": [prev.name],
            "params": {"weight": [n, inputs], "bias": [n]},
        }
    )
    return activation(sec, "logistic", Tensor(name, n, 1, 1, flat=True), p)


def avgpool(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(frozenset())
    name = f"avgpool_{sec.index}"
    p.layers.append({"name": name, "kind": "global_avg_pool", "inputs": [prev.name]})
    return Tensor(name, prev.c, 1, 1)


def softmax(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(SOFTMAX_KEYS)
    groups = sec.integer("groups", 1, minimum=1)
    if groups != 1:
        raise sec.fail("groups", f"only 1 is supported, got {groups}")
    unit(sec, "temperature", 1.0)
    if not prev.flat and prev.h * prev.w != 1:
        raise sec.fail(
            None,
            f"its input {prev.name} is {prev.c}x{prev.h}x{prev.w}: Darknet's softmax runs over "
            "all its values, pydeconv's over channels (the same only on a 1x1 or flat input)",
        )
    name = f"softmax_{sec.index}"
    p.layers.append({"name": name, "kind": "softmax", "inputs": [prev.name]})
    return Tensor(name, prev.c, prev.h, prev.w, flat=prev.flat)


def _identity(sec: Section, prev: Tensor, p: Plan, kind: str) -> Tensor:
    """An inference no-op: an alias of its input, or a ``dropout`` layer right after the input
    (an alias cannot name the graph's input)."""
    name = f"{kind}_{sec.index}"
    if prev.name == "input":
        p.layers.append({"name": name, "kind": "dropout", "inputs": [prev.name]})
        return Tensor(name, prev.c, prev.h, prev.w)
    p.aliases.setdefault(prev.name, []).append(name)
    return Tensor(prev.name, prev.c, prev.h, prev.w, flat=prev.flat)


def dropout(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(DROPOUT_KEYS)
    probability = sec.number("probability", 0.5)
    if not 0 <= probability < 1:
        raise sec.fail("probability", f"must be in [0, 1), got {probability:g}")
    if sec.integer("dropblock", 0) != 0:
        raise sec.fail("dropblock", "only 0 is supported (AlexeyAB's DropBlock)")
    return _identity(sec, prev, p, "dropout")


def cost(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(COST_KEYS)  # training only: the loss
    return _identity(sec, prev, p, "cost")
