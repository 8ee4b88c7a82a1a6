"""A minimal Thrift compact-protocol codec, enough to rewrite a Parquet footer.

Structs decode to :class:`Struct` (their fields in order, each with its wire type), so
that a struct re-encodes to the same bytes, fields this module knows nothing about
included. Decoding is bounded: it reads only within the given bytes, refuses nesting
deeper than ``MAX_DEPTH`` and collections longer than the bytes left, and raises
:class:`ThriftError` on anything malformed.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BINARY",
    "I32",
    "I64",
    "LIST",
    "STRUCT",
    "Struct",
    "Template",
    "ThriftError",
    "decode",
    "encode",
    "varint",
]

BOOL_TRUE, BOOL_FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(1, 13)
MAX_DEPTH = 32
_INTEGERS = frozenset((I16, I32, I64))
_COLLECTIONS = frozenset((LIST, SET))
_BOOLEANS = frozenset((BOOL_TRUE, BOOL_FALSE))


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


def _varint_at(data: bytes, position: int) -> tuple[int, int]:
    """Return the varint at ``position`` and the position after it."""
    result = shift = 0
    size = len(data)
    while True:
        if position >= size:
            raise ThriftError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ThriftError("varint too long")


def _value_at(data: bytes, position: int, wire_type: int, depth: int) -> tuple[Any, int]:
    """Return the value of ``wire_type`` at ``position`` and the position after it.

    Written flat, single-byte varints inline: footers are decoded on every coalescing
    write, and method calls per value made this twice as slow.
    """
    if wire_type in _INTEGERS:
        if position < len(data) and data[position] < 0x80:
            value = data[position]
            position += 1
        else:
            value, position = _varint_at(data, position)
        return (value >> 1) ^ -(value & 1), position
    if wire_type == STRUCT:
        return _struct_at(data, position, depth + 1)
    if wire_type == BINARY:
        if position < len(data) and data[position] < 0x80:
            size = data[position]
            position += 1
        else:
            size, position = _varint_at(data, position)
        end = position + size
        if end > len(data):
            raise ThriftError("truncated value")
        return data[position:end], end
    if wire_type in _COLLECTIONS:
        if position >= len(data):
            raise ThriftError("truncated struct")
        header = data[position]
        position += 1
        size, element_type = header >> 4, header & 0x0F
        if size == 15:
            size, position = _varint_at(data, position)
        if size > len(data) - position:
            raise ThriftError("list longer than the bytes left")
        if element_type in _BOOLEANS:
            return (
                element_type,
                [byte == BOOL_TRUE for byte in data[position : position + size]],
            ), (position + size)
        items = []
        for _ in range(size):
            item, position = _value_at(data, position, element_type, depth + 1)
            items.append(item)
        return (element_type, items), position
    if wire_type in _BOOLEANS:
        return None, position
    if wire_type == BYTE:
        if position >= len(data):
            raise ThriftError("truncated struct")
        return data[position], position + 1
    if wire_type == DOUBLE:
        if position + 8 > len(data):
            raise ThriftError("truncated value")
        return struct.unpack_from("<d", data, position)[0], position + 8
    raise ThriftError(f"unsupported wire type {wire_type}")


def _struct_at(data: bytes, position: int, depth: int) -> tuple[Struct, int]:
    if depth > MAX_DEPTH:
        raise ThriftError("structs nested too deep")
    fields: dict[int, tuple[int, Any]] = {}
    field_id = 0
    size = len(data)
    while True:
        if position >= size:
            raise ThriftError("truncated struct")
        header = data[position]
        position += 1
        if header == 0:
            return Struct(fields), position
        delta, wire_type = header >> 4, header & 0x0F
        if delta:
            field_id += delta
        else:
            value, position = _varint_at(data, position)
            field_id = (value >> 1) ^ -(value & 1)
        item, position = _value_at(data, position, wire_type, depth)
        fields[field_id] = (wire_type, item)


def decode(data: bytes | memoryview) -> tuple[Struct, int]:
    """Decode the struct at the start of ``data``; return it and the bytes it took."""
    return _struct_at(bytes(data), 0, 0)


def _varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint(value: int) -> bytes:
    """Return a non-negative integer as an unsigned varint (Parquet's RLE headers too)."""
    out = bytearray()
    _varint(out, value)
    return bytes(out)


def _value(out: bytearray, wire_type: int, value: Any) -> None:
    if wire_type in _INTEGERS:
        zigzag = (value << 1) ^ (value >> 63)
        if 0 <= zigzag <= 0x7F:
            out.append(zigzag)
        else:
            _varint(out, zigzag)
    elif wire_type == STRUCT:
        _struct(out, value)
    elif wire_type == BINARY:
        _varint(out, len(value))
        out += value
    elif wire_type in _COLLECTIONS:
        element_type, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | element_type)
        else:
            out.append(0xF0 | element_type)
            _varint(out, len(items))
        if element_type in _BOOLEANS:
            out += bytes(BOOL_TRUE if item else BOOL_FALSE for item in items)
        else:
            for item in items:
                _value(out, element_type, item)
    elif wire_type in _BOOLEANS:
        return
    elif wire_type == BYTE:
        out.append(value & 0xFF)
    elif wire_type == DOUBLE:
        out += struct.pack("<d", value)
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
            _varint(out, (field_id << 1) ^ (field_id >> 63))
        _value(out, wire_type, item)
        previous = field_id
    out.append(0)


def encode(value: Struct) -> bytes:
    """Encode a struct (fields in increasing id order)."""
    out = bytearray()
    _struct(out, value)
    return bytes(out)


_HOLE_INT_BASE = 0x3A5C_9E00_0000_0000
"""Integer holes are this plus a count: a 9-byte varint no footer field holds by chance."""


class Template:
    """A struct encoded once, with holes for the values that vary from one encoding to the next.

    Build the struct with :meth:`integer` and :meth:`binary` in place of the values that vary
    (fields or list items of integer or binary types), :meth:`compile` it, then
    :meth:`encode` it with the holes' values: only those are encoded again. A hole may be
    in several places (all take its value); one not found makes :meth:`compile` raise.
    Placeholders are 9-byte varints, far above any count or size a footer holds, and
    marked binaries that no UTF-8 text holds; but an integer of that value, or raw bytes
    elsewhere in the struct, could: :meth:`compile` would then take them for a hole, so
    check what the template encodes (``plain_encode`` compares whole files with pyarrow's).
    """

    def __init__(self) -> None:
        self._placeholders: dict[bytes, tuple[Hashable, int]] = {}
        self._parts: list[bytes] | None = None  # set by compile()
        self._holes: list[tuple[Hashable, int]] = []

    def _add(self, key: Hashable, wire_type: int, value: Any) -> None:
        out = bytearray()
        _value(out, wire_type, value)
        self._placeholders[bytes(out)] = (key, wire_type)

    def integer(self, key: Hashable) -> int:
        """Return the placeholder of an integer (i16, i32 or i64) hole named ``key``."""
        value = _HOLE_INT_BASE + len(self._placeholders)
        self._add(key, I64, value)
        return value

    def binary(self, key: Hashable) -> bytes:
        """Return the placeholder of a binary hole named ``key``."""
        value = b"\x00\xfeoupsish-hole-%d\xfe\x00" % len(self._placeholders)
        self._add(key, BINARY, value)
        return value

    def compile(self, value: Struct) -> None:
        """Encode ``value``, a struct holding every placeholder made."""
        encoded = encode(value)
        found = []
        for placeholder, hole in self._placeholders.items():
            at = encoded.find(placeholder)
            if at < 0:
                raise ThriftError(f"hole {hole[0]!r} is not in the struct")
            while at >= 0:
                found.append((at, placeholder, hole))
                at = encoded.find(placeholder, at + len(placeholder))
        found.sort()
        parts, holes, start = [], [], 0
        for at, placeholder, hole in found:
            if at < start:
                raise ThriftError("holes overlap")
            parts.append(encoded[start:at])
            holes.append(hole)
            start = at + len(placeholder)
        parts.append(encoded[start:])
        self._parts, self._holes = parts, holes

    def encode(self, values: Mapping[Any, Any]) -> bytes:
        """Return the struct compiled with each hole's value from ``values``, by key."""
        parts = self._parts
        if parts is None:
            raise ThriftError("the template is not compiled")
        out = bytearray(parts[0])
        for (key, wire_type), part in zip(self._holes, parts[1:], strict=True):
            _value(out, wire_type, values[key])
            out += part
        return bytes(out)
