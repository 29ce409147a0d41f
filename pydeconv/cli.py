"""The ``pydeconv`` command line: info, convert, project, switches, demo.

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

from pydeconv import demo, fileio, report
from pydeconv import image as pimg
from pydeconv.errors import PydeconvError
from pydeconv.limits import check_threads
from pydeconv.net import DEFAULT_MAX_MEMORY, RULES


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

    if str(path).lower().endswith(".onnx"):
        log(f"importing {path}")
    return pydeconv.load(path)


def _forward(net: Any, image: str, upto: str, threads: int | None) -> tuple[np.ndarray, Any]:
    net.layer_info(upto)  # an unknown layer fails before the image is read
    x = pimg.load(image, net)
    t0 = time.perf_counter()
    _, trace = net.forward(x, upto=upto, threads=threads)
    log(f"forward to {upto} in {time.perf_counter() - t0:.2f} s")
    return x, trace


# --- info ----------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    net = _load(args.model)
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

    dst = Path(args.dst)
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
        args.src, dst, preprocess=preprocess or None, labels=labels, outputs=outputs
    )
    log(f"wrote {dst} ({len(net.layers)} layers) in {time.perf_counter() - t0:.1f} s")
    return 0


# --- project -------------------------------------------------------------------------------------


def _parse_at(text: str) -> str | tuple[int, int]:
    if text in ("max", "map"):
        return text
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected max, map or Y,X; got {text!r}") from None
    return y, x


def _progress(done: int, total: int) -> None:
    """A progress line per chunk of a projection, on a terminal only."""
    end = "\n" if done == total else ""
    print(f"\rpydeconv: projected {done}/{total} channels", end=end, file=sys.stderr, flush=True)


def cmd_project(args: argparse.Namespace) -> int:
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
        )
    except KeyboardInterrupt:
        log(f"the same command, without --force, finishes {args.output}")
        raise
    print(f"open {index.resolve()}")
    return 0


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
    p.add_argument("model", help=".npz or .onnx model")
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

    p = sub.add_parser("convert", parents=[common, writes], help="ONNX to pydeconv .npz")
    p.add_argument("src", help=".onnx model")
    p.add_argument("dst", help="output .npz")
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
    p.add_argument("--layer", required=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--channel", type=int, nargs="+", metavar="C", help="channels to project")
    which.add_argument(
        "--top",
        type=int,
        default=9,
        metavar="K",
        help="the K most active channels for this image (default 9)",
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
    p.add_argument("--model", help="another .npz/.onnx model instead of the default VGG16")
    p.add_argument(
        "--save-model",
        metavar="FILE.npz",
        help="also save the model the demo used (for info, project, switches)",
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.threads = getattr(args, "threads", None)
    try:
        if args.threads is not None:
            import pydeconv

            pydeconv.set_num_threads(args.threads)
        if getattr(args, "top", 1) < 1 and not getattr(args, "channel", None):
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
