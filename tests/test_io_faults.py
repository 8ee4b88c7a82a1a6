"""I/O errors (ENOSPC, EIO, EACCES) injected at every step and every file operation of a write.

Two ways in:

- the fault-injection hook (``oupsish.faults``) raises at the ``k``-th occurrence of each
  named step;
- a faulty "disk" wraps the file operations the write path uses (``oupsish.io.write_file``,
  which encodes and writes a data file, ``Path.write_bytes``, ``os.open``, ``os.fsync``,
  ``os.replace``, ``os.unlink``) and raises at their ``k``-th call, once, or from then on
  for every call ("the disk went bad": the clean-up then fails too).

Every time: the error reaches the caller unchanged (the very exception raised); if it came
before the commit point (the rename of the metadata file) the committed state is intact,
byte for byte, and the failed write left no file behind; if it came after, the dataset
reads as after the write. Either way the dataset reads consistently, its metadata matches
its files, and the next write succeeds and leaves no stray file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import pytest

from oupsish import OrderedParquetDataset, durable, faults
from oupsish import io as parquet_io
from oupsish.commit import is_superseded_name
from oupsish.testing import ReferenceModel
from oupsish.testing.crash import (
    State,
    check_stats_match_files,
    read_state,
    same_state,
    stray_files,
)

ErrorFactory = Callable[[], OSError]

ERRORS: dict[str, ErrorFactory] = {
    "ENOSPC": lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    "EIO": lambda: OSError(errno.EIO, os.strerror(errno.EIO)),
    "EACCES": lambda: PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
}

# faults.STEPS lists the steps in order; the rename of the metadata file, between
# "before_replace" and "after_replace", is the commit point.
BEFORE_COMMIT_STEPS = faults.STEPS[: faults.STEPS.index("after_replace")]
AFTER_COMMIT_STEPS = faults.STEPS[faults.STEPS.index("after_replace") :]
REPEATED_STEPS = (  # steps the faulty write passes several times
    "after_leftover_removal",
    "after_data_file",
    "after_data_file_placed",
    "after_superseded_removal",
)
STEP_CASES = [(step, "first") for step in BEFORE_COMMIT_STEPS + AFTER_COMMIT_STEPS] + [
    (step, "last") for step in REPEATED_STEPS
]
OPERATIONS = ("write_file", "write_bytes", "open", "fsync", "replace", "unlink")


def frame(ts: list[int] | np.ndarray[Any, Any], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(ts)
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": np.asarray(ts, dtype=np.int64),
            "key": rng.integers(0, 3, n).astype(np.int64),
            "value": rng.normal(size=n).round(6),
        }
    )
    return df


SETUP_WRITES = [frame(np.arange(0, 200, 2), 1), frame(np.arange(200, 260), 2)]
FAULTY_WRITE: dict[str, Any] = {
    "df": frame(np.arange(31, 151, 3), 3),  # inside the stored range: rewrites row groups
    "row_group_target_size": 20,
    "duplicates_on": "key",
    "max_n_off_target_rgs": 1,
    "key_value_metadata": {"source": "faulty", "version": "2"},
}
NEXT_WRITE = frame(np.arange(300, 330), 4)


def plant_leftovers(folder: Path) -> None:
    """Files an interrupted write leaves: its marker, a hidden temporary, an unlisted data
    file, a temporary metadata file."""
    (folder.parent / f".{folder.name}.pending").touch()
    (folder / f".file_00099-9.parquet.{uuid.uuid4().hex}.tmp").write_bytes(b"partial")
    shutil.copy(next(folder.glob("file_*.parquet")), folder / "file_00098-9.parquet")
    (folder.parent / f".{folder.name}_opdmd.{uuid.uuid4().hex}.tmp").write_bytes(b"partial")


@dataclass(frozen=True)
class Template:
    """A dataset to copy for each case, and what it holds before and after the faulty write."""

    root: Path
    before: State
    after: State
    model_after: ReferenceModel


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("io_faults") / "template"
    folder = root / "data"
    dataset = OrderedParquetDataset(folder, ordered_on="ts")
    model = ReferenceModel("ts")
    for df in SETUP_WRITES:
        dataset.write(
            df=df, row_group_target_size=20, duplicates_on="key", key_value_metadata={"v": "1"}
        )
        model.write(df, duplicates_on="key")
    plant_leftovers(folder)
    before = read_state(folder)[0]
    assert same_state(before, State(model.frame, {"v": "1"}))
    model.write(FAULTY_WRITE["df"], duplicates_on="key")
    after = State(model.frame, {"v": "1", "source": "faulty", "version": "2"})
    return Template(root, before, after, model)


def copy_of(template: Template, tmp_path: Path) -> Path:
    """Return the folder of a fresh copy of the template dataset."""
    shutil.copytree(template.root, tmp_path / "case")
    return tmp_path / "case" / "data"


def committed_bytes(folder: Path) -> dict[str, bytes]:
    """The metadata file and every file it lists, byte for byte."""
    stats = OrderedParquetDataset(folder).row_group_stats
    names = [f"file_{file_id}.parquet" for file_id in stats["file_ids"]]
    files = {name: (folder / name).read_bytes() for name in names}
    files["_opdmd"] = folder.with_name(folder.name + "_opdmd").read_bytes()
    return files


def listing(folder: Path) -> set[str]:
    return set(os.listdir(folder)) | {f"../{name}" for name in os.listdir(folder.parent)}


def run_faulty_write(folder: Path, fsync: bool = True) -> None:
    try:
        OrderedParquetDataset(folder, fsync=fsync).write(
            **{**FAULTY_WRITE, "df": FAULTY_WRITE["df"].copy()}
        )
    finally:
        # Some file operations run in the background (the hints about retired files'
        # cached pages, purges): every run counts and meets them all.
        durable.wait_for_background()


def check_outcome(
    template: Template,
    folder: Path,
    *,
    before_commit: bool,
    files_before: dict[str, bytes],
    names_before: set[str],
    cleaned: bool = True,
) -> None:
    """The dataset is intact (before the commit point) or written (after); the next write works."""
    state, stats = read_state(folder)
    assert not check_stats_match_files(folder, stats, state.n_rows)
    if before_commit:
        assert same_state(state, template.before)
        assert committed_bytes(folder) == files_before
        if cleaned:
            # The failed write removed what it had staged; it may have cleared old leftovers
            # (unlisted data files are retired to hidden names, as superseded files are).
            retired = {name for name in listing(folder) if is_superseded_name(name)}
            assert listing(folder) - retired <= names_before | {"../data.lock"}
    else:
        assert same_state(state, template.after)
    OrderedParquetDataset(folder).write(
        df=NEXT_WRITE, row_group_target_size=20, duplicates_on="key"
    )
    model = ReferenceModel("ts")
    model.frame = (template.before if before_commit else template.after).frame
    model.write(NEXT_WRITE, duplicates_on="key")
    state, stats = read_state(folder)
    assert same_rows_of(state, model)
    assert not check_stats_match_files(folder, stats, state.n_rows)
    assert stray_files(folder, stats) == []


def same_rows_of(state: State, model: ReferenceModel) -> bool:
    return same_state(State(state.frame, {}), State(model.frame, {}))


# --------------------------------------------------------------------------------------
# Faults raised by the hook at each named step
# --------------------------------------------------------------------------------------


def step_counts(template: Template, tmp_path: Path) -> Counter[str]:
    folder = copy_of(template, tmp_path / "census")
    counts: Counter[str] = Counter()

    def count(step: str, path: Path) -> None:
        counts[step] += 1

    previous = faults.install(count)
    try:
        run_faulty_write(folder)
    finally:
        faults.install(previous)
    return counts


@pytest.fixture(scope="module")
def census(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Counter[str]:
    counts = step_counts(template, tmp_path_factory.mktemp("census"))
    assert set(counts) == set(faults.STEPS), "the faulty write must pass every step"
    assert counts["after_data_file"] >= 3
    return counts


@pytest.mark.parametrize("error_name", sorted(ERRORS))
@pytest.mark.parametrize(("step", "which"), STEP_CASES)
def test_error_at_step(
    template: Template,
    census: Counter[str],
    tmp_path: Path,
    step: str,
    error_name: str,
    which: str,
) -> None:
    occurrence = 1 if which == "first" else census[step]
    assert occurrence >= 1 if which == "first" else occurrence > 1
    folder = copy_of(template, tmp_path)
    files_before, names_before = committed_bytes(folder), listing(folder)
    error = ERRORS[error_name]()
    seen = Counter[str]()

    def hook(name: str, path: Path) -> None:
        seen[name] += 1
        if name == step and seen[name] == occurrence:
            raise error

    previous = faults.install(hook)
    try:
        with pytest.raises(OSError, match=str(error.strerror)) as caught:
            run_faulty_write(folder)
    finally:
        faults.install(previous)
    assert caught.value is error
    check_outcome(
        template,
        folder,
        before_commit=step in BEFORE_COMMIT_STEPS,
        files_before=files_before,
        names_before=names_before,
    )


# --------------------------------------------------------------------------------------
# Faults raised by the file operations themselves
# --------------------------------------------------------------------------------------


class FaultyDisk:
    """Wraps file operations under ``root``; raises at the ``fail_at``-th call of ``operation``.

    ``operation="any"`` counts every wrapped call. With ``sticky``, every later call of any
    wrapped operation fails too (a fresh error each time), like a disk gone read-only.
    """

    def __init__(
        self,
        root: Path,
        operation: str | None = None,
        fail_at: int = 0,
        error: ErrorFactory | None = None,
        sticky: bool = False,
    ) -> None:
        self.root = os.fspath(root)
        self.operation = operation
        self.fail_at = fail_at
        self.error = error
        self.sticky = sticky
        self.calls: Counter[str] = Counter()
        self.raised: list[OSError] = []
        self.raised_by: list[tuple[str, bool]] = []  # operation, made by the writing thread
        self._lock = threading.Lock()
        self.committed = False  # the metadata file was replaced
        self.fault_after_commit: bool | None = None

    def _concerns(self, path: Any) -> bool:
        if not isinstance(path, str | os.PathLike):
            return False
        text = os.fspath(path)
        return isinstance(text, str) and text.startswith(self.root) and not text.endswith(".lock")

    def _call(self, operation: str) -> None:
        with self._lock:  # the writer and its background fsyncs call concurrently
            self._count_or_fail(operation)

    def _count_or_fail(self, operation: str) -> None:
        self.calls[operation] += 1
        self.calls["any"] += 1
        if self.error is None:
            return
        if self.raised:
            if self.sticky:
                self._raise(operation)
            return
        if self.operation in (operation, "any") and self.calls[self.operation] == self.fail_at:
            self.fault_after_commit = self.committed
            self._raise(operation)

    def _raise(self, operation: str) -> NoReturn:
        assert self.error is not None
        self.raised.append(self.error())
        by_writer = threading.current_thread() is threading.main_thread()
        self.raised_by.append((operation, by_writer))
        raise self.raised[-1]

    def acceptable_errors(self) -> list[OSError]:
        """The errors a failed write may raise: the first of all, the first its own
        operations met (clean-up unlinks aside), or one a background fsync met.

        Data files are fsynced in a background thread while the writer goes on, so two
        failures can race; what must never surface is an error met while cleaning up.
        """
        own = [
            error
            for error, (operation, by_writer) in zip(self.raised, self.raised_by, strict=True)
            if by_writer and operation != "unlink"
        ]
        background = [
            error
            for error, (_, by_writer) in zip(self.raised, self.raised_by, strict=True)
            if not by_writer
        ]
        return [self.raised[0], *own[:1], *background]

    @contextlib.contextmanager
    def installed(self) -> Iterator[FaultyDisk]:
        real_replace, real_unlink, real_fsync, real_open = os.replace, os.unlink, os.fsync, os.open
        real_write_file, real_write_bytes = parquet_io.write_file, pathlib.Path.write_bytes
        disk = self

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if disk._concerns(dst):
                disk._call("replace")
            real_replace(src, dst, *args, **kwargs)
            if disk._concerns(dst) and os.fspath(dst).endswith("_opdmd"):
                disk.committed = True

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            if disk._concerns(path):
                disk._call("unlink")
            real_unlink(path, *args, **kwargs)

        def fsync(fd: int) -> None:
            disk._call("fsync")
            real_fsync(fd)

        def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if disk._concerns(path):
                disk._call("open")
            return real_open(path, flags, *args, **kwargs)

        def write_file(path: Path, *args: Any, **kwargs: Any) -> Future[None]:
            if disk._concerns(path):
                disk._call("write_file")
            return real_write_file(path, *args, **kwargs)

        def write_bytes(self: pathlib.Path, data: Any) -> int:
            if disk._concerns(self):
                disk._call("write_bytes")
            return real_write_bytes(self, data)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "replace", replace)
            patch.setattr(os, "unlink", unlink)
            patch.setattr(os, "fsync", fsync)
            patch.setattr(os, "open", open_)
            patch.setattr(parquet_io, "write_file", write_file)
            patch.setattr(pathlib.Path, "write_bytes", write_bytes)
            yield self


@pytest.fixture(scope="module", params=[True, False], ids=["durable", "fsync=False"])
def fsync(request: pytest.FixtureRequest) -> bool:
    """Both ways of writing: with ``fsync=False`` data files are written on another thread."""
    flag: bool = request.param
    return flag


@pytest.fixture(scope="module")
def operation_counts(
    template: Template, tmp_path_factory: pytest.TempPathFactory, fsync: bool
) -> Counter[str]:
    folder = copy_of(template, tmp_path_factory.mktemp("operations"))
    disk = FaultyDisk(folder.parent)
    with disk.installed():
        run_faulty_write(folder, fsync)
    expected = OPERATIONS if fsync else tuple(op for op in OPERATIONS if op != "fsync")
    assert all(disk.calls[operation] for operation in expected), disk.calls
    return disk.calls


def fail_once(
    template: Template,
    tmp_path: Path,
    operation: str,
    fail_at: int,
    error: ErrorFactory,
    sticky: bool,
    fsync: bool,
) -> None:
    """Run the faulty write on a fresh copy with one fault injected; check what follows."""
    folder = copy_of(template, tmp_path / f"{operation}{fail_at}")
    files_before, names_before = committed_bytes(folder), listing(folder)
    disk = FaultyDisk(folder.parent, operation, fail_at, error, sticky)
    raised: OSError | None = None
    with disk.installed():
        try:
            run_faulty_write(folder, fsync)
        except OSError as exception:
            raised = exception
    assert disk.raised, f"call {fail_at} of {operation} was not made"
    if raised is None:
        # Only the best-effort removal of superseded files, past the commit point, may
        # swallow an error: the next writer removes what it left.
        assert disk.fault_after_commit
    else:
        acceptable = disk.acceptable_errors()
        assert any(raised is error for error in acceptable), f"{raised!r} hides {acceptable}"
    check_outcome(
        template,
        folder,
        before_commit=not disk.fault_after_commit,
        files_before=files_before,
        names_before=names_before,
        cleaned=not sticky,  # when the disk keeps failing, clean-up fails too
    )


@pytest.mark.parametrize("operation", OPERATIONS)
def test_error_in_file_operation(
    template: Template,
    operation_counts: Counter[str],
    tmp_path: Path,
    operation: str,
    fsync: bool,
) -> None:
    """Every call of the operation fails once in turn, with ENOSPC, EIO, EACCES in rotation."""
    names = sorted(ERRORS)
    calls = operation_counts[operation]
    assert calls or (operation == "fsync" and not fsync)
    for fail_at in range(1, calls + 1):
        error = ERRORS[names[(fail_at + OPERATIONS.index(operation)) % len(names)]]
        fail_once(template, tmp_path, operation, fail_at, error, sticky=False, fsync=fsync)


def test_disk_failing_from_any_call_on(
    template: Template, operation_counts: Counter[str], tmp_path: Path, fsync: bool
) -> None:
    """From the k-th call on, every operation fails: clean-up errors must not hide the first."""
    for fail_at in range(1, operation_counts["any"] + 1):
        error = ERRORS["EIO" if fail_at % 2 else "EACCES"]
        fail_once(template, tmp_path, "any", fail_at, error, sticky=True, fsync=fsync)
