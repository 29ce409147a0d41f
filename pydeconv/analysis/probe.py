"""The retrain-depth probe (Zeiler & Fergus Sec. 5.2, Table 7): how far up a trained net's
features transfer to a user's labelled task.

For each chosen layer the images' feature maps are pooled (global average, or a GxG grid of
averages), standardised (fitted on the training images) and fed to a linear probe, scikit-learn's
multinomial logistic regression (lbfgs, fixed random_state: deterministic). The test accuracy per
layer says how much of the task the layer's features already separate linearly.

**The stop layer.** With the layers in execution order and ``acc[i]`` their test accuracies, the
stop layer is the first layer whose accuracy is within ``tol`` of the best accuracy of all the
layers at or above it: ``min{i : acc[i] >= max(acc[i:]) - tol}``. Going deeper than it gains at
most ``tol``; the layers up to it transfer to the task, the ones above are worth retraining.

One forward per batch runs up to the deepest chosen layer and keeps only the chosen layers'
outputs (``keep=[layers]``). Greyscale images go through :func:`pydeconv.image.load` like any
other: converted to the model's channel order (an "L" image into an RGB model is repeated over the
three channels) and resized to its input size.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv import report
from pydeconv.analysis import extras, imageset
from pydeconv.errors import PydeconvError
from pydeconv.fileio import write_atomic
from pydeconv.limits import get_limits, limit_str

DEFAULT_TOL = 0.01
DEFAULT_TEST_FRACTION = 0.25
DEFAULT_MAX_ITER = 2000
MAX_GRID = 16


class ProbeError(PydeconvError):
    """Bad input to the probe: a data set, a layer or an option."""


# --- the data --------------------------------------------------------------------------------


@dataclass
class Split:
    """The probe's train and test images; labels index ``classes``."""

    train: list[Path]
    train_labels: np.ndarray
    test: list[Path]
    test_labels: np.ndarray
    classes: list[str]
    how: str  # "train/ and test/ folders" or "a stratified split (...)"


def split_data(
    data_dir: str | os.PathLike[str],
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> Split:
    """``data_dir/train`` and ``data_dir/test`` class folders when both exist (the same classes
    in both), else one class-folder set split per class: ``round(test_fraction * n)`` images of
    each class (at least 1, at most n - 1) drawn with ``seed`` go to the test side. Every class
    needs at least two images."""
    base = Path(data_dir)
    if (base / "train").is_dir() and (base / "test").is_dir():
        train = imageset.labelled(base / "train", min_per_class=2)
        test = imageset.labelled(base / "test", min_per_class=1)
        if train.classes != test.classes:
            only = sorted(set(train.classes) ^ set(test.classes))
            raise ProbeError(
                f"{base}: train/ and test/ have different class folders (only in one: "
                f"{', '.join(only)})"
            )
        return Split(
            train.paths,
            train.labels,
            test.paths,
            test.labels,
            train.classes,
            "train/ and test/ folders",
        )
    if not 0 < test_fraction < 1:
        raise ProbeError(f"test fraction must be in (0, 1), got {test_fraction}")
    full = imageset.labelled(base, min_per_class=2)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(full.paths), dtype=bool)
    for c in range(len(full.classes)):
        idx = np.flatnonzero(full.labels == c)
        n_test = min(max(1, round(test_fraction * len(idx))), len(idx) - 1)
        is_test[rng.choice(idx, size=n_test, replace=False)] = True
    pick = lambda mask: [p for p, m in zip(full.paths, mask) if m]  # noqa: E731
    return Split(
        pick(~is_test),
        full.labels[~is_test],
        pick(is_test),
        full.labels[is_test],
        full.classes,
        f"a stratified split of one class-folder set (test fraction {test_fraction}, seed {seed})",
    )


# --- the features ----------------------------------------------------------------------------


def check_layers(net: Any, layers: Sequence[str]) -> list[str]:
    """The layers' names as the model spells them, in execution order; ProbeError for a
    repeated layer or one whose output is not a (C, H, W) feature map (unknown layers raise
    the engine's LayerNotFoundError)."""
    if not layers:
        raise ProbeError("no layers given (--layers L1,L2,...)")
    names = []
    for layer in layers:
        info = net.layer_info(layer)
        if len(info["shape"]) != 3:
            shape = "x".join(str(int(v)) for v in info["shape"])
            raise ProbeError(
                f"layer {layer}: output {shape} is not a feature map (C, H, W); the probe "
                "pools feature maps (choose a conv, relu or pool layer)"
            )
        names.append(info["name"])
    if len(set(names)) != len(names):
        raise ProbeError(f"a layer is named twice in {', '.join(layers)}")
    order = {name: i for i, name in enumerate(net.layers)}
    return sorted(names, key=order.__getitem__)


def grid_bounds(size: int, g: int) -> list[tuple[int, int]]:
    """Bin i of a length-``size`` axis cut into ``g``: [floor(i*size/g), ceil((i+1)*size/g)),
    the bins of PyTorch's adaptive_avg_pool2d (they overlap when size is not a multiple of g)."""
    return [((i * size) // g, -((-(i + 1) * size) // g)) for i in range(g)]


def pool(act: np.ndarray, grid: int | None = None) -> np.ndarray:
    """(N, C, H, W) activations -> (N, D) float64 features: the global average per channel
    (``grid`` None, D = C), or a ``grid`` x ``grid`` of averages per channel (D = C*grid*grid,
    ordered channel, row, column)."""
    a = np.asarray(act, dtype=np.float64)
    if grid is None:
        return a.mean(axis=(2, 3))
    n, c, h, w = a.shape
    out = np.empty((n, c, grid, grid))
    for i, (y0, y1) in enumerate(grid_bounds(h, grid)):
        for j, (x0, x1) in enumerate(grid_bounds(w, grid)):
            out[:, :, i, j] = a[:, :, y0:y1, x0:x1].mean(axis=(2, 3))
    return out.reshape(n, -1)


def features(
    net: Any,
    paths: Sequence[Path],
    layers: Sequence[str],
    grid: int | None = None,
    batch_size: int = 8,
    skipped: list[tuple[str, str]] | None = None,
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Pooled features of ``paths`` at ``layers`` (names as :func:`check_layers` gives them):
    ``(ids, {layer: (len(ids), D) float64})``, ids the positions of the images that decoded
    (the others are appended to ``skipped``)."""
    skipped = [] if skipped is None else skipped
    order = {name: i for i, name in enumerate(net.layers)}
    deepest = max(layers, key=order.__getitem__)
    ids: list[int] = []
    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for batch_ids, x in imageset.iter_batches(net, paths, batch_size, skipped):
        _, trace = net.forward(x, upto=deepest, keep=list(layers))
        for layer in layers:
            parts[layer].append(pool(trace.activation(layer), grid))
        ids.extend(batch_ids)
    if not ids:
        raise ProbeError("none of the images could be read")
    return ids, {layer: np.concatenate(p) for layer, p in parts.items()}


def check_feature_bytes(net: Any, layers: Sequence[str], grid: int | None, images: int) -> int:
    """The bytes the pooled features of ``images`` images take (float64); ProbeError past the
    engine's ``max_tensor_bytes`` limit, before any forward."""
    per_image = sum(int(net.layer_info(layer)["shape"][0]) for layer in layers) * (grid or 1) ** 2
    total = 8 * per_image * images
    if total > get_limits().max_tensor_bytes:
        raise ProbeError(
            f"the pooled features of {images} images at {len(layers)} layers would take "
            f"{total / 2**30:.1f} GiB, past {limit_str('max_tensor_bytes')}: use fewer images, "
            "fewer layers or a smaller grid"
        )
    return total


# --- the probe -------------------------------------------------------------------------------


def stop_layer(accuracies: Sequence[float], tol: float = DEFAULT_TOL) -> int:
    """The index of the stop layer: the first ``i`` with ``acc[i] >= max(acc[i:]) - tol``."""
    acc = np.asarray(accuracies, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise ProbeError("stop_layer needs at least one accuracy")
    if tol < 0:
        raise ProbeError(f"tol must be >= 0, got {tol}")
    best_above = np.maximum.accumulate(acc[::-1])[::-1]
    return int(np.flatnonzero(acc >= best_above - tol - 1e-12)[0])


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    c: float = 1.0,
    max_iter: int = DEFAULT_MAX_ITER,
) -> dict:
    """Standardise (fit on train) and fit the logistic regression; the accuracies."""
    lm = extras.require("sklearn.linear_model")
    pre = extras.require("sklearn.preprocessing")
    pipe = extras.require("sklearn.pipeline")
    exc = extras.require("sklearn.exceptions")
    model = pipe.make_pipeline(
        pre.StandardScaler(),
        lm.LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exc.ConvergenceWarning)
        model.fit(x_train, y_train)
    n_iter = int(np.max(model[-1].n_iter_))
    return {
        "train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
        "test_accuracy": float(np.mean(model.predict(x_test) == y_test)),
        "iterations": n_iter,
        "converged": n_iter < max_iter,
    }


def chance(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """The majority baseline: the test accuracy of always answering the most frequent training
    class (the lowest class index among ties); 1/classes on a balanced set."""
    majority = int(np.argmax(np.bincount(y_train)))
    return float(np.mean(y_test == majority))


def run(
    model: Any,
    data_dir: str | os.PathLike[str],
    layers: Sequence[str],
    grid: int | None = None,
    c: float = 1.0,
    tol: float = DEFAULT_TOL,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    batch_size: int = 8,
    max_iter: int = DEFAULT_MAX_ITER,
    log: Any = None,
) -> dict:
    """The probe of ``model`` (a Net or a model path) on ``data_dir``: everything probe.json
    holds (see :func:`write`)."""
    import pydeconv

    if grid is not None and not 1 <= grid <= MAX_GRID:
        raise ProbeError(f"grid must be in [1, {MAX_GRID}], got {grid}")
    if not c > 0:
        raise ProbeError(f"C must be > 0, got {c}")
    if tol < 0:
        raise ProbeError(f"tol must be >= 0, got {tol}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ProbeError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    extras.require("sklearn.linear_model")  # before any work
    net = pydeconv.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    names = check_layers(net, layers)
    data = split_data(data_dir, test_fraction, seed)
    check_feature_bytes(net, names, grid, len(data.train) + len(data.test))
    skipped: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    feats = {}
    labels = {}
    for side, paths, y in (
        ("train", data.train, data.train_labels),
        ("test", data.test, data.test_labels),
    ):
        ids, feats[side] = features(net, paths, names, grid, batch_size, skipped)
        labels[side] = y[ids]
        if log:
            log(f"{side}: features of {len(ids)} images ({time.perf_counter() - t0:.1f} s)")
    missing = [data.classes[k] for k in range(len(data.classes)) if k not in labels["train"]]
    if missing:
        raise ProbeError(f"no readable training image of class(es) {', '.join(missing)}")
    rows = []
    for layer in names:
        r = fit(
            feats["train"][layer],
            labels["train"],
            feats["test"][layer],
            labels["test"],
            c,
            max_iter,
        )
        rows.append({"layer": layer, "features": int(feats["train"][layer].shape[1]), **r})
    best = stop_layer([r["test_accuracy"] for r in rows], tol)
    return {
        "format": "pydeconv-probe",
        "version": 1,
        "model": str(getattr(net, "path", None) or model),
        "data": str(data_dir),
        "split": data.how,
        "layers": names,
        "pool": "gap" if grid is None else f"grid {grid}",
        "grid": grid,
        "classes": data.classes,
        "train_images": int(len(labels["train"])),
        "test_images": int(len(labels["test"])),
        "train_per_class": np.bincount(labels["train"], minlength=len(data.classes)).tolist(),
        "test_per_class": np.bincount(labels["test"], minlength=len(data.classes)).tolist(),
        "chance": chance(labels["train"], labels["test"]),
        "C": c,
        "max_iter": max_iter,
        "tol": tol,
        "seed": seed,
        "test_fraction": test_fraction,
        "batch_size": batch_size,
        "results": rows,
        "stop_layer": names[best],
        "rule": RULE_TEXT,
        "skipped": [{"path": p, "error": e} for p, e in skipped],
        "seconds": round(time.perf_counter() - t0, 2),
    }


RULE_TEXT = (
    "The stop layer is the first layer (in execution order) whose test accuracy is within tol "
    "of the best test accuracy of all the layers at or above it: going deeper gains at most tol."
)


# --- the report ------------------------------------------------------------------------------


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain HTML table (every cell escaped), optionally under an <h2>."""
    e = html.escape
    out = [f"<h2>{e(title)}</h2>"] if title else []
    out.append('<table border="1" cellpadding="4" style="border-collapse: collapse">')
    out.append("<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in headers) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_page(
    path: Path,
    title: str,
    sections: Sequence[report.Section],
    notes: Sequence[str],
    tables: Sequence[str] = (),
) -> None:
    """report.render_html's page with the given HTML tables after the sections."""
    page = report.render_html(title, sections, notes)
    if tables:
        page = page.replace("</body>", "\n".join(tables) + "\n</body>", 1)
    write_atomic(path, page.encode("utf-8"))


def answer(result: dict) -> str:
    """The report's one-sentence answer."""
    rows = {r["layer"]: r for r in result["results"]}
    stop = result["stop_layer"]
    best = max(result["results"], key=lambda r: r["test_accuracy"])
    above = result["layers"][result["layers"].index(stop) + 1 :]
    text = (
        f"Test accuracy stops improving after {stop} ({rows[stop]['test_accuracy']:.3f}; "
        f"best {best['test_accuracy']:.3f} at {best['layer']}; majority baseline "
        f"{result['chance']:.3f}). "
        f"The layers up to {stop} transfer to this task"
    )
    if above:
        return text + f"; the ones above ({', '.join(above)}) are worth retraining."
    return text + "; the deepest probed layer is still the best, so retrain only above it."


def _plot(result: dict) -> bytes | None:
    plt = extras.pyplot()
    if plt is None:
        return None
    names = result["layers"]
    test = [r["test_accuracy"] for r in result["results"]]
    train = [r["train_accuracy"] for r in result["results"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4.0), dpi=100)
    ax.plot(x, test, "o-", color="C0", label="test accuracy")
    ax.plot(x, train, "s--", color="C1", alpha=0.7, label="train accuracy")
    ax.axhline(result["chance"], color="grey", linestyle=":", label="majority baseline")
    stop = names.index(result["stop_layer"])
    ax.axvline(stop, color="C3", alpha=0.4, linewidth=6, label=f"stop layer ({names[stop]})")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"linear probe ({result['pool']} pooling)")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write(result: dict, out: str | os.PathLike[str], force: bool = False) -> Path:
    """The report folder: index.html, probe.png (with matplotlib), probe.json, probe.csv."""
    from pydeconv.analysis.reportdir import report_folder

    with report_folder(out, force) as tmp:
        write_atomic(tmp / "probe.json", json.dumps(result, indent=1).encode("utf-8"))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["layer", "features", "train_accuracy", "test_accuracy", "iterations", "converged"]
        w.writerow(cols)
        for r in result["results"]:
            w.writerow([r[k] for k in cols])
        write_atomic(tmp / "probe.csv", buf.getvalue().encode("utf-8"))
        notes = [
            answer(result),
            RULE_TEXT + f" Here tol = {result['tol']}.",
            f"Model {result['model']}; data {result['data']} ({result['split']}): "
            f"{result['train_images']} training and {result['test_images']} test images, "
            f"{len(result['classes'])} classes ({', '.join(result['classes'])}).",
            f"Features: {result['pool']} pooling of each layer's maps, standardised on the "
            f"training images; probe: scikit-learn LogisticRegression (lbfgs, C={result['C']}, "
            f"max_iter={result['max_iter']}). The majority baseline answers the most frequent "
            "training class. All numbers: probe.json, probe.csv.",
        ]
        if any(not r["converged"] for r in result["results"]):
            notes.append("Some fits did not converge within max_iter (see the table): raise it.")
        if result["skipped"]:
            listed = "; ".join(f"{s['path']}: {s['error']}" for s in result["skipped"][:20])
            notes.append(
                f"{len(result['skipped'])} image(s) could not be read and were left out: {listed}"
            )
        sections = []
        png = _plot(result)
        if png is None:
            notes.append(extras.PLOTS_NOTE)
        else:
            write_atomic(tmp / "probe.png", png)
            sections.append(
                report.Section("Accuracy per layer", figures=[report.Figure("probe.png", "")])
            )
        table = html_table(
            ["layer", "features", "train accuracy", "test accuracy", "converged"],
            [
                (
                    r["layer"] + (" (stop layer)" if r["layer"] == result["stop_layer"] else ""),
                    r["features"],
                    f"{r['train_accuracy']:.3f}",
                    f"{r['test_accuracy']:.3f}",
                    "yes" if r["converged"] else f"no ({r['iterations']} iterations)",
                )
                for r in result["results"]
            ],
            title="Per layer",
        )
        write_page(tmp / "index.html", "Retrain-depth probe", sections, notes, [table])
    return Path(out)


# --- the command line ------------------------------------------------------------------------


def _pool_arg(values: list[str]) -> int | None:
    if values == ["gap"]:
        return None
    if len(values) == 2 and values[0] == "grid":
        try:
            g = int(values[1])
        except ValueError:
            g = 0
        if 1 <= g <= MAX_GRID:
            return g
    raise ProbeError(
        f"--pool takes 'gap' or 'grid G' with G in [1, {MAX_GRID}], got {' '.join(values)}"
    )


def cmd_probe(args: argparse.Namespace) -> int:
    from pydeconv.analysis.reportdir import check_report_folder
    from pydeconv.cli import _load, log

    grid = _pool_arg(args.pool)
    check_report_folder(args.output, args.force)
    net = _load(args.model)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    result = run(
        net,
        args.data_dir,
        layers,
        grid=grid,
        c=args.C,
        tol=args.tol,
        test_fraction=args.test_fraction,
        seed=args.seed,
        batch_size=args.batch_size,
        max_iter=args.max_iter,
        log=log,
    )
    result["model"] = args.model
    write(result, args.output, args.force)
    for r in result["results"]:
        print(f"{r['layer']}: test {r['test_accuracy']:.3f}, train {r['train_accuracy']:.3f}")
    print(answer(result))
    log(f"report: {Path(args.output) / 'index.html'}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, writes) -> None:
    p = sub.add_parser(
        "probe",
        parents=[common, writes],
        help="retrain-depth probe: a linear classifier on each layer's pooled features",
    )
    p.add_argument("model")
    p.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        help="train/ and test/ class folders, or one class-folder set (split with --test-fraction)",
    )
    p.add_argument("--layers", required=True, metavar="L1,L2,...", help="feature-map layers")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the report folder")
    p.add_argument(
        "--pool",
        nargs="+",
        default=["gap"],
        metavar="MODE",
        help="'gap': the global average per channel (default); 'grid G': a GxG grid of "
        "averages per channel",
    )
    p.add_argument("--C", type=float, default=1.0, help="inverse regularisation (default 1)")
    p.add_argument(
        "--tol",
        type=float,
        default=DEFAULT_TOL,
        help=f"accuracy within tol of the best above counts as no gain (default {DEFAULT_TOL})",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_TEST_FRACTION,
        help="without train/ and test/: the share of each class held out "
        f"(default {DEFAULT_TEST_FRACTION})",
    )
    p.add_argument("--seed", type=int, default=0, help="the split's seed (default 0)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N")
    p.add_argument("--max-iter", type=int, default=DEFAULT_MAX_ITER, metavar="N")
    p.set_defaults(func=cmd_probe)
