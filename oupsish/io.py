"""Parquet encoding and decoding of row-group files (one row group per file)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from oupsish.column_join import plan_groups
from oupsish.durable import FileRange, SyncedFile, write_in_background
from oupsish.parallel_encode import Spill, encode_in_parts
from oupsish.plain_encode import encoded_pieces
from oupsish.threads import LazyPool, cpu_count

__all__ = [
    "DEFAULT_COMPRESSION",
    "ParquetOptions",
    "can_concatenate",
    "encode",
    "read_schema",
    "write_file",
]

DEFAULT_COMPRESSION = "snappy"

_WRITE_TABLE_OPTIONS = frozenset(
    {
        "compression_level",
        "use_dictionary",
        "write_statistics",
        "data_page_size",
        "data_page_version",
        "column_encoding",
        "use_byte_stream_split",
        "dictionary_pagesize_limit",
        "write_page_index",
        "write_page_checksum",
        "sorting_columns",
    }
)


@dataclass(frozen=True)
class ParquetOptions:
    """How row-group files are encoded.

    Parameters
    ----------
    compression : str or None
        Codec of every column (``"snappy"``, ``"zstd"``, ``"lz4"``, ``"gzip"``, ``"none"``).
    extra : dict
        Further keyword arguments of :func:`pyarrow.parquet.write_table`
        (``compression_level``, ``use_dictionary``, ``data_page_size``...).
    """

    compression: str | None = DEFAULT_COMPRESSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, compression: str | None, kwargs: dict[str, Any]) -> ParquetOptions:
        """Validate ``write()`` keyword arguments meant for the Parquet writer."""
        unknown = sorted(set(kwargs) - _WRITE_TABLE_OPTIONS)
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {unknown}; Parquet options accepted are "
                f"'compression' and {sorted(_WRITE_TABLE_OPTIONS)}."
            )
        return cls(compression, dict(kwargs))


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding by default: strings, binaries, categoricals.

    On numbers (often high-cardinality floats), dictionary encoding costs about 2.5x the
    write time and some memory, and usually makes files larger (``benchmarks/``).
    """
    return [
        field.name
        for field in schema
        if pa.types.is_dictionary(field.type)
        or pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
    ]


def can_concatenate(schema: pa.Schema, options: ParquetOptions) -> bool:
    """Whether files of ``schema`` encoded with ``options`` can be concatenated as they are.

    :mod:`oupsish.stitch` copies pages, which a dictionary page or a page index would tie
    to their row group.
    """
    extra = options.extra
    dictionary = extra.get("use_dictionary", _dictionary_columns(schema))
    return not dictionary and not extra.get("write_page_index")


WRITE_BUFFER_BYTES = 512 * 2**10
"""The encoder's output reaches the file in pieces of this size (the last one smaller)."""


def _encode(
    sink: pa.NativeFile,
    table: pa.Table,
    options: ParquetOptions,
    before_close: Callable[[], None] | None = None,
) -> None:
    extra = dict(options.extra)
    extra.setdefault("use_dictionary", _dictionary_columns(table.schema))
    compression: Any = options.compression or "none"  # a codec name pyarrow checks
    with pq.ParquetWriter(sink, table.schema, compression=compression, **extra) as writer:
        writer.write_table(table, row_group_size=max(1, table.num_rows))
        if before_close is not None:
            before_close()


_encoders = LazyPool(min(cpu_count(), 4), "oupsish-encode")

RELEASE_AFTER_BYTES = 16 * 2**20
"""Writes of this much data hand the memory Arrow's allocator kept back to the system."""

PARALLEL_MIN_BYTES = 2 * 2**20
"""Tables of fewer bytes are encoded on the calling thread: threads cost more than they save."""
GROUP_BYTES = 24 * 2**20
"""About this many bytes of columns are encoded as one part (:mod:`oupsish.parallel_encode`).

Fewer, larger parts leave the threads idle less (measured, one write of 10M rows into
1M-row groups, 48 MB each: 10.6M rows/s with parts of 8 MB, 13.4M with parts of 24 MB;
durable 48 MB files, zstd: 110 ms to 91 ms); each part waiting for its turn beyond
``HELD_IN_MEMORY`` is spilled to a temporary file."""


def _column_groups(table: pa.Table, options: ParquetOptions) -> list[range] | None:
    """Return runs of columns to encode on the encoder threads, ``None`` to encode here."""
    n_workers = _encoders.max_workers
    extra = options.extra
    if (
        n_workers < 2
        or table.num_columns < 2
        or table.nbytes < PARALLEL_MIN_BYTES
        or extra.get("write_page_index")
        or extra.get("sorting_columns")
    ):
        return None
    n_groups = n_workers * max(1, round(table.nbytes / (n_workers * GROUP_BYTES)))
    groups = plan_groups([column.nbytes for column in table.columns], n_groups)
    return groups if len(groups) > 1 else None


def _encode_to(
    write: Callable[[Any], object],
    table: pa.Table,
    options: ParquetOptions,
    spill: Spill | None = None,
) -> bool:
    """Encode ``table`` on the encoder threads, if worth it; return whether it was."""
    groups = _column_groups(table, options)
    if groups is None:
        return False
    encode_in_parts(
        write,
        table,
        groups,
        functools.partial(_encode_part, options=options),
        _encoders,
        WRITE_BUFFER_BYTES,
        release=table.nbytes >= RELEASE_AFTER_BYTES,
        spill=spill,
    )
    return True


THREADED_DIRECT_MIN_BYTES = 8 * 2**20
"""Tables of this many bytes or more written from their buffers compress on the threads."""


def _direct_pieces(table: pa.Table, options: ParquetOptions) -> Iterator[Any] | None:
    """Return the file written from Arrow's buffers (:mod:`oupsish.plain_encode`), if faster.

    That module takes tables of 10,000 rows or more. Without compression, at any size
    beyond (100k rows of six 8-byte columns: 2.3 ms instead of 4.3 ms to a file,
    measured). Compressed (snappy, files of 100k-1M rows of six 8-byte columns,
    measured), pyarrow's encoder on the threads is as fast from 2 MB to 8 MB, and from
    8 MB the pages compressed on the threads are faster (300k rows: 14.7 ms instead of
    16.1; 1M rows: 44.5 ms instead of 57.1): tables of 2 MB to 8 MB are left to pyarrow.
    """
    threads = None
    codec = options.compression
    compressed = isinstance(codec, str) and codec.lower() != "none"  # else not this path
    if compressed and table.nbytes >= PARALLEL_MIN_BYTES and _encoders.max_workers > 1:
        if table.nbytes < THREADED_DIRECT_MIN_BYTES:
            return None
        threads = _encoders
    return encoded_pieces(table, options.compression, options.extra, threads)


def _encode_part(
    sink: pa.NativeFile,
    table: pa.Table,
    before_close: Callable[[], None],
    *,
    options: ParquetOptions,
) -> None:
    _encode(sink, table, options, before_close)


def _encoded_pieces(table: pa.Table, options: ParquetOptions) -> list[Any]:
    """Return the Parquet file of ``table``, one row group, encoded in memory, in pieces."""
    pieces = _direct_pieces(table, options)
    if pieces is not None:
        return list(pieces)
    memory = pa.BufferOutputStream()
    if not _encode_to(memory.write, table, options):
        _encode(memory, table, options)
    return [memory.getvalue()]


def encode(table: pa.Table, options: ParquetOptions) -> pa.Buffer:
    """Return the Parquet file of ``table``, one row group, encoded in memory."""
    pieces = _encoded_pieces(table, options)
    if len(pieces) == 1 and isinstance(pieces[0], pa.Buffer):
        return pieces[0]
    return pa.py_buffer(b"".join(pieces))


def write_file(
    path: Path,
    table: pa.Table,
    options: ParquetOptions,
    sync: bool = False,
    before_create: Callable[[], None] | None = None,
    encoded: Sequence[bytes | memoryview | FileRange] | None = None,
) -> Future[None]:
    """Write ``table`` to the new file ``path`` as a Parquet file of exactly one row group.

    The encoder issues two small writes per page; straight to a file, those system calls
    cost 25-35% of the encoding time, so its output is buffered into pieces of
    ``WRITE_BUFFER_BYTES``. With ``sync``, each piece is flushed to disk in the background
    while the next one is encoded (:class:`~oupsish.durable.SyncedFile`). Tables of
    fixed-width columns are written from their buffers where that is faster
    (:mod:`oupsish.plain_encode`), into the same bytes. Other tables of
    ``PARALLEL_MIN_BYTES`` or more have their columns encoded on several threads
    (:mod:`oupsish.parallel_encode`), into the same bytes. The file is
    created after ``before_create()`` returns, once the first piece is ready. ``encoded``,
    the file's bytes in pieces and ranges of other files to copy (:mod:`oupsish.stitch`),
    is written instead of encoding ``table``.

    Without ``sync``, a file whose bytes are all in memory (``encoded``, or a table under
    ``PARALLEL_MIN_BYTES`` encoded here) is written on a background thread while the
    caller goes on (:func:`~oupsish.durable.write_in_background`): 10k-row live appends
    with ``fsync=False`` ran 12% faster (1.98M to 2.22M rows/s, medians of 6 alternating
    runs). Flushed files are not: a durable write then waits for its disk instead of its
    CPU (measured: no faster), and large copies must start their writeback as they go.

    Returns
    -------
    Future
        Done when the file is closed, after its final ``fsync`` if ``sync``.
    """
    if not sync:
        if encoded is None and table.nbytes < PARALLEL_MIN_BYTES:
            encoded = _encoded_pieces(table, options)
        if encoded is not None:
            return write_in_background(path, encoded, before_create)
    file = SyncedFile(path, sync=sync, before_create=before_create)
    try:
        if encoded is not None:
            for piece in encoded:
                if isinstance(piece, FileRange):
                    file.copy(piece)
                else:
                    file.write(piece)
        elif (pieces := _direct_pieces(table, options)) is not None:
            file.write_pieces(pieces, WRITE_BUFFER_BYTES)
        elif not _encode_to(file.write, table, options, Spill(path.parent, file.copy)):
            buffered = pa.BufferedOutputStream(pa.PythonFile(file, mode="w"), WRITE_BUFFER_BYTES)
            _encode(buffered, table, options)
            buffered.close()
        return file.finish()
    except BaseException:
        file.abandon()
        raise


def read_schema(path: Path) -> pa.Schema:
    """Return the Arrow schema stored in a Parquet file."""
    return pq.read_schema(path)
