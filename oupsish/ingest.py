"""Streaming ingest at bounded memory: iterables of frames, Arrow streams, CSV files.

A stream is written in batches, each one ordinary atomic commit: a crash in the middle
leaves every batch before it committed and none after. Memory holds about one batch (plus
the row groups a batch merges with), whatever the stream's length.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from oupsish.errors import OupsishError

__all__ = ["batches_of", "csv_chunks", "csv_tables", "is_stream", "write_stream"]

Batch = pd.DataFrame | pa.Table
WriteBatch = Callable[[Batch], None]


def is_stream(df: object) -> bool:
    """Whether ``write(df=...)`` received a stream rather than one frame."""
    single = (
        pd.DataFrame,
        pd.Series,
        pd.Index,
        np.ndarray,
        pa.Table,
        pa.RecordBatch,
        pa.Array,
        str,
        bytes,
        dict,
    )
    if df is None or isinstance(df, single):
        return False
    return isinstance(df, pa.RecordBatchReader | Iterable)


def _items(stream: object) -> Iterator[Batch]:
    """Yield a stream's items as frames or Arrow tables (record batches become tables)."""
    if isinstance(stream, pa.RecordBatchReader):
        for batch in stream:
            yield pa.Table.from_batches([batch])
            # Here and below: drop references to a written chunk before the next one is
            # built, or two chunks would be alive at once.
            del batch
        return
    assert isinstance(stream, Iterable)
    # Not enumerate(): its reused result tuple would keep the previous item alive.
    position = -1
    for item in stream:
        position += 1
        if isinstance(item, pa.RecordBatch):
            yield pa.Table.from_batches([item])
        elif isinstance(item, pa.Table | pd.DataFrame):
            yield item
            del item
        else:
            raise TypeError(
                f"a stream written with write(df=...) must yield DataFrames or Arrow tables "
                f"(or record batches); item {position} is a {type(item).__name__}."
            )


def _concat(pending: list[Batch]) -> Batch:
    if len(pending) == 1:
        return pending[0]
    tables = [item for item in pending if isinstance(item, pa.Table)]
    if tables:
        return pa.concat_tables(tables)
    frames = [item for item in pending if isinstance(item, pd.DataFrame)]
    return pd.concat(frames, ignore_index=True)


def batches_of(stream: object, batch_rows: int | None) -> Iterator[Batch]:
    """Group a stream's items into batches of at least ``batch_rows`` rows.

    With ``batch_rows=None`` each item is a batch. Empty items are skipped; frames and
    Arrow tables are never mixed in one batch.
    """
    if batch_rows is not None and (
        isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1
    ):
        raise ValueError(f"batch_rows must be None or an int >= 1, got {batch_rows!r}.")
    pending: list[Batch] = []
    count = 0
    for item in _items(stream):
        if not len(item):
            continue
        if pending and type(item) is not type(pending[0]):
            yield _concat(pending)
            pending, count = [], 0
        pending.append(item)
        count += len(item)
        if batch_rows is None or count >= batch_rows:
            yield _concat(pending)
            pending, count = [], 0
        del item
    if pending:
        yield _concat(pending)


def write_stream(stream: object, write_batch: WriteBatch, batch_rows: int | None) -> int:
    """Write ``stream`` batch by batch through ``write_batch``; return the rows written."""
    rows = 0
    for batch in batches_of(stream, batch_rows):
        write_batch(batch)
        rows += len(batch)
        del batch
        # Arrow's allocator keeps freed memory for a while; hand it back between batches,
        # so that peak memory is about one batch, not several.
        pa.default_memory_pool().release_unused()
    return rows


_READ_OPTIONS = pa_csv.ReadOptions(block_size=256 * 1024)
"""pyarrow's CSV reader holds a multiple of its block size: small blocks keep memory low
(65 MB at the default 1 MiB, 17 MB at 256 KiB), at the same speed."""


def _check_chunksize(chunksize: object) -> None:
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}.")


def _column_types(
    inferred: pa.Schema, ordered_on: str, stored: pa.Schema | None, requested: set[str]
) -> dict[str, pa.DataType]:
    """Return the types to parse columns with, beyond those the caller asked for.

    Types are inferred from the first block only: a later block with finer timestamps or
    decimals in a column of integers would fail. So timestamps are always parsed in
    ``ns``; ``ordered_on`` and columns the dataset stores as timestamps are parsed as
    timestamps when their first values look like dates or text; other columns the dataset
    stores (categoricals included) are parsed as stored.
    """
    types: dict[str, pa.DataType] = {}
    for field in inferred:
        if field.name in requested:
            continue
        stored_type = (
            stored.field(field.name).type
            if stored is not None and field.name in stored.names
            else None
        )
        stored_timestamp = stored_type is not None and pa.types.is_timestamp(stored_type)
        if pa.types.is_timestamp(field.type):
            types[field.name] = pa.timestamp("ns", field.type.tz)
        elif (pa.types.is_date(field.type) or pa.types.is_string(field.type)) and (
            field.name == ordered_on or stored_timestamp
        ):
            types[field.name] = pa.timestamp("ns")
        elif stored_type is not None and not stored_timestamp:
            types[field.name] = stored_type
    return types


def csv_tables(
    path: str | os.PathLike[str],
    ordered_on: str,
    chunksize: int,
    stored: pa.Schema | None,
    parse_options: pa_csv.ParseOptions | None = None,
    convert_options: pa_csv.ConvertOptions | None = None,
) -> Iterator[pa.Table]:
    """Parse a CSV file (plain or compressed, by extension) into tables of ``chunksize`` rows.

    pyarrow parses the file block by block, so memory holds about one chunk of Arrow data.
    ``ordered_on`` is parsed as a timestamp when it holds text; other columns take the
    dataset's ``stored`` types. An empty or header-only file yields nothing.
    """
    _check_chunksize(chunksize)
    options = copy.deepcopy(convert_options) if convert_options else pa_csv.ConvertOptions()
    try:
        try:
            reader = pa_csv.open_csv(
                path, _READ_OPTIONS, parse_options=parse_options, convert_options=options
            )
        except pa.ArrowInvalid as error:
            if "Empty CSV file" in str(error):
                return
            raise
        if ordered_on not in reader.schema.names:
            raise ValueError(
                f"CSV file '{path}' has no column {ordered_on!r}; its columns are "
                f"{reader.schema.names}."
            )
        given = options.column_types or {}
        requested: dict[str, pa.DataType] = (
            {field.name: field.type for field in given}
            if isinstance(given, pa.Schema)
            else dict(given)
        )
        types = _column_types(reader.schema, ordered_on, stored, set(requested))
        if types:
            reader.close()
            options.column_types = {**requested, **types}
            reader = pa_csv.open_csv(
                path, _READ_OPTIONS, parse_options=parse_options, convert_options=options
            )
        pending: list[pa.RecordBatch] = []
        count = 0
        for batch in reader:
            pending.append(batch)
            count += batch.num_rows
            while count >= chunksize:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, chunksize)
                rest = table.slice(chunksize)
                pending, count = rest.to_batches(), rest.num_rows
                del table, rest
                pa.default_memory_pool().release_unused()
        if count:
            yield pa.Table.from_batches(pending)
    except pa.ArrowInvalid as error:
        hint = ""
        if "timestamp" in str(error):
            hint = (
                " To parse other date formats, pass convert_options=pyarrow.csv.ConvertOptions("
                "timestamp_parsers=[...]), or read_csv={...} to parse with pandas."
            )
        raise ValueError(f"CSV file '{path}' cannot be ingested: {error}.{hint}") from error


def csv_chunks(
    path: str | os.PathLike[str], ordered_on: str, chunksize: int, read_csv: dict[str, Any]
) -> Iterator[pd.DataFrame]:
    """Parse a CSV file (plain or compressed, by extension) in chunks of ``chunksize`` rows.

    ``ordered_on`` is parsed as dates unless ``read_csv`` says otherwise. An empty file
    or one with only a header yields nothing.
    """
    _check_chunksize(chunksize)
    options = {"parse_dates": [ordered_on], **read_csv}
    try:
        with pd.read_csv(path, chunksize=chunksize, **options) as reader:
            yield from reader
    except pd.errors.EmptyDataError:
        return
    except ValueError as error:
        if isinstance(error, OupsishError):
            raise
        raise ValueError(f"CSV file '{path}' cannot be ingested: {error}") from error
