"""The Python face of the engine: Net (a loaded model) and Trace (what a forward pass recorded)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from . import _core, model
from .errors import ChannelError, PydeconvError, ShapeError

At = Union[str, Sequence[int], np.ndarray]
RULES = ("deconvnet", "guided", "backprop")

# The default thread count. Every other setting is the engine's: C++ reads the PYDECONV_*
# environment variables (once) and the setters below forward to it.
_settings = {
    "threads": max(1, int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)),
}


def set_num_threads(n: int) -> None:
    """Default number of threads for forward passes and projections."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PydeconvError(f"number of threads must be a positive integer, got {n!r}")
    _settings["threads"] = n


def get_num_threads() -> int:
    return _settings["threads"]


def set_reference_kernels(on: bool) -> None:
    """Force the naive reference kernels (the definition of correct; slow). Also PYDECONV_REFERENCE=1."""
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
    if threads is None:
        return _settings["threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise PydeconvError(f"threads must be a positive integer, got {threads!r}")
    return threads


class Trace:
    """Activations and max-pooling switches recorded by :meth:`Net.forward`."""

    def __init__(self, net: "Net", core_trace: Any, layers: list[str]):
        self._net = net
        self._core = core_trace
        self.layers = layers  # the layers that ran, in execution order

    @property
    def batch(self) -> int:
        return self._core.batch

    def activation(self, layer: str) -> np.ndarray:
        """A layer's output, (N, C, H, W) or (N, C); read-only view."""
        self._net._check_layer(layer)
        a = self._net._core.activation(self._core, layer)
        a.flags.writeable = False
        return a

    def switches(self, layer: str) -> np.ndarray:
        """The max-location switches of a max_pool2d layer: int32, the pooled output's shape,
        each an index ``ih * W + iw`` into the pooling input plane."""
        self._net._check_layer(layer)
        s = self._net._core.switches(self._core, layer)
        s.flags.writeable = False
        return s


class Net:
    """A model: an immutable graph with its weights, safe to share between threads."""

    def __init__(self, graph: dict, params: dict[str, np.ndarray], path: str | None = None):
        graph = copy.deepcopy(graph)
        model.validate(graph, params, path)
        try:
            self.preprocess = model.preprocess_of(graph)
        except PydeconvError as e:
            raise type(e)(f"{path}: {e}" if path else str(e)) from None
        self.graph = graph
        self.path = path
        try:
            self._core = _core.Net(
                graph["input"]["name"],
                list(graph["input"]["shape"]),
                model.core_layers(graph, params),
                list(graph.get("outputs") or []),
            )
        except PydeconvError as e:
            if path:
                raise type(e)(f"{path}: {e}") from None
            raise
        self._info = self._core.info()
        self.layers: list[str] = list(self._core.layers)
        self._by_name = {d["name"]: d for d in self._info}

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
    def outputs(self) -> list[str]:
        return list(self.graph.get("outputs") or [self.graph["layers"][-1]["name"]])

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters as read-only views of the engine's storage, keyed "LAYER/PARAM"."""
        return self._core.params()

    def cache_bytes(self) -> int:
        """Bytes the engine keeps to run faster: the Winograd-transformed filters of convs on small
        maps (13x13 or 14x14 at hundreds of channels), filled by the first forward that uses them.
        At most a quarter of the parameters' bytes; 0 when nothing qualified or fitted."""
        return int(self._core.cache_bytes())

    def info(self) -> list[dict]:
        """Per layer, in execution order: name, kind, inputs, shape, receptive field, params, rule."""
        return [dict(d) for d in self._info]

    def layer_info(self, layer: str) -> dict:
        self._check_layer(layer)
        return dict(self._by_name[layer])

    def save(self, path: str | os.PathLike, compress: bool = False) -> None:
        model.write_npz(path, self.graph, self.params, compress=compress)

    def __repr__(self) -> str:
        return f"<pydeconv.Net {self.graph.get('name', '')!r}: {len(self.layers)} layers, input {self.input_shape}>"

    # -- running -----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, upto: str | None = None, keep: str | Sequence[str] = "all",
                threads: int | None = None):
        """Runs the net on ``x`` (float (N, C, H, W)). Returns ``(out, trace)``: ``out`` is the
        graph output (a dict name -> array when there are several) or, with ``upto``, that layer's
        output. ``keep="all"`` keeps every layer's output; ``keep="minimal"`` only what projections
        need (switches, ReLU masks, LRN inputs) plus ``upto``/the outputs; a list of layer names
        keeps those outputs on top of the minimal set (the layers you will project from)."""
        x = self._check_input(x)
        if upto is not None:
            self._check_layer(upto)
        also: list[str] = []
        if isinstance(keep, (list, tuple)):
            for name in keep:
                self._check_layer(name)
            also, keep = list(keep), "minimal"
        elif keep not in ("all", "minimal"):
            raise PydeconvError(f"keep must be 'all', 'minimal' or a list of layer names, got {keep!r}")
        core_trace = self._core.forward(x, upto or "", keep == "minimal", _threads(threads), get_reference_kernels(), also)
        trace = Trace(self, core_trace, self._core.ran_layers(core_trace))
        if upto is not None:
            return trace.activation(upto), trace
        outs = {name: trace.activation(name) for name in self.outputs}
        return (next(iter(outs.values())) if len(outs) == 1 else outs), trace

    def project(self, trace: Trace, layer: str, channel: int | Sequence[int] | None = None, at: At = "max",
                rule: str = "deconvnet", threads: int | None = None) -> np.ndarray:
        """Projects a layer's activation down to the input pixels.

        ``at``: "max" (the channel's strongest activation), "map" (its whole feature map), (y, x)
        (one position), or an array of the layer's output shape (the start signal itself; then
        ``channel`` is ignored). One channel gives (N, C_in, H, W); a list of K channels gives
        (N, K, C_in, H, W), computed in one batched pass."""
        if not isinstance(trace, Trace) or trace._net is not self:
            raise PydeconvError("trace must come from this net's forward()")
        self._check_layer(layer)
        if rule not in RULES:
            raise PydeconvError(f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
        n = trace.batch
        c, h, w = self.input_shape
        if isinstance(at, np.ndarray):
            start = self._check_start(at, layer, n)
            out = self._core.project(trace._core, layer, start, rule, _threads(threads), get_reference_kernels())
            return out
        channels, single = self._channels(channel, layer)
        kind, y, x = self._at(at)
        out = self._core.project_channels(trace._core, layer, channels, kind, y, x, rule, _threads(threads),
                                          get_reference_kernels())
        out = out.reshape(n, len(channels), c, h, w)
        return out[:, 0] if single else out

    # -- argument checks ---------------------------------------------------------------------
    def _check_layer(self, layer: str) -> None:
        if not isinstance(layer, str) or layer not in self._by_name:
            from .errors import LayerNotFoundError

            names = ", ".join(self.layers[:12]) + (", ..." if len(self.layers) > 12 else "")
            raise LayerNotFoundError(f"unknown layer {layer!r} (layers: {names})")

    def _check_input(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise ShapeError(f"input must be a NumPy array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise ShapeError(f"input must be a float array (float32), got dtype {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape or x.shape[0] < 1:
            raise ShapeError(f"input must have shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if not _all_finite(x):
            raise ShapeError("input holds NaN or infinity")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _channels(self, channel: Any, layer: str) -> tuple[list[int], bool]:
        if channel is None:
            raise ChannelError(f"layer '{layer}': give a channel (or a list of channels)")
        single = not isinstance(channel, (list, tuple, np.ndarray))
        chans = [channel] if single else list(channel)
        if not chans:
            raise ChannelError(f"layer '{layer}': the channel list is empty")
        nch = self._by_name[layer]["shape"][0]
        for ch in chans:
            if isinstance(ch, bool) or not isinstance(ch, (int, np.integer)):
                raise ChannelError(f"layer '{layer}': channel {ch!r} is not an integer")
            if not 0 <= ch < nch:
                raise ChannelError(f"layer '{layer}': channel {ch} out of range (the layer has {nch} channels)")
        return [int(ch) for ch in chans], single

    @staticmethod
    def _at(at: Any) -> tuple[str, int, int]:
        if isinstance(at, str):
            if at in ("max", "map"):
                return at, 0, 0
            raise PydeconvError(f"at must be 'max', 'map', (y, x) or an array, got {at!r}")
        try:
            y, x = at
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (y, x)):
                raise TypeError
        except (TypeError, ValueError):
            raise PydeconvError(f"at must be 'max', 'map', (y, x) or an array, got {at!r}") from None
        return "pos", y, x

    def _check_start(self, start: np.ndarray, layer: str, n: int) -> np.ndarray:
        want = (n,) + tuple(self._by_name[layer]["shape"])
        if start.dtype.kind != "f" or tuple(start.shape) != want:
            raise ShapeError(f"layer '{layer}': the start signal must be a float array of shape {want}, got {start.dtype} {tuple(start.shape)}")
        if not _all_finite(start):
            raise ShapeError(f"layer '{layer}': the start signal holds NaN or infinity")
        return np.ascontiguousarray(start, dtype=np.float32)


def build(graph: dict, params: dict[str, np.ndarray]) -> Net:
    """A Net from a graph dict (docs/FORMAT.md) and its "LAYER/PARAM" arrays."""
    return Net(graph, params)


def load(path: str | os.PathLike, preprocess: dict | None = None, labels: list[str] | None = None) -> Net:
    """Loads a ``.npz`` model, or imports an ``.onnx`` file directly."""
    p = str(path)
    if Path(p).suffix.lower() == ".onnx":
        from .onnx import import_onnx

        graph, params = import_onnx(p, preprocess=preprocess, labels=labels)
        return Net(graph, params, p)
    graph, params = model.read_npz(p)
    if preprocess:
        graph = dict(graph, preprocess={**(graph.get("preprocess") or {}), **preprocess})
    if labels is not None:
        graph = dict(graph, labels=list(labels))
    return Net(graph, params, p)


def convert(src: str | os.PathLike, dst: str | os.PathLike, preprocess: dict | None = None,
            labels: list[str] | None = None, compress: bool = False) -> Net:
    """Imports an ONNX model and writes it as a pydeconv ``.npz``."""
    net = load(src, preprocess=preprocess, labels=labels)
    net.save(dst, compress=compress)
    return net
