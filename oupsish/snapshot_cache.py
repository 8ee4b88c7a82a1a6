"""Snapshots decoded in this process, reused while a dataset's metadata file is unchanged.

Opening a dataset reads its metadata file (a few kB to a few hundred) and decodes it:
0.3-0.5 ms for 10 to 1,000 row groups, most of an open. ``store[key]`` makes a new handle
on every call, so a process going back to the same datasets decodes the same files again
and again. A snapshot is a function of the file's bytes alone: the bytes read are
compared with those the snapshot was decoded from (or, after a commit, encoded to), and
an equal file gives the same immutable snapshot, whoever wrote it and whatever its
inode or timestamps.

One budget for the process: ``LIMIT_BYTES`` of metadata files, the least recently used
forgotten first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from oupsish.snapshot import Snapshot

__all__ = ["LIMIT_BYTES", "cached_bytes", "clear", "lookup", "remember"]

LIMIT_BYTES = 32 * 2**20
"""Bytes of metadata files whose snapshots are kept (their decoded tables take about as
much again): about 3,000 datasets of 100 row groups."""


class _Snapshots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, tuple[bytes, Snapshot]] = OrderedDict()
        self.total = 0

    def lookup(self, folder: Path, data: bytes) -> Snapshot | None:
        with self._lock:
            entry = self._entries.get(folder)
            if entry is None or entry[0] != data:
                return None
            self._entries.move_to_end(folder)
            return entry[1]

    def remember(self, folder: Path, data: bytes, snapshot: Snapshot) -> None:
        if len(data) > LIMIT_BYTES:
            return
        with self._lock:
            old = self._entries.pop(folder, None)
            if old is not None:
                self.total -= len(old[0])
            self._entries[folder] = (data, snapshot)
            self.total += len(data)
            while self.total > LIMIT_BYTES:
                _, (forgotten, _) = self._entries.popitem(last=False)
                self.total -= len(forgotten)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0

    def after_fork(self) -> None:
        # Another thread may have held the lock at the fork: the child gets a new one.
        self._lock = threading.Lock()


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
    """Return the bytes of metadata files whose snapshots are kept."""
    return _snapshots.total


def clear() -> None:
    """Forget every kept snapshot: the next open of each dataset decodes its metadata."""
    _snapshots.clear()
