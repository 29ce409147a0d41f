"""The ``pydeconv`` command line: info, convert, project, switches, demo, and the analyses
(:mod:`pydeconv.analysis.commands`).

Every error a user can cause (a bad model, image, layer, channel, path) ends the program with one
line ``pydeconv: error: ...`` and a non-zero status, never a traceback. Outputs are never
overwritten without ``--force``, and only regular files ever are (pydeconv.fileio); the check runs
before any work and again at the rename, and files are written through a temporary file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from pydeconv import demo, detect, fileio, report
from pydeconv import image as pimg
from pydeconv.errors import PydeconvError
from pydeconv.limits import check_threads
from pydeconv.net import DEFAULT_MAX_MEMORY, RULES, parse_at


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pydeconv: error: {message} (see {self.prog} --help)\n")


def log(msg: str) -> None:
    print(f"pydeconv: {msg}", file=sys.stderr, flush=True)


def _check_output(path: Path, force: bool) -> None:
    """Before any work: a new path, or a regular file with --force (a FIFO, device, folder or
    symbolic link never)."""
    fileio.check_destination(path, replace=force)
    if not path.parent.is_dir():
        raise PydeconvError(f"folder {path.parent} does not exist")


def _load(path: str) -> Any:
    import pydeconv

    if str(path).lower().endswith((".onnx", ".cfg")):
        log(f"importing {path}")
    return pydeconv.load(path)


def _load_for_info(path: str, weights: str | None) -> Any:
    """The model for ``info``: a Darknet cfg without its weights still shows its layer table."""
    import pydeconv

    if not str(path).lower().endswith(".cfg"):
        if weights is not None:
            raise PydeconvError(f"{path}: --weights is for Darknet .cfg files only")
        return _load(path)
    log(f"importing {path}")
    guess = Path(path).with_suffix(".weights")
    if weights is None and not guess.exists():
        from pydeconv.darknet import import_darknet

        log(f"no weights given (and no {guess}): layer table only")
        graph, params = import_darknet(path, None)
        return pydeconv.build(graph, params)
    return pydeconv.load(path, weights=weights)


def _forward(net: Any, image: str, upto: str, threads: int | None) -> tuple[np.ndarray, Any]:
    net.layer_info(upto)  # an unknown layer fails before the image is read
    x = pimg.load(image, net)
    t0 = time.perf_counter()
    _, trace = net.forward(x, upto=upto, threads=threads)
    log(f"forward to {upto} in {time.perf_counter() - t0:.2f} s")
    return x, trace


# --- info ----------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    net = _load_for_info(args.model, args.weights)
    rows = [("name", "kind", "output", "rf size", "rf stride", "rf start", "params")]
    for r in net.info():
        rows.append(
            (
                r["name"],
                r["kind"],
                "x".join(str(int(v)) for v in r["shape"]),
                "x".join(str(int(v)) for v in r["rf_size"]),
                "x".join(str(int(v)) for v in r["rf_stride"]),
                ",".join(str(int(v)) for v in r["rf_start"]),
                f"{int(r['params']):,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    pre = net.preprocess
    print(
        f"model {net.graph.get('name', '?')}: input {net.input_name} "
        f"{'x'.join(str(v) for v in net.input_shape)}"
    )
    print(
        f"preprocess: size {pre['size']}, {pre['channel_order']}, scale {pre['scale']:.6g}, "
        f"mean {pre['mean']}, std {pre['std']} (source {pre.get('source_layout', 'NCHW')})"
    )
    if net.labels:
        more = ", ..." if len(net.labels) > 5 else ""
        print(f"labels: {len(net.labels)} ({', '.join(net.labels[:5])}{more})")
    for i, row in enumerate(rows):
        # numbers right-aligned, names left-aligned
        cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"total parameters: {sum(int(r['params']) for r in net.info()):,}")
    # Layers imported from several ONNX nodes (Conv + BatchNormalization, Sigmoid + Mul, ...)
    # answer to each of those nodes' names: list them.
    fused = [(r["name"], r["aliases"]) for r in net.info() if len(r.get("aliases", [])) > 1]
    if fused:
        print("layers made of several ONNX nodes (they answer to each node's name):")
        for name, aliases in fused:
            print(f"  {name}: {', '.join(aliases)}")
    if args.rules:
        _print_rules(net, args.rules, args.start)
    return 0


def _print_rules(net: Any, rule: str, start: str | None) -> None:
    """How a projection under `rule` sends the signal down through each layer it passes, from
    `start` (default: each graph output)."""
    for layer in [start] if start else net.outputs:
        rows = net.rules(layer, rule)
        print(f"\nprojection from {layer} under {rule}, in the order the signal meets the layers:")
        wn = max(len(r["name"]) for r in rows)
        wk = max(len(r["kind"]) for r in rows)
        for r in rows:
            print(f"  {r['name'].ljust(wn)}  {r['kind'].ljust(wk)}  {r['rule']}")


# --- convert -------------------------------------------------------------------------------------


def _read_labels(path: str) -> list[str]:
    """One label per line, or a JSON list, or a JSON {name: index} / {index: name} object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PydeconvError(f"{path}: labels are not UTF-8 text ({exc.reason})") from None
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting past Python's stack
            raise PydeconvError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, list):
            return [str(v) for v in data]
        if isinstance(data, dict):
            try:
                if all(isinstance(v, int) for v in data.values()):
                    return [k for k, _ in sorted(data.items(), key=lambda kv: kv[1])]
                return [str(v) for _, v in sorted(data.items(), key=lambda kv: int(kv[0]))]
            except ValueError:
                pass
        raise PydeconvError(f"{path}: expected a list or an index mapping of labels")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise PydeconvError(f"{path}: no labels in the file")
    return labels


def cmd_convert(args: argparse.Namespace) -> int:
    import pydeconv

    if len(args.dst) > 2:
        raise PydeconvError("convert takes SRC [WEIGHTS] DST: too many paths")
    weights = args.dst[0] if len(args.dst) == 2 else None
    if weights is not None and not args.src.lower().endswith(".cfg"):
        raise PydeconvError(f"{args.src}: a WEIGHTS file goes with a Darknet .cfg only")
    dst = Path(args.dst[-1])
    if dst.suffix.lower() != ".npz":
        raise PydeconvError(f"{dst}: the output must be a .npz file")
    _check_output(dst, args.force)
    # One mean or std value stands for every channel (docs/FORMAT.md).
    preprocess = {
        key: value
        for key, value in (
            ("scale", args.scale),
            ("channel_order", args.channel_order),
            ("mean", args.mean),
            ("std", args.std),
        )
        if value is not None
    }
    labels = _read_labels(args.labels) if args.labels else None
    t0 = time.perf_counter()
    log(f"importing {args.src}")
    outputs = args.outputs if args.outputs in (None, "auto") else args.outputs.split(",")
    net = pydeconv.convert(
        args.src,
        dst,
        preprocess=preprocess or None,
        labels=labels,
        weights=weights,
        outputs=outputs,
    )
    log(f"wrote {dst} ({len(net.layers)} layers) in {time.perf_counter() - t0:.1f} s")
    return 0


# --- project -------------------------------------------------------------------------------------


def _parse_at(text: str) -> str | tuple[int, int]:
    try:
        return parse_at(text)
    except PydeconvError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _progress(done: int, total: int) -> None:
    """A progress line per chunk of a projection, on a terminal only."""
    end = "\n" if done == total else ""
    print(f"\rpydeconv: projected {done}/{total} channels", end=end, file=sys.stderr, flush=True)


def cmd_project(args: argparse.Namespace) -> int:
    if args.detection is not None:
        return _project_detection(args)
    for option in ("conf", "iou", "anchors", "layout"):
        if getattr(args, option) is not None:
            raise PydeconvError(f"--{option} goes with --detection K")
    if args.layer is None:
        raise PydeconvError("give --layer LAYER (or --detection K for a detector's box)")
    if args.top is None:
        args.top = 9
    if args.to is not None:
        return _project_to(args)
    out = Path(args.output)
    report.image_format(out)  # an unwritable format fails before any work
    n = len(args.channel) if args.channel else max(args.top, 1)
    per_page = report.GRID_CHANNELS_PER_PAGE
    for page in report.page_paths(out, -(-n // per_page)):
        _check_output(page, args.force)
    net = _load(args.model)
    x, trace = _forward(net, args.image, args.layer, args.threads)
    if args.channel:
        channels = list(args.channel)
    else:
        channels = demo.top_channels(trace.activation(args.layer)[0], args.top)
    t0 = time.perf_counter()
    tiles, captions, texts = demo.feature_panels(
        net,
        x,
        trace,
        args.layer,
        channels,
        at=args.at,
        rule=args.rule,
        threads=args.threads,
        max_memory=args.max_memory,
        progress=_progress if sys.stderr.isatty() else None,
    )
    log(
        f"{len(channels)} projection(s) of {args.layer} ({args.rule}) in "
        f"{time.perf_counter() - t0:.2f} s"
    )
    pages = report.page_paths(out, -(-len(channels) // per_page))
    for i, page in enumerate(pages):  # two tiles per channel
        at = slice(2 * per_page * i, 2 * per_page * (i + 1))
        picture = pimg.grid(tiles[at], cols=2 * min(3, len(channels)), pad=3, captions=captions[at])
        fileio.write_atomic(page, report.image_bytes(picture, page), replace=args.force)
    for text in texts:
        print(text)
    print(
        f"wrote {out}"
        if len(pages) == 1
        else f"wrote {len(pages)} pages of {per_page} channels: {', '.join(map(str, pages))}"
    )
    return 0


def _project_to(args: argparse.Namespace) -> int:
    """``project ... --to LAYER -o OUT.npy``: the signal at LAYER's output (net.project's
    ``to``), float32 (K, C, H, W) for the K channels of one image."""
    out = Path(args.output)
    if out.suffix.lower() != ".npy":
        raise PydeconvError(f"{out}: --to writes the signal as .npy (name the file OUT.npy)")
    _check_output(out, args.force)
    net = _load(args.model)
    net.layer_info(args.to)  # an unknown layer fails before the image is read
    _, trace = _forward(net, args.image, args.layer, args.threads)
    if args.channel:
        channels = list(args.channel)
    else:
        channels = demo.top_channels(trace.activation(args.layer)[0], args.top)
    signal = net.project(
        trace,
        args.layer,
        channel=channels,
        at=args.at,
        rule=args.rule,
        threads=args.threads,
        max_memory=args.max_memory,
        to=args.to,
    )[0]
    buf = io.BytesIO()
    np.save(buf, signal, allow_pickle=False)
    fileio.write_atomic(out, buf.getvalue(), replace=args.force)
    print(
        f"wrote {out}: float32 {signal.shape}, the {args.rule} signal of {args.layer} channels "
        f"{','.join(map(str, channels))} at the output of {args.to}"
    )
    return 0


def _project_detection(args: argparse.Namespace) -> int:
    """``project MODEL IMAGE --detection K``: the K-th detection by score (1 = the strongest),
    its box drawn on the image beside the projection of the head unit that produced it."""
    clash = [
        name
        for name, given in (
            ("--layer", args.layer is not None),
            ("--channel", bool(args.channel)),
            ("--top", args.top is not None),
            ("--at", args.at != "max"),
        )
        if given
    ]
    if clash:
        raise PydeconvError(
            f"--detection picks the layer, channel and position itself: drop {', '.join(clash)}"
        )
    k = args.detection
    if k < 1:
        raise PydeconvError(f"--detection counts from 1 (the strongest detection), got {k}")
    out = Path(args.output)
    report.image_format(out)
    _check_output(out, args.force)
    anchors = detect.parse_anchors(args.anchors) if args.anchors else None
    net = _load(args.model)
    hs = detect.heads(net, layout=args.layout, anchors=anchors)
    picture = pimg.open_image(args.image)
    x = pimg.from_pil(picture, net)
    t0 = time.perf_counter()
    outputs, trace = net.forward(x, threads=args.threads)
    log(f"forward in {time.perf_counter() - t0:.2f} s; heads: {detect.describe_heads(hs)}")
    _, h, w = net.input_shape
    conf = 0.25 if args.conf is None else args.conf
    dets, _ = detect.detect(
        net,
        outputs=outputs,
        head_list=hs,
        mapping=detect.Resize(picture.size, (w, h)),
        conf=conf,
        iou=0.45 if args.iou is None else args.iou,
    )
    if not dets:
        raise PydeconvError(
            f"{args.image}: no detection at score >= {conf:g} (try a lower --conf), so no "
            f"detection {k}"
        )
    if k > len(dets):
        raise PydeconvError(
            f"--detection {k} is out of range: {len(dets)} detection(s) at score >= {conf:g} "
            f"(1..{len(dets)})"
        )
    listed = max(10, k)
    for i, d in enumerate(dets[:listed], 1):
        print(f"{'*' if i == k else ' '}{i}. {d.describe()}")
    if len(dets) > listed:
        print(f"  ... {len(dets) - listed} more (raise --conf to see fewer)")
    det = dets[k - 1]
    t0 = time.perf_counter()
    tiles, captions = demo.detection_panels(
        net, x, trace, det, rule=args.rule, threads=args.threads
    )
    log(
        f"projection of {det.layer} channel {det.channel} ({args.rule}) in "
        f"{time.perf_counter() - t0:.2f} s"
    )
    picture_grid = pimg.grid(tiles, cols=len(tiles), pad=3, captions=captions)
    fileio.write_atomic(out, report.image_bytes(picture_grid, out), replace=args.force)
    print(f"wrote {out}")
    return 0


# --- switches ------------------------------------------------------------------------------------


def cmd_switches(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix.lower() != ".npy":
        raise PydeconvError(f"{out}: the switches are written as .npy (name the file OUT.npy)")
    _check_output(out, args.force)
    net = _load(args.model)
    _, trace = _forward(net, args.image, args.layer, args.threads)
    switches = trace.switches(args.layer)
    buf = io.BytesIO()
    np.save(buf, switches, allow_pickle=False)
    fileio.write_atomic(out, buf.getvalue(), replace=args.force)
    print(
        f"wrote {out}: int32 {switches.shape}, index ih*W+iw into the input plane of {args.layer}"
    )
    return 0


# --- demo ----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    if args.save_model is not None:
        saved = Path(args.save_model)
        if saved.suffix.lower() != ".npz":
            raise PydeconvError(f"{saved}: the model is saved as a .npz file")
        _check_output(saved, args.force)
    try:
        index = demo.run_demo(
            args.output,
            images=args.image,
            model=args.model,
            threads=args.threads,
            force=args.force,
            log=log,
            save_model=args.save_model,
            probe_data=args.probe,
        )
    except KeyboardInterrupt:
        log(f"the same command, without --force, finishes {args.output}")
        raise
    print(f"open {index.resolve()}")
    return 0


# --- serve -------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from pydeconv import serve

    return serve.run(
        args.model, args.images, args.atlas, args.host, args.port, args.threads, args.cache, log
    )


# --- the parser ----------------------------------------------------------------------------------


def _threads(text: str) -> int:
    # argparse names the option in front of an ArgumentTypeError ("argument --threads: ..."); a
    # plain ValueError would print the function's name instead.
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    try:
        return check_threads(n)
    except PydeconvError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _global_options(parser: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after its name. SUPPRESS as the default: a value
    given before the command is not overwritten by the subcommand parser's absent one."""
    parser.add_argument(
        "--threads",
        type=_threads,
        metavar="N",
        default=argparse.SUPPRESS,
        help="worker threads (default: all cores)",
    )


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return v


def _bytes(text: str) -> int:
    """A byte count: a positive integer, optionally with K, M or G (powers of 1024)."""
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    try:
        n = int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        msg = f"expected bytes such as 512M or 2G, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be > 0")
    return n


def build_parser() -> argparse.ArgumentParser:
    from pydeconv import __version__

    # The parents are _Parser too: add_parser() takes parents of the parser_class it builds.
    common = _Parser(add_help=False)
    _global_options(common)
    writes = _Parser(add_help=False)
    writes.add_argument("--force", action="store_true", help="overwrite existing outputs")

    parser = _Parser(
        prog="pydeconv", description="Zeiler & Fergus deconvnet projections: what a CNN sees."
    )
    parser.add_argument("--version", action="version", version=f"pydeconv {__version__}")
    _global_options(parser)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser("info", parents=[common], help="layer table of a model")
    p.add_argument("model", help=".npz, .onnx or Darknet .cfg model")
    p.add_argument("--weights", help="a Darknet cfg's .weights (default: beside the cfg)")
    p.add_argument(
        "--rules",
        choices=RULES,
        help="also list how a projection under this rule sends the signal down each layer",
    )
    p.add_argument(
        "--from",
        dest="start",
        metavar="LAYER",
        help="with --rules: the projection's layer (default: each graph output)",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "convert", parents=[common, writes], help="ONNX or Darknet cfg+weights to pydeconv .npz"
    )
    p.add_argument("src", help=".onnx model or Darknet .cfg")
    p.add_argument(
        "dst", nargs="+", metavar="[WEIGHTS] DST", help="the cfg's .weights, then the output .npz"
    )
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean, after scaling")
    p.add_argument("--std", type=float, nargs="+", help="per-channel std, after scaling")
    p.add_argument("--scale", type=float, help="pixel scale (default 1/255)")
    p.add_argument("--channel-order", choices=["RGB", "BGR", "L"])
    p.add_argument("--labels", metavar="FILE", help="class names: one per line, or JSON")
    p.add_argument(
        "--outputs",
        metavar="auto|T1,T2",
        help="import part of an ONNX graph: 'auto' stops before the nodes that cannot be mapped "
        "(a detector's box decoding), or the ONNX tensors to make the outputs",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("project", parents=[common, writes], help="projections of one layer")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--layer", help="the layer to project (not with --detection)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--channel", type=int, nargs="+", metavar="C", help="channels to project")
    which.add_argument(
        "--top",
        type=int,
        metavar="K",
        help="the K most active channels for this image (default 9)",
    )
    which.add_argument(
        "--detection",
        type=int,
        metavar="K",
        help="a detector's K-th detection by score (1 = the strongest): its box beside the "
        "projection of the head unit that produced it (YOLO heads: Darknet [yolo], "
        "Ultralytics v5/v8)",
    )
    p.add_argument("--at", type=_parse_at, default="max", help="max (default), map, or Y,X")
    p.add_argument("--rule", choices=RULES, default="deconvnet")
    p.add_argument(
        "--max-memory",
        type=_bytes,
        metavar="BYTES",
        help=f"working memory of the projection, e.g. 512M (default "
        f"{DEFAULT_MAX_MEMORY >> 20}M); more channels than fit run in chunks, with "
        f"a progress line on a terminal",
    )
    p.add_argument(
        "--conf", type=_fraction, metavar="P", help="--detection: score threshold (0.25)"
    )
    p.add_argument("--iou", type=_fraction, metavar="P", help="--detection: NMS IoU (0.45)")
    p.add_argument(
        "--layout",
        choices=list(detect.LAYOUTS),
        help="--detection: how to read the heads when the model does not say (Darknet models "
        "carry their [yolo] metadata; v8 is recognised by its 4*16+classes channels, and whole "
        "YOLOv8/YOLOv5 graphs, v8_decoded/v5_decoded, by their one decoded output)",
    )
    p.add_argument(
        "--anchors",
        metavar="'W,H ...; W,H ...'",
        help="--detection: anchors in input pixels per output, ';' between outputs",
    )
    p.add_argument(
        "--to",
        metavar="LAYER",
        help="stop at this layer and write the signal at its output as OUT.npy, float32 "
        "(channels, C, H, W) (backprop: the gradient there)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.png", help="the picture grid: .png or .jpg"
    )
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("switches", parents=[common, writes], help="max-pooling switches as .npy")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--layer", required=True, metavar="POOL")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npy")
    p.set_defaults(func=cmd_switches)

    p = sub.add_parser("demo", parents=[common, writes], help="the Fig. 2 demo on VGG16")
    p.add_argument("-o", "--output", default="pydeconv-demo", metavar="DIR")
    p.add_argument(
        "--image", nargs="+", metavar="PATH", help="images (default: the bundled photos)"
    )
    p.add_argument(
        "--model",
        help="yolov3-tiny (the real Darknet YOLOv3-tiny, fetched once: each detection's box "
        "beside the projection of the head unit behind it), or another .npz/.onnx/.cfg model "
        "instead of the default VGG16",
    )
    p.add_argument(
        "--save-model",
        metavar="FILE.npz",
        help="also save the model the demo used (for info, project, switches)",
    )
    p.add_argument(
        "--probe",
        metavar="DATA_DIR",
        help="a labelled image set (class folders, or train/ and test/ of them): adds the "
        "retrain-depth probe of the shown layers (pydeconv probe) to the summary",
    )
    p.set_defaults(func=cmd_demo)

    from pydeconv.analysis.commands import register_all

    register_all(sub, common, writes)  # atlas, probe, occlude, ... (pydeconv.analysis)

    # -- serve
    p = sub.add_parser("serve", parents=[common], help="explore a model in the browser")
    p.add_argument("model", help=".npz, .onnx or Darknet .cfg model")
    p.add_argument("images", nargs="*", metavar="IMAGES_DIR", help="folders of images to offer")
    p.add_argument("--atlas", metavar="DIR", help="a `pydeconv atlas` report: top-k tiles")
    p.add_argument("--port", type=int, default=8765, help="default 8765")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--cache", type=_bytes, metavar="BYTES", help="forward traces kept (512M)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.threads = getattr(args, "threads", None)
    try:
        if args.threads is not None:
            import pydeconv

            pydeconv.set_num_threads(args.threads)
        top = getattr(args, "top", None)
        if top is not None and top < 1 and not getattr(args, "channel", None):
            raise PydeconvError("--top must be >= 1")
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`pydeconv info MODEL | head`): that is how a pipe ends, not an
        # error. Output still buffered would fail again at exit, so stdout goes to /dev/null.
        _quiet_stdout()
        return 0
    except (PydeconvError, OSError) as exc:
        print(f"pydeconv: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pydeconv: error: interrupted", file=sys.stderr)
        return 130


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file
        pass


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
