"""Errors raised by oupsish.

Every error derives from :class:`OupsishError` and from the built-in exception a caller would
naturally catch (``ValueError``, ``TimeoutError``...), so both ``except OupsishError`` and
``except ValueError`` work.
"""

from __future__ import annotations


class OupsishError(Exception):
    """Base class of every error raised by oupsish."""


class InvalidFrameError(OupsishError, ValueError):
    """The frame given to ``write`` cannot be written (unsorted, nulls, missing column...)."""


class SchemaMismatchError(OupsishError, ValueError):
    """The frame's columns or types differ from the dataset's stored schema."""


class OrderedOnMismatchError(OupsishError, ValueError):
    """``ordered_on`` differs from the column the dataset is ordered on."""


class CorruptDatasetError(OupsishError, ValueError):
    """A metadata or data file on disk is unreadable, truncated or inconsistent."""


class UnsafeMetadataError(CorruptDatasetError):
    """A legacy metadata pickle references code: it is refused, never executed."""


class SnapshotExpiredError(OupsishError, RuntimeError):
    """A long read outlived the retention of its snapshot's superseded files."""


class LockTimeoutError(OupsishError, TimeoutError):
    """The writers' lock of a dataset could not be acquired within ``lock_timeout``."""


class ReadOnlyError(OupsishError, PermissionError):
    """A write was attempted on a read-only view of a dataset."""
