"""The model file: a NumPy ``.npz`` holding the JSON graph and the parameters (docs/FORMAT.md).

The format has one definition, in C++ (csrc/src/format/model.cpp): every model Python loads or
builds is read and validated there, through ``_core.load_model`` and ``_core.build_model``, the
same code a C++ application embedding pydeconv uses. This module only does what must happen in
Python: a graph dict becomes JSON text, parameters become float32 arrays, and files are written
(NumPy's ``savez``, atomically).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np

from . import _core
from .errors import GraphError, PydeconvError, ShapeError
from .fileio import write_via_temp

GRAPH_MEMBER = "__graph__"


def _fail(label: str, msg: str, cls: type[Exception]) -> None:
    raise cls(f"{label}: {msg}" if label else msg)


def _non_finite(value: Any, where: str) -> str | None:
    """Where a NaN or infinity sits in a graph dict (JSON cannot hold one), or None."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        items = [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        items = []
    for at, item in items:
        found = _non_finite(item, at)
        if found:
            return found
    return None


def _field_name(graph: Any, where: str) -> str:
    """A path such as ``layers[3].attrs.stride[0]`` named as the engine names fields:
    ``layer 'conv1' (conv2d): attribute 'stride'[0]``; other paths as ``graph field PATH``."""
    m = re.fullmatch(r"layers\[(\d+)\]\.(\w+)\.([^.\[]+)(.*)", where)
    layers = graph.get("layers") if isinstance(graph, dict) else None
    if m and isinstance(layers, list) and isinstance(layers[int(m[1])], dict):
        layer = layers[int(m[1])]
        field = {"attrs": "attribute", "params": "parameter"}.get(m[2], m[2])
        return f"layer {layer.get('name')!r} ({layer.get('kind')}): {field} {m[3]!r}{m[4]}"
    return f"graph field {where}"


def graph_text(graph: Any, label: str = "") -> str:
    """A graph dict as the JSON text the file stores (and the C++ reader validates)."""

    def plain(v: Any) -> Any:  # NumPy scalars and arrays from importers or user code
        if isinstance(v, (np.generic, np.ndarray)):
            return v.tolist()
        raise TypeError(type(v).__name__)

    try:
        return json.dumps(graph, indent=1, allow_nan=False, default=plain)
    except ValueError:
        _fail(
            label,
            f"{_field_name(graph, _non_finite(graph, '') or '')} holds NaN or infinity, "
            "which JSON cannot store",
            GraphError,
        )
    except TypeError as e:
        _fail(label, f"the graph holds a value JSON cannot store ({e})", GraphError)
    raise AssertionError  # unreachable: _fail raises


def core_params(params: Any, label: str = "") -> dict[str, np.ndarray]:
    """The parameters as C-contiguous float32 arrays (the C++ side checks names and shapes)."""
    if not isinstance(params, dict):
        _fail(
            label,
            f"params must be a dict of 'LAYER/PARAM' arrays, got {type(params).__name__}",
            PydeconvError,
        )
    out = {}
    for key, arr in params.items():
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
            dtype = getattr(arr, "dtype", type(arr).__name__)
            _fail(label, f"parameter '{key}' is {dtype}; model parameters are float32", ShapeError)
        out[str(key)] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def build_core(graph: Any, params: Any, label: str = "") -> tuple[Any, str, dict]:
    """(core net, graph text, preprocess with every default filled in), validated in C++."""
    return _core.build_model(graph_text(graph, label), core_params(params, label), label)


def load_core(path: str | os.PathLike) -> tuple[Any, str, dict]:
    """A model file read and validated by the C++ reader: (core net, graph text, preprocess)."""
    return _core.load_model(os.fspath(path))


def read_npz(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads a model file into (graph dict, params dict). Raises ModelFormatError & co."""
    core, text, _ = load_core(path)
    return json.loads(text), core.params()


def write_npz(
    path: str | os.PathLike, graph: dict, params: dict[str, np.ndarray], compress: bool = False
) -> None:
    """Validates (in C++, as a reader will) and writes a model file atomically."""
    label = os.fspath(path)
    _, text, _ = build_core(graph, params, label)
    write_text(path, text, core_params(params, label), compress)


def write_text(
    path: str | os.PathLike, text: str, params: dict[str, np.ndarray], compress: bool = False
) -> None:
    """Writes an already validated graph text and its parameters (a temporary file renamed)."""
    arrays = {GRAPH_MEMBER: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    arrays.update({k: np.ascontiguousarray(v, dtype="<f4") for k, v in params.items()})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare path
            # mypy matches **arrays against savez's keyword `allow_pickle: bool` too (NumPy 2.x
            # stubs), but the keys are GRAPH_MEMBER and "LAYER/PARAM" names, never "allow_pickle".
            # Passing allow_pickle explicitly is no way out: NumPy 1.x (we support >= 1.23) has no
            # such parameter and would store it as an array member.
            (np.savez_compressed if compress else np.savez)(f, **arrays)  # type: ignore[arg-type]

    write_via_temp(path, write)
