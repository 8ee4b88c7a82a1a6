"""The Thrift compact-protocol codec (``oupsish.thrift``) against a plain reference.

The codec is written flat for speed; the reference below is the straightforward one it
replaced, one method per wire type. Both must decode any bytes to the same structs or
both refuse them, and encode any struct to the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from oupsish.thrift import (
    BINARY,
    BOOL_FALSE,
    BOOL_TRUE,
    BYTE,
    DOUBLE,
    I16,
    I32,
    I64,
    LIST,
    MAX_DEPTH,
    SET,
    STRUCT,
    Struct,
    Template,
    ThriftError,
    decode,
    encode,
)

# --- the reference ---------------------------------------------------------------------------


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


def reference_decode(data: bytes) -> tuple[Struct, int]:
    reader = _Reader(data)
    return reader.struct(), reader.position


def reference_encode(value: Struct) -> bytes:
    out = bytearray()
    _struct(out, value)
    return bytes(out)


# --- the codec against it --------------------------------------------------------------------


def _footer(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    data = sink.getvalue().to_pybytes()
    (size,) = struct.unpack("<I", data[-8:-4])
    return data[-8 - size : -8]


FOOTERS = [
    _footer(
        pa.table(
            {
                "v": [1.0, None, 3.0],
                "s": ["x", None, "z"],
                "t": pa.array([1, 2, 3], pa.timestamp("ms", tz="UTC")),
                "b": [True, False, None],
                "l": [[1, 2], None, [3]],
            }
        ),
        **options,
    )
    for options in (
        {},
        {"use_dictionary": False, "compression": "snappy"},
        {"write_page_index": True, "write_statistics": False},
    )
]


def _same_outcome(data: bytes) -> None:
    try:
        expected = reference_decode(data)
    except ThriftError:
        with pytest.raises(ThriftError):
            decode(data)
        return
    assert decode(data) == expected
    assert encode(expected[0]) == reference_encode(expected[0])


@pytest.mark.parametrize("footer", FOOTERS)
def test_footers_decode_as_the_reference_and_round_trip(footer: bytes) -> None:
    metadata, used = decode(footer)
    assert (metadata, used) == reference_decode(footer)
    assert used == len(footer)
    assert encode(metadata) == footer


@given(st.binary(max_size=200))
def test_any_bytes_decode_as_the_reference(data: bytes) -> None:
    _same_outcome(data)


@given(st.sampled_from(FOOTERS), st.data())
def test_damaged_footers_decode_as_the_reference(footer: bytes, data: st.DataObject) -> None:
    damaged = bytearray(footer)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    _same_outcome(bytes(damaged[:cut]))


_SCALARS = {
    I16: st.integers(-(2**15), 2**15 - 1),
    I32: st.integers(-(2**31), 2**31 - 1),
    I64: st.integers(-(2**63), 2**63 - 1),
    BYTE: st.integers(0, 255),
    DOUBLE: st.floats(allow_nan=False),
    BINARY: st.binary(max_size=300),
}


def _values(depth: int) -> st.SearchStrategy[tuple[int, Any]]:
    scalars = st.one_of(
        *[st.tuples(st.just(kind), value) for kind, value in _SCALARS.items()],
        st.sampled_from([(BOOL_TRUE, None), (BOOL_FALSE, None)]),
    )
    if depth >= 3:
        return scalars
    structs = _structs(depth + 1).map(lambda item: (STRUCT, item))
    element_kinds = st.sampled_from([I32, I64, BINARY, BOOL_TRUE, STRUCT])
    lists = element_kinds.flatmap(lambda kind: _lists(kind, depth + 1))
    return st.one_of(scalars, structs, lists)


def _lists(kind: int, depth: int) -> st.SearchStrategy[tuple[int, Any]]:
    if kind == BOOL_TRUE:
        items: st.SearchStrategy[Any] = st.booleans()
    elif kind == STRUCT:
        items = _structs(depth)
    else:
        items = _SCALARS[kind]
    return st.tuples(st.sampled_from([LIST, SET]), st.lists(items, max_size=20)).map(
        lambda pair: (pair[0], (kind, pair[1]))
    )


def _structs(depth: int) -> st.SearchStrategy[Struct]:
    return st.dictionaries(st.integers(1, 400), _values(depth), max_size=6).map(
        lambda fields: Struct(dict(sorted(fields.items())))
    )


@given(_structs(0))
def test_structs_encode_as_the_reference_and_decode_back(value: Struct) -> None:
    data = encode(value)
    assert data == reference_encode(value)
    assert decode(data) == reference_decode(data) == (value, len(data))


def test_nesting_is_bounded() -> None:
    value = Struct()
    for _ in range(MAX_DEPTH + 2):
        value = Struct({1: (STRUCT, value)})
    with pytest.raises(ThriftError, match="too deep"):
        decode(encode(value))


_FILLABLE = (I16, I32, I64, BINARY)


def _with_holes(
    value: Any, wire_type: int, template: Template, values: dict[Any, Any], draw: Any
) -> Any:
    """Return ``value`` with some integer and binary leaves, at any depth, made holes."""
    if wire_type in _FILLABLE:
        if not draw(st.booleans()):
            return value
        key = len(values)
        values[key] = value
        return template.binary(key) if wire_type == BINARY else template.integer(key)
    if wire_type == STRUCT:
        return Struct(
            {
                field_id: (kind, _with_holes(item, kind, template, values, draw))
                for field_id, (kind, item) in value.fields.items()
            }
        )
    if wire_type in (LIST, SET):
        element_type, items = value
        return element_type, [
            _with_holes(item, element_type, template, values, draw) for item in items
        ]
    return value


@given(_structs(0), st.data())
def test_templates_encode_as_the_struct_with_their_values(
    value: Struct, data: st.DataObject
) -> None:
    template = Template()
    values: dict[Any, Any] = {}
    with_holes = _with_holes(value, STRUCT, template, values, data.draw)
    original = encode(value)
    # A value encoded as a placeholder's bytes is taken for its hole, as documented: the
    # writers compare what their templates make with pyarrow's files instead. (Hypothesis
    # draws constants found in the source, the placeholders' base among them.)
    assume(not any(placeholder in original for placeholder in template._placeholders))
    template.compile(with_holes)
    assert template.encode(values) == original


def test_a_template_hole_takes_its_value_everywhere_and_must_be_there() -> None:
    template = Template()
    rows = template.integer("rows")
    with pytest.raises(ThriftError, match="not compiled"):
        template.encode({"rows": 1})
    struct_ = Struct({1: (I64, rows), 2: (LIST, (I64, [0, rows])), 3: (BINARY, b"x")})
    template.compile(struct_)
    expected = Struct({1: (I64, 70_000), 2: (LIST, (I64, [0, 70_000])), 3: (BINARY, b"x")})
    assert template.encode({"rows": 70_000}) == encode(expected)
    template.binary("missing")
    with pytest.raises(ThriftError, match="'missing' is not in the struct"):
        template.compile(struct_)
