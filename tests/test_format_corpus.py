"""A shared corpus of good and bad model files: Python and C++ give the same answer.

The model format has one definition, the C++ reader (csrc/src/format/model.cpp), which Python's
pydeconv.load calls. This corpus pins each decision of docs/FORMAT.md (the former disagreements
between the two languages first) and checks, file by file, that Python accepts or refuses it with
the expected error class, that the same graph given as a dict to pydeconv.build gets the same
class, and, when the `modelcheck` tool (tests/cpp/tools/modelcheck.cpp) is found in the build
folder named by PYDECONV_CPP_TOOLS, that a C++ application gets the same answer, message and
filled-in preprocessing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import zipfile
from pathlib import Path

import models
import numpy as np
import pytest

import pydeconv
from pydeconv.errors import (
    ChannelError,
    GraphError,
    LayerNotFoundError,
    ModelFormatError,
    PydeconvError,
    ShapeError,
)

_TOOLS = os.environ.get("PYDECONV_CPP_TOOLS", "")
_MODELCHECK = Path(_TOOLS) / "modelcheck" if _TOOLS else None
_KINDS = {
    "format": ModelFormatError,
    "graph": GraphError,
    "shape": ShapeError,
    "not_found": LayerNotFoundError,
    "range": ChannelError,
    "value": PydeconvError,
}
OK = None


def _base():
    return models.zfnet_like(seed=3, size=37)


def _pre(**fields):
    return lambda g, p: g.__setitem__("preprocess", fields)


def _layer(name, **fields):
    def edit(g, p):
        next(layer for layer in g["layers"] if layer["name"] == name).update(fields)

    return edit


def _param(key, value):
    return lambda g, p: p.__setitem__(key, value) if value is not None else p.pop(key)


# (id, edit of (graph, params), expected class or OK, words the message must hold)
GRAPH_CASES = [
    ("plain", lambda g, p: None, OK, []),
    # The three disagreements of issue 12, decided once.
    ("channel-order-lower-case", _pre(channel_order="bgr"), GraphError, ["channel_order", "bgr"]),
    ("layer-extra-field", _layer("relu1", note="x"), GraphError, ["relu1", "note"]),
    ("two-means-three-channels", _pre(mean=[0.5, 0.5]), GraphError, ["mean", "2 values", "3"]),
    # Preprocessing.
    ("channel-order-bgr", _pre(channel_order="BGR"), OK, []),
    ("mean-one-value", _pre(mean=[0.5], std=0.25), OK, []),
    ("preprocess-nulls", _pre(mean=None, std=None, scale=None), OK, []),
    ("mean-strings", _pre(mean=["a", "b", "c"]), GraphError, ["mean"]),
    ("mean-bools", _pre(mean=[True, False, True]), GraphError, ["mean"]),
    ("mean-empty", _pre(mean=[]), GraphError, ["mean", "0 values"]),
    ("std-zero", _pre(std=[1.0, 0.0, 1.0]), GraphError, ["std", "non-zero"]),
    ("scale-string", _pre(scale="1/255"), GraphError, ["scale"]),
    ("size-not-the-input", _pre(size=[40, 40]), GraphError, ["size", "37x37"]),
    ("size-one-number", _pre(size=[37]), GraphError, ["size"]),
    ("source-layout", _pre(source_layout="HWC"), GraphError, ["source_layout"]),
    ("preprocess-unknown-key", _pre(meen=0.5), GraphError, ["preprocess", "meen"]),
    (
        "preprocess-not-object",
        lambda g, p: g.__setitem__("preprocess", [1]),
        GraphError,
        ["preprocess"],
    ),
    # The graph.
    ("graph-unknown-key", lambda g, p: g.__setitem__("output", ["prob"]), GraphError, ["'output'"]),
    (
        "input-unknown-key",
        lambda g, p: g["input"].__setitem__("layout", "NCHW"),
        GraphError,
        ["layout"],
    ),
    (
        "input-shape-zero",
        lambda g, p: g["input"].__setitem__("shape", [3, 0, 37]),
        ShapeError,
        ["shape"],
    ),
    ("labels-not-strings", lambda g, p: g.__setitem__("labels", [1, 2]), GraphError, ["labels"]),
    (
        "outputs-unknown",
        lambda g, p: g.__setitem__("outputs", ["fc9"]),
        GraphError,
        ["outputs", "fc9"],
    ),
    ("name-not-string", lambda g, p: g.__setitem__("name", 7), GraphError, ["name"]),
    ("unknown-kind", _layer("relu1", kind="no_such_kind"), GraphError, ["relu1", "no_such_kind"]),
    ("attr-null", _layer("lrn1", attrs={"alpha": None}), GraphError, ["lrn1", "alpha"]),
    # Parameters.
    ("param-missing", _param("conv1/bias", None), ModelFormatError, ["conv1/bias"]),
    (
        "param-extra",
        _param("conv1/extra", np.zeros(3, np.float32)),
        ModelFormatError,
        ["conv1/extra"],
    ),
    (
        "param-shape",
        _param("conv1/bias", np.zeros(7, np.float32)),
        ShapeError,
        ["conv1/bias", "(7,)"],
    ),
    (
        "param-rank-3",
        lambda g, p: (
            _layer("conv1", params={"weight": [8, 3, 49], "bias": [8]})(g, p),
            p.__setitem__("conv1/weight", np.zeros((8, 3, 49), np.float32)),
        ),
        ShapeError,
        ["conv1/weight", "3 dimensions"],
    ),
    (
        "metadata-object",
        lambda g, p: g.__setitem__("metadata", {"darknet": {"yolo": [{"mask": [0, 1]}]}}),
        OK,
        [],
    ),
    (
        "metadata-not-object",
        lambda g, p: g.__setitem__("metadata", ["yolo"]),
        GraphError,
        ["metadata", "must be an object"],
    ),
]


def _write(path: Path, graph, params, compress=False, text=None) -> Path:
    blob = (
        text
        if isinstance(text, bytes)
        else (text if text is not None else json.dumps(graph)).encode("utf-8")
    )
    (np.savez_compressed if compress else np.savez)(
        path, __graph__=np.frombuffer(blob, np.uint8), **params
    )
    return path


def _raw_cases(tmp: Path):
    """Files that cannot come from a graph dict: (id, path, expected class, words)."""
    graph, params = _base()
    out = []

    def case(name, expected, words, **kw):
        path = tmp / f"{name}.npz"
        out.append((name, _write(path, graph, kw.pop("params", params), **kw), expected, words))
        return path

    case("compressed", OK, [], compress=True)
    case("not-utf8", ModelFormatError, ["JSON", "byte 0xff"], text=b"\xff{}")
    case(
        "nan-in-preprocess",
        ModelFormatError,
        ["JSON", "'N'"],
        text=json.dumps(dict(graph, preprocess={"mean": [float("nan")] * 3})),
    )
    case("bad-json", ModelFormatError, ["__graph__", "JSON"], text='{"format": ')
    case("json-list", GraphError, ["JSON object"], text="[1, 2]")
    case(
        "float64-param",
        ShapeError,
        ["conv1/bias", "float64"],
        params=dict(params, **{"conv1/bias": params["conv1/bias"].astype(np.float64)}),
    )
    case(
        "int32-param",
        ShapeError,
        ["conv1/bias", "int32"],
        params=dict(params, **{"conv1/bias": params["conv1/bias"].astype(np.int32)}),
    )
    good = case("truncated", ModelFormatError, [])
    good.write_bytes(good.read_bytes()[:-100])
    crc = case("corrupt", ModelFormatError, ["CRC-32"])
    data = bytearray(crc.read_bytes())
    with zipfile.ZipFile(crc) as z:
        info = z.getinfo("conv1/bias.npy")
    data[info.header_offset + 30 + len(info.filename) + 20 + info.file_size - 1] ^= 0xFF
    crc.write_bytes(bytes(data))
    no_graph = tmp / "no-graph.npz"
    np.savez(no_graph, **params)
    out.append(("no-graph", no_graph, ModelFormatError, ["__graph__"]))
    int8 = tmp / "graph-int8.npz"
    np.savez(int8, __graph__=np.frombuffer(json.dumps(graph).encode(), np.int8), **params)
    out.append(("graph-int8", int8, ModelFormatError, ["__graph__"]))
    text = tmp / "not-a-zip.npz"
    text.write_text("not a model")
    out.append(("not-a-zip", text, ModelFormatError, []))
    out.append(("missing-file", tmp / "nothere.npz", ModelFormatError, ["nothere.npz"]))
    return out


def _python(path: Path):
    try:
        net = pydeconv.load(path)
    except PydeconvError as e:
        return type(e), str(e), None
    return OK, "", net.preprocess


def _cpp(path: Path):
    result = subprocess.run(
        [str(_MODELCHECK), str(path)], capture_output=True, text=True, timeout=60, errors="replace"
    )
    lines = result.stdout.splitlines()
    if result.returncode == 0:
        fields = dict(line.split("\t", 1) for line in lines[1:])
        return OK, "", fields
    assert result.returncode == 1 and lines and lines[0].startswith("error\t"), result
    _, kind, message = "\n".join(lines).split("\t", 2)
    return _KINDS[kind], message, None


def _same_preprocess(py: dict, cpp: dict) -> None:
    assert cpp["channel_order"] == py["channel_order"]
    assert float(cpp["scale"]) == py["scale"]
    assert [float(v) for v in cpp["mean"].split(",")] == py["mean"]
    assert [float(v) for v in cpp["std"].split(",")] == py["std"]
    assert [int(v) for v in cpp["size"].split(",")] == list(py["size"])
    assert cpp["source_layout"] == py["source_layout"]


def _check(path: Path, expected, words) -> None:
    cls, message, pre = _python(path)
    assert cls is expected, f"{path.name}: Python gave {cls} ({message})"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    if expected is not OK:
        assert str(path) in message
    if _MODELCHECK is not None and _MODELCHECK.is_file():
        cpp_cls, cpp_message, cpp_pre = _cpp(path)
        assert cpp_cls is cls, f"{path.name}: C++ gave {cpp_cls} ({cpp_message}), Python {cls}"
        assert cpp_message == message
        if pre is not None:
            _same_preprocess(pre, cpp_pre)


@pytest.mark.parametrize(
    "edit,expected,words", [c[1:] for c in GRAPH_CASES], ids=[c[0] for c in GRAPH_CASES]
)
def test_graph_corpus(tmp_path, edit, expected, words):
    graph, params = _base()
    graph, params = copy.deepcopy(graph), dict(params)
    edit(graph, params)
    _check(_write(tmp_path / "m.npz", graph, params), expected, words)
    # The same graph as a dict (pydeconv.build, the ONNX importer's road) gets the same answer.
    try:
        pydeconv.build(graph, params)
    except PydeconvError as e:
        assert type(e) is expected, str(e)
    else:
        assert expected is OK


def test_file_corpus(tmp_path):
    for name, path, expected, words in _raw_cases(tmp_path):
        try:
            _check(path, expected, words)
        except AssertionError as e:
            raise AssertionError(f"case {name}: {e}") from None


def test_filled_in_preprocess():
    """The defaults live in C++ (docs/FORMAT.md): Python reads the filled-in answer."""
    graph, params = _base()
    graph = dict(graph)
    graph.pop("preprocess", None)
    pre = pydeconv.build(graph, params).preprocess
    assert pre == {
        "size": [37, 37],
        "channel_order": "RGB",
        "scale": 1 / 255,
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
        "source_layout": "NCHW",
    }
    graph["preprocess"] = {"mean": 0.5, "std": [0.25]}
    pre = pydeconv.build(graph, params).preprocess
    assert pre["mean"] == [0.5] * 3 and pre["std"] == [0.25] * 3
    grey = models.single_layer("relu", (1, 4, 4))
    assert pydeconv.build(*grey).preprocess["channel_order"] == "L"


def test_a_graph_dict_with_nan_names_the_field():
    graph, params = _base()
    graph = dict(graph, preprocess={"mean": [0.0, float("nan"), 0.0]})
    with pytest.raises(GraphError, match=r"preprocess\.mean\[1\] holds NaN"):
        pydeconv.build(graph, params)
