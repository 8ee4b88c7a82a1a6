"""Concatenate one-row-group Parquet files into one, copying their pages as they are.

Coalescing the trailing row groups of a dataset (``max_n_off_target_rgs``) rewrites rows
that were encoded moments before. A column chunk is a run of self-contained pages, so the
merged row group can instead be assembled from the files' encoded pages: each column's
pages, file after file, and a footer whose column statistics are merged. Nothing is
decoded or re-encoded; the result reads back exactly as the concatenated rows.

Only plain cases are stitched: files with the same schema and codecs, and no dictionary
page, page index, bloom filter or encryption, whose statistics this module knows how to
order. Anything else returns ``None``, and the caller encodes the rows instead.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from oupsish.thrift import (
    BINARY,
    BOOL_FALSE,
    BOOL_TRUE,
    I32,
    I64,
    LIST,
    STRUCT,
    Struct,
    ThriftError,
    decode,
    encode,
)

__all__ = ["Piece", "Source", "Span", "concatenate_row_groups", "footer_agrees", "remember_footer"]

MAGIC = b"PAR1"

# Physical types (parquet.thrift: Type)
_BOOLEAN, _INT32, _INT64, _INT96, _FLOAT, _DOUBLE, _BYTE_ARRAY, _FLBA = range(8)
_DICTIONARY_ENCODINGS = {2, 8}  # PLAIN_DICTIONARY, RLE_DICTIONARY
_UNSIGNED_CONVERTED_TYPES = {11, 12, 13, 14}  # UINT_8 ... UINT_64
_DECIMAL_CONVERTED_TYPE = 5
_TIMESTAMP_CONVERTED_UNITS = {9: "ms", 10: "us"}  # TIMESTAMP_MILLIS, TIMESTAMP_MICROS
_TIME_CONVERTED_UNITS = {7: "ms", 8: "us"}  # TIME_MILLIS, TIME_MICROS
_DECIMAL_LOGICAL_TYPE, _TIME_LOGICAL_TYPE, _TIMESTAMP_LOGICAL_TYPE = 5, 7, 8
_INTEGER_LOGICAL_TYPE = 10
_TIME_UNITS = {1: "ms", 2: "us", 3: "ns"}  # parquet.thrift: TimeUnit
_UNIT_EXPONENTS = {"s": 0, "ms": 3, "us": 6, "ns": 9}  # a unit is 10**-exponent seconds
_MS_PER_DAY = 86_400_000

# Fields of the footer's structs (parquet.thrift) that this module rewrites or copies.
_FILE_FIELDS = {1, 2, 3, 4, 5, 6, 7}  # version .. column_orders (8, 9: encryption)
_ROW_GROUP_FIELDS = {1, 2, 3, 4, 5, 6, 7}
_CHUNK_FIELDS = {2, 3}  # file_offset, meta_data (1: file_path; 4-7: page index; 8, 9: crypto)
_COLUMN_FIELDS = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16}  # no 10, 11, 14, 15, 17: index,
# dictionary page, bloom filter, geospatial statistics


@dataclass(frozen=True)
class Source:
    """A Parquet file to concatenate: its size, and how to read ``length`` bytes at ``offset``."""

    size: int
    read: Callable[[int, int], bytes | memoryview]

    @classmethod
    def of_bytes(cls, data: bytes | memoryview) -> Source:
        """Return the source of a file held in memory."""
        return cls(len(data), lambda offset, length: data[offset : offset + length])


@dataclass(frozen=True)
class Span:
    """``length`` bytes at ``offset`` of the input file number ``source``."""

    source: int
    offset: int
    length: int


Piece = bytes | Span
"""Part of a concatenated file: bytes, or a span of an input file to copy."""


class _RefusedError(Exception):
    """The files cannot be stitched: the caller encodes their rows instead."""


_FOOTER_ERRORS = (
    _RefusedError,
    ThriftError,
    AttributeError,  # a damaged footer puts a value where a struct belongs
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    struct.error,
)
"""What reading a footer raises when it is not one this module handles."""


def _require(condition: bool) -> None:
    if not condition:
        raise _RefusedError


_decoded: OrderedDict[bytes, Struct | Callable[[], Struct]] = OrderedDict()
_decoded_lock = threading.Lock()
DECODED_FOOTERS = 256
"""Footers kept decoded (a few kB each): a coalesced file's footer is decoded once."""
MAX_FOOTER_BYTES = 16 * 2**20
"""Larger footers are not read: ours take a few kB, a damaged length could claim GBs."""


def _after_fork() -> None:
    # Another thread may have held the lock at the fork: the child gets a new one.
    global _decoded_lock
    _decoded_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def remember_footer(footer: bytes, metadata: Struct | Callable[[], Struct]) -> None:
    """Keep ``metadata`` as the decoded form of ``footer``, a footer just written.

    A coalescing write reads the footers of the files it copies: the write that made a
    file knows its footer already. ``metadata`` must be what decoding ``footer`` gives, or
    a pure function returning it, called when first needed (threads may both call it; it
    must not hold on to much memory); it is not to be modified afterwards.
    """
    _remember(footer, metadata)


def _remember(footer: bytes, metadata: Struct | Callable[[], Struct]) -> None:
    with _decoded_lock:
        _decoded[footer] = metadata
        while len(_decoded) > DECODED_FOOTERS:
            _decoded.popitem(last=False)


def _footer(source: Source) -> tuple[Struct, int]:
    """Return a file's FileMetaData (not to be modified) and where its footer starts."""
    _require(source.size >= 12)
    tail = source.read(source.size - 8, 8)
    _require(len(tail) == 8 and tail[4:] == MAGIC)
    (size,) = struct.unpack("<I", tail[:4])
    start = source.size - 8 - size
    _require(start >= 4 and size <= MAX_FOOTER_BYTES)
    footer = bytes(source.read(start, size))
    _require(len(footer) == size)
    with _decoded_lock:
        known = _decoded.get(footer)
    if isinstance(known, Struct):
        return known, start
    if known is not None:
        metadata = known()
    else:
        metadata, used = decode(footer)
        _require(used == size and set(metadata.fields) <= _FILE_FIELDS)
    _remember(footer, metadata)
    return metadata, start


def _sort_key(element: Struct) -> tuple[Callable[[bytes], Any], bool]:
    """How the statistics of a leaf column order: raw bytes to a comparable, and if signed."""
    physical = element.get(1)
    converted = element.get(6)
    logical = element.get(10)
    logical_kind = next(iter(logical.fields), None) if isinstance(logical, Struct) else None
    if physical in (_INT32, _INT64):
        unsigned = converted in _UNSIGNED_CONVERTED_TYPES
        if logical_kind == _INTEGER_LOGICAL_TYPE:
            int_type = logical.get(_INTEGER_LOGICAL_TYPE)
            unsigned = int_type.fields.get(2, (BOOL_TRUE, None))[0] == BOOL_FALSE
        code = {(_INT32, False): "<i", (_INT32, True): "<I", (_INT64, False): "<q"}.get(
            (physical, unsigned), "<Q"
        )
        return (lambda raw: struct.unpack(code, raw)[0]), not unsigned
    if physical in (_FLOAT, _DOUBLE):
        code = "<f" if physical == _FLOAT else "<d"

        def number(raw: bytes) -> float:
            value: float = struct.unpack(code, raw)[0]
            _require(value == value)  # NaN has no place in statistics
            return value

        return number, True
    if physical == _BOOLEAN:
        return (lambda raw: raw[0]), True
    if physical == _BYTE_ARRAY:
        decimal = converted == _DECIMAL_CONVERTED_TYPE or logical_kind == _DECIMAL_LOGICAL_TYPE
        _require(not decimal)  # signed two's complement: not a byte-wise order
        return bytes, False
    raise _RefusedError  # INT96, FIXED_LEN_BYTE_ARRAY: orders we do not merge


def _leaves(schema: list[Struct]) -> list[Struct]:
    return [element for element in schema[1:] if not element.get(5)]


def _merge_statistics(
    parts: list[Struct], values: list[int], key: Callable[[bytes], Any], signed: bool
) -> Struct:
    """Merge a column's statistics over the files (``values``: its values in each)."""
    merged = Struct()
    counts = [part.get(3) for part in parts]
    if all(count is not None for count in counts):
        merged.set(3, I64, sum(counts))
    # The deprecated min and max (1, 2) follow a signed order whatever the type: writers
    # only fill them for types that sort signed, and only those are merged.
    pairs = ((1, 2), (5, 6)) if signed else ((5, 6),)
    for max_id, min_id in pairs:
        maxs, mins, complete = [], [], True
        for part, n_values, count in zip(parts, values, counts, strict=True):
            if max_id in part.fields and min_id in part.fields:
                maxs.append(part.get(max_id))
                mins.append(part.get(min_id))
            elif count is None or n_values > count:  # values, but no bounds for them
                complete = False
        if complete and maxs:
            merged.set(max_id, BINARY, max(maxs, key=key))
            merged.set(min_id, BINARY, min(mins, key=key))
    for flag_id in (7, 8):  # is_max_value_exact, is_min_value_exact
        flags = [part.fields.get(flag_id, (None, None))[0] for part in parts]
        if all(flag in (BOOL_TRUE, BOOL_FALSE) for flag in flags):
            merged.set(
                flag_id, BOOL_TRUE if all(f == BOOL_TRUE for f in flags) else BOOL_FALSE, None
            )
    return merged


def _merge_encoding_stats(parts: list[Struct]) -> list[Struct]:
    counts: dict[tuple[int, int], int] = {}
    for part in parts:
        _, items = part.get(13, (STRUCT, []))
        for item in items:
            page = (item.get(1), item.get(2))
            counts[page] = counts.get(page, 0) + item.get(3, 0)
    merged = []
    for (page_type, encoding), count in counts.items():
        entry = Struct()
        entry.set(1, I32, page_type)
        entry.set(2, I32, encoding)
        entry.set(3, I32, count)
        merged.append(entry)
    return merged


def _column(
    columns: list[Struct], start: int, order: tuple[Callable[[bytes], Any], bool]
) -> Struct:
    """Merge the metadata of one column's chunks, copied back to back from ``start``."""
    first = columns[0]
    merged = Struct()
    for field_id in (1, 3, 4):  # type, path_in_schema, codec
        values = [column.get(field_id) for column in columns]
        _require(all(value == values[0] for value in values))
        merged.fields[field_id] = first.fields[field_id]
    encodings: list[int] = []
    for column in columns:
        _require(set(column.fields) <= _COLUMN_FIELDS)
        for encoding in column.get(2)[1]:
            _require(encoding not in _DICTIONARY_ENCODINGS)
            if encoding not in encodings:
                encodings.append(encoding)
    merged.set(2, LIST, (I32, encodings))
    n_values = [column.get(5) for column in columns]
    merged.set(5, I64, sum(n_values))
    merged.set(6, I64, sum(column.get(6) for column in columns))
    merged.set(7, I64, sum(column.get(7) for column in columns))
    merged.set(9, I64, start)
    statistics = [column.get(12) for column in columns]
    if all(isinstance(part, Struct) for part in statistics):
        merged.set(12, STRUCT, _merge_statistics(statistics, n_values, *order))
    if all(13 in column.fields for column in columns):
        merged.set(13, LIST, (STRUCT, _merge_encoding_stats(columns)))
    return merged


def _stitch(files: Sequence[Source], n_rows: int) -> list[Piece]:
    footers = [_footer(source) for source in files]
    metadatas = [metadata for metadata, _ in footers]
    _require(sum(metadata.get(3) for metadata in metadatas) == n_rows)
    last = metadatas[-1]
    for metadata in metadatas:
        _require(metadata.get(2) == last.get(2))  # schema
        _require(metadata.get(7) == last.get(7))  # column orders
    row_groups: list[Struct] = []
    for metadata in metadatas:
        _, groups = metadata.get(4)
        _require(len(groups) == 1 and set(groups[0].fields) <= _ROW_GROUP_FIELDS)
        row_groups.append(groups[0])
    leaves = _leaves(last.get(2)[1])
    chunk_lists = [group.get(1)[1] for group in row_groups]
    _require(all(len(chunks) == len(leaves) for chunks in chunk_lists))

    body: list[Piece] = [MAGIC]
    position = len(MAGIC)
    merged_chunks = []
    for index, leaf in enumerate(leaves):
        chunks = [chunk_list[index] for chunk_list in chunk_lists]
        columns = []
        for number, (chunk, (_, footer_start)) in enumerate(zip(chunks, footers, strict=True)):
            _require(set(chunk.fields) <= _CHUNK_FIELDS and isinstance(chunk.get(3), Struct))
            column = chunk.get(3)
            begin, size = column.get(9), column.get(7)
            _require(isinstance(begin, int) and isinstance(size, int))
            _require(len(MAGIC) <= begin and size >= 0 and begin + size <= footer_start)
            body.append(Span(number, begin, size))
            columns.append(column)
        merged = Struct()
        if 2 in chunks[0].fields:
            merged.set(2, I64, position if chunks[0].get(2) else 0)
        merged.set(3, STRUCT, _column(columns, position, _sort_key(leaf)))
        merged_chunks.append(merged)
        position += sum(column.get(7) for column in columns)

    group = Struct()
    group.set(1, LIST, (STRUCT, merged_chunks))
    group.set(2, I64, sum(row_group.get(2) for row_group in row_groups))
    group.set(3, I64, sum(row_group.get(3) for row_group in row_groups))
    if 4 in row_groups[-1].fields:  # sorting_columns: the last file's
        group.fields[4] = row_groups[-1].fields[4]
    if 5 in row_groups[0].fields:
        group.set(5, I64, len(MAGIC))
    if all(6 in row_group.fields for row_group in row_groups):
        group.set(6, I64, sum(row_group.get(6) for row_group in row_groups))
    if 7 in row_groups[0].fields:
        group.fields[7] = (row_groups[0].fields[7][0], 0)

    footer = Struct(dict(last.fields))
    footer.set(3, I64, n_rows)
    footer.set(4, LIST, (STRUCT, [group]))
    encoded = encode(footer)
    _remember(encoded, footer)  # the next coalescing write reads it again
    return [*body, encoded + struct.pack("<I", len(encoded)) + MAGIC]


def concatenate_row_groups(files: Sequence[Source], n_rows: int) -> list[Piece] | None:
    """Return one Parquet file holding the rows of ``files``, in order, as one row group.

    Each of ``files`` is a whole Parquet file of one row group; only their footers are
    read. The result is the new file in pieces, to write in order: bytes, and spans of
    ``files`` to copy. ``None`` when they cannot be stitched (see the module's
    documentation), or do not hold ``n_rows`` rows in all: encode the rows instead.
    """
    if len(files) < 2:
        return None
    try:
        return _stitch(files, n_rows)
    except _FOOTER_ERRORS:
        return None


def _exactly(integers: list[Any], numerator: int, denominator: int) -> list[int]:
    """Return ``integers`` times ``numerator / denominator``, refused unless exact."""
    _require(all(value * numerator % denominator == 0 for value in integers))
    return [value * numerator // denominator for value in integers]


def _unit(element: Struct, logical_id: int, converted_units: dict[int, str]) -> str:
    """Return the unit of a timestamp or time leaf, from its logical or converted type."""
    logical = element.get(10)
    kind = logical.get(logical_id) if isinstance(logical, Struct) else None
    if isinstance(kind, Struct) and isinstance(kind.get(2), Struct):
        unit = _TIME_UNITS.get(next(iter(kind.get(2).fields), 0))
    else:
        unit = converted_units.get(element.get(6))
    _require(unit is not None)
    return str(unit)


def _stored_values(values: pa.Array[Any], element: Struct) -> list[Any]:
    """Return ``values`` as a file's statistics hold them once decoded (:func:`_sort_key`).

    Views and Python integers: a pyarrow cast costs more than the rest of the check.
    """
    arrow_type = values.type
    if pa.types.is_timestamp(arrow_type) or pa.types.is_time(arrow_type):
        # Parquet has no seconds: pyarrow stores them as milliseconds.
        if pa.types.is_timestamp(arrow_type):
            unit = _unit(element, _TIMESTAMP_LOGICAL_TYPE, _TIMESTAMP_CONVERTED_UNITS)
        else:
            unit = _unit(element, _TIME_LOGICAL_TYPE, _TIME_CONVERTED_UNITS)
        shift = _UNIT_EXPONENTS[unit] - _UNIT_EXPONENTS[arrow_type.unit]
        integers = values.view(pa.int32() if arrow_type.bit_width == 32 else pa.int64())
        return _exactly(integers.to_pylist(), 10 ** max(shift, 0), 10 ** max(-shift, 0))
    if pa.types.is_duration(arrow_type):  # stored as integers of its unit
        return values.view(pa.int64()).to_pylist()
    if pa.types.is_date32(arrow_type):
        return values.view(pa.int32()).to_pylist()
    if pa.types.is_date64(arrow_type):  # stored as days
        return _exactly(values.view(pa.int64()).to_pylist(), 1, _MS_PER_DAY)
    if pa.types.is_string(arrow_type):
        return values.view(pa.binary()).to_pylist()
    if pa.types.is_large_string(arrow_type):
        return values.view(pa.large_binary()).to_pylist()
    _require(
        pa.types.is_integer(arrow_type)
        or pa.types.is_float32(arrow_type)
        or pa.types.is_float64(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
    )
    return values.to_pylist()


def _top_level_leaf(schema: list[Struct], name: str) -> int:
    """Return the position among the leaves of the top-level, non-nested column ``name``.

    The schema is flattened depth first: a group's children follow it, so counting the
    leaves of each top-level field's subtree gives the position of the next one's.
    """
    position, leaves = 1, 0
    for _ in range(schema[0].get(5)):
        element = schema[position]
        if element.get(4) == name.encode():
            _require(not element.get(5))
            return leaves
        pending = 1  # elements of this subtree still to skip
        while pending:
            children = schema[position].get(5)
            position += 1
            pending += (children or 0) - 1
            leaves += 0 if children else 1
    raise _RefusedError


def _footer_agrees(source: Source, n_rows: int, column: str, bounds: pa.Array[Any]) -> bool:
    metadata, _ = _footer(source)
    _require(metadata.get(3) == n_rows)
    schema = metadata.get(2)[1]
    leaves = _leaves(schema)
    index = _top_level_leaf(schema, column)
    _, groups = metadata.get(4)
    _require(len(groups) == 1)
    statistics = groups[0].get(1)[1][index].get(3).get(12)
    _require(isinstance(statistics, Struct) and {5, 6} <= set(statistics.fields))
    for flag_id in (7, 8):  # is_max_value_exact, is_min_value_exact: absent means exact
        _require(statistics.fields.get(flag_id, (BOOL_TRUE, None))[0] == BOOL_TRUE)
    decode_raw, _ = _sort_key(leaves[index])
    found = [decode_raw(statistics.get(6)), decode_raw(statistics.get(5))]
    return found == _stored_values(bounds, leaves[index])


def footer_agrees(source: Source, n_rows: int, column: str, bounds: pa.Array[Any]) -> bool:
    """Whether a one-row-group file's footer records ``n_rows`` rows and ``bounds`` of ``column``.

    ``bounds`` are the column's first and last values as recorded elsewhere; no data is
    read. A file replaced by another one with as many rows but another first or last value
    is caught before its pages are copied, as reading its column would catch it. ``False``
    also when the footer cannot tell: no exact statistics for the column, a nested column,
    or a type whose statistics this module does not decode.
    """
    try:
        return _footer_agrees(source, n_rows, column, bounds)
    except (*_FOOTER_ERRORS, pa.ArrowException):  # bounds not representable in its unit
        return False
