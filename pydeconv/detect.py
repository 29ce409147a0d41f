"""Detector units: boxes decoded from a YOLO net's raw head outputs, each mapped back to the one
head activation that produced it, so that ``net.project(trace, **det.unit)`` shows what drove it.

NumPy only. Three layouts of the raw head tensors (the graph outputs, no post-processing in the
graph), each head one (N, C, H, W) tensor whose stride is the input size over H and W, and two of
whole graphs' decoded outputs:

- ``"darknet"``, Darknet's ``[yolo]`` layer (YOLOv3/v4, -tiny): ``C = A * (5 + classes)``, per
  anchor ``a`` the channels ``a*(5+classes) + (tx, ty, tw, th, objectness, class 0, ...)``.
  ``cx = (x + sigmoid(tx) * s - (s - 1) / 2) * stride`` with ``s = scale_x_y`` (1 by default),
  ``w = exp(tw) * anchor_w`` (anchors in input pixels, the cfg's ``anchors`` picked by ``mask``),
  likewise ``cy``, ``h``; score of class ``k`` = ``sigmoid(objectness) * sigmoid(class k)``
  (Darknet's and OpenCV's probability).
- ``"v5"``, Ultralytics YOLOv5's ``Detect`` head before its decode: the same channel layout,
  ``cx = (x + 2 sigmoid(tx) - 0.5) * stride``, ``w = (2 sigmoid(tw))^2 * anchor_w``, the same
  score. Default anchors: :data:`V5_ANCHORS` (P3/8, P4/16, P5/32).
- ``"v8"``, Ultralytics YOLOv8's anchor-free head (``cat(cv2, cv3)`` before ``DFL``):
  ``C = 4 * reg_max + classes`` (``reg_max`` 16): channels ``side * reg_max + bin`` for the sides
  (left, top, right, bottom), each a distribution whose softmax expectation is the distance in
  grid cells from the cell centre ``(x + 0.5, y + 0.5)``; then one logit per class, score =
  ``sigmoid(logit)``; no objectness.
- ``"v5_decoded"``, a YOLOv5 export imported whole, post-processing included: its one output
  ``(N, boxes, 1, 5 + classes)`` (ONNX's ``(N, boxes, 5 + classes)``) holds per box ``(cx, cy, w,
  h)`` in input pixels, the objectness and the class scores, all already ``sigmoid``-ed; score of
  class ``k`` = objectness * class score (Ultralytics' ``non_max_suppression``). The unit of a
  detection is its class score, channel ``box`` at ``(0, 5 + k)``, projected by its exact
  gradient through the decode as for ``"v8_decoded"``.
- ``"v8_decoded"``, a YOLOv8 export imported whole, post-processing included: its one output
  ``(N, 4 + classes, 1, anchors)`` (ONNX's ``(N, 4 + classes, anchors)``, docs/FORMAT.md's rank-3
  convention) holds per anchor ``(cx, cy, w, h)`` in input pixels and the class scores, already
  ``sigmoid``-ed. The unit of a detection is its class score itself, channel ``4 + k`` at
  ``(0, anchor)``: every decode layer is a gradient layer, so its projection is the score's exact
  gradient down to the trunk (the rules differ only at the trunk's rectifying activations).

Which unit a detection records: the **class logit of its winning class** at its cell and anchor
(Darknet/v5: channel ``a*(5+classes) + 5 + k``, v8: ``4*reg_max + k``). That logit is the only
activation of the head whose value is specific to the class that was reported: the objectness
(``Detection.objectness_channel``, Darknet/v5 only) is shared by every class of that anchor and
says "something is here", the box channels say where. Projecting the class logit answers "what
made the net call this a cup"; project ``objectness_channel`` at the same ``at`` for "what made
it see an object here". The activation ``trace.activation(layer)[sample, channel, y, x]`` is
exactly ``Detection.logit``.

Boxes are ``(x1, y1, x2, y2)`` in network input pixels; :class:`Resize` (pydeconv's own
preprocessing: a plain resize to the input size) and :class:`Letterbox` (Ultralytics' resize that
keeps the aspect ratio and pads) map them back to the original image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PydeconvError, ShapeError

LAYOUTS = ("darknet", "v5", "v8", "v8_decoded", "v5_decoded")
_DECODED = ("v8", "v8_decoded", "v5_decoded")  # the anchor-free or already decoded layouts
# Ultralytics YOLOv5's default anchors (models/yolov5s.yaml), input pixels, per stride 8, 16, 32.
V5_ANCHORS: tuple[tuple[tuple[float, float], ...], ...] = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)
REG_MAX = 16


class DetectionError(PydeconvError):
    """A model without a detection head this module can decode, or a head that does not match
    the layout it was given."""


@dataclass(frozen=True)
class Head:
    """One detection head: the layer whose output is the raw head tensor, and how to read it.

    ``anchors``: (w, h) in input pixels, one per anchor of this head (Darknet/v5), in channel
    order; ``anchor_ids``: their indices in the model's full anchor list (Darknet's ``mask``),
    for reporting. ``classes``: the class count; ``scale_x_y``: Darknet's (1 = off);
    ``new_coords``: Darknet's ``new_coords=1`` (Scaled-YOLOv4, YOLOv7): the head tensor already
    went through a logistic activation, ``w = 4 v^2 anchor_w`` and the score is the product of
    the values themselves."""

    layer: str
    layout: str
    classes: int
    anchors: tuple[tuple[float, float], ...] = ()
    anchor_ids: tuple[int, ...] = ()
    scale_x_y: float = 1.0
    reg_max: int = REG_MAX
    new_coords: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise DetectionError(
                f"head '{self.layer}': unknown layout {self.layout!r} (expected one of "
                f"{', '.join(LAYOUTS)})"
            )
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 1:
            raise DetectionError(
                f"head '{self.layer}': classes must be a positive integer, got {self.classes!r}"
            )
        if self.layout not in _DECODED:
            if not self.anchors:
                raise DetectionError(f"head '{self.layer}': the {self.layout} layout needs anchors")
            for a in self.anchors:
                if len(a) != 2 or not all(math.isfinite(v) and v > 0 for v in a):
                    raise DetectionError(
                        f"head '{self.layer}': anchors must be positive (w, h) pairs, got {a!r}"
                    )
        if not (math.isfinite(self.scale_x_y) and self.scale_x_y >= 1.0):
            raise DetectionError(
                f"head '{self.layer}': scale_x_y must be >= 1, got {self.scale_x_y!r}"
            )
        if self.reg_max < 1:
            raise DetectionError(f"head '{self.layer}': reg_max must be >= 1")

    @property
    def channels(self) -> int:
        """The channel count the head tensor must have."""
        if self.layout == "v8":
            return 4 * self.reg_max + self.classes
        if self.layout == "v8_decoded":
            return 4 + self.classes
        if self.layout == "v5_decoded":
            return 5 + self.classes  # along W: the channels are the boxes
        return len(self.anchors) * (5 + self.classes)


@dataclass
class Detection:
    """One decoded box and the head activation behind it.

    ``box``: (x1, y1, x2, y2) in network input pixels; ``image_box``: the same in the original
    image when the caller gave a mapping (:func:`detect`), else None. ``layer``, ``channel``,
    ``y``, ``x``: the unit (the winning class's logit, see the module's notes); ``logit``: its
    value; ``anchor``: the anchor's index within the head (None for v8), ``anchor_id`` its index
    in the model's anchor list (Darknet's mask), ``objectness_channel``: the objectness logit of
    that anchor (None for v8)."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    label: str | None
    layer: str
    channel: int
    y: int
    x: int
    logit: float
    anchor: int | None = None
    anchor_id: int | None = None
    objectness_channel: int | None = None
    head: int = 0
    sample: int = 0
    image_box: tuple[float, float, float, float] | None = field(default=None)

    @property
    def unit(self) -> dict[str, Any]:
        """``net.project(trace, **det.unit)``: layer, channel and position of the class logit."""
        return {"layer": self.layer, "channel": self.channel, "at": (self.y, self.x)}

    @property
    def name(self) -> str:
        return self.label if self.label is not None else f"class {self.class_id}"

    def describe(self) -> str:
        box = self.image_box if self.image_box is not None else self.box
        anchor = "" if self.anchor is None else f", anchor {self.anchor}"
        return (
            f"{self.name} {self.score:.3f} box ({', '.join(f'{v:.1f}' for v in box)}): "
            f"{self.layer} channel {self.channel} at (y={self.y}, x={self.x}){anchor}, "
            f"logit {self.logit:.4g}"
        )


# --- image mappings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Resize:
    """A plain resize of an image of ``image_size`` (W, H) to the input ``input_size`` (W, H):
    pydeconv's preprocessing (``image.from_pil``), Darknet's and OpenCV's ``blobFromImage``."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]

    def to_image(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        sx = self.image_size[0] / self.input_size[0]
        sy = self.image_size[1] / self.input_size[1]
        x1, y1, x2, y2 = (float(v) for v in box)
        return _clip_box((x1 * sx, y1 * sy, x2 * sx, y2 * sy), self.image_size)


@dataclass(frozen=True)
class Letterbox:
    """Ultralytics' letterbox: scale by ``gain`` keeping the aspect ratio, then pad by
    (``pad_x``, ``pad_y``) on the left and top to the input size. :func:`letterbox` makes one."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    gain: float
    pad_x: float
    pad_y: float

    def to_image(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        g = self.gain
        return _clip_box(
            (
                (x1 - self.pad_x) / g,
                (y1 - self.pad_y) / g,
                (x2 - self.pad_x) / g,
                (y2 - self.pad_y) / g,
            ),
            self.image_size,
        )


def _clip_box(box: Sequence[float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    w, h = size
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0.0), w),
        min(max(y1, 0.0), h),
        min(max(x2, 0.0), w),
        min(max(y2, 0.0), h),
    )


def letterbox(img: Any, net: Any, color: int = 114) -> tuple[np.ndarray, Letterbox]:
    """A PIL image letterboxed to ``net``'s input (Ultralytics: bilinear resize keeping the aspect
    ratio, centred, padded with grey ``color``) and preprocessed like ``image.from_pil``; returns
    the (1, C, H, W) input and the :class:`Letterbox` that maps boxes back."""
    from PIL import Image

    from . import image as pimg

    h, w = (int(v) for v in net.preprocess["size"])
    iw, ih = img.size
    gain = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * gain)), max(1, round(ih * gain))
    pad_x, pad_y = (w - nw) / 2, (h - nh) / 2
    canvas = Image.new("RGB", (w, h), (color, color, color))
    rgb = img.convert("RGB")
    canvas.paste(rgb.resize((nw, nh), Image.Resampling.BILINEAR), (int(pad_x), int(pad_y)))
    mapping = Letterbox((iw, ih), (w, h), gain, float(int(pad_x)), float(int(pad_y)))
    return pimg.from_pil(canvas, net), mapping


# --- decoding --------------------------------------------------------------------------------


def _sigmoid(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _head_tensor(outputs: Any, head: Head, sample: int) -> np.ndarray:
    if isinstance(outputs, Mapping):
        if head.layer not in outputs:
            raise DetectionError(
                f"head '{head.layer}' is not among the outputs ({', '.join(map(str, outputs))})"
            )
        t = outputs[head.layer]
    else:
        t = outputs
    t = np.asarray(t)
    if head.layout in ("v8_decoded", "v5_decoded") and t.ndim == 3:
        t = t[:, :, None, :]  # ONNX's (N, 4 + classes, anchors) or (N, boxes, 5 + classes)
    if t.ndim != 4:
        raise ShapeError(f"head '{head.layer}': expected an (N, C, H, W) tensor, got {t.shape}")
    if head.layout == "v5_decoded":
        if t.shape[2] != 1 or t.shape[3] != head.channels:
            raise ShapeError(
                f"head '{head.layer}' (v5_decoded): expected (N, boxes, 1, 5 + {head.classes} "
                f"classes), got {t.shape}"
            )
    elif t.shape[1] != head.channels:
        what = {
            "v8": f"4*{head.reg_max} + {head.classes} classes",
            "v8_decoded": f"4 + {head.classes} classes",
        }.get(head.layout, f"{len(head.anchors)} anchors x (5 + {head.classes} classes)")
        raise ShapeError(
            f"head '{head.layer}' ({head.layout}): {t.shape[1]} channels, expected "
            f"{head.channels} ({what})"
        )
    if not 0 <= sample < t.shape[0]:
        raise DetectionError(f"sample {sample} out of range for a batch of {t.shape[0]}")
    return t[sample].astype(np.float64)


def _v5_decoded_candidates(t: np.ndarray, conf: float) -> list[tuple]:
    """A whole YOLOv5's (boxes, 1, 5 + classes) rows: cx, cy, w, h, objectness, class scores."""
    rows = t[:, 0, :]
    cls = rows[:, 5:]
    best = np.argmax(cls, axis=1)
    scores = rows[:, 4] * cls[np.arange(len(rows)), best]
    out: list[tuple] = []
    for i in np.nonzero(scores >= conf)[0]:
        cx, cy, w, h = (float(v) for v in rows[i, :4])
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        winner = int(best[i])
        out.append((float(scores[i]), box, winner, int(i), 0, 5 + winner, None, None))
    return out


def _candidates(t: np.ndarray, head: Head, input_hw: tuple[int, int], conf: float) -> list[tuple]:
    """Per cell (and anchor) the winning class above ``conf``: tuples (score, box, class,
    channel, y, x, anchor, objectness channel)."""
    if head.layout == "v5_decoded":  # rows of boxes, not a grid
        return _v5_decoded_candidates(t, conf)
    c, gh, gw = t.shape
    ih, iw = input_hw
    sy, sx = ih / gh, iw / gw
    gy, gx = np.meshgrid(
        np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij"
    )
    out: list[tuple] = []
    if head.layout == "v8_decoded":
        if gh != 1:
            raise ShapeError(
                f"head '{head.layer}' (v8_decoded): expected ({c}, 1, anchors), got {t.shape}"
            )
        cx, cy, w, h = t[:4, 0]
        scores = t[4:, 0]
        best = np.argmax(scores, axis=0)
        top = np.take_along_axis(scores, best[None], axis=0)[0]
        for i in np.nonzero(top >= conf)[0]:
            winner = int(best[i])
            corners = (cx[i] - w[i] / 2, cy[i] - h[i] / 2, cx[i] + w[i] / 2, cy[i] + h[i] / 2)
            box_xyxy = tuple(float(v) for v in corners)
            out.append((float(top[i]), box_xyxy, winner, 4 + winner, 0, int(i), None, None))
        return out
    if head.layout == "v8":
        r, k = head.reg_max, head.classes
        dist = t[: 4 * r].reshape(4, r, gh, gw)
        dist = np.exp(dist - dist.max(axis=1, keepdims=True))
        dist /= dist.sum(axis=1, keepdims=True)
        d = np.tensordot(np.arange(r, dtype=np.float64), dist, axes=(0, 1))  # (4, gh, gw)
        cx, cy = gx + 0.5, gy + 0.5
        boxes = np.stack([(cx - d[0]) * sx, (cy - d[1]) * sy, (cx + d[2]) * sx, (cy + d[3]) * sy])
        logits = t[4 * r :]
        best = np.argmax(logits, axis=0)
        scores = _sigmoid(np.take_along_axis(logits, best[None], axis=0)[0])
        for y, x in zip(*np.nonzero(scores >= conf)):
            cls = int(best[y, x])
            box = tuple(float(v) for v in boxes[:, y, x])
            out.append((float(scores[y, x]), box, cls, 4 * r + cls, int(y), int(x), None, None))
        return out
    k = head.classes
    for a, (aw, ah) in enumerate(head.anchors):
        base = a * (5 + k)
        tx, ty, tw, th, to = (t[base + i] for i in range(5))
        logits = t[base + 5 : base + 5 + k]
        act = (lambda v: v) if head.new_coords else _sigmoid
        if head.layout == "darknet":
            s = head.scale_x_y
            cx = (gx + act(tx) * s - (s - 1) / 2) * sx
            cy = (gy + act(ty) * s - (s - 1) / 2) * sy
            if head.new_coords:
                w, h = 4 * tw**2 * aw, 4 * th**2 * ah
            else:
                with np.errstate(over="ignore"):
                    w, h = np.exp(tw) * aw, np.exp(th) * ah
        else:  # v5
            cx = (gx + 2 * _sigmoid(tx) - 0.5) * sx
            cy = (gy + 2 * _sigmoid(ty) - 0.5) * sy
            w, h = (2 * _sigmoid(tw)) ** 2 * aw, (2 * _sigmoid(th)) ** 2 * ah
        best = np.argmax(logits, axis=0)
        scores = act(to) * act(np.take_along_axis(logits, best[None], axis=0)[0])
        for y, x in zip(*np.nonzero(scores >= conf)):
            cls = int(best[y, x])
            bw, bh, bx, by = w[y, x], h[y, x], cx[y, x], cy[y, x]
            if not (math.isfinite(bw) and math.isfinite(bh)):
                continue  # exp overflow: no box to show
            box = (bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2)
            out.append(
                (
                    float(scores[y, x]),
                    tuple(float(v) for v in box),
                    cls,
                    base + 5 + cls,
                    int(y),
                    int(x),
                    a,
                    base + 4,
                )
            )
    return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (0 when both are empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(
    boxes: Sequence[Sequence[float]],
    scores: Sequence[float],
    classes: Sequence[int],
    iou_threshold: float = 0.45,
) -> list[int]:
    """Class-wise greedy non-maximum suppression: the indices kept, by descending score (ties:
    the earlier index first). A box is suppressed by a kept box of the same class whose IoU
    with it is greater than ``iou_threshold``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(classes).reshape(-1)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(s), dtype=bool)
    kept: list[int] = []
    for i in np.argsort(-s, kind="stable"):
        if suppressed[i]:
            continue
        kept.append(int(i))
        iw = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), 0, None)
        inter = iw * ih
        union = area[i] + area - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            overlap = np.where(union > 0, inter / union, 0.0)
        suppressed |= (c == c[i]) & (overlap > iou_threshold)
    return kept


def _check_thresholds(conf: float, iou_threshold: float, max_det: int) -> None:
    for name, v in (("conf", conf), ("iou", iou_threshold)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise DetectionError(f"{name} threshold must be a number in [0, 1], got {v!r}")
    if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
        raise DetectionError(f"max_det must be a positive integer, got {max_det!r}")


def decode(
    outputs: Any,
    heads: Sequence[Head],
    input_hw: tuple[int, int],
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 100,
    labels: Sequence[str] | None = None,
    sample: int = 0,
) -> list[Detection]:
    """The detections of one sample, strongest first.

    ``outputs``: the forward's outputs (a dict by layer name, or the one array of a one-head
    net); ``heads``: what each output is (:func:`heads`); ``input_hw``: the network input's
    (H, W). Per cell and anchor the winning class is kept when its score is >= ``conf``; then
    class-wise NMS (``iou``), at most ``max_det`` boxes."""
    _check_thresholds(conf, iou, max_det)
    if not heads:
        raise DetectionError("no detection heads to decode")
    if not isinstance(outputs, Mapping) and len(heads) > 1:
        raise DetectionError(
            f"{len(heads)} heads need the outputs as a dict by layer name, not one array"
        )
    cands: list[tuple] = []
    tensors = [_head_tensor(outputs, head, sample) for head in heads]
    for index, (head, t) in enumerate(zip(heads, tensors)):
        for cand in _candidates(t, head, input_hw, conf):
            cands.append((*cand, index))
    keep = nms([c[1] for c in cands], [c[0] for c in cands], [c[2] for c in cands], iou)
    dets = []
    for i in keep[:max_det]:
        score, box, cls, channel, y, x, anchor, obj, index = cands[i]
        head, t = heads[index], tensors[index]
        dets.append(
            Detection(
                box=box,
                score=score,
                class_id=cls,
                label=labels[cls] if labels is not None and cls < len(labels) else None,
                layer=head.layer,
                channel=channel,
                y=y,
                x=x,
                logit=float(t[channel, y, x]),
                anchor=anchor,
                anchor_id=(
                    head.anchor_ids[anchor]
                    if anchor is not None and anchor < len(head.anchor_ids)
                    else None
                ),
                objectness_channel=obj,
                head=index,
                sample=sample,
            )
        )
    return dets


# --- finding the heads -----------------------------------------------------------------------


def parse_anchors(text: str) -> list[list[tuple[float, float]]]:
    """Anchors per head from text: heads separated by ``;``, pairs ``W,H`` separated by spaces,
    e.g. ``"10,14 23,27 37,58; 81,82 135,169 344,319"`` (input pixels, in output order)."""
    groups = []
    for part in text.split(";"):
        nums = [v for v in re.split(r"[\s,]+", part.strip()) if v]
        if not nums or len(nums) % 2:
            raise DetectionError(f"anchors {text!r}: each head needs W,H pairs")
        try:
            vals = [float(v) for v in nums]
        except ValueError:
            raise DetectionError(f"anchors {text!r}: not numbers") from None
        groups.append([(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)])
    return groups


def darknet_heads(cfg: str | PathLike[str], outputs: Sequence[str]) -> list[Head]:
    """The ``[yolo]`` sections of a Darknet cfg as heads on the graph ``outputs`` (one output per
    ``[yolo]``, in cfg order: the Darknet importer's graph outputs)."""
    path = Path(cfg)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DetectionError(f"{path}: cannot read the cfg ({exc.strerror or exc})") from None
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line.strip("[] ").lower(), {}))
        elif "=" in line and sections:
            k, v = line.split("=", 1)
            sections[-1][1][k.strip()] = v.strip()
    first = 1 if sections and sections[0][0] in ("net", "network") else 0
    yolos = [(i - first, opts) for i, (name, opts) in enumerate(sections) if name == "yolo"]
    if not yolos:
        raise DetectionError(f"{path}: no [yolo] section: the model has no detection head")
    if len(yolos) != len(outputs):
        raise DetectionError(
            f"{path}: {len(yolos)} [yolo] sections but the graph has {len(outputs)} outputs"
        )
    heads = []
    for (i, opts), layer in zip(yolos, outputs):
        where = f"{path}: [yolo] layer {i}"
        meta = yolo_metadata(opts, where)
        heads.append(head_from_yolo(layer, meta, where))
    return heads


def yolo_metadata(opts: Mapping[str, str], where: str = "[yolo]") -> dict[str, Any]:
    """A ``[yolo]`` section's fields (strings, as in the cfg) as numbers."""
    try:
        anchors = [float(v) for v in opts.get("anchors", "").replace(" ", "").split(",") if v]
        classes = int(opts.get("classes", "20"))
        mask_text = opts.get("mask", "")
        mask = [int(v) for v in mask_text.replace(" ", "").split(",") if v]
        scale = float(opts.get("scale_x_y", "1"))
        new_coords = int(opts.get("new_coords", "0"))
    except ValueError as exc:
        raise DetectionError(f"{where}: bad number ({exc})") from None
    if len(anchors) % 2:
        raise DetectionError(f"{where}: field 'anchors' has an odd count of numbers")
    pairs = [(anchors[i], anchors[i + 1]) for i in range(0, len(anchors), 2)]
    if not mask:
        mask = list(range(len(pairs)))
    return {
        "anchors": pairs,
        "mask": mask,
        "classes": classes,
        "scale_x_y": scale,
        "new_coords": new_coords,
    }


def head_from_yolo(layer: str, meta: Mapping[str, Any], where: str = "[yolo]") -> Head:
    """A darknet :class:`Head` from ``[yolo]`` metadata: ``anchors`` (all pairs, or a flat
    list), ``mask``, ``classes``, optional ``scale_x_y`` and ``new_coords``."""
    raw = [float(v) for v in np.asarray(meta["anchors"], dtype=np.float64).reshape(-1)]
    pairs = [(raw[i], raw[i + 1]) for i in range(0, len(raw) - 1, 2)]
    mask = [int(v) for v in meta.get("mask") or range(len(pairs))]
    for m in mask:
        if not 0 <= m < len(pairs):
            raise DetectionError(
                f"{where}: field 'mask' names anchor {m} but there are {len(pairs)}"
            )
    return Head(
        layer=layer,
        layout="darknet",
        classes=int(meta["classes"]),
        anchors=tuple(pairs[m] for m in mask),
        anchor_ids=tuple(mask),
        scale_x_y=float(meta.get("scale_x_y", 1.0) or 1.0),
        new_coords=bool(int(meta.get("new_coords", 0) or 0)),
    )


def head_from_metadata(record: Mapping[str, Any]) -> Head:
    """A darknet :class:`Head` from one ``[yolo]`` record of a Darknet import
    (``net.metadata["darknet"]["yolo"]``: ``layer``, ``classes``, ``mask``, ``anchors`` (the
    masked pairs, in channel order), ``scale_x_y``, ``new_coords``)."""
    where = f"[yolo] head {record.get('name', '?')!s}"
    try:
        pairs = [(float(w), float(h)) for w, h in record["anchors"]]
        mask = tuple(int(m) for m in record.get("mask") or range(len(pairs)))
        return Head(
            layer=str(record["layer"]),
            layout="darknet",
            classes=int(record["classes"]),
            anchors=tuple(pairs),
            anchor_ids=mask,
            scale_x_y=float(record.get("scale_x_y", 1.0) or 1.0),
            new_coords=bool(int(record.get("new_coords", 0) or 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DetectionError(f"{where}: unreadable metadata ({exc!r})") from None


def heads(
    net: Any,
    layout: str | None = None,
    anchors: Sequence[Sequence[Sequence[float]]] | None = None,
    classes: int | None = None,
    cfg: str | PathLike[str] | None = None,
) -> list[Head]:
    """The detection heads of ``net``, one per graph output.

    In order: the ``[yolo]`` records a Darknet import keeps in the graph's metadata (or the
    ``[yolo]`` sections of ``cfg``, one per graph output);
    else ``anchors`` (one list of (w, h) per output) with ``layout`` "darknet" (the default) or
    "v5"; else ``layout="v5"`` with :data:`V5_ANCHORS` on three outputs; else a whole YOLOv5
    graph (``"v5_decoded"``), when its one output is (boxes, 1, 5 + classes) with more boxes than
    columns; else a whole YOLOv8
    graph (``"v8_decoded"``), when its one output is (4 + classes, 1, anchors); else YOLOv8,
    when every output has ``4*16 + classes`` channels (``classes`` from the argument or the
    net's labels, else every output's channel count past 64 agreeing). Anything else:
    DetectionError saying what is missing."""
    outs = list(net.outputs)
    if layout is not None and layout not in LAYOUTS:
        raise DetectionError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    meta = _attached_yolo(net)
    if cfg is not None:
        return darknet_heads(cfg, outs)
    if meta and anchors is None and layout in (None, "darknet"):
        return [head_from_metadata(m) for m in meta]
    shapes = {o: tuple(net.layer_info(o)["shape"]) for o in outs}
    for o, s in shapes.items():
        if len(s) != 3:
            raise DetectionError(
                f"the model has no detection head: output '{o}' has shape {s}, not a (C, H, W) map"
            )
    labels = getattr(net, "labels", None)
    if anchors is None and layout == "v5":
        if len(outs) != len(V5_ANCHORS):
            raise DetectionError(
                f"layout v5 without anchors needs the 3 heads of YOLOv5 (strides 8, 16, 32); "
                f"the model has {len(outs)} outputs: give the anchors"
            )
        anchors = V5_ANCHORS
    if anchors is not None:
        lay = layout or "darknet"
        if lay in _DECODED:
            raise DetectionError(f"layout {lay} is anchor-free: do not give anchors")
        if len(anchors) != len(outs):
            raise DetectionError(
                f"{len(anchors)} anchor groups for {len(outs)} outputs (one group per output)"
            )
        out = []
        for o, group in zip(outs, anchors):
            a = len(group)
            c = shapes[o][0]
            if a < 1 or c % a or c // a < 6:
                raise DetectionError(
                    f"output '{o}' has {c} channels: not {a} anchors x (5 + classes)"
                )
            k = c // a - 5
            if classes is not None and classes != k:
                raise DetectionError(
                    f"output '{o}' has {c} channels: {k} classes per anchor, not {classes}"
                )
            pairs = tuple((float(w), float(h)) for w, h in group)
            out.append(Head(o, lay, k, pairs, tuple(range(a))))
        return out
    if layout in (None, "v5_decoded"):
        # A whole YOLOv5 graph: one (boxes, 1, 5 + classes) output, more boxes than columns.
        k = classes if classes is not None else (len(labels) if labels else None)
        if len(outs) == 1:
            c, h, w = shapes[outs[0]]
            if h == 1 and w >= 6 and c > w and (k is None or w == 5 + k):
                return [Head(outs[0], "v5_decoded", w - 5)]
        if layout == "v5_decoded":
            raise DetectionError(
                "layout v5_decoded: needs one (boxes, 1, 5 + classes) output; got "
                + ", ".join(f"'{o}' {'x'.join(map(str, shapes[o]))}" for o in outs)
            )
    if layout in (None, "v8_decoded"):
        # A whole YOLOv8 graph: one (4 + classes, 1, anchors) output (fewer channels than a raw
        # head's 4*16 + classes, unless the classes say otherwise).
        k = classes if classes is not None else (len(labels) if labels else None)
        decoded = [
            o
            for o in outs
            if shapes[o][1] == 1
            and shapes[o][0] > 4
            and (shapes[o][0] == 4 + k if k is not None else shapes[o][0] <= 4 * REG_MAX)
        ]
        if len(outs) == 1 and decoded:
            return [Head(outs[0], "v8_decoded", shapes[outs[0]][0] - 4)]
        if layout == "v8_decoded":
            raise DetectionError(
                "layout v8_decoded: needs one (4 + classes, 1, anchors) output; got "
                + ", ".join(f"'{o}' {'x'.join(map(str, shapes[o]))}" for o in outs)
            )
    if layout in (None, "v8"):
        k = classes if classes is not None else (len(labels) if labels else None)
        extra = {shapes[o][0] - 4 * REG_MAX for o in outs}
        if k is None and len(extra) == 1 and min(extra) >= 1:
            k = extra.pop()
        if k is not None and all(shapes[o][0] == 4 * REG_MAX + k for o in outs):
            return [Head(o, "v8", k) for o in outs]
        if layout == "v8":
            raise DetectionError(
                "layout v8: every output needs 4*16 + classes channels; got "
                + ", ".join(f"'{o}' {shapes[o][0]}" for o in outs)
            )
    raise DetectionError(
        "the model has no detection head pydeconv can decode: its outputs ("
        + ", ".join(f"'{o}' {'x'.join(map(str, shapes[o]))}" for o in outs)
        + ") are not YOLOv8 heads (4*16 + classes channels) nor a whole YOLOv8's (4 + classes, "
        "1, anchors) output, and no Darknet [yolo] metadata "
        "or anchors were given"
    )


def has_darknet_heads(net: Any) -> bool:
    """Whether ``net`` came from a Darknet import that recorded ``[yolo]`` heads."""
    return bool(_attached_yolo(net))


def _attached_yolo(net: Any) -> list[Mapping[str, Any]]:
    """The [yolo] records a Darknet import kept in the graph's metadata (docs/DARKNET.md), or
    an empty list."""
    graph = getattr(net, "graph", None)
    meta = graph.get("metadata") if isinstance(graph, Mapping) else None
    darknet = meta.get("darknet") if isinstance(meta, Mapping) else None
    yolo = darknet.get("yolo") if isinstance(darknet, Mapping) else None
    return [m for m in yolo if isinstance(m, Mapping)] if isinstance(yolo, list) else []


def detect(
    net: Any,
    x: np.ndarray | None = None,
    outputs: Any = None,
    head_list: Sequence[Head] | None = None,
    mapping: Resize | Letterbox | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 100,
    sample: int = 0,
    threads: int | None = None,
) -> tuple[list[Detection], Any]:
    """Runs ``net`` on ``x`` (or decodes ``outputs`` already computed) and returns
    ``(detections, trace)`` (trace None when ``outputs`` were given). ``mapping`` fills in each
    detection's ``image_box``. The trace keeps every layer, so each detection's unit can be
    projected: ``net.project(trace, **det.unit)``."""
    hs = list(head_list) if head_list is not None else heads(net)
    trace = None
    if outputs is None:
        if x is None:
            raise DetectionError("detect needs an input x or the outputs of a forward pass")
        outputs, trace = net.forward(x, threads=threads)
    if not isinstance(outputs, Mapping):
        outputs = {net.outputs[0]: outputs}
    _, h, w = net.input_shape
    dets = decode(outputs, hs, (h, w), conf, iou, max_det, net.labels, sample)
    if mapping is not None:
        for d in dets:
            d.image_box = mapping.to_image(d.box)
    return dets, trace


def draw_box(
    img: Any,
    box: Sequence[float],
    text: str | None = None,
    color: tuple[int, int, int] = (255, 0, 0),
    width: int = 2,
) -> Any:
    """A copy of a PIL image with a box (x1, y1, x2, y2) and an optional label drawn on it."""
    from PIL import ImageDraw

    from . import image as pimg

    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0), out.width - 1), min(max(x2, 0), out.width - 1)))
    y1, y2 = sorted((min(max(y1, 0), out.height - 1), min(max(y2, 0), out.height - 1)))
    draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
    if text:
        font = pimg.caption_font()
        tb = draw.textbbox((0, 0), text, font=font)
        ty = y1 - (tb[3] - tb[1]) - 3 if y1 - (tb[3] - tb[1]) - 3 >= 0 else y1 + 1
        draw.rectangle((x1, ty, x1 + tb[2] - tb[0] + 3, ty + tb[3] - tb[1] + 2), fill=color)
        draw.text((x1 + 1, ty), text, fill=(255, 255, 255), font=font)
    return out


def describe_heads(hs: Sequence[Head]) -> str:
    return "; ".join(
        f"{h.layer} ({h.layout}, {h.classes} classes"
        + (f", anchors {list(h.anchors)}" if h.anchors else "")
        + ")"
        for h in hs
    )


__all__ = [
    "LAYOUTS",
    "V5_ANCHORS",
    "DetectionError",
    "Head",
    "Detection",
    "Resize",
    "Letterbox",
    "letterbox",
    "decode",
    "nms",
    "iou",
    "heads",
    "has_darknet_heads",
    "darknet_heads",
    "head_from_yolo",
    "head_from_metadata",
    "yolo_metadata",
    "parse_anchors",
    "detect",
    "draw_box",
    "describe_heads",
]
