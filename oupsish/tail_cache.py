"""The tails of coalescing writes, kept in memory for the next write, within one budget.

With ``max_n_off_target_rgs``, small writes keep rewriting a dataset's trailing row
groups. The process keeps what the next write needs of them (:class:`Tail`) once it has
written them, whichever handle wrote: ``store[key].write(...)`` makes a new handle on
every call. A tail is used only while the dataset's metadata file is the one the write
that kept it committed (its signature, checked under the writers' lock), and only for
files whose row count and bounds match what the metadata records: after any other
commit, by any process, the rows are read from disk.

One dataset keeps at most ``MAX_BYTES_PER_DATASET``; all of them together at most the
limit (:func:`set_limit`), the tails written longest ago forgotten first, as are tails
not written for ``IDLE_SECONDS``: a process feeding thousands of datasets holds a bounded
amount of memory, and one that stops writing a dataset gives its tail back at its next
commit to any dataset (or :func:`clear`).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from oupsish.commit import Signature
from oupsish.frames import arrow_name, ordered_values
from oupsish.lru import SizedLru
from oupsish.snapshot import Snapshot

__all__ = [
    "DEFAULT_LIMIT",
    "IDLE_SECONDS",
    "MAX_BYTES_PER_DATASET",
    "MemoryRanges",
    "Tail",
    "clear",
    "detached",
    "forget",
    "get_limit",
    "keep",
    "kept_bytes",
    "lookup",
    "memory_ranges",
    "set_limit",
]

DEFAULT_LIMIT = 256 * 2**20
"""Bytes the tails of all datasets may take, unless :func:`set_limit` says otherwise."""
MAX_BYTES_PER_DATASET = 64 * 2**20
IDLE_SECONDS = 60.0
"""A tail not written for this long is forgotten when the process next commits a write."""

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


@dataclass(frozen=True)
class Tail:
    """The tables kept of some trailing row-group files of one committed state, by name.

    Of a dataset whose merges copy pages (stitch), only the ordered column is kept: all
    that the next copy reads. Otherwise the files are kept whole, for merges that encode
    the rows again.
    """

    tables: Mapping[str, pa.Table]
    size: int = 0  # bytes
    stitches: bool = False  # whether the last merge copied pages: keep ordered columns only

    def get(
        self, snapshot: Snapshot, indices: range, columns: Sequence[str] | None = None
    ) -> pa.Table | None:
        """Return the rows of these row groups of ``snapshot``, if every one of them is kept.

        ``columns``: the columns needed (``None``: all that are kept); ``None`` is returned
        when a table kept lacks one of them, or does not match what ``snapshot`` records of
        its row group (row count, first and last ordered values): a dataset recreated by
        another process under the same file names.
        """
        names = [snapshot.file_names[index] for index in indices]
        if not names or any(name not in self.tables for name in names):
            return None
        found = [self.tables[name] for name in names]
        if not all(
            _matches(snapshot, index, table) for index, table in zip(indices, found, strict=True)
        ):
            return None
        if columns is not None:
            if any(set(columns) - set(table.column_names) for table in found):
                return None
            found = [table.select(list(columns)) for table in found]
        return pa.concat_tables(found)


def _matches(snapshot: Snapshot, index: int, table: pa.Table) -> bool:
    """Whether ``table`` holds as many rows, and the same bounds, as row group ``index``."""
    n_rows = table.num_rows
    if n_rows != snapshot.n_rows[index] or snapshot.ordered_on is None:
        return False
    column = arrow_name(snapshot.ordered_on)
    if column not in table.column_names:
        return False
    ordered = table.column(column)
    first = ordered_values(ordered.slice(0, 1))[0]
    last = ordered_values(ordered.slice(n_rows - 1, 1))[0]
    return bool(first == snapshot.mins[index] and last == snapshot.maxs[index])


_NOTHING = Tail({})


@dataclass(frozen=True)
class _Entry:
    signature: Signature
    tail: Tail
    written_at: float  # time.monotonic()


class _Tails:
    """The tail kept for each dataset folder, the least recently written first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: SizedLru[Path, _Entry] = SizedLru(lambda entry: entry.tail.size)

    @property
    def total(self) -> int:
        return self._entries.total

    def lookup(self, folder: Path, signature: Signature | None) -> Tail:
        with self._entries.lock:
            entry = self._entries.get(folder)
        if entry is None or signature is None or entry.signature != signature:
            return _NOTHING
        return entry.tail

    def put(self, folder: Path, signature: Signature | None, tail: Tail) -> None:
        with self._entries.lock:
            now = time.monotonic()  # under the lock: entries stay in the order of this time
            kept = None
            if signature is not None and tail.tables and tail.size <= self.limit:
                kept = _Entry(signature, tail, now)
            self._entries.replace(folder, kept)
            self._shrink(now)

    def set_limit(self, limit: int) -> None:
        with self._entries.lock:
            self.limit = limit
            self._shrink(time.monotonic())

    def clear(self) -> None:
        with self._entries.lock:
            self._entries.clear()

    def _shrink(self, now: float) -> None:
        while (entry := self._entries.oldest()) is not None:
            if self.total <= self.limit and now - entry.written_at < IDLE_SECONDS:
                break
            self._entries.drop_oldest()


_tails = _Tails(DEFAULT_LIMIT)


def lookup(folder: Path, signature: Signature | None) -> Tail:
    """Return the tail kept for the dataset in ``folder`` if its metadata has ``signature``.

    Call it under the writers' lock, with the signature read there: an empty tail when
    nothing is kept for that committed state.
    """
    return _tails.lookup(folder, signature)


def keep(
    folder: Path,
    signature: Signature | None,
    snapshot: Snapshot,
    count: int,
    previous: Tail,
    written: Mapping[str, pa.Table],
    callers_memory: MemoryRanges,
    ordered_only: str | None = None,
) -> None:
    """Keep the tables of the last ``count`` row groups of ``snapshot``, as far as known.

    ``snapshot`` was just committed (its metadata file has ``signature``), on top of the
    state ``previous`` was kept for. Coalescing merges the trailing off-target row groups,
    and may complete the last on-target one: ``max_n_off_target_rgs + 1`` of them at most.
    Tables just ``written`` are kept :func:`detached` from ``callers_memory``, which the
    caller may reuse once the write returns: only their column ``ordered_only`` when
    given (the dataset's merges copy pages), whole otherwise.
    """
    kept: dict[str, pa.Table] = {}
    size = 0
    for index in range(len(snapshot) - 1, max(-1, len(snapshot) - 1 - count), -1):
        name = snapshot.file_names[index]
        if name in written:
            table = written[name]
            if ordered_only is not None and table.num_columns > 1:
                table = table.select([ordered_only])
            table = detached(table, callers_memory)
        elif name in previous.tables:
            table = previous.tables[name]
        else:
            break
        table_size = table.get_total_buffer_size()  # whole buffers, even of a slice
        if size + table_size > MAX_BYTES_PER_DATASET:
            break
        kept[name] = table
        size += table_size
    _tails.put(folder, signature, Tail(kept, size, ordered_only is not None))


def forget(folder: Path) -> None:
    """Forget the tail kept for the dataset in ``folder``, if any."""
    _tails.put(folder, None, _NOTHING)


def clear() -> None:
    """Forget the tails kept for every dataset: their next writes read from disk."""
    _tails.clear()


def set_limit(nbytes: int) -> None:
    """Set how many bytes the tails kept for all datasets of this process may take.

    Tails beyond it are forgotten at once, the least recently written first; ``0`` keeps
    none. The default is ``DEFAULT_LIMIT`` (256 MB); one dataset keeps at most
    ``MAX_BYTES_PER_DATASET`` (64 MB) whatever the limit.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"the tail cache limit is a number of bytes >= 0, got {nbytes!r}.")
    _tails.set_limit(nbytes)


def get_limit() -> int:
    """Return the bytes the tails kept for all datasets of this process may take."""
    return _tails.limit


def kept_bytes() -> int:
    """Return the bytes the tails kept for all datasets of this process take now."""
    return _tails.total
