"""Mining the top-k units of a feature atlas (Zeiler & Fergus Fig. 2) over any number of images.

For every channel of each chosen layer, the k strongest (image, position) pairs over the whole
image set, in O(k x channels) memory. An image contributes at most one entry per channel: its
strongest position for that channel, so the k tiles of a channel show k different images.

**The tie rule** (one definition, :func:`order`): entries are ranked by value descending, then
image id ascending, then position ascending (``y * W + x``, row-major). Within one image and
channel the strongest position is the first maximum in row-major order -- the same choice the
engine's ``at="max"`` makes, so the atlas's projections start exactly where mining found the unit.
Because the order is total, the top-k of a set does not depend on how the set was split or in
which order the parts were merged: :func:`merge` of two shards' states equals the state of the
whole, exactly.

**The state** (:class:`MineState`) is a file (``.npz``, format ``pydeconv-atlas-state`` version 1;
docs/ATLAS.md): the model's path, size and SHA-256, the layers, k, the ranking, the image list,
which images are finished, the skipped ones and the top-k arrays. :func:`mine` saves it atomically
every ``save_every`` images and at the end; on Ctrl-C it saves what is finished and re-raises, so
``--resume`` loses no finished image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pydeconv.analysis import imageset
from pydeconv.errors import LayerNotFoundError, PydeconvError
from pydeconv.fileio import write_atomic

FORMAT = "pydeconv-atlas-state"
VERSION = 1
DEFAULT_K = 9
DEFAULT_BATCH = 8
DEFAULT_SAVE_EVERY = 256

# score(net, trace, layer, activation) -> (N, C, H, W): what a unit is ranked by.
Score = Callable[[Any, Any, str, np.ndarray], np.ndarray]


class StateError(PydeconvError):
    """A mining state file that cannot be read, or states that do not belong together."""


def activation_score(net: Any, trace: Any, layer: str, activation: np.ndarray) -> np.ndarray:
    """The default ranking: the activation itself (the paper)."""
    return activation


def relevance_score(cls: int) -> Score:
    """The ranking by relevance to class ``cls``: activation x gradient of the class score
    (:func:`pydeconv.analysis.relevance.relevance`)."""

    from pydeconv.analysis.relevance import relevance

    def score(net: Any, trace: Any, layer: str, activation: np.ndarray) -> np.ndarray:
        return relevance(net, trace, layer, cls)

    return score


# --- the tie rule --------------------------------------------------------------------------------


def order(values: np.ndarray, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Indices that sort the last axis by the tie rule: filled entries first (id >= 0), then
    value descending, image id ascending, position ascending."""
    return np.lexsort((pos, ids, -values.astype(np.float64), ids < 0), axis=-1)


def _top(values: np.ndarray, ids: np.ndarray, pos: np.ndarray, k: int):
    """The first k entries per row under the tie rule, each image at most once per row (an
    entry seen twice -- the same image mined by two overlapping states -- is kept once)."""
    idx = order(values, ids, pos)
    values, ids, pos = (np.take_along_axis(a, idx, axis=-1) for a in (values, ids, pos))
    dup = np.zeros(ids.shape, dtype=bool)
    dup[:, 1:] = (ids[:, 1:] == ids[:, :-1]) & (ids[:, 1:] >= 0)
    if dup.any():
        ids = np.where(dup, -1, ids)
        idx = order(values, ids, pos)
        values, ids, pos = (np.take_along_axis(a, idx, axis=-1) for a in (values, ids, pos))
    values, ids, pos = values[:, :k].copy(), ids[:, :k].copy(), pos[:, :k].copy()
    values[ids < 0] = 0.0
    pos[ids < 0] = -1
    return values, ids, pos


def strongest(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (image, channel) of a (N, C, H, W) score: the value and flat position (y * W + x) of
    its first maximum in row-major order (the engine's ``at="max"``)."""
    flat = score.reshape(score.shape[0], score.shape[1], -1)
    pos = flat.argmax(axis=2)
    val = np.take_along_axis(flat, pos[..., None], axis=2)[..., 0]
    return val.astype(np.float32), pos.astype(np.int64)


# --- the state -----------------------------------------------------------------------------------


@dataclass
class MineState:
    """The mining state of one image list: which images are finished and the top-k so far.

    ``values``/``ids``/``pos`` per layer are (C, k): float32 value, int64 image id (-1: empty
    slot), int64 flat position ``y * W + x`` (-1 when empty); each row best first."""

    model: str
    model_size: int
    model_sha256: str
    layers: list[str]
    k: int
    ranking: str
    cls: int | None
    images: list[str]
    shapes: dict[str, tuple[int, int, int]]
    batch_size: int
    done: np.ndarray  # bool (len(images),): finished (mined or skipped)
    skipped: dict[int, str] = field(default_factory=dict)  # image id -> message
    values: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    pos: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(
        cls,
        net: Any,
        images: Sequence[str | os.PathLike[str]],
        layers: Sequence[str],
        k: int = DEFAULT_K,
        ranking: str = "activation",
        class_: int | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> MineState:
        shapes = check_layers(net, layers)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise PydeconvError(f"batch size must be >= 1, got {batch_size!r}")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise PydeconvError(f"k must be a whole number >= 1, got {k!r}")
        if not images:
            raise PydeconvError("the image set is empty")
        if k > len(images):
            raise PydeconvError(
                f"k={k} is larger than the image count ({len(images)}): each channel's k tiles "
                f"are different images, so give -k {len(images)} or fewer, or more images"
            )
        path, size, sha = model_identity(net)
        st = cls(
            model=path,
            model_size=size,
            model_sha256=sha,
            layers=list(layers),
            k=int(k),
            ranking=ranking,
            cls=class_,
            images=[str(p) for p in images],
            shapes=shapes,
            batch_size=int(batch_size),
            done=np.zeros(len(images), dtype=bool),
        )
        for layer, (c, _, _) in shapes.items():
            st.values[layer] = np.zeros((c, st.k), dtype=np.float32)
            st.ids[layer] = np.full((c, st.k), -1, dtype=np.int64)
            st.pos[layer] = np.full((c, st.k), -1, dtype=np.int64)
        return st

    # -- facts ------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return int(self.done.sum())

    def header(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "model_size": self.model_size,
            "model_sha256": self.model_sha256,
            "layers": self.layers,
            "k": self.k,
            "ranking": self.ranking,
            "class": self.cls,
            "images": self.images,
            "shapes": {name: list(s) for name, s in self.shapes.items()},
            "batch_size": self.batch_size,
            "skipped": [[i, msg] for i, msg in sorted(self.skipped.items())],
        }

    def units(self, layer: str) -> list[list[dict]]:
        """atlas.json's ``units[layer]``: per channel its entries, best first."""
        _, _, w = self.shapes[layer]
        out = []
        for v_row, i_row, p_row in zip(self.values[layer], self.ids[layer], self.pos[layer]):
            out.append(
                [
                    {
                        "image": int(i),
                        "path": self.images[int(i)],
                        "y": int(p) // w,
                        "x": int(p) % w,
                        "value": float(v),
                    }
                    for v, i, p in zip(v_row, i_row, p_row)
                    if i >= 0
                ]
            )
        return out

    def equal(self, other: MineState) -> bool:
        """Same header, finished set and top-k arrays (bit for bit)."""
        if self.header() != other.header() or not np.array_equal(self.done, other.done):
            return False
        return all(
            np.array_equal(getattr(self, a)[name], getattr(other, a)[name])
            for name in self.layers
            for a in ("values", "ids", "pos")
        )

    # -- updating -----------------------------------------------------------------------------
    def update(self, layer: str, ids: Sequence[int], score: np.ndarray) -> None:
        """Merge a batch's scores (N, C, H, W) for images ``ids`` into ``layer``'s top-k."""
        self.values[layer], self.ids[layer], self.pos[layer] = self.updated(layer, ids, score)

    def updated(self, layer: str, ids: Sequence[int], score: np.ndarray):
        """``layer``'s (values, ids, pos) with a batch's scores merged in (self unchanged)."""
        c, h, w = self.shapes[layer]
        if score.shape != (len(ids), c, h, w):
            raise PydeconvError(
                f"layer '{layer}': the score has shape {tuple(score.shape)}, expected "
                f"{(len(ids), c, h, w)}"
            )
        val, pos = strongest(score)  # (N, C)
        cand = np.broadcast_to(np.asarray(ids, dtype=np.int64)[None, :], (c, len(ids)))
        return _top(
            np.concatenate([self.values[layer], val.T], axis=1),
            np.concatenate([self.ids[layer], cand], axis=1),
            np.concatenate([self.pos[layer], pos.T], axis=1),
            self.k,
        )

    # -- files --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        arrays: dict[str, Any] = {
            "header": np.frombuffer(json.dumps(self.header()).encode("utf-8"), dtype=np.uint8),
            "done": self.done.astype(np.uint8),
        }
        for n, layer in enumerate(self.layers):
            arrays[f"values{n}"] = self.values[layer]
            arrays[f"ids{n}"] = self.ids[layer]
            arrays[f"pos{n}"] = self.pos[layer]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state atomically (a reader sees the old file or the new one)."""
        write_atomic(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "state") -> MineState:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {key: z[key] for key in z.files}
            head = json.loads(arrays["header"].tobytes().decode("utf-8"))
        except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError) as exc:
            raise StateError(f"{name}: not a pydeconv atlas state file ({exc})") from None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise StateError(f"{name}: not a pydeconv atlas state file (format tag missing)")
        if head.get("version") != VERSION:
            raise StateError(
                f"{name}: atlas state version {head.get('version')!r}, this pydeconv reads "
                f"version {VERSION}"
            )
        try:
            st = cls(
                model=str(head["model"]),
                model_size=int(head["model_size"]),
                model_sha256=str(head["model_sha256"]),
                layers=[str(x) for x in head["layers"]],
                k=int(head["k"]),
                ranking=str(head["ranking"]),
                cls=None if head["class"] is None else int(head["class"]),
                images=[str(x) for x in head["images"]],
                shapes={n: (int(s[0]), int(s[1]), int(s[2])) for n, s in head["shapes"].items()},
                batch_size=int(head["batch_size"]),
                done=arrays["done"].astype(bool),
                skipped={int(i): str(msg) for i, msg in head["skipped"]},
            )
            for n, layer in enumerate(st.layers):
                c = st.shapes[layer][0]
                for attr, dtype in (("values", np.float32), ("ids", np.int64), ("pos", np.int64)):
                    a = arrays[f"{attr}{n}"]
                    if a.shape != (c, st.k) or a.dtype != dtype:
                        raise ValueError(f"{attr} of layer '{layer}' has shape {a.shape}")
                    getattr(st, attr)[layer] = a
            if st.done.shape != (len(st.images),):
                raise ValueError("the finished-image list does not match the image list")
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{name}: a damaged atlas state file ({exc})") from None
        return st

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MineState:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise StateError(f"{path}: cannot read the atlas state ({exc.strerror})") from None
        return cls.from_bytes(data, str(path))


def _same(a: MineState, b: MineState, what: str) -> None:
    fields = {
        "model": lambda s: (s.model_sha256, s.model_size),
        "layers": lambda s: s.layers,
        "k": lambda s: s.k,
        "ranking": lambda s: (s.ranking, s.cls),
        "batch size": lambda s: s.batch_size,
        "image list": lambda s: s.images,
    }
    for name, get in fields.items():
        if get(a) != get(b):
            show = {
                "model": lambda s: f"{s.model} (sha256 {s.model_sha256[:12]})",
                "image list": lambda s: f"{len(s.images)} images",
            }.get(name, get)
            raise StateError(
                f"{what}: the states differ in their {name} ({show(a)} vs {show(b)}); only "
                "states of the same model, layers, k, ranking, batch size and image list "
                "belong together"
            )


def merge(a: MineState, b: MineState) -> MineState:
    """The state of the images finished in ``a`` or ``b`` (shards of one image list):
    associative, commutative and exact (the tie rule is a total order)."""
    _same(a, b, "cannot merge atlas states")
    out = MineState(
        model=a.model,
        model_size=a.model_size,
        model_sha256=a.model_sha256,
        layers=list(a.layers),
        k=a.k,
        ranking=a.ranking,
        cls=a.cls,
        images=list(a.images),
        shapes=dict(a.shapes),
        batch_size=a.batch_size,
        done=a.done | b.done,
        skipped={**a.skipped, **b.skipped},
    )
    for layer in a.layers:
        v, i, p = _top(
            np.concatenate([a.values[layer], b.values[layer]], axis=1),
            np.concatenate([a.ids[layer], b.ids[layer]], axis=1),
            np.concatenate([a.pos[layer], b.pos[layer]], axis=1),
            a.k,
        )
        out.values[layer], out.ids[layer], out.pos[layer] = v, i, p
    return out


# --- checks --------------------------------------------------------------------------------------


def model_identity(net: Any) -> tuple[str, int, str]:
    """(path, size in bytes, SHA-256) of the model file; for a net built in memory, ("", 0, the
    SHA-256 of its graph and parameters)."""
    path = getattr(net, "path", None)
    sha = hashlib.sha256()
    if path and Path(path).is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        return str(path), Path(path).stat().st_size, sha.hexdigest()
    sha.update(net._text.encode("utf-8"))
    for key in sorted(net.params):
        sha.update(key.encode("utf-8"))
        sha.update(np.ascontiguousarray(net.params[key]).tobytes())
    return "", 0, sha.hexdigest()


def check_layers(net: Any, layers: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Each layer's (C, H, W); one clear error for an unknown layer or one whose output is not a
    feature map (a dense layer's (C,))."""
    if isinstance(layers, str) or not layers:
        raise PydeconvError("give at least one layer (--layers L1,L2)")
    if len(set(layers)) != len(layers):
        raise PydeconvError(f"a layer is named twice in {', '.join(layers)}")
    shapes = {}
    for layer in layers:
        if not isinstance(layer, str) or not layer:
            raise LayerNotFoundError(f"unknown layer {layer!r}")
        row = net.layer_info(layer)  # LayerNotFoundError naming the closest layers
        if row["name"] != layer:
            raise PydeconvError(
                f"layer '{layer}' is an alias of '{row['name']}': name the layer itself"
            )
        shape = tuple(int(s) for s in row["shape"])
        if len(shape) != 3:
            raise PydeconvError(
                f"layer '{layer}' is not a feature map: its output has shape {shape}, the atlas "
                "needs a (C, H, W) layer such as a conv or pool"
            )
        shapes[layer] = shape
    return shapes


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """``pydeconv: atlas: 120/1000 images, 15.3 images/s, ETA 57 s`` on stderr, rewritten in
    place (the same style as cli.py's projection progress)."""

    def __init__(self, total: int, done: int = 0, enabled: bool | None = None):
        self.total, self.start_done = total, done
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, final: bool = False) -> None:
        if not self.enabled or (not final and done >= self.total):
            return
        now = time.perf_counter()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:.0f} s" if np.isfinite(eta) else "?"
        end = "\n" if final else ""
        print(
            f"\rpydeconv: atlas: {done}/{self.total} images, {rate:.1f} images/s, ETA {eta_text}",
            end=end,
            file=sys.stderr,
            flush=True,
        )


# --- mining --------------------------------------------------------------------------------------


def chunks(st: MineState, ids: Sequence[int] | None = None) -> list[list[int]]:
    """The batches mining runs: image ids cut at multiples of the batch size (batch b holds ids
    b*B .. b*B+B-1), leaving out finished ones. The engine's float results depend on a batch's
    size and contents in the last bits, so every run -- whole, resumed or a shard -- forwards
    each image in the same batch; that is what makes merged and resumed states equal the
    whole run bit for bit (shards of whole batches: :func:`shard_batches`)."""
    n = len(st.images)
    todo = range(n) if ids is None else sorted({int(i) for i in ids})
    out: dict[int, list[int]] = {}
    for i in todo:
        if not 0 <= i < n:
            raise PydeconvError(f"image id {i} is outside the image list [0, {n})")
        if not st.done[i]:
            out.setdefault(i // st.batch_size, []).append(i)
    return list(out.values())


def shard_batches(n_images: int, batch_size: int, n_shards: int) -> list[list[int]]:
    """``range(n_images)`` cut into at most ``n_shards`` contiguous shards of whole batches."""
    batches = -(-n_images // batch_size)
    n_shards = max(1, min(n_shards, batches))
    size, extra = divmod(batches, n_shards)
    out, start = [], 0
    for i in range(n_shards):
        end = start + size + (1 if i < extra else 0)
        out.append(list(range(start * batch_size, min(end * batch_size, n_images))))
        start = end
    return out


def mine(
    net: Any,
    images: Sequence[str | os.PathLike[str]] | MineState,
    layers: Sequence[str] | None = None,
    k: int = DEFAULT_K,
    batch_size: int | None = None,
    score: Score | None = None,
    ranking: str = "activation",
    class_: int | None = None,
    ids: Sequence[int] | None = None,
    state_path: str | os.PathLike[str] | None = None,
    save_every: int = DEFAULT_SAVE_EVERY,
    threads: int | None = None,
    progress: Callable[..., Any] | None = None,
) -> MineState:
    """Mine the top-k units of ``layers`` over ``images`` (paths; image id = position), or
    continue a :class:`MineState` (its layers, k, ranking and batch size are then used).

    ``score(net, trace, layer, activation)`` ranks the units (default: the activation; give
    ``ranking``/``class_`` to record what it is). ``ids``: only these images (a shard; whole
    batches for bit-identical merges); the others stay unfinished. ``state_path``: the state is
    saved there every ``save_every`` images, at the end, and on Ctrl-C (then KeyboardInterrupt
    is re-raised). ``progress(finished_images, final)`` is called after each batch."""
    if isinstance(images, MineState):
        st = images
        check_layers(net, st.layers)
        if model_identity(net)[1:] != (st.model_size, st.model_sha256):
            raise StateError(
                f"the state was mined with another model ({st.model or 'a model in memory'}, "
                f"sha256 {st.model_sha256[:12]})"
            )
        if batch_size is not None and batch_size != st.batch_size:
            raise StateError(
                f"the state was mined in batches of {st.batch_size}: continue it with that "
                f"batch size (the engine's last bits depend on the batch), not {batch_size}"
            )
    else:
        if layers is None:
            raise PydeconvError("give the layers to mine")
        batch = DEFAULT_BATCH if batch_size is None else batch_size
        st = MineState.empty(net, images, layers, k, ranking, class_, batch)
    if save_every < 1:
        raise PydeconvError(f"save_every must be >= 1, got {save_every}")
    score = score or activation_score
    # The activation ranking needs the net only up to the deepest chosen layer.
    upto = max(st.layers, key=net.layers.index) if score is activation_score else None
    since_save = 0
    show = progress or (lambda done, final=False: None)
    try:
        for chunk in chunks(st, ids):
            skipped: list[tuple[str, str]] = []
            paths = [Path(st.images[i]) for i in chunk]
            batch_ids: list[int] = []
            new = {}
            for batch_ids, x in imageset.iter_batches(net, paths, len(chunk), skipped, chunk):
                _, trace = net.forward(x, upto=upto, keep=list(st.layers), threads=threads)
                for layer in st.layers:
                    act = trace.activation(layer)
                    s = np.asarray(score(net, trace, layer, act), dtype=np.float32)
                    new[layer] = st.updated(layer, batch_ids, s)
                del trace, act, s  # before the next batch's forward: one trace alive at a time
            # The batch lands as a whole (an image seen twice after an unlucky interrupt would
            # be kept once anyway: _top drops repeated images).
            for layer, (v, i, p) in new.items():
                st.values[layer], st.ids[layer], st.pos[layer] = v, i, p
            by_path = {str(p): i for p, i in zip(paths, chunk)}
            for path, msg in skipped:
                st.skipped[by_path[path]] = msg
            st.done[chunk] = True
            since_save += len(chunk)
            if state_path is not None and since_save >= save_every:
                st.save(state_path)
                since_save = 0
            show(st.finished)
    except KeyboardInterrupt:
        if state_path is not None:
            st.save(state_path)
        raise
    if state_path is not None:
        st.save(state_path)
    show(st.finished, True)
    return st


def check_complete(st: MineState) -> None:
    """What the atlas needs of a finished state: every image finished, at least k mined."""
    left = len(st.done) - st.finished
    if left:
        raise StateError(f"the mining state has {left} unfinished image(s): resume it first")
    mined = st.finished - len(st.skipped)
    if mined == 0:
        raise PydeconvError(
            f"none of the {len(st.images)} image(s) could be read "
            f"(first: {st.images[min(st.skipped)]}: {st.skipped[min(st.skipped)]})"
        )
    if st.k > mined:
        raise PydeconvError(
            f"k={st.k} is larger than the number of readable images ({mined}): each channel's "
            f"tiles are different images, so give -k {mined} or fewer"
        )
