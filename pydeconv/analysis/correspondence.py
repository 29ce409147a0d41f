"""Correspondence (Zeiler & Fergus Sec. 4.3, Table 1): does occluding the same part of different
objects (the left eye of five dogs) change a layer's features in the same way?

For each image ``i`` and layer ``l``, ``eps_i = x_i - x~_i``: the layer's output (flattened) for
the original minus that for the image with the part occluded (the box set to the fill value in the
preprocessed input, as :mod:`pydeconv.analysis.occlusion` does; default 0, the model's mean
pixel). The paper defines ``Delta_l = sum_{i != j} H(sign(eps_i), sign(eps_j))`` with ``H`` the
Hamming distance; the values it reports (0.067 to 0.107 at layer 5) are fractions, so here:

- ``delta``: the mean over image pairs ``i < j`` of the fraction of entries where
  ``sign(eps_i)`` and ``sign(eps_j)`` differ (``sign`` is -1, 0 or +1) -- 0 when every image's
  features changed the same way, lower = more consistent; the number Table 1 reports;
- ``delta_sum``: the paper's formula as written, the sum over ordered pairs ``i != j`` of the raw
  Hamming counts.

The control: ``random`` repetitions in which each image is occluded by a box of the same size as
its own at a uniformly random position inside the input (``numpy.random.default_rng(seed)``); its
``delta`` per repetition, their mean and standard deviation. A part whose occlusion changes the
features consistently has a ``delta`` well below the random control's. ``random_mode``:
``"independent"`` (default) draws a position per image; ``"shared"`` draws one per repetition and
puts every image's box there (each box's top-left corner at the same point, the point drawn so
that the largest box fits). The two answer different questions: units whose receptive field misses
the box do not change (sign 0), so boxes at the same place in every image already agree on those
entries; the shared control shows how much of a part's low ``delta`` comes from the parts sitting
at similar places, the independent one what random occlusions anywhere give.

Boxes (``BOXES.json``): ``[x1, y1, x2, y2]`` (half-open, pixels), one per image, either as a list
in the order of the images or an object keyed by the image's path as given or its file name;
wrapped as ``{"units": "input" | "image", "boxes": ...}`` to say whether they are in network
input pixels (the default) or in the original image's pixels (scaled by the resize
preprocessing does).
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

from pydeconv import detect, report
from pydeconv import image as pimg
from pydeconv.analysis import extras, heatmap, imageset, outputs
from pydeconv.analysis.reportdir import check_report_folder, report_folder
from pydeconv.errors import ImageError, PydeconvError
from pydeconv.fileio import write_atomic

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in input pixels, half-open
MAX_RANDOM = 10_000
RANDOM_MODES = ("independent", "shared")


def delta(signs: np.ndarray) -> tuple[float, int]:
    """(mean over pairs i < j of the fraction of differing entries, sum over ordered pairs i != j
    of the differing counts) of ``signs`` (N, D)."""
    n, d = signs.shape
    if n < 2:
        raise PydeconvError("Delta needs at least two images")
    counts = [
        int(np.count_nonzero(signs[i] != signs[j])) for i in range(n) for j in range(i + 1, n)
    ]
    return float(np.mean(counts) / d) if d else 0.0, 2 * sum(counts)


def _box(value: Any, where: str) -> tuple[float, float, float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise PydeconvError(f"{where}: a box is [x1, y1, x2, y2] (four numbers), got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if not (x2 > x1 and y2 > y1):
        raise PydeconvError(f"{where}: an empty box {list(value)} (x2 > x1 and y2 > y1 needed)")
    return x1, y1, x2, y2


def match_boxes(
    data: Any, images: Sequence[str], where: str = "boxes"
) -> tuple[str, list[tuple[float, float, float, float]]]:
    """(units, one raw box per image) from the boxes file's content (module notes)."""
    units = "input"
    if isinstance(data, dict) and "boxes" in data:
        units = data.get("units", "input")
        if units not in ("input", "image"):
            raise PydeconvError(f"{where}: units must be 'input' or 'image', got {units!r}")
        data = data["boxes"]
    if isinstance(data, list):
        if len(data) != len(images):
            raise PydeconvError(f"{where}: {len(data)} boxes for {len(images)} images")
        return units, [_box(b, f"{where}[{i}]") for i, b in enumerate(data)]
    if not isinstance(data, dict):
        raise PydeconvError(f"{where}: expected a list of boxes or an object keyed by image")
    raw = []
    for img in images:
        key = next((k for k in (img, Path(img).name) if k in data), None)
        if key is None:
            raise PydeconvError(f"{where}: no box for image {img} (key: its path or name)")
        raw.append(_box(data[key], f"{where}[{key!r}]"))
    return units, raw


def to_input(
    raw: Sequence[tuple[float, float, float, float]],
    units: str,
    image_sizes: Sequence[tuple[int, int]],
    input_hw: tuple[int, int],
    images: Sequence[str],
) -> list[Box]:
    """Boxes in whole input pixels, clipped to the input; ``units="image"`` boxes are scaled by
    the resize of preprocessing (``image_sizes``: each original's (W, H))."""
    h, w = input_hw
    out = []
    for img, (iw, ih), (x1, y1, x2, y2) in zip(images, image_sizes, raw):
        if units == "image":
            sx, sy = w / iw, h / ih
            x1, x2, y1, y2 = x1 * sx, x2 * sx, y1 * sy, y2 * sy
        b = (
            max(0, int(round(x1))),
            max(0, int(round(y1))),
            min(w, int(round(x2))),
            min(h, int(round(y2))),
        )
        if b[2] <= b[0] or b[3] <= b[1]:
            raise PydeconvError(f"the box of {img} lies outside the {w}x{h} input")
        out.append(b)
    return out


def read_boxes(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PydeconvError(f"{path}: cannot read the boxes ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise PydeconvError(f"{path}: not valid JSON ({exc})") from None


@dataclass
class Correspondence:
    layers: list[str]
    boxes: list[Box]
    delta: dict[str, float]
    delta_sum: dict[str, int]
    random: dict[str, list[float]] = field(default_factory=dict)
    random_boxes: list[list[Box]] = field(default_factory=list)
    fill: list[float] = field(default_factory=list)
    seed: int = 0
    random_mode: str = "independent"
    batch: int = 1

    def random_mean(self, layer: str) -> float | None:
        r = self.random.get(layer)
        return float(np.mean(r)) if r else None

    def random_std(self, layer: str) -> float | None:
        r = self.random.get(layer)
        return float(np.std(r)) if r else None


def correspondence(
    net: Any,
    x: np.ndarray,
    boxes: Sequence[Box],
    layers: Sequence[str],
    random: int = 0,
    seed: int = 0,
    fill: str | float = "mean",
    random_mode: str = "independent",
    batch: int = 8,
    max_memory: int = outputs.DEFAULT_MAX_MEMORY,
    threads: int | None = None,
) -> Correspondence:
    """Delta per layer for the preprocessed images ``x`` (N, C, H, W) and their ``boxes``
    (module notes), with ``random`` repetitions of the random-box control."""
    layers = list(layers)
    if not layers:
        raise PydeconvError("give at least one layer")
    dims = {layer: outputs.layer_vector(net, layer) for layer in layers}  # unknown: named
    n = int(x.shape[0])
    if n < 2:
        raise PydeconvError(f"correspondence needs at least two images, got {n}")
    if len(boxes) != n:
        raise PydeconvError(f"{len(boxes)} boxes for {n} images")
    if isinstance(random, bool) or not isinstance(random, int) or not 0 <= random <= MAX_RANDOM:
        raise PydeconvError(f"random repetitions must be 0..{MAX_RANDOM}, got {random!r}")
    if random_mode not in RANDOM_MODES:
        raise PydeconvError(
            f"random_mode must be one of {', '.join(RANDOM_MODES)}, got {random_mode!r}"
        )
    _, h, w = (int(v) for v in net.input_shape)
    # held at once, per feature value: the original's and the occluded image's (float32), their
    # difference (float32) and its sign (int8)
    held = n * sum(dims.values()) * 13
    if held > max_memory:
        raise PydeconvError(
            f"{n} images x {sum(dims.values())} feature values need {held >> 20} MiB, more than "
            f"{max_memory >> 20} MiB: fewer images or smaller layers"
        )
    fills = outputs.fill_values(net, fill)
    bsz = outputs.batch_for(net, batch, max_memory)

    def features(inputs: np.ndarray) -> dict[str, np.ndarray]:
        got: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
        for s in range(0, len(inputs), bsz):
            _, trace = net.forward(inputs[s : s + bsz], keep=layers, threads=threads)
            for layer in layers:
                a = trace.activation(layer)
                got[layer].append(np.array(a, np.float32).reshape(a.shape[0], -1))
        return {k: np.concatenate(v) for k, v in got.items()}

    def occlude_all(bs: Sequence[Box]) -> np.ndarray:
        xo = np.array(x, np.float32, copy=True)
        for i, (x1, y1, x2, y2) in enumerate(bs):
            xo[i, :, y1:y2, x1:x2] = fills[:, None, None]
        return xo

    def deltas(bs: Sequence[Box]) -> dict[str, tuple[float, int]]:
        occ = features(occlude_all(bs))
        # float32 differences have the sign of the exact difference (0 only for equal values)
        return {layer: delta(np.sign(orig[layer] - occ[layer]).astype(np.int8)) for layer in layers}

    orig = features(np.asarray(x, np.float32))
    main = deltas(boxes)
    res = Correspondence(
        layers,
        list(boxes),
        {k: v[0] for k, v in main.items()},
        {k: v[1] for k, v in main.items()},
        fill=[float(v) for v in fills],
        seed=seed,
        random_mode=random_mode,
        batch=bsz,
    )
    rng = np.random.default_rng(seed)
    max_h = max(y2 - y1 for _, y1, _, y2 in boxes)
    max_w = max(x2 - x1 for x1, _, x2, _ in boxes)
    for _ in range(random):
        rb = []
        if random_mode == "shared":
            top, left = int(rng.integers(0, h - max_h + 1)), int(rng.integers(0, w - max_w + 1))
        for x1, y1, x2, y2 in boxes:
            bw, bh = x2 - x1, y2 - y1
            if random_mode == "independent":
                top = int(rng.integers(0, h - bh + 1))
                left = int(rng.integers(0, w - bw + 1))
            rb.append((left, top, left + bw, top + bh))
        res.random_boxes.append(rb)
        for layer, (d, _) in deltas(rb).items():
            res.random.setdefault(layer, []).append(d)
    return res


# --- the report ----------------------------------------------------------------------------------


def to_json(res: Correspondence, model: str, images: Sequence[str], skipped: list) -> dict:
    return {
        "format": "pydeconv-correspondence",
        "version": 1,
        "model": model,
        "images": list(images),
        "skipped": [{"path": p, "error": e} for p, e in skipped],
        "layers": res.layers,
        "boxes": [list(b) for b in res.boxes],
        "box_units": "input pixels, [x1, y1, x2, y2], half-open",
        "fill": res.fill,
        "delta": res.delta,
        "delta_definition": "mean over image pairs i<j of the fraction of entries where "
        "sign(eps_i) != sign(eps_j), eps = features(original) - features(occluded)",
        "delta_sum": res.delta_sum,
        "random": {
            "repetitions": len(res.random_boxes),
            "seed": res.seed,
            "mode": res.random_mode,
            "delta": res.random,
            "mean": {k: res.random_mean(k) for k in res.layers},
            "std": {k: res.random_std(k) for k in res.layers},
            "boxes": [[list(b) for b in rb] for rb in res.random_boxes],
        },
    }


def write_report(
    res: Correspondence,
    net: Any,
    x: np.ndarray,
    images: Sequence[str],
    out: str | Path,
    model: str,
    skipped: list | None = None,
    force: bool = False,
) -> Path:
    skipped = skipped or []
    with report_folder(out, force) as tmp:
        tiles = []
        for i, b in enumerate(res.boxes):
            big = pimg.enlarge(pimg.to_pil(x[i], net), 160)
            f = big.width // int(net.input_shape[2])
            tiles.append(detect.draw_box(big, [v * f for v in b], color=(255, 40, 40), width=2))
        strip = pimg.grid(tiles, cols=min(6, len(tiles)), captions=[Path(p).name for p in images])
        write_atomic(tmp / "images.png", report.png_bytes(strip))
        figures = [report.Figure("images.png", "the images with the occluded box")]
        series = {"part": [res.delta[k] for k in res.layers]}
        if res.random:
            series["random (mean)"] = [res.random_mean(k) or 0.0 for k in res.layers]
        pic = heatmap.bar_plot(
            res.layers, series, "Delta per layer (lower: more consistent)", "Delta"
        )
        if pic is not None:
            write_atomic(tmp / "delta.png", report.png_bytes(pic))
            figures.append(report.Figure("delta.png", "Delta per layer, part vs random boxes"))
        doc = to_json(res, model, images, skipped)
        write_atomic(tmp / "correspondence.json", json.dumps(doc, indent=1).encode("utf-8"))
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(["layer", "delta", "delta_sum", "random_mean", "random_std", "repetitions"])
        for k in res.layers:
            wr.writerow(
                [
                    k,
                    repr(res.delta[k]),
                    res.delta_sum[k],
                    res.random_mean(k),
                    res.random_std(k),
                    len(res.random_boxes),
                ]
            )
        write_atomic(tmp / "correspondence.csv", buf.getvalue().encode("utf-8"))
        notes = [
            f"Model {model}; {len(images)} images, each with its box set to the model's fill "
            f"value ({', '.join(f'{v:.4g}' for v in res.fill)} in preprocessed units).",
            "Delta: the mean over image pairs of the fraction of feature entries where the signs "
            "of the change (original minus occluded) differ (Zeiler & Fergus Table 1; lower = "
            "the part's occlusion changes the features more consistently). Numbers: "
            "correspondence.json, correspondence.csv.",
        ]
        for k in res.layers:
            line = f"{k}: Delta = {res.delta[k]:.4f}"
            if res.random:
                line += (
                    f"; random boxes {res.random_mean(k):.4f} +- {res.random_std(k):.4f} "
                    f"({len(res.random_boxes)} repetitions, {res.random_mode} positions, "
                    f"seed {res.seed})"
                )
            notes.append(line)
        if skipped:
            notes.append(
                f"{len(skipped)} unreadable image(s) skipped: "
                + "; ".join(f"{p} ({e})" for p, e in skipped)
            )
        if extras.optional("matplotlib") is None:
            notes.append(extras.PLOTS_NOTE)
        html = report.render_html(
            "Correspondence (Zeiler & Fergus Table 1)",
            [report.Section("Images and Delta", None, "", figures)],
            notes,
        )
        write_atomic(tmp / "index.html", html.encode("utf-8"))
    return Path(out) / "index.html"


# --- the command line ----------------------------------------------------------------------------


def cmd_correspond(args: argparse.Namespace) -> int:
    from pydeconv.cli import _load, log

    check_report_folder(args.output, args.force)
    layers = [v for v in args.layers.split(",") if v]
    data = read_boxes(args.boxes)
    paths = imageset.collect(args.images)
    net = _load(args.model)
    for layer in layers:
        net.layer_info(layer)
    _, h, w = (int(v) for v in net.input_shape)
    # every image has a box, or the run stops before decoding any image
    names = [str(p) for p in paths]
    units, raw = match_boxes(data, names, str(args.boxes))
    skipped: list[tuple[str, str]] = []
    kept, kept_raw, xs, sizes = [], [], [], []
    for p, r in zip(names, raw):
        try:
            picture = pimg.open_image(p)
        except ImageError as exc:
            skipped.append((p, str(exc)))
            continue
        kept.append(p)
        kept_raw.append(r)
        sizes.append(picture.size)
        xs.append(pimg.from_pil(picture, net))
    if skipped:
        log(f"skipped {len(skipped)} unreadable image(s)")
    if len(kept) < 2:
        raise PydeconvError(
            f"correspondence needs at least two readable images, got {len(kept)}"
            + (f" ({len(skipped)} unreadable)" if skipped else "")
        )
    boxes = to_input(kept_raw, units, sizes, (h, w), kept)
    x = np.concatenate(xs)
    res = correspondence(
        net,
        x,
        boxes,
        layers,
        random=args.random,
        seed=args.seed,
        fill=args.fill,
        random_mode=args.random_mode,
        batch=args.batch,
    )
    index = write_report(res, net, x, kept, args.output, args.model, skipped, args.force)
    for k in res.layers:
        line = f"{k}: Delta {res.delta[k]:.4f}"
        if res.random:
            line += f", random {res.random_mean(k):.4f} +- {res.random_std(k):.4f}"
        print(line)
    print(f"open {index.resolve()}")
    return 0


def register(sub: Any, common: Any, writes: Any) -> None:
    p = sub.add_parser(
        "correspond",
        parents=[common, writes],
        help="consistency of the feature change when the same part is occluded across images "
        "(Zeiler & Fergus Table 1)",
    )
    p.add_argument("model")
    p.add_argument("images", nargs="+", help="images, folders, globs or list files")
    p.add_argument("--boxes", required=True, metavar="BOXES.json", help="one box per image")
    p.add_argument("--layers", required=True, metavar="L1,L2")
    p.add_argument("--random", type=int, default=0, metavar="R", help="random-box repetitions")
    p.add_argument("--seed", type=int, default=0, help="seed of the random boxes")
    p.add_argument(
        "--random-mode",
        choices=RANDOM_MODES,
        default="independent",
        help="a random position per image (default) or one shared by all images",
    )
    p.add_argument("--fill", default="mean", metavar="mean|grey|V", help="as occlude's --fill")
    p.add_argument("--batch", type=outputs.positive_int, default=8, help="images per forward")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_correspond)
