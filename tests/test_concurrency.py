"""Concurrency with real processes: readers beside a writer, racing writers, held locks.

The processes run the roles of :mod:`oupsish.testing.concurrency`; its module docstring
explains how every read is checked against the exact committed states.
The long run (60 s, 1 writer and 4 readers) is ``tests/soak/soak_concurrency.py`` and the
slow-marked test below.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from oupsish import LockTimeoutError, OrderedParquetDataset, Store
from oupsish.testing.concurrency import (
    LIVE,
    STATIC,
    Expected,
    Stream,
    finish_role,
    run_stress,
    setup_store,
    start_role,
    static_frame,
    summarize,
    tagged_frames,
    write_frame,
)
from oupsish.testing.crash import check_stats_match_files, read_state, stray_files

SEED = 11


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def check_stress(writer: dict[str, Any], readers: list[dict[str, Any]]) -> dict[str, Any]:
    """Assert that no read failed or saw anything but a committed state; return the numbers."""
    numbers = summarize(writer, readers)
    for reader in readers:
        assert reader["errors"] == 0, reader["error_examples"]
        assert reader["inconsistencies"] == 0, reader["inconsistency_examples"]
        assert reader["reads"] >= 10
    assert numbers["writes_committed"] >= 5
    assert numbers["distinct_states_read"] >= 5  # readers did see the writer progress
    return numbers


def test_readers_see_only_committed_states(tmp_path: Path) -> None:
    writer, readers = run_stress(tmp_path, duration=5, seed=SEED)
    numbers = summarize(writer, readers)
    # Readers never wait for the writer: no read takes anywhere near a held lock's time.
    # (The direct proof is test_reads_do_not_wait_for_a_writer_holding_the_lock.)
    assert numbers["read_latency_max_s"] < 10, numbers
    check_stress(writer, readers)


@pytest.mark.slow
@pytest.mark.parametrize("duration", [60])
def test_readers_see_only_committed_states_long(tmp_path: Path, duration: float) -> None:
    numbers = check_stress(*run_stress(tmp_path, duration=duration, seed=SEED))
    print(json.dumps(numbers, indent=2))


# --------------------------------------------------------------------------------------
# A writer holding the lock in the middle of a write
# --------------------------------------------------------------------------------------


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    setup_store(tmp_path / "store", SEED)
    return tmp_path / "store"


def live_folder(store_path: Path) -> Path:
    return store_path / "live"


@pytest.fixture
def held(store_path: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process in the middle of a write to the live dataset, holding its lock for 60 s."""
    ready = tmp_path / "ready"
    process = start_role(
        "paused-writer",
        *["--folder", str(live_folder(store_path)), "--seconds", "60", "--ready", str(ready)],
    )
    wait_for(ready, process)
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_reads_do_not_wait_for_a_writer_holding_the_lock(
    store_path: Path, tmp_path: Path, held: subprocess.Popen[str]
) -> None:
    store = Store(store_path, Stream)
    dataset = store[LIVE]
    expected = Expected(SEED)
    latencies = []
    for _ in range(5):
        began = time.monotonic()
        rows = dataset.to_pandas()
        assert expected.check(rows, 0, 0) == (0, None)  # the state before the held write
        assert expected.check(dataset.read(10, 60, ["ts", "w", "i"]), 0, 0, 10, 60)[1] is None
        chunks = list(store.iter_intersections([LIVE, STATIC], start=5))
        live = pd.concat([chunk[LIVE] for chunk in chunks], ignore_index=True)
        assert expected.check(live, 0, 0, 5, None)[1] is None
        latencies.append(time.monotonic() - began)
    # Other processes read freely too, while this one holds its dataset object and the lock.
    progress = tmp_path / "progress"
    progress.write_text("0")
    reader = finish_role(
        start_role(
            "reader",
            *["--store", str(store_path), "--seed", str(SEED), "--duration", "2"],
            *["--progress", str(progress)],
        )
    )
    assert held.poll() is None, "the writer must still hold the lock"
    # The lock is held for 60 s: reads that waited for it would take that long.
    assert max(latencies) < 10, latencies
    assert reader["errors"] == reader["inconsistencies"] == 0, reader
    assert reader["reads"] >= 10 and reader["latency"]["max"] < 10, reader


def test_lock_timeout_names_the_dataset(store_path: Path, held: subprocess.Popen[str]) -> None:
    folder = live_folder(store_path)
    before = OrderedParquetDataset(folder).to_pandas()
    for dataset in (
        OrderedParquetDataset(folder, lock_timeout=0.5),
        Store(store_path, Stream).get(LIVE, lock_timeout=0.5),
    ):
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=str(folder)) as caught:
            dataset.write(df=write_frame(5000, np.arange(10**6, 10**6 + 3)))
        assert isinstance(caught.value, LockTimeoutError)
        assert 0.45 < time.monotonic() - began < 5
    after = OrderedParquetDataset(folder).to_pandas()
    assert before is not None and after is not None
    pd.testing.assert_frame_equal(before, after)


def test_writers_on_different_keys_never_contend(
    store_path: Path, held: subprocess.Popen[str]
) -> None:
    """The live dataset's lock is held; the static dataset of the same store is written at once."""
    store = Store(store_path, Stream)
    static = store.get(STATIC, lock_timeout=1)
    rows = pd.DataFrame({"ts": np.arange(300_000, 300_010), "x": np.arange(10.0)})
    durations = []
    for offset in range(3):
        began = time.monotonic()
        static.write(df=rows.assign(ts=rows["ts"] + 100 * offset))
        durations.append(time.monotonic() - began)
    assert held.poll() is None
    assert max(durations) < 10, durations  # lock_timeout=1 already shows no lock wait
    table = static.to_pandas()
    assert table is not None and len(table) == len(static_frame()) + 30


def test_writer_killed_holding_the_lock_does_not_block_the_next(
    store_path: Path, held: subprocess.Popen[str]
) -> None:
    folder = live_folder(store_path)
    before = OrderedParquetDataset(folder).to_pandas()
    os.kill(held.pid, signal.SIGKILL)
    held.wait()
    dataset = OrderedParquetDataset(folder, lock_timeout=5)
    new = write_frame(7000, np.arange(10**6, 10**6 + 5))
    began = time.monotonic()
    dataset.write(df=new)  # would raise after lock_timeout=5 s if the dead writer's lock held
    assert time.monotonic() - began < 10
    state, stats = read_state(folder)
    expected = pd.concat([before, new], ignore_index=True)
    assert state.frame is not None
    pd.testing.assert_frame_equal(state.frame, expected)
    assert not check_stats_match_files(folder, stats, state.n_rows)
    assert stray_files(folder, stats) == []  # the killed writer's staged files are gone


# --------------------------------------------------------------------------------------
# Two writers on one dataset; two handles in one process
# --------------------------------------------------------------------------------------


def test_two_writer_processes_serialise(tmp_path: Path) -> None:
    folder, count, go = tmp_path / "ds", 15, tmp_path / "go"
    processes = [
        start_role(
            "tagged-writer",
            *["--folder", str(folder), "--tag", str(tag), "--count", str(count)],
            *["--go", str(go)],
        )
        for tag in (1, 2)
    ]
    for tag, process in zip((1, 2), processes, strict=True):
        wait_for(go.with_name(f"go.{tag}"), process)
    go.touch()  # both start writing at once
    results = [finish_role(process) for process in processes]
    spans = [span for result in results for span in result["spans"]]
    first_end = min(max(end for _, end in result["spans"]) for result in results)
    last_start = max(min(start for start, _ in result["spans"]) for result in results)
    assert last_start < first_end, f"the writers did not overlap: {spans}"
    state, stats = read_state(folder)
    assert state.frame is not None
    frames = [frame for tag in (1, 2) for frame in tagged_frames(tag, count, 0)]
    want = pd.concat(frames, ignore_index=True)
    got = state.frame
    assert len(got) == len(want)  # nothing lost, nothing duplicated
    key = ["w", "i", "ts", "v"]
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True)[key], want.sort_values(key, ignore_index=True)[key]
    )
    assert got["ts"].is_monotonic_increasing
    # Each writer's rows with equal ts keep the order of its writes.
    for _, group in got.groupby(["ts", got["w"] // 1000]):
        assert group["w"].is_monotonic_increasing
    assert not check_stats_match_files(folder, stats, state.n_rows)
    assert stray_files(folder, stats) == []


def test_two_handles_in_one_process_do_not_wait(tmp_path: Path) -> None:
    store = Store(tmp_path, Stream)
    a, b = Stream("a"), Stream("b")
    first = write_frame(0, np.arange(0, 400, 2))
    store[a].write(df=first, ordered_on="ts", row_group_target_size=20)
    store[b].write(df=pd.DataFrame({"ts": np.arange(0, 400, 3)}), ordered_on="ts")
    began = time.monotonic()
    handle = store.get(a, lock_timeout=1)  # a wait on itself would time out, not hang
    other = store.get(a, lock_timeout=1)
    chunks = list(store.iter_intersections([a]))
    assert len(pd.concat([chunk[a] for chunk in chunks])) == len(first)
    iterator = store.iter_intersections([a, b], start=0)
    head = next(iterator)
    appended = write_frame(1, np.arange(400, 420))
    handle.write(df=appended)  # while `other` and the iterator are open
    tail = list(iterator)
    streamed = pd.concat([chunk[a] for chunk in [head, *tail]], ignore_index=True)
    pd.testing.assert_frame_equal(streamed, first)  # the iterator kept its snapshot
    both = pd.concat([first, appended], ignore_index=True)
    seen = other.to_pandas()
    assert seen is not None
    pd.testing.assert_frame_equal(seen, both)  # the other handle sees the new commit
    other.write(df=write_frame(2, np.arange(420, 430)))
    reread = handle.to_pandas()
    assert reread is not None and len(reread) == len(both) + 10
    assert time.monotonic() - began < 30


def test_iter_intersections_never_mixes_two_states(tmp_path: Path) -> None:
    store = Store(tmp_path, Stream)
    a, b = Stream("a"), Stream("b")
    store[a].write(df=write_frame(0, np.arange(100)), ordered_on="ts", row_group_target_size=10)
    store[b].write(
        df=pd.DataFrame({"ts": np.arange(100)}), ordered_on="ts", row_group_target_size=10
    )
    iterator = store.iter_intersections([a, b])
    chunks = [next(iterator) for _ in range(3)]  # rows below 30 are read
    # One commit inserts below and above the iterator's position, superseding files it has
    # read and files it has not.
    store[a].write(df=write_frame(1, np.array([15, 55])), row_group_target_size=10)
    chunks += list(iterator)
    streamed = pd.concat([chunk[a] for chunk in chunks], ignore_index=True)
    # The iterator keeps the snapshot it started on (superseded files stay readable for a
    # while); resuming on the new one would have yielded 101 rows, a mix of both states.
    pd.testing.assert_frame_equal(streamed, write_frame(0, np.arange(100)))
    after = store[a].to_pandas()
    assert after is not None and len(after) == 102
