"""Streaming ingest at bounded memory: iterables of frames, Arrow streams, CSV files.

A stream is written in batches, each one ordinary atomic commit: a crash in the middle
leaves every batch before it committed and none after. Memory holds about one batch (plus
the row groups a batch merges with), whatever the stream's length.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from oupsish.errors import OupsishError

__all__ = ["batches_of", "csv_chunks", "is_stream", "write_stream"]

WriteBatch = Callable[[pd.DataFrame], None]


def is_stream(df: object) -> bool:
    """Whether ``write(df=...)`` received a stream rather than one frame."""
    single = (pd.DataFrame, pd.Series, pd.Index, np.ndarray, pa.Table, pa.Array, str, bytes, dict)
    if df is None or isinstance(df, single):
        return False
    return isinstance(df, pa.RecordBatchReader | Iterable)


def _frames(stream: object) -> Iterator[pd.DataFrame]:
    if isinstance(stream, pa.RecordBatchReader):
        for batch in stream:
            yield batch.to_pandas()
        return
    assert isinstance(stream, Iterable)
    for position, item in enumerate(stream):
        if isinstance(item, pa.RecordBatch | pa.Table):
            yield item.to_pandas()
        elif isinstance(item, pd.DataFrame):
            yield item
        else:
            raise TypeError(
                f"a stream written with write(df=...) must yield DataFrames (or Arrow record "
                f"batches); item {position} is a {type(item).__name__}."
            )


def batches_of(stream: object, batch_rows: int | None) -> Iterator[pd.DataFrame]:
    """Group a stream's frames into batches of at least ``batch_rows`` rows.

    With ``batch_rows=None`` each frame is a batch. Empty frames are skipped.
    """
    if batch_rows is not None and (
        isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1
    ):
        raise ValueError(f"batch_rows must be None or an int >= 1, got {batch_rows!r}.")
    pending: list[pd.DataFrame] = []
    count = 0
    for frame in _frames(stream):
        if not len(frame):
            continue
        pending.append(frame)
        count += len(frame)
        if batch_rows is None or count >= batch_rows:
            yield pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
            pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)


def write_stream(stream: object, write_batch: WriteBatch, batch_rows: int | None) -> int:
    """Write ``stream`` batch by batch through ``write_batch``; return the rows written."""
    rows = 0
    for batch in batches_of(stream, batch_rows):
        write_batch(batch)
        rows += len(batch)
    return rows


def csv_chunks(
    path: str | os.PathLike[str], ordered_on: str, chunksize: int, read_csv: dict[str, Any]
) -> Iterator[pd.DataFrame]:
    """Parse a CSV file (plain or compressed, by extension) in chunks of ``chunksize`` rows.

    ``ordered_on`` is parsed as dates unless ``read_csv`` says otherwise. An empty file
    or one with only a header yields nothing.
    """
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}.")
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
