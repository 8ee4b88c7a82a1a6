"""Data files flushed to disk while they are written (``oupsish.durable``)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FilesOpenUnder

from oupsish import OrderedParquetDataset, durable, plain_encode
from oupsish import io as parquet_io
from oupsish.commit import MAX_FILES_IN_FLIGHT
from oupsish.durable import FileRange, SyncedFile
from oupsish.testing import assert_same_rows

PIECES = 4


def table(n_rows: int = PIECES * parquet_io.WRITE_BUFFER_BYTES // 8) -> pa.Table:
    """A table whose Parquet file spans about ``PIECES`` write buffers."""
    return pa.table({"v": pa.array(np.random.default_rng(0).random(n_rows))})


def frame(start: int, n: int) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(start, start + n), "s"),
            "v": np.random.default_rng(start).random(n),
        }
    )
    return df


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of ``os.<name>``, which still does its work."""
    calls: list[int] = []
    real: Callable[[int], None] = getattr(os, name)

    def call(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, name, call)
    return calls


@pytest.mark.parametrize("sync", [True, False])
def test_a_file_written_in_pieces_reads_back(
    tmp_path: Path, sync: bool, files_open_under: FilesOpenUnder
) -> None:
    data = table()
    parquet_io.write_file(tmp_path / "f.parquet", data, parquet_io.ParquetOptions(), sync).result()
    assert files_open_under(tmp_path) == []
    assert pq.read_table(tmp_path / "f.parquet").equals(data)
    assert pq.ParquetFile(tmp_path / "f.parquet").metadata.num_row_groups == 1


def no_writeback(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a system without ``sync_file_range`` (any but Linux)."""
    monkeypatch.setattr(durable, "_sync_file_range", None)


def sent_ranges(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the ranges given to ``sync_file_range``, which still does its work."""
    real = durable._sync_file_range
    if real is None:
        pytest.skip("sync_file_range is Linux's")
    sent: list[tuple[int, int]] = []

    def call(fd: int, offset: int, length: int, flags: int) -> int:
        sent.append((offset, length))
        return real(fd, offset, length, flags)

    monkeypatch.setattr(durable, "_sync_file_range", call)
    return sent


def refusing_writeback(monkeypatch: pytest.MonkeyPatch, error: int, after: int = 0) -> None:
    """``sync_file_range`` failing with ``error`` from its ``after + 1``-th call on."""
    made = [0]

    def call(fd: int, offset: int, length: int, flags: int) -> int:
        made[0] += 1
        if made[0] > after:
            ctypes.set_errno(error)
            return -1
        return 0

    monkeypatch.setattr(durable, "_sync_file_range", call)


def test_each_piece_is_sent_to_disk_as_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = sent_ranges(monkeypatch)
    flushed = counting(monkeypatch, "fdatasync")
    synced = counting(monkeypatch, "fsync")
    parquet_io.write_file(tmp_path / "f", table(), parquet_io.ParquetOptions(), True).result()
    assert len(sent) >= PIECES
    ends = [offset + length for offset, length in sent]
    assert [offset for offset, _ in sent] == [0, *ends[:-1]]  # every byte, once, in order
    assert ends[-1] == (tmp_path / "f").stat().st_size
    assert flushed == []  # no flush of the device per piece: one fsync at the end
    assert len(synced) == 1


@pytest.mark.parametrize("system", ["without sync_file_range", "file system refusing it"])
def test_pieces_are_flushed_while_the_file_is_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: str
) -> None:
    if system == "without sync_file_range":
        no_writeback(monkeypatch)
    else:
        refusing_writeback(monkeypatch, errno.EINVAL)
    flushed = counting(monkeypatch, "fdatasync")
    synced = counting(monkeypatch, "fsync")
    data = table()
    parquet_io.write_file(tmp_path / "f", data, parquet_io.ParquetOptions(), True).result()
    assert 1 <= len(flushed) <= PIECES + 1  # one per piece at most, none waited for
    assert len(synced) == 1  # the last one, once the file is complete
    assert pq.read_table(tmp_path / "f").equals(data)


def test_without_sync_nothing_is_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch, "fdatasync") + counting(monkeypatch, "fsync")
    parquet_io.write_file(tmp_path / "f", table(), parquet_io.ParquetOptions(), False).result()
    assert calls == []


def test_the_file_is_created_after_before_create(tmp_path: Path) -> None:
    path = tmp_path / "f"
    seen: list[bool] = []
    file = SyncedFile(path, sync=True, before_create=lambda: seen.append(path.exists()))
    file.write(b"abc")
    file.write(memoryview(b"def"))
    file.finish().result()
    assert seen == [False]
    assert path.read_bytes() == b"abcdef"


def test_an_empty_file_is_created_too(tmp_path: Path) -> None:
    SyncedFile(tmp_path / "f", sync=True).finish().result()
    assert (tmp_path / "f").read_bytes() == b""


def failing_after(real: Callable[..., Any], calls: int, error: int) -> Callable[..., Any]:
    """``real``, which fails with ``error`` from its ``calls + 1``-th call on."""
    made = [0]

    def call(*args: Any) -> Any:
        made[0] += 1
        if made[0] > calls:
            raise OSError(error, os.strerror(error))
        return real(*args)

    return call


@pytest.mark.parametrize(
    ("operation", "succeeding", "error"),
    # A piece written (by pyarrow's encoder, or gathered from Arrow's buffers), flushed, or
    # sent to disk.
    [
        ("write", 1, errno.ENOSPC),
        pytest.param(
            "writev",
            1,
            errno.ENOSPC,
            marks=pytest.mark.skipif(
                not plain_encode.PAGES_LIKE_PYARROW, reason="pyarrow < 23: no file from buffers"
            ),
        ),
        ("fdatasync", 0, errno.EIO),
        ("sync_file_range", 1, errno.EIO),
    ],
)
def test_a_failure_mid_file_fails_the_write_and_changes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    operation: str,
    succeeding: int,
    error: int,
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0, 100))
    before = sorted(os.listdir(ds.dirpath))
    n_rows = PIECES * parquet_io.WRITE_BUFFER_BYTES // 16
    if operation == "sync_file_range":
        refusing_writeback(monkeypatch, error, after=succeeding)
    else:
        if operation == "fdatasync":
            no_writeback(monkeypatch)
        if operation == "write":  # the frame's columns would be written from their buffers
            monkeypatch.setattr(parquet_io, "encoded_pieces", lambda *args: None)
        monkeypatch.setattr(os, operation, failing_after(getattr(os, operation), succeeding, error))
    # Uncompressed, the frame is written from its buffers whatever its size.
    compression = "none" if operation == "writev" else "snappy"
    with pytest.raises(OSError, match=os.strerror(error)) as raised:
        ds.write(df=frame(100, n_rows), compression=compression)
    monkeypatch.undo()
    assert raised.value.errno == error
    assert sorted(os.listdir(ds.dirpath)) == before
    assert_same_rows(OrderedParquetDataset(tmp_path / "ds").to_pandas(), frame(0, 100))
    assert "Error ignored" not in capfd.readouterr().err  # no write after the failure
    ds.write(df=frame(100, 10))  # the next write goes through
    assert len(ds.read()) == 110


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_ranges_of_other_files_are_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    if not kernel_copy:  # as on a system or file system without copy_file_range

        def unsupported(*args: Any) -> int:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

        monkeypatch.setattr(os, "copy_file_range", unsupported, raising=False)
    source = tmp_path / "source"
    source.write_bytes(bytes(range(251)) * 12_000)  # 3 MB, a period prime to the pieces'
    long = 2 * durable.COPY_PIECE_BYTES + 1000  # copied in 3 pieces
    file = SyncedFile(tmp_path / "f", sync=True)
    with open(source, "rb") as opened:
        file.write(b"head")
        file.copy(FileRange(opened.fileno(), 1000, 300_000))
        file.copy(FileRange(opened.fileno(), 5, 3))
        file.copy(FileRange(opened.fileno(), 7, long))
        file.finish().result()
    data = source.read_bytes()
    expected = b"head" + data[1000:301_000] + data[5:8] + data[7 : 7 + long]
    assert (tmp_path / "f").read_bytes() == expected


def test_a_long_range_is_sent_to_disk_piece_by_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = sent_ranges(monkeypatch)
    source = tmp_path / "source"
    source.write_bytes(b"x" * (3 * durable.COPY_PIECE_BYTES))
    file = SyncedFile(tmp_path / "f", sync=True)
    with open(source, "rb") as opened:
        file.write(b"head")
        file.copy(FileRange(opened.fileno(), 10, 2 * durable.COPY_PIECE_BYTES + 5))
        file.finish().result()
    piece = durable.COPY_PIECE_BYTES
    assert sent == [(0, 4), (4, piece), (4 + piece, piece), (4 + 2 * piece, 5)]


class HeldPool:
    """Holds the tasks given to it; the test runs them when it chooses."""

    def __init__(self) -> None:
        self.held: list[Callable[[], None]] = []

    def submit(self, function: Callable[..., None], *args: Any) -> Future[None]:
        self.held.append(lambda: function(*args))
        return Future()


def deferred_background(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Hold the files given to ``write_in_background``; the test writes them."""
    pool = HeldPool()
    monkeypatch.setattr(durable, "_write_threads", pool)
    return pool.held


def test_a_file_written_in_the_background_copies_from_its_own_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files_open_under: FilesOpenUnder
) -> None:
    held = deferred_background(monkeypatch)
    source = tmp_path / "source"
    source.write_bytes(bytes(range(251)) * 100)
    created: list[bool] = []
    with open(source, "rb") as opened:
        pieces = [b"head", FileRange(opened.fileno(), 10, 500), memoryview(b"tail")]
        durable.write_in_background(tmp_path / "f", pieces, lambda: created.append(True))
    assert created == [True] and not (tmp_path / "f").exists()
    (write,) = held
    write()  # after the caller closed its descriptor
    data = source.read_bytes()
    assert (tmp_path / "f").read_bytes() == b"head" + data[10:510] + b"tail"
    assert files_open_under(tmp_path) == []


def test_a_failed_background_write_closes_every_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files_open_under: FilesOpenUnder
) -> None:
    held = deferred_background(monkeypatch)
    source = tmp_path / "source"
    source.write_bytes(b"0123456789")
    with open(source, "rb") as opened:
        durable.write_in_background(tmp_path / "f", [FileRange(opened.fileno(), 5, 10)])
    (write,) = held
    with pytest.raises(OSError, match="ended early"):
        write()
    assert files_open_under(tmp_path) == []


def test_files_written_in_the_background_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write of many small row groups, each file slow to write: the writer waits rather
    # than holding every encoded file in memory.
    real_write = durable._write_and_close
    lock = threading.Lock()
    unfinished, peak = [0], [0]

    def slow_write(path: Path, pieces: list[Any]) -> None:
        time.sleep(0.005)
        real_write(path, pieces)

    def counted(*args: Any) -> Future[None]:
        future = real_in_background(*args)
        with lock:
            unfinished[0] += 1
            peak[0] = max(peak[0], unfinished[0])

        def done(_: Future[None]) -> None:
            with lock:
                unfinished[0] -= 1

        future.add_done_callback(done)
        return future

    real_in_background = durable.write_in_background
    monkeypatch.setattr(durable, "_write_and_close", slow_write)
    monkeypatch.setattr(parquet_io, "write_in_background", counted)  # as io imported it
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts", fsync=False)
    ds.write(df=frame(0, 400), row_group_target_size=10)
    assert len(ds) == 40
    assert MAX_FILES_IN_FLIGHT <= peak[0] <= MAX_FILES_IN_FLIGHT + 1
    assert_same_rows(ds.to_pandas(), frame(0, 400))


def test_a_failed_background_write_fails_the_write_while_it_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts", fsync=False)
    ds.write(df=frame(0, 10))
    before = sorted(os.listdir(ds.dirpath))
    attempts = [0]

    def failing(path: Path, pieces: list[Any]) -> None:
        attempts[0] += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable, "_write_and_close", failing)
    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        ds.write(df=frame(10, 400), row_group_target_size=10)  # 40 files
    monkeypatch.undo()
    assert 1 <= attempts[0] <= MAX_FILES_IN_FLIGHT + 1  # not all 40 files encoded in vain
    assert sorted(os.listdir(ds.dirpath)) == before
    assert_same_rows(OrderedParquetDataset(tmp_path / "ds").to_pandas(), frame(0, 10))


def test_a_background_write_that_cannot_start_closes_its_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files_open_under: FilesOpenUnder
) -> None:
    class ShutDown:
        def submit(self, *args: Any) -> Future[None]:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(durable, "_write_threads", ShutDown())
    source = tmp_path / "source"
    source.write_bytes(b"0123456789")
    with open(source, "rb") as opened, pytest.raises(RuntimeError, match="shutdown"):
        durable.write_in_background(tmp_path / "f", [b"head", FileRange(opened.fileno(), 0, 5)])
    assert files_open_under(tmp_path) == []


def test_a_range_past_the_end_of_its_file_fails(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"0123456789")
    file = SyncedFile(tmp_path / "f", sync=False)
    with open(source, "rb") as opened, pytest.raises(OSError, match="ended early"):
        file.copy(FileRange(opened.fileno(), 5, 10))
    file.abandon()


def test_without_fdatasync_nor_pread_files_are_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on macOS (no fdatasync) and Windows (no pread either).
    no_writeback(monkeypatch)
    monkeypatch.delattr(os, "fdatasync", raising=False)
    monkeypatch.delattr(os, "pread", raising=False)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    synced = counting(monkeypatch, "fsync")
    source = tmp_path / "source"
    source.write_bytes(bytes(range(256)) * 64)
    data = table()
    parquet_io.write_file(tmp_path / "f.parquet", data, parquet_io.ParquetOptions(), True).result()
    assert pq.read_table(tmp_path / "f.parquet").equals(data)
    assert len(synced) >= 2  # pieces flushed with fsync, then the last fsync
    file = SyncedFile(tmp_path / "g", sync=True)
    with open(source, "rb") as opened:
        file.copy(FileRange(opened.fileno(), 10, 1000))
        file.finish().result()
    assert (tmp_path / "g").read_bytes() == source.read_bytes()[10:1010]


def _resident_pages(path: Path) -> int:
    """How many of ``path``'s pages the OS holds in its page cache (Linux ``mincore``)."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    page = os.sysconf("SC_PAGE_SIZE")
    vector = (ctypes.c_ubyte * ((size + page - 1) // page))()
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        view = (ctypes.c_char * size).from_buffer(mapped)  # maps, reads nothing
        try:
            address = ctypes.c_void_p(ctypes.addressof(view))
            if libc.mincore(address, ctypes.c_size_t(size), vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del view
    return sum(byte & 1 for byte in vector)


def _superseded_after_a_merge(tmp_path: Path, fsync: bool) -> Path:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts", fsync=fsync)
    for start in range(0, 3 * 20_000, 20_000):  # the third write merges the two before
        ds.write(df=frame(start, 20_000), row_group_target_size=1_000_000, max_n_off_target_rgs=1)
    [*superseded] = (tmp_path / "ds").glob(".*.superseded")
    assert superseded
    return superseded[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore, posix_fadvise: Linux")
def test_a_retired_file_leaves_the_page_cache(tmp_path: Path) -> None:
    retired = _superseded_after_a_merge(tmp_path, fsync=True)
    durable.wait_for_background()  # the hint is given on a background thread
    assert _resident_pages(retired) == 0
    assert pq.read_table(retired).num_rows > 0  # still readable for older snapshots


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore, posix_fadvise: Linux")
def test_without_fsync_retired_files_are_written_back_then_leave_the_page_cache(
    tmp_path: Path,
) -> None:
    # Their pages may be dirty: the OS would write them back within half a minute anyway
    # (the file is kept 10 minutes); written back at once, they can be dropped.
    retired = _superseded_after_a_merge(tmp_path, fsync=False)
    durable.wait_for_background()
    assert _resident_pages(retired) == 0
    assert pq.read_table(retired).num_rows > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore, posix_fadvise: Linux")
def test_dirty_pages_are_dropped_only_once_written_back(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1 << 20))  # dirty: not flushed
    durable.drop_cached_pages(path)
    assert _resident_pages(path) > 0  # its writeback has only started
    durable.drop_cached_pages(path, write_back=True)
    assert _resident_pages(path) == 0
