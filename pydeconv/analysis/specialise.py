"""How specialised is each layer: per-channel measures over a feature atlas's top-k images.

Reads the ``atlas.json`` that ``pydeconv atlas`` writes (format ``pydeconv-atlas``, version 1:
per layer and channel the top-k units as image id, path, y, x, value).

With labels (``DATA_DIR`` of class folders: an image's class is the first folder of its path
below ``DATA_DIR``), per channel, from the classes of its top-k images:

- the class histogram ``n_c`` and its shares ``p_c = n_c / k'`` (``k'`` the channel's entries);
- the **selectivity index** ``(p_max - p_rest) / (p_max + p_rest)``, ``p_rest`` the mean share
  of the other ``K - 1`` classes, i.e. ``(1 - p_max) / (K - 1)``: 1 when all top-k images share
  one class, 0 when every class has the same share;
- the **entropy** ``H = -sum p_c log2 p_c`` in bits, and ``H / log2 K`` (0: one class, 1: even).

Without labels (and beside them unless ``diversity=False``): the **diversity** of the top-k, the
mean pairwise cosine distance ``1 - u.v / (|u| |v|)`` between the units' feature vectors, each
the layer's activation vector over all its channels (C values) at the unit's position (y, x), from
a forward of the unit's image through the model. Pairs with a zero vector are left out; a channel
with fewer than two vectors has no diversity (null).

Per layer: the spread of each measure over the channels (count, mean, median, quartiles, range).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import report
from pydeconv.analysis import extras, imageset
from pydeconv.analysis.probe import html_table, write_page
from pydeconv.errors import PydeconvError
from pydeconv.fileio import write_atomic

ATLAS_FORMAT = "pydeconv-atlas"
ATLAS_VERSION = 1
MEASURES = ("selectivity", "entropy_norm", "diversity")
_TITLES = {
    "selectivity": "selectivity index (class histogram of the top-k)",
    "entropy_norm": "class entropy / log2(classes)",
    "diversity": "diversity: mean pairwise cosine distance of the top-k units' feature vectors",
}


class AtlasFormatError(PydeconvError):
    """An atlas.json that is missing or not what the schema says."""


# --- reading ---------------------------------------------------------------------------------


def _fail(path: Path, field: str, what: str) -> AtlasFormatError:
    return AtlasFormatError(f"{path}: {field}: {what}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_atlas(atlas: str | os.PathLike[str]) -> tuple[dict, Path]:
    """The checked atlas.json of an atlas folder (or the file itself) and the file's path."""
    path = Path(atlas)
    if path.is_dir():
        path = path / "atlas.json"
    if not path.is_file():
        raise AtlasFormatError(f"{path}: no atlas.json there (make one with pydeconv atlas)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AtlasFormatError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected an object")
    if doc.get("format") != ATLAS_FORMAT:
        raise _fail(path, "format", f"{doc.get('format')!r}, expected {ATLAS_FORMAT!r}")
    if doc.get("version") != ATLAS_VERSION:
        raise _fail(path, "version", f"{doc.get('version')!r}, this pydeconv reads {ATLAS_VERSION}")
    for key, kind in (("model", str), ("layers", list), ("images", list), ("units", dict)):
        if not isinstance(doc.get(key), kind):
            raise _fail(path, key, f"missing or not a {kind.__name__}")
    if not _int(doc.get("k")) or doc["k"] < 1:
        raise _fail(path, "k", f"{doc.get('k')!r} is not an integer >= 1")
    if not all(isinstance(s, str) for s in doc["images"]):
        raise _fail(path, "images", "expected a list of paths")
    n = len(doc["images"])
    for layer in doc["layers"]:
        channels = doc["units"].get(layer) if isinstance(layer, str) else None
        if not isinstance(channels, list):
            raise _fail(path, f"units.{layer}", "missing or not a list of channels")
        for c, units in enumerate(channels):
            where = f"units.{layer}[{c}]"
            if not isinstance(units, list) or len(units) > doc["k"]:
                raise _fail(path, where, f"expected a list of at most k={doc['k']} units")
            for r, u in enumerate(units):
                ok = isinstance(u, dict) and all(_int(u.get(f)) for f in ("image", "y", "x"))
                if not ok or not isinstance(u.get("value"), (int, float)):
                    raise _fail(path, f"{where}[{r}]", "expected {image, y, x: int, value: number}")
                if not 0 <= u["image"] < n or u["y"] < 0 or u["x"] < 0:
                    raise _fail(
                        path,
                        f"{where}[{r}]",
                        f"image {u['image']} / position out of range ({n} images)",
                    )
    return doc, path


def image_paths(doc: dict, atlas_file: Path) -> list[Path]:
    """The atlas's image paths; a relative one that does not exist as given is taken relative to
    the atlas's folder."""
    out = []
    for s in doc["images"]:
        p = Path(s)
        if not p.is_absolute() and not p.exists() and (atlas_file.parent / p).exists():
            p = atlas_file.parent / p
        out.append(p)
    return out


def _used_images(doc: dict) -> list[int]:
    return sorted({u["image"] for layer in doc["layers"] for ch in doc["units"][layer] for u in ch})


def class_roots(data_dir: str | os.PathLike[str]) -> list[Path]:
    """The class-folder sets of ``data_dir``: its ``train/`` and ``test/`` when it has both (the
    layout ``pydeconv fashion-mnist`` writes and ``pydeconv probe`` reads), else itself."""
    base = Path(data_dir)
    if (base / "train").is_dir() and (base / "test").is_dir():
        return [base / "train", base / "test"]
    return [base]


def image_labels(
    doc: dict, paths: Sequence[Path], data_dir: str | os.PathLike[str]
) -> tuple[np.ndarray, list[str]]:
    """Per atlas image its class index (-1 for an image no unit uses), and the classes (the
    class folders of ``data_dir``, sorted; of its train/ and test/ together when it has both).
    PydeconvError if a used image is not in one."""
    roots = class_roots(data_dir)
    classes = sorted({c for r in roots for c in imageset.labelled(r).classes})
    index = {name: i for i, name in enumerate(classes)}
    labels = np.full(len(paths), -1, dtype=np.int64)
    outside = []
    used = _used_images(doc)
    for i in used:
        path = paths[i].resolve()
        for root in roots:
            try:
                parts = path.relative_to(root.resolve()).parts
            except ValueError:
                continue
            if len(parts) >= 2 and parts[0] in index:
                labels[i] = index[parts[0]]
                break
        else:
            outside.append(str(paths[i]))
    if outside:
        raise PydeconvError(
            f"{data_dir}: {len(outside)} of the atlas's {len(used)} top-k images are not in a "
            f"class folder there (first: {outside[0]}); --labels must be the class-folder set "
            "the atlas was made from"
        )
    return labels, classes


# --- the measures ----------------------------------------------------------------------------


def class_measures(counts: Sequence[int] | np.ndarray) -> dict:
    """Selectivity index, entropy (bits) and normalised entropy of one class histogram."""
    n = np.asarray(counts, dtype=np.float64)
    k = n.size
    if k < 2:
        raise PydeconvError("class measures need at least two classes")
    total = n.sum()
    if total == 0:
        return {"selectivity": None, "entropy_bits": None, "entropy_norm": None}
    p = n / total
    p_max = float(p.max())
    rest = (1.0 - p_max) / (k - 1)
    nz = p[p > 0]
    h = float(-(nz * np.log2(nz)).sum()) + 0.0
    return {
        "selectivity": (p_max - rest) / (p_max + rest),
        "entropy_bits": h,
        "entropy_norm": h / math.log2(k),
    }


def diversity(vectors: np.ndarray) -> float | None:
    """Mean pairwise cosine distance of the rows of ``vectors`` (rows that are all zero or have
    a NaN left out); None with fewer than two rows left."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1) if v.size else np.zeros(0)
    keep = np.isfinite(norms) & (norms > 0)
    v, norms = v[keep], norms[keep]
    m = len(v)
    if m < 2:
        return None
    cos = (v @ v.T) / np.outer(norms, norms)
    iu = np.triu_indices(m, 1)
    return float(np.mean(1.0 - np.clip(cos[iu], -1.0, 1.0)))


def spread(values: Sequence[float | None]) -> dict:
    """count, mean, median, quartiles, min, max of the non-null values (nulls if none)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"count": 0, **dict.fromkeys(("mean", "median", "q1", "q3", "min", "max"))}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {
        "count": int(v.size),
        "mean": float(v.mean()),
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def unit_vectors(
    net: Any,
    doc: dict,
    paths: Sequence[Path],
    batch_size: int = 8,
    skipped: list[tuple[str, str]] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Per layer and channel, the (k', C) activation vectors at its top-k units (a row of NaN
    for a unit whose image could not be read), from one forward per batch of the used images."""
    skipped = [] if skipped is None else skipped
    layers = list(doc["layers"])
    shapes = {}
    for layer in layers:
        shape = tuple(int(v) for v in net.layer_info(layer)["shape"])
        if len(shape) != 3:
            raise PydeconvError(f"layer {layer}: output {shape} is not a feature map")
        if len(doc["units"][layer]) != shape[0]:
            raise PydeconvError(
                f"layer {layer}: the atlas has {len(doc['units'][layer])} channels, the model "
                f"{shape[0]} (is the atlas from another model?)"
            )
        for c, units in enumerate(doc["units"][layer]):
            for u in units:
                if u["y"] >= shape[1] or u["x"] >= shape[2]:
                    raise PydeconvError(
                        f"layer {layer} channel {c}: unit at ({u['y']}, {u['x']}) is outside the "
                        f"{shape[1]}x{shape[2]} map (is the atlas from another model?)"
                    )
        shapes[layer] = shape
    out = {
        layer: [np.full((len(units), shapes[layer][0]), np.nan) for units in doc["units"][layer]]
        for layer in layers
    }
    wanted: dict[int, list[tuple[str, int, int, int, int]]] = {}
    for layer in layers:
        for c, units in enumerate(doc["units"][layer]):
            for r, u in enumerate(units):
                wanted.setdefault(u["image"], []).append((layer, c, r, u["y"], u["x"]))
    ids = sorted(wanted)
    order = {name: i for i, name in enumerate(net.layers)}
    names = {layer: net.layer_info(layer)["name"] for layer in layers}
    deepest = max(names.values(), key=order.__getitem__)
    batches = imageset.iter_batches(net, [paths[i] for i in ids], batch_size, skipped, ids=ids)
    for batch_ids, x in batches:
        _, trace = net.forward(x, upto=deepest, keep=sorted(set(names.values())))
        acts = {layer: trace.activation(names[layer]) for layer in layers}
        for b, i in enumerate(batch_ids):
            for layer, c, r, y, xx in wanted[i]:
                out[layer][c][r] = acts[layer][b, :, y, xx]
    return out


def measure(
    atlas: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None = None,
    model: Any = None,
    diversity_on: bool = True,
    batch_size: int = 8,
) -> dict:
    """Everything specialisation.json holds. ``model``: a Net or a path (default the atlas's
    ``model``, relative to the atlas folder if not found as given); only needed for diversity."""
    import pydeconv

    doc, atlas_file = read_atlas(atlas)
    if labels is None and not diversity_on:
        raise PydeconvError("nothing to measure: without --labels the measure is the diversity")
    paths = image_paths(doc, atlas_file)
    classes: list[str] = []
    img_labels = None
    if labels is not None:
        img_labels, classes = image_labels(doc, paths, labels)
    vectors = None
    skipped: list[tuple[str, str]] = []
    model_path = None
    if diversity_on:
        if model is None or isinstance(model, (str, os.PathLike)):
            p = Path(model if model is not None else doc["model"])
            if not p.is_absolute() and not p.exists() and (atlas_file.parent / p).exists():
                p = atlas_file.parent / p
            model_path = str(p)
            net = pydeconv.load(str(p))
        else:
            net, model_path = model, getattr(model, "path", None)
        vectors = unit_vectors(net, doc, paths, batch_size, skipped)
    channels: dict[str, list[dict]] = {}
    summary: dict[str, dict] = {}
    for layer in doc["layers"]:
        rows = []
        for c, units in enumerate(doc["units"][layer]):
            row: dict[str, Any] = {"channel": c, "n": len(units)}
            if img_labels is not None:
                counts = np.bincount(
                    [img_labels[u["image"]] for u in units], minlength=len(classes)
                ).astype(int)
                row["counts"] = counts.tolist()
                row["dominant"] = classes[int(np.argmax(counts))] if units else None
                row["dominant_share"] = float(counts.max() / len(units)) if units else None
                row.update(class_measures(counts))
            if vectors is not None:
                row["diversity"] = diversity(vectors[layer][c])
            rows.append(row)
        channels[layer] = rows
        summary[layer] = {
            m: spread([r[m] for r in rows]) for m in MEASURES if rows and m in rows[0]
        }
    return {
        "format": "pydeconv-specialisation",
        "version": 1,
        "atlas": str(atlas_file),
        "model": model_path or doc["model"],
        "labels": None if labels is None else str(labels),
        "classes": classes,
        "k": doc["k"],
        "ranking": doc.get("ranking"),
        "layers": list(doc["layers"]),
        "measures": [m for m in MEASURES if doc["layers"] and m in summary[doc["layers"][0]]],
        "definitions": DEFINITIONS,
        "channels": channels,
        "summary": summary,
        "skipped": [{"path": p, "error": e} for p, e in skipped],
    }


DEFINITIONS = {
    "selectivity": "(p_max - p_rest) / (p_max + p_rest) on the class shares of the channel's "
    "top-k images; p_rest = (1 - p_max) / (classes - 1), the mean share of the other classes",
    "entropy_bits": "-sum p log2 p over the class shares of the top-k images",
    "entropy_norm": "entropy_bits / log2(classes)",
    "diversity": "mean pairwise cosine distance 1 - u.v/(|u||v|) of the top-k units' feature "
    "vectors (the layer's activations over all channels at the unit's position, by a forward "
    "of its image); zero vectors left out",
}


# --- the report ------------------------------------------------------------------------------


def _boxplot(result: dict, m: str) -> bytes | None:
    plt = extras.pyplot()
    if plt is None:
        return None
    layers = result["layers"]
    data = [[r[m] for r in result["channels"][layer] if r.get(m) is not None] for layer in layers]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(layers) + 2), 4.0), dpi=100)
    ax.boxplot([d if d else [np.nan] for d in data], showmeans=True)
    ax.set_xticks(np.arange(1, len(layers) + 1), layers, rotation=30, ha="right")
    ax.set_ylabel(m)
    ax.set_title(_TITLES[m], fontsize="medium")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def write(result: dict, out: str | os.PathLike[str], force: bool = False) -> Path:
    """The report folder: index.html, one box plot per measure, specialisation.json/.csv."""
    from pydeconv.analysis.reportdir import report_folder

    cols = ["layer", "channel", "n", "dominant", "dominant_share", "selectivity"]
    cols += ["entropy_bits", "entropy_norm", "diversity"]
    with report_folder(out, force) as tmp:
        write_atomic(tmp / "specialisation.json", json.dumps(result, indent=1).encode("utf-8"))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for layer in result["layers"]:
            for r in result["channels"][layer]:
                w.writerow([layer] + ["" if r.get(k) is None else r[k] for k in cols[1:]])
        write_atomic(tmp / "specialisation.csv", buf.getvalue().encode("utf-8"))
        notes = [
            f"Atlas {result['atlas']} (top-{result['k']} per channel, ranking "
            f"{result['ranking']}); model {result['model']}.",
            (
                f"Labels: the class folders of {result['labels']} ({len(result['classes'])} "
                f"classes: {', '.join(result['classes'])})."
                if result["labels"]
                else "No labels given: only the diversity (give --labels DATA_DIR for classes)."
            ),
        ]
        notes += [
            f"{k}: {v}."
            for k, v in DEFINITIONS.items()
            if k in result["measures"]
            or (k == "entropy_bits" and "entropy_norm" in result["measures"])
        ]
        notes.append("All numbers: specialisation.json, specialisation.csv (one row per channel).")
        if result["skipped"]:
            listed = "; ".join(f"{s['path']}: {s['error']}" for s in result["skipped"][:20])
            notes.append(f"{len(result['skipped'])} image(s) could not be read: {listed}")
        figures = []
        tables = []
        for m in result["measures"]:
            png = _boxplot(result, m)
            if png is not None:
                write_atomic(tmp / f"{m}.png", png)
                figures.append(report.Figure(f"{m}.png", _TITLES[m]))
            tables.append(
                html_table(
                    ["layer", "channels", "mean", "median", "q1", "q3", "min", "max"],
                    [
                        [layer]
                        + [
                            _fmt(result["summary"][layer][m][k])
                            for k in ("count", "mean", "median", "q1", "q3", "min", "max")
                        ]
                        for layer in result["layers"]
                    ],
                    title=_TITLES[m],
                )
            )
        if "selectivity" in result["measures"]:
            rows = []
            for layer in result["layers"]:
                ranked = [r for r in result["channels"][layer] if r["selectivity"] is not None]
                ranked.sort(key=lambda r: (-r["selectivity"], r["channel"]))
                rows += [
                    [
                        layer,
                        r["channel"],
                        r["dominant"],
                        _fmt(r["dominant_share"]),
                        _fmt(r["selectivity"]),
                    ]
                    for r in ranked[:5]
                ]
            tables.append(
                html_table(
                    ["layer", "channel", "dominant class", "its share", "selectivity"],
                    rows,
                    title="The most selective channels (5 per layer)",
                )
            )
        if extras.pyplot() is None:
            notes.append(extras.PLOTS_NOTE)
        sections = [report.Section("Spread per layer", figures=figures)] if figures else []
        write_page(tmp / "index.html", "How specialised is each layer", sections, notes, tables)
    return Path(out)


# --- the command line ------------------------------------------------------------------------


def cmd_specialise(args: argparse.Namespace) -> int:
    from pydeconv.analysis.reportdir import check_report_folder
    from pydeconv.cli import log

    check_report_folder(args.output, args.force)
    result = measure(
        args.atlas_dir,
        labels=args.labels,
        model=args.model,
        diversity_on=not args.no_diversity,
        batch_size=args.batch_size,
    )
    write(result, args.output, args.force)
    for layer in result["layers"]:
        parts = [
            f"{m} median {_fmt(result['summary'][layer][m]['median'])}" for m in result["measures"]
        ]
        print(f"{layer}: {', '.join(parts)}")
    log(f"report: {Path(args.output) / 'index.html'}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, writes) -> None:
    p = sub.add_parser(
        "specialise",
        parents=[common, writes],
        help="how specialised each layer is: selectivity, entropy, diversity from an atlas",
    )
    p.add_argument("atlas_dir", metavar="ATLAS_DIR", help="a pydeconv atlas folder (atlas.json)")
    p.add_argument(
        "--labels", metavar="DATA_DIR", help="the class folders the atlas's images are in"
    )
    p.add_argument(
        "--model", help="the model for the diversity's forward (default: the atlas's model)"
    )
    p.add_argument(
        "--no-diversity", action="store_true", help="skip the diversity (no forward, no model)"
    )
    p.add_argument("--batch-size", type=int, default=8, metavar="N")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the report folder")
    p.set_defaults(func=cmd_specialise)
