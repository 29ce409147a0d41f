"""A minimal protobuf / ONNX writer for tests (no ``onnx`` package).

``OnnxBuilder`` collects nodes, initializers and graph inputs/outputs as plain Python values (the
test's NumPy interpreter, tests/onnx_numpy.py, runs those directly) and serialises them to
ModelProto bytes. Initializers can be stored as raw_data, in the typed fields (float_data,
int32_data, int64_data, double_data), or in an external file; repeated scalars packed or unpacked.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# TensorProto.DataType
FLOAT, INT32, INT64, FLOAT16, DOUBLE = 1, 6, 7, 10, 11
_DTYPE_CODES = {
    np.dtype("float32"): FLOAT,
    np.dtype("int32"): INT32,
    np.dtype("int64"): INT64,
    np.dtype("float16"): FLOAT16,
    np.dtype("float64"): DOUBLE,
}


# -- protobuf primitives ---------------------------------------------------------------------------
def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64: 64-bit two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field_number: int, wire: int) -> bytes:
    return varint(field_number << 3 | wire)


def f_varint(field_number: int, value: int) -> bytes:
    return key(field_number, 0) + varint(value)


def f_bytes(field_number: int, data: bytes) -> bytes:
    return key(field_number, 2) + varint(len(data)) + data


def f_str(field_number: int, text: str) -> bytes:
    return f_bytes(field_number, text.encode("utf-8"))


def f_float(field_number: int, value: float) -> bytes:
    return key(field_number, 5) + struct.pack("<f", value)


def f_double(field_number: int, value: float) -> bytes:
    return key(field_number, 1) + struct.pack("<d", value)


def f_varints(field_number: int, values, packed: bool) -> bytes:
    values = [int(v) for v in values]
    if packed:
        return f_bytes(field_number, b"".join(varint(v) for v in values)) if values else b""
    return b"".join(f_varint(field_number, v) for v in values)


def f_floats(field_number: int, values, packed: bool) -> bytes:
    values = [float(v) for v in values]
    if packed:
        return f_bytes(field_number, struct.pack(f"<{len(values)}f", *values)) if values else b""
    return b"".join(f_float(field_number, v) for v in values)


def f_doubles(field_number: int, values, packed: bool) -> bytes:
    values = [float(v) for v in values]
    if packed:
        return f_bytes(field_number, struct.pack(f"<{len(values)}d", *values)) if values else b""
    return b"".join(f_double(field_number, v) for v in values)


# -- ONNX messages ---------------------------------------------------------------------------------
def tensor_proto(
    name: str,
    array: np.ndarray,
    storage: str = "raw",
    packed: bool = True,
    external: dict | None = None,
) -> bytes:
    """storage: "raw" (raw_data) or "typed" (float_data/int32_data/int64_data/double_data).
    external: {"location": ..., "offset": ..., "length": ...} entries (strings written as given)."""
    array = np.asarray(array)
    code = _DTYPE_CODES[array.dtype]
    out = f_varints(1, array.shape, packed) + f_varint(2, code) + f_str(8, name)
    if external is not None:
        for k, v in external.items():
            out += f_bytes(13, f_str(1, k) + f_str(2, str(v)))
        return out + f_varint(14, 1)
    flat = array.reshape(-1)
    if storage == "raw":
        return out + f_bytes(9, flat.astype(array.dtype.newbyteorder("<")).tobytes())
    if code == FLOAT:
        return out + f_floats(4, flat, packed)
    if code == DOUBLE:
        return out + f_doubles(10, flat, packed)
    if code == INT64:
        return out + f_varints(7, flat, packed)
    if code == FLOAT16:  # float16 travels in int32_data as its bit pattern
        return out + f_varints(5, flat.view(np.uint16), packed)
    return out + f_varints(5, flat, packed)


def attribute_proto(name: str, value: Any, packed: bool = True) -> bytes:
    out = f_str(1, name)
    if isinstance(value, bool) or isinstance(value, (int, np.integer)):
        return out + f_varint(3, int(value)) + f_varint(20, 2)
    if isinstance(value, (float, np.floating)):
        return out + f_float(2, float(value)) + f_varint(20, 1)
    if isinstance(value, str):
        return out + f_str(4, value) + f_varint(20, 3)
    if isinstance(value, np.ndarray):
        return out + f_bytes(5, tensor_proto("", value)) + f_varint(20, 4)
    values = list(value)
    if values and all(isinstance(v, str) for v in values):
        return out + b"".join(f_str(9, v) for v in values) + f_varint(20, 8)
    if values and any(isinstance(v, (float, np.floating)) for v in values):
        return out + f_floats(7, values, packed) + f_varint(20, 6)
    return out + f_varints(8, values, packed) + f_varint(20, 7)


def value_info(name: str, shape, elem_type: int = FLOAT) -> bytes:
    dims = b""
    for d in shape:
        dim = f_str(2, d) if isinstance(d, str) else f_varint(1, d)
        dims += f_bytes(1, dim)
    tensor_type = f_varint(1, elem_type) + f_bytes(2, dims)
    return f_str(1, name) + f_bytes(2, f_bytes(1, tensor_type))


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    name: str = ""
    attrs: dict = field(default_factory=dict)
    domain: str = ""

    def proto(self, packed: bool = True) -> bytes:
        out = b"".join(f_str(1, i) for i in self.inputs) + b"".join(
            f_str(2, o) for o in self.outputs
        )
        if self.name:
            out += f_str(3, self.name)
        out += f_str(4, self.op)
        out += b"".join(f_bytes(5, attribute_proto(k, v, packed)) for k, v in self.attrs.items())
        if self.domain:
            out += f_str(7, self.domain)
        return out


@dataclass
class Init:
    array: np.ndarray
    storage: str = "raw"
    external: str | None = None  # file name (relative to the model) to write the data into
    location: str | None = None  # the location string to record (default: ``external``)


class OnnxBuilder:
    def __init__(self, opset: int = 13, name: str = "test-graph"):
        self.opset = opset
        self.name = name
        self.nodes: list[Node] = []
        self.inits: dict[str, Init] = {}
        self.inputs: list[tuple[str, list]] = []
        self.outputs: list[tuple[str, list]] = []
        self.list_inits_as_inputs = False  # what old exporters did
        self.producer = "pydeconv-tests"  # tf2onnx's Keras scopes become short layer names
        # ONNX Runtime wants an IR version recent enough for the opset (IR 10 covers opset 21).
        self.ir_version = 8 if opset <= 18 else 10
        self._count = 0

    def input(self, name: str, shape: list) -> str:
        self.inputs.append((name, list(shape)))
        return name

    def output(self, name: str, shape: list | None = None) -> str:
        self.outputs.append((name, list(shape or [])))
        return name

    def init(
        self,
        name: str,
        array,
        storage: str = "raw",
        external: str | None = None,
        location: str | None = None,
    ) -> str:
        self.inits[name] = Init(np.asarray(array), storage, external, location)
        return name

    def node(
        self,
        op: str,
        inputs: list[str],
        name: str | None = None,
        outputs: list[str] | None = None,
        domain: str = "",
        **attrs,
    ) -> str:
        """Add a node; returns its first output's name (generated when not given)."""
        self._count += 1
        if outputs is None:
            outputs = [f"{op.lower()}_{self._count}_out"]
        node_name = f"{op.lower()}_{self._count}" if name is None else name
        self.nodes.append(Node(op, list(inputs), list(outputs), node_name, attrs, domain))
        return outputs[0]

    def to_bytes(self, folder: str | None = None, packed: bool = True) -> bytes:
        """Serialise. External initializers are written into ``folder`` (created if missing)."""
        graph = b"".join(f_bytes(1, n.proto(packed)) for n in self.nodes) + f_str(2, self.name)
        offsets: dict[str, int] = {}
        for name, init in self.inits.items():
            external = None
            if init.external is not None:
                data = init.array.astype(init.array.dtype.newbyteorder("<")).tobytes()
                offset = offsets.get(init.external, 0)
                if folder is not None and init.location is None:
                    os.makedirs(folder, exist_ok=True)
                    with open(os.path.join(folder, init.external), "ab" if offset else "wb") as f:
                        f.write(data)
                offsets[init.external] = offset + len(data)
                external = {
                    "location": init.location or init.external,
                    "offset": offset,
                    "length": len(data),
                }
            graph += f_bytes(5, tensor_proto(name, init.array, init.storage, packed, external))
        for name, shape in self.inputs:
            graph += f_bytes(11, value_info(name, shape))
        if self.list_inits_as_inputs:
            for name, init in self.inits.items():
                graph += f_bytes(11, value_info(name, list(init.array.shape)))
        for name, shape in self.outputs:
            graph += f_bytes(12, value_info(name, shape))
        opset = f_str(1, "") + f_varint(2, self.opset)
        return (
            f_varint(1, self.ir_version)
            + f_str(2, self.producer)
            + f_bytes(7, graph)
            + f_bytes(8, opset)
        )

    def save(self, path: str, packed: bool = True) -> str:
        data = self.to_bytes(os.path.dirname(os.path.abspath(path)), packed)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: init.array for name, init in self.inits.items()}
