"""ONNX import errors: corrupt files, unsupported operators, unmappable graphs, unsafe external
data.

Every error is a pydeconv.errors class whose message names the file; nothing partial is returned.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_writer import OnnxBuilder

from pydeconv.errors import GraphError, ModelFormatError, UnsupportedOperatorError
from pydeconv.onnx import import_onnx


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def small_model_bytes():
    rng = np.random.default_rng(15)
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 4, 4])
    t = b.node("Conv", [x, b.init("w", rand(rng, 2, 2, 3, 3))], kernel_shape=[3, 3])
    b.output(b.node("Relu", [t], outputs=["y"]))
    return b.to_bytes()


def test_truncated_files(tmp_path):
    data = small_model_bytes()
    path = tmp_path / "cut.onnx"
    for cut in list(range(0, 40)) + list(range(40, len(data), 7)):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError, match="cut.onnx"):
            import_onnx(path)


def test_garbage_and_missing_files(tmp_path):
    rng = np.random.default_rng(16)
    path = tmp_path / "junk.onnx"
    for size in (1, 10, 1000):
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        with pytest.raises(ModelFormatError, match="junk.onnx"):
            import_onnx(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ModelFormatError):
        import_onnx(path)
    with pytest.raises(ModelFormatError, match="nothere.onnx"):
        import_onnx(tmp_path / "nothere.onnx")


def test_every_unsupported_operator_is_listed(tmp_path):
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 4, 4])
    t = b.node("Erf", [x], name="e1")
    t = b.node("Sigmoid", [t], name="act3")
    t = b.node("Relu", [t])
    t = b.node("FusedConv", [t], name="fc", domain="com.microsoft")
    t = b.node("Erf", [t], name="e2")
    b.output(b.node("Sin", [t], name="s", outputs=["y"]))
    path = b.save(str(tmp_path / "model.onnx"))
    with pytest.raises(UnsupportedOperatorError) as info:
        import_onnx(path)
    message = str(info.value)
    # Counts by type first (most frequent first), then every node by name, then what is supported.
    assert message.startswith(
        "model.onnx: unsupported ONNX operators: Erf x2, com.microsoft.FusedConv x1, Sin x1 "
        "(nodes: Erf 'e1', 'e2'; com.microsoft.FusedConv 'fc'; Sin 's'). pydeconv imports these "
        "operators: Add, AveragePool, BatchNormalization,"
    )
    for op in ("Resize", "Split", "Sigmoid", "HardSwish", "LayerNormalization", "ConvTranspose"):
        assert f" {op}," in message
    assert "x*Sigmoid(x) (SiLU)" in message and "outputs='auto'" in message


def test_shape_arithmetic_after_an_unsupported_op_is_not_reported(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape after an op whose output shape is unknown:
    only that op is unsupported; the arithmetic would fold once it is."""
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 4, 4])
    x = b.node("Conv", [x, b.init("w", np.ones((2, 2, 1, 1), np.float32))], kernel_shape=[1, 1])
    t = b.node("GridSample", [x, x], name="odd")
    shape = b.node("Shape", [t], name="shape")
    n = b.node("Gather", [shape, b.init("zero", np.array(0, np.int64))], name="gather")
    n = b.node("Unsqueeze", [n, b.init("ax", np.array([0], np.int64))], name="unsq")
    target = b.node("Concat", [n, b.init("m1", np.array([-1], np.int64))], axis=0, name="cat")
    b.output(b.node("Reshape", [t, target], name="flat", outputs=["y"]))
    path = b.save(str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedOperatorError, match=r"operators: GridSample x1 \(nodes: Gri"):
        import_onnx(path)
    # outputs='auto' stops before the GridSample: the convolution it reads is the output.
    graph, _ = import_onnx(path, outputs="auto")
    assert [layer["kind"] for layer in graph["layers"]] == ["conv2d"]
    assert graph["outputs"] == [graph["layers"][0]["name"]]


def test_many_nodes_of_one_type_are_counted(tmp_path):
    b = OnnxBuilder(opset=13)
    t = b.input("x", [1, 2, 4, 4])
    for i in range(5):
        t = b.node("Sin", [b.node("Cos", [t], name=f"c{i}")], name=f"s{i}")
    b.output(b.node("Relu", [t], outputs=["y"]))
    with pytest.raises(UnsupportedOperatorError, match=r"operators: Cos x5, Sin x5 \(nodes: Cos "):
        import_onnx(b.save(str(tmp_path / "m.onnx")))


def test_nothing_partial_is_written(tmp_path):
    from pydeconv.cli import main

    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 4, 4])
    b.output(b.node("Sin", [b.node("Relu", [x])], outputs=["y"]))
    path = b.save(str(tmp_path / "m.onnx"))
    out = tmp_path / "m.npz"
    assert main(["convert", path, str(out)]) != 0
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_outputs_option(tmp_path):
    b = OnnxBuilder(opset=13)
    x = b.input("x", [1, 2, 4, 4])
    a = b.node("Relu", [x], outputs=["a"])
    c = b.node("Sigmoid", [a], outputs=["c"])
    b.output(b.node("Sin", [c], outputs=["y"]))
    b.output(b.node("Tanh", [a], outputs=["z"]))
    path = b.save(str(tmp_path / "m.onnx"))
    graph, _ = import_onnx(path, outputs=["c"])
    assert [layer["kind"] for layer in graph["layers"]] == ["relu", "sigmoid"]
    # auto: the Sin is cut; its input and the graph output z that still maps are the outputs.
    graph, _ = import_onnx(path, outputs="auto")
    assert [layer["kind"] for layer in graph["layers"]] == ["relu", "sigmoid", "tanh"]
    assert len(graph["outputs"]) == 2
    with pytest.raises(GraphError, match="m.onnx: outputs: no node of the graph makes .*'nope'"):
        import_onnx(path, outputs=["nope"])
    with pytest.raises(GraphError, match="list of ONNX tensor names or 'auto'"):
        import_onnx(path, outputs="all")


@pytest.mark.parametrize(
    "location", ["../weights.bin", "sub/../../weights.bin", "/etc/passwd", "..\\weights.bin"]
)
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "weights.bin").write_bytes(np.zeros(18, np.float32).tobytes())
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 4, 4])
    w = b.init("w", np.zeros((1, 2, 3, 3), np.float32), external="weights.bin", location=location)
    b.output(b.node("Conv", [x, w], kernel_shape=[3, 3], outputs=["y"]))
    path = b.save(str(folder / "m.onnx"))
    with pytest.raises(ModelFormatError, match="relative path inside"):
        import_onnx(path)


def test_external_data_missing_or_short(tmp_path):
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 4, 4])
    w = b.init("w", np.zeros((1, 2, 3, 3), np.float32), external="w.bin", location="w.bin")
    b.output(b.node("Conv", [x, w], kernel_shape=[3, 3], outputs=["y"]))
    path = b.save(str(tmp_path / "m.onnx"))
    with pytest.raises(ModelFormatError, match="not found"):
        import_onnx(path)
    (tmp_path / "w.bin").write_bytes(b"\x00" * 40)  # 72 bytes needed
    with pytest.raises(ModelFormatError, match="exceeds"):
        import_onnx(path)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda b, x: b.node("Reshape", [x, b.init("s", np.array([2, 1, 16], np.int64))]),
            "flatten",
        ),
        (lambda b, x: b.node("MaxPool", [x], kernel_shape=[2, 2], dilations=[2, 2]), "dilations"),
        (
            lambda b, x: b.node("Mul", [x, b.node("Transpose", [x], perm=[0, 1, 3, 2])]),
            "differently|Transpose'd",
        ),
        (lambda b, x: b.node("Transpose", [b.node("Relu", [x])], perm=[1, 0, 2, 3]), "perm"),
        (
            lambda b, x: b.node(
                "Gemm",
                [b.node("Flatten", [x]), b.init("B", np.ones((32, 2), np.float32))],
                transA=1,
            ),
            "transA",
        ),
        (lambda b, x: b.node("Concat", [x, x], axis=0), "channel axis"),
        (
            lambda b, x: b.node("Add", [x, b.init("c", np.ones((2, 2, 1, 1), np.float32))]),
            "per-channel",
        ),
    ],
)
def test_graphs_that_cannot_be_mapped(tmp_path, build, message):
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 4, 4])
    b.output(build(b, x))
    path = b.save(str(tmp_path / "bad.onnx"))
    with pytest.raises(GraphError, match=message):
        import_onnx(path)


def test_model_with_two_inputs_is_refused(tmp_path):
    b = OnnxBuilder()
    x = b.input("x", [1, 2, 4, 4])
    y = b.input("y", [1, 2, 4, 4])
    b.output(b.node("Add", [x, y], outputs=["z"]))
    with pytest.raises(GraphError, match="exactly one input"):
        import_onnx(b.save(str(tmp_path / "two.onnx")))
