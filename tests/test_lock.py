"""The writers' lock: exclusion, timeout, and a lock file removed while held."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import filelock
import pytest

from oupsish.lock import LockTimeout, WriterLock


def test_a_held_lock_excludes_other_holders_until_released(tmp_path: Path) -> None:
    first, second = WriterLock(tmp_path / "ds.lock", None), WriterLock(tmp_path / "ds.lock", 0.05)
    first.acquire()
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        second.acquire()
    assert 0.05 <= time.monotonic() - started < 2
    first.release()
    second.acquire()
    second.release()


def test_it_excludes_and_is_excluded_by_filelock(tmp_path: Path) -> None:
    """Writers of other versions (and tests) use filelock: the same flock."""
    path = tmp_path / "ds.lock"
    other = filelock.FileLock(str(path), is_singleton=False)
    with other, pytest.raises(LockTimeout):
        WriterLock(path, 0.02).acquire()
    ours = WriterLock(path, None)
    ours.acquire()
    with pytest.raises(filelock.Timeout):
        other.acquire(timeout=0.02)
    ours.release()


def test_a_waiter_locks_the_new_file_when_the_held_one_is_removed(tmp_path: Path) -> None:
    """Deleting a dataset unlinks its lock file while holding it; a waiter must not keep
    a lock on the dead file, or two writers could hold 'the' lock at once."""
    path = tmp_path / "ds.lock"
    holder, waiter = WriterLock(path, None), WriterLock(path, 10)
    holder.acquire()
    acquired = threading.Event()

    def wait() -> None:
        waiter.acquire()
        acquired.set()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.05)
    assert not acquired.is_set()
    os.unlink(path)
    holder.release()
    thread.join(5)
    assert acquired.is_set()
    with pytest.raises(LockTimeout):
        WriterLock(path, 0.02).acquire()  # the waiter holds the file now at the path
    waiter.release()
