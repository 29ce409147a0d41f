"""What the section converters share: the tensors they pass on, the plan they fill, and the
helpers every section reads keys with (activation, strides, window fit, layer references)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cfg import Section
from .weights import Blob

# Darknet's activations -> (layer kind, attributes); "linear" adds no layer.
ACTIVATIONS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "linear": None,
    "leaky": ("leaky_relu", {"alpha": 0.1}),
    "relu": ("relu", {}),
    "logistic": ("sigmoid", {}),
    "mish": ("mish", {}),
    "swish": ("silu", {}),
}
# Darknet's batch norm at inference (blas.c normalize_cpu): (x - mean) / (sqrt(var) + .000001f).
BN_EPSILON = 1e-6

# The batch norm blobs, in file order: after the biases ([convolutional]) or the weights
# ([connected]).
BN_FIELDS = ("scales", "rolling_mean", "rolling_variance")
# Darknet fills a max pool's out-of-range window taps with -FLT_MAX (maxpool_layer.c).
FLT_MAX = float(np.finfo(np.float32).max)


@dataclass
class Tensor:
    """What Darknet layer i produced: the graph tensor holding it and its shape."""

    name: str
    c: int
    h: int
    w: int
    yolo: bool = False  # a [yolo]'s output (decoded in Darknet): never a route's input here
    flat: bool = False  # (N, C) after a [connected]: only [connected]/[softmax]/... may follow


@dataclass
class Weighted:
    """A layer with parameters: its blobs in file order (after ``first`` in Plan.blobs)."""

    name: str
    kind: str  # "conv2d" or "linear"
    bn: bool
    shape: tuple[int, ...]  # the weight's
    first: int  # index of its first blob in Plan.blobs
    fields: tuple[str, ...]  # blob fields in file order


@dataclass
class Plan:
    layers: list[dict] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    weighted: list[Weighted] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    yolo: list[dict] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    input_shape: tuple[int, int, int] = (0, 0, 0)
    letter_box: int = 0

    def add_weighted(self, name, kind, bn, shape, where, fields) -> None:
        """Records a layer's blobs: ``fields`` in file order, each ``shape[0]`` floats except
        "weights" (the whole weight)."""
        first = len(self.blobs)
        for f in fields:
            # Python ints: np.prod wraps past int64 (a 2^31-wide kernel counted 0 floats)
            count = math.prod(shape) if f == "weights" else shape[0]
            self.blobs.append(Blob(where, f, count))
        self.weighted.append(Weighted(name, kind, bn, tuple(shape), first, tuple(fields)))


def activation(sec: Section, default: str, t: Tensor, p: Plan) -> Tensor:
    name = sec.word("activation", default)
    if name not in ACTIVATIONS:
        raise sec.fail(
            "activation",
            f"unsupported activation '{name}' (pydeconv reads: {', '.join(ACTIVATIONS)})",
        )
    act = ACTIVATIONS[name]
    if act is None:
        return t
    kind, attrs = act
    layer: dict[str, Any] = {"name": f"{name}_{sec.index}", "kind": kind, "inputs": [t.name]}
    if attrs:
        layer["attrs"] = dict(attrs)
    p.layers.append(layer)
    return Tensor(layer["name"], t.c, t.h, t.w, flat=t.flat)


def strides(sec: Section) -> tuple[int, int, int]:
    """(stride, stride_y, stride_x): AlexeyAB's stride_x/stride_y default to ``stride`` (1)."""
    stride = sec.integer("stride", 1, minimum=1)
    return (
        stride,
        sec.integer("stride_y", stride, minimum=1),
        sec.integer("stride_x", stride, minimum=1),
    )


def out_size(sec: Section, what: str, n: int, size: int, stride: int) -> int:
    if n < size:
        raise sec.fail("size", f"the {size}-wide window does not fit the {what} ({n} with padding)")
    return (n - size) // stride + 1


def index(sec: Section, key: str, value: int, done: list[Tensor]) -> Tensor:
    i = sec.index + value if value < 0 else value
    if not 0 <= i < sec.index:
        raise sec.fail(
            key,
            f"refers to layer {value} (index {i}), but only layers 0..{sec.index - 1} come "
            "before this one",
        )
    if done[i].yolo:
        raise sec.fail(
            key, f"refers to layer {i}, a [yolo] head (Darknet decodes there); route its input"
        )
    return done[i]


def unit(sec: Section, key: str, default: float) -> None:
    """A key pydeconv accepts only at its neutral value."""
    value = sec.number(key, default)
    if value != default:
        raise sec.fail(key, f"only {default:g} is supported, got {value:g}")
