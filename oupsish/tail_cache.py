"""The tail a dataset handle keeps between coalescing writes, and the process's budget for it.

With ``max_n_off_target_rgs``, small writes keep rewriting a dataset's trailing row
groups. The handle that wrote them keeps their rows (:class:`TailCache`), so that its next
write merges them without reading them back. Each handle keeps at most
``TailCache.MAX_BYTES``; all handles of the process together at most the budget's limit
(:func:`set_limit`): a process feeding thousands of datasets, one handle each, would
otherwise hold thousands of tails. Past the limit the tails least recently written are
forgotten; their handles' next writes read what they need from disk.
"""

from __future__ import annotations

import bisect
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from oupsish.snapshot import Snapshot

__all__ = [
    "DEFAULT_LIMIT",
    "MemoryRanges",
    "TailCache",
    "detached",
    "get_limit",
    "kept_bytes",
    "memory_ranges",
    "set_limit",
]

DEFAULT_LIMIT = 256 * 2**20
"""Bytes all the handles of a process may keep, unless :func:`set_limit` says otherwise."""

MemoryRanges = list[tuple[int, int]]


def memory_ranges(table: pa.Table) -> MemoryRanges:
    """Return the address ranges of the buffers behind ``table``."""
    return [
        (buffer.address, buffer.address + buffer.size)
        for column in table.columns
        for chunk in column.chunks
        for buffer in chunk.buffers()
        if buffer is not None and buffer.size
    ]


def detached(table: pa.Table, ranges: MemoryRanges) -> pa.Table:
    """Return ``table`` with a copy of each chunk whose memory lies in ``ranges``.

    Conversions from numpy share the caller's memory, which the caller may reuse once
    ``write()`` returns: rows kept beyond the call must not. Only those chunks are copied.
    A kept tail gathers a chunk per write (100 for 1M rows written 10k at a time): each
    buffer's address is looked up among the sorted ranges, and columns without such a
    chunk are kept as they are.
    """
    starts: list[int] = []
    ends: list[int] = []
    for low, high in sorted(ranges):
        if ends and low <= ends[-1]:
            ends[-1] = max(ends[-1], high)
        else:
            starts.append(low)
            ends.append(high)

    def shares(chunk: pa.Array[Any]) -> bool:
        for buffer in chunk.buffers():
            if buffer is not None and buffer.size:
                at = bisect.bisect_right(starts, buffer.address) - 1
                if at >= 0 and buffer.address < ends[at]:
                    return True
        return False

    columns, copied = [], False
    for column in table.columns:
        chunks = list(column.chunks)
        shared = [index for index, chunk in enumerate(chunks) if shares(chunk)]
        for index in shared:
            chunks[index] = pa.concat_arrays([chunks[index]])  # a copy, of the slice only
        copied = copied or bool(shared)
        columns.append(pa.chunked_array(chunks, type=column.type) if shared else column)
    return pa.Table.from_arrays(columns, schema=table.schema) if copied else table


class _Budget:
    """The bytes every tail cache of the process keeps, the least recently set first.

    A cache's tables are replaced under the budget's lock (:meth:`keep`), so that the
    count is exact even when handles write from several threads. Caches are referenced
    weakly: a handle dropped by its user leaves the count.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.RLock()  # a cache collected while held forgets itself
        self._sizes: OrderedDict[int, tuple[weakref.ref[TailCache], int]] = OrderedDict()
        self.total = 0

    def keep(
        self, cache: TailCache, tables: dict[str, pa.Table], snapshot: Snapshot | None, size: int
    ) -> None:
        """Give ``cache`` these tables (``size`` bytes), then forget others' beyond the limit."""
        with self._lock:
            key = id(cache)
            entry = self._sizes.pop(key, None)
            if entry is not None:
                self.total -= entry[1]
            if size > self.limit:
                tables, snapshot, size = {}, None, 0
            cache.tables, cache.snapshot = tables, snapshot
            if tables:
                ref = entry[0] if entry is not None else weakref.ref(cache, self._forgetter(key))
                self._sizes[key] = (ref, size)
                self.total += size
            self._shrink()

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self.limit = limit
            self._shrink()

    def after_fork(self) -> None:
        self._lock = threading.RLock()

    def _shrink(self) -> None:
        while self.total > self.limit:
            ref, size = self._sizes.popitem(last=False)[1]
            self.total -= size
            victim = ref()
            if victim is not None:
                victim.tables, victim.snapshot = {}, None

    def _forgetter(self, key: int) -> Any:
        def forget(ref: weakref.ref[TailCache]) -> None:
            with self._lock:
                entry = self._sizes.get(key)
                if entry is not None and entry[0] is ref:
                    del self._sizes[key]
                    self.total -= entry[1]

        return forget


_budget = _Budget(DEFAULT_LIMIT)
if hasattr(os, "register_at_fork"):  # a thread of the parent may hold the lock at the fork
    os.register_at_fork(after_in_child=_budget.after_fork)


def set_limit(nbytes: int) -> None:
    """Set how many bytes the tails kept by all dataset handles of this process may take.

    Tails beyond it are forgotten at once, the least recently written first; ``0`` keeps
    none. The default is ``DEFAULT_LIMIT`` (256 MB); one handle keeps at most
    ``TailCache.MAX_BYTES`` (64 MB) whatever the limit.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"the tail cache limit is a number of bytes >= 0, got {nbytes!r}.")
    _budget.set_limit(nbytes)


def get_limit() -> int:
    """Return the bytes the tails kept by all dataset handles of this process may take."""
    return _budget.limit


def kept_bytes() -> int:
    """Return the bytes the tails kept by all dataset handles of this process take now."""
    return _budget.total


class TailCache:
    """The trailing off-target row groups a dataset handle wrote, kept for its next write.

    With ``max_n_off_target_rgs``, small writes keep rewriting the dataset's tail, and
    reading it back from disk costs about as much as writing it. The tables are only used
    while the committed snapshot is still the one this handle produced (the writer reuses
    it when the metadata file is unchanged): after any other commit, even one that deleted
    and recreated the dataset with the same file names, the rows are read from disk.
    """

    MAX_BYTES = 64 * 2**20  # memory a handle may keep between writes

    def __init__(self) -> None:
        self.tables: dict[str, pa.Table] = {}
        self.snapshot: Snapshot | None = None  # the state the tables belong to

    def get(
        self, snapshot: Snapshot, names: Sequence[str], columns: Sequence[str] | None = None
    ) -> pa.Table | None:
        """Return the rows of these files of ``snapshot``, if every one of them is kept.

        ``columns``: the columns needed (``None``: all that are kept); ``None`` is returned
        when a table kept lacks one of them.
        """
        tables = self.tables  # the budget may empty this cache meanwhile: read once
        if snapshot is not self.snapshot:
            return None
        if not names or any(name not in tables for name in names):
            return None
        found = [tables[name] for name in names]
        if columns is not None:
            if any(set(columns) - set(table.column_names) for table in found):
                return None
            found = [table.select(list(columns)) for table in found]
        return pa.concat_tables(found)

    def clear(self) -> None:
        """Forget every table."""
        _budget.keep(self, {}, None, 0)

    def keep(
        self,
        base: Snapshot,
        snapshot: Snapshot,
        count: int,
        written: Mapping[str, pa.Table],
        callers_memory: MemoryRanges,
        columns: Sequence[str] | None = None,
    ) -> None:
        """Keep the tables of the last ``count`` row groups of ``snapshot``, as far as known.

        ``snapshot`` was committed on top of ``base``; tables kept for an older state are
        reused only if ``base`` is that state. Coalescing merges the trailing off-target
        row groups, and may complete the last on-target one: ``max_n_off_target_rgs + 1``
        of them at most. Tables just ``written`` are kept :func:`detached` from
        ``callers_memory``, which the caller may reuse once the write returns; of them,
        only ``columns`` when given (and the tables hold them).
        """
        previous = self.tables if base is self.snapshot else {}
        kept: dict[str, pa.Table] = {}
        size = 0
        for index in range(len(snapshot) - 1, max(-1, len(snapshot) - 1 - count), -1):
            name = snapshot.file_names[index]
            if name in written:
                table = written[name]
                if columns is not None and not set(columns) - set(table.column_names):
                    table = table.select(list(columns))
                table = detached(table, callers_memory)
            elif name in previous:
                table = previous[name]
            else:
                break
            table_size = table.get_total_buffer_size()  # whole buffers, even of a slice
            if size + table_size > self.MAX_BYTES:
                break
            kept[name] = table
            size += table_size
        _budget.keep(self, kept, snapshot, size)
