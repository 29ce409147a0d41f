"""Darknet sections -> the graph dict of docs/FORMAT.md, with Darknet's numbering for names.

Section ``i`` after ``[net]`` is Darknet's layer ``i``; it becomes ``conv_i`` (with its activation
as ``leaky_i``, ``mish_i``, ...), ``maxpool_i``, ``route_i``, ``shortcut_i``, ``upsample_i``.
A ``[route]`` that only forwards one layer (no ``groups``) and a ``[yolo]`` (whose raw input is
the head output) add no layer: their names are aliases of the layer they forward.

The cfg is read in two passes: :func:`plan` walks the sections, checks every key and value and
every shape, and lists the float32 blobs the weights file must hold; :func:`finish` turns the
blobs that were read into parameters (batch norm folded into the convolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..limits import get_limits, limit_str
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
# Darknet fills a max pool's out-of-range window taps with -FLT_MAX (maxpool_layer.c).
FLT_MAX = float(np.finfo(np.float32).max)

CONV_KEYS = frozenset(
    {"filters", "size", "stride", "stride_x", "stride_y", "pad", "padding", "groups"}
    | {"batch_normalize", "activation"}
)
MAXPOOL_KEYS = frozenset({"size", "stride", "stride_x", "stride_y", "padding"})
ROUTE_KEYS = frozenset({"layers", "groups", "group_id"})
SHORTCUT_KEYS = frozenset(
    {"from", "activation", "alpha", "beta", "weights_type", "weights_normalization"}
)
UPSAMPLE_KEYS = frozenset({"stride", "scale"})
# [yolo]: what decoding reads, and what only training reads (accepted, not used).
YOLO_KEYS = frozenset({"mask", "anchors", "classes", "num", "scale_x_y", "new_coords"})
YOLO_TRAINING_KEYS = frozenset(
    "jitter ignore_thresh truth_thresh random resize iou_normalizer cls_normalizer obj_normalizer "
    "delta_normalizer uc_normalizer iou_loss iou_thresh iou_thresh_kind beta_nms nms_kind "
    "max_delta counters_per_class label_smooth_eps objectness_smooth focal_loss max map "
    "track_history_size sim_thresh dets_for_track dets_for_show track_ciou_norm "
    "embedding_layer".split()
)
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
SUPPORTED = ("convolutional", "maxpool", "route", "shortcut", "upsample", "yolo")


@dataclass
class Tensor:
    """What Darknet layer i produced: the graph tensor holding it and its shape."""

    name: str
    c: int
    h: int
    w: int
    yolo: bool = False  # a [yolo]'s output (decoded in Darknet): never a route's input here


@dataclass
class Plan:
    layers: list[dict] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    convs: list[tuple[str, int, bool, tuple[int, int, int, int]]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    yolo: list[dict] = field(default_factory=list)
    input_shape: tuple[int, int, int] = (0, 0, 0)
    letter_box: int = 0


def net_shape(net: Section, size: list[int] | None) -> tuple[int, int, int]:
    """(C, H, W) of the input: [net] channels/height/width, H and W replaced by ``size``."""
    net.check_keys(NET_KEYS | NET_TRAINING_KEYS)
    c = net.integer("channels", minimum=1)
    h = net.integer("height", minimum=1)
    w = net.integer("width", minimum=1)
    if size is not None:
        h, w = size
    return c, h, w


def plan(sections: list[Section], size: list[int] | None) -> Plan:
    p = Plan()
    net = sections[0]
    c, h, w = net_shape(net, size)
    p.input_shape = (c, h, w)
    p.letter_box = net.integer("letter_box", 0)
    if p.letter_box not in (0, 1):
        raise net.fail("letter_box", f"must be 0 or 1, got {p.letter_box}")
    if len(sections) == 1:
        raise GraphError("the cfg has no layers after [net]")
    done: list[Tensor] = []
    prev = Tensor("input", c, h, w)
    aliases: dict[str, list[str]] = {}
    for sec in sections[1:]:
        if sec.name not in SUPPORTED:
            raise sec.fail(
                None,
                f"unsupported section [{sec.name}] (pydeconv reads: "
                f"{', '.join('[' + s + ']' for s in SUPPORTED)})",
            )
        out = _CONVERTERS[sec.name](sec, prev, done, p, aliases)
        done.append(out)
        prev = out
    total = 4 * sum(b.count for b in p.blobs)
    limit = get_limits().max_tensor_bytes
    if total > limit:  # before any weights are read or zeros allocated
        raise GraphError(
            f"the convolutions hold {total:,} bytes of weights, "
            f"past {limit_str('max_tensor_bytes')}"
        )
    for layer in p.layers:
        if layer["name"] in aliases:
            layer["aliases"] = aliases[layer["name"]]
    if not p.layers:
        raise GraphError("the cfg makes no layers (only routes and heads)")
    if not p.outputs:
        p.outputs = [done[-1].name]
    return p


def _activation(sec: Section, default: str, t: Tensor, p: Plan) -> Tensor:
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
    return Tensor(layer["name"], t.c, t.h, t.w)


def _strides(sec: Section) -> tuple[int, int, int]:
    """(stride, stride_y, stride_x): AlexeyAB's stride_x/stride_y default to ``stride`` (1)."""
    stride = sec.integer("stride", 1, minimum=1)
    return (
        stride,
        sec.integer("stride_y", stride, minimum=1),
        sec.integer("stride_x", stride, minimum=1),
    )


def _out(sec: Section, what: str, n: int, size: int, stride: int) -> int:
    if n < size:
        raise sec.fail("size", f"the {size}-wide window does not fit the {what} ({n} with padding)")
    return (n - size) // stride + 1


def _convolutional(sec, prev, done, p, aliases) -> Tensor:
    sec.check_keys(CONV_KEYS)
    filters = sec.integer("filters", 1, minimum=1)
    size = sec.integer("size", 1, minimum=1)
    _, sy, sx = _strides(sec)
    padding = sec.integer("padding", 0, minimum=0)
    if sec.integer("pad", 0) != 0:  # Darknet: any non-zero pad means "same" padding size/2
        padding = size // 2
    groups = sec.integer("groups", 1, minimum=1)
    bn = sec.integer("batch_normalize", 0)
    if bn not in (0, 1):
        raise sec.fail("batch_normalize", f"must be 0 or 1, got {bn}")
    if prev.c % groups or filters % groups:
        raise sec.fail(
            "groups",
            f"{groups} groups do not divide the {prev.c} input channels and {filters} filters",
        )
    oh = _out(sec, "input height", prev.h + 2 * padding, size, sy)
    ow = _out(sec, "input width", prev.w + 2 * padding, size, sx)
    name = f"conv_{sec.index}"
    shape = (filters, prev.c // groups, size, size)
    where = f"section {sec.index} [convolutional] ({name})"
    p.blobs.append(Blob(where, "biases", filters))
    if bn:
        for what in ("scales", "rolling_mean", "rolling_variance"):
            p.blobs.append(Blob(where, what, filters))
    p.blobs.append(Blob(where, "weights", int(np.prod(shape))))
    p.convs.append((name, sec.index, bool(bn), shape))
    p.layers.append(
        {
            "name": name,
            "kind": "conv2d",
            "inputs": [prev.name],
            "attrs": {
                "kernel_size": [size, size],
                "stride": [sy, sx],
                "padding": [padding] * 4,
                "groups": groups,
            },
            "params": {"weight": list(shape), "bias": [filters]},
        }
    )
    return _activation(sec, "logistic", Tensor(name, filters, oh, ow), p)


def _maxpool(sec, prev, done, p, aliases) -> Tensor:
    sec.check_keys(MAXPOOL_KEYS)
    stride, sy, sx = _strides(sec)
    size = sec.integer("size", stride, minimum=1)  # Darknet: size defaults to stride
    padding = sec.integer("padding", size - 1, minimum=0)
    # Darknet's window origin is -padding/2: padding//2 before, the rest after.
    before, after = padding // 2, padding - padding // 2
    oh = _out(sec, "input height", prev.h + padding, size, sy)
    ow = _out(sec, "input width", prev.w + padding, size, sx)
    name = f"maxpool_{sec.index}"
    source = prev.name
    pool_pad = [before, before, after, after]
    if after >= size:
        # max_pool2d needs each padding smaller than the window; Darknet pads with -FLT_MAX.
        p.layers.append(
            {
                "name": f"{name}_pad",
                "kind": "pad",
                "inputs": [source],
                "attrs": {"padding": pool_pad, "value": -FLT_MAX},
            }
        )
        source, pool_pad = f"{name}_pad", [0, 0, 0, 0]
    p.layers.append(
        {
            "name": name,
            "kind": "max_pool2d",
            "inputs": [source],
            "attrs": {"kernel_size": [size, size], "stride": [sy, sx], "padding": pool_pad},
        }
    )
    return Tensor(name, prev.c, oh, ow)


def _index(sec: Section, key: str, value: int, done: list[Tensor]) -> Tensor:
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


def _route(sec, prev, done, p, aliases) -> Tensor:
    sec.check_keys(ROUTE_KEYS)
    refs = sec.integers("layers")
    if refs is None:
        raise sec.fail("layers", "is required")
    groups = sec.integer("groups", 1, minimum=1)
    group_id = sec.integer("group_id", 0, minimum=0)
    if group_id >= groups:
        raise sec.fail("group_id", f"must be below groups ({groups}), got {group_id}")
    sources = [_index(sec, "layers", v, done) for v in refs]
    first = sources[0]
    for s in sources[1:]:
        if (s.h, s.w) != (first.h, first.w):
            raise sec.fail(
                "layers",
                f"the layers to concatenate differ in size: {first.name} is {first.h}x{first.w}, "
                f"{s.name} is {s.h}x{s.w}",
            )
    name = f"route_{sec.index}"
    if len(sources) == 1 and groups == 1:
        aliases.setdefault(first.name, []).append(name)
        return Tensor(first.name, first.c, first.h, first.w)
    parts = []
    for k, s in enumerate(sources):
        if s.c % groups:
            raise sec.fail("groups", f"{groups} groups do not divide {s.name}'s {s.c} channels")
        if groups == 1:
            parts.append(s.name)
            continue
        part = name if len(sources) == 1 else f"{name}_part{k}"
        n = s.c // groups
        p.layers.append(
            {
                "name": part,
                "kind": "slice",
                "inputs": [s.name],
                "attrs": {"axis": 1, "start": group_id * n, "end": (group_id + 1) * n},
            }
        )
        parts.append(part)
    channels = sum(s.c // groups for s in sources)
    if len(parts) > 1:
        p.layers.append({"name": name, "kind": "concat", "inputs": parts})
    return Tensor(name, channels, first.h, first.w)


def _unit(sec: Section, key: str, default: float) -> None:
    """A key pydeconv accepts only at its neutral value."""
    value = sec.number(key, default)
    if value != default:
        raise sec.fail(key, f"only {default:g} is supported, got {value:g}")


def _shortcut(sec, prev, done, p, aliases) -> Tensor:
    sec.check_keys(SHORTCUT_KEYS)
    refs = sec.integers("from")
    if refs is None:
        raise sec.fail("from", "is required")
    _unit(sec, "alpha", 1.0)  # pjreddie's darknet: out = alpha * out + beta * from
    _unit(sec, "beta", 1.0)
    for key in ("weights_type", "weights_normalization"):
        if sec.word(key, "none") != "none":
            raise sec.fail(key, f"only 'none' is supported, got '{sec.word(key, 'none')}'")
    sources = [_index(sec, "from", v, done) for v in refs]
    for s in sources:
        if (s.c, s.h, s.w) != (prev.c, prev.h, prev.w):
            raise sec.fail(
                "from",
                f"adds {s.name} ({s.c}x{s.h}x{s.w}) to {prev.name} ({prev.c}x{prev.h}x{prev.w}); "
                "pydeconv adds tensors of equal shape only",
            )
    name = f"shortcut_{sec.index}"
    inputs = [prev.name] + [s.name for s in sources]
    p.layers.append({"name": name, "kind": "add", "inputs": inputs})
    return _activation(sec, "linear", Tensor(name, prev.c, prev.h, prev.w), p)


def _upsample(sec, prev, done, p, aliases) -> Tensor:
    sec.check_keys(UPSAMPLE_KEYS)
    if not sec.has("stride"):
        # Darknet's default is 2, OpenCV's reader's 1: a cfg must say which it means.
        raise sec.fail("stride", "is required (Darknet reads 2 when absent, OpenCV 1)")
    stride = sec.integer("stride")
    if stride < 1:
        raise sec.fail("stride", f"must be a positive integer (nearest upsampling), got {stride}")
    _unit(sec, "scale", 1.0)
    name = f"upsample_{sec.index}"
    p.layers.append(
        {
            "name": name,
            "kind": "upsample",
            "inputs": [prev.name],
            "attrs": {"scale": [stride, stride]},
        }
    )
    return Tensor(name, prev.c, prev.h * stride, prev.w * stride)


def _yolo(sec, prev, done, p, aliases) -> Tensor:
    sec.check_keys(YOLO_KEYS | YOLO_TRAINING_KEYS)
    classes = sec.integer("classes", 20, minimum=1)
    num = sec.integer("num", 1, minimum=1)
    anchors = sec.numbers("anchors")
    if anchors is None:
        raise sec.fail("anchors", "is required")
    if len(anchors) != 2 * num:
        raise sec.fail("anchors", f"holds {len(anchors)} numbers; num={num} needs {2 * num}")
    mask = sec.integers("mask")
    if mask is None:
        mask = list(range(num))
    if any(not 0 <= m < num for m in mask):
        raise sec.fail("mask", f"each entry must be an anchor index 0..{num - 1}, got {mask}")
    need = len(mask) * (classes + 5)
    if prev.c != need:
        raise sec.fail(
            None,
            f"its input {prev.name} has {prev.c} channels; {len(mask)} anchors x "
            f"({classes} classes + 5) need {need}",
        )
    scale_x_y = sec.number("scale_x_y", 1.0)
    new_coords = sec.integer("new_coords", 0)
    if new_coords not in (0, 1):
        raise sec.fail("new_coords", f"must be 0 or 1, got {new_coords}")
    name = f"yolo_{sec.index}"
    aliases.setdefault(prev.name, []).append(name)
    if prev.name not in p.outputs:
        p.outputs.append(prev.name)
    p.yolo.append(
        {
            "name": name,
            "layer": prev.name,
            "classes": classes,
            "mask": mask,
            "anchors": [[anchors[2 * m], anchors[2 * m + 1]] for m in mask],
            "scale_x_y": scale_x_y,
            "new_coords": new_coords,
        }
    )
    return Tensor(prev.name, prev.c, prev.h, prev.w, yolo=True)


_CONVERTERS = {
    "convolutional": _convolutional,
    "maxpool": _maxpool,
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "yolo": _yolo,
}


def finish(p: Plan, arrays: list[np.ndarray] | None) -> dict[str, np.ndarray]:
    """The parameters from the blobs read (in ``p.blobs`` order); ``None``: zeros (shapes
    only)."""
    params: dict[str, np.ndarray] = {}
    at = 0
    for name, _section, bn, shape in p.convs:
        n = shape[0]
        if arrays is None:
            params[f"{name}/weight"] = np.zeros(shape, np.float32)
            params[f"{name}/bias"] = np.zeros(n, np.float32)
            continue
        bias = arrays[at].astype(np.float64)
        if bn:
            scale, mean, var = (arrays[at + k].astype(np.float64) for k in (1, 2, 3))
            if (var < 0).any():
                c = int(np.flatnonzero(var < 0)[0])
                raise ModelFormatError(
                    f"{p.blobs[at].layer}: rolling_variance of filter {c} is negative "
                    f"({var[c]:g}); Darknet would take its square root"
                )
            weight = arrays[at + 4].reshape(shape)
            at += 5
            factor = scale / (np.sqrt(var) + BN_EPSILON)
            folded = weight.astype(np.float64) * factor[:, None, None, None]
            params[f"{name}/weight"] = folded.astype(np.float32)
            params[f"{name}/bias"] = (bias - mean * factor).astype(np.float32)
        else:
            params[f"{name}/weight"] = arrays[at + 1].reshape(shape)
            params[f"{name}/bias"] = bias.astype(np.float32)
            at += 2
    return params
