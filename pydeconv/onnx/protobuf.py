"""A bounds-checked reader for the protobuf wire format (standard library only).

Only what an ONNX reader needs: split a message into its fields, and decode the scalar and
repeated scalar fields in both their packed and unpacked encodings. Every read is checked against
the end of the buffer, so a truncated or corrupt file raises ``ModelFormatError`` and never
``IndexError`` or ``struct.error``. Length-delimited values are returned as ``memoryview`` slices,
so a 500 MB ``raw_data`` field is never copied while the message around it is parsed.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Iterator

from ..errors import ModelFormatError

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5

Buffer = bytes | bytearray | memoryview
# A field's value: an int for varint and fixed-width fields, a memoryview for length-delimited ones.
Value = int | memoryview

_MAX_VARINT_BYTES = 10


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode one base-128 varint starting at ``pos``; return (value, position after it)."""
    value = 0
    shift = 0
    for count in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise ModelFormatError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            # A 10-byte varint may only carry one more bit (64 bits in all).
            if count == _MAX_VARINT_BYTES - 1 and byte > 1:
                raise ModelFormatError(f"varint longer than 64 bits ending at byte {pos}")
            return value, pos
        shift += 7
    raise ModelFormatError(f"varint longer than 10 bytes ending at byte {pos}")


def to_signed64(value: int) -> int:
    """int32/int64 fields store negative numbers as 64-bit two's complement varints."""
    return value - (1 << 64) if value >= (1 << 63) else value


def iter_fields(
    data: Buffer, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, Value]]:
    """Yield (field number, wire type, value) for every field of one message.

    The value is an ``int`` for varint and fixed-width fields (fixed ones are the raw little-endian
    unsigned bits; see ``fixed32_to_float``) and a ``memoryview`` for length-delimited fields.
    Groups (wire types 3 and 4) are deprecated and never used by ONNX: they are rejected.
    """
    buf = data if isinstance(data, memoryview) else memoryview(data)
    if buf.ndim != 1 or buf.itemsize != 1:
        buf = buf.cast("B")
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        value: Value
        if field == 0:
            raise ModelFormatError(f"invalid field number 0 at byte {pos}")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == FIXED64:
            if pos + 8 > end:
                raise ModelFormatError(f"truncated 64-bit field {field} at byte {pos}")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise ModelFormatError(f"truncated 32-bit field {field} at byte {pos}")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        elif wire == LEN:
            length, pos = read_varint(buf, pos, end)
            if length > end - pos:
                raise ModelFormatError(
                    f"field {field} claims {length} bytes at byte {pos} but only {end - pos} remain"
                )
            value = buf[pos : pos + length]
            pos += length
        else:
            raise ModelFormatError(f"unsupported wire type {wire} for field {field} at byte {pos}")
        yield field, wire, value


def fixed32_to_float(bits: int) -> float:
    return struct.unpack("<f", bits.to_bytes(4, "little"))[0]


def _int(value: Value) -> int:
    """The value of a varint or fixed-width field (the caller checked its wire type)."""
    assert isinstance(value, int)
    return value


def _view(value: Value) -> memoryview:
    """The value of a length-delimited field (the caller checked its wire type)."""
    assert isinstance(value, memoryview)
    return value


def unpack_varints(data: memoryview) -> list[int]:
    """Decode a packed repeated varint field (its whole payload)."""
    values = []
    pos, end = 0, len(data)
    while pos < end:
        value, pos = read_varint(data, pos, end)
        values.append(value)
    return values


class Message:
    """The fields of one message, grouped by field number, with typed accessors.

    Repeated scalar accessors accept both encodings, and even a mix of them, because the
    protobuf spec requires parsers to (writers may choose either).
    """

    def __init__(self, data: Buffer, what: str = "message"):
        self.what = what
        self.fields: dict[int, list[tuple[int, Value]]] = {}
        for field, wire, value in iter_fields(data):
            self.fields.setdefault(field, []).append((wire, value))

    def has(self, field: int) -> bool:
        return field in self.fields

    def _expect(self, field: int, wire: int, got: int) -> None:
        if got != wire:
            raise ModelFormatError(
                f"{self.what}: field {field} has wire type {got}, expected {wire}"
            )

    def _last(self, field: int, wire: int) -> Value:
        # Protobuf semantics: for a repeated occurrence of a singular field, the last one wins.
        got, value = self.fields[field][-1]
        self._expect(field, wire, got)
        return value

    def varint(self, field: int, default: int = 0) -> int:
        return to_signed64(_int(self._last(field, VARINT))) if field in self.fields else default

    def float32(self, field: int, default: float = 0.0) -> float:
        return (
            fixed32_to_float(_int(self._last(field, FIXED32))) if field in self.fields else default
        )

    def bytes(self, field: int) -> memoryview:
        return _view(self._last(field, LEN)) if field in self.fields else memoryview(b"")

    def string(self, field: int, default: str = "") -> str:
        if field not in self.fields:
            return default
        try:
            return bytes(_view(self._last(field, LEN))).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"{self.what}: field {field} is not valid UTF-8 text") from None

    def messages(self, field: int) -> list[memoryview]:
        out = []
        for wire, value in self.fields.get(field, ()):
            self._expect(field, LEN, wire)
            out.append(_view(value))
        return out

    def strings(self, field: int) -> list[str]:
        try:
            return [bytes(v).decode("utf-8") for v in self.messages(field)]
        except UnicodeDecodeError:
            raise ModelFormatError(f"{self.what}: field {field} is not valid UTF-8 text") from None

    def varints(self, field: int) -> list[int]:
        """A repeated int32/int64/uint64/enum field, sign-corrected."""
        out: list[int] = []
        for wire, value in self.fields.get(field, ()):
            if wire == VARINT:
                out.append(to_signed64(_int(value)))
            elif wire == LEN:
                out.extend(to_signed64(v) for v in unpack_varints(_view(value)))
            else:
                self._expect(field, VARINT, wire)
        return out

    def fixed_array(self, field: int, wire: int) -> builtins.bytes:
        """A repeated float (FIXED32) or double (FIXED64) field as its little-endian bytes."""
        size = 4 if wire == FIXED32 else 8
        parts = []
        for got, value in self.fields.get(field, ()):
            if got == wire:
                parts.append(_int(value).to_bytes(size, "little"))
            elif got == LEN:
                value = _view(value)
                if len(value) % size:
                    raise ModelFormatError(
                        f"{self.what}: packed field {field} has {len(value)} bytes, "
                        f"not a multiple of {size}"
                    )
                parts.append(bytes(value))
            else:
                self._expect(field, wire, got)
        return b"".join(parts)
