"""Parquet files of fixed-width columns without nulls, written from Arrow's own buffers.

pyarrow's writer copies every value into its page buffers, computes each page's
statistics, then copies the pages out again: 3.8 ms for a 100k-row chunk of six 8-byte
columns without compression, about 1.3 GB/s. Yet a PLAIN page of a fixed-width column
without nulls is the values as they lie in memory, after a few bytes of definition
levels that are the same on every full page. Here the pages' statistics come from numpy,
their headers are patched from an encoded form, and the values go to the file straight
from Arrow's buffers (or through the codec, page by page, on the encoder threads for
large tables).

The result is the file pyarrow would have written, byte for byte, or nothing. What this
module does not compute comes from pyarrow's own file of a made-up row of the schema
(:mod:`oupsish.plain_form`); the first time a schema and codec are seen, pyarrow also
writes a made-up table of more rows than fit on one page (the *probe*) and the two files
are compared: a difference leaves that schema and codec to pyarrow for the life of the
process. The tests compare both writers on random tables of every supported type.
"""

from __future__ import annotations

import functools
import os
import struct
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from oupsish.plain_form import (
    PROBE_ROWS,
    ROWS_PER_PAGE,
    ChunkCounts,
    ColumnForm,
    Form,
    definition_levels,
    learn_form,
    probe_table,
    values_dtype,
)
from oupsish.stitch import MAGIC, remember_footer
from oupsish.threads import LazyPool

__all__ = ["encoded_pieces"]

MAX_PROBE_BYTES = 32 * 2**20
"""Schemas whose probe would take more memory (about 190 8-byte columns) are left to pyarrow."""
MIN_ROWS = 10_000
"""Smaller tables are left to pyarrow: this module's fixed cost per column (statistics,
headers and footer made in Python) exceeds what it saves (measured, 6 columns, encoded in
memory without compression: 0.29 ms instead of 0.21 ms at 1,000 rows, 0.33 instead of
0.35 at 5,000, 0.40 instead of 0.53 at 10,000)."""
RUN_BYTES = 2**20
"""Pages of about this many bytes are compressed as one task on the encoder threads."""
PAGES_LIKE_PYARROW = tuple(int(part) for part in pa.__version__.split(".")[:2]) >= (23, 0)
"""Whether pyarrow cuts pages as this module does: every ``ROWS_PER_PAGE`` rows, which
pyarrow does from version 23 on (before, by size only). With older versions this module
writes nothing: every file is pyarrow's own."""
CODECS = frozenset({"none", "snappy", "zstd", "gzip", "brotli"})
"""Codecs ``pyarrow.Codec`` compresses as Parquet pages are (its "lz4" is LZ4's frame format)."""

_forms: dict[tuple[bytes, str], Form | None] = {}
"""Forms by serialized schema (``==`` on schemas ignores their metadata) and codec."""
_forms_lock = threading.Lock()
_FORMS_KEPT = 256


def _after_fork() -> None:
    global _forms_lock
    _forms_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _eligible(table: pa.Table, compression: object, extra: dict[str, Any]) -> str | None:
    """Return the codec name if this module can write ``table``, else ``None``."""
    if not PAGES_LIKE_PYARROW:
        return None
    if compression is not None and not isinstance(compression, str):
        return None  # a codec per column
    codec = (compression or "none").lower()
    if sys.byteorder != "little" or codec not in CODECS or table.num_rows < MIN_ROWS:
        return None
    if set(extra) - {"use_dictionary"} or extra.get("use_dictionary", False):
        return None  # True, or columns to encode with a dictionary
    row_bytes = 0
    for field, column in zip(table.schema, table.columns, strict=True):
        dtype = values_dtype(field.type)
        if dtype is None or column.null_count:
            return None
        row_bytes += dtype.itemsize
    if row_bytes == 0 or PROBE_ROWS * row_bytes > MAX_PROBE_BYTES:
        return None
    return codec


def _form(table: pa.Table, codec: Any) -> Form | None:
    """Return the forms of the files of ``table``'s schema and codec, ``None`` if unfit.

    Learnt, and checked against pyarrow on the probe, the first time they are asked for.
    """
    key = (table.schema.serialize().to_pybytes(), codec)
    with _forms_lock:
        if key in _forms:
            return _forms[key]
    form: Form | None
    try:
        probe = probe_table(table.schema)
        form = learn_form(probe.slice(0, 1), codec)
        columns = _columns(probe, form)
        assert columns is not None  # no NaN
        expected = pa.BufferOutputStream()
        pq.write_table(probe, expected, compression=codec, use_dictionary=False)
        ours = b"".join(_file(columns, form, codec, probe.num_rows))
        if ours != expected.getvalue().to_pybytes():
            form = None
    except MemoryError:
        return None  # not a reason to turn the path off for good
    except Exception:  # anything unforeseen: leave these files to pyarrow
        form = None
    with _forms_lock:
        if len(_forms) >= _FORMS_KEPT:
            _forms.pop(next(iter(_forms)))
        _forms[key] = form
    return form


def encoded_pieces(
    table: pa.Table,
    compression: object,
    extra: dict[str, Any],
    threads: LazyPool | None = None,
) -> Iterator[Any] | None:
    """Return the Parquet file pyarrow would write for ``table``, in pieces, or ``None``.

    ``None`` when this module cannot write it: a column of another type, with nulls or
    NaN, other writer options than ``use_dictionary`` off for these columns, or a
    pyarrow whose files this module does not reproduce. The pieces (bytes, and views of
    the table's buffers when not compressed) are the file in order, made as they are
    asked for: a compressed file is never whole in memory. With ``threads``, pages are
    compressed on them.
    """
    codec = _eligible(table, compression, extra)
    if codec is None:
        return None
    form = _form(table, codec)
    if form is None:
        return None
    columns = _columns(table, form)
    if columns is None:
        return None
    return _file(columns, form, codec, table.num_rows, threads)


@dataclass(frozen=True)
class _Column:
    pages: list[list[npt.NDArray[Any]]]  # each page's values, in one or more pieces
    minima: npt.NDArray[Any]  # of each page
    maxima: npt.NDArray[Any]
    form: ColumnForm


def _chunk_values(array: pa.Array[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    buffer = array.buffers()[1]
    assert buffer is not None  # fixed-width values
    return np.frombuffer(
        memoryview(buffer), dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


def _paged(chunks: list[npt.NDArray[Any]], n_rows: int) -> list[list[npt.NDArray[Any]]]:
    """Cut a column's chunks into pages of ``ROWS_PER_PAGE`` values, without copying."""
    pages: list[list[npt.NDArray[Any]]] = []
    page: list[npt.NDArray[Any]] = []
    room = ROWS_PER_PAGE
    for chunk in chunks:
        while len(chunk):
            piece, chunk = chunk[:room], chunk[room:]
            page.append(piece)
            room -= len(piece)
            if room == 0:
                pages.append(page)
                page, room = [], ROWS_PER_PAGE
    if page:
        pages.append(page)
    assert sum(len(piece) for page in pages for piece in page) == n_rows
    return pages


def _columns(table: pa.Table, form: Form) -> list[_Column] | None:
    """Return each column's pages and their bounds; ``None`` if a float column holds NaN.

    Columns in several chunks are not combined (that would copy them): a page may span
    chunks, its values then in several pieces.
    """
    starts = _page_starts(table.num_rows)
    columns = []
    for column, column_form in zip(table.columns, form.columns, strict=True):
        dtype = column_form.dtype
        chunks = [_chunk_values(chunk, dtype) for chunk in column.chunks if len(chunk)]
        if len(chunks) == 1:
            values = chunks[0]
            minima = np.minimum.reduceat(values, starts)
            maxima = np.maximum.reduceat(values, starts)
            pages = [[values[start : start + ROWS_PER_PAGE]] for start in starts.tolist()]
        else:
            pages = _paged(chunks, table.num_rows)
            # numpy's reductions, unlike min() and max(), carry a NaN through.
            minima = np.array([np.min([piece.min() for piece in page]) for page in pages], dtype)
            maxima = np.array([np.max([piece.max() for piece in page]) for page in pages], dtype)
        if dtype.kind == "f":
            if np.isnan(minima).any() or np.isnan(maxima).any():
                return None
            # Parquet's rule for floats: a zero minimum is written -0.0, a zero maximum +0.0.
            minima[minima == 0] = -0.0
            maxima[maxima == 0] = 0.0
        columns.append(_Column(pages, minima, maxima, column_form))
    return columns


def _page_starts(n_rows: int) -> npt.NDArray[np.intp]:
    return np.arange(0, n_rows, ROWS_PER_PAGE)


@dataclass(frozen=True)
class _Page:
    column: _Column
    index: int  # in the column
    n_values: int
    body: tuple[Any, ...]  # definition levels and values, uncompressed

    @property
    def size(self) -> int:
        return sum(len(piece) for piece in self.body)


def _raw_pages(columns: list[_Column]) -> Iterator[_Page]:
    """Yield the pages of the file, in order, as views of the columns' values."""
    for column in columns:
        for index, pieces in enumerate(column.pages):
            count = sum(len(piece) for piece in pieces)
            full = count == ROWS_PER_PAGE
            levels = column.form.levels if full else definition_levels(count, column.form.optional)
            values = tuple(piece.data.cast("B") for piece in pieces)
            yield _Page(column, index, count, (levels, *values) if levels else values)


def _compress_run(codec: Any, pages: list[_Page]) -> list[bytes]:
    # A codec of its own: some (gzip) keep a stream that threads may not share.
    compressor = pa.Codec(codec)
    return [compressor.compress(b"".join(page.body), asbytes=True) for page in pages]


def _bodies(
    pages: Iterator[_Page], codec: Any, threads: LazyPool | None
) -> Iterator[tuple[_Page, tuple[Any, ...]]]:
    """Yield each page with its body as written: compressed, if a codec, on ``threads``.

    The codec releases the GIL: runs of pages of about ``RUN_BYTES`` are compressed on the
    threads, a few runs ahead of the one written, in order.
    """
    if codec == "none":
        for page in pages:
            yield page, page.body
        return
    if threads is None:
        compressor = pa.Codec(codec)
        for page in pages:
            yield page, (compressor.compress(b"".join(page.body), asbytes=True),)
        return
    ahead: deque[tuple[list[_Page], Future[list[bytes]]]] = deque()

    def done_runs(keep: int) -> Iterator[tuple[_Page, tuple[Any, ...]]]:
        while len(ahead) > keep:
            run, compressed = ahead.popleft()
            for page, body in zip(run, compressed.result(), strict=True):
                yield page, (body,)

    run: list[_Page] = []
    run_bytes = 0
    for page in pages:
        run.append(page)
        run_bytes += page.size
        if run_bytes >= RUN_BYTES:
            ahead.append((run, threads.submit(_compress_run, codec, run)))
            run, run_bytes = [], 0
            yield from done_runs(keep=2 * threads.max_workers)
    if run:
        ahead.append((run, threads.submit(_compress_run, codec, run)))
    yield from done_runs(keep=0)


def _header(page: _Page, compressed: int) -> bytes:
    """Return a page's header, for a body of ``compressed`` bytes."""
    max_bytes = page.column.maxima[page.index].tobytes()
    min_bytes = page.column.minima[page.index].tobytes()
    values = {"compressed": compressed, "max_bytes": max_bytes, "min_bytes": min_bytes}
    return page.column.form.header_form(page.n_values).encode(values)


def _file(
    columns: list[_Column], form: Form, codec: Any, n_rows: int, threads: LazyPool | None = None
) -> Iterator[Any]:
    """Yield the file of ``columns`` in pieces: magic, each page's header and body, footer."""
    yield MAGIC
    position = len(MAGIC)
    chunks = []
    total_uncompressed = 0
    column, start, uncompressed, n_pages = None, position, 0, 0

    def chunk_of(column: _Column) -> ChunkCounts:
        maximum = _chunk_bound(column.maxima.max(), 0.0)
        minimum = _chunk_bound(column.minima.min(), -0.0)
        return ChunkCounts(n_pages, start, uncompressed, position - start, maximum, minimum)

    for page, body in _bodies(_raw_pages(columns), codec, threads):
        if page.column is not column:
            if column is not None:
                chunks.append(chunk_of(column))
                total_uncompressed += uncompressed
            column, start, uncompressed, n_pages = page.column, position, 0, 0
        compressed = sum(len(piece) for piece in body)
        header = _header(page, compressed)
        yield header
        yield from body
        position += len(header) + compressed
        uncompressed += len(header) + page.size
        n_pages += 1
    assert column is not None  # a table of at least one row and one column
    chunks.append(chunk_of(column))
    total_uncompressed += uncompressed
    yield _footer(form, chunks, n_rows, total_uncompressed, position - len(MAGIC))


def _chunk_bound(value: Any, zero: float) -> bytes:
    """Return a chunk's bound, a float zero with the sign Parquet's rule gives it."""
    if value.dtype.kind == "f" and value == 0:
        value = value.dtype.type(zero)
    return bytes(value.tobytes())


def _footer(
    form: Form, chunks: Sequence[ChunkCounts], n_rows: int, uncompressed: int, compressed: int
) -> bytes:
    """Return the end of the file: footer (its decoded form kept for later reads), length, magic."""
    encoded = form.encode_footer(chunks, n_rows, uncompressed, compressed)
    # A coalescing write may copy this file next: it then needs the footer decoded.
    remember_footer(
        encoded, functools.partial(form.footer_struct, chunks, n_rows, uncompressed, compressed)
    )
    return encoded + struct.pack("<I", len(encoded)) + MAGIC
