"""Worker threads shared by all datasets, started on first use and forgotten across forks."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["LazyPool", "cpu_count"]

_T = TypeVar("_T")

_pools: weakref.WeakSet[LazyPool] = weakref.WeakSet()


def cpu_count() -> int:
    """Return the number of cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class LazyPool:
    """A thread pool whose threads start with the first task.

    In a forked child the parent's threads are gone: the pool starts new ones.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _pools.add(self)

    def submit(self, function: Callable[..., _T], *args: Any) -> Future[_T]:
        """Run ``function(*args)`` on one of the pool's threads."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, self._name)
            return self._executor.submit(function, *args)

    def join(self) -> None:
        """Wait for every task submitted so far; a later task starts the threads again."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _forget(self) -> None:
        self._executor, self._lock = None, threading.Lock()


def _forget_all() -> None:
    for pool in list(_pools):
        pool._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)
