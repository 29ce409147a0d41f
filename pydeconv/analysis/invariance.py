"""Invariance (Zeiler & Fergus Fig. 5): how much chosen layers' features and the class probability
change as an image is translated vertically, scaled and rotated.

Each transformed image is made with Pillow from the image **after resizing it to the model's input
size** (the resize preprocessing does; the untransformed image is then exactly the preprocessed
original), at that size, and then preprocessed as any image:

- vertical translation by ``dy`` input pixels (positive: down), whole pixels;
- scaling by ``s`` about the image centre (``s > 1`` zooms in and crops, ``s < 1`` shrinks),
  bilinear;
- rotation by ``deg`` degrees counter-clockwise about the centre, bilinear, the same size (the
  corners are cut).

Pixels the transform uncovers are filled with the model's mean pixel (``mean / scale`` per
channel, so 0 after preprocessing; black for the demo VGG16, whose mean is 0).

Per transform and layer: ``distance``, the Euclidean distance between the layer's output
(flattened) for the transformed and the untransformed image -- the paper's measure, in the
layer's own units -- and ``relative``, that distance divided by the norm of the untransformed
feature vector (comparable across layers). For a classifier: the probability of the class the
untransformed image is given (its predicted class, or ``target``), read as in
:func:`pydeconv.analysis.outputs.class_probabilities`, and the predicted class.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pydeconv import image as pimg
from pydeconv import report
from pydeconv.analysis import extras, heatmap, outputs
from pydeconv.analysis.reportdir import check_report_folder, report_folder
from pydeconv.errors import PydeconvError
from pydeconv.fileio import write_atomic

SWEEPS = ("translate", "scale", "rotate")
UNITS = {"translate": "vertical shift (input pixels)", "scale": "scale", "rotate": "degrees"}
# Transforms per sweep at most (each one forward).
MAX_STEPS = 1000


def default_sweeps(net: Any) -> dict[str, list[float]]:
    """The paper's ranges, adapted to the input size: shifts of up to a quarter of the height in
    9 steps, scales 1 to 1.8, rotations 0 to 330 degrees in steps of 30."""
    h = int(net.input_shape[1])
    q = max(1, h // 4)
    return {
        "translate": sorted({round(v) for v in np.linspace(-q, q, 9)}),
        "scale": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8],
        "rotate": [float(v) for v in range(0, 360, 30)],
    }


def mean_pixel(net: Any) -> tuple[int, ...]:
    """The pixel the preprocessing maps to 0, rounded to bytes: RGB (or (L,)) for Pillow."""
    pre = net.preprocess
    mean = np.asarray(pre["mean"], np.float64).reshape(-1) / float(pre["scale"])
    px = tuple(int(v) for v in np.clip(np.floor(mean + 0.5), 0, 255))
    if pre["channel_order"] == "BGR":
        px = px[::-1]
    return px if len(px) != 1 else (px[0],) * 3


def base_image(picture: Image.Image, net: Any) -> Image.Image:
    """The picture at the model's input size, as preprocessing resizes it (RGB)."""
    h, w = (int(v) for v in net.preprocess["size"])
    img = picture.convert("RGB")
    return img if img.size == (w, h) else img.resize((w, h), Image.Resampling.BILINEAR)


def transform(img: Image.Image, kind: str, value: float, fill: tuple[int, ...]) -> Image.Image:
    """One transform of the base image (module notes), the same size."""
    w, h = img.size
    if kind == "translate":
        dy = int(round(value))
        return img.transform(
            (w, h), Image.Transform.AFFINE, (1, 0, 0, 0, 1, -dy), Image.Resampling.NEAREST, 0, fill
        )
    if kind == "scale":
        if not value > 0:
            raise PydeconvError(f"scale factors must be positive, got {value}")
        s = float(value)
        cx, cy = w / 2, h / 2
        data = (1 / s, 0, cx - cx / s, 0, 1 / s, cy - cy / s)
        return img.transform(
            (w, h), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR, 0, fill
        )
    if kind == "rotate":
        return img.rotate(float(value), Image.Resampling.BILINEAR, fillcolor=fill)
    raise PydeconvError(f"unknown transform {kind!r} (expected one of {', '.join(SWEEPS)})")


@dataclass
class Sweep:
    kind: str
    values: list[float]
    distance: dict[str, list[float]]  # per layer
    relative: dict[str, list[float]]
    probability: list[float] | None = None
    top_class: list[int] | None = None


@dataclass
class Invariance:
    layers: list[str]
    sweeps: list[Sweep]
    norms: dict[str, float]  # |feature vector| of the untransformed image, per layer
    target: int | None = None
    target_given: bool = False
    probability_source: str | None = None
    class_names: list[str] = field(default_factory=list)
    baseline_probability: float | None = None
    batch: int = 1


def _check_values(kind: str, values: Sequence[float]) -> list[float]:
    vals = [float(v) for v in values]
    if not vals:
        raise PydeconvError(f"the {kind} sweep is empty")
    if len(vals) > MAX_STEPS:
        raise PydeconvError(f"the {kind} sweep has {len(vals)} steps, more than {MAX_STEPS}")
    if not all(np.isfinite(vals)):
        raise PydeconvError(f"the {kind} sweep holds a value that is not a finite number")
    if kind == "scale" and min(vals) <= 0:
        raise PydeconvError(f"scale factors must be positive, got {min(vals)}")
    if kind == "translate":  # whole pixels: the shift applied is what is recorded
        vals = [float(round(v)) for v in vals]
    return vals


def invariance(
    net: Any,
    picture: Image.Image,
    layers: Sequence[str],
    sweeps: dict[str, Sequence[float]] | None = None,
    target: int | None = None,
    batch: int = 8,
    max_memory: int = outputs.DEFAULT_MAX_MEMORY,
    threads: int | None = None,
) -> Invariance:
    """The distances and probabilities of each sweep (module notes); ``sweeps`` maps "translate",
    "scale", "rotate" to their values (default :func:`default_sweeps`)."""
    layers = list(layers)
    if not layers:
        raise PydeconvError("give at least one layer")
    for layer in layers:
        net.layer_info(layer)  # unknown: LayerNotFoundError with the closest names
    chosen = default_sweeps(net) if sweeps is None else dict(sweeps)
    for kind in chosen:
        if kind not in SWEEPS:
            raise PydeconvError(f"unknown transform {kind!r} (expected one of {', '.join(SWEEPS)})")
    checked = {k: _check_values(k, v) for k, v in chosen.items()}
    if not checked:
        raise PydeconvError("no transform to sweep")
    outputs.check_class(net, target)
    classifier = outputs.is_classifier(net)
    bsz = outputs.batch_for(net, batch, max_memory)
    base = base_image(picture, net)
    fill = mean_pixel(net)

    def run(images: list[Image.Image]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        feats: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
        probs: list[np.ndarray] = []
        for start in range(0, len(images), bsz):
            xb = np.concatenate([pimg.from_pil(im, net) for im in images[start : start + bsz]])
            out, trace = net.forward(xb, keep=layers, threads=threads)
            for layer in layers:
                a = trace.activation(layer)
                feats[layer].append(np.asarray(a, np.float64).reshape(a.shape[0], -1))
            if classifier:
                probs.append(outputs.class_probabilities(net, out))
        return (
            {k: np.concatenate(v) for k, v in feats.items()},
            np.concatenate(probs) if classifier else None,
        )

    f0, p0 = run([base])
    res = Invariance(layers, [], {k: float(np.linalg.norm(v[0])) for k, v in f0.items()}, batch=bsz)
    if p0 is not None:
        res.target_given = target is not None
        res.target = int(np.argmax(p0[0])) if target is None else int(target)
        res.baseline_probability = float(p0[0, res.target])
        res.probability_source = outputs.probability_source(net)
        res.class_names = outputs.class_names(net, p0.shape[1])
    for kind, values in checked.items():
        feats, probs = run([transform(base, kind, v, fill) for v in values])
        sweep = Sweep(kind, values, {}, {})
        for layer in layers:
            d = np.linalg.norm(feats[layer] - f0[layer][0], axis=1)
            sweep.distance[layer] = [float(v) for v in d]
            norm = res.norms[layer]
            sweep.relative[layer] = [float(v / norm) if norm > 0 else float("nan") for v in d]
        if probs is not None and res.target is not None:
            sweep.probability = [float(v) for v in probs[:, res.target]]
            sweep.top_class = [int(v) for v in np.argmax(probs, axis=1)]
        res.sweeps.append(sweep)
    return res


# --- the report ----------------------------------------------------------------------------------


def to_json(res: Invariance, model: str, image: str) -> dict:
    def clean(v: float) -> float | None:
        return None if not np.isfinite(v) else v

    return {
        "format": "pydeconv-invariance",
        "version": 1,
        "model": model,
        "image": image,
        "layers": res.layers,
        "feature_norms": res.norms,
        "class": res.target,
        "class_name": None if res.target is None else res.class_names[res.target],
        "class_given": res.target_given,
        "probability_source": res.probability_source,
        "baseline_probability": res.baseline_probability,
        "batch": res.batch,
        "sweeps": {
            s.kind: {
                "unit": UNITS[s.kind],
                "values": s.values,
                "distance": s.distance,
                "relative_distance": {k: [clean(v) for v in vs] for k, vs in s.relative.items()},
                "probability": s.probability,
                "top_class": s.top_class,
                "top_class_name": None
                if s.top_class is None
                else [res.class_names[c] for c in s.top_class],
            }
            for s in res.sweeps
        },
    }


def _csv(res: Invariance) -> bytes:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    head = ["transform", "value"]
    for layer in res.layers:
        head += [f"{layer} distance", f"{layer} relative"]
    if res.target is not None:
        head += ["probability", "top_class", "top_class_name"]
    wr.writerow(head)
    for s in res.sweeps:
        for i, v in enumerate(s.values):
            row: list[Any] = [s.kind, repr(v)]
            for layer in res.layers:
                row += [repr(s.distance[layer][i]), repr(s.relative[layer][i])]
            if s.probability is not None and s.top_class is not None:
                c = s.top_class[i]
                row += [repr(s.probability[i]), c, res.class_names[c]]
            wr.writerow(row)
    return buf.getvalue().encode("utf-8")


def write_report(
    res: Invariance,
    net: Any,
    picture: Image.Image,
    out: str | Path,
    model: str,
    image: str,
    force: bool = False,
) -> Path:
    """index.html, invariance.json/.csv, a strip of the transformed images per sweep and the line
    plots (with matplotlib); written whole or not at all."""
    base = base_image(picture, net)
    fill = mean_pixel(net)
    sections = []
    with report_folder(out, force) as tmp:
        for s in res.sweeps:
            figures = []
            shown = [s.values[i] for i in _spread(len(s.values), 8)]
            strip = pimg.grid(
                [pimg.enlarge(transform(base, s.kind, v, fill), 96) for v in shown],
                cols=len(shown),
                captions=[f"{v:g}" for v in shown],
            )
            write_atomic(tmp / f"{s.kind}-images.png", report.png_bytes(strip))
            figures.append(report.Figure(f"{s.kind}-images.png", f"{s.kind}: the images"))
            plots = [
                ("distance", s.distance, "Euclidean distance"),
                ("relative", s.relative, "distance / |original features|"),
            ]
            if s.probability is not None and res.target is not None:
                name = res.class_names[res.target]
                plots.append(("probability", {f"p('{name}')": s.probability}, "probability"))
            for stem, series, ylabel in plots:
                pic = heatmap.line_plot(
                    s.values, series, f"{s.kind}: {ylabel}", UNITS[s.kind], ylabel
                )
                if pic is not None:
                    write_atomic(tmp / f"{s.kind}-{stem}.png", report.png_bytes(pic))
                    figures.append(report.Figure(f"{s.kind}-{stem}.png", f"{s.kind}: {ylabel}"))
            sections.append(report.Section(f"{s.kind} ({UNITS[s.kind]})", None, "", figures))
        write_atomic(
            tmp / "invariance.json", json.dumps(to_json(res, model, image), indent=1).encode()
        )
        write_atomic(tmp / "invariance.csv", _csv(res))
        notes = [
            f"Model {model}, image {image}, layers {', '.join(res.layers)}.",
            "Each image is the original resized to the input size, then shifted vertically, "
            "scaled about its centre or rotated about its centre at that size, uncovered pixels "
            f"filled with the model's mean pixel {fill}. Distance: Euclidean distance between the "
            "layer's output for the transformed and the original image (the paper's Fig. 5); "
            "relative: divided by the norm of the original's. Numbers: invariance.json, "
            "invariance.csv.",
        ]
        if res.target is not None:
            notes.append(
                f"Probability of '{res.class_names[res.target]}' "
                f"({'given' if res.target_given else 'predicted on the original'}; "
                f"{res.probability_source}): {res.baseline_probability:.4g} on the original."
            )
        if extras.optional("matplotlib") is None:
            notes.append(extras.PLOTS_NOTE)
        html = report.render_html(f"Invariance: {Path(image).name}", sections, notes)
        write_atomic(tmp / "index.html", html.encode("utf-8"))
    return Path(out) / "index.html"


def _spread(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


# --- the command line ----------------------------------------------------------------------------


def _numbers(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def cmd_invariance(args: argparse.Namespace) -> int:
    from pydeconv.cli import _load

    check_report_folder(args.output, args.force)
    layers = [v for v in args.layers.split(",") if v]
    net = _load(args.model)
    picture = pimg.open_image(args.image)
    given = {k: getattr(args, k) for k in SWEEPS if getattr(args, k) is not None}
    sweeps = given or None
    res = invariance(net, picture, layers, sweeps, target=args.cls, batch=args.batch)
    index = write_report(res, net, picture, args.output, args.model, args.image, args.force)
    for s in res.sweeps:
        far = {layer: max(s.relative[layer]) for layer in res.layers}
        text = ", ".join(f"{k} {v:.3g}" for k, v in far.items())
        line = f"{s.kind} {s.values[0]:g}..{s.values[-1]:g}: largest relative distance {text}"
        if s.probability is not None:
            line += f"; p from {min(s.probability):.3g} to {max(s.probability):.3g}"
        print(line)
    print(f"open {index.resolve()}")
    return 0


def register(sub: Any, common: Any, writes: Any) -> None:
    p = sub.add_parser(
        "invariance",
        parents=[common, writes],
        help="feature distance and class probability under translation, scale, rotation "
        "(Zeiler & Fergus Fig. 5)",
    )
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--layers", required=True, metavar="L1,L2", help="layers to compare")
    p.add_argument(
        "--translate",
        type=_numbers,
        metavar="DY,...",
        help="vertical shifts in input pixels, positive down (write --translate=-20,0,20)",
    )
    p.add_argument("--scale", type=_numbers, metavar="S,...", help="scale factors")
    p.add_argument("--rotate", type=_numbers, metavar="DEG,...", help="rotations (degrees)")
    p.add_argument("--class", dest="cls", type=int, metavar="C", help="class to follow")
    p.add_argument("--batch", type=outputs.positive_int, default=8, help="images per forward")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_invariance)
