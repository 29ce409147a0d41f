"""What the occlusion, invariance and correspondence analyses share: class probabilities from a
net's output, the fill value of an occluder, feature-map layers, and how many images one forward
may take (the memory estimate checked before anything is allocated).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from pydeconv.errors import LayerNotFoundError, PydeconvError

# Bytes the batched forwards of an analysis may hold at once, by default.
DEFAULT_MAX_MEMORY = 512 << 20


def feature_map(net: Any, layer: str) -> tuple[int, int, int]:
    """The (C, H, W) of ``layer``; PydeconvError if it is not a feature map (a vector output)."""
    if not isinstance(layer, str) or not layer:
        raise LayerNotFoundError(f"unknown layer {layer!r}")
    shape = tuple(int(v) for v in net.layer_info(layer)["shape"])
    if len(shape) != 3:
        raise PydeconvError(
            f"layer '{layer}' is not a feature map: its output has shape {shape}, not (C, H, W); "
            "give a convolution, pooling or activation layer"
        )
    return shape[0], shape[1], shape[2]


def layer_vector(net: Any, layer: str) -> int:
    """The length of ``layer``'s output flattened (any layer: feature map or vector)."""
    shape = tuple(int(v) for v in net.layer_info(layer)["shape"])
    return int(np.prod(shape))


def is_classifier(net: Any) -> bool:
    """One graph output whose per-sample shape is a vector (K,) or (K, 1, 1)."""
    outs = net.outputs
    if len(outs) != 1:
        return False
    shape = tuple(int(v) for v in net.layer_info(outs[0])["shape"])
    return len(shape) == 1 or (len(shape) == 3 and shape[1:] == (1, 1))


def probability_source(net: Any) -> str:
    """How class probabilities are read: "output (softmax layer)" when the net ends in a softmax,
    else "softmax of the output" (the output taken as logits)."""
    kind = net.layer_info(net.outputs[0])["kind"]
    return "output (softmax layer)" if kind == "softmax" else "softmax of the output"


def class_probabilities(net: Any, out: np.ndarray) -> np.ndarray:
    """(N, K) float64 class probabilities from the graph output of a classifier: the output itself
    when the net ends in a softmax layer, else its softmax (:func:`probability_source`)."""
    a = np.asarray(out, dtype=np.float64).reshape(np.shape(out)[0], -1)
    if net.layer_info(net.outputs[0])["kind"] == "softmax":
        return a
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def class_names(net: Any, k: int) -> list[str]:
    """The net's labels when there are k of them, else "class 0" ... "class k-1"."""
    labels = net.labels
    if labels and len(labels) == k:
        return list(labels)
    return [f"class {i}" for i in range(k)]


def check_class(net: Any, cls: int | None) -> None:
    """A --class index against the classifier's output size."""
    if cls is None:
        return
    if not is_classifier(net):
        raise PydeconvError(
            "--class needs a classifier (one output, a vector of class scores); this model's "
            f"outputs are {', '.join(net.outputs)}"
        )
    k = layer_vector(net, net.outputs[0])
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < k:
        raise PydeconvError(
            f"class {cls!r} is out of range: the model has {k} classes (0..{k - 1})"
        )


def fill_values(net: Any, fill: str | float) -> np.ndarray:
    """The occluder's value per input channel, in preprocessed units (C,) float32.

    ``"mean"`` (the default): 0, i.e. the pixel the preprocessing maps to zero -- the model's mean
    pixel (``mean / scale``); for a model with ``mean`` 0, such as the demo VGG16 (pixels scaled
    to [0, 1]), that is black. ``"grey"``: the pixel value 128 in every channel, preprocessed as
    an image would be. A number: that value in every channel, in preprocessed units."""
    c = int(net.input_shape[0])
    if isinstance(fill, str):
        if fill == "mean":
            return np.zeros(c, np.float32)
        if fill in ("grey", "gray"):
            pre = net.preprocess
            mean = np.asarray(pre["mean"], np.float64).reshape(-1)
            std = np.asarray(pre["std"], np.float64).reshape(-1)
            return ((128.0 * float(pre["scale"]) - mean) / std).astype(np.float32)
        try:
            fill = float(fill)
        except ValueError:
            raise PydeconvError(
                f"fill must be 'mean', 'grey' or a number (preprocessed units), got {fill!r}"
            ) from None
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.floating, np.integer)):
        raise PydeconvError(f"fill must be 'mean', 'grey' or a number, got {fill!r}")
    if not np.isfinite(float(fill)):
        raise PydeconvError(f"fill must be a finite number, got {fill!r}")
    return np.full(c, float(fill), np.float32)


def per_sample_bytes(net: Any) -> int:
    """An upper bound of what one image costs a forward pass: 4 bytes for every element of the
    input and of every layer's output (what ``keep="all"`` holds; the forwards here keep less)."""
    total = int(np.prod(net.input_shape))
    for row in net.info():
        total += int(np.prod([int(v) for v in row["shape"]]))
    return 4 * total


def batch_for(net: Any, batch: int, max_memory: int) -> int:
    """The batch size to run: ``batch`` lowered until ``batch x per_sample_bytes`` fits in
    ``max_memory`` (never below 1: one image is what a plain forward costs anyway)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PydeconvError(f"batch size must be a positive integer, got {batch!r}")
    if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1:
        raise PydeconvError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    return max(1, min(batch, max_memory // per_sample_bytes(net)))


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse names the option in its message)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v
