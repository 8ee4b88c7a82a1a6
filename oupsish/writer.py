"""The write path: validate, plan, encode the new row groups, commit.

Each step only uses what the previous ones produced:

1. :func:`prepare` checks the options and the frame and converts it to an Arrow table of
   the dataset's schema. Bad input raises here, before anything on disk changes.
2. Under the writers' lock, :func:`plan_windows` (pure) decides which row groups to merge.
3. :func:`_encode_window` merges each window's rows, drops duplicates, splits them into row
   groups and stages their files under new names.
4. :meth:`Transaction.commit` publishes the next snapshot in one atomic step.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from oupsish import io as parquet_io
from oupsish import tail_cache
from oupsish.commit import (
    DatasetPaths,
    Signature,
    Transaction,
    metadata_signature,
    read_snapshot,
)
from oupsish.durable import FileRange, read_at
from oupsish.errors import CorruptDatasetError, OrderedOnMismatchError
from oupsish.frames import (
    OrderedOn,
    arrow_name,
    check_frame,
    check_table,
    conform_table,
    frame_to_table,
    normalize_duplicates_on,
    ordered_values,
)
from oupsish.io import ParquetOptions, read_schema
from oupsish.metadata import key_value_update
from oupsish.naming import PositionKey, allocate_keys, format_name, has_room_before
from oupsish.plan import (
    PeriodTarget,
    Target,
    Values,
    Window,
    make_room_before_first,
    make_target,
    plan_windows,
)
from oupsish.read import is_missing_file_error, read_row_groups
from oupsish.snapshot import STATS_COLUMNS, Snapshot, empty_stats, stats_table
from oupsish.stitch import Source, concatenate_row_groups, footer_agrees
from oupsish.tail_cache import Tail

__all__ = [
    "Prepared",
    "WriteOptions",
    "execute",
    "prepare",
    "resolve_ordered_on",
    "schema_of",
    "write_dataset",
]

RESERVED_METADATA_KEYS = frozenset({"ordered_on"})


@dataclass(frozen=True)
class WriteOptions:
    """What a write was asked to do, beyond the frame itself."""

    ordered_on: OrderedOn | None
    row_group_target_size: int | str
    duplicates_on: str | Sequence[Hashable] | None
    max_n_off_target_rgs: int | None
    key_value_metadata: Mapping[str, str | None] | None
    parquet: ParquetOptions

    def check(self, dataset: str) -> None:
        """Raise if an option is invalid, naming ``dataset`` and the offending value."""
        n = self.max_n_off_target_rgs
        if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0):
            raise ValueError(
                f"max_n_off_target_rgs must be None or an int >= 0, got "
                f"{type(n).__name__} {n!r} (dataset '{dataset}')."
            )
        metadata = self.key_value_metadata
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise TypeError(
                    f"key_value_metadata must be a dict of str to str (or None), got "
                    f"{type(metadata).__name__} {metadata!r} (dataset '{dataset}')."
                )
            for key, value in metadata.items():
                if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                    raise TypeError(
                        "key_value_metadata maps str keys to str values (None removes a key); "
                        f"got {type(key).__name__} {key!r}: {type(value).__name__} {value!r} "
                        f"(dataset '{dataset}')."
                    )
                if key in RESERVED_METADATA_KEYS:
                    raise ValueError(
                        f"key_value_metadata key {key!r} is reserved: the dataset records it "
                        f"itself (dataset '{dataset}')."
                    )


@dataclass(frozen=True)
class Prepared:
    """A validated write, ready to be planned against the snapshot it was checked with."""

    ordered_on: OrderedOn
    schema: pa.Schema | None
    table: pa.Table | None
    new_values: np.ndarray[Any, Any]
    duplicate_subset: list[str] | None
    target: Target
    key_value_metadata: dict[str, str]
    checked_against: tuple[OrderedOn | None, pa.Schema | None]


def schema_of(paths: DatasetPaths, snapshot: Snapshot) -> pa.Schema | None:
    """Return the dataset's schema, read from its first file if the metadata lacks it."""
    if snapshot.schema is not None or not len(snapshot):
        return snapshot.schema
    path = paths.data_file(snapshot.file_names[0])
    try:
        return read_schema(path)
    except FileNotFoundError:
        raise  # a reader racing a commit retries on the new snapshot
    except (pa.ArrowException, OSError) as error:
        if is_missing_file_error(error):
            raise FileNotFoundError(str(error)) from error
        raise CorruptDatasetError(
            f"dataset '{paths.folder}': data file '{path.name}' cannot be read: {error}"
        ) from error


def resolve_ordered_on(
    stored: OrderedOn | None, requested: OrderedOn | None, dataset: str
) -> OrderedOn | None:
    """Return the dataset's ``ordered_on``; a request differing from the stored one fails."""
    if requested is not None and not (
        isinstance(requested, str)
        or (isinstance(requested, tuple) and all(isinstance(part, str) for part in requested))
    ):
        raise TypeError(
            f"ordered_on must be a column name (str), got {type(requested).__name__} "
            f"{requested!r} (dataset '{dataset}')."
        )
    if requested is not None and stored is not None and requested != stored:
        raise OrderedOnMismatchError(
            f"ordered_on {requested!r} does not match {stored!r}, the column dataset "
            f"'{dataset}' is ordered on; it cannot change."
        )
    return stored if stored is not None else requested


def _target_for(
    table: pa.Table | None,
    schema: pa.Schema | None,
    ordered_on: OrderedOn,
    row_group_target_size: object,
    dataset: str,
) -> Target:
    name = arrow_name(ordered_on)
    source = schema if schema is not None else (table.schema if table is not None else None)
    arrow_type = source.field(name).type if source is not None and name in source.names else None
    tz = arrow_type.tz if arrow_type is not None and pa.types.is_timestamp(arrow_type) else None
    try:
        target = make_target(row_group_target_size, tz=tz)
    except ValueError as error:
        raise ValueError(f"{str(error).rstrip('.')} (dataset '{dataset}').") from None
    if (
        isinstance(target, PeriodTarget)
        and arrow_type is not None
        and not pa.types.is_timestamp(arrow_type)
    ):
        raise ValueError(
            f"row_group_target_size {row_group_target_size!r} is a frequency, but ordered_on "
            f"column {ordered_on!r} of dataset '{dataset}' is {arrow_type}, not a timestamp."
        )
    return target


def prepare(paths: DatasetPaths, snapshot: Snapshot, df: object, options: WriteOptions) -> Prepared:
    """Check a write against ``snapshot`` and convert its frame; raise on bad input."""
    dataset = str(paths.folder)
    options.check(dataset)
    ordered_on = resolve_ordered_on(snapshot.ordered_on, options.ordered_on, dataset)
    if ordered_on is None:
        raise ValueError(f"ordered_on is required for the first write to dataset '{dataset}'.")
    schema = schema_of(paths, snapshot)
    table, subset = None, None
    if isinstance(df, pa.RecordBatch):
        df = pa.Table.from_batches([df])
    if isinstance(df, pa.Table):
        table, subset = _arrow_input(df, ordered_on, options.duplicates_on, schema, dataset)
    elif df is not None:
        frame = check_frame(df, ordered_on, dataset)
        if len(frame):
            duplicates = normalize_duplicates_on(
                options.duplicates_on, ordered_on, list(frame.columns), dataset
            )
            if duplicates is not None:
                duplicates = list(dict.fromkeys(duplicates))
                frame = frame.loc[~frame.duplicated(subset=duplicates, keep="last")]
                subset = [arrow_name(column) for column in duplicates]
            table = frame_to_table(frame, schema, dataset)
    target = _target_for(table, schema, ordered_on, options.row_group_target_size, dataset)
    new_values = (
        ordered_values(table.column(arrow_name(ordered_on))) if table is not None else np.empty(0)
    )
    checked_against = (snapshot.ordered_on, schema)
    if table is not None and schema is None:
        schema = table.schema
    return Prepared(
        ordered_on=ordered_on,
        schema=schema,
        table=table,
        new_values=new_values,
        duplicate_subset=subset,
        target=target,
        key_value_metadata=key_value_update(
            snapshot.key_value_metadata, options.key_value_metadata
        ),
        checked_against=checked_against,
    )


def _arrow_input(
    table: pa.Table,
    ordered_on: OrderedOn,
    duplicates_on: str | Sequence[Hashable] | None,
    schema: pa.Schema | None,
    dataset: str,
) -> tuple[pa.Table | None, list[str] | None]:
    """Check an Arrow table and cast it to the dataset's schema; drop its own duplicates."""
    check_table(table, ordered_on, dataset)
    if table.num_rows == 0:
        return None, None
    requested = duplicates_on
    if requested is not None and not isinstance(requested, str | tuple):
        requested = [arrow_name(name) for name in requested]
    elif isinstance(requested, tuple):
        requested = arrow_name(requested)
    duplicates = normalize_duplicates_on(
        requested, arrow_name(ordered_on), table.column_names, dataset
    )
    subset = None
    if duplicates is not None:
        subset = [str(name) for name in dict.fromkeys(duplicates)]
        table = _drop_duplicates(table, subset, arrow_name(ordered_on))
    return conform_table(table, schema, dataset, "table"), subset


def _merge_sorted(existing: pa.Table, new: pa.Table, column: str) -> pa.Table:
    """Merge two tables sorted on ``column``; equal values keep existing rows first."""
    if existing.num_rows == 0:
        return new
    if new.num_rows == 0:
        return existing
    combined = pa.concat_tables([existing, new])
    if _appends(existing, new, column):
        return combined  # without converting the columns to compare them
    existing_values = ordered_values(existing.column(column))
    new_values = ordered_values(new.column(column))
    new_positions = np.searchsorted(existing_values, new_values, side="right") + np.arange(
        len(new_values)
    )
    is_new = np.zeros(len(existing_values) + len(new_values), dtype=bool)
    is_new[new_positions] = True
    order = np.empty(len(is_new), dtype=np.int64)
    order[~is_new] = np.arange(len(existing_values))
    order[is_new] = len(existing_values) + np.arange(len(new_values))
    return combined.take(order)


def _drop_duplicates(table: pa.Table, subset: list[str], column: str) -> pa.Table:
    """Drop rows equal on ``subset`` to a later row (the later, newer row is kept).

    ``table`` is sorted on ``column``, which ``subset`` includes: duplicates can only lie
    in runs of equal ``column`` values, so only those rows are compared on ``subset``.
    """
    values = ordered_values(table.column(column))
    same_as_next = values[1:] == values[:-1]
    if not same_as_next.any():
        return table
    keep = np.ones(len(values), dtype=bool)
    if subset == [column]:
        keep[:-1] = ~same_as_next
    else:
        in_run = np.zeros(len(values), dtype=bool)
        in_run[:-1] |= same_as_next
        in_run[1:] |= same_as_next
        candidates = np.flatnonzero(in_run)
        keys = table.select(subset).take(candidates).to_pandas()
        keep[candidates] = ~keys.duplicated(keep="last").to_numpy()
    return table.filter(pa.array(keep))


def _write_chunk(
    path: Path,
    sync: bool,
    before_create: Callable[[], None],
    *,
    chunk: pa.Table,
    parquet: ParquetOptions,
    encoded: list[bytes | memoryview | FileRange] | None,
) -> Future[None]:
    return parquet_io.write_file(path, chunk, parquet, sync, before_create, encoded)


def _appends(existing: pa.Table, new: pa.Table, column: str) -> bool:
    """Whether merging ``new`` into ``existing`` (both non-empty) just appends it."""
    if not existing.num_rows or not new.num_rows:
        return False
    last = ordered_values(existing.column(column).slice(existing.num_rows - 1, 1))
    first = ordered_values(new.column(column).slice(0, 1))
    return bool(last[0] <= first[0])


@dataclass(frozen=True)
class _StoredFile:
    """A stored row group's file, open: its descriptor, and its bytes as a stitch source."""

    fd: int
    source: Source


@contextlib.contextmanager
def _opened(txn: Transaction, indices: range) -> Iterator[list[_StoredFile] | None]:
    """Open the files of row groups ``indices`` until the block ends; ``None`` if one fails.

    A coalescing write both checks their footers and copies their pages: once opened.
    """
    with contextlib.ExitStack() as opened:
        try:
            files = []
            for index in indices:
                path = txn.paths.data_file(txn.snapshot.file_names[index])
                file = opened.enter_context(open(path, "rb", buffering=0))
                source = Source(os.fstat(file.fileno()).st_size, _reader(file))
                files.append(_StoredFile(file.fileno(), source))
        except OSError:
            files = None  # the usual path reports a missing file
        yield files


def _stitched(
    files: list[_StoredFile], new: pa.Table, parquet: ParquetOptions, n_rows: int
) -> list[bytes | memoryview | FileRange] | None:
    """Return the file of the stored ``files`` followed by ``new``, in pieces.

    Their pages are copied, not encoded again (:mod:`oupsish.stitch`): coalescing small
    writes then costs about what their bytes cost to copy, by the kernel, file to file.
    ``None`` when the files do not allow it, or when they do not hold the ``n_rows`` rows
    (with ``new``'s) that the snapshot records. ``files`` must stay open while the pieces
    are written.
    """
    encoded = memoryview(parquet_io.encode(new, parquet))  # no copy into bytes
    sources = [file.source for file in files]
    pieces = concatenate_row_groups([*sources, Source.of_bytes(encoded)], n_rows)
    if pieces is None:
        return None
    last = len(files)
    return [
        piece
        if isinstance(piece, bytes)
        else encoded[piece.offset : piece.offset + piece.length]
        if piece.source == last
        else FileRange(files[piece.source].fd, piece.offset, piece.length)
        for piece in pieces
    ]


def _footers_agree(
    snapshot: Snapshot, indices: range, files: list[_StoredFile], column: str
) -> bool:
    """Whether the footers of row groups ``indices`` record what the snapshot does.

    That is their row counts and ``column`` bounds (:func:`oupsish.stitch.footer_agrees`).
    A kept ordered column is checked against the snapshot, not the files: the files whose
    pages a merge copies are checked here, as reading them would.
    """
    mins, maxs = (snapshot.stats.column(name) for name in STATS_COLUMNS[2:])
    for index, file in zip(indices, files, strict=True):
        chunks = [*mins.slice(index, 1).chunks, *maxs.slice(index, 1).chunks]
        bounds = pa.chunked_array(chunks, type=mins.type).combine_chunks()
        if not footer_agrees(file.source, int(snapshot.n_rows[index]), column, bounds):
            return False
    return True


def _reader(file: BinaryIO) -> Callable[[int, int], bytes]:
    return lambda offset, length: read_at(file.fileno(), length, offset)


def _read_existing(
    txn: Transaction,
    indices: range,
    schema: pa.Schema | None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Read row groups to rewrite; damaged or missing files refuse the write, loudly."""
    try:
        return read_row_groups(txn.paths, txn.snapshot, schema, indices, columns)
    except FileNotFoundError as error:
        # Under the writers' lock, a file the snapshot lists cannot vanish by a race.
        raise CorruptDatasetError(
            f"dataset '{txn.paths.folder}': a data file listed by its metadata is missing "
            f"({error}); the write was refused and nothing changed."
        ) from error
    except CorruptDatasetError as error:
        raise CorruptDatasetError(
            f"{error}; the write needs these rows, so it was refused and nothing changed."
        ) from error


@dataclass
class Staged:
    """What a write staged: the table of each file, and whether its merges copied pages.

    ``stitched`` is ``True`` once a merge copied the stored pages, ``False`` once one
    encoded the stored rows again, ``None`` if the write merged nothing (it only added
    row groups).
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    stitched: bool | None = None


def _window_keys(snapshot: Snapshot, window: Window, count: int) -> list[PositionKey]:
    """Return ``count`` ordered file keys for the row groups replacing ``window``'s."""
    keys = allocate_keys(
        snapshot.position_key(window.rg_start - 1),
        snapshot.position_key(window.rg_end),
        count,
        snapshot.top_width,
    )
    if keys is None:  # make_room_before_first prevents this
        raise AssertionError(f"no file name available for {window}")
    return keys


def _stitch_append(
    txn: Transaction,
    window: Window,
    prepared: Prepared,
    parquet: ParquetOptions,
    commit: int,
    column: str,
    tail: Tail,
    staged: Staged,
) -> pa.Table | None:
    """Stage a window that appends new rows to stored row groups, as one row group.

    The stored pages are copied (:func:`_stitched`), so of the stored rows only the
    ordered column is needed, which places the row-group boundaries: from ``tail`` if it
    holds it, else read from disk. A write coalescing 1M new rows into 3M stored ones
    does not hold the 3M rows in memory. Returns the new row group's statistics, or
    ``None`` (nothing staged) when the window does not qualify: its rows are then merged
    and encoded. The ordered column of the file staged is added to ``staged``: the tail
    kept of a stitched file is that column alone.
    """
    snapshot, table = txn.snapshot, prepared.table
    if (
        table is None
        or prepared.duplicate_subset is not None
        or window.n_new == 0
        or window.rg_end == window.rg_start
        or table.schema != prepared.schema
        or not parquet_io.can_concatenate(table.schema, parquet)
        or not bool(snapshot.maxs[window.rg_end - 1] <= prepared.new_values[window.new_start])
    ):
        return None
    indices = range(window.rg_start, window.rg_end)
    new = table.slice(window.new_start, window.n_new)
    with _opened(txn, indices) as files:
        stored = tail.get(snapshot, indices, [column])
        if stored is not None and (
            files is None or not _footers_agree(snapshot, indices, files, column)
        ):
            stored = None  # a file is not the one kept: its rows are read, and checked
        if stored is None:
            stored = _read_existing(txn, indices, prepared.schema, [column])
        ordered = pa.chunked_array(
            [*stored.column(column).chunks, *new.column(column).chunks],
            type=new.column(column).type,
        )
        if len(prepared.target.split_offsets(len(ordered), lambda: ordered_values(ordered))):
            return None  # more than one row group
        n_rows = len(ordered)
        stitched = None if files is None else _stitched(files, new, parquet, n_rows)
        if stitched is None:
            return None
        (key,) = _window_keys(snapshot, window, 1)
        name = format_name(key, snapshot.top_width, commit)
        txn.stage(
            name, functools.partial(_write_chunk, chunk=new, parquet=parquet, encoded=stitched)
        )
    # What the next stitched append needs of this file; the dataset's field (nullability).
    staged.tables[name] = pa.Table.from_arrays(
        [ordered], schema=pa.schema([new.schema.field(column)])
    )
    staged.stitched = True
    return stats_table(
        [name],
        [n_rows],
        ordered.slice(0, 1).combine_chunks(),
        ordered.slice(n_rows - 1, 1).combine_chunks(),
        ordered.type,
    )


def _encode_window(
    txn: Transaction,
    window: Window,
    prepared: Prepared,
    parquet: ParquetOptions,
    commit: int,
    tail: Tail,
    staged: Staged,
) -> pa.Table:
    """Merge, split and stage one window's row groups; return their statistics.

    The tables of the files staged are added to ``staged``.
    """
    snapshot = txn.snapshot
    schema = prepared.schema
    column = arrow_name(prepared.ordered_on)
    stitched_stats = _stitch_append(txn, window, prepared, parquet, commit, column, tail, staged)
    if stitched_stats is not None:
        return stitched_stats
    indices = range(window.rg_start, window.rg_end)
    existing: pa.Table | None
    if not indices and schema is not None:
        existing = schema.empty_table()  # new row groups after the stored ones
    else:
        staged.stitched = False  # stored rows merged by encoding them again
        existing = tail.get(snapshot, indices, None if schema is None else schema.names)
    if existing is None:
        existing = _read_existing(txn, indices, schema)
    new = (
        prepared.table.slice(window.new_start, window.n_new)
        if prepared.table is not None
        else existing.schema.empty_table()
    )
    if existing.num_rows and existing.schema != new.schema:
        existing = existing.cast(new.schema)
    merged = _merge_sorted(existing, new, column)
    if prepared.duplicate_subset is not None and window.rg_end > window.rg_start:
        merged = _drop_duplicates(merged, prepared.duplicate_subset, column)

    def values() -> Values:  # read by period targets only (often a copy of the column)
        if existing.num_rows == 0 and prepared.table is not None:
            stop = window.new_start + window.n_new
            return prepared.new_values[window.new_start : stop]  # a view: no copy
        return ordered_values(merged.column(column))

    offsets = prepared.target.split_offsets(merged.num_rows, values)
    bounds = [0, *offsets.tolist(), merged.num_rows]
    keys = _window_keys(snapshot, window, len(bounds) - 1)
    ordered = merged.column(column)
    names, n_rows, mins, maxs = [], [], [], []
    for key, start, end in zip(keys, bounds[:-1], bounds[1:], strict=True):
        chunk = merged.slice(start, end - start)
        name = format_name(key, snapshot.top_width, commit)
        write = functools.partial(_write_chunk, chunk=chunk, parquet=parquet, encoded=None)
        txn.stage(name, write)
        staged.tables[name] = chunk
        names.append(name)
        n_rows.append(chunk.num_rows)
        mins.append(ordered.slice(start, 1).combine_chunks())
        maxs.append(ordered.slice(end - 1, 1).combine_chunks())
    return stats_table(names, n_rows, pa.concat_arrays(mins), pa.concat_arrays(maxs), ordered.type)


def _splice(
    snapshot: Snapshot, replacements: list[tuple[Window, pa.Table]], arrow_type: pa.DataType
) -> tuple[pa.Table, list[str]]:
    """Return the statistics, and file names, with each window's row groups replaced."""
    parts: list[pa.Table] = []
    names: list[str] = []
    previous = 0
    for window, stats in replacements:
        parts.append(snapshot.stats.slice(previous, window.rg_start - previous))
        parts.append(stats)
        names += snapshot.file_names[previous : window.rg_start]
        names += [str(name) for name in stats.column("file_names").to_pylist()]
        previous = window.rg_end
    parts.append(snapshot.stats.slice(previous))
    names += snapshot.file_names[previous:]
    kept = [part for part in parts if part.num_rows]
    empty = empty_stats(arrow_type)
    if not kept:
        return empty, []
    target = empty.schema
    kept = [part if part.schema.equals(target) else part.cast(target) for part in kept]
    # One chunk per column: appended slices would otherwise pile up, one more per commit,
    # and every later use of the statistics (planning, encoding) would walk them all.
    return pa.concat_tables(kept).combine_chunks(), names


def _plan(snapshot: Snapshot, prepared: Prepared, options: WriteOptions) -> list[Window]:
    windows = plan_windows(
        snapshot.mins,
        snapshot.maxs,
        snapshot.n_rows,
        prepared.new_values,
        drop_duplicates=prepared.duplicate_subset is not None,
        target=prepared.target,
        max_n_off_target_rgs=options.max_n_off_target_rgs,
    )
    first_key = snapshot.position_key(0)
    if windows and first_key is not None and not has_room_before(first_key):
        windows = make_room_before_first(windows)
    return windows


def _changes_nothing(snapshot: Snapshot, prepared: Prepared, windows: list[Window]) -> bool:
    if windows:
        return False
    if snapshot.exists:
        metadata_unchanged = dict(snapshot.key_value_metadata) == prepared.key_value_metadata
        return metadata_unchanged and snapshot.ordered_on == prepared.ordered_on
    return not prepared.key_value_metadata


def execute(
    txn: Transaction,
    prepared: Prepared,
    options: WriteOptions,
    tail: Tail | None = None,
    staged: Staged | None = None,
) -> Snapshot | None:
    """Plan and stage a prepared write; return the next snapshot, or ``None`` if unchanged.

    ``tail`` supplies rows to merge without reading them; ``staged`` receives the tables
    of the files staged.
    """
    snapshot = txn.snapshot
    windows = _plan(snapshot, prepared, options)
    if _changes_nothing(snapshot, prepared, windows):
        return None
    commit = snapshot.commit + 1
    tail = tail if tail is not None else Tail({})
    staged = staged if staged is not None else Staged()
    replacements = [
        (window, _encode_window(txn, window, prepared, options.parquet, commit, tail, staged))
        for window in windows
    ]
    arrow_type = (
        prepared.schema.field(arrow_name(prepared.ordered_on)).type
        if prepared.schema is not None
        else pa.null()
    )
    stats, file_names = _splice(snapshot, replacements, arrow_type)
    return snapshot.successor(
        ordered_on=prepared.ordered_on,
        schema=prepared.schema,
        key_value_metadata=prepared.key_value_metadata,
        stats=stats,
        file_names=file_names,
    )


def write_dataset(
    paths: DatasetPaths,
    df: object,
    options: WriteOptions,
    lock_timeout: float | None,
    known: tuple[Signature | None, Snapshot] | None = None,
    fsync: bool = True,
) -> tuple[Signature | None, Snapshot]:
    """Write ``df`` into the dataset at ``paths``; return the committed state.

    ``known``, the caller's ``(metadata signature, snapshot)`` (read from disk when
    ``None``), validates the frame before the lock is taken; under the lock the write
    works on the committed snapshot, which is ``known``'s if the metadata file has not
    changed since. Returns the ``(signature, snapshot)`` committed (or found, if the write
    changes nothing). ``fsync`` is :class:`~oupsish.commit.Transaction`'s. A write that
    coalesces its tail (``max_n_off_target_rgs``) merges the rows :mod:`oupsish.tail_cache`
    kept of it, if any, and keeps what the next one needs.
    """
    if known is None:
        known = (metadata_signature(paths), read_snapshot(paths))
    snapshot = known[1]
    prepared = prepare(paths, snapshot, df, options)
    if prepared.table is None and _changes_nothing(
        snapshot, prepared, _plan(snapshot, prepared, options)
    ):
        # A write that changes nothing touches nothing: no lock, no folder, no commit.
        return known
    with Transaction(paths, lock_timeout, known, fsync) as txn:
        current = txn.snapshot
        if (current.ordered_on, schema_of(paths, current)) != prepared.checked_against:
            # Another writer committed a first write since the frame was checked.
            prepared = prepare(paths, current, df, options)
        n_off = options.max_n_off_target_rgs
        # Only coalescing writes merge, and rewrite, the tail.
        tail = tail_cache.lookup(paths.folder, txn.signature) if n_off is not None else Tail({})
        staged = Staged()
        successor = execute(txn, prepared, options, tail, staged)
        if successor is not None:
            txn.commit(successor)
            if n_off is None:
                tail_cache.forget(paths.folder)
            else:
                ranges = (
                    tail_cache.memory_ranges(prepared.table) if prepared.table is not None else []
                )
                stitches = tail.stitches if staged.stitched is None else staged.stitched
                tail_cache.keep(
                    paths.folder,
                    txn.signature,
                    successor,
                    max(1, n_off) + 1,
                    tail,
                    staged.tables,
                    ranges,
                    arrow_name(prepared.ordered_on) if stitches else None,
                )
        committed = txn.signature, txn.snapshot
    if prepared.table is not None and prepared.table.nbytes >= parquet_io.RELEASE_AFTER_BYTES:
        # Arrow's allocator keeps what a large write freed; repeated large writes would
        # otherwise hold several times their size.
        pa.default_memory_pool().release_unused()
    return committed
