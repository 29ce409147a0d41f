"""Feature evolution during training (Zeiler & Fergus Fig. 4): several checkpoints of one
architecture, and for chosen channels of one layer the projection of each checkpoint's strongest
activation over a set of images, as one grid (rows: channels, columns: checkpoints).

For every checkpoint and channel the images are streamed in batches (forward to the layer only)
and the strongest activation over all images and positions is kept (ties: the first image, then
the first position in row-major order); that unit is then projected down to the pixels under the
chosen rule and shown cropped to its receptive field. One image gives the paper's view of a
fixed input; a set gives its "strongest image of the set".

The checkpoints must share the architecture: the same input shape and the same layers (names,
kinds, output shapes) in the same order; the first difference is named in the error.

``pydeconv evolution MODEL1 MODEL2 ... --image IMG... --layer L --channels 1,5,9 -o DIR`` writes
a report folder: index.html, evolution.png and evolution.json.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import image as pimg
from pydeconv import report
from pydeconv.analysis import imageset
from pydeconv.analysis.reportdir import check_report_folder, report_folder
from pydeconv.errors import ChannelError, GraphError, PydeconvError, ShapeError

RULES = ("deconvnet", "guided", "backprop")


def check_same_architecture(nets: list[Any], names: list[str]) -> None:
    """Raise GraphError naming the first difference between nets[0] and any other net."""
    first = nets[0]
    rows0 = [(r["name"], r["kind"], tuple(r["shape"])) for r in first.info()]
    for net, name in zip(nets[1:], names[1:]):
        if tuple(net.input_shape) != tuple(first.input_shape):
            raise GraphError(
                f"{name}: input shape {tuple(net.input_shape)} differs from {names[0]}'s "
                f"{tuple(first.input_shape)}: the checkpoints must share one architecture"
            )
        rows = [(r["name"], r["kind"], tuple(r["shape"])) for r in net.info()]
        for i, (a, b) in enumerate(zip(rows0, rows)):
            if a != b:
                raise GraphError(
                    f"{name}: layer #{i} is '{b[0]}' ({b[1]}, output {b[2]}) where {names[0]} "
                    f"has '{a[0]}' ({a[1]}, output {a[2]}): the checkpoints must share one "
                    f"architecture"
                )
        if len(rows) != len(rows0):
            raise GraphError(
                f"{name}: {len(rows)} layers where {names[0]} has {len(rows0)}: the checkpoints "
                f"must share one architecture"
            )


@dataclass
class Unit:
    channel: int
    image: int  # id: position in the image list
    y: int
    x: int
    value: float


@dataclass
class EvolutionResult:
    layer: str
    channels: list[int]
    rule: str
    models: list[str]
    images: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    units: list[list[Unit]] = field(default_factory=list)  # [checkpoint][channel]
    projections: list[list[np.ndarray]] = field(default_factory=list)  # [checkpoint][channel]
    fields: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    channel_order: str = "RGB"  # the first checkpoint's preprocess, for rendering


def strongest(
    net: Any,
    paths: list[Path],
    layer: str,
    channels: list[int],
    batch_size: int = 8,
    skipped: list[tuple[str, str]] | None = None,
    threads: int | None = None,
) -> list[Unit]:
    """Per channel: the strongest activation of ``layer`` over all images and positions (ties:
    the first image, then the first position in row-major order)."""
    skipped = [] if skipped is None else skipped
    best: list[Unit | None] = [None] * len(channels)
    for ids, x in imageset.iter_batches(net, paths, batch_size, skipped):
        act, _ = net.forward(x, upto=layer, keep="minimal", threads=threads)
        for k, c in enumerate(channels):
            maps = act[:, c].reshape(len(ids), -1)
            for b, image_id in enumerate(ids):
                pos = int(np.argmax(maps[b]))
                v = float(maps[b, pos])
                cur = best[k]
                if cur is None or v > cur.value:
                    y, xx = divmod(pos, act.shape[3])
                    best[k] = Unit(c, image_id, y, xx, v)
    if any(u is None for u in best):
        raise PydeconvError("no image could be read: " + "; ".join(m for _, m in skipped[:3]))
    return [u for u in best if u is not None]


def run(
    models: list[str | os.PathLike[str]],
    images: list[str | os.PathLike[str]],
    layer: str,
    channels: list[int],
    rule: str = "deconvnet",
    batch_size: int = 8,
    threads: int | None = None,
) -> EvolutionResult:
    """Loads every checkpoint (checking they share the architecture), finds each channel's
    strongest unit over ``images`` per checkpoint and projects it."""
    from pydeconv.net import load

    if len(models) < 1:
        raise PydeconvError("give at least one checkpoint")
    if rule not in RULES:
        raise PydeconvError(f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
    paths = imageset.collect(images)
    names = [str(m) for m in models]
    nets: list[Any] = [load(m) for m in models]
    check_same_architecture(nets, names)
    info = nets[0].layer_info(layer)
    layer = info["name"]
    shape = tuple(info["shape"])
    if len(shape) != 3:
        raise ShapeError(
            f"layer '{layer}' ({info['kind']}) is not a feature map: its output is {shape}"
        )
    channels = [int(c) for c in channels]
    if not channels:
        raise ChannelError(f"layer '{layer}': no channel given")
    for c in channels:
        if not 0 <= c < shape[0]:
            raise ChannelError(
                f"layer '{layer}': channel {c} out of range (the layer has {shape[0]} channels)"
            )
    res = EvolutionResult(layer, channels, rule, names, [str(p) for p in paths])
    res.channel_order = nets[0].preprocess["channel_order"]
    for i, net in enumerate(nets):
        skipped: list[tuple[str, str]] = []
        units = strongest(net, paths, layer, channels, batch_size, skipped, threads)
        if i == 0:
            res.skipped = skipped
        projections, fields = [], []
        for u in units:
            x = pimg.load(paths[u.image], net)
            _, trace = net.forward(x, upto=layer, keep="minimal", threads=threads)
            p = net.project(trace, layer, channel=u.channel, at=(u.y, u.x), rule=rule)[0]
            projections.append(p)
            fields.append(pimg.receptive_field(net, layer, u.y, u.x))
        res.units.append(units)
        res.projections.append(projections)
        res.fields.append(fields)
        nets[i] = None  # free each checkpoint once done
    return res


def summary(res: EvolutionResult) -> dict:
    """evolution.json: every number and parameter."""
    return {
        "format": "pydeconv-evolution",
        "version": 1,
        "models": res.models,
        "layer": res.layer,
        "channels": res.channels,
        "rule": res.rule,
        "images": res.images,
        "skipped": [{"path": p, "error": e} for p, e in res.skipped],
        "checkpoints": [
            {
                "model": model,
                "units": [
                    {
                        "channel": u.channel,
                        "image": u.image,
                        "path": res.images[u.image],
                        "y": u.y,
                        "x": u.x,
                        "value": u.value,
                        "receptive_field": list(f),
                    }
                    for u, f in zip(units, fields)
                ],
            }
            for model, units, fields in zip(res.models, res.units, res.fields)
        ],
    }


def grid_image(res: EvolutionResult):
    """Rows: channels; columns: checkpoints; each tile the projection inside its unit's
    receptive field, captioned with the checkpoint, channel, image and value."""
    tiles, captions = [], []
    for k, c in enumerate(res.channels):
        for m in range(len(res.models)):
            top, left, bottom, right = res.fields[m][k]
            p = res.projections[m][k][:, top:bottom, left:right]
            tiles.append(pimg.enlarge(pimg.render(p, res.channel_order), 96))
            u = res.units[m][k]
            captions.append(
                f"{Path(res.models[m]).stem}\nch {c}: image {u.image}\nvalue {u.value:.3g}"
            )
    return pimg.grid(tiles, cols=len(res.models), pad=3, captions=captions)


def write_report(res: EvolutionResult, out: str | os.PathLike[str], force: bool = False) -> Path:
    """The report folder (written whole or not at all): index.html, evolution.png,
    evolution.json."""
    with report_folder(out, force) as tmp:
        (tmp / "evolution.png").write_bytes(report.png_bytes(grid_image(res)))
        (tmp / "evolution.json").write_text(
            json.dumps(summary(res), indent=1) + "\n", encoding="utf-8"
        )
        notes = [
            f"Layer {res.layer}, channels {', '.join(map(str, res.channels))}, rule {res.rule}.",
            "Columns, left to right: " + ", ".join(res.models) + ".",
            f"Per checkpoint and channel: the strongest activation over {len(res.images)} "
            f"image(s), projected to the pixels and shown inside its receptive field.",
            "All numbers: evolution.json.",
        ]
        if res.skipped:
            notes.append(
                f"{len(res.skipped)} image(s) could not be read and were skipped: "
                + "; ".join(f"{p} ({e})" for p, e in res.skipped)
            )
        captions = [
            f"channel {u.channel} in {Path(model).name}: image {u.image} "
            f"({res.images[u.image]}), position ({u.y}, {u.x}), value {u.value:.4g}"
            for k in range(len(res.channels))
            for model, units in zip(res.models, res.units)
            for u in [units[k]]
        ]
        fig = report.Figure(
            "evolution.png", "Rows: channels; columns: checkpoints", captions=captions
        )
        html = report.render_html(
            f"Feature evolution: {res.layer}",
            [report.Section("Strongest activations across checkpoints", figures=[fig])],
            notes,
        )
        (tmp / "index.html").write_text(html, encoding="utf-8")
    return Path(out)


def _channels(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected channels such as 1,5,9, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one channel")
    return out


def _cmd(args: argparse.Namespace) -> int:
    check_report_folder(args.output, args.force)
    res = run(
        args.models,
        args.image,
        args.layer,
        args.channels,
        args.rule,
        args.batch_size,
        args.threads,
    )
    write_report(res, args.output, args.force)
    if res.skipped:
        print(f"skipped {len(res.skipped)} unreadable image(s)")
    print(f"wrote {args.output}/index.html")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, writes: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evolution",
        parents=[common, writes],
        help="how chosen feature maps change over training checkpoints (Fig. 4)",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoints, in training order")
    p.add_argument(
        "--image",
        nargs="+",
        required=True,
        metavar="IMAGES",
        help="images: files, folders, globs or @LIST files",
    )
    p.add_argument("--layer", required=True)
    p.add_argument("--channels", type=_channels, required=True, metavar="C,C,...")
    p.add_argument("--rule", choices=RULES, default="deconvnet")
    p.add_argument("--batch-size", type=int, default=8, metavar="B")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the report folder")
    p.set_defaults(func=_cmd)
