"""The model file: a NumPy ``.npz`` holding the JSON graph and the parameters (docs/FORMAT.md).

Everything about the container lives here: reading it safely (no pickle, every member checked),
validating the JSON structure, and writing it back atomically. The graph's semantics (layer
kinds, attributes, shapes, cycles) are validated by the C++ engine when the net is built.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from .errors import GraphError, ModelFormatError, ShapeError
from .fileio import write_via_temp

FORMAT_NAME = "pydeconv"
FORMAT_VERSION = 1
GRAPH_MEMBER = "__graph__"

PREPROCESS_DEFAULTS: dict[str, Any] = {
    "channel_order": "RGB",
    "scale": 1.0 / 255.0,
    "mean": None,
    "std": None,
    "source_layout": "NCHW",
}


def _fail(path: str | None, msg: str, cls: type[Exception] = ModelFormatError) -> None:
    raise cls(f"{path}: {msg}" if path else msg)


def read_npz(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads a model file into (graph dict, params dict). Raises ModelFormatError."""
    p = str(path)
    if not os.path.exists(p):
        _fail(p, "no such file")
    if not zipfile.is_zipfile(p):
        _fail(p, "not a pydeconv model (.npz zip archive)")
    try:
        with zipfile.ZipFile(p) as zf:
            _check_members(p, zf)
        arrays = {}
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                try:
                    arrays[k] = z[k]
                except ValueError as e:  # object (pickled) arrays
                    _fail(p, f"member '{k}': {e}")
    except ModelFormatError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        _fail(p, f"corrupt or truncated archive ({e})")
    for key, arr in arrays.items():
        if key != GRAPH_MEMBER and arr.dtype != np.dtype("<f4"):
            _fail(p, f"parameter '{key}' is stored as {arr.dtype} ({arr.dtype.str}); model files hold float32 ('<f4')", ShapeError)
    if GRAPH_MEMBER not in arrays:
        _fail(p, f"missing the '{GRAPH_MEMBER}' member (not a pydeconv model)")
    raw = arrays.pop(GRAPH_MEMBER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(p, f"'{GRAPH_MEMBER}' must be a 1-D uint8 array")
    try:
        graph = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(p, f"'{GRAPH_MEMBER}' is not valid JSON ({e})")
    validate(graph, arrays, p)
    return graph, arrays


def _check_members(path: str, zf: zipfile.ZipFile) -> None:
    """Rejects overlapping entries (zip bombs; CVE-2024-0450) and duplicate names."""
    seen: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    for info in zf.infolist():
        if info.filename in seen:
            _fail(path, f"duplicate member '{info.filename}'")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            _fail(path, f"member '{info.filename}' is encrypted")
        spans.append((info.header_offset, info.header_offset + 30 + len(info.filename) + info.compress_size, info.filename))
    spans.sort()
    for (a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            _fail(path, f"members '{an}' and '{bn}' overlap")


def validate(graph: Any, params: dict[str, np.ndarray], path: str | None = None) -> None:
    """Checks the JSON structure and that params match the declared shapes exactly."""
    if not isinstance(graph, dict):
        _fail(path, "the graph must be a JSON object", GraphError)
    if graph.get("format") != FORMAT_NAME:
        _fail(path, f"graph 'format' must be '{FORMAT_NAME}'", GraphError)
    if graph.get("version") != FORMAT_VERSION:
        _fail(path, f"unsupported format version {graph.get('version')!r} (this pydeconv reads {FORMAT_VERSION})", GraphError)
    inp = graph.get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
        _fail(path, "graph 'input' must be {\"name\": ..., \"shape\": [C, H, W]}", GraphError)
    shape = inp.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        _fail(path, f"input 'shape' must be three positive integers [C, H, W], got {shape!r}", ShapeError)
    layers = graph.get("layers")
    if not isinstance(layers, list) or not layers:
        _fail(path, "graph 'layers' must be a non-empty list", GraphError)
    declared: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layers):
        where = f"layer #{i}"
        if not isinstance(layer, dict):
            _fail(path, f"{where} must be an object", GraphError)
        for key, typ in (("name", str), ("kind", str), ("inputs", list)):
            if not isinstance(layer.get(key), typ):
                _fail(path, f"{where}: field '{key}' is missing or not a {typ.__name__}", GraphError)
        name = layer["name"]
        where = f"layer '{name}'"
        unknown = set(layer) - {"name", "kind", "inputs", "attrs", "params"}
        if unknown:
            _fail(path, f"{where}: unknown field(s) {sorted(unknown)}", GraphError)
        if not all(isinstance(s, str) for s in layer["inputs"]):
            _fail(path, f"{where}: 'inputs' must be a list of names", GraphError)
        for field in ("attrs", "params"):
            if not isinstance(layer.get(field, {}), dict):
                _fail(path, f"{where}: '{field}' must be an object", GraphError)
        for key, value in (layer.get("attrs") or {}).items():
            _attr_values(value, f"{where}: attribute '{key}'", path)
        for pname, pshape in (layer.get("params") or {}).items():
            if not (isinstance(pshape, list) and all(isinstance(v, int) and v >= 0 for v in pshape)):
                _fail(path, f"{where}: parameter '{pname}' shape must be a list of integers", GraphError)
            declared[f"{name}/{pname}"] = tuple(pshape)
    if not isinstance(params, dict):
        _fail(path, f"params must be a dict of 'LAYER/PARAM' arrays, got {type(params).__name__}", GraphError)
    pre = graph.get("preprocess", {})
    if not isinstance(pre, dict):
        _fail(path, "graph 'preprocess' must be an object", GraphError)
    for key in ("mean", "std"):
        v = pre.get(key)
        if v is not None and not all(isinstance(t, (int, float)) for t in (v if isinstance(v, list) else [v])):
            _fail(path, f"preprocess '{key}' must be numbers, got {v!r}", GraphError)
    outputs = graph.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        _fail(path, "graph 'outputs' must be a list of layer names", GraphError)
    for key in sorted(declared):
        if key not in params:
            _fail(path, f"parameter '{key}' is declared but not stored")
        arr = params[key]
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
            _fail(path, f"parameter '{key}' must be a float array, got {getattr(arr, 'dtype', type(arr))}", ShapeError)
        if tuple(arr.shape) != declared[key]:
            _fail(path, f"parameter '{key}' has shape {tuple(arr.shape)}, declared {declared[key]}", ShapeError)
    names = {layer["name"] for layer in layers}
    for o in outputs:
        if o not in names:
            _fail(path, f"graph 'outputs': unknown layer {o!r}", GraphError)
    extra = sorted(set(params) - set(declared))
    if extra:
        _fail(path, f"stored arrays not declared by any layer: {extra[:5]}")


def _attr_values(value: Any, where: str, path: str | None) -> list[float]:
    """An attribute as a list of floats (bools 0/1, scalars as one-element lists)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool):
            out.append(1.0 if v else 0.0)
        elif isinstance(v, (int, float)) and np.isfinite(v):
            out.append(float(v))
        else:
            _fail(path, f"{where} must be a number, a bool or a list of numbers, got {value!r}", GraphError)
    return out


def core_layers(graph: dict, params: dict[str, np.ndarray]) -> list[dict]:
    """The layer list in the form the C++ engine takes."""
    out = []
    for layer in graph["layers"]:
        name = layer["name"]
        attrs = {k: _attr_values(v, f"layer '{name}': attribute '{k}'", None) for k, v in (layer.get("attrs") or {}).items()}
        lp = {p: np.ascontiguousarray(params[f"{name}/{p}"], dtype=np.float32) for p in (layer.get("params") or {})}
        out.append({"name": name, "kind": layer["kind"], "inputs": list(layer["inputs"]), "attrs": attrs, "params": lp})
    return out


def preprocess_of(graph: dict) -> dict:
    """The preprocessing metadata with every default filled in."""
    pre = dict(PREPROCESS_DEFAULTS)
    pre.update(graph.get("preprocess") or {})
    c, h, w = graph["input"]["shape"]
    pre.setdefault("size", [h, w])
    if pre.get("size") is None:
        pre["size"] = [h, w]
    for key, dflt in (("mean", 0.0), ("std", 1.0)):
        v = pre[key]
        v = [dflt] if v is None else [v] if isinstance(v, (int, float)) else list(v)
        pre[key] = [float(t) for t in v] * c if len(v) == 1 else [float(t) for t in v]
    if pre["channel_order"] not in ("RGB", "BGR", "L"):
        raise GraphError(f"preprocess 'channel_order' must be RGB, BGR or L, got {pre['channel_order']!r}")
    if len(pre["mean"]) != c or len(pre["std"]) != c or any(s == 0 for s in pre["std"]):
        raise GraphError(f"preprocess 'mean'/'std' need {c} values each (std non-zero)")
    return pre


def write_npz(path: str | os.PathLike, graph: dict, params: dict[str, np.ndarray], compress: bool = False) -> None:
    """Writes a model file atomically (a temporary file renamed into place)."""
    validate(graph, params, str(path))
    blob = np.frombuffer(json.dumps(graph, indent=1).encode("utf-8"), dtype=np.uint8)
    arrays = {GRAPH_MEMBER: blob}
    arrays.update({k: np.ascontiguousarray(v, dtype="<f4") for k, v in params.items()})
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare path
            (np.savez_compressed if compress else np.savez)(f, **arrays)

    write_via_temp(path, write)
