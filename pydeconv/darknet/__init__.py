"""Darknet import, in pure Python (NumPy only): a ``.cfg`` and its ``.weights`` -> a graph dict.

``import_darknet(cfg, weights, preprocess=None, labels=None) -> (graph, params)`` returns the graph
dict of docs/FORMAT.md and its ``"LAYER/PARAM"`` float32 arrays, ready for ``pydeconv.build``;
``pydeconv.load("yolov3-tiny.cfg", weights="yolov3-tiny.weights")`` and ``pydeconv convert CFG
WEIGHTS OUT.npz`` go through it. What is read, how, and what is refused: docs/DARKNET.md.

Preprocessing. Darknet feeds RGB scaled to [0, 1] (no mean, no std). pjreddie's ``detector test``
letterboxes the image (aspect kept, grey 0.5 borders); AlexeyAB's fork stretches it to the
network size unless ``[net] letter_box=1``; OpenCV's samples stretch it
(``blobFromImage(img, 1/255, size, swapRB=True)``). The format's ``preprocess`` stretches, so the
converter records RGB, scale 1/255, mean 0, std 1 at the cfg's ``width x height`` (or
``preprocess["size"]``: a fully convolutional Darknet net runs at any size that its strides
divide, as OpenCV's reader does); ``letter_box`` is kept in the metadata for whoever decodes.

Metadata. The graph's ``metadata["darknet"]`` holds what decoding the ``[yolo]`` heads needs: per
head its name, the layer whose raw output it decodes (a graph output), ``classes``, ``mask``,
``anchors`` (the masked ones, in input pixels of the network size), ``scale_x_y`` and
``new_coords``; also the weights header and [net] letter_box.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, PydeconvError
from .cfg import Section, parse_cfg
from .convert import Plan, finish, plan
from .weights import read_blobs

__all__ = ["import_darknet", "read_cfg", "yolo_heads"]


def read_cfg(path: str | os.PathLike) -> list[Section]:
    """The sections of a cfg file (errors name the file)."""
    label = os.path.basename(os.fspath(path)) or os.fspath(path)
    try:
        return parse_cfg(_text(path))
    except PydeconvError as exc:
        raise type(exc)(f"{label}: {exc}") from None


def import_darknet(
    cfg: str | os.PathLike,
    weights: str | os.PathLike | None,
    preprocess: dict | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a Darknet cfg and its weights; return (graph dict, {"LAYER/PARAM": float32 array}).

    ``weights=None`` gives the layer table only: every parameter zero (``pydeconv info`` on a cfg
    without its weights). Every error is a ``pydeconv.errors`` exception whose message starts
    with the file it concerns; nothing partial is returned."""
    cfg = os.fspath(cfg)
    label = os.path.basename(cfg) or cfg
    size = _size(preprocess)
    try:
        sections = parse_cfg(_text(cfg))
        p = plan(sections, size)
        name = os.path.splitext(label)[0]
        graph = _graph(name, p, preprocess, labels)
    except PydeconvError as exc:
        raise type(exc)(f"{label}: {exc}") from None
    header = None
    arrays = None
    if weights is not None:
        wlabel = os.path.basename(os.fspath(weights)) or os.fspath(weights)
        try:
            header, arrays = read_blobs(weights, p.blobs)
            params = finish(p, arrays)
        except PydeconvError as exc:
            raise type(exc)(f"{wlabel}: {exc}") from None
        v = f"{header.major}.{header.minor}.{header.revision}"
        graph["metadata"]["darknet"]["weights"] = {"version": v, "seen": header.seen}
    else:
        params = finish(p, None)
    return graph, params


def yolo_heads(graph: dict) -> list[dict]:
    """The ``[yolo]`` heads a Darknet import recorded (empty for any other graph)."""
    meta = graph.get("metadata") or {}
    return [dict(h) for h in (meta.get("darknet") or {}).get("yolo", [])]


def _text(path: str | os.PathLike) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelFormatError(f"cannot read the cfg ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(
            f"the cfg is not text (byte {exc.start} is not UTF-8); is this a .weights file?"
        ) from None


def _size(preprocess: Any) -> list[int] | None:
    size = (preprocess or {}).get("size") if isinstance(preprocess, dict) else None
    if size is None:
        return None
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
        )
    ):
        raise GraphError(f"preprocess 'size' must be two positive integers [H, W], got {size!r}")
    return [int(size[0]), int(size[1])]


def _graph(name: str, p: Plan, preprocess: dict | None, labels: Sequence[str] | None) -> dict:
    c, h, w = p.input_shape
    pre: dict[str, Any] = {"size": [h, w], "channel_order": "RGB", "scale": 1 / 255}
    pre.update(preprocess or {})
    graph: dict[str, Any] = {
        "format": "pydeconv",
        "version": 1,
        "name": name,
        "input": {"name": "input", "shape": [c, h, w]},
        "preprocess": pre,
    }
    if labels is not None:
        labels = [str(v) for v in labels]
        classes = {head["classes"] for head in p.yolo}
        if classes and classes != {len(labels)}:
            raise GraphError(
                f"{len(labels)} labels given, the [yolo] heads have "
                f"{' and '.join(str(n) for n in sorted(classes))} classes"
            )
        graph["labels"] = labels
    graph["layers"] = p.layers
    graph["outputs"] = p.outputs
    graph["metadata"] = {"darknet": {"letter_box": p.letter_box, "yolo": p.yolo}}
    return graph
