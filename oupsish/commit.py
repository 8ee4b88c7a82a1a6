"""Atomic commits: the writers' lock, staged files, the metadata swap, clean-up.

The protocol, in the order a write performs it (see ``docs/design.md``):

1. Take the writers' lock ``<name>.lock`` (``oupsish.lock``: released by the OS if the
   holder dies, so a crashed writer never blocks the next one).
2. Reload the committed snapshot from disk (unless the metadata file is the one the
   writer already knows) and, if the marker ``.<name>.pending`` says that a write was
   interrupted, remove its leftovers: hidden ``*.tmp`` files and data files the snapshot
   does not list. Then create the marker (durably) for this write; a clean exit removes it.
3. Write each new row group to a hidden temporary file and ``fsync`` it in a background
   thread, while the next file is encoded (with ``fsync=False``, small files are written
   on that thread too). Append the history line and write the new metadata file to a
   temporary file; they are fsynced in the background too. Rename each data file, once
   written, to its final name, which no snapshot has ever listed (its commit number is
   new), and ``fsync`` the folder in the background. Wait once for all these fsyncs.
4. Commit: ``os.replace`` the temporary metadata file over ``<name>_opdmd`` and ``fsync``
   the parent folder. This single rename is the commit point: before it readers see the
   old state, after it the new one.
5. Retire the files the new snapshot no longer lists: rename them, in the folder, to
   hidden names ``.<file>.superseded``, where readers of older snapshots still find them;
   a later writer deletes them ``SUPERSEDED_RETENTION_SECONDS`` after, on a background
   thread. Release the lock.
   (A rename within the folder: moving files to another folder was measured 30 to 100
   times slower on ext4 while writes stream in.)

An error before the rename of step 4 discards the staged files and leaves the committed
state untouched; an error after it (the folder's ``fsync`` failing, say) is raised too, but
the write is committed and its files stay. Clean-up of an unfinished write never raises:
it cannot hide the error that caused it, and the next writer removes what it left.

Committed data files are never modified nor renamed while a snapshot lists them. Readers
take no lock: they read the metadata file (one ``open``), then the files it names, looking
for the hidden ``.<file>.superseded`` of a file a later commit retired. A reader that
outlives the retention of its snapshot's files fails loudly (one-shot reads start over on
the new snapshot) rather than mixing two states.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from pathlib import Path
from types import TracebackType

from oupsish import faults, snapshot_cache
from oupsish.durable import background, drop_cached_pages, fsync_path, in_background
from oupsish.errors import LockTimeoutError
from oupsish.history import append_entry, entry, history_path
from oupsish.lock import LockTimeout, WriterLock
from oupsish.metadata import METADATA_SUFFIX, decode, encode
from oupsish.naming import is_data_file_name
from oupsish.snapshot import Snapshot, file_changes

__all__ = [
    "DatasetPaths",
    "Signature",
    "Transaction",
    "discard",
    "fsync_path",
    "is_superseded_name",
    "is_temporary_name",
    "metadata_signature",
    "read_snapshot",
]

TMP_SUFFIX = ".tmp"
SUPERSEDED_SUFFIX = ".superseded"
SUPERSEDED_RETENTION_SECONDS = 600.0
"""How long superseded files stay readable for readers of older snapshots."""
PENDING_SUFFIX = ".pending"
RENAMES_OPEN_FILES = os.name != "nt"
"""Whether a file may be renamed while open (its fsync running): not on Windows."""
MAX_FILES_IN_FLIGHT = 8
"""Files a write may have staged whose background write or ``fsync`` is not done: the
next waits for the oldest."""

StageWriter = Callable[[Path, bool, Callable[[], None]], Future[None]]
"""How :meth:`Transaction.stage` writes a file: ``write(path, sync, before_create)``."""

Signature = tuple[int, int, int, int]
"""What identifies one version of a metadata file: inode, size, mtime and ctime (ns)."""

_last_purge: dict[Path, float] = {}


class DatasetPaths:
    """Where a dataset's files live: its folder, metadata file and lock file."""

    __slots__ = ("folder", "lock", "metadata", "pending")

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        if not isinstance(folder, str | os.PathLike):
            raise TypeError(
                f"a dataset folder is a str or a path, got {type(folder).__name__} {folder!r}."
            )
        self.folder = Path(os.path.abspath(folder))
        if self.folder.name in ("", ".", ".."):
            raise ValueError(f"'{folder}' cannot be a dataset folder: it needs a name.")
        self.metadata = self.folder.with_name(self.folder.name + METADATA_SUFFIX)
        self.lock = self.folder.with_name(self.folder.name + ".lock")
        self.pending = self.folder.with_name(f".{self.folder.name}{PENDING_SUFFIX}")

    def data_file(self, name: str) -> Path:
        """Return the path of the row-group file ``name``."""
        return self.folder / name

    def superseded_file(self, name: str) -> Path:
        """Return where the row-group file ``name`` goes once no snapshot lists it."""
        return self.folder / f".{name}{SUPERSEDED_SUFFIX}"

    def __repr__(self) -> str:
        return f"DatasetPaths({str(self.folder)!r})"


def temporary_path(target: Path) -> Path:
    """Return a fresh hidden path beside ``target`` (ignored by Parquet readers)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")


def discard(path: Path) -> bool:
    """Remove a file of an unfinished write, if it can be: the next writer removes the rest.

    Never raises, so that a failing clean-up cannot hide the error that caused it; returns
    whether the file is gone.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def metadata_signature(paths: DatasetPaths) -> Signature | None:
    """Return what identifies the current metadata file, ``None`` if there is none.

    Every commit replaces the file by a new one (a new inode), so an unchanged signature
    means an unchanged committed state.
    """
    try:
        stat = os.stat(paths.metadata)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def read_snapshot(paths: DatasetPaths) -> Snapshot:
    """Return the committed snapshot of a dataset (empty when it has no metadata file)."""
    try:
        with open(paths.metadata, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return Snapshot.empty()
    snapshot = snapshot_cache.lookup(paths.folder, data)
    if snapshot is None:
        snapshot = decode(data, str(paths.metadata))
        snapshot_cache.remember(paths.folder, data, snapshot)
    return snapshot


_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{32}" + re.escape(TMP_SUFFIX) + "$")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is a temporary file oupsish made (``.<target>.<uuid hex>.tmp``)."""
    match = _TEMPORARY.match(name)
    return match is not None and is_data_file_name(match.group("target"))


def is_superseded_name(name: str) -> bool:
    """Whether ``name`` is a retired data file's (``.<data file name>.superseded``)."""
    return (
        name.startswith(".")
        and name.endswith(SUPERSEDED_SUFFIX)
        and is_data_file_name(name[1 : -len(SUPERSEDED_SUFFIX)])
    )


def _is_leftover(name: str, listed: set[str]) -> bool:
    if name in listed:
        return False
    return is_temporary_name(name) or is_data_file_name(name)


def retire(paths: DatasetPaths, name: str) -> None:
    """Rename a data file no snapshot lists any more to its hidden superseded name.

    Readers still holding an older snapshot find it there (see ``read.read_row_groups``)
    until :func:`purge_superseded` removes it, ``SUPERSEDED_RETENTION_SECONDS`` later.
    """
    with contextlib.suppress(FileNotFoundError):
        os.replace(paths.data_file(name), paths.superseded_file(name))


def purge_superseded(paths: DatasetPaths, retention: float | None = None) -> list[str]:
    """Delete superseded files retired more than ``retention`` seconds ago.

    ``None`` means ``SUPERSEDED_RETENTION_SECONDS``. A rename sets a file's ``ctime``: it
    dates the retirement.
    """
    purged = []
    now = time.time()
    _last_purge[paths.folder] = now
    horizon = now - (SUPERSEDED_RETENTION_SECONDS if retention is None else retention)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(paths.folder):
            if is_superseded_name(entry.name) and entry.stat().st_ctime < horizon:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                purged.append(entry.name)
    return purged


def purge_superseded_later(paths: DatasetPaths) -> None:
    """Run :func:`purge_superseded` on a background thread; do not wait for it.

    Deleting a large file takes time (ext4 with ``discard``: about 10 ms per 35 MB), and
    a purge deletes what was retired over a tenth of the retention: live appends that
    coalesce into 1M-row groups retire tens of MB per second. Waited for, with a purge
    due every 0.5 s, it took the longest of those writes to 116-130 ms, against 52-58 ms
    beside them. Deleting files retired long ago needs no lock: writers only retire newer
    ones. An error is left to the next purge; it does not fail the write.
    """
    _last_purge[paths.folder] = time.time()  # one purge at a time per folder and process
    in_background(purge_superseded, paths)


def purge_is_due(paths: DatasetPaths) -> bool:
    """Whether this process last purged ``paths`` over a tenth of the retention ago.

    Purging lists the folder: once in a while is enough, not on every write.
    """
    last = _last_purge.get(paths.folder)
    return last is None or time.time() - last >= SUPERSEDED_RETENTION_SECONDS / 10


def remove_leftovers(paths: DatasetPaths, snapshot: Snapshot) -> list[str]:
    """Clear the folder of interrupted writes: temporary files, and unlisted data files.

    Unlisted data files are retired rather than deleted: a superseded file whose removal was
    interrupted may still be read by a reader of an older snapshot. Only names oupsish
    creates are touched; foreign files are left alone.
    """
    removed = []
    listed = set(snapshot.file_names)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(paths.folder):
            if entry.is_file(follow_symlinks=False) and _is_leftover(entry.name, listed):
                if is_temporary_name(entry.name):
                    os.unlink(entry.path)
                else:
                    retire(paths, entry.name)
                removed.append(entry.name)
                faults.checkpoint("after_leftover_removal", Path(entry.path))
    prefix = f".{paths.metadata.name}."
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(paths.metadata.parent):
            if entry.name.startswith(prefix) and entry.name.endswith(TMP_SUFFIX):
                os.unlink(entry.path)
                removed.append(entry.name)
                faults.checkpoint("after_leftover_removal", Path(entry.path))
    return removed


class Transaction:
    """One write to one dataset: lock, stage files, commit once, clean up.

    Use it as a context manager. Leaving the block without :meth:`commit` (or with an
    exception) discards every staged file; the committed state is untouched.

    Parameters
    ----------
    paths : DatasetPaths
        The dataset.
    lock_timeout : float or None
        Seconds to wait for the writers' lock; ``None`` waits as long as needed.
    known : tuple, optional
        ``(signature, snapshot)`` the caller holds: reused, without reading the metadata
        file, if that file is unchanged once the lock is taken.
    fsync : bool, default True
        ``False`` skips every ``fsync``: the commit stays atomic for readers and against a
        crash of the process, but an OS crash or a power loss may lose or damage it.
    """

    def __init__(
        self,
        paths: DatasetPaths,
        lock_timeout: float | None,
        known: tuple[Signature | None, Snapshot] | None = None,
        fsync: bool = True,
    ) -> None:
        self.paths = paths
        self._fsync = fsync
        self._lock = WriterLock(paths.lock, lock_timeout)
        self._lock_timeout = lock_timeout
        self._known = known
        self._staged: list[Path] = []  # temporary files
        self._syncing: list[Future[None]] = []  # their writes or fsyncs, in the background
        self._checked = 0  # the first _syncing futures, found done (or waited for) by stage()
        self._placed: list[Path] = []  # staged files already renamed to final names
        self._staged_metadata: Path | None = None  # the next metadata file, until renamed
        self._marker_sync: Future[None] | None = None  # the pending marker's fsync
        self._committed = False
        self._clean = True  # whether the folder holds nothing but the snapshot's files
        self._marker_removed = False  # by remove_marker(), before the end of the transaction
        self.snapshot = Snapshot.empty()
        self.signature: Signature | None = None

    def __enter__(self) -> Transaction:
        self.paths.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except LockTimeout:
            raise LockTimeoutError(
                f"dataset '{self.paths.folder}' is being written by another writer; its lock "
                f"'{self.paths.lock}' was not acquired within {self._lock_timeout} s."
            ) from None
        try:
            self.signature = metadata_signature(self.paths)
            known = self._known
            if known is not None and known[0] == self.signature and self.signature is not None:
                self.snapshot = known[1]
            else:
                self.snapshot = read_snapshot(self.paths)
            interrupted = self.paths.pending.exists()
            if interrupted or self.snapshot.legacy:
                remove_leftovers(self.paths, self.snapshot)
            if interrupted or purge_is_due(self.paths):
                purge_superseded_later(self.paths)
            if not interrupted:
                self._mark_pending()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _mark_pending(self) -> None:
        """Create the marker that makes the next writer look for leftovers of this one.

        It must be durable before any file of this write is: a crash could otherwise
        leave files no writer would ever look for. Only its name matters: it is a hard
        link to the history file where there is one, which allocates no inode. On ext4
        without a journal, a new file's inode skips, one by one, those freed recently:
        160-490 us per new file in the benchmarks' folder, where many files had just been
        deleted, against 9 us per link (measured). On Windows, removing the link can fail
        while another process reads the history; the next writer then merely looks for
        leftovers in vain.
        """
        try:
            os.link(history_path(self.paths.metadata), self.paths.pending)
        except OSError:  # no history yet, or no hard links here
            os.close(os.open(self.paths.pending, os.O_CREAT | os.O_WRONLY, 0o644))
        if self._fsync:
            # Waited for before this write creates any file (see _marker_is_durable): the
            # fsync runs while the write plans, reads and encodes its first file.
            self._marker_sync = background(fsync_path, self.paths.pending.parent)

    def remove_marker(self) -> None:
        """Remove the marker now, and not when the transaction ends.

        For a transaction that removes the lock file (the dataset is deleted): a writer
        waiting for the lock then takes a new lock file at once, and must not find this
        marker, take it for an interrupted write's, and see it removed under its feet.
        """
        self._marker_is_durable()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths.pending)
        self._marker_removed = True

    def _marker_is_durable(self) -> None:
        """Wait until the marker created by this write is durable (before creating files)."""
        marker_sync, self._marker_sync = self._marker_sync, None
        if marker_sync is not None:
            marker_sync.result()

    def stage(self, name: str, write: StageWriter) -> None:
        """Write the data file ``name`` under a hidden name, durably unless ``fsync=False``.

        ``write(path, sync, before_create)`` creates the file after ``before_create()``
        returns, and returns the future of its last ``fsync``, which runs while the next
        file is encoded. With ``sync``, every byte is written when it returns; without,
        the file may still be written in the background, and the future is that writing's.
        An error of an earlier file's future found done is raised here.
        """
        if not self._staged and not self._placed and not self.paths.folder.is_dir():
            self._marker_is_durable()
            self.paths.folder.mkdir(parents=True, exist_ok=True)
        temporary = temporary_path(self.paths.data_file(name))
        self._staged.append(temporary)
        future = write(temporary, self._fsync, self._marker_is_durable)
        self._syncing.append(future)
        while self._checked < len(self._syncing) and (
            len(self._syncing) - self._checked > MAX_FILES_IN_FLIGHT
            or self._syncing[self._checked].done()
        ):
            # Bounds the memory (and descriptors) of files not yet written or flushed.
            error = self._syncing[self._checked].exception()
            self._checked += 1
            if error is not None:
                raise error
        faults.checkpoint("after_data_file", temporary)

    def _wait_for_fsyncs(self) -> None:
        """Wait for every background write and fsync; raise the first error, once all are done.

        The futures are forgotten only once all are done: interrupted (``KeyboardInterrupt``),
        the wait is taken up again by ``__exit__``.
        """
        errors = [future.exception() for future in self._syncing]
        self._syncing, self._checked = [], 0
        for error in errors:
            if error is not None:
                raise error

    def _settle(self) -> BaseException | None:
        """Wait until no background write or fsync of this write runs, whatever interrupts.

        A file still being written when the lock is released would be created after the
        clean-up, and after the next writer's: nothing would ever remove it. Returns the
        first interruption met (``KeyboardInterrupt``, say), for the caller to raise once
        the clean-up is done.
        """
        interruption = None
        for future in self._syncing:
            while True:
                try:
                    future.exception()
                    break
                except CancelledError:
                    break
                except BaseException as error:  # the wait must end before the clean-up
                    interruption = interruption or error
        self._syncing, self._checked = [], 0
        return interruption

    def commit(self, snapshot: Snapshot) -> None:
        """Publish staged files and ``snapshot`` atomically, then remove superseded files."""
        self._clean = False  # until every step below has succeeded
        changes = file_changes(self.snapshot, snapshot)
        # The history line and the next metadata file are written while the data files'
        # fsyncs run, and fsynced beside them, as is the folder once the data files have
        # their names: one wait for all, not a wait and then two folder fsyncs in a row.
        history = history_path(self.paths.metadata)
        self._marker_is_durable()
        append_entry(history, entry(self.snapshot, snapshot, changes), fsync=False)
        staged_metadata = temporary_path(self.paths.metadata)
        self._staged_metadata = staged_metadata
        metadata = encode(snapshot)
        staged_metadata.write_bytes(metadata)
        # Flushed files are all written, only their fsyncs may still run: they are named
        # at once, where an open file can be renamed.
        early = self._fsync and RENAMES_OPEN_FILES
        if self._fsync:
            self._syncing += [background(fsync_path, path) for path in (history, staged_metadata)]
        if early:
            self._place_staged()
            if self._placed:
                self._syncing.append(background(fsync_path, self.paths.folder))
        self._wait_for_fsyncs()
        faults.checkpoint("after_history", self.paths.metadata)
        if not early:  # files written in the background (fsync=False) are now written
            self._place_staged()
            if self._placed and self._fsync:
                fsync_path(self.paths.folder)
        faults.checkpoint("before_metadata", self.paths.metadata)
        faults.checkpoint("before_replace", self.paths.metadata)
        os.replace(staged_metadata, self.paths.metadata)
        # The commit point. From here on an error (the folder's fsync failing, say) must
        # not make __exit__ delete the new files.
        self._staged_metadata = None
        self._committed = True
        faults.checkpoint("after_replace", self.paths.metadata)
        if self._fsync:
            fsync_path(self.paths.metadata.parent)
        self.signature = metadata_signature(self.paths)
        snapshot_cache.remember(self.paths.folder, metadata, snapshot)
        faults.checkpoint("after_metadata", self.paths.metadata)
        superseded = [self.snapshot.file_names[index] for index in changes.removed]
        clean = True
        for name in superseded:
            # Best effort: the commit has happened; the next writer retires what remains.
            try:
                retire(self.paths, name)
            except OSError:
                clean = False
            else:
                # Clean pages (fsync) are dropped at once; dirty ones are written back first.
                retired_file = self.paths.superseded_file(name)
                in_background(drop_cached_pages, retired_file, not self._fsync)
            faults.checkpoint("after_superseded_removal", self.paths.data_file(name))
        self._clean = clean
        self.snapshot = snapshot

    def _place_staged(self) -> None:
        """Rename the staged data files to their final names (still listed by no snapshot)."""
        for temporary in self._staged:
            final = temporary.with_name(temporary.name[1:].rsplit(".", 2)[0])
            os.replace(temporary, final)
            self._placed.append(final)
            faults.checkpoint("after_data_file_placed", final)
        self._staged.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        interruption = None
        try:
            with contextlib.suppress(BaseException):
                self._marker_is_durable()
            interruption = self._settle()  # before removing the files they write or flush
            if not self._committed:
                staged_metadata = [] if self._staged_metadata is None else [self._staged_metadata]
                for path in [*self._staged, *self._placed, *staged_metadata]:
                    self._clean = discard(path) and self._clean
            if self._clean and not self._marker_removed:
                # Not made durable: if the removal is lost, the next writer merely looks
                # for leftovers in vain.
                with contextlib.suppress(OSError):
                    os.unlink(self.paths.pending)
        finally:
            self._lock.release()
        if interruption is not None and exc is None:
            raise interruption
