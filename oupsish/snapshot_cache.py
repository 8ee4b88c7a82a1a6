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

from pathlib import Path

import pyarrow as pa

from oupsish.lru import SizedLru
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
    # Whole buffers (``nbytes`` would walk slices' offsets: several times slower).
    stats = snapshot.stats
    size = len(data) + stats.get_total_buffer_size() + PYTHON_BYTES_PER_ROW_GROUP * len(snapshot)
    bounds = [stats.column(name) for name in STATS_COLUMNS[2:]]
    if pa.types.is_string(bounds[0].type) or pa.types.is_large_string(bounds[0].type):
        size += sum(column.get_total_buffer_size() for column in bounds)
        size += 2 * PYTHON_STRING_BYTES * len(snapshot)
    return size


_snapshots: SizedLru[Path, tuple[bytes, Snapshot, int]] = SizedLru(lambda entry: entry[2])


def lookup(folder: Path, data: bytes) -> Snapshot | None:
    """Return the snapshot of the dataset in ``folder`` if its metadata file is ``data``."""
    with _snapshots.lock:
        entry = _snapshots.get(folder, touch=True)
    return entry[1] if entry is not None and entry[0] == data else None


def remember(folder: Path, data: bytes, snapshot: Snapshot) -> None:
    """Keep ``snapshot``, the content of the metadata file ``data`` of ``folder``."""
    size = _footprint(data, snapshot)
    with _snapshots.lock:
        _snapshots.replace(folder, (data, snapshot, size) if size <= LIMIT_BYTES else None)
        while _snapshots.total > LIMIT_BYTES:
            _snapshots.drop_oldest()


def cached_bytes() -> int:
    """Return the memory the kept snapshots take (estimated)."""
    return _snapshots.total


def clear() -> None:
    """Forget every kept snapshot: the next open of each dataset decodes its metadata."""
    with _snapshots.lock:
        _snapshots.clear()
