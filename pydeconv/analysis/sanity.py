"""Sanity controls for projections (Adebayo et al. 2018, arXiv 1810.03292): cascading
randomisation of the weights.

Deconvnet and guided-backprop images partly reconstruct the input image itself and can look the
same for a trained and a randomised net. This analysis measures it for one unit of one layer:

- **The unit**: channel C of layer L (default: the channel with the strongest activation for the
  image) at its strongest position in the TRAINED net. Every net projects the same start
  signal: 1 at that unit, 0 elsewhere (so a unit that a randomised net does not activate still
  has a projection; deconvnet and guided maps scale with the start value, so nothing else
  changes).
- **The cascade**: the parameterised layers (those with a ``weight``: conv2d, linear,
  conv_transpose2d) that a projection from L passes (``net.rules(L)``), from the top -- L itself,
  or the nearest below it -- down to the first conv. Step 0 is the trained net; step i has the top
  i of them re-initialised. Each re-initialised parameter (weight, and bias too) is drawn from a
  normal distribution with mean 0 and the standard deviation of that trained parameter, from a
  generator seeded by (seed, the layer's place in the cascade): a layer's random weights are the
  same at every step that randomises it. Other parameters (batch-norm statistics, PReLU slopes)
  stay trained. Layers above L never take part in a projection from L and are left alone.
- **The metrics**, for each rule (deconvnet, guided, backprop) and step, of the step's map
  against the trained one (step 0 scores 1 on both), where a map is the projection's absolute
  value summed over colour channels, cropped to the unit's receptive field (outside it every
  projection of the unit is zero in every net: counted in, those zeros alone would score
  near 1): Spearman's rank correlation (``scipy.stats.spearmanr``,
  ties get their average rank) and SSIM (``skimage.metrics.structural_similarity`` with its
  defaults -- a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariances -- on the two maps
  each divided by its own maximum, data_range 1; the window shrinks to the map's shorter side
  when the map is smaller). A map that is zero everywhere has no ranks: its Spearman value is
  NaN (null in the JSON).

``pydeconv sanity MODEL IMAGE --layer L [--channel C] [--rules ...] [--seed S] -o DIR`` writes a
report folder: index.html, sanity-grid.png (rows rules, columns steps), sanity-metrics.png (both
metrics against the step, per rule; needs matplotlib), sanity.json and sanity.csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import image as pimg
from pydeconv import report
from pydeconv.analysis import extras
from pydeconv.analysis.reportdir import check_report_folder, report_folder
from pydeconv.errors import ChannelError, PydeconvError, ShapeError

RULES = ("deconvnet", "guided", "backprop")


# --- the metrics -------------------------------------------------------------------------------


def saliency(projection: np.ndarray) -> np.ndarray:
    """The map the metrics compare: |projection| summed over colour channels, (H, W) float64."""
    p = np.asarray(projection, dtype=np.float64)
    if p.ndim != 3:
        raise ShapeError(f"expected one projection (C, H, W), got shape {p.shape}")
    return np.abs(p).sum(axis=0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (flattened; ties: average ranks); NaN when one
    of them is constant."""
    stats = extras.require("scipy.stats", "analysis")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def ssim_window(shape: tuple[int, ...]) -> int:
    """skimage's default window (7), or the largest odd size that fits a smaller map."""
    side = min(int(s) for s in shape)
    if side < 3:
        raise ShapeError(f"SSIM needs maps of at least 3x3 pixels, got {tuple(shape)}")
    return min(7, side if side % 2 else side - 1)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two maps, each divided by its own maximum first (data_range 1); skimage's
    defaults otherwise (see the module's docstring)."""
    metrics = extras.require("skimage.metrics", "analysis")
    a = _unit(a)
    b = _unit(b)
    if a.shape != b.shape:
        raise ShapeError(f"SSIM of maps of different shapes {a.shape} and {b.shape}")
    return float(metrics.structural_similarity(a, b, data_range=1.0, win_size=ssim_window(a.shape)))


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    top = float(np.max(np.abs(m))) if m.size else 0.0
    return m / top if top > 0 else m


# --- the cascade ---------------------------------------------------------------------------------


def cascade(net: Any, layer: str) -> list[str]:
    """The layers the randomisation re-initialises, in order: the parameterised layers (with a
    ``weight``) a projection from ``layer`` passes, from the top down."""
    params = net.params
    return [row["name"] for row in net.rules(layer) if f"{row['name']}/weight" in params]


def randomised_params(net: Any, layers: list[str], seed: int) -> list[dict[str, np.ndarray]]:
    """Per layer of ``layers`` (the cascade, top first): its re-initialised parameters, each
    from N(0, std of the trained parameter), seeded by (seed, place in the cascade)."""
    params = net.params
    out = []
    for i, name in enumerate(layers):
        rng = np.random.default_rng([int(seed), i])
        mine = {}
        for key in sorted(k for k in params if k.startswith(f"{name}/")):
            trained = np.asarray(params[key], dtype=np.float64)
            std = float(trained.std()) if trained.size else 0.0
            mine[key] = (rng.standard_normal(trained.shape) * std).astype(np.float32)
        out.append(mine)
    return out


def _net_with(net: Any, replaced: dict[str, np.ndarray]) -> Any:
    from pydeconv.net import Net

    params = dict(net.params)
    params.update(replaced)
    return Net(net.graph, params, net.path)


# --- the analysis --------------------------------------------------------------------------------


@dataclass
class SanityResult:
    layer: str
    channel: int
    position: tuple[int, int]
    seed: int
    rules: list[str]
    cascade: list[str]  # top first; step i randomises cascade[:i]
    # projections[rule][step]: (C, H, W) float32
    projections: dict[str, list[np.ndarray]] = field(default_factory=dict)
    spearman: dict[str, list[float]] = field(default_factory=dict)
    ssim: dict[str, list[float]] = field(default_factory=dict)
    # the unit's receptive field in input pixels (top, left, bottom, right), half-open: the
    # part of the maps the metrics compare
    field: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def steps(self) -> int:
        return len(self.cascade) + 1

    def step_label(self, step: int) -> str:
        return "trained" if step == 0 else f"random to {self.cascade[step - 1]}"


def run(
    net: Any,
    x: np.ndarray,
    layer: str,
    channel: int | None = None,
    rules: list[str] | tuple[str, ...] = RULES,
    seed: int = 0,
    threads: int | None = None,
) -> SanityResult:
    """Projections of one unit of ``layer`` for the image ``x`` ((1, C, H, W), preprocessed)
    under every rule, for the trained net and each step of the cascading randomisation, with
    both metrics against the trained projection."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ShapeError(f"expected one preprocessed image (1, C, H, W), got {x.shape}")
    info = net.layer_info(layer)
    layer = info["name"]
    shape = tuple(info["shape"])
    if len(shape) != 3:
        raise ShapeError(
            f"layer '{layer}' ({info['kind']}) is not a feature map: its output is {shape}; "
            f"choose a layer with (C, H, W) output"
        )
    rules = list(rules)
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise PydeconvError(f"unknown rule(s) {bad or rules} (expected some of {', '.join(RULES)})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PydeconvError(f"seed must be a non-negative integer, got {seed!r}")
    act, _ = net.forward(x, upto=layer, keep="minimal", threads=threads)
    act = act[0]
    if channel is None:
        channel = int(np.argmax(act.reshape(act.shape[0], -1).max(axis=1)))
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise ChannelError(f"layer '{layer}': channel {channel!r} is not an integer")
    if not 0 <= channel < shape[0]:
        raise ChannelError(
            f"layer '{layer}': channel {channel} out of range (the layer has {shape[0]} channels)"
        )
    channel = int(channel)
    y, xx = np.unravel_index(int(np.argmax(act[channel])), act.shape[1:])
    start = np.zeros((1,) + shape, np.float32)
    start[0, channel, y, xx] = 1.0
    order = cascade(net, layer)
    random = randomised_params(net, order, seed)
    res = SanityResult(layer, channel, (int(y), int(xx)), int(seed), rules, order)
    for r in rules:
        res.projections[r] = []
    replaced: dict[str, np.ndarray] = {}
    for step in range(res.steps):
        if step > 0:
            replaced.update(random[step - 1])
        model = net if step == 0 else _net_with(net, replaced)
        _, trace = model.forward(x, upto=layer, keep="minimal", threads=threads)
        for r in rules:
            p = model.project(trace, layer, at=start, rule=r, threads=threads)[0]
            res.projections[r].append(np.asarray(p, dtype=np.float32))
        del model, trace
    top, left, bottom, right = pimg.receptive_field(net, layer, int(y), int(xx))
    res.field = (top, left, bottom, right)
    for r in rules:
        maps = [saliency(p)[top:bottom, left:right] for p in res.projections[r]]
        base = maps[0]
        res.spearman[r] = [spearman(base, m) for m in maps]
        res.ssim[r] = [ssim(base, m) for m in maps]
    return res


# --- the report ----------------------------------------------------------------------------------


def _number(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def summary(res: SanityResult, model: str | None, image: str | None) -> dict:
    """sanity.json: every number and parameter."""
    return {
        "format": "pydeconv-sanity",
        "version": 1,
        "model": model,
        "image": image,
        "layer": res.layer,
        "channel": res.channel,
        "position": list(res.position),
        "start": "1 at (channel, y, x), 0 elsewhere, in every net",
        "seed": res.seed,
        "rules": res.rules,
        "cascade": res.cascade,
        "init": "normal, mean 0, std of the trained parameter (weight and bias)",
        "saliency": "|projection| summed over colour channels, cropped to the receptive field",
        "receptive_field": list(res.field),
        "spearman": "scipy.stats.spearmanr of the flattened maps (average ranks for ties)",
        "ssim": {
            "function": "skimage.metrics.structural_similarity",
            "maps": "each divided by its maximum",
            "data_range": 1.0,
            "win_size": ssim_window((res.field[2] - res.field[0], res.field[3] - res.field[1])),
            "gaussian_weights": False,
            "K1": 0.01,
            "K2": 0.03,
        },
        "steps": [
            {"step": i, "label": res.step_label(i), "randomised": res.cascade[:i]}
            for i in range(res.steps)
        ],
        "metrics": {
            r: {
                "spearman": [_number(v) for v in res.spearman[r]],
                "ssim": [_number(v) for v in res.ssim[r]],
            }
            for r in res.rules
        },
    }


def _csv(res: SanityResult) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rule", "step", "randomised_down_to", "spearman", "ssim"])
    for r in res.rules:
        for i in range(res.steps):
            w.writerow(
                [
                    r,
                    i,
                    res.cascade[i - 1] if i else "",
                    "" if math.isnan(res.spearman[r][i]) else f"{res.spearman[r][i]:.6f}",
                    "" if math.isnan(res.ssim[r][i]) else f"{res.ssim[r][i]:.6f}",
                ]
            )
    return buf.getvalue().encode("utf-8")


def grid_image(res: SanityResult, channel_order: str = "RGB"):
    """Rows: rules; columns: steps; each tile (the unit's receptive field) captioned with its
    rule and step."""
    top, left, bottom, right = res.field
    tiles, captions = [], []
    for r in res.rules:
        for i, p in enumerate(res.projections[r]):
            crop = p[:, top:bottom, left:right]
            tiles.append(pimg.enlarge(pimg.render(crop, channel_order), 128))
            captions.append(f"{r}\n{i}: {res.step_label(i)}")
    return pimg.grid(tiles, cols=res.steps, pad=3, captions=captions)


def plot_image(res: SanityResult) -> bytes | None:
    """Both metrics against the step, one line per rule; None without matplotlib."""
    plt = extras.pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.6 * res.steps + 5), 4.2), sharex=True)
    steps = list(range(res.steps))
    for ax, name, values in (
        (axes[0], "Spearman rank correlation", res.spearman),
        (axes[1], "SSIM", res.ssim),
    ):
        for r in res.rules:
            ax.plot(steps, values[r], marker="o", label=r)
        ax.set_title(name)
        ax.set_xlabel("step (layers randomised from the top)")
        ax.set_xticks(steps)
        ax.set_xticklabels(["trained"] + res.cascade, rotation=60, ha="right", fontsize=7)
        ax.axhline(0.0, color="#999", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_report(
    res: SanityResult,
    out: str | os.PathLike[str],
    force: bool = False,
    model: str | None = None,
    image: str | None = None,
    channel_order: str = "RGB",
) -> Path:
    """The report folder (written whole or not at all): index.html, sanity-grid.png,
    sanity-metrics.png (with matplotlib), sanity.json, sanity.csv."""
    with report_folder(out, force) as tmp:
        (tmp / "sanity-grid.png").write_bytes(report.png_bytes(grid_image(res, channel_order)))
        plot = plot_image(res)
        if plot is not None:
            (tmp / "sanity-metrics.png").write_bytes(plot)
        data = summary(res, model, image)
        (tmp / "sanity.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        (tmp / "sanity.csv").write_bytes(_csv(res))
        captions = [
            f"{r}, step {i} ({res.step_label(i)}): Spearman {_fmt(res.spearman[r][i])}, "
            f"SSIM {_fmt(res.ssim[r][i])}"
            for r in res.rules
            for i in range(res.steps)
        ]
        figures = [
            report.Figure(
                "sanity-grid.png",
                "Projections: rows are rules, columns are steps of the randomisation",
            )
        ]
        notes = [
            f"Model: {model or '(in memory)'}. Image: {image or '(in memory)'}.",
            f"Unit: layer {res.layer}, channel {res.channel}, position {res.position} (its "
            f"strongest activation in the trained net); every net projects 1 at that unit.",
            "Cascading randomisation (Adebayo et al. 2018): step 0 is the trained net; step i "
            "re-initialises the top i parameterised layers the projection passes, in this "
            f"order: {', '.join(res.cascade) or '(none)'}. Weights and biases are drawn from "
            f"N(0, std of the trained parameter), seed {res.seed}.",
            "Metrics against the trained projection, on |projection| summed over colour "
            f"channels inside the unit's receptive field (rows {res.field[0]}-{res.field[2]}, "
            f"columns {res.field[1]}-{res.field[3]}, half-open): Spearman rank correlation, "
            "and SSIM of the maps scaled to [0, 1]. A rule whose numbers stay near 1 while "
            "the weights are randomised shows the image more than the net.",
            "All numbers: sanity.json, sanity.csv.",
        ]
        if plot is not None:
            figures.append(report.Figure("sanity-metrics.png", "Metrics by step", captions))
        else:
            notes.append(extras.PLOTS_NOTE)
            figures[0].captions = captions
        html = report.render_html(
            f"Sanity check: {res.layer} channel {res.channel}",
            [report.Section("Cascading randomisation", figures=figures)],
            notes,
        )
        (tmp / "index.html").write_text(html, encoding="utf-8")
    return Path(out)


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"


# --- the command line ----------------------------------------------------------------------------


def _cmd(args: argparse.Namespace) -> int:
    from pydeconv.net import load

    check_report_folder(args.output, args.force)  # before any work
    rules = RULES if not args.rules else tuple(args.rules)
    net = load(args.model)
    x = pimg.load(args.image, net)
    res = run(net, x, args.layer, args.channel, rules, args.seed, args.threads)
    write_report(
        res,
        args.output,
        args.force,
        model=str(args.model),
        image=str(args.image),
        channel_order=net.preprocess["channel_order"],
    )
    for r in res.rules:
        print(
            f"{r}: Spearman "
            + " ".join(_fmt(v) for v in res.spearman[r])
            + " | SSIM "
            + " ".join(_fmt(v) for v in res.ssim[r])
        )
    print(f"wrote {args.output}/index.html")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, writes: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sanity",
        parents=[common, writes],
        help="cascading weight randomisation: do the projections depend on the weights?",
    )
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--layer", required=True, help="a layer with a feature map (C, H, W)")
    p.add_argument(
        "--channel", type=int, help="the channel (default: the strongest for this image)"
    )
    p.add_argument("--rules", nargs="+", choices=RULES, help="default: all three")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (0)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the report folder")
    p.set_defaults(func=_cmd)
