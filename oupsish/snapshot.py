"""The immutable state of a dataset: what readers hold and what the planner consumes.

A :class:`Snapshot` is one committed version of a dataset: its row groups (file names,
row counts, ``ordered_on`` min and max), its schema and its key-value metadata. A commit
turns one snapshot into the next with :meth:`Snapshot.successor`; nothing mutates a
snapshot in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from oupsish.frames import OrderedOn, ordered_values
from oupsish.naming import DEFAULT_TOP_WIDTH, PositionKey, parse_name

__all__ = [
    "STATS_COLUMNS",
    "FileChanges",
    "Snapshot",
    "empty_stats",
    "file_changes",
    "stats_table",
]

STATS_COLUMNS = ("file_names", "n_rows", "ordered_on_mins", "ordered_on_maxs")


def stats_table(
    file_names: Sequence[str],
    n_rows: Sequence[int] | npt.NDArray[np.int64],
    mins: pa.Array[Any] | Sequence[Any],
    maxs: pa.Array[Any] | Sequence[Any],
    ordered_on_type: pa.DataType,
) -> pa.Table:
    """Build a row-group statistics table."""
    return pa.table(
        {
            "file_names": pa.array(file_names, pa.string()),
            "n_rows": pa.array(n_rows, pa.int64()),
            "ordered_on_mins": pa.array(mins, ordered_on_type),
            "ordered_on_maxs": pa.array(maxs, ordered_on_type),
        }
    )


@lru_cache(maxsize=64)
def empty_stats(ordered_on_type: pa.DataType) -> pa.Table:
    """Return the statistics of no row group (immutable: one table per type is shared)."""
    return stats_table([], [], [], [], ordered_on_type)


def _read_only(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    values.flags.writeable = False
    return values


@dataclass(frozen=True)
class Snapshot:
    """One committed state of a dataset.

    Attributes
    ----------
    commit : int
        Number of the commit that produced this state; 0 when nothing was committed by
        oupsish (an absent or predecessor-written dataset).
    ordered_on : str, tuple or None
        The column rows are ordered on; ``None`` until the first write sets it.
    schema : pyarrow.Schema or None
        The data's schema; ``None`` before the first rows, or not yet read for a dataset
        written by the predecessor.
    key_value_metadata : Mapping[str, str]
        The user's metadata.
    stats : pyarrow.Table
        One row per row group, in order: ``file_names``, ``n_rows``, ``ordered_on_mins``,
        ``ordered_on_maxs``.
    exists : bool
        Whether a metadata file was found on disk.
    legacy : bool
        Whether the metadata file was written by the predecessor (``oups``).
    """

    commit: int
    ordered_on: OrderedOn | None
    schema: pa.Schema | None
    key_value_metadata: Mapping[str, str]
    stats: pa.Table
    exists: bool
    legacy: bool = False

    @classmethod
    def empty(cls, ordered_on: OrderedOn | None = None) -> Snapshot:
        """Return the state of a dataset that has no metadata file yet."""
        return cls(
            commit=0,
            ordered_on=ordered_on,
            schema=None,
            key_value_metadata=MappingProxyType({}),
            stats=empty_stats(pa.null()),
            exists=False,
        )

    def __len__(self) -> int:
        return self.stats.num_rows

    # Read-only: one snapshot is shared by every handle of the process on that state.
    @cached_property
    def file_names(self) -> tuple[str, ...]:
        """File name of each row group, in order."""
        return tuple(str(name) for name in self.stats.column("file_names").to_pylist())

    @cached_property
    def n_rows(self) -> npt.NDArray[np.int64]:
        """Row count of each row group."""
        return _read_only(np.asarray(self.stats.column("n_rows").to_numpy(), dtype=np.int64))

    @cached_property
    def mins(self) -> npt.NDArray[Any]:
        """First ``ordered_on`` value of each row group, comparable with new values."""
        return _read_only(ordered_values(self.stats.column("ordered_on_mins")))

    @cached_property
    def maxs(self) -> npt.NDArray[Any]:
        """Last ``ordered_on`` value of each row group, comparable with new values."""
        return _read_only(ordered_values(self.stats.column("ordered_on_maxs")))

    @cached_property
    def row_offsets(self) -> npt.NDArray[np.int64]:
        """Index of each row group's first row in the whole dataset, then the total."""
        return _read_only(np.concatenate([[0], np.cumsum(self.n_rows)]).astype(np.int64))

    @property
    def n_total_rows(self) -> int:
        """Number of rows in the dataset."""
        return int(self.row_offsets[-1])

    @cached_property
    def top_width(self) -> int:
        """Digits of the top segment of this dataset's file names."""
        if not len(self):
            return DEFAULT_TOP_WIDTH
        return parse_name(self.file_names[0])[1]

    def position_key(self, index: int) -> PositionKey | None:
        """Return the position key of row group ``index``, ``None`` outside the dataset."""
        if 0 <= index < len(self):
            return parse_name(self.file_names[index])[0]
        return None

    def subset(self, indices: Sequence[int] | range) -> Snapshot:
        """Return the same state restricted to some row groups (for read-only views)."""
        return dataclasses.replace(self, stats=self.stats.take(pa.array(list(indices), pa.int64())))

    def successor(
        self,
        *,
        ordered_on: OrderedOn | None,
        schema: pa.Schema | None,
        key_value_metadata: Mapping[str, str],
        stats: pa.Table,
        file_names: Sequence[str] | None = None,
    ) -> Snapshot:
        """Return the state the next commit produces.

        ``file_names``, if given, must be ``stats``' column: it spares converting the
        whole column again on a large dataset.
        """
        successor = Snapshot(
            commit=self.commit + 1,
            ordered_on=ordered_on,
            schema=schema,
            key_value_metadata=MappingProxyType(dict(key_value_metadata)),
            stats=stats,
            exists=True,
            legacy=False,
        )
        if file_names is not None:
            successor.__dict__["file_names"] = tuple(file_names)  # the cached_property's slot
        return successor


@dataclass(frozen=True)
class FileChanges:
    """How the row-group files of two snapshots differ (indices of row groups, in order)."""

    added: list[int]
    """Row groups of the later snapshot that the earlier one does not list."""
    removed: list[int]
    """Row groups of the earlier snapshot that the later one does not list."""


def _common_prefix(left: Sequence[str], right: Sequence[str]) -> int:
    """Length of the longest common prefix, by bisection on C-speed slice comparisons.

    Each step compares only the half still in doubt: about twice the shorter list's length
    in all (an append to 5,000 row groups: one comparison of the whole list).
    """
    low, high = 0, min(len(left), len(right))
    if left[:high] == right[:high]:
        return high
    # The first difference is at an index in [low, high).
    while high - low > 1:
        middle = (low + high) // 2
        if left[low:middle] == right[low:middle]:
            low = middle
        else:
            high = middle
    return low


def file_changes(before: Snapshot, after: Snapshot) -> FileChanges:
    """Compare the file lists of two snapshots, touching only the part that differs.

    A write changes a few row groups of a possibly long list: the common prefix and suffix
    are skipped at C speed, so an append to 5,000 row groups compares a handful of names.
    """
    old, new = before.file_names, after.file_names
    start = _common_prefix(old, new)
    rest_old, rest_new = old[start:], new[start:]
    suffix = _common_prefix(rest_old[::-1], rest_new[::-1])
    old_middle = rest_old[: len(rest_old) - suffix]
    new_middle = rest_new[: len(rest_new) - suffix]
    old_set, new_set = set(old_middle), set(new_middle)
    return FileChanges(
        added=[start + i for i, name in enumerate(new_middle) if name not in old_set],
        removed=[start + i for i, name in enumerate(old_middle) if name not in new_set],
    )
