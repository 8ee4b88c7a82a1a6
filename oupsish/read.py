"""Reads: choose the row groups a range needs, read only them, retry past racing commits."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from oupsish.commit import DatasetPaths
from oupsish.errors import CorruptDatasetError
from oupsish.file_read import read_files
from oupsish.frames import arrow_name, bound_value, ordered_values
from oupsish.snapshot import Snapshot

__all__ = [
    "Range",
    "is_missing_file_error",
    "read_row_groups",
    "read_table",
    "retrying",
    "to_frame",
]

T = TypeVar("T")

MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Range:
    """A range ``[start, end_excl)`` of ``ordered_on`` values, as comparable bounds."""

    start: Any | None
    end_excl: Any | None

    @classmethod
    def of(
        cls,
        snapshot: Snapshot,
        schema: pa.Schema | None,
        start: object,
        end_excl: object,
        dataset: str | None = None,
    ) -> Range:
        """Convert user bounds to the column's comparable values; check their order.

        ``dataset`` (its folder) is named in error messages when given.
        """
        if snapshot.ordered_on is None or schema is None or (start is None and end_excl is None):
            return cls(None, None)
        arrow_type = schema.field(arrow_name(snapshot.ordered_on)).type
        lo = None if start is None else bound_value(start, arrow_type, snapshot.ordered_on)
        hi = None if end_excl is None else bound_value(end_excl, arrow_type, snapshot.ordered_on)
        if lo is not None and hi is not None and not lo < hi:
            where = f" (dataset '{dataset}')" if dataset is not None else ""
            raise ValueError(f"start ({start!r}) must be before end_excl ({end_excl!r}){where}.")
        return cls(lo, hi)

    def row_groups(self, snapshot: Snapshot) -> tuple[int, int]:
        """Return the row groups ``[first, last)`` holding rows of this range."""
        first = 0 if self.start is None else int(np.searchsorted(snapshot.maxs, self.start, "left"))
        last = (
            len(snapshot)
            if self.end_excl is None
            else int(np.searchsorted(snapshot.mins, self.end_excl, "left"))
        )
        return first, max(first, last)

    def rows(self, values: np.ndarray[Any, Any]) -> tuple[int, int]:
        """Return the rows ``[first, last)`` of sorted ``values`` within this range."""
        first = 0 if self.start is None else int(np.searchsorted(values, self.start, "left"))
        last = (
            len(values)
            if self.end_excl is None
            else int(np.searchsorted(values, self.end_excl, "left"))
        )
        return first, max(first, last)


def read_row_groups(
    paths: DatasetPaths,
    snapshot: Snapshot,
    schema: pa.Schema | None,
    indices: Sequence[int] | range,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Read row groups of ``snapshot``; fail loudly if files do not hold what it says."""
    names = [snapshot.file_names[index] for index in indices]
    try:
        table = _read_files(paths, names, schema, columns, retired=False)
    except FileNotFoundError:
        # A later commit retired some of this snapshot's files: read them where they went.
        # A file may move between the check and the read: look again, a few times.
        for attempt in range(3):
            try:
                table = _read_files(paths, names, schema, columns, retired=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
    counts = snapshot.n_rows[list(indices)]
    expected = int(counts.sum())
    if table.num_rows != expected:
        raise CorruptDatasetError(
            f"dataset '{paths.folder}': its files {names if len(names) <= 3 else names[:3]} "
            f"hold {table.num_rows} rows where the metadata records {expected}; run verify() "
            "to locate the damage."
        )
    if snapshot.ordered_on is not None and len(names):
        column = arrow_name(snapshot.ordered_on)
        if column in table.column_names:
            _check_bounds(paths, snapshot, list(indices), counts, table.column(column))
    return table


def _read_files(
    paths: DatasetPaths,
    names: Sequence[str],
    schema: pa.Schema | None,
    columns: Sequence[str] | None,
    retired: bool,
) -> pa.Table:
    # Plain strings: building thousands of Path objects costs more than the listing.
    folder = str(paths.folder) + os.sep
    files = [folder + name for name in names]
    if retired:
        files = [
            file if os.path.exists(file) else str(paths.superseded_file(name))
            for file, name in zip(files, names, strict=True)
        ]
    try:
        return read_files(files, schema, columns)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as error:
        if is_missing_file_error(error):
            raise FileNotFoundError(str(error)) from error
        raise CorruptDatasetError(
            f"dataset '{paths.folder}': {_unreadable(files, schema, columns)} cannot be "
            f"read: {error}"
        ) from error


def _unreadable(
    files: Sequence[str], schema: pa.Schema | None, columns: Sequence[str] | None
) -> str:
    """Name the first file that cannot be read (on the error path only: it reads them again)."""
    for file in files if len(files) > 1 else []:
        try:
            read_files([file], schema, columns)
        except (pa.ArrowException, OSError):
            return f"data file '{os.path.basename(file)}'"
    return f"data file '{os.path.basename(files[0])}'" if len(files) == 1 else "a data file"


def _check_bounds(
    paths: DatasetPaths,
    snapshot: Snapshot,
    indices: list[int],
    counts: np.ndarray[Any, Any],
    column: pa.ChunkedArray[Any],
) -> None:
    """Check each row group's first and last ``ordered_on`` value against the metadata.

    A data file replaced by another one with the same number of rows would otherwise
    return wrong rows silently. Two values per row group: the cost is negligible.
    """
    ends = np.cumsum(counts)
    positions = np.concatenate([ends - counts, ends - 1])
    values = _values_at(column, positions)
    firsts, lasts = values[: len(indices)], values[len(indices) :]
    try:
        bad_min = np.asarray(firsts != snapshot.mins[indices], dtype=bool)
        bad_max = np.asarray(lasts != snapshot.maxs[indices], dtype=bool)
    except (TypeError, ValueError):
        return  # values not comparable with the statistics' type: nothing to conclude
    if bad_min.shape != (len(indices),) or bad_max.shape != (len(indices),):
        return
    bad = np.flatnonzero(bad_min | bad_max)
    if len(bad):
        at = int(bad[0])
        index = indices[at]
        raise CorruptDatasetError(
            f"dataset '{paths.folder}': data file '{snapshot.file_names[index]}' holds "
            f"{snapshot.ordered_on!r} values from {firsts[at]!r} to {lasts[at]!r} where the "
            f"metadata records {snapshot.mins[index]!r} to {snapshot.maxs[index]!r}; run "
            "verify() to locate the damage."
        )


def _values_at(column: pa.ChunkedArray[Any], positions: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Return ``ordered_values`` of a few rows of a chunked column.

    Not ``column.take``: it first concatenates the chunks, and that fresh allocation of the
    whole column cost ~250 ms after reading 5,000 row groups (10M rows). Slicing the chunks
    costs a few microseconds a position.
    """
    if column.num_chunks == 0:
        return ordered_values(column)
    arrays = column.chunks
    offsets = np.cumsum([0, *(len(array) for array in arrays)])
    which = np.searchsorted(offsets, positions, side="right") - 1
    starts = offsets[which]
    pieces = [
        arrays[index].slice(offset, 1)
        for index, offset in zip(which.tolist(), (positions - starts).tolist(), strict=True)
    ]
    return ordered_values(pa.concat_arrays(pieces))


def is_missing_file_error(error: BaseException) -> bool:
    """Return whether an Arrow or OS error reports a file that does not exist."""
    return "No such file or directory" in str(error) or "does not exist" in str(error)


def read_table(
    paths: DatasetPaths,
    snapshot: Snapshot,
    schema: pa.Schema | None,
    bounds: Range,
    columns: Sequence[Hashable] | None,
) -> pa.Table:
    """Read the rows of ``bounds`` (and ``columns``), touching only the row groups needed."""
    ordered_on = snapshot.ordered_on
    names = None
    if columns is not None:
        names = [arrow_name(column) for column in columns]
        known = schema.names if schema is not None else []
        pairs = zip(columns, names, strict=True)
        unknown = [column for column, name in pairs if name not in known]
        if unknown:
            raise ValueError(
                f"unknown column(s) {unknown} in dataset '{paths.folder}'; columns are {known}."
            )
    first, last = bounds.row_groups(snapshot)
    filtered = bounds.start is not None or bounds.end_excl is not None
    read_names = names
    if filtered and names is not None and ordered_on is not None:
        key = arrow_name(ordered_on)
        read_names = names if key in names else [*names, key]
    table = read_row_groups(paths, snapshot, schema, range(first, last), read_names)
    if filtered and ordered_on is not None and table.num_rows:
        lo, hi = bounds.rows(ordered_values(table.column(arrow_name(ordered_on))))
        table = table.slice(lo, hi - lo)
    if names is not None and read_names != names:
        table = table.select(names)
    return table


def to_frame(table: pa.Table, consume: bool = False) -> pd.DataFrame:
    """Convert to pandas with a default ``RangeIndex`` starting at 0.

    ``consume=True`` frees the table's memory column by column while converting, and keeps
    one pandas block per column (zero-copy where pyarrow can): the caller must not use
    ``table`` afterwards.
    """
    frame = table.to_pandas(split_blocks=consume, self_destruct=consume)
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        frame = frame.reset_index(drop=True)
    return frame


def retrying(load: Callable[[bool], Snapshot], attempt: Callable[[Snapshot], T]) -> T:
    """Run ``attempt`` on the current snapshot; if a file it names vanished, retry on a newer one.

    ``load(force)`` returns the current snapshot (re-reading the metadata when ``force``).
    A file missing while the snapshot did not change is damage, not a race: it is raised.
    """
    snapshot = load(False)
    for _ in range(MAX_ATTEMPTS):
        try:
            return attempt(snapshot)
        except FileNotFoundError as error:
            fresh = load(True)
            if fresh.commit == snapshot.commit and fresh.file_names == snapshot.file_names:
                raise CorruptDatasetError(
                    f"a data file listed by the dataset's metadata is missing: {error}"
                ) from error
            snapshot = fresh
    raise CorruptDatasetError(
        f"the dataset kept changing during {MAX_ATTEMPTS} read attempts; try again."
    )
