"""Resource limits (pydeconv.Limits, issue 13 section 3): every escape the issue lists, made here
as a tiny file, is refused with a pydeconv.errors exception naming the field and the limit, before
anything is allocated from the declaration (checked in a child process under a memory cap)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import models
import numpy as np
import pytest
from onnx_writer import OnnxBuilder, f_bytes, f_str, f_varint, f_varints
from PIL import Image

import pydeconv
from pydeconv import image as pimg
from pydeconv.cli import main
from pydeconv.errors import GraphError, ImageError, ModelFormatError, PydeconvError, ShapeError
from pydeconv.model import write_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_limits():
    saved = pydeconv.get_limits()
    yield
    pydeconv.set_limits(saved)


def _model_file(path, edit=None, text=None):
    """A tiny model's file with its JSON graph edited (or replaced), written without validation."""
    graph, params = models.zfnet_like(seed=0, size=37)
    if edit:
        edit(graph)
    write_text(path, text if text is not None else json.dumps(graph), params)
    return path


def _npz(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _refused_under_a_memory_cap(path, loader="pydeconv.load", cap_mib=1024):
    """Loads ``path`` in a child process limited to ``cap_mib`` of address space; returns
    (exception class name, message, peak RSS growth in MiB)."""
    code = textwrap.dedent(f"""
        import resource, sys
        import pydeconv, pydeconv.image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        resource.setrlimit(resource.RLIMIT_AS, ({cap_mib} << 20, {cap_mib} << 20))
        try:
            {loader}({str(path)!r})
            print("accepted")
        except Exception as e:
            print(type(e).__module__ + "." + type(e).__name__)
            print(str(e))
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(grown // 1024)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # PYTHONPATH: tests/conftest.py
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and len(lines) == 3, out.stdout + out.stderr
    return lines[0], lines[1], int(lines[2])


# --- the defaults, and setting them ---------------------------------------------------------------


def test_defaults_come_from_cpp_and_can_be_changed(restore_limits):
    lim = pydeconv.get_limits()
    assert lim == pydeconv.Limits()
    assert (
        lim.max_tensor_bytes,
        lim.max_dim,
        lim.max_input_pixels,
        lim.max_image_pixels,
        lim.max_threads,
        lim.max_json_depth,
        lim.max_layers,
        lim.max_members,
        lim.max_graph_bytes,
    ) == (2**32, 2**20, 2**26, 2**27, 1024, 64, 2**16, 2**18, 2**26)
    old = pydeconv.set_limits(max_threads=8, max_dim=4096)
    assert old == lim
    assert pydeconv.get_limits().max_threads == 8 and pydeconv.get_limits().max_dim == 4096
    pydeconv.set_limits(old)
    assert pydeconv.get_limits() == lim
    assert "max_threads=1024" in repr(lim)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"max_threads": 0}, ["max_threads", "positive"]),
        ({"max_dim": -1}, ["max_dim", "positive"]),
        ({"max_dim": "big"}, ["max_dim"]),
        ({"max_dim": 2**70}, ["max_dim"]),
        ({"max_json_depth": 100_000}, ["max_json_depth", "1000"]),
        ({"max_pixels": 5}, ["unknown limit", "max_pixels"]),
    ],
)
def test_bad_limits_are_refused(restore_limits, change, words):
    before = pydeconv.get_limits()
    with pytest.raises(PydeconvError) as e:
        pydeconv.set_limits(**change)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert pydeconv.get_limits() == before


# --- model files: declarations refused before allocation ------------------------------------------


@pytest.mark.parametrize(
    "shape, words",
    [
        ([10**9, 32, 32], ["input 'shape'", "1000000000", "max_dim = 1048576"]),
        ([10**8, 32, 32], ["input 'shape'", "100000000", "max_dim"]),
        ([3, 20000, 20000], ["input 'shape'", "20000x20000", "max_input_pixels"]),
        ([3, 100000, 100000], ["input 'shape'", "100000x100000", "max_input_pixels"]),
        ([3, 16384, 8192], ["input 'shape'", "max_input_pixels"]),
        ([2048, 8192, 128], ["input 'shape'", "max_tensor_bytes"]),
    ],
)
def test_a_huge_declared_input_is_refused_without_allocating(tmp_path, shape, words):
    def edit(g):
        g["input"]["shape"] = shape
        g["preprocess"] = {"size": shape[1:]}

    path = _model_file(tmp_path / "huge.npz", edit)
    assert path.stat().st_size < 100_000
    cls, msg, grown = _refused_under_a_memory_cap(path)
    assert cls == "pydeconv.errors.ShapeError", msg
    assert str(path) in msg and all(w in msg for w in words), msg
    assert grown < 64, f"{grown} MiB allocated before refusing"


def test_a_preprocess_size_past_the_limits_is_named(tmp_path):
    path = _model_file(
        tmp_path / "m.npz", lambda g: g.__setitem__("preprocess", {"size": [100000, 100000]})
    )
    with pytest.raises(ShapeError, match=r"preprocess 'size' \[100000,100000\].*max_input_pixels"):
        pydeconv.load(path)


def test_an_npy_header_declaring_250e9_floats_is_refused(tmp_path):
    npy = _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (250000000000,), }", b"\0" * 64)
    path = _npz(
        tmp_path / "m.npz",
        {
            "__graph__.npy": _npy(
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", b"{}"
            ),
            "conv1/weight.npy": npy,
        },
    )
    cls, msg, grown = _refused_under_a_memory_cap(path)
    assert cls == "pydeconv.errors.ModelFormatError"
    assert (
        "conv1/weight.npy" in msg and "1000000000000 bytes" in msg and "max_tensor_bytes" in msg
    ), msg
    assert grown < 64


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, ",  # unclosed: TokenError once
        "{'descr': '<f4, 'fortran_order': False, 'shape': (3,), }",  # unclosed string
        "not a dict at all",
    ],
)
def test_corrupt_npy_headers_are_format_errors(tmp_path, header):
    path = _model_file(tmp_path / "m.npz")
    members = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            members[name] = z.read(name)
    members["conv1/bias.npy"] = _npy(header, b"\0" * 12)
    _npz(path, members)
    with pytest.raises(ModelFormatError, match="conv1/bias.npy"):
        pydeconv.load(path)


def test_a_member_with_a_bad_magic_is_a_format_error(tmp_path):
    path = _model_file(tmp_path / "m.npz")
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["conv1/bias.npy"] = b"\x93NUMPX" + members["conv1/bias.npy"][6:]  # AttributeError once
    with pytest.raises(ModelFormatError, match="conv1/bias.npy.*magic"):
        pydeconv.load(_npz(path, members))


def test_json_nested_100000_deep_is_refused(tmp_path):
    path = _model_file(
        tmp_path / "deep.npz",
        text='{"format": "pydeconv", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    )
    with pytest.raises(ModelFormatError, match="nesting deeper than max_json_depth = 64"):
        pydeconv.load(path)


def test_json_depth_follows_the_limit(tmp_path, restore_limits):
    pydeconv.set_limits(max_json_depth=2)  # the graph nests 4 deep (layers[].attrs.kernel_size[])
    with pytest.raises(ModelFormatError, match="max_json_depth = 2"):
        pydeconv.load(_model_file(tmp_path / "m.npz"))


@pytest.mark.parametrize(
    "limit, value, words, in_dicts_too",
    [
        ("max_layers", 3, ["'layers' has", "max_layers = 3"], True),
        ("max_graph_bytes", 100, ["graph text", "max_graph_bytes = 100"], True),
        ("max_members", 2, ["members", "max_members = 2"], False),  # a .npz archive's own limit
        ("max_dim", 16, ["parameter '", "max_dim = 16"], True),
        ("max_tensor_bytes", 40_000, ["max_tensor_bytes = 40000"], True),
    ],
)
def test_every_model_limit_is_adjustable_and_named(
    tmp_path, restore_limits, limit, value, words, in_dicts_too
):
    path = _model_file(tmp_path / "m.npz")
    pydeconv.load(path)
    pydeconv.set_limits(**{limit: value})
    with pytest.raises(PydeconvError) as e:
        pydeconv.load(path)
    assert all(w in str(e.value) for w in words), str(e.value)
    if in_dicts_too:  # a graph given as a dict goes through the same checks
        with pytest.raises(PydeconvError) as e:
            pydeconv.build(*models.zfnet_like(seed=0, size=37))
        assert f"{limit} = {value}" in str(e.value), str(e.value)


def test_activations_past_the_limit_name_the_layer(restore_limits):
    graph, params = models.single_layer(
        "max_pool2d", (3, 8, 8), {"kernel_size": [2, 2], "stride": [2, 2]}
    )
    pydeconv.set_limits(max_tensor_bytes=4 * (3 * 8 * 8 + 3 * 4 * 4))
    pydeconv.build(graph, params)  # the input and one output: exactly at the limit
    pydeconv.set_limits(max_tensor_bytes=4 * (3 * 8 * 8 + 3 * 4 * 4) - 1)
    with pytest.raises(
        ShapeError,
        match=r"layer 'max_pool2d' \(max_pool2d\): output shape .*activations of one "
        r"image past max_tensor_bytes = 959",
    ):
        pydeconv.build(graph, params)


# --- threads ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    return pydeconv.build(*models.zfnet_like(seed=0, size=37))


@pytest.mark.parametrize("threads", [2**40, 2**70, 100_000, 1025])
def test_thread_counts_past_the_limit_are_refused(net, threads):
    x = np.zeros((1,) + net.input_shape, np.float32)
    with pytest.raises(PydeconvError, match=rf"threads = {threads} is past max_threads = 1024"):
        net.forward(x, threads=threads)
    _, trace = net.forward(x)
    with pytest.raises(PydeconvError, match="max_threads"):
        net.project(trace, net.layers[0], 0, threads=threads)


def test_set_num_threads_past_the_limit_is_refused(net):
    old = pydeconv.get_num_threads()
    with pytest.raises(PydeconvError, match="threads = 100000 is past max_threads"):
        pydeconv.set_num_threads(10**5)
    assert pydeconv.get_num_threads() == old


def test_the_thread_limit_is_adjustable(net, restore_limits):
    x = np.zeros((1,) + net.input_shape, np.float32)
    pydeconv.set_limits(max_threads=2)
    net.forward(x, threads=2)
    with pytest.raises(PydeconvError, match="max_threads = 2"):
        net.forward(x, threads=3)


def test_cli_threads_100000_is_one_line(tmp_path, capsys):
    graph, params = models.zfnet_like(seed=0, size=37)
    pydeconv.build(graph, params).save(tmp_path / "m.npz")
    Image.new("RGB", (40, 40)).save(tmp_path / "i.png")
    threads = pydeconv.get_num_threads()  # --threads sets the process's default
    args = ["project", str(tmp_path / "m.npz"), str(tmp_path / "i.png"), "--threads", "100000"]
    args += ["--layer", "conv1", "--channel", "0", "-o", str(tmp_path / "o.png")]
    try:
        with pytest.raises(SystemExit) as exit_info:  # refused while parsing, before any work
            main(args)
    finally:
        pydeconv.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code != 0 and len(err) == 1
    assert "argument --threads: threads = 100000 is past max_threads = 1024" in err[0]
    assert not (tmp_path / "o.png").exists()


# --- load's arguments, save ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "m.npz"
    pydeconv.build(*models.zfnet_like(seed=0, size=37)).save(path)
    return path


@pytest.mark.parametrize(
    "labels, words",
    [
        (5, ["labels", "int"]),
        ({"cat": 0, "dog": 1}, ["labels", "dict"]),
        (["cat", 3], ["labels", "non-strings"]),
        ("cat", ["labels", "str"]),
    ],
)
def test_bad_labels_are_refused(saved, labels, words):
    with pytest.raises(GraphError) as e:
        pydeconv.load(saved, labels=labels)
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize(
    "pre, cls, words",
    [
        ({"mean": [float("nan")] * 3}, GraphError, ["preprocess.mean[0]", "NaN"]),
        ({"std": "abc"}, GraphError, ["preprocess 'std'"]),
        ({"scale": "1/255"}, GraphError, ["preprocess 'scale'"]),
        ({"mean": [0.1, 0.2]}, GraphError, ["preprocess 'mean'", "2 values", "3 input channels"]),
        ({"size": [20000, 20000]}, ShapeError, ["preprocess 'size'", "max_input_pixels"]),
        ({"size": [40, 40]}, GraphError, ["preprocess 'size'", "37x37"]),
        ({"channel_order": 5}, GraphError, ["preprocess 'channel_order'"]),
        (5, GraphError, ["preprocess must be a dict"]),
    ],
)
def test_bad_preprocess_is_refused_at_load(saved, pre, cls, words):
    with pytest.raises(cls) as e:
        pydeconv.load(saved, preprocess=pre)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_save_into_a_missing_folder_names_the_path(tmp_path, saved):
    net = pydeconv.load(saved)
    target = tmp_path / "no" / "such" / "m.npz"
    with pytest.raises(PydeconvError, match=f"{target}.*does not exist"):
        net.save(target)


@pytest.mark.parametrize(
    "option, words",
    [
        (["--mean", "nan"], ["preprocess.mean", "NaN"]),
        (["--std", "0"], ["preprocess 'std'", "non-zero"]),
        (["--mean", "1", "2"], ["preprocess 'mean'", "2 values"]),
        (["--scale", "inf"], ["preprocess.scale", "infinity"]),
    ],
)
def test_cli_convert_refuses_bad_preprocess_with_one_line(tmp_path, capsys, option, words):
    src = tmp_path / "m.onnx"
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 8, 8])
    b.output(b.node("Relu", [x]), [1, 3, 8, 8])
    b.save(str(src))
    rc = main(["convert", str(src), str(tmp_path / "m.npz"), *option])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err[-1].startswith("pydeconv: error: "), err
    assert all(w in err[-1] for w in words), err[-1]
    assert not (tmp_path / "m.npz").exists()


# --- ONNX -----------------------------------------------------------------------------------------


def _onnx_with_initializer(path, dims, raw: bytes):
    """A Relu net whose graph also holds one float initializer with the given dims and raw bytes."""
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 8, 8])
    b.output(b.node("Relu", [x]), [1, 3, 8, 8])
    data = b.to_bytes()
    init = f_varints(1, dims, True) + f_varint(2, 1) + f_str(8, "w") + f_bytes(9, raw)
    # The graph is field 7 of the model: append the initializer (field 5) to it.
    model = _with_graph_field(data, f_bytes(5, init))
    Path(path).write_bytes(model)
    return path


def _with_graph_field(model: bytes, extra: bytes) -> bytes:
    from pydeconv.onnx.protobuf import Message

    msg = Message(model, "ModelProto")
    graph = bytes(msg.bytes(7)) + extra
    out = f_varint(1, msg.varint(1)) + f_bytes(7, graph)
    for raw in msg.messages(8):
        out += f_bytes(8, bytes(raw))
    return out


def test_onnx_initializer_size_not_matching_its_dims(tmp_path):
    path = _onnx_with_initializer(tmp_path / "m.onnx", [2, 3], b"\0" * 20)
    with pytest.raises(
        ModelFormatError, match="m.onnx: tensor 'w': raw_data has 20 bytes, dims \\[2, 3\\] need 24"
    ):
        pydeconv.load(path)


@pytest.mark.parametrize(
    "dims, words",
    [
        ([10**9, 32, 32], ["tensor 'w'", "max_dim"]),
        ([2**20, 2**20], ["tensor 'w'", "max_tensor_bytes"]),
        ([2**63 - 1], ["tensor 'w'", "max_dim"]),
    ],
)
def test_onnx_initializer_dims_are_limited_before_decoding(tmp_path, dims, words):
    path = _onnx_with_initializer(tmp_path / "m.onnx", dims, b"\0" * 16)
    cls, msg, grown = _refused_under_a_memory_cap(path)
    assert cls == "pydeconv.errors.ModelFormatError", msg
    assert all(w in msg for w in words), msg
    assert grown < 64


def test_onnx_input_dims_and_node_count_are_limited(tmp_path, restore_limits):
    b = OnnxBuilder()
    x = b.input("x", [1, 10**9, 8, 8])
    b.output(b.node("Relu", [x]), [1, 10**9, 8, 8])
    with pytest.raises(GraphError, match="input 'x'.*max_dim"):
        pydeconv.load(b.save(str(tmp_path / "wide.onnx")))
    b = OnnxBuilder()
    y = b.node("Relu", [b.input("x", [1, 3, 8, 8])])
    b.output(b.node("Relu", [y]), [1, 3, 8, 8])
    path = b.save(str(tmp_path / "two.onnx"))
    pydeconv.load(path)
    pydeconv.set_limits(max_layers=1)
    with pytest.raises(ModelFormatError, match="2 nodes, past max_layers = 1"):
        pydeconv.load(path)


def test_onnx_constant_of_shape_is_limited_before_numpy_allocates(tmp_path):
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 8, 8])
    shape = b.init("shape", np.array([10**6, 10**6], np.int64))
    big = b.node("ConstantOfShape", [shape])
    b.output(b.node("Add", [x, big]), [1, 3, 8, 8])
    cls, msg, grown = _refused_under_a_memory_cap(b.save(str(tmp_path / "m.onnx")))
    assert cls == "pydeconv.errors.GraphError" and "ConstantOfShape node" in msg, msg
    assert grown < 64


@pytest.mark.parametrize(
    "attrs, words",
    [
        ({"kernel_shape": [3]}, ["Conv node 'conv'"]),  # too short (IndexError once)
        (
            {"strides": [0, 0], "kernel_shape": [3, 3]},
            ["Conv node 'conv'"],
        ),  # ZeroDivisionError once
        (
            {"group": [1, 2], "kernel_shape": [3, 3]},
            ["Conv node 'conv'", "'group' must be an integer, got [1, 2]"],
        ),
        (
            {"kernel_shape": ["a", "b"]},
            ["Conv node 'conv'", "'kernel_shape' must be a list of integers"],
        ),
        (
            {"kernel_shape": [3, 3], "epsilon": "x"},
            ["Conv node 'conv'", "'epsilon' must be a number, got 'x'"],
        ),
    ],
)
def test_onnx_attributes_of_the_wrong_type_or_value_name_the_node(tmp_path, attrs, words):
    b = OnnxBuilder()
    x = b.input("x", [1, 3, 8, 8])
    w = b.init("w", np.ones((4, 3, 3, 3), np.float32))
    b.output(b.node("Conv", [x, w], name="conv", **attrs), [1, 4, 6, 6])
    with pytest.raises(GraphError) as e:
        pydeconv.load(b.save(str(tmp_path / "m.onnx")))
    assert str(e.value).startswith("m.onnx: ") and all(w in str(e.value) for w in words), str(
        e.value
    )


# --- images ---------------------------------------------------------------------------------------


def _png_header_only(width, height) -> bytes:
    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(100000, 100000), (12000, 12000), (2**31 - 1, 4)])
def test_an_image_declaring_a_huge_size_is_refused_before_decoding(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(*size))
    cls, msg, grown = _refused_under_a_memory_cap(path, loader="pydeconv.image.open_image")
    assert cls == "pydeconv.errors.ImageError", msg
    assert str(path) in msg and "max_image_pixels" in msg, msg
    assert grown < 64


def test_the_image_limit_is_adjustable(tmp_path, restore_limits, net):
    Image.new("RGB", (30, 20)).save(tmp_path / "i.png")
    pimg.load(tmp_path / "i.png", net)
    pydeconv.set_limits(max_image_pixels=599)
    with pytest.raises(ImageError, match="30x20 pixels, past max_image_pixels = 599"):
        pimg.load(tmp_path / "i.png", net)


@pytest.mark.parametrize("size", [["a", 5], 5, [8], [8.5, 8], [True, 8], [0, 8]])
def test_onnx_preprocess_size_is_checked_before_it_fixes_symbolic_dims(tmp_path, size):
    b = OnnxBuilder()
    x = b.input("x", [1, 3, "h", "w"])
    b.output(b.node("Relu", [x]), [1, 3, "h", "w"])
    path = b.save(str(tmp_path / "sym.onnx"))
    assert pydeconv.load(path, preprocess={"size": [8, 8]}).input_shape == (3, 8, 8)
    with pytest.raises(GraphError, match="preprocess 'size' must be two positive integers"):
        pydeconv.load(path, preprocess={"size": size})
