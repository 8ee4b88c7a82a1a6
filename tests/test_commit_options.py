"""The commit's bookkeeping: the marker of an unfinished write, snapshot reuse, ``fsync``."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import oupsish.durable
from oupsish import OrderedParquetDataset, Store, commit, faults, file_read, toplevel
from oupsish import io as parquet_io
from oupsish.commit import is_superseded_name
from oupsish.tail_cache import detached, memory_ranges
from oupsish.testing import assert_same_rows


def frame(start: int, n: int) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(start, start + n), "s"),
            "v": np.arange(start, start + n, dtype=float),
        }
    )
    return df


def marker(ds: OrderedParquetDataset) -> Path:
    return ds.dirpath.with_name(f".{ds.dirpath.name}.pending")


class BoomError(RuntimeError):
    pass


@pytest.fixture
def fail_at() -> Iterator[list[str]]:
    """Set ``fail_at.append(step)`` to make the next write raise at that step."""
    steps: list[str] = []

    def hook(step: str, path: Path) -> None:
        if steps and step == steps[0]:
            steps.clear()
            raise BoomError(step)

    previous = faults.install(hook)
    yield steps
    faults.install(previous)


def unretired_files(folder: Path) -> list[str]:
    """The folder's files but those retired for readers of older snapshots."""
    return sorted(name for name in os.listdir(folder) if not is_superseded_name(name))


def test_a_clean_write_leaves_no_marker(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0, 10), row_group_target_size=4)
    ds.write(df=frame(5, 10), row_group_target_size=4)  # an insert: superseded files retire
    assert not marker(ds).exists()
    assert unretired_files(ds.dirpath) == sorted(p.name for p in ds.files)


@pytest.mark.parametrize("step", ["after_data_file_placed", "before_replace"])
def test_an_interrupted_write_leaves_its_marker_and_the_next_one_cleans_up(
    tmp_path: Path, fail_at: list[str], step: str
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0, 10))
    # A write that dies mid-way leaves its files: simulate it by leaving copies of them.
    stray = ds.dirpath / "file_0007-9.parquet"
    shutil.copy(ds.files[0], stray)
    marker(ds).touch()
    fail_at.append(step)
    with pytest.raises(BoomError):
        ds.write(df=frame(10, 5))
    assert marker(ds).exists(), "a failed commit keeps the marker"
    ds.write(df=frame(10, 5))
    assert not marker(ds).exists() and not stray.exists()
    assert unretired_files(ds.dirpath) == sorted(p.name for p in ds.files)
    assert_same_rows(pq.read_table(ds.dirpath).to_pandas(), frame(0, 15))


def test_the_marker_is_a_link_to_the_history_once_there_is_one(tmp_path: Path) -> None:
    # A link allocates no inode (slow on ext4 without a journal); only the name matters.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    history = ds.dirpath.with_name(f"{ds.dirpath.name}_history")
    seen: list[tuple[bool, int]] = []

    def hook(step: str, path: Path) -> None:
        if step == "after_data_file":
            linked = history.exists() and os.path.samefile(marker(ds), history)
            seen.append((linked, marker(ds).stat().st_nlink))

    previous = faults.install(hook)
    try:
        ds.write(df=frame(0, 10))
        ds.write(df=frame(10, 10))
    finally:
        faults.install(previous)
    assert seen == [(False, 1), (True, 2)]
    assert not marker(ds).exists() and history.stat().st_nlink == 1
    assert len(ds.history()) == 2


@pytest.mark.parametrize("errno_name", ["EPERM", "EXDEV", "EMLINK"])
def test_a_marker_that_cannot_be_a_link_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_name: str
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0, 10))
    links: list[str] = []

    def no_link(src: object, dst: object, *args: object, **kwargs: object) -> None:
        links.append(str(dst))
        code = getattr(errno, errno_name)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_link)
    during: list[int] = []

    def hook(step: str, path: Path) -> None:
        if step == "after_data_file":
            during.append(marker(ds).stat().st_nlink)

    previous = faults.install(hook)
    try:
        ds.write(df=frame(10, 10))
    finally:
        faults.install(previous)
    assert links == [str(marker(ds))] and during == [1]  # a file of its own
    assert not marker(ds).exists()
    assert_same_rows(ds.to_pandas(), frame(0, 20))


def test_refused_write_inside_the_lock_removes_its_marker(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0, 10), row_group_target_size=5)
    ds.files[0].write_bytes(b"damaged")
    with pytest.raises(ValueError, match="refused"):
        ds.write(df=frame(2, 1))  # needs the damaged row group
    assert not marker(ds).exists()


def test_another_writer_commit_is_seen_under_the_lock(tmp_path: Path) -> None:
    first = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    second = OrderedParquetDataset(tmp_path / "ds")
    first.write(df=frame(0, 10))
    assert len(second.read()) == 10  # `second` caches this snapshot
    first.write(df=frame(10, 10))
    second.write(df=frame(20, 10))  # must build on first's latest commit, not its cache
    assert_same_rows(first.to_pandas(), frame(0, 30))


@toplevel
class Key:
    name: str


def test_fsync_false_skips_every_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    def counting_writeback(fd: int, offset: int, length: int, flags: int) -> int:
        # Retired files are written back (then dropped from the page cache) whatever the
        # option: the OS would within half a minute anyway. Files being written are not.
        if flags != oupsish.durable._SYNC_FILE_RANGE_WAIT:
            calls.append(fd)
        return 0

    monkeypatch.setattr(os, "fsync", counting_fsync)
    monkeypatch.setattr(os, "fdatasync", counting_fsync)
    monkeypatch.setattr(oupsish.durable, "_sync_file_range", counting_writeback)
    store = Store(tmp_path / "store", Key, fsync=False)
    ds = store[Key("a")]
    ds.write(
        df=frame(0, 10), ordered_on="ts", row_group_target_size=4, key_value_metadata={"k": "v"}
    )
    ds.write(df=frame(3, 4), row_group_target_size=4)
    oupsish.durable.wait_for_background()
    assert calls == []
    expected = pd.concat([frame(0, 10), frame(3, 4)]).sort_values("ts", kind="stable")
    assert_same_rows(ds.to_pandas(), expected)
    durable = OrderedParquetDataset(tmp_path / "durable", ordered_on="ts")
    durable.write(df=frame(0, 10))
    assert len(calls) >= 4  # data file, folder, history, metadata file and its folder
    assert store.get(Key("b"), fsync=True)._fsync is True


@pytest.mark.parametrize(
    ("fsync", "renames_open_files"),
    [(True, True), (True, False), (False, True)],
    ids=["durable", "durable, Windows", "fsync=False"],
)
def test_data_files_are_named_and_their_names_durable_before_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool, renames_open_files: bool
) -> None:
    # A durable write renames its files before it waits for its fsyncs, the folder's
    # among them; where an open file cannot be renamed (Windows), after that wait, then
    # fsyncs the folder. With fsync=False, its files may be written until that wait.
    monkeypatch.setattr(commit, "RENAMES_OPEN_FILES", renames_open_files)
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts", fsync=fsync)
    ds.write(df=frame(0, 10))
    events: list[str] = []
    real_background, real_fsync_path = oupsish.durable.background, oupsish.durable.fsync_path

    def noting_fsync_path(path: Path) -> None:  # called by the writer itself
        if path == ds.dirpath:
            events.append("folder fsynced")
        real_fsync_path(path)

    def noting_background(function: Callable[..., None], *args: Any) -> Future[None]:
        if function is noting_fsync_path:
            function = real_fsync_path
            if args == (ds.dirpath,):
                events.append("folder fsync started")
        return real_background(function, *args)

    def hook(step: str, path: Path) -> None:
        if step in ("after_data_file_placed", "after_history", "after_replace"):
            events.append(step)

    monkeypatch.setattr("oupsish.commit.background", noting_background)
    monkeypatch.setattr(commit, "fsync_path", noting_fsync_path)
    previous = faults.install(hook)
    try:
        ds.write(df=frame(10, 10), row_group_target_size=5)  # two new files
    finally:
        faults.install(previous)
    placed = ["after_data_file_placed"] * 2
    if not fsync:
        assert events == ["after_history", *placed, "after_replace"]
    elif renames_open_files:
        assert events == [*placed, "folder fsync started", "after_history", "after_replace"]
    else:
        assert events == ["after_history", *placed, "folder fsynced", "after_replace"]
    assert_same_rows(ds.to_pandas(), frame(0, 20))


class Interrupted(BaseException):
    """Raised by a signal handler, as ``KeyboardInterrupt`` is by SIGINT's."""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_an_interrupted_commit_waits_for_its_files_before_cleaning_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Interrupted while it waits for a file still being written in the background, a write
    # must not clean up, and release the lock, before that file exists: created later,
    # nothing would ever remove it.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts", fsync=False)
    ds.write(df=frame(0, 10))
    real_write = oupsish.durable._write_and_close

    def slow_write(path: Path, pieces: list[Any]) -> None:
        time.sleep(0.5)
        real_write(path, pieces)

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # once
        raise Interrupted

    monkeypatch.setattr(oupsish.durable, "_write_and_close", slow_write)
    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.15, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(Interrupted):
            ds.write(df=frame(10, 10))  # waits for its file in the commit when interrupted
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    oupsish.durable.wait_for_background()
    # No temporary file: the write removed its own (its marker stays, as after any failed
    # commit; the next write looks for leftovers).
    assert unretired_files(ds.dirpath) == sorted(p.name for p in ds.files)
    ds.write(df=frame(10, 10))
    assert_same_rows(ds.to_pandas(), frame(0, 20))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# Python 3.12+ warns about forking a process with threads: that is the case tested.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_can_read_and_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The parent's background fsync, encoder and reader threads do not exist in a forked
    # child.
    monkeypatch.setattr(parquet_io, "PARALLEL_MIN_BYTES", 0)  # every write on the encoders
    monkeypatch.setattr(file_read._readers, "max_workers", 2)  # 10 files: read in 2 runs
    parent = OrderedParquetDataset(tmp_path / "parent", ordered_on="ts")
    parent.write(df=frame(0, 10), row_group_target_size=1)
    assert len(parent.read()) == 10
    pid = os.fork()
    if pid == 0:  # the child: read and write, then leave at once, without pytest's exit
        code = 1
        try:
            child = OrderedParquetDataset(tmp_path / "child", ordered_on="ts")
            child.write(
                df=OrderedParquetDataset(tmp_path / "parent").read(), row_group_target_size=3
            )
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's write hung")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert len(OrderedParquetDataset(tmp_path / "child").read()) == 10


def test_coalescing_writes_from_two_handles_merge_the_right_tail(tmp_path: Path) -> None:
    # Each handle keeps the tail it wrote, to merge it without reading it back; the other
    # handle's commits replace that tail under new names, which must then be read.
    first = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    second = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(12):
        handle = first if step % 3 else second
        handle.write(df=frame(step * 10, 10), row_group_target_size=35, max_n_off_target_rgs=2)
        if step == 6:  # an insert into the tail through the other handle
            second.write(df=frame(55, 1).assign(v=-1.0), max_n_off_target_rgs=2)
    expected = pd.concat([frame(0, 120), frame(55, 1).assign(v=-1.0)])
    expected = expected.sort_values("ts", kind="stable")
    assert_same_rows(first.to_pandas(), expected)
    assert first.verify() == []
    assert first.row_group_stats["n_rows"].sum() == 121


def test_a_dataset_recreated_by_another_handle_is_not_merged_from_memory(tmp_path: Path) -> None:
    # File names are unique within one life of a dataset; after remove_from_disk they start
    # again, so rows kept in memory under a name must not outlive the snapshot they came from.
    first = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    first.write(df=frame(0, 10), row_group_target_size=100, max_n_off_target_rgs=2)
    second = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    second.remove_from_disk()
    second.write(df=frame(0, 10).assign(v=-1.0), ordered_on="ts", row_group_target_size=100)
    assert second.files == first.files  # the same file name, other rows
    first.write(df=frame(10, 5), row_group_target_size=100, max_n_off_target_rgs=0)
    expected = pd.concat([frame(0, 10).assign(v=-1.0), frame(10, 5)])
    assert_same_rows(first.to_pandas(), expected)


@pytest.mark.parametrize("as_arrow", [False, True])
def test_a_caller_reusing_its_buffer_after_a_write_changes_nothing_written(
    tmp_path: Path, as_arrow: bool
) -> None:
    """Frames and tables built on numpy arrays share their memory; a live feed may refill
    the same buffer for every write. Rows kept for the next coalescing write must not."""
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    buffer = np.zeros(3)
    for step in range(6):
        df = pd.DataFrame({"ts": np.arange(3 * step, 3 * step + 3), "v": buffer}, copy=False)
        buffer[:] = step
        data = pa.Table.from_pandas(df, preserve_index=False) if as_arrow else df
        ds.write(df=data, row_group_target_size=100, max_n_off_target_rgs=2)
        buffer[:] = -1  # refilled once write() has returned
    expected = pd.DataFrame({"ts": np.arange(18), "v": np.repeat(np.arange(6.0), 3)})
    assert_same_rows(ds.to_pandas(), expected)


def test_statistics_stay_in_one_chunk_across_commits(tmp_path: Path) -> None:
    """A handle's snapshot is spliced from the previous one: chunks must not pile up."""
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for start in range(0, 50, 5):
        ds.write(df=frame(start, 5))
    ds.write(df=frame(12, 1), row_group_target_size=4)  # an insert splices the middle
    cached = ds._cache
    assert cached is not None
    assert {column.num_chunks for column in cached[1].stats.columns} == {1}
    expected = pd.concat([frame(0, 50), frame(12, 1)]).sort_values("ts", kind="stable")
    assert_same_rows(ds.to_pandas(), expected)


def test_detached_copies_only_the_chunks_in_the_callers_memory() -> None:
    values = np.arange(6, dtype=np.float64)
    callers = pa.table({"v": pa.array(values)})  # zero-copy: shares `values`
    ours = pa.table({"v": pa.array(np.arange(6, 12, dtype=np.float64))})
    merged = pa.concat_tables([ours, callers.slice(2)])
    result = detached(merged, memory_ranges(callers))
    kept, copied = result.column("v").chunks
    assert memory_ranges(pa.table({"v": kept})) == memory_ranges(ours)
    values[:] = -1  # the caller reuses its buffer
    assert copied.to_pylist() == [2.0, 3.0, 4.0, 5.0]
    assert detached(ours, memory_ranges(callers)) is ours


def test_detached_finds_the_callers_buffers_among_many_and_overlapping_ranges() -> None:
    base = np.arange(100, dtype=np.float64)
    callers = pa.table(
        {
            "a": pa.array(base[:60]),  # a and b share memory: their ranges overlap
            "b": pa.array(base[40:]),
            "c": pa.array(np.arange(1000, 1060, dtype=np.int64)),
            "d": pa.array([float(i) for i in range(60)]),  # allocated by Arrow: not the caller's
        }
    )
    ranges = memory_ranges(callers.select(["a", "b", "c"]))
    ours = pa.table(
        {name: pa.array([0] * 5, type=callers.schema.field(name).type) for name in "abcd"}
    )
    merged = pa.concat_tables([ours, callers.slice(30, 20), ours])
    result = detached(merged, ranges)
    for name in "abc":
        first, middle, _ = result.column(name).chunks
        middle_memory = memory_ranges(pa.table({name: middle}))
        assert middle_memory and not any(
            low <= address < high for address, _ in middle_memory for low, high in ranges
        )
        assert memory_ranges(pa.table({name: first})) == memory_ranges(ours.select([name]))
    assert memory_ranges(result.select(["d"])) == memory_ranges(merged.select(["d"]))
    base[:] = -1
    assert result.column("b").chunks[1].to_pylist() == [70.0 + i for i in range(20)]
    assert result.column("a").chunks[1].to_pylist() == [30.0 + i for i in range(20)]


_REMOVE_WHILE_A_WRITER_WAITS = """
import os, sys, threading
from pathlib import Path
import numpy as np, pandas as pd
from oupsish import OrderedParquetDataset, faults

root = Path(sys.argv[1])
def frame(start, n):
    return pd.DataFrame({"ts": np.arange(start, start + n), "x": np.arange(n)})
OrderedParquetDataset(root / "ds", ordered_on="ts").write(df=frame(0, 10))
lock_gone, writer_placed, remover_done = threading.Event(), threading.Event(), threading.Event()
real_unlink = os.unlink
def unlink(path, *args, **kwargs):
    real_unlink(path, *args, **kwargs)
    if str(path).endswith("ds.lock") and threading.current_thread().name == "remover":
        lock_gone.set()  # the waiting writer takes a new lock file now
        writer_placed.wait(10)
os.unlink = unlink
def hook(step, path):
    if step == "after_data_file_placed" and threading.current_thread().name == "writer":
        writer_placed.set()
        remover_done.wait(10)  # the remover's transaction ends
        os._exit(0)  # the writer dies with its files placed, uncommitted
faults.install(hook)
def remover():
    OrderedParquetDataset(root / "ds").remove_from_disk()
    remover_done.set()
def writer():
    lock_gone.wait(10)
    OrderedParquetDataset(root / "ds", ordered_on="ts").write(df=frame(100, 15))
threading.Thread(target=remover, name="remover").start()
threading.Thread(target=writer, name="writer").start()
threading.Event().wait(20)
os._exit(3)
"""


def test_a_writer_that_dies_right_after_a_removal_is_cleaned_up(tmp_path: Path) -> None:
    # The removal unlinks the lock file while a writer waits for it: that writer starts
    # before the removal's transaction ends, which must not remove the writer's marker.
    done = subprocess.run(
        [sys.executable, "-c", _REMOVE_WHILE_A_WRITER_WAITS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    assert marker(ds).exists(), "the dead writer's marker"
    ds.write(df=frame(200, 5))
    assert unretired_files(ds.dirpath) == sorted(p.name for p in ds.files)
    assert ds.verify() == []
