"""Names of row-group files: they sort like the row groups they hold, and are never reused.

A name is ``file_<position>[-<commit>].parquet``:

- ``<position>`` is a *position key*: a top segment of ``top_width`` digits (5 by default,
  like the predecessor's ``file_00000.parquet``), optionally followed by ``_``-joined
  5-digit child segments. Read it as a number with fractional digits: ``00003_50000``
  sits halfway between ``00003`` and ``00004``. Because every segment of a dataset has a
  fixed width and ``'.' < '-' < '_'`` do not matter between different keys, names compare
  like their positions, so any Parquet reader that lists a quiescent folder in name order
  reads rows in order. New rows landing between two row groups get a key between theirs;
  no committed file is ever renamed.
- ``<commit>`` is the number of the commit that wrote the file. A position key may be
  reused (a rewritten tail keeps its position) but the commit number makes the whole name
  new, so a reader holding an old snapshot can never open a different file under a name it
  knows. Files written by the predecessor have no commit part.

Everything here is pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "DATA_FILE_PATTERN",
    "DEFAULT_TOP_WIDTH",
    "PositionKey",
    "allocate_keys",
    "format_name",
    "has_room_before",
    "is_data_file_name",
    "parse_name",
]

PositionKey = tuple[int, ...]
"""Segments of a position key: ``(top, child1, child2, ...)``, no trailing zero child."""

DEFAULT_TOP_WIDTH = 5
CHILD_WIDTH = 5
CHILD_BASE = 10**CHILD_WIDTH
MAX_DEPTH = 40  # 40 levels of 5 digits: names stay far below filesystem limits

_NAME = re.compile(r"file_(\d+)((?:_\d{5})*)(?:-(\d+))?\.parquet")
DATA_FILE_PATTERN = "^" + _NAME.pattern + "$"
"""The same rule as a whole-string regular expression (for Arrow compute, RE2 syntax)."""


def is_data_file_name(name: str) -> bool:
    """Return whether ``name`` is the name of a row-group file."""
    return _NAME.fullmatch(name) is not None


def parse_name(name: str) -> tuple[PositionKey, int]:
    """Return the position key and top-segment width of a row-group file name.

    Raises
    ------
    ValueError
        If ``name`` is not a row-group file name.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a row-group file name (file_<id>[-<commit>].parquet)")
    top, children, _ = match.groups()
    segments = [int(top)] + [int(part) for part in children.split("_")[1:]]
    return tuple(segments), len(top)


def format_name(key: PositionKey, top_width: int, commit: int | None) -> str:
    """Return the file name of position ``key`` written by ``commit``."""
    text = f"{key[0]:0{top_width}d}" + "".join(f"_{child:0{CHILD_WIDTH}d}" for child in key[1:])
    if commit is not None:
        text += f"-{commit}"
    return f"file_{text}.parquet"


def has_room_before(key: PositionKey) -> bool:
    """Return whether a position key exists below ``key`` (all do, but ``00000``)."""
    return key != (0,)


def _scaled(key: Sequence[int], depth: int) -> int:
    """Return ``key`` as an integer count of depth-``depth`` units (truncating deeper parts)."""
    value = key[0]
    for level in range(1, depth):
        value = value * CHILD_BASE + (key[level] if level < len(key) else 0)
    return value


def _unscaled(value: int, depth: int) -> PositionKey:
    segments = []
    for _ in range(depth - 1):
        value, child = divmod(value, CHILD_BASE)
        segments.append(child)
    segments.append(value)
    segments.reverse()
    while len(segments) > 1 and segments[-1] == 0:
        segments.pop()
    return tuple(segments)


def allocate_keys(
    lo: PositionKey | None, hi: PositionKey | None, count: int, top_width: int
) -> list[PositionKey] | None:
    """Return ``count`` increasing position keys strictly between ``lo`` and ``hi``.

    Parameters
    ----------
    lo, hi : PositionKey or None
        The keys of the row groups kept before and after the new ones; ``None`` means no
        row group on that side.
    count : int
        How many keys to allocate.
    top_width : int
        Digits of the top segment in this dataset.

    Returns
    -------
    list of PositionKey or None
        Keys at the shallowest depth that has room: consecutive after ``lo`` when nothing
        follows (appends stay ``00007``, ``00008``...), evenly spread between ``lo`` and
        ``hi`` otherwise (so that later inserts there find room too). ``None`` when there
        is no room at any depth, which only happens below a first key ``00000``.
    """
    if count <= 0:
        return []
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError(f"lower key {lo} is not below upper key {hi}")
    if lo is None and hi is not None and not has_room_before(hi):
        return None
    top_limit = 10**top_width
    for depth in range(1, MAX_DEPTH + 1):
        unit = CHILD_BASE ** (depth - 1)
        # Value 0 only goes to the very first file: it leaves no room below.
        first = (0 if hi is None else 1) if lo is None else _scaled(lo, depth) + 1
        if hi is None:
            end = top_limit * unit
        elif len(hi) <= depth:
            end = _scaled(hi, depth)
        else:
            end = _scaled(hi, depth) + 1
        available = end - first
        if available < count:
            continue
        if hi is None:
            values = [first + i for i in range(count)]
        else:
            values = [first + ((2 * i + 1) * available) // (2 * count) for i in range(count)]
        return [_unscaled(value, depth) for value in values]
    raise ValueError(f"no room for {count} keys between {lo} and {hi} within {MAX_DEPTH} levels")
