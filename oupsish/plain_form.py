"""How pyarrow lays out the Parquet file of a table of fixed-width columns without nulls.

:mod:`oupsish.plain_encode` writes such files itself, byte for byte as pyarrow would. What
it does not compute it learns here, from pyarrow's own file of one made-up row of the
same schema and codec (:func:`learn_form`): the footer (schema, key-value metadata,
``created_by``, column orders), each column chunk's fields, and each page header. Page
headers and footers are kept encoded with holes for what varies, their compressed size,
counts and bounds (:class:`~oupsish.thrift.Template`), filled in for each page and file.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from oupsish.stitch import MAGIC
from oupsish.thrift import (
    I32,
    I64,
    LIST,
    STRUCT,
    Struct,
    Template,
    ThriftError,
    decode,
    varint,
)

__all__ = [
    "PROBE_ROWS",
    "ROWS_PER_PAGE",
    "ChunkCounts",
    "ColumnForm",
    "Form",
    "definition_levels",
    "filled_statistics",
    "learn_form",
    "probe_table",
    "values_dtype",
]

ROWS_PER_PAGE = 20_000
"""pyarrow's page size for columns of at most 8 bytes a value (``max_rows_per_page``)."""
PROBE_ROWS = ROWS_PER_PAGE + 1_234
"""Rows of the probe: a full page and a partial one."""

_REQUIRED, _OPTIONAL = 0, 1
_MAX_FIELDS, _MIN_FIELDS = (1, 5), (2, 6)  # Statistics: max, min, max_value, min_value
_STATISTICS_FIELDS = frozenset({1, 2, 3, 5, 6, 7, 8})


def values_dtype(arrow_type: pa.DataType) -> np.dtype[Any] | None:
    """Return the numpy dtype of a column's values, if PLAIN Parquet stores them as they are."""
    if pa.types.is_timestamp(arrow_type) or pa.types.is_time64(arrow_type):
        return np.dtype(np.int64) if arrow_type.unit != "s" else None
    if pa.types.is_time32(arrow_type):
        return np.dtype(np.int32) if arrow_type.unit == "ms" else None
    if pa.types.is_date32(arrow_type):
        return np.dtype(np.int32)
    if pa.types.is_duration(arrow_type):
        return np.dtype(np.int64)
    for check, dtype in (
        (pa.types.is_int32, np.int32),
        (pa.types.is_int64, np.int64),
        (pa.types.is_uint32, np.uint32),
        (pa.types.is_uint64, np.uint64),
        (pa.types.is_float32, np.float32),
        (pa.types.is_float64, np.float64),
    ):
        if check(arrow_type):
            return np.dtype(dtype)
    return None


_PARTIAL_FORMS_KEPT = 64


@dataclass(frozen=True)
class ColumnForm:
    """What a column's pages and chunk metadata look like, from pyarrow's template file."""

    header_struct: Struct  # PageHeader
    dtype: np.dtype[Any]  # of the column's values in memory
    chunk: Struct  # ColumnChunk, to fill in
    optional: bool
    levels: bytes  # the definition levels of a full page (empty if required)
    full: Template  # the header of a full page (holes: compressed, max_bytes, min_bytes)
    partial: dict[int, Template] = dataclasses.field(default_factory=dict)  # by row count

    def header_form(self, n_values: int) -> Template:
        """Return the header of a page of ``n_values`` rows, with holes for what varies.

        Its holes: ``compressed`` (the page's size in the file), ``max_bytes`` and
        ``min_bytes`` (its bounds, if pages have statistics).
        """
        if n_values == ROWS_PER_PAGE:
            return self.full
        form = self.partial.get(n_values)
        if form is None:
            if len(self.partial) >= _PARTIAL_FORMS_KEPT:
                self.partial.clear()
            form = _header_form(self.header_struct, n_values, self.dtype.itemsize, self.optional)
            self.partial[n_values] = form
        return form


@dataclass(frozen=True)
class ChunkCounts:
    """What varies in a column's ColumnChunk from one file to the next."""

    n_pages: int
    offset: int  # of its first page
    uncompressed: int  # its size before compression, page headers included
    compressed: int  # its size in the file
    max_bytes: bytes
    min_bytes: bytes


@dataclass(frozen=True)
class Form:
    """The forms of a file: its footer (FileMetaData) and each column's.

    The footer is also kept encoded with holes for what varies from one file to the next
    (:class:`~oupsish.thrift.Template`): filling its holes takes a fifth of the time of
    building and encoding it field by field (measured, 6 columns: 24 us instead of 109).
    :meth:`footer_struct` builds it as a struct, for who needs it decoded.
    """

    footer: Struct
    columns: tuple[ColumnForm, ...]
    _footer_template: Template = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        template = Template()
        chunks = [
            ChunkCounts(
                n_pages=template.integer((index, "n_pages")),
                offset=template.integer((index, "offset")),
                uncompressed=template.integer((index, "uncompressed")),
                compressed=template.integer((index, "compressed")),
                max_bytes=template.binary((index, "max_bytes")),
                min_bytes=template.binary((index, "min_bytes")),
            )
            for index in range(len(self.columns))
        ]
        n_rows, uncompressed, compressed = (
            template.integer(name) for name in ("n_rows", "uncompressed", "compressed")
        )
        template.compile(self.footer_struct(chunks, n_rows, uncompressed, compressed))
        object.__setattr__(self, "_footer_template", template)

    def footer_struct(
        self, chunks: Sequence[ChunkCounts], n_rows: int, uncompressed: int, compressed: int
    ) -> Struct:
        """Return the footer of a file of ``n_rows`` rows in one row group of these chunks."""
        (template_group,) = self.footer.get(4)[1]
        group = Struct(dict(template_group.fields))
        columns = [
            _chunk(column_form, n_rows, counts)
            for column_form, counts in zip(self.columns, chunks, strict=True)
        ]
        group.set(1, LIST, (STRUCT, columns))
        group.set(2, I64, uncompressed)
        group.set(3, I64, n_rows)
        if 5 in group.fields:
            group.set(5, I64, len(MAGIC))
        if 6 in group.fields:
            group.set(6, I64, compressed)
        footer = Struct(dict(self.footer.fields))
        footer.set(3, I64, n_rows)
        footer.set(4, LIST, (STRUCT, [group]))
        return footer

    def encode_footer(
        self, chunks: Sequence[ChunkCounts], n_rows: int, uncompressed: int, compressed: int
    ) -> bytes:
        """Return :meth:`footer_struct` encoded (from the template: the same bytes)."""
        values: dict[Any, Any] = {
            "n_rows": n_rows,
            "uncompressed": uncompressed,
            "compressed": compressed,
        }
        for index, counts in enumerate(chunks):
            values[index, "n_pages"] = counts.n_pages
            values[index, "offset"] = counts.offset
            values[index, "uncompressed"] = counts.uncompressed
            values[index, "compressed"] = counts.compressed
            values[index, "max_bytes"] = counts.max_bytes
            values[index, "min_bytes"] = counts.min_bytes
        return self._footer_template.encode(values)


def _chunk(column_form: ColumnForm, n_rows: int, counts: ChunkCounts) -> Struct:
    """Return a column's ColumnChunk: its form's, with these counts, sizes and bounds."""
    template = column_form.chunk.get(3)
    column = Struct(dict(template.fields))
    column.set(5, I64, n_rows)
    column.set(6, I64, counts.uncompressed)
    column.set(7, I64, counts.compressed)
    column.set(9, I64, counts.offset)
    if 12 in template.fields:
        statistics = filled_statistics(template.get(12), counts.max_bytes, counts.min_bytes)
        column.set(12, STRUCT, statistics)
    if 13 in template.fields:
        element_type, (kind,) = template.get(13)[0], template.get(13)[1]
        counted = Struct(dict(kind.fields))
        counted.set(3, I32, counts.n_pages)
        column.set(13, LIST, (element_type, [counted]))
    if 16 in template.fields:
        sizes = Struct(dict(template.get(16).fields))
        if 3 in sizes.fields:
            histogram = [0, n_rows] if column_form.optional else [n_rows]
            sizes.set(3, LIST, (I64, histogram))
        column.set(16, STRUCT, sizes)
    chunk = Struct(dict(column_form.chunk.fields))
    chunk.set(3, STRUCT, column)
    return chunk


def filled_statistics(template: Struct, max_bytes: bytes, min_bytes: bytes) -> Struct:
    """Return ``template`` (Statistics) with these bounds and no nulls, its fields kept."""
    if not set(template.fields) <= _STATISTICS_FIELDS:
        raise ThriftError("unexpected statistics fields")
    statistics = Struct(dict(template.fields))
    for field_id in _MAX_FIELDS:
        if field_id in template.fields:
            statistics.set(field_id, template.fields[field_id][0], max_bytes)
    for field_id in _MIN_FIELDS:
        if field_id in template.fields:
            statistics.set(field_id, template.fields[field_id][0], min_bytes)
    if 3 in template.fields:
        statistics.set(3, I64, 0)
    return statistics


def definition_levels(n_values: int, optional: bool) -> bytes:
    """Return the definition levels of ``n_values`` non-null values: one RLE run of 1s."""
    if not optional:
        return b""
    run = varint(n_values << 1) + b"\x01"  # a run of n_values, of value 1
    return struct.pack("<I", len(run)) + run


def _page_header(
    form_header: Struct, n_values: int, size: int, compressed: int, statistics: Struct | None
) -> Struct:
    """Return ``form_header`` (PageHeader) for a page of these rows, sizes and statistics."""
    header = Struct(dict(form_header.fields))
    header.set(2, I32, size)
    header.set(3, I32, compressed)
    data_header = Struct(dict(form_header.get(5).fields))
    data_header.set(1, I32, n_values)
    if statistics is not None:
        data_header.set(5, STRUCT, statistics)
    header.set(5, STRUCT, data_header)
    return header


def _column_form(data: bytes, chunk: Struct, element: Struct, dtype: np.dtype[Any]) -> ColumnForm:
    """Read a column's form from its chunk (ColumnChunk), schema element and first page."""
    column = chunk.get(3)
    header, _ = decode(data[column.get(9) :])
    data_header = header.get(5)
    if set(header.fields) != {1, 2, 3, 5} or header.get(1) != 0 or data_header is None:
        raise ThriftError("not a plain data page")
    if set(data_header.fields) - {1, 2, 3, 4, 5} or data_header.get(2) != 0:
        raise ThriftError("not a plain data page")
    if element.get(3) not in (_REQUIRED, _OPTIONAL):
        raise ThriftError("repeated column")
    optional = element.get(3) == _OPTIONAL
    full = _header_form(header, ROWS_PER_PAGE, dtype.itemsize, optional)
    return ColumnForm(
        header, dtype, chunk, optional, definition_levels(ROWS_PER_PAGE, optional), full
    )


def _header_form(header: Struct, n_values: int, width: int, optional: bool) -> Template:
    """Return the header of a page of ``n_values`` rows, with holes for what varies."""
    size = len(definition_levels(n_values, optional)) + n_values * width
    template = Template()
    page_statistics = header.get(5).get(5)
    statistics = None
    if page_statistics is not None:
        bounds = template.binary("max_bytes"), template.binary("min_bytes")
        statistics = filled_statistics(page_statistics, *bounds)
    compressed = template.integer("compressed")
    template.compile(_page_header(header, n_values, size, compressed, statistics))
    return template


def learn_form(first_row: pa.Table, compression: Any) -> Form:
    """Return the forms of the files of ``first_row``'s schema, from pyarrow's file of it.

    Raises
    ------
    ThriftError
        If the file holds anything this module does not reproduce.
    """
    schema = first_row.schema
    sink = pa.BufferOutputStream()
    pq.write_table(first_row, sink, compression=compression, use_dictionary=False)
    data = sink.getvalue().to_pybytes()
    (footer_size,) = struct.unpack("<I", data[-8:-4])
    footer, _ = decode(data[-8 - footer_size : -8])
    if set(footer.fields) - {1, 2, 3, 4, 5, 6, 7}:
        raise ThriftError("unexpected file metadata")
    (group,) = footer.get(4)[1]
    if set(group.fields) - {1, 2, 3, 5, 6, 7}:
        raise ThriftError("unexpected row group metadata")
    elements = footer.get(2)[1][1:]
    chunks = group.get(1)[1]
    if len(elements) != len(schema) or len(chunks) != len(schema):
        raise ThriftError("nested columns")
    columns = []
    for chunk, element, arrow_field in zip(chunks, elements, schema, strict=True):
        column = chunk.get(3)
        if set(chunk.fields) - {2, 3} or set(column.fields) - {1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16}:
            raise ThriftError("unexpected column chunk fields")
        if len(column.get(13, (STRUCT, []))[1]) > 1:
            raise ThriftError("pages of several kinds")
        dtype = values_dtype(arrow_field.type)
        assert dtype is not None
        columns.append(_column_form(data, chunk, element, dtype))
    return Form(footer, tuple(columns))


def probe_table(schema: pa.Schema) -> pa.Table:
    """Return a table of ``schema`` (its metadata too) with ``PROBE_ROWS`` made-up rows.

    Made up rather than the user's, so that what is learnt holds for the schema: no NaN,
    zeros (whose sign Parquet's rule sets), values within a day for times.
    """
    values = np.arange(PROBE_ROWS) % 1_000
    arrays = []
    for field in schema:
        dtype = values_dtype(field.type)
        assert dtype is not None
        arrays.append(pa.array(values.astype(dtype)).view(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
