"""Values kept per key in least-recently-used order, with the total of their sizes.

The bookkeeping the process-wide caches share (:mod:`oupsish.tail_cache`,
:mod:`oupsish.snapshot_cache`); each decides what to keep and when to let go.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["SizedLru"]

K = TypeVar("K")
V = TypeVar("V")


class SizedLru(Generic[K, V]):
    """Values by key, the least recently put (or touched) first, and their total size.

    Every method is called with ``lock`` held. A forked child gets a new lock (a thread
    of the parent may have held it) and the total recounted (it may have been amid an
    update).
    """

    def __init__(self, size_of: Callable[[V], int]) -> None:
        self._size_of = size_of
        self.lock = threading.Lock()
        self.total = 0
        self._entries: OrderedDict[K, V] = OrderedDict()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def get(self, key: K, touch: bool = False) -> V | None:
        """Return the value of ``key``, if kept; ``touch`` makes it the most recent."""
        value = self._entries.get(key)
        if value is not None and touch:
            self._entries.move_to_end(key)
        return value

    def replace(self, key: K, value: V | None) -> None:
        """Keep ``value`` for ``key`` as the most recent, instead of any earlier one."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.total -= self._size_of(old)
        if value is not None:
            self._entries[key] = value
            self.total += self._size_of(value)

    def oldest(self) -> V | None:
        """Return the least recent value, ``None`` if none is kept."""
        return next(iter(self._entries.values()), None)

    def drop_oldest(self) -> None:
        """Forget the least recent value (one must be kept)."""
        self.total -= self._size_of(self._entries.popitem(last=False)[1])

    def clear(self) -> None:
        """Forget every value."""
        self._entries.clear()
        self.total = 0

    def _after_fork(self) -> None:
        self.lock = threading.Lock()
        self.total = sum(self._size_of(value) for value in self._entries.values())
