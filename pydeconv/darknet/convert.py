"""Darknet sections -> the graph dict of docs/FORMAT.md, with Darknet's numbering for names.

Section ``i`` after ``[net]`` is Darknet's layer ``i``; it becomes ``conv_i`` (with its activation
as ``leaky_i``, ``mish_i``, ...), ``maxpool_i``, ``route_i``, ``shortcut_i``, ``upsample_i``
(sections.py), ``connected_i``, ``avgpool_i``, ``softmax_i`` (classifier.py). A ``[route]`` that
only forwards one layer (no ``groups``), a ``[yolo]`` (whose raw input is the head output), a
``[dropout]`` and a ``[cost]`` add no layer: their names are aliases of the layer they forward.

The cfg is read in two passes: :func:`plan` walks the sections, checks every key and value and
every shape, and lists the float32 blobs the weights file must hold; :func:`finish` turns the
blobs that were read into parameters (batch norm folded into the convolution or the linear
layer).
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..limits import get_limits, limit_str
from . import classifier, sections
from .base import BN_EPSILON, Plan, Tensor
from .cfg import Section

# [net]: the input, and what only training reads (Darknet's parse_net_options, AlexeyAB's fork).
NET_KEYS = frozenset({"width", "height", "channels", "letter_box"})
NET_TRAINING_KEYS = frozenset(
    "batch subdivisions learning_rate momentum decay time_steps notruth random adam B1 B2 eps "
    "inputs max_crop min_crop max_ratio min_ratio center clip angle aspect saturation exposure "
    "hue policy burn_in power step scale steps scales seq_scales gamma max_batches "
    "learning_rate_min batches_per_cycle batches_cycle_mult loss_scale dynamic_minibatch "
    "optimized_memory workspace_size_limit_MB cudnn_half sequential_subdivisions try_fix_nan "
    "track augment_speed init_sequential_subdivisions mosaic_bound contrastive "
    "contrastive_jit_flip contrastive_color unsupervised label_smooth_eps resize_step "
    "attention adversarial_lr max_chart_loss flip blur gaussian_noise mixup cutmix mosaic "
    "show_receptive_field num_sequences".split()
)
CONVERTERS = {
    "convolutional": sections.convolutional,
    "maxpool": sections.maxpool,
    "route": sections.route,
    "shortcut": sections.shortcut,
    "upsample": sections.upsample,
    "yolo": sections.yolo,
    "connected": classifier.connected,
    "avgpool": classifier.avgpool,
    "softmax": classifier.softmax,
    "dropout": classifier.dropout,
    "cost": classifier.cost,
}
# What may follow a [connected] (its output is (N, C), not an image).
AFTER_FLAT = ("connected", "softmax", "dropout", "cost")


def net_shape(net: Section, size: list[int] | None) -> tuple[int, int, int]:
    """(C, H, W) of the input: [net] channels/height/width, H and W replaced by ``size``."""
    net.check_keys(NET_KEYS | NET_TRAINING_KEYS)
    c = net.integer("channels", minimum=1)
    h = net.integer("height", minimum=1)
    w = net.integer("width", minimum=1)
    if size is not None:
        h, w = size
    return c, h, w


def plan(cfg: list[Section], size: list[int] | None) -> Plan:
    p = Plan()
    net = cfg[0]
    c, h, w = net_shape(net, size)
    p.input_shape = (c, h, w)
    p.letter_box = net.integer("letter_box", 0)
    if p.letter_box not in (0, 1):
        raise net.fail("letter_box", f"must be 0 or 1, got {p.letter_box}")
    if len(cfg) == 1:
        raise GraphError("the cfg has no layers after [net]")
    done: list[Tensor] = []
    prev = Tensor("input", c, h, w)
    for sec in cfg[1:]:
        if sec.name not in CONVERTERS:
            raise sec.fail(
                None,
                f"unsupported section [{sec.name}] (pydeconv reads: "
                f"{', '.join('[' + s + ']' for s in CONVERTERS)})",
            )
        if prev.flat and sec.name not in AFTER_FLAT:
            raise sec.fail(
                None,
                f"[{sec.name}] needs an image (C, H, W), and {prev.name} is flat (N, C): after "
                f"a [connected] only {', '.join('[' + s + ']' for s in AFTER_FLAT)} may follow",
            )
        out = CONVERTERS[sec.name](sec, prev, done, p)
        done.append(out)
        prev = out
    total = 4 * sum(b.count for b in p.blobs)
    limit = get_limits().max_tensor_bytes
    if total > limit:  # before any weights are read or zeros allocated
        raise GraphError(
            f"the layers hold {total:,} bytes of weights, past {limit_str('max_tensor_bytes')}"
        )
    for layer in p.layers:
        if layer["name"] in p.aliases:
            layer["aliases"] = p.aliases[layer["name"]]
    if not p.layers:
        raise GraphError("the cfg makes no layers (only routes and heads)")
    if not p.outputs:
        p.outputs = [done[-1].name]
    return p


def finish(p: Plan, arrays: list[np.ndarray] | None) -> dict[str, np.ndarray]:
    """The parameters from the blobs read (in ``p.blobs`` order), batch norm folded in;
    ``None``: zeros (shapes only)."""
    params: dict[str, np.ndarray] = {}
    for wl in p.weighted:
        n = wl.shape[0]
        if arrays is None:
            params[f"{wl.name}/weight"] = np.zeros(wl.shape, np.float32)
            params[f"{wl.name}/bias"] = np.zeros(n, np.float32)
            continue
        got = {f: arrays[wl.first + k] for k, f in enumerate(wl.fields)}
        weight = got["weights"].reshape(wl.shape)
        bias = got["biases"].astype(np.float64)
        if wl.bn:
            scale, mean, var = (
                got[f].astype(np.float64) for f in ("scales", "rolling_mean", "rolling_variance")
            )
            if (var < 0).any():
                c = int(np.flatnonzero(var < 0)[0])
                raise ModelFormatError(
                    f"{p.blobs[wl.first].layer}: rolling_variance of filter {c} is negative "
                    f"({var[c]:g}); Darknet would take its square root"
                )
            factor = scale / (np.sqrt(var) + BN_EPSILON)
            weight = weight.astype(np.float64) * factor.reshape((n,) + (1,) * (weight.ndim - 1))
            bias = bias - mean * factor
        params[f"{wl.name}/weight"] = weight.astype(np.float32)
        params[f"{wl.name}/bias"] = bias.astype(np.float32)
    return params
