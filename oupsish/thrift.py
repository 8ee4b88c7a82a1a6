"""A minimal Thrift compact-protocol codec, enough to rewrite a Parquet footer.

Structs decode to :class:`Struct` (their fields in order, each with its wire type), so
that a struct re-encodes to the same bytes, fields this module knows nothing about
included. Decoding is bounded: it reads only within the given bytes, refuses nesting
deeper than ``MAX_DEPTH`` and collections longer than the bytes left, and raises
:class:`ThriftError` on anything malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BINARY", "I32", "I64", "LIST", "STRUCT", "Struct", "ThriftError", "decode", "encode"]

BOOL_TRUE, BOOL_FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(1, 13)
MAX_DEPTH = 32


class ThriftError(ValueError):
    """The bytes are not a valid compact-protocol struct (or use what this codec lacks)."""


@dataclass
class Struct:
    """A decoded struct: ``fields[id] = (wire type, value)``, in the order read.

    Lists decode to ``(element type, [values])``; booleans to their type
    (``BOOL_TRUE``/``BOOL_FALSE``) with the value ``None`` as a field, to ``bool`` in a list.
    """

    fields: dict[int, tuple[int, Any]] = field(default_factory=dict)

    def get(self, field_id: int, default: Any = None) -> Any:
        """Return the value of a field, ``default`` if absent."""
        return self.fields[field_id][1] if field_id in self.fields else default

    def set(self, field_id: int, wire_type: int, value: Any) -> None:
        """Set a field (added at the end if new)."""
        self.fields[field_id] = (wire_type, value)


class _Reader:
    def __init__(self, data: bytes | memoryview) -> None:
        self.data = bytes(data)
        self.position = 0

    def byte(self) -> int:
        position = self.position
        if position >= len(self.data):
            raise ThriftError("truncated struct")
        self.position = position + 1
        return self.data[position]

    def varint(self) -> int:
        data, position = self.data, self.position
        result = shift = 0
        while True:
            if position >= len(data):
                raise ThriftError("truncated varint")
            byte = data[position]
            position += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                self.position = position
                return result
            shift += 7
            if shift > 63:
                raise ThriftError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def take(self, size: int) -> bytes:
        if size < 0 or self.position + size > len(self.data):
            raise ThriftError("truncated value")
        value = self.data[self.position : self.position + size]
        self.position += size
        return value

    def value(self, wire_type: int, depth: int) -> Any:
        if wire_type in (I16, I32, I64):
            value = self.varint()
            return (value >> 1) ^ -(value & 1)
        if wire_type == STRUCT:
            return self.struct(depth + 1)
        if wire_type in (BOOL_TRUE, BOOL_FALSE):
            return None
        if wire_type == BINARY:
            return self.take(self.varint())
        if wire_type in (LIST, SET):
            header = self.byte()
            size, element_type = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            if size > len(self.data) - self.position:
                raise ThriftError("list longer than the bytes left")
            if element_type in (BOOL_TRUE, BOOL_FALSE):
                return element_type, [self.byte() == BOOL_TRUE for _ in range(size)]
            return element_type, [self.value(element_type, depth + 1) for _ in range(size)]
        if wire_type == BYTE:
            return self.byte()
        if wire_type == DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        raise ThriftError(f"unsupported wire type {wire_type}")

    def struct(self, depth: int = 0) -> Struct:
        if depth > MAX_DEPTH:
            raise ThriftError("structs nested too deep")
        fields: dict[int, tuple[int, Any]] = {}
        field_id = 0
        while True:
            header = self.byte()
            if header == 0:
                return Struct(fields)
            delta, wire_type = header >> 4, header & 0x0F
            field_id = field_id + delta if delta else self.zigzag()
            fields[field_id] = (wire_type, self.value(wire_type, depth))


def decode(data: bytes | memoryview) -> tuple[Struct, int]:
    """Decode the struct at the start of ``data``; return it and the bytes it took."""
    reader = _Reader(data)
    return reader.struct(), reader.position


def _varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(out: bytearray, value: int) -> None:
    _varint(out, (value << 1) ^ (value >> 63))


def _value(out: bytearray, wire_type: int, value: Any) -> None:
    if wire_type in (BOOL_TRUE, BOOL_FALSE):
        return
    if wire_type == BYTE:
        out.append(value & 0xFF)
    elif wire_type in (I16, I32, I64):
        _zigzag(out, value)
    elif wire_type == DOUBLE:
        out += struct.pack("<d", value)
    elif wire_type == BINARY:
        _varint(out, len(value))
        out += value
    elif wire_type in (LIST, SET):
        element_type, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | element_type)
        else:
            out.append(0xF0 | element_type)
            _varint(out, len(items))
        for item in items:
            if element_type in (BOOL_TRUE, BOOL_FALSE):
                out.append(BOOL_TRUE if item else BOOL_FALSE)
            else:
                _value(out, element_type, item)
    elif wire_type == STRUCT:
        _struct(out, value)
    else:
        raise ThriftError(f"unsupported wire type {wire_type}")


def _struct(out: bytearray, value: Struct) -> None:
    previous = 0
    for field_id, (wire_type, item) in sorted(value.fields.items()):
        delta = field_id - previous
        if 0 < delta <= 15:
            out.append(delta << 4 | wire_type)
        else:
            out.append(wire_type)
            _zigzag(out, field_id)
        _value(out, wire_type, item)
        previous = field_id
    out.append(0)


def encode(value: Struct) -> bytes:
    """Encode a struct (fields in increasing id order)."""
    out = bytearray()
    _struct(out, value)
    return bytes(out)
