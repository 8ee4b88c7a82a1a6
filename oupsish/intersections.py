"""Synchronized iteration over several datasets: ``Store.iter_intersections``.

Spans ``[lo, hi)`` of ``ordered_on`` values are cut where a row group starts in any of the
datasets (row groups sharing an edge value count as one), so each step holds about one row
group per dataset in memory. Each yield maps every key to its rows in the span.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from oupsish.commit import SUPERSEDED_RETENTION_SECONDS, DatasetPaths
from oupsish.errors import SnapshotExpiredError
from oupsish.frames import OrderedOn, arrow_name, ordered_values
from oupsish.read import Range, read_row_groups, to_frame
from oupsish.snapshot import Snapshot
from oupsish.writer import schema_of

__all__ = ["KeySource", "iter_intersections"]

SnapshotLoader = Callable[[bool], Snapshot]
Rows = pa.Table | pd.DataFrame


@dataclass(frozen=True)
class KeySource:
    """What ``iter_intersections`` needs of one dataset: its paths and current snapshot."""

    key: Hashable
    paths: DatasetPaths
    load: SnapshotLoader


def _unit_starts(snapshot: Snapshot) -> npt.NDArray[np.bool_]:
    """Row groups that start a unit: those not sharing their first value with the previous."""
    starts = np.ones(len(snapshot), dtype=bool)
    if len(snapshot) > 1:
        starts[1:] = snapshot.mins[1:] != snapshot.maxs[:-1]
    return starts


def _family(arrow_type: pa.DataType) -> tuple[str, Any]:
    if pa.types.is_timestamp(arrow_type):
        return ("timestamp", arrow_type.tz)
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return ("number", None)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ("string", None)
    return (str(arrow_type), None)


@dataclass
class _KeyStream:
    """Rows of one dataset, loaded row group by row group, handed out span by span."""

    source: KeySource
    snapshot: Snapshot
    schema: pa.Schema | None
    column: str
    bounds: Range
    n_prev: int
    next_rg: int = 0
    last_rg: int = 0
    pending: Rows | None = None
    pending_values: npt.NDArray[Any] = field(default_factory=lambda: np.empty(0))
    trim_below: Any = None
    prefix: Rows | None = None
    columns: list[str] | None = None  # to hand out; the ordered column is read regardless
    as_arrow: bool = False  # hand out Arrow tables rather than pandas frames

    def start(self) -> None:
        self.next_rg, self.last_rg = self.bounds.row_groups(self.snapshot)
        self.trim_below = self.bounds.start
        if self.n_prev and self.bounds.start is not None:
            self.prefix = self._rows_before(self.next_rg, self.n_prev)

    def has_prefix(self) -> bool:
        return self.prefix is not None and _length(self.prefix) > 0

    def boundaries(self) -> npt.NDArray[Any]:
        """Return the first values of the units after the first one in range, below the end."""
        starts = np.flatnonzero(_unit_starts(self.snapshot))
        inside = starts[(starts > self.next_rg) & (starts < self.last_rg)]
        return np.asarray(self.snapshot.mins[inside])

    def _read(self, indices: Sequence[int]) -> pa.Table:
        names = self.columns
        if names is not None and self.column not in names:
            names = [*names, self.column]
        return read_row_groups(self.source.paths, self.snapshot, self.schema, indices, names)

    def output(self, rows: pa.Table) -> Rows:
        """Keep the requested columns, in order; convert to pandas once, unless Arrow is asked."""
        selected = rows if self.columns is None else rows.select(self.columns)
        return selected if self.as_arrow else to_frame(selected, consume=True)

    def _rows_before(self, first_rg: int, n: int) -> Rows:
        """Return up to ``n`` rows just before ``start``."""
        pieces: list[pa.Table] = []
        count = 0
        index = min(first_rg, len(self.snapshot) - 1)
        while index >= 0 and count < n:
            table = self._read([index])
            values = ordered_values(table.column(self.column))
            below = int(np.searchsorted(values, self.bounds.start, "left"))  # type: ignore[call-overload]
            table = table.slice(0, below)
            pieces.insert(0, table)
            count += table.num_rows
            index -= 1
        if not pieces:
            return self._empty()
        rows = pa.concat_tables(pieces)
        return self.output(rows.slice(max(0, rows.num_rows - n)))

    def _empty(self) -> Rows:
        if self.schema is None:
            return pa.table({}) if self.as_arrow else pd.DataFrame()
        empty = self.schema.empty_table()
        if self.columns is not None and self.column not in self.columns:
            empty = empty.select([*self.columns, self.column])
        return self.output(empty)

    def _load_until(self, hi: Any) -> None:
        loaded = []
        while self.next_rg < self.last_rg and (hi is None or self.snapshot.mins[self.next_rg] < hi):
            loaded.append(self.next_rg)
            self.next_rg += 1
        if not loaded:
            return
        table = self._read(loaded)
        values = ordered_values(table.column(self.column))
        if self.trim_below is not None:
            cut = int(np.searchsorted(values, self.trim_below, "left"))
            table, values = table.slice(cut), values[cut:]
        # Converted once per load; spans are then cheap slices of it.
        rows = self.output(table)
        del table
        if self.pending is None or _length(self.pending) == 0:
            self.pending, self.pending_values = rows, values
        else:
            self.pending = _concat([self.pending, rows])
            self.pending_values = np.concatenate([self.pending_values, values])

    def take_until(self, lo: Any, hi: Any) -> Rows:
        """Return the rows below ``hi`` (all remaining rows of the range when ``None``)."""
        try:
            self._load_until(hi)
        except FileNotFoundError as error:
            # Spans already yielded came from this snapshot: going on with another one
            # would mix two states. Retired files outlive SUPERSEDED_RETENTION_SECONDS.
            raise SnapshotExpiredError(
                f"dataset '{self.source.paths.folder}' (key '{self.source.key}'): files of "
                f"the snapshot being iterated were removed after their retention period "
                f"({SUPERSEDED_RETENTION_SECONDS:g} s); start the iteration again."
            ) from error
        if self.pending is None:
            rows = self._empty()
        else:
            cut = (
                len(self.pending_values)
                if hi is None
                else int(np.searchsorted(self.pending_values, hi, "left"))
            )
            rows = _slice(self.pending, 0, cut)
            self.pending = _slice(self.pending, cut, None)
            self.pending_values = self.pending_values[cut:]
        if self.prefix is not None:
            rows = _concat([self.prefix, rows]) if _length(rows) else self.prefix
            self.prefix = None
        return rows


def _length(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else len(rows)


def _slice(rows: Rows, start: int, stop: int | None) -> Rows:
    if isinstance(rows, pa.Table):
        return rows.slice(start, None if stop is None else stop - start)
    part: pd.DataFrame = rows.iloc[start:stop].reset_index(drop=True)  # a view (pandas CoW)
    return part


def _concat(parts: list[Rows]) -> Rows:
    if all(isinstance(part, pa.Table) for part in parts):
        return pa.concat_tables(parts)  # type: ignore[arg-type]
    joined: pd.DataFrame = pd.concat(parts, ignore_index=True)  # type: ignore[arg-type]
    return joined


def _n_prev_list(n_prev: object, n_keys: int) -> list[int]:
    if isinstance(n_prev, int | np.integer) and not isinstance(n_prev, bool):
        values: list[object] = [n_prev] * n_keys
    elif isinstance(n_prev, Sequence | np.ndarray) and not isinstance(n_prev, str | bytes):
        values = list(n_prev)
    else:
        raise TypeError(
            f"n_prev must be an int or a list of ints (one per key), got "
            f"{type(n_prev).__name__} {n_prev!r}."
        )
    if len(values) != n_keys:
        raise ValueError(f"n_prev has {len(values)} values for {n_keys} keys: {n_prev!r}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            context = f" in {n_prev!r}" if isinstance(n_prev, Sequence | np.ndarray) else ""
            raise ValueError(f"n_prev values must be ints >= 0, got {value!r}{context}.")
    return [int(value) for value in values]  # type: ignore[call-overload]


def iter_intersections(
    sources: Sequence[KeySource],
    start: object = None,
    n_prev: int | Sequence[int] = 0,
    end_excl: object = None,
    columns: Sequence[Hashable] | None = None,
    output: str = "pandas",
) -> Iterator[dict[Hashable, Any]]:
    """Yield ``{key: rows in span}`` for consecutive spans covering ``[start, end_excl)``.

    See :meth:`oupsish.Store.iter_intersections`. Arguments are checked when this is
    called, not at the first iteration; rows are read while iterating.
    """
    if output not in ("pandas", "arrow"):
        raise ValueError(f"output must be 'pandas' or 'arrow', got {output!r}.")
    names = None if columns is None else [arrow_name(column) for column in columns]
    counts = _n_prev_list(n_prev, len(sources))
    snapshots = [source.load(False) for source in sources]
    streams: list[_KeyStream] = []
    reference: tuple[Hashable, OrderedOn, tuple[str, Any]] | None = None
    for source, snapshot, count in zip(sources, snapshots, counts, strict=True):
        schema = schema_of(source.paths, snapshot)
        if snapshot.ordered_on is None or schema is None:
            continue  # an empty dataset: its frames stay empty
        family = _family(schema.field(arrow_name(snapshot.ordered_on)).type)
        if reference is None:
            reference = (source.key, snapshot.ordered_on, family)
        elif snapshot.ordered_on != reference[1] or family != reference[2]:
            raise ValueError(
                f"keys must share their ordered_on column: '{reference[0]}' is ordered on "
                f"{reference[1]!r} ({reference[2][0]}), '{source.key}' on "
                f"{snapshot.ordered_on!r} ({family[0]})."
            )
        bounds = Range.of(snapshot, schema, start, end_excl, str(source.paths.folder))
        unknown = [name for name in names or [] if name not in schema.names]
        if unknown:
            raise ValueError(
                f"unknown column(s) {unknown} in dataset '{source.key}'; columns are "
                f"{schema.names}."
            )
        stream = _KeyStream(
            source, snapshot, schema, arrow_name(snapshot.ordered_on), bounds, count
        )
        stream.columns = names
        stream.as_arrow = output == "arrow"
        streams.append(stream)
    return _iterate(sources, snapshots, streams, output == "arrow")


def _iterate(
    sources: Sequence[KeySource],
    snapshots: list[Snapshot],
    streams: list[_KeyStream],
    as_arrow: bool,
) -> Iterator[dict[Hashable, Any]]:
    for stream in streams:
        stream.start()
    if not any(stream.next_rg < stream.last_rg or stream.has_prefix() for stream in streams):
        return
    all_boundaries = [stream.boundaries() for stream in streams]
    spans: list[Any] = list(np.unique(np.concatenate(all_boundaries))) if all_boundaries else []
    spans.append(streams[0].bounds.end_excl)
    empty_frames: dict[Hashable, Any] = {
        source.key: pa.table({}) if as_arrow else pd.DataFrame()
        for source, snapshot in zip(sources, snapshots, strict=True)
        if not any(stream.source is source for stream in streams)
    }
    by_key = {stream.source.key: stream for stream in streams}
    lo = streams[0].bounds.start
    for hi in spans:
        chunk: dict[Hashable, Any] = {}
        for source in sources:
            key_stream = by_key.get(source.key)
            if key_stream is None:
                chunk[source.key] = empty_frames[source.key]
            else:
                chunk[source.key] = key_stream.take_until(lo, hi)
        yield chunk
        lo = hi
