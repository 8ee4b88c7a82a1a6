"""Commit history: what each commit did, kept beside the metadata file.

``<name>_history`` holds one JSON line per commit: its number, time, operation, rows and
row groups added and removed, the library version and the key-value metadata change. The
line is appended and fsynced *before* the metadata swap that commits, so every committed
state has its line. A line whose commit never happened (the writer died between the append
and the swap) carries a number the metadata has not reached; the next writer reuses that
number, and readers keep, for each number, the last line written. Lines numbered above
the current commit, and a torn last line, are ignored. Appending is O(1) per commit.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from oupsish._version import __version__
from oupsish.snapshot import FileChanges, Snapshot, file_changes

__all__ = ["HISTORY_COLUMNS", "HISTORY_SUFFIX", "append_entry", "entry", "read_history"]

HISTORY_SUFFIX = "_history"
HISTORY_COLUMNS = (
    "commit",
    "time",
    "operation",
    "rows_added",
    "rows_removed",
    "rows_after",
    "row_groups_added",
    "row_groups_removed",
    "metadata_change",
    "version",
)


def _rows(snapshot: Snapshot, indices: list[int]) -> int:
    return int(snapshot.n_rows[indices].sum()) if indices else 0


def _metadata_change(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str | None]:
    change: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
    change.update({k: None for k in before if k not in after})
    return change


def _operation(before: Snapshot, after: Snapshot, changes: FileChanges) -> str:
    added, removed = changes.added, changes.removed
    if not added and not removed:
        return "metadata"
    if not added:
        return "delete"
    if before.n_total_rows == after.n_total_rows and len(added) < len(removed):
        return "compact"
    # Only trailing row groups were rewritten (coalesced), if any: the removed ones are
    # the last ones of ``before``.
    if not removed or removed == list(range(removed[0], len(before))):
        return "append"
    return "insert"


def entry(before: Snapshot, after: Snapshot, changes: FileChanges | None = None) -> dict[str, Any]:
    """Describe the commit turning ``before`` into ``after``.

    ``operation`` is ``append`` (rows after the stored ones; trailing row groups may be
    coalesced), ``insert`` (row groups inside the dataset rewritten), ``compact`` (fewer
    row groups, same rows), ``delete`` (rows removed) or ``metadata`` (no data change).
    ``rows_added`` and ``rows_removed`` count the rows of the row groups written and
    superseded (an insert rewrites its neighbours: both counts include their rows).
    """
    changes = changes if changes is not None else file_changes(before, after)
    return {
        "commit": after.commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "operation": _operation(before, after, changes),
        "rows_added": _rows(after, changes.added),
        "rows_removed": _rows(before, changes.removed),
        "rows_after": after.n_total_rows,
        "row_groups_added": len(changes.added),
        "row_groups_removed": len(changes.removed),
        "metadata_change": _metadata_change(before.key_value_metadata, after.key_value_metadata),
        "version": __version__,
    }


def history_path(metadata: Path) -> Path:
    """Return the history file of the dataset whose metadata file is ``metadata``."""
    return metadata.with_name(metadata.name.removesuffix("_opdmd") + HISTORY_SUFFIX)


def append_entry(path: Path, record: Mapping[str, Any], fsync: bool = True) -> None:
    """Append ``record`` as one line and make it durable (before the commit's swap)."""
    line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        # A torn last line (a writer died mid-append) must not swallow this one.
        if size:
            os.lseek(fd, size - 1, os.SEEK_SET)  # O_APPEND still writes at the end
            if os.read(fd, 1) != b"\n":
                line = b"\n" + line
        os.write(fd, line)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_history(path: Path, current_commit: int) -> pd.DataFrame:
    """Return the committed entries, oldest first (empty frame when there are none)."""
    entries: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
            number = int(record["commit"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line
        if 0 < number <= current_commit:
            entries[number] = record
    frame: pd.DataFrame = pd.DataFrame(
        [entries[number] for number in sorted(entries)], columns=list(HISTORY_COLUMNS)
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame
