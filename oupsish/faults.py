"""Named points of the write path where tests inject faults (crashes, I/O errors).

Production code calls :func:`checkpoint` at each step of a write. With no hook installed it
is a single ``is None`` test. The durability tests install a hook that raises, or kills
the process, at a chosen step, then check that the dataset reads as before or after.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["STEPS", "checkpoint", "install"]

STEPS = (
    "after_leftover_removal",  # one leftover of an interrupted write was removed (under the lock)
    "after_data_file",  # a new row-group file is written (hidden name), its fsync started
    # A durable write renames its data files before it waits for its fsyncs; a write with
    # fsync=False (whose files may be written in the background) after.
    "after_data_file_placed",  # one new row-group file got its final (still unlisted) name
    # Data files, their names, history line and next metadata file all durable (written,
    # with fsync=False).
    "after_history",
    "before_metadata",  # every new file has its final name; the commit has not happened
    "before_replace",  # the next metadata file is durable, not yet in place
    "after_replace",  # the commit point has passed; the folder is not yet fsynced
    "after_metadata",  # the commit is durable; superseded files are still on disk
    "after_superseded_removal",  # one superseded file was removed
)

Hook = Callable[[str, Path], None]

_hook: Hook | None = None


def install(hook: Hook | None) -> Hook | None:
    """Install ``hook(step, path)`` (``None`` removes it); return the previous hook."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def checkpoint(step: str, path: Path) -> None:
    """Call the installed hook, if any, at ``step`` of a write touching ``path``."""
    if _hook is not None:
        _hook(step, path)
