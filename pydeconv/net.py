"""The Python face of the engine: Net (a loaded model) and Trace (what a forward pass recorded)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _core, model
from .errors import (
    ChannelError,
    GraphError,
    LayerNotFoundError,
    ModelFormatError,
    PydeconvError,
    ShapeError,
)
from .limits import check_threads

At = str | Sequence[int] | np.ndarray
# The projection rules, as the engine's parse_rule spells them (the CLI offers the same list).
RULES = ("deconvnet", "guided", "backprop")
_INT64 = (-(2**63), 2**63 - 1)


def parse_at(text: str) -> str | tuple[int, int]:
    """A projection's ``at`` written as text (the command line's ``--at``, the server's
    ``at=``): ``max``, ``map`` or ``Y,X``."""
    if text in ("max", "map"):
        return text
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise PydeconvError(f"at must be max, map or Y,X; got {text!r}") from None
    return y, x


# Bytes a projection's working buffers may take by default (max_memory=None); defined in C++.
DEFAULT_MAX_MEMORY: int = _core.DEFAULT_MAX_MEMORY

# The default thread count. Every other setting is the engine's: C++ reads the PYDECONV_*
# environment variables (once) and the setters below forward to it.
_settings = {
    "threads": max(1, int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)),
}


def set_num_threads(n: int) -> None:
    """Default number of threads for forward passes and projections."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PydeconvError(f"number of threads must be a positive integer, got {n!r}")
    _settings["threads"] = check_threads(n)


def get_num_threads() -> int:
    return _settings["threads"]


def set_reference_kernels(on: bool) -> None:
    """Force the naive reference kernels (the definition of correct; slow).

    Also PYDECONV_REFERENCE=1.
    """
    _core.set_reference_kernels(bool(on))


def get_reference_kernels() -> bool:
    return _core.reference_kernels()


def set_winograd(mode: bool | int) -> None:
    """Use Winograd convolution for 3x3 stride-1 convolutions where it is cheaper (the default).

    ``True``: per call, the cheapest of F(2x2, 3x3) (2.25x fewer multiply-adds than the direct
    GEMM), F(4x4, 3x3) (4x fewer) and the direct GEMM (projections: of F(2x2) and the direct
    GEMM). ``2`` or ``4``: that tile size wherever it applies, whatever it costs (for tests and
    benchmarks). ``False``: every convolution runs as a direct GEMM. Results agree with the direct
    GEMM to float rounding (relative ~1e-6), not bit for bit. Process-wide; the environment
    variable PYDECONV_WINOGRAD=0 / 2 / 4 sets it at start.
    """
    if not (isinstance(mode, bool) or (isinstance(mode, int) and mode in (2, 4))):
        raise PydeconvError(f"set_winograd: expected True, False, 2 or 4, not {mode!r}")
    _core.set_winograd_mode(int(mode))


def get_winograd() -> bool | int:
    """The mode set_winograd set: True, False, 2 or 4."""
    mode = _core.winograd_mode()
    return {0: False, 1: True}.get(mode, mode)


def _all_finite(a: np.ndarray) -> bool:
    """No NaN and no infinity in ``a``, without np.isfinite's temporary: a boolean array as large
    as the input is a fresh mapping past 128 KiB, faulted in page by page on every call (98 page
    faults per forward of a 128x56x56 input). NaN propagates through min and max; an infinity
    is one of them."""
    return a.size == 0 or bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def _threads(threads: int | None) -> int:
    """The thread count for one call. The engine refuses a count past Limits.max_threads (where
    it enters, csrc/python/bindings.cpp); one past int64 cannot reach it and is refused here."""
    if threads is None:
        threads = _settings["threads"]
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise PydeconvError(f"threads must be a positive integer, got {threads!r}")
    return check_threads(threads)


def _name(layer: Any) -> str:
    """A layer name or alias for the engine, which resolves it (LayerNotFoundError suggesting the
    closest names)."""
    if not isinstance(layer, str) or not layer:
        raise LayerNotFoundError(f"unknown layer {layer!r} (layer names are non-empty strings)")
    return layer


def _index(value: Any) -> int | None:
    """An integer the engine can take (int64), or None when ``value`` is not an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


class Trace:
    """Activations and max-pooling switches recorded by :meth:`Net.forward`."""

    def __init__(self, net: Net, core_trace: Any, layers: list[str]):
        self._net = net
        self._core = core_trace
        self.layers = layers  # the layers that ran, in execution order

    @property
    def batch(self) -> int:
        return self._core.batch

    def activation(self, layer: str) -> np.ndarray:
        """A layer's output, (N, C, H, W) or (N, C); read-only view."""
        a = self._net._core.activation(self._core, _name(layer))
        a.flags.writeable = False
        return a

    def switches(self, layer: str) -> np.ndarray:
        """The max-location switches of a max_pool2d layer: int32, the pooled output's shape,
        each an index ``ih * W + iw`` into the pooling input plane."""
        s = self._net._core.switches(self._core, _name(layer))
        s.flags.writeable = False
        return s


class Net:
    """A model: an immutable graph with its weights, safe to share between threads.

    Built and validated by the C++ format code (csrc/src/format/model.cpp), the one definition of
    a valid model for Python and C++ alike."""

    def __init__(self, graph: dict, params: dict[str, np.ndarray], path: str | None = None):
        self._init(*model.build_core(graph, params, path or ""), path)

    @classmethod
    def _from_core(cls, core: Any, text: str, preprocess: dict, path: str | None) -> Net:
        net = cls.__new__(cls)
        net._init(core, text, preprocess, path)
        return net

    def _init(self, core: Any, text: str, preprocess: dict, path: str | None) -> None:
        self._core = core
        self._text = text  # what C++ validated; save() writes exactly this
        self.graph = json.loads(text)
        self.preprocess = preprocess  # every default filled in by the C++ reader
        self.path = path
        self._info = core.info()
        # The other names each layer answers to (docs/FORMAT.md `aliases`): for an imported layer
        # made of several ONNX nodes (Conv + BatchNormalization, Sigmoid + Mul), those nodes.
        aliases = {layer["name"]: layer.get("aliases", []) for layer in self.graph["layers"]}
        for row in self._info:
            row["aliases"] = list(aliases.get(row["name"], []))
        self.layers: list[str] = list(core.layers)

    # -- description -------------------------------------------------------------------------
    @property
    def input_name(self) -> str:
        return self.graph["input"]["name"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.graph["input"]["shape"]
        return (c, h, w)

    @property
    def labels(self) -> list[str] | None:
        return self.graph.get("labels")

    @property
    def metadata(self) -> dict:
        """The graph's ``metadata`` (docs/FORMAT.md): what an importer kept for tools, e.g. a
        Darknet net's ``[yolo]`` anchors under ``"darknet"``; ``{}`` when there is none."""
        return json.loads(json.dumps(self.graph.get("metadata") or {}))

    @property
    def outputs(self) -> list[str]:
        """The graph outputs (the file's ``outputs``, by default the last layer)."""
        return list(self._core.outputs)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters as read-only views of the engine's storage, keyed "LAYER/PARAM"."""
        return self._core.params()

    def cache_bytes(self) -> int:
        """Bytes the engine keeps to run faster: the Winograd-transformed filters of convs on small
        maps (13x13 or 14x14 at hundreds of channels), filled by the first forward that uses them.
        At most a quarter of the parameters' bytes or 128 MiB, whichever is more; 0 when nothing
        qualified or fitted."""
        return int(self._core.cache_bytes())

    def info(self) -> list[dict]:
        """Per layer, in execution order: name, kind, inputs, shape, receptive field, params,
        rule, aliases (the other names it answers to: the ONNX nodes fused into it)."""
        return [dict(d) for d in self._info]

    def rules(self, layer: str, rule: str = "deconvnet") -> list[dict]:
        """How a projection from ``layer`` under ``rule`` sends the signal down: one dict per layer
        it passes (``layer`` first, then in the order the signal meets them) with the layer's
        ``name``, ``kind`` and ``rule``, the text its kind's registry row declares for that rule
        (a layer that does not rectify, such as sigmoid or clip with min != 0, passes the
        gradient under every rule)."""
        if not isinstance(rule, str):
            raise PydeconvError(f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
        return [dict(d) for d in self._core.rules(_name(layer), rule)]

    def layer_info(self, layer: str) -> dict:
        """The info() row of a layer, by name or alias (the engine resolves it)."""
        return dict(self._info[self._core.layer_index(_name(layer))])

    def save(self, path: str | os.PathLike, compress: bool = False) -> None:
        """Writes the model file (atomically): the graph exactly as C++ validated it."""
        folder = Path(os.fspath(path)).parent
        if not folder.is_dir():  # the user's mistake, named by the user's path (not a temporary's)
            raise PydeconvError(
                f"{os.fspath(path)}: cannot save the model: folder {folder} does not exist"
            )
        model.write_text(path, self._text, self.params, compress=compress)

    def __repr__(self) -> str:
        return (
            f"<pydeconv.Net {self.graph.get('name', '')!r}: {len(self.layers)} layers, "
            f"input {self.input_shape}>"
        )

    # -- running -----------------------------------------------------------------------------
    def forward(
        self,
        x: np.ndarray,
        upto: str | None = None,
        keep: str | Sequence[str] = "all",
        threads: int | None = None,
    ):
        """Runs the net on ``x`` (float (N, C, H, W)). Returns ``(out, trace)``: ``out`` is the
        graph output (a dict name -> array when there are several) or, with ``upto``, that layer's
        output. ``keep="all"`` keeps every layer's output; ``keep="minimal"`` only what projections
        need (switches, ReLU masks, LRN inputs) plus ``upto``/the outputs; a list of layer names
        keeps those outputs on top of the minimal set (the layers you will project from)."""
        x = self._input(x)
        also: list[str] = []
        if isinstance(keep, (list, tuple)):
            also, keep = [_name(name) for name in keep], "minimal"
        elif keep not in ("all", "minimal"):
            raise PydeconvError(
                f"keep must be 'all', 'minimal' or a list of layer names, got {keep!r}"
            )
        target = "" if upto is None else _name(upto)
        core_trace = self._core.forward(
            x, target, keep == "minimal", _threads(threads), get_reference_kernels(), also
        )
        trace = Trace(self, core_trace, self._core.ran_layers(core_trace))
        if upto is not None:
            return trace.activation(upto), trace
        outs = {name: trace.activation(name) for name in self.outputs}
        return (next(iter(outs.values())) if len(outs) == 1 else outs), trace

    def project(
        self,
        trace: Trace,
        layer: str,
        channel: int | Sequence[int] | None = None,
        at: At = "max",
        rule: str = "deconvnet",
        threads: int | None = None,
        return_positions: bool = False,
        max_memory: int | None = None,
        progress: Callable[[int, int], Any] | None = None,
        to: str | None = None,
    ):
        """Projects a layer's activation down to the input pixels (or, with ``to``, to a layer).

        ``at``: "max" (the channel's strongest activation), "map" (its whole feature map), (y, x)
        (one position), or an array of the layer's output shape (the start signal itself; then
        ``channel`` is ignored). One channel gives (N, C_in, H, W); a list of K channels gives
        (N, K, C_in, H, W), computed in one batched pass.

        ``return_positions=True`` returns ``(projection, positions)``: the (y, x) each projection
        started from, int64 of shape (N, 2) for one channel or (N, K, 2) for a list: for "max"
        the strongest activation the engine chose (ties: the first in row-major order), for
        (y, x) that position, for "map" (-1, -1).

        ``max_memory``: bytes the projection's working buffers may take at once (default
        ``pydeconv.net.DEFAULT_MAX_MEMORY``, 256 MiB; the result comes on top). A list of channels
        larger than that runs in chunks of channels, with the same bits as one batch;
        ``progress(done, total)`` is called after each chunk with the channels done so far.

        ``to``: a layer the projection passes (``net.rules(layer)`` lists them); the projection
        stops there and returns the signal at that layer's OUTPUT instead of at the pixels:
        (N, C_to, H_to, W_to) for one channel, (N, K, C_to, H_to, W_to) for a list ((N, C_to) /
        (N, K, C_to) after a flatten or linear layer). Under ``rule="backprop"`` it is the
        gradient of the start signal's dot product with ``layer``'s output with respect to
        ``to``'s output; continuing from ``to`` with ``at=<that array>`` gives the full
        projection. Paths that bypass ``to`` (a skip connection around it) do not reach it.
        ``to == layer`` returns the start signal. A layer the projection does not pass raises
        GraphError naming both layers."""
        if not isinstance(trace, Trace):
            raise PydeconvError(
                f"trace must come from this net's forward(), got {type(trace).__name__}"
            )
        layer = _name(layer)
        if not isinstance(rule, str):
            raise PydeconvError(f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
        n = trace.batch
        stop = "" if to is None else _name(to)
        dims = tuple(self.input_shape) if to is None else tuple(self.layer_info(stop)["shape"])
        if isinstance(at, np.ndarray):
            if return_positions:
                raise PydeconvError(
                    "return_positions needs at='max', 'map' or (y, x), not a start array"
                )
            start = self._start(at, layer, n)
            return self._core.project(
                trace._core, layer, start, rule, _threads(threads), get_reference_kernels(), stop
            )
        channels, single = self._channels(channel, layer)
        kind, y, x = self._at(at, layer)
        budget = None if max_memory is None else _index(max_memory)
        if max_memory is not None:  # an int64 here; the engine checks that it is positive
            if budget is None or not _INT64[0] <= budget <= _INT64[1]:
                raise PydeconvError(f"max_memory must be a number of bytes, got {max_memory!r}")
        if progress is not None and not callable(progress):
            raise PydeconvError(f"progress must be callable, got {type(progress).__name__}")
        out = self._core.project_channels(
            trace._core,
            layer,
            channels,
            kind,
            y,
            x,
            rule,
            _threads(threads),
            get_reference_kernels(),
            budget,
            progress,
            stop,
        )
        out = out.reshape((n, len(channels)) + dims)
        out = out[:, 0] if single else out
        if not return_positions:
            return out
        pos = self._core.positions(trace._core, layer, channels, kind, y, x).reshape(
            n, len(channels), 2
        )
        return out, (pos[:, 0] if single else pos)

    # -- conversions to what the engine takes (it checks ranges, shapes and names itself) -------
    @staticmethod
    def _input(x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise ShapeError(f"input must be a NumPy array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise ShapeError(f"input must be a float array (float32), got dtype {x.dtype}")
        if not _all_finite(x):
            raise ShapeError("input holds NaN or infinity")
        return np.ascontiguousarray(x, dtype=np.float32)

    @staticmethod
    def _channels(channel: Any, layer: str) -> tuple[list[int], bool]:
        if channel is None:
            raise ChannelError(f"layer '{layer}': give a channel (or a list of channels)")
        single = not isinstance(channel, (list, tuple, np.ndarray))
        chans = [channel] if single else list(channel)
        if not chans:
            raise ChannelError(f"layer '{layer}': the channel list is empty")
        out = []
        for ch in chans:
            v = _index(ch)
            if v is None:
                raise ChannelError(f"layer '{layer}': channel {ch!r} is not an integer")
            if not _INT64[0] <= v <= _INT64[1]:
                raise ChannelError(f"layer '{layer}': channel {v} out of range")
            out.append(v)
        return out, single

    @staticmethod
    def _at(at: Any, layer: str) -> tuple[str, int, int]:
        if isinstance(at, str):
            if at in ("max", "map"):
                return at, 0, 0
            raise PydeconvError(f"at must be 'max', 'map', (y, x) or an array, got {at!r}")
        try:
            y, x = (_index(v) for v in at)
        except (TypeError, ValueError):
            y = x = None
        if y is None or x is None:
            raise PydeconvError(f"at must be 'max', 'map', (y, x) or an array, got {at!r}")
        if not all(_INT64[0] <= v <= _INT64[1] for v in (y, x)):
            raise ChannelError(f"layer '{layer}': position ({y}, {x}) is outside its map")
        return "pos", y, x

    def _start(self, start: np.ndarray, layer: str, n: int) -> np.ndarray:
        if start.dtype.kind != "f" or start.ndim not in (2, 4):
            want = (n,) + tuple(self.layer_info(layer)["shape"])
            raise ShapeError(
                f"layer '{layer}': the start signal must be a float array of shape {want}, "
                f"got {start.dtype} {tuple(start.shape)}"
            )
        if not _all_finite(start):
            raise ShapeError(f"layer '{layer}': the start signal holds NaN or infinity")
        return np.ascontiguousarray(start, dtype=np.float32)


def build(graph: dict, params: dict[str, np.ndarray]) -> Net:
    """A Net from a graph dict (docs/FORMAT.md) and its "LAYER/PARAM" arrays."""
    return Net(graph, params)


def load(
    path: str | os.PathLike,
    preprocess: dict | None = None,
    labels: list[str] | None = None,
    weights: str | os.PathLike | None = None,
    outputs: Sequence[str] | str | None = None,
) -> Net:
    """Loads a ``.npz`` model (read and validated by the C++ reader), or imports an ``.onnx``
    file or a Darknet ``.cfg`` directly. ``preprocess`` entries and ``labels`` replace the
    file's. ``weights``: a Darknet cfg's ``.weights`` file (default: the cfg's name with
    ``.weights``, beside it); ``preprocess={"size": [H, W]}`` runs a Darknet or ONNX net at
    another input size where the file allows it. ``outputs`` (ONNX only) imports part of the
    graph: a list of ONNX tensor names, or ``"auto"`` to stop before the nodes that cannot be
    mapped (a detector's box decoding): see ``pydeconv.onnx.import_onnx``."""
    p = os.fspath(path)
    preprocess, labels = _overrides(preprocess, labels)
    suffix = Path(p).suffix.lower()
    if weights is not None and suffix != ".cfg":
        raise PydeconvError(f"{p}: weights= is for Darknet .cfg files only")
    if outputs is not None and suffix != ".onnx":
        raise GraphError(f"{p}: outputs= applies to ONNX files only")
    if suffix == ".cfg":
        from .darknet import import_darknet

        graph, params = import_darknet(
            p, darknet_weights(p, weights), preprocess=preprocess, labels=labels
        )
        return Net(graph, params, p)
    if suffix == ".onnx":
        from .onnx import import_onnx

        extra = {} if outputs is None else {"outputs": outputs}
        graph, params = import_onnx(p, preprocess=preprocess, labels=labels, **extra)
        return Net(graph, params, p)
    net = Net._from_core(*model.load_core(p), p)
    if not preprocess and labels is None:
        return net
    graph = net.graph
    if preprocess:
        graph["preprocess"] = {**(graph.get("preprocess") or {}), **preprocess}
    if labels is not None:
        graph["labels"] = list(labels)
    return Net(graph, net.params, p)


def darknet_weights(cfg: str, weights: str | os.PathLike | None) -> str:
    """The weights file of a Darknet cfg: ``weights`` as given, else the cfg's name with
    ``.weights`` beside it."""
    if weights is not None:
        return os.fspath(weights)
    guess = str(Path(cfg).with_suffix(".weights"))
    if not os.path.exists(guess):
        raise ModelFormatError(
            f"{cfg}: a Darknet cfg needs its weights: pass weights=PATH (no {guess} beside it)"
        )
    return guess


def _overrides(preprocess: Any, labels: Any) -> tuple[dict | None, list[str] | None]:
    """``load``'s preprocess and labels, checked for their type here; the C++ model reader checks
    their values (NaN, strings, sizes that do not match the input) when the net is built."""
    if preprocess is not None and not isinstance(preprocess, dict):
        raise GraphError(
            f"preprocess must be a dict of preprocess fields, got {type(preprocess).__name__}"
        )
    if labels is not None:
        if not isinstance(labels, (list, tuple)) or not all(isinstance(v, str) for v in labels):
            got = (
                type(labels).__name__
                if not isinstance(labels, (list, tuple))
                else "a list holding non-strings"
            )
            raise GraphError(f"labels must be a list of strings, got {got}")
        labels = list(labels)
    return preprocess, labels


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    preprocess: dict | None = None,
    labels: list[str] | None = None,
    compress: bool = False,
    weights: str | os.PathLike | None = None,
    outputs: Sequence[str] | str | None = None,
) -> Net:
    """Imports a model (ONNX, a Darknet cfg with its ``weights``, or another ``.npz``) and writes
    it as a pydeconv ``.npz``: the one convert pipeline (the CLI's ``convert`` and the demo's
    cache use it too)."""
    net = load(src, preprocess=preprocess, labels=labels, weights=weights, outputs=outputs)
    net.save(dst, compress=compress)
    return net
