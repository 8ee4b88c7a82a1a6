"""Join Parquet files holding different columns of the same rows into one file.

pyarrow encodes a row group's columns one after another, on one thread. Encoding groups of
columns on several threads, each as its own one-row-group file, then joining those files
gives the file pyarrow would have written, byte for byte: a column chunk does not depend
on its neighbours, and its position is recorded only in the footer. The joined file is the
parts' column chunks back to back, and a footer whose schema, chunks and sizes are the
parts' put together, their offsets moved.

:func:`plan_groups` splits the columns; :func:`split_footer` and :func:`joined_footer` do
the joining. Only the files that pyarrow writes with the options of :mod:`oupsish.io` are
joined (no page index, bloom filter, sorting columns or encryption); anything else
raises :class:`JoinError`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from oupsish.stitch import MAGIC
from oupsish.thrift import BINARY, I32, I64, LIST, STRUCT, Struct, ThriftError, decode, encode

__all__ = ["MAGIC", "JoinError", "Part", "joined_footer", "plan_groups", "split_footer"]

# Fields of the footer's structs (parquet.thrift) that a part may hold.
_FILE_FIELDS = {1, 2, 3, 4, 5, 6, 7}  # version .. column_orders (8, 9: encryption)
_ROW_GROUP_FIELDS = {1, 2, 3, 5, 6, 7}  # no 4: sorting columns name columns by position
_CHUNK_FIELDS = {2, 3}  # file_offset, meta_data (1: file_path; 4-7: page index; 8, 9: crypto)
_COLUMN_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17}  # no 10, 14, 15: index
# page and bloom filter offsets
_ARROW_SCHEMA_KEY = b"ARROW:schema"


class JoinError(ValueError):
    """The parts are not files this module knows how to join."""


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise JoinError(f"cannot join the column groups' files: {problem}")


def plan_groups(sizes: Sequence[int], n_groups: int) -> list[range]:
    """Split columns, in order, into at most ``n_groups`` runs of about equal ``sizes``.

    Returns
    -------
    list of range
        Consecutive, non-empty runs of column positions covering all columns.
    """
    n_groups = max(1, min(n_groups, len(sizes)))
    total = sum(sizes)
    groups: list[range] = []
    start, seen = 0, 0
    for index, size in enumerate(sizes):
        seen += size
        left_columns = len(sizes) - index - 1
        left_groups = n_groups - len(groups) - 1
        # Close the run once it holds its share, or when each later group needs a column.
        if left_groups > 0 and (
            seen * n_groups >= total * (len(groups) + 1) or left_columns == left_groups
        ):
            groups.append(range(start, index + 1))
            start = index + 1
    groups.append(range(start, len(sizes)))
    return [group for group in groups if len(group)]


@dataclass(frozen=True)
class Part:
    """One part's footer (FileMetaData) and the size of its column data."""

    metadata: Struct
    data_size: int


def split_footer(end: bytes | memoryview) -> tuple[int, Struct]:
    """Find the footer in the last bytes of a Parquet file.

    Returns
    -------
    (int, Struct)
        Where in ``end`` the footer starts, and the file's metadata (FileMetaData).
    """
    size = len(end)
    _require(size >= 8 and bytes(end[-4:]) == MAGIC, "no footer")
    (footer_size,) = struct.unpack("<I", end[-8:-4])
    start = size - 8 - footer_size
    _require(start >= 0, "footer length out of the bytes held")
    try:
        metadata, used = decode(end[start : size - 8])
    except ThriftError as error:
        raise JoinError(f"cannot join the column groups' files: {error}") from error
    _require(used == footer_size, "footer length")
    return start, metadata


def _row_group(metadata: Struct) -> Struct:
    _require(set(metadata.fields) <= _FILE_FIELDS, "unexpected file metadata")
    _, groups = metadata.get(4)
    _require(len(groups) == 1, "not one row group")
    group: Struct = groups[0]
    _require(set(group.fields) <= _ROW_GROUP_FIELDS, "unexpected row-group metadata")
    return group


def _moved_chunk(chunk: Struct, shift: int) -> Struct:
    _require(set(chunk.fields) <= _CHUNK_FIELDS, "unexpected column chunk fields")
    column = chunk.get(3)
    _require(isinstance(column, Struct), "column chunk without metadata")
    _require(set(column.fields) <= _COLUMN_FIELDS, "unexpected column metadata")
    moved_column = Struct(dict(column.fields))
    for field_id in (9, 11):  # data_page_offset, dictionary_page_offset
        if field_id in column.fields:
            moved_column.set(field_id, I64, column.get(field_id) + shift)
    moved = Struct(dict(chunk.fields))
    if chunk.get(2):  # file_offset: 0 in files of recent writers
        moved.set(2, I64, chunk.get(2) + shift)
    moved.set(3, STRUCT, moved_column)
    return moved


def _key_values(parts: Sequence[Part], arrow_schema: bytes | None) -> list[Struct]:
    """Return the first part's key-value metadata, with the whole table's Arrow schema."""
    first = parts[0].metadata.get(5, (STRUCT, []))[1]
    keys = [item.get(1) for item in first]
    for part in parts[1:]:
        items = part.metadata.get(5, (STRUCT, []))[1]
        _require([item.get(1) for item in items] == keys, "key-value metadata differ")
    joined = []
    for item in first:
        if item.get(1) == _ARROW_SCHEMA_KEY:
            _require(arrow_schema is not None, "no Arrow schema for the joined file")
            item = Struct(dict(item.fields))
            item.set(2, BINARY, arrow_schema)
        joined.append(item)
    return joined


def joined_footer(parts: Sequence[Part], arrow_schema: bytes | None) -> bytes:
    """Return the end of the joined file: footer, its length and the magic bytes.

    Parameters
    ----------
    parts : sequence of Part
        The files' footers, in the order their column data is written after ``PAR1``.
    arrow_schema : bytes or None
        The whole table's serialized Arrow schema, base64-encoded, as pyarrow stores it
        (``ARROW:schema``).
    """
    _require(len(parts) > 0, "no parts")
    first = parts[0].metadata
    n_rows = first.get(3)
    schema: list[Struct] = []
    n_children = 0
    chunks: list[Struct] = []
    orders: list[Struct] = []
    total_bytes = compressed_bytes = 0
    shift = 0
    for part in parts:
        metadata = part.metadata
        group = _row_group(metadata)
        _require(metadata.get(3) == n_rows and group.get(3) == n_rows, "row counts differ")
        _require(metadata.get(1) == first.get(1), "format versions differ")
        elements = metadata.get(2)[1]
        n_children += elements[0].get(5, 0)
        schema += elements[1:]
        part_chunks = group.get(1)[1]
        chunks += [_moved_chunk(chunk, shift) for chunk in part_chunks]
        if 7 in first.fields:
            part_orders = metadata.get(7, (STRUCT, []))[1]
            _require(len(part_orders) == len(part_chunks), "column orders")
            orders += part_orders
        total_bytes += group.get(2)
        compressed_bytes += group.get(6, 0)
        shift += part.data_size
    root = Struct(dict(first.get(2)[1][0].fields))
    root.set(5, I32, n_children)

    group = Struct(dict(_row_group(first).fields))
    group.set(1, LIST, (STRUCT, chunks))
    group.set(2, I64, total_bytes)
    if 6 in group.fields:
        group.set(6, I64, compressed_bytes)

    footer = Struct(dict(first.fields))
    footer.set(2, LIST, (STRUCT, [root, *schema]))
    footer.set(4, LIST, (STRUCT, [group]))
    if 5 in first.fields:
        footer.set(5, LIST, (STRUCT, _key_values(parts, arrow_schema)))
    if 7 in first.fields:
        footer.set(7, LIST, (STRUCT, orders))
    encoded = encode(footer)
    return encoded + struct.pack("<I", len(encoded)) + MAGIC
