"""Occlusion sensitivity (Zeiler & Fergus Fig. 7): a square slid over the image, one forward per
position, batched.

The square is applied to the **preprocessed input**: every input channel inside the square is set
to the fill value (:func:`pydeconv.analysis.outputs.fill_values`: by default 0, the model's mean
pixel; ``"grey"`` the pixel 128; or a number in preprocessed units). Its top-left corners run
``0, stride, 2*stride, ...`` along each axis while the square fits inside the input; when the last
one leaves a strip at the bottom/right edge uncovered, one more position flush with that edge is
added (so the square reaches every edge, and with ``stride <= size`` covers every pixel; the
offsets are recorded in the report). Per
position, the maps of the paper:

- (b) ``activation``: the total activation (sum over its positions) of the feature map of
  ``layer`` that is strongest on the unoccluded image (largest maximum; or ``channel``);
- (c) ``projection``: that map's projection (from its strongest unit) for the unoccluded image;
- (d) ``probability``: the probability of the predicted class of the unoccluded image, or of
  ``target`` -- the output itself when the net ends in a softmax layer, else the softmax of the
  output (``probability_source`` says which);
- (e) ``top_class``: the most probable class at each position (and ``top_probability``);
- for a detector, instead of (d) and (e): ``score``, the score of one detection's unit (its
  cell, anchor and class in its head; pydeconv.detect's formula) and ``logit``, the unit itself.

Memory: the forwards run ``batch`` occluded copies at a time, lowered so that ``batch`` times
:func:`~pydeconv.analysis.outputs.per_sample_bytes` fits in ``max_memory``; more than
``max_positions`` positions are refused before anything is allocated (raise the stride).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import demo, detect, report
from pydeconv import image as pimg
from pydeconv.analysis import extras, heatmap, outputs
from pydeconv.analysis.reportdir import check_report_folder, report_folder
from pydeconv.errors import ChannelError, PydeconvError, ShapeError
from pydeconv.fileio import write_atomic
from pydeconv.net import RULES

# More positions than this are refused (a 240x240 image at stride 1 with a 16-pixel square has
# 50,625: hours of forwards); raise the stride or pass max_positions.
MAX_POSITIONS = 20_000


def default_size(net: Any) -> int:
    """The square's default side: a sixth of the input's shorter side (40 pixels at 240x240)."""
    _, h, w = net.input_shape
    return max(1, min(int(h), int(w)) // 6)


def offsets(extent: int, size: int, stride: int) -> list[int]:
    """Top-left offsets along one axis (see the module notes): 0, stride, ... while the square
    fits, then one flush with the far edge if the last left pixels uncovered."""
    for name, v in (("size", size), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise PydeconvError(f"the square's {name} must be a positive integer, got {v!r}")
    if size > extent:
        raise PydeconvError(
            f"the square ({size} pixels) is larger than the input ({extent} pixels)"
        )
    out = list(range(0, extent - size + 1, stride))
    if out[-1] != extent - size:
        out.append(extent - size)
    return out


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(v, dtype=np.float64)))


def detection_score(
    outs: Any, head: detect.Head, det: detect.Detection
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the score and the logit of ``det``'s unit (its head, cell, anchor and class)
    in a batch of graph outputs: Darknet/v5 ``s(objectness) * s(logit)`` (``new_coords``: the
    product of the values), v8 ``s(logit)`` (docs/DETECT.md)."""
    t = outs[det.layer] if isinstance(outs, dict) else outs
    t = np.asarray(t, dtype=np.float64)
    logit = t[:, det.channel, det.y, det.x]
    if head.layout == "v8" or det.objectness_channel is None:
        return _sigmoid(logit), logit
    obj = t[:, det.objectness_channel, det.y, det.x]
    if head.new_coords:
        return obj * logit, logit
    return _sigmoid(obj) * _sigmoid(logit), logit


@dataclass
class Occlusion:
    """The maps of one occlusion run; every map is (len(ys), len(xs)), float64 or int64."""

    layer: str
    channel: int
    size: int
    stride: int
    fill: list[float]  # per input channel, preprocessed units
    ys: list[int]  # top-left offsets of the square
    xs: list[int]
    activation: np.ndarray
    baseline_activation: float
    projection: np.ndarray  # (C, H, W), the unoccluded image's
    rule: str
    batch: int
    target: int | None = None
    target_given: bool = False
    probability: np.ndarray | None = None
    baseline_probability: float | None = None
    top_class: np.ndarray | None = None
    top_probability: np.ndarray | None = None
    probability_source: str | None = None
    class_names: list[str] = field(default_factory=list)
    detection: dict | None = None
    score: np.ndarray | None = None
    logit: np.ndarray | None = None

    @property
    def centres_y(self) -> list[float]:
        return [y + (self.size - 1) / 2 for y in self.ys]

    @property
    def centres_x(self) -> list[float]:
        return [x + (self.size - 1) / 2 for x in self.xs]


def occlude(
    net: Any,
    x: np.ndarray,
    layer: str,
    size: int | None = None,
    stride: int | None = None,
    fill: str | float = "mean",
    target: int | None = None,
    channel: int | None = None,
    detection: detect.Detection | None = None,
    heads: Sequence[detect.Head] | None = None,
    rule: str = "deconvnet",
    batch: int = 8,
    max_memory: int = outputs.DEFAULT_MAX_MEMORY,
    max_positions: int | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> Occlusion:
    """Occlusion maps of one preprocessed input ``x`` (1, C, H, W) (module notes). ``detection``
    (with the ``heads`` it was decoded with): a detector's detection, whose unit's score replaces
    the class maps. Every check runs before the first forward."""
    c_in, h, w = (int(v) for v in net.input_shape)
    x = np.asarray(x)
    if x.shape != (1, c_in, h, w):
        raise ShapeError(f"x must be one preprocessed input of shape (1, {c_in}, {h}, {w})")
    n_ch = outputs.feature_map(net, layer)[0]
    if rule not in RULES:
        raise PydeconvError(f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
    size = default_size(net) if size is None else size
    stride = max(1, size // 2) if stride is None and isinstance(size, int) else stride
    ys, xs = offsets(h, size, stride), offsets(w, size, stride)
    n = len(ys) * len(xs)
    max_positions = MAX_POSITIONS if max_positions is None else max_positions
    if n > max_positions:
        raise PydeconvError(
            f"{len(ys)} x {len(xs)} = {n} square positions, more than {max_positions}: "
            "raise the stride (or max_positions)"
        )
    if channel is not None and not (isinstance(channel, (int, np.integer)) and 0 <= channel < n_ch):
        raise ChannelError(f"layer '{layer}': channel {channel!r} out of range 0..{n_ch - 1}")
    head = None
    if detection is not None:
        if target is not None:
            raise PydeconvError("give a class or a detection, not both")
        if heads is None or not 0 <= detection.head < len(heads):
            raise PydeconvError("a detection needs the heads it was decoded with")
        head = heads[detection.head]
    else:
        outputs.check_class(net, target)
    classifier = detection is None and outputs.is_classifier(net)
    fills = outputs.fill_values(net, fill)
    bsz = outputs.batch_for(net, batch, max_memory)

    out0, trace0 = net.forward(x, keep=[layer], threads=threads)
    act0 = trace0.activation(layer)[0]
    ch = demo.top_channels(act0, 1)[0] if channel is None else int(channel)
    proj = net.project(trace0, layer, channel=ch, at="max", rule=rule, threads=threads)[0]
    res = Occlusion(
        layer=layer,
        channel=ch,
        size=int(size),
        stride=int(stride),
        fill=[float(v) for v in fills],
        ys=ys,
        xs=xs,
        activation=np.zeros((len(ys), len(xs))),
        baseline_activation=float(np.sum(act0[ch], dtype=np.float64)),
        projection=np.array(proj),
        rule=rule,
        batch=bsz,
    )
    if classifier:
        p0 = outputs.class_probabilities(net, out0)[0]
        res.target_given = target is not None
        res.target = int(np.argmax(p0)) if target is None else int(target)
        res.baseline_probability = float(p0[res.target])
        res.probability_source = outputs.probability_source(net)
        res.class_names = outputs.class_names(net, p0.size)
        res.probability = np.zeros((len(ys), len(xs)))
        res.top_class = np.zeros((len(ys), len(xs)), np.int64)
        res.top_probability = np.zeros((len(ys), len(xs)))
    if detection is not None and head is not None:
        res.detection = {
            "rank": None,
            "label": detection.name,
            "class": detection.class_id,
            "score": float(detection.score),
            "box": [float(v) for v in detection.box],
            "layer": detection.layer,
            "channel": detection.channel,
            "y": detection.y,
            "x": detection.x,
            "anchor": detection.anchor,
            "objectness_channel": detection.objectness_channel,
            "layout": head.layout,
        }
        res.score = np.zeros((len(ys), len(xs)))
        res.logit = np.zeros((len(ys), len(xs)))

    cells = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    for start in range(0, n, bsz):
        chunk = cells[start : start + bsz]
        xb = np.repeat(x.astype(np.float32, copy=False), len(chunk), axis=0)
        for k, (i, j) in enumerate(chunk):
            xb[k, :, ys[i] : ys[i] + size, xs[j] : xs[j] + size] = fills[:, None, None]
        out, trace = net.forward(xb, keep=[layer], threads=threads)
        act = trace.activation(layer)[:, ch].reshape(len(chunk), -1).sum(axis=1, dtype=np.float64)
        rows = [i for i, _ in chunk]
        cols = [j for _, j in chunk]
        res.activation[rows, cols] = act
        if classifier:
            p = outputs.class_probabilities(net, out)
            res.probability[rows, cols] = p[:, res.target]  # type: ignore[index]
            top = np.argmax(p, axis=1)
            res.top_class[rows, cols] = top  # type: ignore[index]
            res.top_probability[rows, cols] = p[np.arange(len(chunk)), top]  # type: ignore[index]
        if detection is not None and head is not None:
            outs = out if isinstance(out, dict) else {net.outputs[0]: out}
            score, logit = detection_score(outs, head, detection)
            res.score[rows, cols] = score  # type: ignore[index]
            res.logit[rows, cols] = logit  # type: ignore[index]
        if progress is not None:
            progress(min(start + bsz, n), n)
    return res


# --- the report ----------------------------------------------------------------------------------


def _grid(a: np.ndarray | None) -> list | None:
    return None if a is None else np.asarray(a).tolist()


def to_json(res: Occlusion, model: str, image: str, fill_spec: str) -> dict:
    return {
        "format": "pydeconv-occlusion",
        "version": 1,
        "model": model,
        "image": image,
        "layer": res.layer,
        "channel": res.channel,
        "rule": res.rule,
        "size": res.size,
        "stride": res.stride,
        "fill": {"spec": fill_spec, "values": res.fill, "units": "preprocessed input"},
        "batch": res.batch,
        "positions": {"y": res.ys, "x": res.xs, "meaning": "top-left corner of the square"},
        "centres": {"y": res.centres_y, "x": res.centres_x},
        "baseline": {
            "activation": res.baseline_activation,
            "probability": res.baseline_probability,
        },
        "activation": _grid(res.activation),
        "class": res.target,
        "class_name": None if res.target is None else res.class_names[res.target],
        "class_given": res.target_given,
        "probability_source": res.probability_source,
        "probability": _grid(res.probability),
        "top_class": _grid(res.top_class),
        "top_probability": _grid(res.top_probability),
        "class_names": res.class_names or None,
        "detection": res.detection,
        "score": _grid(res.score),
        "logit": _grid(res.logit),
    }


def _csv(res: Occlusion) -> bytes:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    head = ["row", "col", "top", "left", "activation"]
    if res.probability is not None:
        head += ["probability", "top_class", "top_class_name", "top_probability"]
    if res.score is not None:
        head += ["score", "logit"]
    wr.writerow(head)
    for i, top in enumerate(res.ys):
        for j, left in enumerate(res.xs):
            row: list[Any] = [i, j, top, left, repr(float(res.activation[i, j]))]
            if res.probability is not None and res.top_class is not None:
                c = int(res.top_class[i, j])
                row += [
                    repr(float(res.probability[i, j])),
                    c,
                    res.class_names[c],
                    repr(float(res.top_probability[i, j])),  # type: ignore[index]
                ]
            if res.score is not None and res.logit is not None:
                row += [repr(float(res.score[i, j])), repr(float(res.logit[i, j]))]
            wr.writerow(row)
    return buf.getvalue().encode("utf-8")


def write_report(
    res: Occlusion,
    net: Any,
    x: np.ndarray,
    out: str | Path,
    model: str,
    image: str,
    fill_spec: str = "mean",
    force: bool = False,
) -> Path:
    """The report folder: index.html, occlusion.json/.csv and the PNGs; written whole or not at
    all (:mod:`pydeconv.analysis.reportdir`)."""
    seen = pimg.to_pil(x[0], net)
    order = net.preprocess["channel_order"]
    cy, cx = res.centres_y, res.centres_x
    where = f"{res.layer} channel {res.channel}"
    figs = [
        ("activation.png", f"(b) total activation of {where}", "total activation"),
    ]
    with report_folder(out, force) as tmp:

        def put(name: str, img: Any) -> None:
            write_atomic(tmp / name, report.png_bytes(img))

        put("input.png", pimg.enlarge(seen, 192))
        put(
            "activation.png",
            heatmap.heat_overlay(seen, res.activation, cy, cx, figs[0][1], figs[0][2]),
        )
        put("projection.png", pimg.enlarge(pimg.render(res.projection, order), 192))
        figures = [
            report.Figure("activation.png", figs[0][1]),
            report.Figure(
                "projection.png",
                f"(c) {res.rule} projection of {where} (its strongest unit), unoccluded image",
            ),
        ]
        if res.probability is not None and res.top_class is not None and res.target is not None:
            name = res.class_names[res.target]
            title = f"(d) probability of '{name}' ({'given' if res.target_given else 'predicted'})"
            put("probability.png", heatmap.heat_overlay(seen, res.probability, cy, cx, title, "p"))
            put(
                "top_class.png",
                heatmap.class_map(
                    seen, res.top_class, cy, cx, res.class_names, "(e) most probable class"
                ),
            )
            figures += [
                report.Figure("probability.png", title),
                report.Figure("top_class.png", "(e) most probable class per square position"),
            ]
        if res.score is not None and res.detection is not None:
            d = res.detection
            title = f"score of detection '{d['label']}' ({d['layer']} ch {d['channel']})"
            put("score.png", heatmap.heat_overlay(seen, res.score, cy, cx, title, "score"))
            figures.append(report.Figure("score.png", title))
        doc = to_json(res, model, image, fill_spec)
        write_atomic(tmp / "occlusion.json", json.dumps(doc, indent=1).encode("utf-8"))
        write_atomic(tmp / "occlusion.csv", _csv(res))
        notes = [
            f"Model {model}, image {image}.",
            f"A {res.size}x{res.size} square, stride {res.stride}, filled with "
            f"{fill_spec} ({', '.join(f'{v:.4g}' for v in res.fill)} in preprocessed units), "
            f"at {len(res.ys)} x {len(res.xs)} positions; each map entry is drawn over the "
            "pixels nearest the square's centre. Numbers: occlusion.json, occlusion.csv.",
            f"Unoccluded: total activation of {where} {res.baseline_activation:.6g}"
            + (
                f"; p('{res.class_names[res.target]}') = {res.baseline_probability:.4g} "
                f"({res.probability_source})."
                if res.target is not None and res.baseline_probability is not None
                else "."
            ),
        ]
        if res.probability is None and res.score is None:
            notes.append(
                "The model's output is not a vector of class scores: no class maps (d), (e)."
            )
        if extras.optional("matplotlib") is None:
            notes.append(extras.PLOTS_NOTE)
        sections = [report.Section("Occlusion (Zeiler & Fergus Fig. 7)", "input.png", "", figures)]
        write_atomic(
            tmp / "index.html",
            report.render_html(f"Occlusion: {Path(image).name}", sections, notes).encode("utf-8"),
        )
    return Path(out) / "index.html"


# --- the command line ----------------------------------------------------------------------------


def _progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\rpydeconv: {done}/{total} positions", end=end, file=sys.stderr, flush=True)


def cmd_occlude(args: argparse.Namespace) -> int:
    from pydeconv.cli import _load, log

    check_report_folder(args.output, args.force)
    # "yolov3-tiny": the real one at 320x320 with its COCO names, as `pydeconv demo --model` has it
    net = demo.load_yolov3_tiny(log) if args.model == demo.YOLO_MODEL else _load(args.model)
    fill_spec = str(args.fill)
    picture = pimg.open_image(args.image)
    x = pimg.from_pil(picture, net)
    det = hs = None
    layer = args.layer
    if args.detection is not None:
        if args.detection < 1:
            raise PydeconvError(f"--detection counts from 1, got {args.detection}")
        anchors = detect.parse_anchors(args.anchors) if args.anchors else None
        hs = detect.heads(net, layout=args.layout, anchors=anchors)
        dets, _ = detect.detect(net, x, head_list=hs, conf=args.conf, threads=args.threads)
        if args.detection > len(dets):
            raise PydeconvError(
                f"--detection {args.detection} is out of range: {len(dets)} detection(s) at "
                f"score >= {args.conf:g}"
            )
        det = dets[args.detection - 1]
        log(f"detection {args.detection}: {det.describe()}")
        layer = layer or det.layer
    elif args.anchors or args.layout:
        raise PydeconvError("--anchors and --layout go with --detection K")
    if layer is None:
        raise PydeconvError("give --layer LAYER (the feature maps of map (b))")
    res = occlude(
        net,
        x,
        layer,
        size=args.size,
        stride=args.stride,
        fill=args.fill,
        target=args.cls,
        channel=args.channel,
        detection=det,
        heads=hs,
        rule=args.rule,
        batch=args.batch,
        threads=args.threads,
        progress=_progress if sys.stderr.isatty() else None,
    )
    if res.detection is not None:
        res.detection["rank"] = args.detection
    index = write_report(res, net, x, args.output, args.model, args.image, fill_spec, args.force)
    if res.probability is not None and res.target is not None:
        worst = np.unravel_index(np.argmin(res.probability), res.probability.shape)
        print(
            f"p('{res.class_names[res.target]}') unoccluded {res.baseline_probability:.4g}, "
            f"lowest {float(res.probability[worst]):.4g} with the square at "
            f"(top={res.ys[worst[0]]}, left={res.xs[worst[1]]})"
        )
    if res.score is not None and res.detection is not None:
        worst = np.unravel_index(np.argmin(res.score), res.score.shape)
        print(
            f"score of detection {args.detection} ({res.detection['label']}) unoccluded "
            f"{res.detection['score']:.4g}, lowest {float(res.score[worst]):.4g} with the square "
            f"at (top={res.ys[worst[0]]}, left={res.xs[worst[1]]})"
        )
    worst = np.unravel_index(np.argmin(res.activation), res.activation.shape)
    print(
        f"{res.layer} channel {res.channel}: total activation unoccluded "
        f"{res.baseline_activation:.6g}, lowest {float(res.activation[worst]):.6g} at "
        f"(top={res.ys[worst[0]]}, left={res.xs[worst[1]]})"
    )
    print(f"open {index.resolve()}")
    return 0


def register(sub: Any, common: Any, writes: Any) -> None:
    from pydeconv.cli import _fraction

    p = sub.add_parser(
        "occlude",
        parents=[common, writes],
        help="occlusion maps (Zeiler & Fergus Fig. 7): a square slid over the image",
    )
    p.add_argument("model", help=".npz/.onnx/.cfg model, or yolov3-tiny (the demo's detector)")
    p.add_argument("image")
    p.add_argument("--layer", help="the layer of map (b) (with --detection: the detection's)")
    p.add_argument("--channel", type=int, help="its feature map (default: the strongest)")
    p.add_argument(
        "--size", type=outputs.positive_int, help="the square's side in input pixels (input/6)"
    )
    p.add_argument("--stride", type=outputs.positive_int, help="the square's step (size/2)")
    p.add_argument(
        "--fill",
        default="mean",
        metavar="mean|grey|V",
        help="the square's value: mean (0 after preprocessing: the model's mean pixel; default), "
        "grey (pixel 128), or a number in preprocessed units",
    )
    p.add_argument("--class", dest="cls", type=int, metavar="C", help="class of map (d)")
    p.add_argument("--detection", type=int, metavar="K", help="a detector's K-th detection")
    p.add_argument(
        "--conf", type=_fraction, default=0.25, metavar="P", help="--detection: score threshold"
    )
    p.add_argument("--layout", choices=list(detect.LAYOUTS), help="--detection: head layout")
    p.add_argument("--anchors", metavar="'W,H ...; W,H ...'", help="--detection: anchors")
    p.add_argument("--rule", choices=RULES, default="deconvnet", help="projection (c)'s rule")
    p.add_argument(
        "--batch", type=outputs.positive_int, default=8, help="occluded images per forward"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_occlude)
