"""Filters (Zeiler & Fergus Fig. 6): a conv layer's filters as an image grid, and per-layer filter
statistics for diagnosing an architecture (dead filters, filters that dominate).

The grid: each filter ``(ic, kh, kw)`` is drawn the way pydeconv draws projections
(:func:`pydeconv.image.render`): contrast-normalised on its own, ``0.5 + w / (2 max|w|)``, so
zero is mid-grey, the filter's strongest weight black or white; three input channels are colour
(in the model's channel order, shown as RGB), any other count is summed and grey. Filters are
enlarged (nearest neighbour) to be visible. Only the weights are read: no image, no forward.

Per conv2d layer (``filters.json``/``filters.csv``):

- ``norm_*``: the mean, standard deviation, minimum and maximum over the layer's filters of each
  filter's L2 norm (over its input channels and taps);
- ``dead``: filters whose norm is below ``dead_eps`` (default 0.01) times the layer's largest --
  filters that no longer respond to anything (the paper's "dead" first-layer filters);
- ``rms_*``: each filter's RMS (its norm over the square root of its weight count). The paper
  renormalises every conv filter whose RMS exceeds a fixed radius of 0.1 back to that radius
  during training (Sec. 3), so that no few filters dominate; ``above_radius`` is the fraction of
  filters whose RMS exceeds ``radius`` (0.1 by default) -- those that training would have clipped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import image as pimg
from pydeconv import report
from pydeconv.analysis import extras, heatmap
from pydeconv.analysis.reportdir import check_report_folder, report_folder
from pydeconv.errors import PydeconvError
from pydeconv.fileio import write_atomic

# Filters in the grid at most (the rest are counted in the caption).
MAX_TILES = 1024


def conv_layers(net: Any) -> list[str]:
    """The conv2d layers, in execution order."""
    kinds = {row["name"]: row["kind"] for row in net.info()}
    return [name for name in net.layers if kinds.get(name) == "conv2d"]


def weights(net: Any, layer: str | None = None) -> tuple[str, np.ndarray]:
    """(layer, its weights (oc, ic/groups, kh, kw)): ``layer`` or the first conv2d."""
    convs = conv_layers(net)
    if not convs:
        raise PydeconvError("the model has no conv2d layer")
    if layer is None:
        layer = convs[0]
    row = net.layer_info(layer)  # unknown: LayerNotFoundError with the closest names
    name = row["name"]
    if row["kind"] != "conv2d":
        raise PydeconvError(
            f"layer '{layer}' is a {row['kind']} layer, not a conv2d (conv layers: "
            f"{', '.join(convs[:8])}{', ...' if len(convs) > 8 else ''})"
        )
    return name, np.asarray(net.params[f"{name}/weight"])


def filter_tiles(net: Any, layer: str | None = None, min_side: int = 48) -> list:
    """One picture per filter (module notes), at most MAX_TILES."""
    name, w = weights(net, layer)
    order = net.preprocess["channel_order"] if w.shape[1] == 3 else "RGB"
    return [pimg.enlarge(pimg.render(f, order), min_side) for f in w[:MAX_TILES]]


def statistics(net: Any, dead_eps: float = 0.01, radius: float = 0.1) -> list[dict]:
    """Per conv2d layer, the numbers of the module notes."""
    for what, v in (("dead_eps", dead_eps), ("radius", radius)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise PydeconvError(f"{what} must be a number >= 0, got {v!r}")
    rows = []
    for layer in conv_layers(net):
        w = np.asarray(net.params[f"{layer}/weight"], np.float64)
        flat = w.reshape(w.shape[0], -1)
        norms = np.sqrt(np.sum(flat * flat, axis=1))
        rms = norms / math.sqrt(flat.shape[1])
        dead = int(np.sum(norms < dead_eps * norms.max())) if norms.max() > 0 else len(norms)
        rows.append(
            {
                "layer": layer,
                "filters": int(w.shape[0]),
                "shape": [int(v) for v in w.shape[1:]],
                "norm_mean": float(norms.mean()),
                "norm_std": float(norms.std()),
                "norm_min": float(norms.min()),
                "norm_max": float(norms.max()),
                "dead": dead,
                "dead_fraction": dead / len(norms),
                "rms_mean": float(rms.mean()),
                "rms_max": float(rms.max()),
                "above_radius": float(np.mean(rms > radius)),
            }
        )
    if not rows:
        raise PydeconvError("the model has no conv2d layer")
    return rows


CSV_FIELDS = (
    "layer",
    "filters",
    "norm_mean",
    "norm_std",
    "norm_min",
    "norm_max",
    "dead",
    "dead_fraction",
    "rms_mean",
    "rms_max",
    "above_radius",
)


def write_report(
    net: Any,
    out: str | Path,
    model: str,
    layer: str | None = None,
    dead_eps: float = 0.01,
    radius: float = 0.1,
    force: bool = False,
) -> tuple[Path, list[dict]]:
    """index.html, filters.png (the grid), filters.json/.csv and the plots."""
    name, w = weights(net, layer)
    rows = statistics(net, dead_eps, radius)
    tiles = filter_tiles(net, name)
    with report_folder(out, force) as tmp:
        grid = pimg.grid(tiles, cols=min(16, len(tiles)), pad=2, background=(40, 40, 40))
        write_atomic(tmp / "filters.png", report.png_bytes(grid))
        shown = f"{len(tiles)} of {w.shape[0]}" if len(tiles) < w.shape[0] else f"{w.shape[0]}"
        figures = [
            report.Figure(
                "filters.png",
                f"{name}: {shown} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}, each "
                "contrast-normalised (0 is grey)",
            )
        ]
        names = [r["layer"] for r in rows]
        plots = [
            (
                "norms.png",
                {k: [r[f"norm_{k}"] for r in rows] for k in ("min", "mean", "max")},
                "filter L2 norm",
            ),
            (
                "fractions.png",
                {
                    f"dead (< {dead_eps:g} x max)": [r["dead_fraction"] for r in rows],
                    f"RMS > {radius:g}": [r["above_radius"] for r in rows],
                },
                "fraction of filters",
            ),
        ]
        for file, series, ylabel in plots:
            pic = heatmap.bar_plot(names, series, f"per layer: {ylabel}", ylabel)
            if pic is not None:
                write_atomic(tmp / file, report.png_bytes(pic))
                figures.append(report.Figure(file, f"per conv layer: {ylabel}"))
        doc = {
            "format": "pydeconv-filters",
            "version": 1,
            "model": model,
            "layer": name,
            "dead_eps": dead_eps,
            "radius": radius,
            "layers": rows,
        }
        write_atomic(tmp / "filters.json", json.dumps(doc, indent=1).encode("utf-8"))
        buf = io.StringIO()
        wr = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
        write_atomic(tmp / "filters.csv", buf.getvalue().encode("utf-8"))
        notes = [
            f"Model {model}. Grid: the filters of {name}. Per conv layer: each filter's L2 norm "
            f"(mean, spread, range), dead filters (norm below {dead_eps:g} times the layer's "
            f"largest) and the fraction whose RMS exceeds {radius:g}, the radius the paper "
            "renormalises filters to. Numbers: filters.json, filters.csv.",
        ]
        dead = [f"{r['layer']} {r['dead']}/{r['filters']}" for r in rows if r["dead"]]
        notes.append("Dead filters: " + (", ".join(dead) if dead else "none") + ".")
        if extras.optional("matplotlib") is None:
            notes.append(extras.PLOTS_NOTE)
        html = report.render_html(
            "Filters (Zeiler & Fergus Fig. 6)", [report.Section(name, None, "", figures)], notes
        )
        write_atomic(tmp / "index.html", html.encode("utf-8"))
    return Path(out) / "index.html", rows


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def cmd_filters(args: argparse.Namespace) -> int:
    from pydeconv.cli import _load

    check_report_folder(args.output, args.force)
    net = _load(args.model)
    index, rows = write_report(
        net, args.output, args.model, args.layer, args.dead_eps, args.radius, args.force
    )
    width = max(len(r["layer"]) for r in rows)
    print(
        f"{'layer'.ljust(width)}  filters  norm mean  norm min  norm max  dead  RMS>{args.radius:g}"
    )
    for r in rows:
        print(
            f"{r['layer'].ljust(width)}  {r['filters']:7d}  {r['norm_mean']:9.4g}  "
            f"{r['norm_min']:8.4g}  {r['norm_max']:8.4g}  {r['dead']:4d}  {r['above_radius']:.2f}"
        )
    print(f"open {index.resolve()}")
    return 0


def register(sub: Any, common: Any, writes: Any) -> None:
    p = sub.add_parser(
        "filters",
        parents=[common, writes],
        help="a conv layer's filters as a grid and per-layer filter statistics (Fig. 6)",
    )
    p.add_argument("model")
    p.add_argument("--layer", help="the conv layer of the grid (default: the first)")
    p.add_argument(
        "--dead-eps",
        type=_fraction,
        default=0.01,
        metavar="E",
        help="dead filter: L2 norm below E times the layer's largest (0.01)",
    )
    p.add_argument("--radius", type=_fraction, default=0.1, help="the paper's RMS radius (0.1)")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_filters)
