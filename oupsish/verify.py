"""Checking a dataset against its metadata: ``OrderedParquetDataset.verify()``.

The metadata file is the source of truth; verification checks that every file it lists is
there and holds what it says (one row group, the recorded row count, the recorded
``ordered_on`` min and max, the dataset's schema), and reports files in the folder that no
snapshot lists. It decodes every page of every file (a damaged page in any column is
found), holding one batch of rows at a time, and never changes anything on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from oupsish.commit import DatasetPaths, is_temporary_name
from oupsish.file_read import conform, open_parquet
from oupsish.frames import arrow_name
from oupsish.naming import is_data_file_name
from oupsish.snapshot import STATS_COLUMNS, Snapshot

__all__ = ["Problem", "verify_dataset"]


@dataclass(frozen=True)
class Problem:
    """One inconsistency found by ``verify()``.

    Attributes
    ----------
    kind : str
        ``"missing"``, ``"unreadable"``, ``"row_count"``, ``"min_max"``, ``"schema"``,
        ``"row_groups"`` (a file with several row groups), ``"unsorted"``, ``"orphan"``
        (a data file no snapshot lists, left by an interrupted write: the next write
        removes it) or
        ``"temporary"`` (a leftover temporary file, likewise).
    path : str
        The file concerned.
    detail : str
        What was expected and what was found.
    """

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


VERIFY_BATCH_ROWS = 65_536
"""Rows decoded at a time: memory stays small whatever the row group's size."""


def _decoded(
    parquet: pq.ParquetFile, column_name: str | None, cast_to: pa.Schema | None
) -> tuple[pa.ChunkedArray[Any] | None, str | None]:
    """Decode every page of every column; return the ``column_name`` column, if any.

    Reads decode only the columns they need, and coalescing writes copy pages without
    decoding them: decoding everything here is what catches a damaged page in any column.
    Each batch is cast to ``cast_to``, if given, as reads cast it; the second value says
    why values do not fit it, ``None`` if they all do.
    """
    schema = parquet.schema_arrow
    if column_name is not None and schema.get_field_index(column_name) < 0:
        column_name = None  # reported by the schema check
    pieces, unfit = [], None
    for batch in parquet.iter_batches(batch_size=VERIFY_BATCH_ROWS, use_threads=False):
        if cast_to is not None and unfit is None:
            try:
                conform(pa.Table.from_batches([batch]), cast_to)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                unfit = str(error)
        if column_name is not None:
            pieces.append(batch.column(column_name))
    if column_name is None:
        return None, unfit
    return pa.chunked_array(pieces, type=schema.field(column_name).type), unfit


def _comparable(values: pa.ChunkedArray[Any]) -> pa.ChunkedArray[Any]:
    """Durations as integers of their unit: pyarrow has no min_max for them."""
    return values.cast(pa.int64()) if pa.types.is_duration(values.type) else values


def _stored_forms(schema: pa.Schema) -> list[pa.Schema]:
    """Return ``schema``, and the schema pyarrow reads back from a file written with it.

    Parquet has no timestamps in seconds nor ``date64``, and names list items
    ``element``: a file of ``timestamp[s]`` reads as ``timestamp[ms]``, and reads cast it
    back. Either form is the dataset's schema.
    """
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(schema.empty_table(), sink)
    except (pa.ArrowException, OSError):  # not a schema Parquet can hold: its files neither
        return [schema.remove_metadata()]
    read_back = pq.read_schema(pa.BufferReader(sink.getvalue()))
    return [schema.remove_metadata(), read_back.remove_metadata()]


def _check_file(
    paths: DatasetPaths, snapshot: Snapshot, schemas: list[pa.Schema] | None, index: int
) -> list[Problem]:
    name = snapshot.file_names[index]
    path = paths.data_file(name)
    where = str(path)
    if not path.is_file():
        return [Problem("missing", where, "listed by the metadata but absent")]
    try:
        parquet = open_parquet(path)
        metadata = parquet.metadata
        found_schema = parquet.schema_arrow.remove_metadata()
        fits = schemas is None or any(found_schema.equals(form) for form in schemas)
        # Stored in Parquet's form (timestamp[ms] for [s]...): its values must fit the
        # dataset's, as reads cast them.
        cast_to = schemas[0] if schemas and fits and not found_schema.equals(schemas[0]) else None
        column_name = arrow_name(snapshot.ordered_on) if snapshot.ordered_on else None
        column, unfit = _decoded(parquet, column_name, cast_to)
    except (pa.ArrowException, OSError) as error:
        return [Problem("unreadable", where, str(error))]
    problems = []
    recorded = int(snapshot.n_rows[index])
    if metadata.num_rows != recorded:
        detail = f"holds {metadata.num_rows} rows, the metadata records {recorded}"
        problems.append(Problem("row_count", where, detail))
    if metadata.num_row_groups > 1:
        detail = f"holds {metadata.num_row_groups} row groups, expected 1"
        problems.append(Problem("row_groups", where, detail))
    if schemas is not None and not fits:
        detail = f"schema {found_schema} differs from {schemas[0]}"
        problems.append(Problem("schema", where, detail))
    elif schemas is not None and unfit is not None:
        detail = f"values do not fit the dataset's schema {schemas[0]}: {unfit}"
        problems.append(Problem("schema", where, detail))
    if column is not None and len(column):
        found = pc.min_max(_comparable(column))
        lo, hi = found["min"].as_py(), found["max"].as_py()
        expected_lo, expected_hi = (
            _comparable(snapshot.stats.column(name).slice(index, 1))[0].as_py()
            for name in STATS_COLUMNS[2:]
        )
        if (lo, hi) != (expected_lo, expected_hi):
            detail = (
                f"ordered_on spans [{lo}, {hi}], the metadata records "
                f"[{expected_lo}, {expected_hi}]"
            )
            problems.append(Problem("min_max", where, detail))
        if len(column) > 1 and not pc.all(pc.greater_equal(column[1:], column[:-1])).as_py():
            problems.append(Problem("unsorted", where, "rows are not sorted on ordered_on"))
    return problems


def verify_dataset(
    paths: DatasetPaths, snapshot: Snapshot, schema: pa.Schema | None
) -> list[Problem]:
    """Return every inconsistency between ``snapshot`` and the files on disk (none: ``[]``)."""
    problems = []
    schemas = None if schema is None else _stored_forms(schema)
    for index in range(len(snapshot)):
        problems.extend(_check_file(paths, snapshot, schemas, index))
    listed = set(snapshot.file_names)
    try:
        entries = sorted(os.scandir(paths.folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if entry.name in listed:
            continue
        if is_data_file_name(entry.name):
            detail = (
                "a data file no snapshot lists (an interrupted write's; removed by the next write)"
            )
            problems.append(Problem("orphan", entry.path, detail))
        elif is_temporary_name(entry.name):
            detail = "a temporary file left by an interrupted write"
            problems.append(Problem("temporary", entry.path, detail))
    return problems
