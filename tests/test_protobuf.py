"""The protobuf wire-format reader: every wire type, both repeated encodings, bounds checks."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from onnx_writer import (
    f_bytes,
    f_double,
    f_float,
    f_floats,
    f_str,
    f_varint,
    f_varints,
    key,
    tensor_proto,
    varint,
)

from pydeconv.errors import ModelFormatError
from pydeconv.onnx.model import parse_tensor
from pydeconv.onnx.protobuf import FIXED32, FIXED64, LEN, VARINT, Message, iter_fields, read_varint

VALUES = [0, 1, 127, 128, 300, 2**31 - 1, 2**32, 2**63 - 1, -1, -(2**31), -(2**63)]


@pytest.mark.parametrize("value", VALUES)
def test_varint_round_trip(value):
    data = varint(value)
    assert len(data) == (10 if value < 0 else max(1, (value.bit_length() + 6) // 7))
    msg = Message(f_varint(3, value))
    assert msg.varint(3) == value


def test_read_varint_position():
    data = memoryview(b"\x00" + varint(300) + b"\x07")
    assert read_varint(data, 1, len(data)) == (300, 3)


def test_every_wire_type():
    data = (
        f_varint(1, 150)
        + f_double(2, 2.5)
        + f_str(3, "héllo")
        + f_float(4, -1.25)
        + f_bytes(5, b"\x00\x01")
    )
    fields = list(iter_fields(data))
    assert [(f, w) for f, w, _ in fields] == [
        (1, VARINT),
        (2, FIXED64),
        (3, LEN),
        (4, FIXED32),
        (5, LEN),
    ]
    msg = Message(data)
    assert msg.varint(1) == 150
    assert struct.unpack("<d", fields[1][2].to_bytes(8, "little"))[0] == 2.5
    assert msg.string(3) == "héllo"
    assert msg.float32(4) == -1.25
    assert bytes(msg.bytes(5)) == b"\x00\x01"
    assert msg.varint(9, default=-7) == -7 and not msg.has(9)


@pytest.mark.parametrize("packed", [True, False])
def test_repeated_scalars_packed_and_unpacked(packed):
    ints = [3, -4, 2**40, 0]
    floats = [0.5, -2.0, 3.25]
    msg = Message(f_varints(7, ints, packed) + f_floats(4, floats, packed))
    assert msg.varints(7) == ints
    assert np.frombuffer(msg.fixed_array(4, FIXED32), "<f4").tolist() == floats


def test_mixed_packed_and_unpacked_occurrences_concatenate():
    msg = Message(f_varints(1, [1, 2], True) + f_varint(1, 3) + f_varints(1, [4], True))
    assert msg.varints(1) == [1, 2, 3, 4]


def test_last_occurrence_of_singular_field_wins():
    assert Message(f_varint(2, 5) + f_varint(2, 9)).varint(2) == 9


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",  # varint continues past the end
        b"\x08\xff\xff",  # field 1 varint truncated
        key(1, 1) + b"\x00" * 7,  # 64-bit value short by one byte
        key(1, 5) + b"\x00" * 3,  # 32-bit value short by one byte
        key(1, 2) + varint(5) + b"abcd",  # length runs past the end
        key(1, 3),  # start-group wire type
        key(1, 7),  # wire type 7 does not exist
        b"\x00",  # field number 0
        key(1, 0) + b"\xff" * 10 + b"\x01",  # varint longer than 10 bytes
        key(1, 0) + b"\xff" * 9 + b"\x02",  # 10-byte varint wider than 64 bits
    ],
)
def test_malformed_input_raises_model_format_error(data):
    with pytest.raises(ModelFormatError):
        Message(data)


def test_every_truncation_of_a_tensor_fails_cleanly():
    """Every prefix fails with ModelFormatError (bad framing or a size check), never with
    IndexError or struct.error."""
    data = tensor_proto(
        "w", np.arange(6, dtype=np.float32).reshape(2, 3), storage="typed", packed=False
    )
    name, array = parse_tensor(memoryview(data), ".")
    assert name == "w" and array.tolist() == [[0, 1, 2], [3, 4, 5]]
    for cut in range(len(data)):
        with pytest.raises(ModelFormatError):
            parse_tensor(memoryview(data[:cut]), ".")


def test_wrong_wire_type_for_a_known_field():
    msg = Message(f_float(3, 1.0))
    with pytest.raises(ModelFormatError, match="wire type"):
        msg.varint(3)


def test_packed_float_payload_must_be_whole_values():
    msg = Message(f_bytes(4, b"\x00" * 6))
    with pytest.raises(ModelFormatError, match="multiple of 4"):
        msg.fixed_array(4, FIXED32)


def test_invalid_utf8_string():
    with pytest.raises(ModelFormatError, match="UTF-8"):
        Message(f_bytes(1, b"\xff\xfe")).string(1)
