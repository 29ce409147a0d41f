"""Every error path a user can reach: bad model files, bad graphs, bad arguments to forward/project.

Each must raise the right pydeconv.errors class (all ValueError subclasses, never a bare KeyError,
TypeError, AttributeError or struct.error) with a message that names the file, the layer and the
field, and must be raised before anything is written.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os

import models
import numpy as np
import pytest
from onnx_writer import OnnxBuilder

import pydeconv
from pydeconv.errors import (
    ChannelError,
    GraphError,
    LayerNotFoundError,
    ModelFormatError,
    PydeconvError,
    ShapeError,
    UnsupportedOperatorError,
)


@contextlib.contextmanager
def expect(cls, *parts):
    """pytest.raises(cls) that also checks the error is a ValueError whose message names every one
    of ``parts``."""
    with pytest.raises(cls) as info:
        yield info
    err = info.value
    assert isinstance(err, ValueError), f"{type(err).__name__} is not a ValueError"
    for part in parts:
        assert str(part) in str(err), f"{part!r} not named in: {err}"


def write_raw(path, graph, params, graph_bytes=None):
    """A model file written with NumPy directly, so that invalid graphs can be stored."""
    blob = graph_bytes if graph_bytes is not None else json.dumps(graph).encode("utf-8")
    np.savez(path, __graph__=np.frombuffer(blob, dtype=np.uint8), **params)
    return str(path)


@pytest.fixture(scope="module")
def zf():
    graph, params = models.zfnet_like()
    return graph, params, pydeconv.build(graph, params)


@pytest.fixture(scope="module")
def traced(zf):
    _, _, net = zf
    x = models.random_input((2,) + net.input_shape, 5)
    _, trace = net.forward(x)
    return net, x, trace


# -- the container -------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with expect(ModelFormatError, tmp_path / "nothere.npz"):
        pydeconv.load(tmp_path / "nothere.npz")


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello, not a model")
    with expect(ModelFormatError, path):
        pydeconv.load(path)


def test_zip_without_graph(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weights=np.zeros(3, np.float32))
    with expect(ModelFormatError, path, "__graph__"):
        pydeconv.load(path)


@pytest.mark.parametrize(
    "blob,dtype",
    [
        (b"{not json", np.uint8),
        (b"\xff\xfe\x00", np.uint8),
        (b'{"format": "pydeconv"}', np.int8),
        (b"[1, 2]", np.uint8),
    ],
    ids=["not-json", "not-utf8", "int8", "json-list"],
)
def test_graph_member_not_json_or_wrong_dtype(tmp_path, blob, dtype):
    path = tmp_path / "bad.npz"
    np.savez(path, __graph__=np.frombuffer(blob, dtype=dtype))
    with expect(PydeconvError, path) as info:
        pydeconv.load(path)
    assert isinstance(info.value, (ModelFormatError, GraphError))


def test_graph_member_two_dimensional(tmp_path, zf):
    graph, params, _ = zf
    path = tmp_path / "g2d.npz"
    blob = np.frombuffer(json.dumps(graph).encode(), np.uint8).reshape(1, -1)
    np.savez(path, __graph__=blob, **params)
    with expect(ModelFormatError, path, "__graph__"):
        pydeconv.load(path)


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
def test_truncated_file_always_a_pydeconv_error(tmp_path, zf, compress):
    """Cut at ~300 offsets, including every byte of the end-of-central-directory record."""
    _, _, net = zf
    good = tmp_path / "good.npz"
    net.save(good, compress=compress)
    data = good.read_bytes()
    path = tmp_path / "cut.npz"
    cuts = sorted(
        set(range(0, len(data), max(1, len(data) // 250))) | set(range(len(data) - 60, len(data)))
    )
    for cut in cuts:
        path.write_bytes(data[:cut])
        try:
            pydeconv.load(path)
        except ModelFormatError as e:
            assert str(path) in str(e), f"cut at {cut}: {e}"
        else:
            pytest.fail(f"a file cut at byte {cut} of {len(data)} loaded")


def test_pickled_arrays_are_refused(tmp_path, zf):
    graph, params, _ = zf
    path = tmp_path / "pickled.npz"
    bad = dict(params, **{"conv1/bias": np.array([{"x": 1}] * 8, dtype=object)})
    write_raw(path, graph, bad)
    with expect(ModelFormatError, path, "conv1/bias"):
        pydeconv.load(path)


def test_pickled_graph_member_is_refused(tmp_path, zf):
    graph, params, _ = zf
    path = tmp_path / "pickled_graph.npz"
    np.savez(path, __graph__=np.array([graph], dtype=object), **params)
    with expect(ModelFormatError, path, "__graph__"):
        pydeconv.load(path)


# -- the graph, stored in a file -----------------------------------------------------------------
def _layer(graph, name):
    return next(layer for layer in graph["layers"] if layer["name"] == name)


def _set(layer, /, **fields):
    return lambda g, p: _layer(g, layer).update(fields)


def _attr(layer, /, **attrs):
    return lambda g, p: _layer(g, layer)["attrs"].update(attrs)


def _array(key, value):
    return lambda g, p: p.__setitem__(key, value)


def _both(*edits):
    def apply(g, p):
        for edit in edits:
            edit(g, p)

    return apply


GRAPH_CASES = [
    ("unknown-kind", _set("relu1", kind="no_such_kind"), GraphError, ["relu1", "no_such_kind"]),
    ("cycle", _set("conv1", inputs=["relu1"]), GraphError, ["cycle", "conv1"]),
    ("dangling-input", _set("relu1", inputs=["conv9"]), GraphError, ["relu1", "conv9"]),
    ("duplicate-name", _set("relu2", name="relu1"), GraphError, ["duplicate", "relu1"]),
    ("empty-name", _set("relu2", name=""), GraphError, ["name"]),
    ("slash-in-name", _set("relu6", name="fc/relu"), GraphError, ["fc/relu", "/"]),
    ("name-of-input", _set("relu1", name="input"), GraphError, ["input"]),
    ("unknown-layer-field", _set("relu1", weights=[1]), GraphError, ["relu1", "weights"]),
    ("inputs-not-list", _set("relu1", inputs="conv1"), GraphError, ["inputs"]),
    ("relu-two-inputs", _set("relu1", inputs=["conv1", "conv1"]), GraphError, ["relu1", "input"]),
    ("add-one-input", _set("relu1", kind="add"), GraphError, ["relu1", "input"]),
    ("negative-stride", _attr("conv1", stride=[-2, 2]), GraphError, ["conv1", "stride"]),
    ("zero-stride", _attr("pool1", stride=[0, 2]), GraphError, ["pool1", "stride"]),
    ("stride-count", _attr("conv1", stride=[2, 2, 2]), GraphError, ["conv1", "stride"]),
    ("stride-string", _attr("conv1", stride="2"), GraphError, ["conv1", "stride"]),
    ("stride-strings", _attr("conv1", stride=["2", "2"]), GraphError, ["conv1", "stride"]),
    ("stride-fraction", _attr("conv1", stride=[1.5, 2]), GraphError, ["conv1", "stride"]),
    ("padding-count", _attr("conv1", padding=[1, 1, 1]), GraphError, ["conv1", "padding"]),
    ("groups-not-dividing", _attr("conv3", groups=3), GraphError, ["conv3", "groups"]),
    ("alpha-null", _attr("lrn1", alpha=None), GraphError, ["lrn1", "alpha"]),
    ("alpha-object", _attr("lrn1", alpha={"v": 1}), GraphError, ["lrn1", "alpha"]),
    ("unknown-attribute", _attr("conv1", bias_term=1), GraphError, ["conv1", "bias_term"]),
    (
        "pool-without-kernel",
        lambda g, p: _layer(g, "pool1")["attrs"].pop("kernel_size"),
        GraphError,
        ["pool1", "kernel_size"],
    ),
    ("window-too-big", _attr("pool1", kernel_size=[100, 3]), GraphError, ["pool1"]),
    ("attrs-not-object", _set("lrn1", attrs=[3, 0.5]), GraphError, ["lrn1", "attrs"]),
    ("params-not-object", _set("conv1", params=[[8, 3, 7, 7]]), GraphError, ["conv1", "params"]),
    (
        "stored-shape-differs",
        _array("conv1/weight", np.zeros((8, 3, 5, 7), np.float32)),
        ShapeError,
        ["conv1/weight", "(8, 3, 5, 7)", "(8, 3, 7, 7)"],
    ),
    (
        "declared-shape-differs",
        lambda g, p: _layer(g, "fc6")["params"].update(weight=[20, 63]),
        ShapeError,
        ["fc6/weight", "(20, 63)"],
    ),
    (
        "declared-shape-wrong-for-layer",
        _both(
            lambda g, p: _layer(g, "conv2")["params"].update(weight=[12, 5, 5, 5]),
            _array("conv2/weight", np.zeros((12, 5, 5, 5), np.float32)),
        ),
        GraphError,
        ["conv2", "weight"],
    ),
    ("missing-parameter", lambda g, p: p.pop("conv1/bias"), ModelFormatError, ["conv1/bias"]),
    (
        "extra-array",
        _array("conv1/extra", np.zeros(3, np.float32)),
        ModelFormatError,
        ["conv1/extra"],
    ),
    (
        "integer-parameter",
        _array("fc7/bias", np.zeros(10, np.int32)),
        ShapeError,
        ["fc7/bias", "int32"],
    ),
    (
        "conv-without-weight",
        _both(
            lambda g, p: _layer(g, "conv1")["params"].pop("weight"),
            lambda g, p: p.pop("conv1/weight"),
        ),
        GraphError,
        ["conv1", "weight"],
    ),
    (
        "parameter-on-relu",
        _both(_set("relu1", params={"slope": [1]}), _array("relu1/slope", np.ones(1, np.float32))),
        GraphError,
        ["relu1", "slope"],
    ),
    (
        "unknown-output",
        lambda g, p: g.update(outputs=["fc9"]),
        (GraphError, LayerNotFoundError),
        ["outputs", "fc9"],
    ),
    ("outputs-not-list", lambda g, p: g.update(outputs="prob"), GraphError, ["outputs"]),
    ("wrong-format", lambda g, p: g.update(format="caffe"), GraphError, ["format"]),
    ("wrong-version", lambda g, p: g.update(version=2), GraphError, ["version"]),
    ("input-shape", lambda g, p: g["input"].update(shape=[3, 37]), ShapeError, ["input", "shape"]),
    ("no-layers", lambda g, p: g.update(layers=[]), GraphError, ["layers"]),
    (
        "preprocess-mean-strings",
        lambda g, p: g.update(preprocess={"mean": ["a", "b", "c"]}),
        GraphError,
        ["preprocess", "mean"],
    ),
    (
        "preprocess-not-object",
        lambda g, p: g.update(preprocess=[0.5, 0.5]),
        GraphError,
        ["preprocess"],
    ),
    (
        "preprocess-channel-order",
        lambda g, p: g.update(preprocess={"channel_order": "RGBA"}),
        GraphError,
        ["channel_order"],
    ),
]


@pytest.mark.parametrize(
    "edit,cls,parts", [c[1:] for c in GRAPH_CASES], ids=[c[0] for c in GRAPH_CASES]
)
def test_bad_graph_in_a_file(tmp_path, zf, edit, cls, parts):
    graph, params, _ = zf
    graph, params = copy.deepcopy(graph), dict(params)
    edit(graph, params)
    path = write_raw(tmp_path / "bad.npz", graph, params)
    with expect(cls, path, *parts):
        pydeconv.load(path)
    with expect(cls, *parts):  # and the same without a file
        pydeconv.build(graph, params)


def test_build_with_params_not_a_dict(zf):
    graph, _, _ = zf
    with expect(PydeconvError, "params"):
        pydeconv.build(graph, None)


# -- forward -------------------------------------------------------------------------------------
def test_forward_bad_inputs(traced):
    net, x, _ = traced
    with expect(ShapeError, "(N, 3, 37, 37)", "(2, 2, 37, 37)"):
        net.forward(x[:, :2])
    with expect(ShapeError, "(3, 37, 37)"):
        net.forward(x[0])
    with expect(ShapeError, "(0, 3, 37, 37)"):
        net.forward(x[:0])
    with expect(ShapeError, "int32"):
        net.forward(x.astype(np.int32))
    with expect(ShapeError, "complex64"):
        net.forward(x.astype(np.complex64))
    with expect(ShapeError, "list"):
        net.forward(x.tolist())
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 2, 3, 4] = bad
        with expect(ShapeError, "NaN"):
            net.forward(y)


def test_forward_bad_options(traced):
    net, x, _ = traced
    with expect(LayerNotFoundError, "conv9"):
        net.forward(x, upto="conv9")
    with expect(LayerNotFoundError, "3"):
        net.forward(x, upto=3)
    with expect(PydeconvError, "keep", "some"):
        net.forward(x, keep="some")
    for bad in (0, -1, 1.5, "2"):
        with expect(PydeconvError, "threads", repr(bad)):
            net.forward(x, threads=bad)


def test_set_num_threads_rejects_non_positive():
    before = pydeconv.get_num_threads()
    for bad in (0, -2, 2.0, None):
        with expect(PydeconvError, "threads", repr(bad)):
            pydeconv.set_num_threads(bad)
    assert pydeconv.get_num_threads() == before


# -- the trace -----------------------------------------------------------------------------------
def test_trace_unknown_layers(traced):
    _, _, trace = traced
    with expect(LayerNotFoundError, "conv9"):
        trace.activation("conv9")
    with expect(LayerNotFoundError, "pool9"):
        trace.switches("pool9")
    with expect(LayerNotFoundError, "3"):
        trace.activation(3)
    with expect(LayerNotFoundError, "None"):
        trace.switches(None)


def test_switches_of_a_layer_that_is_not_a_max_pool(traced):
    _, _, trace = traced
    for layer, kind in (("conv1", "conv2d"), ("relu1", "relu"), ("fc6", "linear")):
        with expect(PydeconvError, layer, kind, "max_pool2d"):
            trace.switches(layer)


def test_keep_minimal_then_asking_for_a_dropped_activation(traced):
    net, x, _ = traced
    _, minimal = net.forward(x, keep="minimal")
    with expect(PydeconvError, "conv2", "keep='all'"):
        minimal.activation("conv2")
    with expect(PydeconvError, "conv2", "keep='all'"):
        net.project(minimal, "conv2", channel=0, at="max")


def test_layers_beyond_upto(traced):
    net, x, _ = traced
    _, partial = net.forward(x, upto="conv2")
    with expect(PydeconvError, "conv3", "upto"):
        partial.activation("conv3")
    with expect(PydeconvError, "pool2", "upto"):
        partial.switches("pool2")
    for at in ("max", "map", (0, 0)):
        with expect(PydeconvError, "conv3", "upto"):
            net.project(partial, "conv3", channel=0, at=at)
    start = np.ones((2,) + tuple(net.layer_info("fc6")["shape"]), np.float32)
    with expect(PydeconvError, "fc6", "upto"):
        net.project(partial, "fc6", at=start)


# -- project -------------------------------------------------------------------------------------
def test_project_unknown_layer_and_rule(traced):
    net, _, trace = traced
    with expect(LayerNotFoundError, "conv9"):
        net.project(trace, "conv9", channel=0)
    with expect(PydeconvError, "lrp", "deconvnet"):
        net.project(trace, "conv2", channel=0, rule="lrp")


@pytest.mark.parametrize(
    "channel,parts",
    [
        (12, ["12", "out of range", "12 channels"]),
        (-1, ["-1", "out of range"]),
        ([0, 99], ["99", "out of range"]),
        ("1", ["'1'", "not an integer"]),
        (1.0, ["1.0", "not an integer"]),
        ([0, 2.5], ["2.5", "not an integer"]),
        (True, ["True", "not an integer"]),
        ([], ["empty"]),
        (None, ["channel"]),
    ],
    ids=[
        "too-big",
        "negative",
        "one-of-list",
        "string",
        "float",
        "float-in-list",
        "bool",
        "empty",
        "none",
    ],
)
def test_project_bad_channels(traced, channel, parts):
    net, _, trace = traced
    with expect(ChannelError, "conv2", *parts):
        net.project(trace, "conv2", channel=channel, at="max")


@pytest.mark.parametrize("at", [(5, 0), (0, 4), (-1, 0), (0, -1), (100, 100)])
def test_project_position_outside_the_map(traced, at):
    net, _, trace = traced
    with expect(ChannelError, "conv2", str(at), "5x4"):
        net.project(trace, "conv2", channel=0, at=at)


@pytest.mark.parametrize(
    "at",
    [
        "min",
        "",
        None,
        (1, 1, 1),
        (1,),
        (1.5, 0),
        (0, 2.5),
        (float("nan"), 0),
        {"y": 1, "x": 1},
        ("a", "b"),
    ],
    ids=[
        "min",
        "empty",
        "none",
        "three",
        "one",
        "fraction-y",
        "fraction-x",
        "nan",
        "dict",
        "strings",
    ],
)
def test_project_bad_at(traced, at):
    net, _, trace = traced
    with expect(PydeconvError, "at"):
        net.project(trace, "conv2", channel=0, at=at)


def test_project_start_array_of_the_wrong_shape(traced):
    net, _, trace = traced
    want = "(2, 12, 5, 4)"
    for bad in (
        np.zeros((2, 12, 5, 5), np.float32),
        np.zeros((1, 12, 5, 4), np.float32),
        np.zeros((12, 5, 4), np.float32),
        np.zeros((2, 12, 5, 4), np.int32),
    ):
        with expect(ShapeError, "conv2", want):
            net.project(trace, "conv2", at=bad)


def test_project_trace_from_another_net(zf, traced):
    graph, params, _ = zf
    net, x, trace = traced
    other = pydeconv.build(graph, params)
    _, other_trace = other.forward(x)
    with expect(PydeconvError, "trace"):
        net.project(other_trace, "conv2", channel=0)
    for bad in (None, trace._core, "trace"):
        with expect(PydeconvError, "trace"):
            net.project(bad, "conv2", channel=0)


def test_project_threads_zero(traced):
    net, _, trace = traced
    with expect(PydeconvError, "threads", "0"):
        net.project(trace, "conv2", channel=0, threads=0)


# -- ONNX files and convert: errors come before anything is written ------------------------------
def _onnx_with_unsupported_op(path):
    rng = np.random.default_rng(2)
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 6, 6])
    t = b.node(
        "Conv",
        [x, b.init("w", rng.standard_normal((2, 2, 3, 3)).astype(np.float32))],
        kernel_shape=[3, 3],
    )
    b.output(b.node("Sin", [t], name="squash", outputs=["y"]))
    return b.save(str(path))


def test_garbage_onnx(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "garbage.onnx"
    for data in (
        b"",
        b"\x08\x07garbage\xff\xff\xff",
        rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
    ):
        path.write_bytes(data)
        with expect(ModelFormatError, "garbage.onnx"):
            pydeconv.load(path)
    with expect(ModelFormatError, "nothere.onnx"):
        pydeconv.load(tmp_path / "nothere.onnx")


def test_convert_writes_nothing_when_the_source_is_bad(tmp_path, zf):
    _, _, net = zf
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage\xff\xff\xff")
    unsupported = _onnx_with_unsupported_op(tmp_path / "sin.onnx")
    broken_npz = tmp_path / "broken.npz"
    broken_npz.write_bytes(b"PK\x03\x04" + b"\x00" * 10)
    sources = [
        (garbage, ModelFormatError, ["garbage.onnx"]),
        (unsupported, UnsupportedOperatorError, ["sin.onnx", "Sin"]),
        (broken_npz, ModelFormatError, [broken_npz]),
    ]
    for src, cls, parts in sources:
        with expect(cls, *parts):
            pydeconv.convert(src, tmp_path / "new.npz")
        assert not (tmp_path / "new.npz").exists()
    # An existing destination is left exactly as it was.
    existing = tmp_path / "existing.npz"
    net.save(existing)
    before = existing.read_bytes()
    for src, cls, parts in sources:
        with expect(cls, *parts):
            pydeconv.convert(src, existing)
    assert existing.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [
        "broken.npz",
        "existing.npz",
        "garbage.onnx",
        "sin.onnx",
    ]
