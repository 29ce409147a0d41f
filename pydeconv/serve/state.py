"""What the server holds: the model, the image registry, and a bounded cache of forward traces.

Nothing here knows about HTTP. Every bad request raises a :class:`pydeconv.errors.PydeconvError`
subclass naming what is wrong; the app turns those into 400 answers. Images are named by ids
(``"3"`` for the fourth image found in the folders, ``"u2"`` for the second upload), never by
paths: a path only ever comes from the server's own scan of the folders it was given.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from pydeconv import demo, report
from pydeconv import image as pimg
from pydeconv.analysis.imageset import IMAGE_SUFFIXES
from pydeconv.errors import ChannelError, ImageError, PydeconvError
from pydeconv.net import RULES
from pydeconv.net import parse_at as parse_at_text

#: Bytes of forward traces kept by default (a VGG16 trace at 224x224 is about 150 MB).
DEFAULT_CACHE_BYTES = 512 << 20
#: Uploads: at most this many bytes per file and this many pixels per image, and at most
#: MAX_UPLOADS kept (the oldest is dropped, with its file and cached trace).
DEFAULT_MAX_UPLOAD_BYTES = 20 << 20
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000
MAX_UPLOADS = 64
#: Feature-map cells of the sprite are at most this many pixels on a side (max-pooled down by
#: a whole factor; the page shows each cell 48 pixels wide).
FMAP_CELL = 48
#: Channels marked as the strongest in the grid.
TOP_MARKED = 9


class BadRequest(PydeconvError):
    """A request parameter that is missing or malformed."""


class PayloadTooLarge(PydeconvError):
    """An upload past the byte cap (answered 413)."""


@dataclass
class ImageEntry:
    id: str
    name: str
    path: Path
    root: Path  # the folder the file must stay inside (resolved)


@dataclass(eq=False)
class Forward:
    """One image's forward pass and what was derived from it (all read-only once made)."""

    image_id: str
    x: np.ndarray
    trace: Any
    nbytes: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    derived: dict = field(default_factory=dict)  # ("fmaps", layer) -> (meta, png), "input" -> png


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def scan_folders(folders: Sequence[str | os.PathLike[str]]) -> list[ImageEntry]:
    """The image files below each folder, sorted by relative path; symbolic links (files or
    folders) that lead outside their folder are left out, and so is anything not a regular
    file."""
    out: list[ImageEntry] = []
    seen: set[Path] = set()
    for folder in folders:
        root_given = Path(folder)
        if not root_given.is_dir():
            raise ImageError(f"{folder}: not a folder")
        root = root_given.resolve()
        found: dict[Path, tuple[bool, str]] = {}  # a file linked to: under its own name
        for dirpath, _dirs, files in os.walk(root, followlinks=False):
            for name in files:
                p = Path(dirpath) / name
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                real = p.resolve()
                if not _inside(real, root) or not real.is_file() or real in seen:
                    continue
                key = (p.is_symlink(), p.relative_to(root).as_posix())
                found[real] = min(found.get(real, key), key)
        seen.update(found)
        for rel, real in sorted((rel, real) for real, (_, rel) in found.items()):
            label = rel if len(folders) == 1 else f"{root.name}/{rel}"
            out.append(ImageEntry(str(len(out)), label, real, root))
    return out


def parse_int(name: str, text: str | None) -> int:
    if text is None or text == "":
        raise BadRequest(f"missing parameter {name}")
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {text!r}") from None


def parse_at(text: str | None) -> str | tuple[int, int]:
    """``max`` (default), ``map`` or ``Y,X``."""
    return "max" if text in (None, "") else parse_at_text(str(text))


def parse_rule(text: str | None) -> str:
    if text in (None, ""):
        return "deconvnet"
    if text not in RULES:
        raise BadRequest(f"unknown rule {text!r} (expected one of {', '.join(RULES)})")
    return str(text)


# A perceptual dark-to-bright ramp (black, purple, orange, pale yellow) for the heat maps.
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
HEAT_LUT = (
    np.stack(
        [
            np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
            for c in range(3)
        ],
        axis=1,
    )
    .round()
    .astype(np.uint8)
)


def _pool_down(a: np.ndarray, cell: int) -> np.ndarray:
    """(C, H, W) max-pooled by a whole factor until both sides are at most ``cell``."""
    c, h, w = a.shape
    f = max(1, math.ceil(max(h, w) / cell))
    if f == 1:
        return a
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.full((c, hp, wp), -np.inf, dtype=a.dtype)
    padded[:, :h, :w] = a
    return padded.reshape(c, hp // f, f, wp // f, f).max(axis=(2, 4))


def fmap_sprite(act: np.ndarray) -> tuple[dict, bytes]:
    """One sample's activation (C, H, W) or (C,) as a sprite of heat maps, strongest channel
    first, and its description: per channel its max, the order, the top channels, the layout."""
    a = np.asarray(act, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, np.newaxis, np.newaxis]
    c, h, w = a.shape
    strength = a.reshape(c, -1).max(axis=1)
    order = np.argsort(-strength, kind="stable")  # demo.top_channels's order
    small = _pool_down(a, FMAP_CELL)
    ch, cw = small.shape[1:]
    # The layer's shared scale from 0 (negative values, before a ReLU, show as 0) to its maximum;
    # from its minimum when nothing is positive.
    hi = float(a.max())
    lo = 0.0 if hi > 0 else float(a.min())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    idx = np.clip(np.floor((small - lo) * scale + 0.5), 0, 255).astype(np.uint8)
    cols = max(1, math.ceil(math.sqrt(c)))
    rows = -(-c // cols)
    canvas = np.zeros((rows * ch, cols * cw), dtype=np.uint8)
    for k, chan in enumerate(order):
        r, q = divmod(k, cols)
        canvas[r * ch : (r + 1) * ch, q * cw : (q + 1) * cw] = idx[chan]
    # A palette PNG (the heat map's 256 colours), zlib level 1: one byte a pixel, encoded fast.
    sprite = Image.frombytes("P", (canvas.shape[1], canvas.shape[0]), canvas.tobytes())
    sprite.putpalette(HEAT_LUT.reshape(-1).tolist())
    buf = io.BytesIO()
    sprite.save(buf, format="PNG", compress_level=1)
    png = buf.getvalue()
    meta = {
        "channels": int(c),
        "map": [int(h), int(w)],
        "cell": [int(ch), int(cw)],
        "cols": int(cols),
        "rows": int(rows),
        "order": [int(v) for v in order],
        "max": [float(v) for v in strength],
        "top": demo.top_channels(a, TOP_MARKED),
        "range": [lo, hi],
    }
    return meta, png


class State:
    """The model, the images, and the trace cache. Safe to use from many threads at once."""

    def __init__(
        self,
        net: Any,
        folders: Sequence[str | os.PathLike[str]] = (),
        threads: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
        model_path: str | None = None,
    ):
        self.net = net
        self.threads = threads
        self.model_path = model_path
        self.cache_bytes = int(cache_bytes)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_upload_pixels = int(max_upload_pixels)
        self.layers = {row["name"]: row for row in net.info()}
        self.images: dict[str, ImageEntry] = {e.id: e for e in scan_folders(folders)}
        self._uploads: list[str] = []
        self._upload_count = 0
        self._tmp = Path(tempfile.mkdtemp(prefix="pydeconv-serve-"))
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Forward] = OrderedDict()
        self._cached = 0
        self._pending: dict[str, threading.Lock] = {}
        self.forwards = 0  # forward passes run (for the tests and the bench)

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- the model ---------------------------------------------------------------------------
    def model_info(self) -> dict:
        net = self.net
        layers = [
            {
                "name": r["name"],
                "kind": r["kind"],
                "shape": [int(v) for v in r["shape"]],
                "rf": {
                    "size": [int(v) for v in r["rf_size"]],
                    "stride": [int(v) for v in r["rf_stride"]],
                    "start": [int(v) for v in r["rf_start"]],
                },
            }
            for r in net.info()
        ]
        return {
            "name": net.graph.get("name", ""),
            "path": self.model_path,
            "input": {"name": net.input_name, "shape": [int(v) for v in net.input_shape]},
            "outputs": list(net.outputs),
            "labels": net.labels,
            "rules": list(RULES),
            "layers": layers,
        }

    def layer(self, name: str | None) -> dict:
        if not name:
            raise BadRequest("missing parameter layer")
        row = self.layers.get(name)
        return row if row is not None else self.net.layer_info(name)  # aliases, or the error

    def channel(self, layer: dict, text: str | None) -> int:
        c = parse_int("channel", text)
        n = int(layer["shape"][0])
        if not 0 <= c < n:
            raise ChannelError(f"layer '{layer['name']}': channel {c} out of range (0..{n - 1})")
        return c

    def position(self, layer: dict, at: str | tuple[int, int]) -> None:
        if isinstance(at, str):
            return
        shape = layer["shape"]
        h, w = (int(shape[1]), int(shape[2])) if len(shape) == 3 else (1, 1)
        y, x = at
        if not (0 <= y < h and 0 <= x < w):
            raise ChannelError(
                f"position ({y}, {x}) is outside layer '{layer['name']}' of size {h}x{w}"
            )

    # -- images ------------------------------------------------------------------------------
    def image_list(self) -> list[dict]:
        with self._lock:
            entries = list(self.images.values())
        return [{"id": e.id, "name": e.name} for e in entries]

    def entry(self, image_id: str | None) -> ImageEntry:
        if not image_id:
            raise BadRequest("missing parameter image")
        with self._lock:
            e = self.images.get(image_id)
        if e is None:
            raise BadRequest(f"unknown image {image_id!r}")
        return e

    def _open(self, e: ImageEntry) -> Image.Image:
        real = e.path.resolve()  # again at read time: a file swapped for a link since the scan
        if not _inside(real, e.root) or not real.is_file():
            raise BadRequest(f"image {e.id} is no longer a file inside its folder")
        return pimg.open_image(real)

    def add_upload(self, data: bytes, filename: str = "") -> dict:
        """Check and keep one uploaded image (in the server's temporary folder)."""
        if len(data) > self.max_upload_bytes:
            raise PayloadTooLarge(
                f"upload of {len(data)} bytes is past the limit of {self.max_upload_bytes}"
            )
        if not data:
            raise BadRequest("the upload is empty")
        try:
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
        except Image.DecompressionBombError as exc:
            raise ImageError(f"upload refused: {exc}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"the upload is not an image Pillow can read ({exc})") from None
        if w * h > self.max_upload_pixels:
            raise ImageError(
                f"upload refused: {w}x{h} pixels is past the limit of {self.max_upload_pixels}"
            )
        with self._lock:
            self._upload_count += 1
            uid = f"u{self._upload_count}"
        path = self._tmp / f"{uid}.img"
        path.write_bytes(data)
        try:
            pimg.from_pil(pimg.open_image(path), self.net)  # decodes fully: truncated files fail
        except PydeconvError as exc:
            path.unlink(missing_ok=True)
            raise ImageError(str(exc).replace(str(path), "the upload")) from None
        stem = Path(filename).name[:80] if filename else ""
        entry = ImageEntry(uid, stem or f"upload {uid[1:]}", path, self._tmp.resolve())
        with self._lock:
            self.images[uid] = entry
            self._uploads.append(uid)
            while len(self._uploads) > MAX_UPLOADS:
                old = self._uploads.pop(0)
                gone = self.images.pop(old)
                self._drop(old)
                gone.path.unlink(missing_ok=True)
        return {"id": uid, "name": entry.name}

    # -- forward traces ----------------------------------------------------------------------
    def forward(self, image_id: str | None) -> Forward:
        """The image's forward trace: from the cache, or run once (concurrent requests for the
        same image wait for that one run)."""
        e = self.entry(image_id)
        with self._lock:
            hit = self._cache.get(e.id)
            if hit is not None:
                self._cache.move_to_end(e.id)
                return hit
            gate = self._pending.setdefault(e.id, threading.Lock())
        with gate:
            with self._lock:
                hit = self._cache.get(e.id)
                if hit is not None:
                    self._cache.move_to_end(e.id)
                    return hit
            x = pimg.from_pil(self._open(e), self.net)
            _, trace = self.net.forward(x, threads=self.threads)
            nbytes = int(x.nbytes) + sum(int(trace.activation(n).nbytes) for n in trace.layers)
            fwd = Forward(e.id, x, trace, nbytes)
            with self._lock:
                self.forwards += 1
                self._pending.pop(e.id, None)
                if e.id in self.images:  # not an upload dropped meanwhile
                    self._cache[e.id] = fwd
                    self._cached += nbytes
                    self._evict()
            return fwd

    def _drop(self, image_id: str) -> None:
        old = self._cache.pop(image_id, None)
        if old is not None:
            self._cached -= old.nbytes

    def _evict(self) -> None:
        # The newest entry stays even when it alone is past the budget (it is being used).
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes

    def cache_state(self) -> dict:
        with self._lock:
            return {
                "entries": len(self._cache),
                "bytes": self._cached,
                "budget": self.cache_bytes,
                "forwards": self.forwards,
            }

    def _derived(self, fwd: Forward, key: Any, make: Any) -> Any:
        with fwd.lock:
            hit = fwd.derived.get(key)
        if hit is None:
            hit = make()
            with fwd.lock:
                if key not in fwd.derived:
                    extra = sum(len(p) for p in hit if isinstance(p, bytes))
                    fwd.derived[key] = hit
                    with self._lock:
                        fwd.nbytes += extra
                        if self._cache.get(fwd.image_id) is fwd:
                            self._cached += extra
                            self._evict()
        return hit

    # -- what the endpoints answer -----------------------------------------------------------
    def input_png(self, image_id: str | None) -> bytes:
        fwd = self.forward(image_id)
        return self._derived(
            fwd, "input", lambda: (report.png_bytes(pimg.to_pil(fwd.x, self.net)),)
        )[0]

    def fmaps(self, image_id: str | None, layer_name: str | None) -> tuple[dict, bytes]:
        layer = self.layer(layer_name)
        fwd = self.forward(image_id)
        name = layer["name"]
        return self._derived(
            fwd, ("fmaps", name), lambda: fmap_sprite(fwd.trace.activation(name)[0])
        )

    def projection(
        self,
        image_id: str | None,
        layer_name: str | None,
        channel: str | None,
        rule: str | None,
        at: str | None,
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """The projection (C, H, W) of one unit and the (y, x) it started from ((-1, -1) for
        the whole map)."""
        layer = self.layer(layer_name)
        c = self.channel(layer, channel)
        where = parse_at(at)
        self.position(layer, where)
        r = parse_rule(rule)
        fwd = self.forward(image_id)
        p, pos = self.net.project(
            fwd.trace,
            layer["name"],
            c,
            at=where,
            rule=r,
            threads=self.threads,
            return_positions=True,
        )
        return p[0], (int(pos[0][0]), int(pos[0][1]))

    def projection_png(self, *args: Any) -> tuple[bytes, tuple[int, int]]:
        p, pos = self.projection(*args)
        order = self.net.preprocess["channel_order"]
        return report.png_bytes(pimg.render(p, order)), pos

    def patch_png(
        self, image_id: str | None, layer_name: str | None, channel: str | None, at: str | None
    ) -> tuple[bytes, tuple[int, int]]:
        """The receptive-field patch of the unit: at the given position, else at the channel's
        strongest activation (the first in row-major order, as the engine picks it)."""
        layer = self.layer(layer_name)
        c = self.channel(layer, channel)
        where = parse_at(at)
        self.position(layer, where)
        fwd = self.forward(image_id)
        if isinstance(where, tuple):
            y, x = where
        else:
            a = np.asarray(fwd.trace.activation(layer["name"])[0, c])
            y, x = (
                (0, 0) if a.ndim == 0 else (int(v) for v in np.unravel_index(np.argmax(a), a.shape))
            )
        img = pimg.crop_patch(fwd.x, self.net, layer["name"], y, x)
        return report.png_bytes(img), (y, x)

    # -- detectors ---------------------------------------------------------------------------
    def detections(self, image_id: str | None, conf_text: str | None = None) -> dict:
        """A model with Darknet [yolo] heads: the decoded boxes (score >= conf, default 0.25) in
        input pixels (the preprocessed image the page shows), each with the unit behind it;
        other models: no boxes."""
        from pydeconv import detect

        self.entry(image_id)  # an unknown image is an error for every model
        try:
            conf = 0.25 if conf_text in (None, "") else float(str(conf_text))
        except ValueError:
            conf = -1.0
        if not 0.0 <= conf <= 1.0:
            raise BadRequest(f"conf must be a number in [0, 1], got {conf_text!r}")
        if not detect.has_darknet_heads(self.net):
            return {"detector": False, "boxes": []}
        fwd = self.forward(image_id)

        def make() -> tuple[list[dict]]:
            outputs = {name: fwd.trace.activation(name) for name in self.net.outputs}
            dets, _ = detect.detect(self.net, outputs=outputs, conf=conf)
            return (
                [
                    {
                        "box": [round(float(v), 2) for v in d.box],
                        "score": float(d.score),
                        "label": d.name,
                        "layer": d.layer,
                        "channel": int(d.channel),
                        "at": [int(d.y), int(d.x)],
                    }
                    for d in dets
                ],
            )

        return {"detector": True, "boxes": self._derived(fwd, ("detections", conf), make)[0]}
