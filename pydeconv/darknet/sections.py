"""The sections of Darknet's detectors: [convolutional], [maxpool], [route], [shortcut],
[upsample], [yolo]. Each reads its keys (refusing unknown ones), checks the shapes, adds its
layers to the plan and returns what it produced."""

from __future__ import annotations

from .base import BN_FIELDS, FLT_MAX, Plan, Tensor, activation, index, out_size, strides, unit
from .cfg import Section

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


def convolutional(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(CONV_KEYS)
    filters = sec.integer("filters", 1, minimum=1)
    size = sec.integer("size", 1, minimum=1)
    _, sy, sx = strides(sec)
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
    oh = out_size(sec, "input height", prev.h + 2 * padding, size, sy)
    ow = out_size(sec, "input width", prev.w + 2 * padding, size, sx)
    name = f"conv_{sec.index}"
    shape = (filters, prev.c // groups, size, size)
    where = f"section {sec.index} [convolutional] ({name})"
    fields = ("biases",) + (BN_FIELDS if bn else ()) + ("weights",)
    p.add_weighted(name, "conv2d", bool(bn), shape, where, fields)
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
    return activation(sec, "logistic", Tensor(name, filters, oh, ow), p)


def maxpool(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(MAXPOOL_KEYS)
    stride, sy, sx = strides(sec)
    size = sec.integer("size", stride, minimum=1)  # Darknet: size defaults to stride
    padding = sec.integer("padding", size - 1, minimum=0)
    # Darknet's window origin is -padding/2: padding//2 before, the rest after.
    before, after = padding // 2, padding - padding // 2
    oh = out_size(sec, "input height", prev.h + padding, size, sy)
    ow = out_size(sec, "input width", prev.w + padding, size, sx)
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


def route(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(ROUTE_KEYS)
    refs = sec.integers("layers")
    if refs is None:
        raise sec.fail("layers", "is required")
    groups = sec.integer("groups", 1, minimum=1)
    group_id = sec.integer("group_id", 0, minimum=0)
    if group_id >= groups:
        raise sec.fail("group_id", f"must be below groups ({groups}), got {group_id}")
    sources = [index(sec, "layers", v, done) for v in refs]
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
        p.aliases.setdefault(first.name, []).append(name)
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


def shortcut(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(SHORTCUT_KEYS)
    refs = sec.integers("from")
    if refs is None:
        raise sec.fail("from", "is required")
    unit(sec, "alpha", 1.0)  # pjreddie's darknet: out = alpha * out + beta * from
    unit(sec, "beta", 1.0)
    for key in ("weights_type", "weights_normalization"):
        if sec.word(key, "none") != "none":
            raise sec.fail(key, f"only 'none' is supported, got '{sec.word(key, 'none')}'")
    sources = [index(sec, "from", v, done) for v in refs]
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
    return activation(sec, "linear", Tensor(name, prev.c, prev.h, prev.w), p)


def upsample(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
    sec.check_keys(UPSAMPLE_KEYS)
    if not sec.has("stride"):
        # Darknet's default is 2, OpenCV's reader's 1: a cfg must say which it means.
        raise sec.fail("stride", "is required (Darknet reads 2 when absent, OpenCV 1)")
    stride = sec.integer("stride")
    if stride < 1:
        raise sec.fail("stride", f"must be a positive integer (nearest upsampling), got {stride}")
    unit(sec, "scale", 1.0)
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


def yolo(sec: Section, prev: Tensor, done: list[Tensor], p: Plan) -> Tensor:
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
    p.aliases.setdefault(prev.name, []).append(name)
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
