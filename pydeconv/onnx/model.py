"""Decode an ONNX ModelProto into small dataclasses (no ``onnx`` dependency).

Field numbers follow onnx/onnx.proto. Tensors become NumPy arrays right away: floating types
(float32, float16, bfloat16, float64) as float32, integer and bool types as int64 (they only feed
shape arithmetic and indexing). External data is resolved only inside the model's own folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..limits import get_limits, limit_str
from .protobuf import FIXED32, FIXED64, Message

# TensorProto.DataType values.
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64, BFLOAT16 = 10, 11, 12, 13, 16

# Element type -> NumPy dtype of its raw_data bytes (little-endian).
_RAW_DTYPES = {
    FLOAT: "<f4",
    UINT8: "u1",
    INT8: "i1",
    UINT16: "<u2",
    INT16: "<i2",
    INT32: "<i4",
    INT64: "<i8",
    BOOL: "u1",
    FLOAT16: "<f2",
    DOUBLE: "<f8",
    UINT32: "<u4",
    UINT64: "<u8",
    BFLOAT16: "<u2",
}
_FLOATING = {FLOAT, FLOAT16, DOUBLE, BFLOAT16}

# AttributeProto.AttributeType values.
A_FLOAT, A_INT, A_STRING, A_TENSOR, A_GRAPH, A_FLOATS, A_INTS, A_STRINGS = 1, 2, 3, 4, 5, 6, 7, 8


@dataclass
class Node:
    op_type: str
    inputs: list[str]  # "" marks an omitted optional input
    outputs: list[str]
    name: str = ""
    domain: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    # A node fused at import (fuse.py) lists the ONNX nodes it replaces, in graph order.
    sources: list[str] = field(default_factory=list)

    def label(self) -> str:
        """How messages name the node: its name, else its first output."""
        return self.name or (self.outputs[0] if self.outputs else "?")


@dataclass
class ValueInfo:
    name: str
    elem_type: int = 0
    shape: list[int | str | None] | None = None  # None: rank unknown; None dim: unknown size


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    initializers: dict[str, np.ndarray]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]


@dataclass
class Model:
    ir_version: int
    opset: int  # version of the default ("" / "ai.onnx") operator set
    producer: str
    graph: Graph


def parse_model(data: bytes | memoryview, model_dir: str) -> Model:
    """Decode ModelProto bytes. ``model_dir`` is where external tensor data may live."""
    msg = Message(data, "ModelProto")
    if not msg.has(7):
        raise ModelFormatError("not an ONNX model (no graph in the ModelProto)")
    opset = 0
    for raw in msg.messages(8):
        op = Message(raw, "OperatorSetIdProto")
        if op.string(1) in ("", "ai.onnx"):
            opset = op.varint(2)
    graph = parse_graph(msg.bytes(7), model_dir)
    if not graph.nodes:
        raise ModelFormatError("the ONNX graph has no nodes")
    producer = " ".join(s for s in (msg.string(2), msg.string(3)) if s)
    return Model(msg.varint(1), opset, producer, graph)


def parse_graph(data: memoryview, model_dir: str) -> Graph:
    msg = Message(data, "GraphProto")
    limits = get_limits()
    raw_nodes = msg.messages(1)
    if len(raw_nodes) > limits.max_layers:
        raise ModelFormatError(
            f"the graph has {len(raw_nodes)} nodes, past {limit_str('max_layers')}"
        )
    # The initializers' declared sizes, summed, before any of them is decoded.
    total = 0
    for raw in msg.messages(5):
        total += declared_bytes(Message(raw, "TensorProto"))
        if total > limits.max_tensor_bytes:
            raise ModelFormatError(
                f"the initializers declare more than {limits.max_tensor_bytes} bytes, "
                f"past {limit_str('max_tensor_bytes')}"
            )
    nodes = [parse_node(raw, model_dir) for raw in raw_nodes]
    initializers = {}
    for raw in msg.messages(5):
        name, array = parse_tensor(raw, model_dir)
        initializers[name] = array
    inputs = [parse_value_info(raw) for raw in msg.messages(11)]
    outputs = [parse_value_info(raw) for raw in msg.messages(12)]
    return Graph(msg.string(2), nodes, initializers, inputs, outputs)


def parse_node(data: memoryview, model_dir: str) -> Node:
    msg = Message(data, "NodeProto")
    attrs = {}
    domain = msg.string(7)
    for raw in msg.messages(5):
        name, value = parse_attribute(raw, model_dir)
        expected = ATTRIBUTE_TYPES.get(name)
        op_type = msg.string(4)
        if op_type in _OWN_ATTRIBUTE_TYPES and name in _OWN_ATTRIBUTE_TYPES[op_type]:
            expected = _OWN_ATTRIBUTE_TYPES[op_type][name]
        if expected and domain in ("", "ai.onnx") and not _is_attribute_type(value, expected):
            label = msg.string(3) or (msg.strings(2) or ["?"])[0]
            raise GraphError(
                f"{msg.string(4)} node '{label}': attribute '{name}' must be "
                f"{expected}, got {_shown(value)}"
            )
        attrs[name] = value
    node = Node(
        op_type=msg.string(4),
        inputs=msg.strings(1),
        outputs=msg.strings(2),
        name=msg.string(3),
        domain=msg.string(7),
        attrs=attrs,
    )
    if not node.op_type or not node.outputs or not node.outputs[0]:
        raise ModelFormatError(f"node '{node.name}' has no operator type or no output")
    return node


# The type of every attribute the importer reads, by name: the ONNX operators give one name one
# type. An attribute of another type (a list where an int is due) is refused here, naming the node,
# instead of failing somewhere in the shape arithmetic.
ATTRIBUTE_TYPES = {
    **dict.fromkeys(
        ("kernel_shape", "strides", "pads", "dilations", "perm", "axes", "starts", "ends"),
        "a list of integers",
    ),
    **dict.fromkeys(
        (
            "group",
            "ceil_mode",
            "count_include_pad",
            "keepdims",
            "size",
            "training_mode",
            "transA",
            "transB",
            "axis",
            "allowzero",
            "to",
            "start",
            "end",
        ),
        "an integer",
    ),
    **dict.fromkeys(("alpha", "beta", "bias", "epsilon"), "a number"),
    **dict.fromkeys(("output_padding", "output_shape", "split"), "a list of integers"),
    **dict.fromkeys(("num_outputs", "antialias", "exclude_outside", "stash_type"), "an integer"),
    **dict.fromkeys(
        ("mode", "coordinate_transformation_mode", "nearest_mode", "approximate"), "a string"
    ),
    "auto_pad": "a string",
    "value": "a tensor",
}
# Operators that give a name another type than the table above: Pad's (opset < 11) and Clip's
# (opset < 11) numbers, Upsample's (opset 7) scales.
_OWN_ATTRIBUTE_TYPES = {
    "Pad": {"value": "a number"},
    "Clip": {"min": "a number", "max": "a number"},
    "Upsample": {"scales": "a list of numbers"},
    "Resize": {},
}


def _is_attribute_type(value: Any, expected: str) -> bool:
    if expected == "a list of integers":
        return isinstance(value, list) and all(isinstance(v, int) for v in value)
    if expected == "an integer":
        return isinstance(value, int)
    if expected == "a list of numbers":
        return isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)
    if expected == "a number":
        return isinstance(value, (int, float))
    if expected == "a string":
        return isinstance(value, str)
    return isinstance(value, np.ndarray)


def _shown(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_attribute(data: memoryview, model_dir: str) -> tuple[str, Any]:
    msg = Message(data, "AttributeProto")
    name = msg.string(1)
    kind = msg.varint(20)
    if kind == 0:
        # IR version 1 files may omit the type: infer it from the field that is present.
        for field_number, guess in (
            (2, A_FLOAT),
            (3, A_INT),
            (4, A_STRING),
            (5, A_TENSOR),
            (6, A_GRAPH),
            (7, A_FLOATS),
            (8, A_INTS),
            (9, A_STRINGS),
        ):
            if msg.has(field_number):
                kind = guess
                break
    if kind == A_FLOAT:
        return name, msg.float32(2)
    if kind == A_INT:
        return name, msg.varint(3)
    if kind == A_STRING:
        return name, bytes(msg.bytes(4)).decode("utf-8", errors="replace")
    if kind == A_TENSOR:
        return name, parse_tensor(msg.bytes(5), model_dir)[1]
    if kind == A_FLOATS:
        raw = msg.fixed_array(7, FIXED32)
        return name, [float(v) for v in np.frombuffer(raw, "<f4")]
    if kind == A_INTS:
        return name, msg.varints(8)
    if kind == A_STRINGS:
        return name, [bytes(v).decode("utf-8", errors="replace") for v in msg.messages(9)]
    # Subgraphs (If/Loop bodies) and sparse tensors: no supported operator takes them; keep a
    # marker so the node can still be reported by name.
    return name, None


def parse_value_info(data: memoryview) -> ValueInfo:
    msg = Message(data, "ValueInfoProto")
    info = ValueInfo(msg.string(1))
    if not msg.has(2):
        return info
    type_proto = Message(msg.bytes(2), "TypeProto")
    if not type_proto.has(1):  # not a tensor (sequence, map, ...)
        return info
    tensor_type = Message(type_proto.bytes(1), "TypeProto.Tensor")
    info.elem_type = tensor_type.varint(1)
    if tensor_type.has(2):
        dims: list[int | str | None] = []
        for raw in Message(tensor_type.bytes(2), "TensorShapeProto").messages(1):
            dim = Message(raw, "TensorShapeProto.Dimension")
            if dim.has(1):
                dims.append(dim.varint(1))
            elif dim.has(2):
                dims.append(dim.string(2))
            else:
                dims.append(None)
        info.shape = dims
    return info


def declared_bytes(msg: Message) -> int:
    """The bytes a TensorProto's dims and data type declare (as decoded: 8 per integer value),
    checked against the limits before anything is decoded; ModelFormatError naming the tensor."""
    name = msg.string(8)
    dims = msg.varints(1)
    dtype = msg.varint(2)
    what = f"tensor '{name}'"
    if any(d < 0 for d in dims):
        raise ModelFormatError(f"{what} has a negative dimension {dims}")
    if dtype not in _RAW_DTYPES:
        raise ModelFormatError(f"{what} has unsupported data type {dtype}")
    limits = get_limits()
    if any(d > limits.max_dim for d in dims):
        raise ModelFormatError(
            f"{what} has dims {dims}: a dimension is past {limit_str('max_dim')}"
        )
    nbytes = math.prod(dims) * max(
        np.dtype(_RAW_DTYPES[dtype]).itemsize, 4 if dtype in _FLOATING else 8
    )
    if nbytes > limits.max_tensor_bytes:
        raise ModelFormatError(
            f"{what} has dims {dims}: {nbytes} bytes, past {limit_str('max_tensor_bytes')}"
        )
    return nbytes


def parse_tensor(data: memoryview, model_dir: str) -> tuple[str, np.ndarray]:
    msg = Message(data, "TensorProto")
    name = msg.string(8)
    dims = msg.varints(1)
    dtype = msg.varint(2)
    what = f"tensor '{name}'"
    declared_bytes(msg)  # dims, data type and size against the limits, before any decoding
    count = math.prod(dims)
    if msg.has(3):
        raise ModelFormatError(f"{what} is segmented (TensorProto.segment is not supported)")

    raw: bytes | memoryview
    if msg.varint(14) == 1:  # data_location EXTERNAL
        raw = read_external(msg, model_dir, what, count * np.dtype(_RAW_DTYPES[dtype]).itemsize)
        flat = np.frombuffer(raw, _RAW_DTYPES[dtype])
    elif msg.has(9):
        raw = msg.bytes(9)
        if len(raw) != count * np.dtype(_RAW_DTYPES[dtype]).itemsize:
            raise ModelFormatError(
                f"{what}: raw_data has {len(raw)} bytes, dims {dims} need "
                f"{count * np.dtype(_RAW_DTYPES[dtype]).itemsize}"
            )
        flat = np.frombuffer(raw, _RAW_DTYPES[dtype])
    else:
        flat = typed_data(msg, dtype, what)
        if flat.size != count:
            raise ModelFormatError(f"{what}: holds {flat.size} values, dims {dims} need {count}")
    return name, to_working_dtype(flat, dtype).reshape(dims)


def typed_data(msg: Message, dtype: int, what: str) -> np.ndarray:
    """Values stored in the typed repeated fields instead of raw_data."""
    if dtype == FLOAT:
        return np.frombuffer(msg.fixed_array(4, FIXED32), "<f4")
    if dtype == DOUBLE:
        return np.frombuffer(msg.fixed_array(10, FIXED64), "<f8")
    if dtype == INT64:
        return np.array(msg.varints(7), dtype=np.int64)
    if dtype in (UINT32, UINT64):
        return np.array([v % (1 << 64) for v in msg.varints(11)], dtype=np.uint64)
    if dtype in (FLOAT16, BFLOAT16):
        # float16/bfloat16 values travel in int32_data as their 16-bit patterns.
        return np.array(msg.varints(5), dtype=np.int64).astype(np.uint16)
    if dtype in (INT32, INT16, INT8, UINT16, UINT8, BOOL):
        return np.array(msg.varints(5), dtype=np.int64)
    raise ModelFormatError(f"{what}: data type {dtype} has no supported typed storage")


def to_working_dtype(flat: np.ndarray, dtype: int) -> np.ndarray:
    if dtype == FLOAT16:
        return flat.view("<f2").astype(np.float32)
    if dtype == BFLOAT16:
        # bfloat16 is the top half of a float32.
        return (flat.astype(np.uint32) << 16).view(np.float32)
    if dtype in _FLOATING:
        return flat.astype(np.float32)
    if dtype in (UINT64,) and flat.size and int(flat.max()) >= (1 << 63):
        raise ModelFormatError("uint64 tensor value does not fit int64")
    return flat.astype(np.int64)


def read_external(msg: Message, model_dir: str, what: str, nbytes: int) -> bytes:
    """Read a tensor's bytes from a file next to the model, refusing paths that leave its folder."""
    entries = {}
    for raw in msg.messages(13):
        entry = Message(raw, "StringStringEntryProto")
        entries[entry.string(1)] = entry.string(2)
    location = entries.get("location", "")
    if not location:
        raise ModelFormatError(f"{what}: external data without a location")
    parts = location.replace("\\", "/").split("/")
    if (
        os.path.isabs(location)
        or location.startswith(("/", "\\"))
        or ":" in parts[0]
        or ".." in parts
    ):
        raise ModelFormatError(
            f"{what}: external data location '{location}' must be a relative path inside the "
            f"model's folder (no absolute paths, no '..')"
        )
    folder = os.path.realpath(model_dir)
    path = os.path.realpath(os.path.join(folder, *parts))
    if not path.startswith(folder + os.sep):
        raise ModelFormatError(
            f"{what}: external data '{location}' resolves outside the model's folder"
        )
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise ModelFormatError(f"{what}: external data offset/length are not integers") from None
    if not os.path.isfile(path):
        raise ModelFormatError(
            f"{what}: external data file '{location}' not found next to the model"
        )
    size = os.path.getsize(path)
    if length is None:
        length = size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelFormatError(
            f"{what}: external data range offset={offset} length={length} exceeds "
            f"'{location}' ({size} bytes)"
        )
    if length != nbytes:
        raise ModelFormatError(f"{what}: external data has {length} bytes, its dims need {nbytes}")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)
