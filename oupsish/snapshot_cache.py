"""Snapshots decoded in this process, reused while a dataset's metadata file is unchanged.

Opening a dataset reads its metadata file (a few kB to a few hundred) and decodes it:
0.3-0.5 ms for 10 to 1,000 row groups, most of an open. ``store[key]`` makes a new handle
on every call, so a process going back to the same datasets decodes the same files again
and again. A snapshot is a function of the file's bytes alone: the bytes read are
compared with those the snapshot was decoded from (or, after a commit, encoded to), and
an equal file gives the same immutable snapshot, whoever wrote it and whatever its
inode or timestamps.

One budget for the process: ``LIMIT_BYTES`` of memory (estimated), the least recently
used forgotten first; ``0`` keeps none.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import pyarrow as pa

from oupsish.snapshot import STATS_COLUMNS, Snapshot

__all__ = ["LIMIT_BYTES", "cached_bytes", "clear", "lookup", "remember"]

LIMIT_BYTES = 64 * 2**20
"""Memory the kept snapshots may take, estimated: about 2,000 datasets of 100 row groups,
or 60 of 5,000. Set it (``oupsish.snapshot_cache.LIMIT_BYTES = n``) before snapshots are
kept; ``0`` keeps none."""

PYTHON_BYTES_PER_ROW_GROUP = 100
"""Memory of a row group's file name as a Python string and its numbers as numpy arrays,
computed once a snapshot is used (measured for 5,000 row groups: 446 kB)."""


PYTHON_STRING_BYTES = 49
"""Memory of an empty Python string: bounds of a string column become such objects."""


def _footprint(data: bytes, snapshot: Snapshot) -> int:
    """Memory a kept snapshot takes: the file's bytes, its table, and values derived."""
    size = len(data) + snapshot.stats.nbytes + PYTHON_BYTES_PER_ROW_GROUP * len(snapshot)
    bounds = [snapshot.stats.column(name) for name in STATS_COLUMNS[2:]]
    if pa.types.is_string(bounds[0].type) or pa.types.is_large_string(bounds[0].type):
        size += sum(column.nbytes for column in bounds) + 2 * PYTHON_STRING_BYTES * len(snapshot)
    return size


class _Snapshots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, tuple[bytes, Snapshot, int]] = OrderedDict()
        self.total = 0

    def lookup(self, folder: Path, data: bytes) -> Snapshot | None:
        with self._lock:
            entry = self._entries.get(folder)
            if entry is None or entry[0] != data:
                return None
            self._entries.move_to_end(folder)
            return entry[1]

    def remember(self, folder: Path, data: bytes, snapshot: Snapshot) -> None:
        size = _footprint(data, snapshot)
        with self._lock:
            old = self._entries.pop(folder, None)
            if old is not None:
                self.total -= old[2]
            if size > LIMIT_BYTES:
                return
            self._entries[folder] = (data, snapshot, size)
            self.total += size
            while self.total > LIMIT_BYTES:
                self.total -= self._entries.popitem(last=False)[1][2]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0

    def after_fork(self) -> None:
        # A thread of the parent may have held the lock, amid an update of the total.
        self._lock = threading.Lock()
        self.total = sum(size for _, _, size in self._entries.values())


_snapshots = _Snapshots()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_snapshots.after_fork)


def lookup(folder: Path, data: bytes) -> Snapshot | None:
    """Return the snapshot of the dataset in ``folder`` if its metadata file is ``data``."""
    return _snapshots.lookup(folder, data)


def remember(folder: Path, data: bytes, snapshot: Snapshot) -> None:
    """Keep ``snapshot``, the content of the metadata file ``data`` of ``folder``."""
    _snapshots.remember(folder, data, snapshot)


def cached_bytes() -> int:
    """Return the memory the kept snapshots take (estimated)."""
    return _snapshots.total


def clear() -> None:
    """Forget every kept snapshot: the next open of each dataset decodes its metadata."""
    _snapshots.clear()
