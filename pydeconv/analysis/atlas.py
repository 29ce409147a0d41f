"""The feature atlas (Zeiler & Fergus Fig. 2): ``pydeconv atlas MODEL IMAGES... --layers L1,L2``.

Mining (:mod:`pydeconv.analysis.mine`) keeps for every channel of the chosen layers its top-k
units over the image set; rendering projects each kept unit back to pixels (one batched
projection per image and layer, from the position mining found) and cuts its receptive-field
patch. The report folder holds ``index.html`` (model, k, image count, skipped images, links to
the layers), one ``layer_<name>.html`` per layer with one tile per channel (the k projections
beside the k patches), the tiles' PNGs and ``atlas.json`` (docs/ATLAS.md).
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import re
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pydeconv import image as pimg
from pydeconv import report
from pydeconv.analysis import imageset, mine, reportdir
from pydeconv.errors import ChannelError, PydeconvError
from pydeconv.net import RULES

# Channels projected per engine call: a VGG16 projection is 0.7 MB per channel (3 x 240 x 240
# float32), so 64 channels of one image are 44 MB at once.
CHANNELS_PER_CALL = 64
TILE_SIDE = 72  # each projection / patch is shown at least this large (nearest neighbour) ...
TILE_MAX = 112  # ... and at most this large (a deep layer's receptive field is the whole image)
SANITY_NOTE = (
    "Check what a projection proves with `pydeconv sanity MODEL IMAGE --layer L` (cascading "
    "weight randomisation, Adebayo et al. 2018): deconvnet images partly reconstruct the input."
)

Log = Callable[[str], None]
UnitKey = tuple[str, int, int]  # (layer, channel, rank)
UnitStore = MutableMapping[UnitKey, tuple[bytes, bytes]]  # (projection PNG, patch PNG)


def _quiet(msg: str) -> None:
    pass


def safe_name(layer: str) -> str:
    """A layer name as a file name (letters, digits, '-', '_', '.')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer)


def atlas_json(st: mine.MineState, rule: str) -> dict:
    """THE atlas.json (docs/ATLAS.md): per layer and channel the top-k, best first."""
    return {
        "format": "pydeconv-atlas",
        "version": 1,
        "model": st.model,
        "layers": list(st.layers),
        "k": st.k,
        "ranking": st.ranking,
        "class": st.cls,
        "rule": rule,
        "images": list(st.images),
        "skipped": [{"path": st.images[i], "error": msg} for i, msg in sorted(st.skipped.items())],
        "units": {layer: st.units(layer) for layer in st.layers},
    }


def _small(img: Image.Image) -> Image.Image:
    img = pimg.enlarge(img, TILE_SIDE)
    if max(img.size) > TILE_MAX:
        img = img.copy()
        img.thumbnail((TILE_MAX, TILE_MAX), Image.Resampling.LANCZOS)
    return img


def _scratch_png(img: Image.Image) -> bytes:
    """A unit's picture while the report is written: PNG at zlib level 1 (it is read back once)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    return report.png_bytes(img)


Shown = dict[str, list[int]]  # layer -> the channels a report shows, ascending


def shown_channels(st: mine.MineState, channels: Sequence[int] | int | None = None) -> Shown:
    """Which channels of each mined layer the report shows (and projects): all of them
    (``None``), the ``channels`` strongest (an int: by each channel's best unit, ties to the lower
    channel), or the given channel numbers (a sequence, the same for every layer). Mining keeps
    every channel either way; projecting each unit of a deep layer costs about a backward pass,
    so a VGG16 block5 atlas of all 512 channels takes many minutes."""
    out: Shown = {}
    for layer in st.layers:
        c = int(st.shapes[layer][0])
        if channels is None:
            out[layer] = list(range(c))
        elif isinstance(channels, (int, np.integer)):
            if channels < 1:
                raise ChannelError(f"the number of channels to show must be >= 1, got {channels}")
            best = np.asarray(st.values[layer], dtype=np.float64)[:, 0]
            has = np.asarray(st.ids[layer])[:, 0] >= 0
            strength = np.where(has, best, -np.inf)
            order = np.lexsort((np.arange(c), -strength))[: int(channels)]
            out[layer] = sorted(int(ch) for ch in order)
        else:
            chans = sorted({int(ch) for ch in channels})
            if not chans:
                raise ChannelError("the list of channels to show is empty")
            bad = [ch for ch in chans if not 0 <= ch < c]
            if bad:
                raise ChannelError(
                    f"layer '{layer}' has {c} channels: channel {bad[0]} is out of range"
                )
            out[layer] = chans
    return out


def project_units(
    net: Any,
    st: mine.MineState,
    rule: str = "deconvnet",
    threads: int | None = None,
    log: Log = _quiet,
    store: UnitStore | None = None,
    shown: Shown | None = None,
) -> UnitStore:
    """Every kept unit's projection (cropped to its receptive field) and patch, as PNG bytes,
    keyed (layer, channel, rank), in ``store`` (default: a dict; the report keeps them in files
    while it is written, so memory does not grow with k x channels). One forward per image;
    per layer one batched projection of the image's channels (in chunks of CHANNELS_PER_CALL).
    With the activation ranking the projection starts at ``at="max"`` and the engine's
    positions are checked against the mined ones (a near-tie that the image's batch decided
    otherwise is projected from the mined position); other rankings start at the mined (y, x),
    one call per distinct position."""
    if rule not in RULES:
        raise PydeconvError(f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
    work: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(lambda: defaultdict(list))
    shown = shown_channels(st) if shown is None else shown
    for layer in st.layers:
        for ch in shown[layer]:
            ids, pos = st.ids[layer][ch], st.pos[layer][ch]
            for rank, (i, p) in enumerate(zip(ids, pos)):
                if i >= 0:
                    work[int(i)][layer].append((ch, rank, int(p)))
    order = net.preprocess["channel_order"]
    upto = max(st.layers, key=net.layers.index)
    out: UnitStore = {} if store is None else store
    moved = 0
    for done, image_id in enumerate(sorted(work)):
        path = st.images[image_id]
        x = pimg.load(path, net)
        seen = pimg.to_pil(x[0], net)  # the input as the model saw it, for the patches
        _, trace = net.forward(x, upto=upto, keep=list(st.layers), threads=threads)
        for layer, units in work[image_id].items():
            _, h, w = st.shapes[layer]
            groups: dict[Any, list[tuple[int, int, int]]] = defaultdict(list)
            if st.ranking == "activation":
                groups["max"] = units
            else:  # each start position its own call: `at` is one position for all channels
                for u in units:
                    groups[divmod(u[2], w)].append(u)
            for at, group in groups.items():
                for s in range(0, len(group), CHANNELS_PER_CALL):
                    chunk = group[s : s + CHANNELS_PER_CALL]
                    proj, where = net.project(
                        trace,
                        layer,
                        channel=[u[0] for u in chunk],
                        at=at,
                        rule=rule,
                        threads=threads,
                        return_positions=True,
                    )
                    for (ch, rank, p), pr, yx in zip(chunk, proj[0], where[0]):
                        y, xx = divmod(p, w)
                        if (int(yx[0]), int(yx[1])) != (y, xx):
                            pr = _at_mined(net, trace, layer, ch, (y, xx), tuple(yx), rule, path)
                            moved += 1
                        crop = pimg.mask_to_receptive_field(pr, net, layer, y, xx)
                        patch = pimg.crop_patch(seen, net, layer, y, xx)
                        out[(layer, ch, rank)] = (
                            _scratch_png(_small(pimg.render(crop, order))),
                            _scratch_png(_small(patch)),
                        )
        del trace  # before the next image's forward: one trace alive at a time
        if (done + 1) % 50 == 0:
            log(f"projected the units of {done + 1}/{len(work)} images")
    if moved:
        log(
            f"{moved} unit(s) had a near-tie for the strongest position: projected from the "
            "mined one (the engine's last bits depend on the batch an image ran in)"
        )
    return out


# How far below the map's maximum (relative) the mined position's value may lie when the image is
# forwarded alone instead of in its mining batch: float rounding, not another model.
NEAR_TIE = 1e-4


def _at_mined(
    net: Any,
    trace: Any,
    layer: str,
    ch: int,
    mined: tuple[int, int],
    engine: tuple[int, int],
    rule: str,
    path: str,
) -> np.ndarray:
    """The projection of one unit from the mined position, after the engine's ``at="max"`` chose
    another one: allowed for a near-tie only (mining forwarded the image in a batch, the atlas
    forwards it alone, and the last bits differ)."""
    fmap = trace.activation(layer)[0, ch]
    top, here = float(fmap[engine]), float(fmap[mined])
    if top - here > NEAR_TIE * max(abs(top), 1e-30):
        raise PydeconvError(
            f"layer '{layer}' channel {ch}, image {path}: the engine's strongest position "
            f"{engine} ({top:.6g}) is not the mined {mined} ({here:.6g}); was the state mined "
            "with another model?"
        )
    proj = net.project(trace, layer, channel=[ch], at=mined, rule=rule)
    return proj[0, 0]


class FileStore(MutableMapping[UnitKey, tuple[bytes, bytes]]):
    """Unit pictures in a folder (removed by ``clear``): the report's scratch space."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()
        self.keys_: set[UnitKey] = set()

    def _path(self, key: UnitKey, part: str) -> Path:
        return self.folder / f"{safe_name(key[0])}-{key[1]}-{key[2]}-{part}.png"

    def __setitem__(self, key: UnitKey, value: tuple[bytes, bytes]) -> None:
        self._path(key, "p").write_bytes(value[0])
        self._path(key, "q").write_bytes(value[1])
        self.keys_.add(key)

    def __getitem__(self, key: UnitKey) -> tuple[bytes, bytes]:
        if key not in self.keys_:
            raise KeyError(key)
        return self._path(key, "p").read_bytes(), self._path(key, "q").read_bytes()

    def __delitem__(self, key: UnitKey) -> None:
        self.keys_.remove(key)
        self._path(key, "p").unlink()
        self._path(key, "q").unlink()

    def __iter__(self) -> Iterator[UnitKey]:
        return iter(list(self.keys_))

    def __len__(self) -> int:
        return len(self.keys_)

    def clear(self) -> None:
        shutil.rmtree(self.folder)
        self.keys_.clear()


def _tile(cells: Sequence[tuple[bytes, bytes]], k: int) -> Image.Image:
    cols = min(3, k)
    projs = [Image.open(io.BytesIO(p)) for p, _ in cells]
    patches = [Image.open(io.BytesIO(q)) for _, q in cells]
    left = pimg.grid(projs, cols=cols, pad=2)
    right = pimg.grid(patches, cols=cols, pad=2)
    return pimg.grid([left, right], cols=2, pad=6, background=(200, 200, 200))


_INDEX_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
.notes { max-width: 60em; color: #444; }
"""


def _index_html(
    st: mine.MineState, rule: str, pages: dict[str, str], thumbs: dict[str, str], shown: Shown
) -> str:
    e = html.escape
    mined = st.finished - len(st.skipped)
    ranking = (
        "activation (the paper: each unit's own activation)"
        if st.ranking == "activation"
        else f"{st.ranking}" + (f" to class {st.cls}" if st.cls is not None else "")
    )
    rows = [
        ("model", st.model or "(built in memory)"),
        ("images", f"{len(st.images)} ({mined} mined, {len(st.skipped)} skipped)"),
        ("k", str(st.k)),
        ("ranking", ranking),
        ("projection rule", rule),
        ("layers", ", ".join(st.layers)),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>pydeconv feature atlas</title>',
        f"<style>{_INDEX_CSS}</style></head>",
        "<body>",
        "<h1>Feature atlas</h1>",
        '<div class="notes">',
        f"<p>For every channel of each layer, the {st.k} images that "
        f"{'activate' if st.ranking == 'activation' else 'score'} it most strongly (each image at "
        "most once per channel, at its strongest position): their projections to pixels "
        f"({e(rule)} rule) beside the receptive-field patches of the input (Zeiler &amp; Fergus "
        '2014, Fig. 2). The numbers are in <a href="atlas.json">atlas.json</a>.</p>',
        f"<p>{e(SANITY_NOTE)}</p>",
        "</div>",
        "<table>",
    ]
    out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
    out += ["</table>", "<h2>Layers</h2>", "<ul>"]
    for layer in st.layers:
        c, h, w = st.shapes[layer]
        src = report._src(pages[layer])
        some = "" if len(shown[layer]) == c else f", {len(shown[layer])} shown"
        out.append(
            f'<li><a href="{src}">{e(layer)}</a> ({c} channels{some}, {h}x{w})<br>'
            f'<a href="{src}"><img src="{report._src(thumbs[layer])}" '
            f'alt="{e(layer)} channel {shown[layer][0]}"></a></li>'
        )
    out.append("</ul>")
    out.append(f"<h2>Skipped images ({len(st.skipped)})</h2>")
    if st.skipped:
        out.append("<ul>")
        out += [f"<li>{e(st.images[i])}: {e(msg)}</li>" for i, msg in sorted(st.skipped.items())]
        out.append("</ul>")
    else:
        out.append("<p>none: every image could be read.</p>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_atlas(
    net: Any,
    st: mine.MineState,
    out: str | os.PathLike[str],
    rule: str = "deconvnet",
    force: bool = False,
    threads: int | None = None,
    log: Log = _quiet,
    channels: Sequence[int] | int | None = None,
) -> Path:
    """Render a finished mining state into the report folder ``out`` (written whole or not at
    all); returns its index.html. ``channels``: which channels the pages show
    (:func:`shown_channels`; atlas.json keeps every channel's units)."""
    mine.check_complete(st)
    reportdir.check_report_folder(out, force)
    shown = shown_channels(st, channels)
    with reportdir.report_folder(out, force) as tmp:
        units = project_units(net, st, rule, threads, log, FileStore(tmp / ".units"), shown)
        pages: dict[str, str] = {}
        thumbs: dict[str, str] = {}
        for layer in st.layers:
            folder = f"layer_{safe_name(layer)}"
            (tmp / folder).mkdir()
            figures = []
            for ch in shown[layer]:
                ids, pos, vals = st.ids[layer][ch], st.pos[layer][ch], st.values[layer][ch]
                n = int((ids >= 0).sum())
                src = f"{folder}/c{ch:04d}.png"
                tile = _tile([units[(layer, ch, r)] for r in range(n)], st.k)
                (tmp / src).write_bytes(_png(tile))
                _, _, w = st.shapes[layer]
                captions = [
                    f"{Path(st.images[int(i)]).name} (image {int(i)}) at "
                    f"({int(p) // w}, {int(p) % w}): {float(v):.4g}"
                    for i, p, v in zip(ids[:n], pos[:n], vals[:n])
                ]
                figures.append(report.Figure(src, f"channel {ch}", captions))
                thumbs.setdefault(layer, src)
            c, h, w = st.shapes[layer]
            some = "" if len(shown[layer]) == c else f", {len(shown[layer])} of them shown"
            notes = [
                f"Layer {layer} ({c} channels{some}, {h}x{w}) of {st.model or 'the model'}: per "
                "channel "
                f"the top {st.k} of {st.finished - len(st.skipped)} images by {st.ranking}"
                + (f" to class {st.cls}" if st.cls is not None else "")
                + f". Left: projections to pixels, {rule} rule, cropped to the receptive field; "
                "right: the input's receptive-field patches, in the same order (best first, "
                "row by row). Back to the index: index.html.",
                SANITY_NOTE,
            ]
            page = f"{folder}.html"
            text = report.render_html(
                f"Feature atlas: {layer}",
                [report.Section(f"{layer}: {len(shown[layer])} of {c} channels", figures=figures)],
                notes,
            )
            text = text.replace(
                "<body>", '<body>\n<p><a href="index.html">&larr; all layers</a></p>', 1
            )
            (tmp / page).write_text(text, encoding="utf-8")
            pages[layer] = page
        units.clear()
        doc = atlas_json(st, rule)
        doc["shown"] = shown
        (tmp / "atlas.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "index.html").write_text(
            _index_html(st, rule, pages, thumbs, shown), encoding="utf-8"
        )
    return Path(out) / "index.html"


def atlas(
    net: Any,
    images: Sequence[str | os.PathLike[str]],
    layers: Sequence[str],
    out: str | os.PathLike[str],
    k: int = mine.DEFAULT_K,
    batch_size: int = mine.DEFAULT_BATCH,
    rule: str = "deconvnet",
    score: mine.Score | None = None,
    ranking: str = "activation",
    class_: int | None = None,
    state_path: str | os.PathLike[str] | None = None,
    force: bool = False,
    threads: int | None = None,
    log: Log = _quiet,
    channels: Sequence[int] | int | None = None,
) -> Path:
    """Mine and render in one call (the API twin of ``pydeconv atlas``); returns index.html."""
    reportdir.check_report_folder(out, force)
    st = mine.mine(
        net,
        images,
        layers,
        k=k,
        batch_size=batch_size,
        score=score,
        ranking=ranking,
        class_=class_,
        state_path=state_path,
        threads=threads,
    )
    return write_atlas(
        net, st, out, rule=rule, force=force, threads=threads, log=log, channels=channels
    )


# --- the command line ----------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"pydeconv: {msg}", file=sys.stderr, flush=True)


def _layers(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give layer names separated by commas")
    return names


def _channel_list(text: str) -> list[int]:
    try:
        chans = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected channel numbers such as 0,5,9: {text!r}"
        ) from None
    if not chans:
        raise argparse.ArgumentTypeError("give channel numbers separated by commas")
    return chans


def default_state_path(out: str | os.PathLike[str]) -> Path:
    """Where the mining state goes by default: beside the report folder (the folder itself is
    replaced as a whole when the report is written)."""
    path = Path(out)
    return path.with_name(f"{path.name}.atlas-state.npz")


def cmd_atlas(args: argparse.Namespace) -> int:
    import pydeconv

    if args.k < 1:
        raise PydeconvError(f"-k must be >= 1, got {args.k}")
    if args.batch_size is not None and args.batch_size < 1:
        raise PydeconvError(f"--batch-size must be >= 1, got {args.batch_size}")
    reportdir.check_report_folder(args.output, args.force)
    state_path = Path(args.state) if args.state else default_state_path(args.output)
    if state_path.exists() and not (args.resume or args.force):
        raise PydeconvError(
            f"{state_path}: a mining state exists (--resume continues it, --force starts over)"
        )
    if args.resume and not state_path.exists():
        raise PydeconvError(f"{state_path}: no mining state to resume")
    paths = imageset.collect(args.images)
    if str(args.model).lower().endswith((".onnx", ".cfg")):
        _log(f"importing {args.model}")
    net = pydeconv.load(args.model)
    ranking = "activation" if args.class_ is None else "relevance"
    score = None if args.class_ is None else mine.relevance_score(args.class_)
    if args.resume:
        st = mine.MineState.load(state_path)
        if st.images != [str(p) for p in paths]:
            raise PydeconvError(
                f"{state_path}: mined over another image list ({len(st.images)} images, now "
                f"{len(paths)}): give the same IMAGES"
            )
        want = (args.layers, args.k, ranking, args.class_)
        have = (st.layers, st.k, st.ranking, st.cls)
        if want != have:
            raise PydeconvError(
                f"{state_path}: mined with layers {','.join(st.layers)}, k={st.k}, ranking "
                f"{st.ranking}{'' if st.cls is None else f' class {st.cls}'}: give the same "
                "options (or --force to start over)"
            )
        _log(f"resuming {state_path}: {st.finished}/{len(st.images)} images finished")
    else:
        batch = args.batch_size or mine.DEFAULT_BATCH
        st = mine.MineState.empty(net, paths, args.layers, args.k, ranking, args.class_, batch)
    progress = mine.Progress(len(st.images), st.finished, True if args.progress else None)
    if args.dask:
        from pydeconv.analysis import dask_shards

        st = dask_shards.mine_on_dask(args.dask, args.model, st, args.shards, args.threads, _log)
        st.save(state_path)
    else:
        try:
            st = mine.mine(
                net,
                st,
                batch_size=args.batch_size,
                score=score,
                state_path=state_path,
                save_every=args.save_every,
                threads=args.threads,
                progress=progress,
            )
        except KeyboardInterrupt:
            _log(f"finished images saved in {state_path}: the same command with --resume goes on")
            raise
    if st.skipped:
        _log(f"skipped {len(st.skipped)} unreadable image(s) (listed in the report)")
    index = write_atlas(
        net,
        st,
        args.output,
        rule=args.rule,
        force=args.force,
        threads=args.threads,
        log=_log,
        channels=args.channels if args.top_channels is None else args.top_channels,
    )
    print(f"open {index.resolve()}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, writes: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "atlas",
        parents=[common, writes],
        help="feature atlas: each channel's top-k images over an image set (Fig. 2)",
    )
    p.add_argument("model")
    p.add_argument("images", nargs="+", help="images, folders, globs or list files (@LIST)")
    p.add_argument("--layers", type=_layers, required=True, metavar="L1,L2", help="layers to mine")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the report folder")
    p.add_argument("-k", type=int, default=mine.DEFAULT_K, help="units per channel (default 9)")
    p.add_argument("--rule", choices=RULES, default="deconvnet", help="projection rule")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--top-channels",
        type=int,
        metavar="N",
        help="show (and project) only the N channels per layer with the strongest units "
        "(default: every channel; atlas.json lists every channel's units either way)",
    )
    which.add_argument(
        "--channels",
        type=_channel_list,
        metavar="C1,C2",
        help="show only these channels of every layer",
    )
    p.add_argument(
        "--class",
        dest="class_",
        type=int,
        metavar="C",
        help="rank by relevance to class C (activation x gradient of its score)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help=f"images per forward (default {mine.DEFAULT_BATCH}; a resumed state keeps its own)",
    )
    p.add_argument(
        "--state",
        metavar="FILE.npz",
        help="the mining state file (default: DIR.atlas-state.npz beside the report)",
    )
    p.add_argument("--resume", action="store_true", help="continue the mining state")
    p.add_argument(
        "--save-every",
        type=int,
        default=mine.DEFAULT_SAVE_EVERY,
        metavar="M",
        help=f"save the state every M images (default {mine.DEFAULT_SAVE_EVERY})",
    )
    p.add_argument(
        "--progress", action="store_true", help="progress line even when stderr is not a terminal"
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="mine on a Dask cluster (scheduler address; pip install 'pydeconv[dask]')",
    )
    p.add_argument("--shards", type=int, metavar="N", help="--dask: shards (default 2 x workers)")
    p.set_defaults(func=cmd_atlas)
