"""Concurrency harness: a writer process and reader processes on one store, checked exactly.

The writer commits a deterministic sequence of writes to the dataset of key
``Stream("live")``: write ``w`` holds rows ``(ts, w, i, v)`` for ``i`` in ``0..n_w-1``,
``v = w + i / 1000``, with ``ts`` values drawn from ``(seed, w)`` alone, either after every
stored value (an append) or among them (an insert into the past, which rewrites row groups;
``max_n_off_target_rgs`` also coalesces small ones). After each commit the writer records
``w`` in a progress file (replaced atomically).

Because write ``w`` is known to any process from ``(seed, w)``, the state after committing
writes ``0..W`` is known too: all their rows, ordered on ``(ts, w, i)`` (a stable merge keeps
stored rows first for equal ``ts``). A reader reads the progress file before (``W_lo``) and
after (``W_hi``) each read, so the read must equal one committed state with ``W_lo <= W <=
W_hi + 1``; :class:`Expected` checks that exactly, for full reads (``to_pandas``), range
reads (``read(start, end_excl, columns)``) and ``iter_intersections`` over the live key and a
static one. Any partial write, lost or duplicated row, stale snapshot or mix of two states
is reported as an inconsistency.

Roles, run as ``python -m oupsish.testing.concurrency <role> ...`` (see :func:`main`):
``writer``, ``reader``, ``tagged-writer`` (for two writers racing on one dataset) and
``paused-writer`` (holds the writers' lock in the middle of a write, for a while).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from oupsish import OrderedParquetDataset, Store, faults, toplevel

__all__ = [
    "LIVE",
    "STATIC",
    "Expected",
    "Stream",
    "finish_role",
    "main",
    "read_progress",
    "run_stress",
    "setup_store",
    "start_role",
    "static_frame",
    "summarize",
    "tagged_frames",
    "write_frame",
]

IntArray = npt.NDArray[np.int64]

ROW_GROUP_TARGET_SIZE = 300
MAX_N_OFF_TARGET_RGS = 2


@toplevel
class Stream:
    """Key of the datasets the harness writes."""

    name: str


LIVE = Stream("live")
STATIC = Stream("static")


def _write_ts(seed: int, w: int, high: int) -> IntArray:
    """Return the sorted ``ts`` of write ``w``, given the highest stored ``ts`` (-1 if none)."""
    rng = np.random.default_rng([seed, w])
    n = int(rng.integers(5, 60))
    if high >= 0 and rng.random() < 0.3:
        lo = int(rng.integers(0, high + 1))
        ts = rng.integers(lo, min(high, lo + 4 * n) + 1, n)
    else:
        ts = max(high, 0) + rng.integers(0, 2 * n, n)
    return np.sort(ts).astype(np.int64)


def write_frame(w: int, ts: IntArray) -> pd.DataFrame:
    """Return the rows of write ``w``."""
    i = np.arange(len(ts), dtype=np.int64)
    frame: pd.DataFrame = pd.DataFrame(
        {"ts": ts, "w": np.full(len(ts), w, np.int64), "i": i, "v": w + i / 1000}
    )
    return frame


def static_frame() -> pd.DataFrame:
    """Rows of the static dataset, read alongside the live one by ``iter_intersections``."""
    ts = np.arange(0, 200_000, 37, dtype=np.int64)
    frame: pd.DataFrame = pd.DataFrame({"ts": ts, "x": ts * 0.5})
    return frame


class Expected:
    """Every committed state of the live dataset, for a given seed, computed lazily."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._ts: list[IntArray] = []
        self._highs: list[int] = []  # highest ts of writes 0..w
        self._flat_for = -1
        self._ts_flat: IntArray = np.empty(0, np.int64)
        self._offsets: IntArray = np.zeros(1, np.int64)

    def ts(self, w: int) -> IntArray:
        """Return the ``ts`` values of write ``w``."""
        while len(self._ts) <= w:
            high = self._highs[-1] if self._highs else -1
            ts = _write_ts(self.seed, len(self._ts), high)
            self._ts.append(ts)
            self._highs.append(max(high, int(ts[-1])))
        return self._ts[w]

    def high(self, w: int) -> int:
        """Return the highest ``ts`` of writes ``0..w``."""
        self.ts(w)
        return self._highs[w]

    def frame(self, w: int) -> pd.DataFrame:
        """Return the rows of write ``w``."""
        return write_frame(w, self.ts(w))

    def _flat(self, w: int) -> tuple[IntArray, IntArray]:
        """Return every ``ts`` of writes ``0..w`` (write by write) and each write's offset."""
        if self._flat_for < w:
            self.ts(w)
            self._ts_flat = np.concatenate(self._ts[: w + 1])
            counts = [len(ts) for ts in self._ts[: w + 1]]
            self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self._flat_for = w
        return self._ts_flat, self._offsets

    def check(
        self,
        frame: pd.DataFrame | None,
        w_lo: int,
        w_hi: int,
        start: int | None = None,
        end_excl: int | None = None,
    ) -> tuple[int | None, str | None]:
        """Check rows read within ``[start, end_excl)`` against the states ``w_lo..w_hi``.

        Returns
        -------
        (int or None, str or None)
            The state the rows equal (``None`` if it cannot be told from a range read), and
            a description of the inconsistency, or ``None`` if there is none.
        """
        n = 0 if frame is None else len(frame)
        ts_flat, offsets = self._flat(w_hi)
        if n:
            assert frame is not None
            ts = frame["ts"].to_numpy(np.int64)
            w = frame["w"].to_numpy(np.int64)
            i = frame["i"].to_numpy(np.int64)
            if w.min() < 0 or w.max() > w_hi:
                return None, f"rows of write {w.max()} while at most {w_hi} was committed"
            counts = np.diff(offsets)
            if (i < 0).any() or (i >= counts[w]).any():
                return None, "a row index out of its write's range"
            if not np.array_equal(ts, ts_flat[offsets[w] + i]):
                return None, "rows whose ts differ from their write's"
            if "v" in frame and not np.allclose(frame["v"].to_numpy(), w + i / 1000):
                return None, "rows whose values differ from their write's"
            order = np.lexsort((i, w, ts))
            if not np.array_equal(order, np.arange(n)):
                return None, "rows not in (ts, write, index) order"
            same = (ts[1:] == ts[:-1]) & (w[1:] == w[:-1]) & (i[1:] == i[:-1])
            if same.any():
                return None, "a row read twice"
            if (start is not None and ts[0] < start) or (
                end_excl is not None and ts[-1] >= end_excl
            ):
                return None, f"rows outside [{start}, {end_excl})"
        # Rows of writes 0..W inside the range, for each candidate W.
        inside = np.ones(len(ts_flat), dtype=bool)
        if start is not None:
            inside &= ts_flat >= start
        if end_excl is not None:
            inside &= ts_flat < end_excl
        cumulative = np.concatenate([[0], np.cumsum(inside)])[offsets[1:]]
        lowest = max(w_lo, int(frame["w"].max()) if n and frame is not None else -1)
        candidates = [state for state in range(max(lowest, 0), w_hi + 1) if cumulative[state] == n]
        if not candidates:
            return None, (
                f"{n} rows equal no committed state in {w_lo}..{w_hi} "
                f"(those hold {[int(cumulative[s]) for s in range(max(w_lo, 0), w_hi + 1)]})"
            )
        full = start is None and end_excl is None
        return (candidates[0] if full else None), None


def read_progress(path: Path) -> int:
    """Return the last write the writer recorded as committed (-1 before any)."""
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return -1


def _record_progress(path: Path, w: int) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(str(w))
    os.replace(temporary, path)


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    array = np.asarray(values)
    return {
        "n": len(values),
        "max": float(array.max()),
        "p50": float(np.percentile(array, 50)),
        "p99": float(np.percentile(array, 99)),
        "mean": float(array.mean()),
    }


def setup_store(store_path: Path, seed: int) -> int:
    """Create the static dataset and commit write 0 of the live one; return 0."""
    store = Store(store_path, Stream)
    store[STATIC].write(df=static_frame(), ordered_on="ts", row_group_target_size=1000)
    expected = Expected(seed)
    store[LIVE].write(
        df=expected.frame(0),
        ordered_on="ts",
        row_group_target_size=ROW_GROUP_TARGET_SIZE,
        key_value_metadata={"last_write": "0"},
    )
    return 0


def run_writer(
    store_path: Path, seed: int, start: int, duration: float, progress: Path
) -> dict[str, Any]:
    """Commit writes ``start, start+1...`` for ``duration`` seconds."""
    dataset = Store(store_path, Stream)[LIVE]
    expected = Expected(seed)
    latencies: list[float] = []
    w = start
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        frame = expected.frame(w)
        began = time.monotonic()
        dataset.write(
            df=frame,
            row_group_target_size=ROW_GROUP_TARGET_SIZE,
            max_n_off_target_rgs=MAX_N_OFF_TARGET_RGS,
            key_value_metadata={"last_write": str(w)},
        )
        latencies.append(time.monotonic() - began)
        _record_progress(progress, w)
        w += 1
    return {
        "role": "writer",
        "last_write": w - 1,
        "writes": w - start,
        "latency": _percentiles(latencies),
    }


@dataclass
class _ReaderStats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    inconsistencies: list[str] = field(default_factory=list)
    by_operation: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    n_inconsistencies: int = 0
    n_errors: int = 0
    states_seen: set[int] = field(default_factory=set)
    last_full_state: int = -1

    def problem(self, kind: str, operation: str, message: str) -> None:
        key = f"{kind}:{operation}"
        self.by_operation[key] = self.by_operation.get(key, 0) + 1
        message = f"{operation}: {message}"
        if kind == "error":
            self.n_errors += 1
            if len(self.errors) < 5:
                self.errors.append(message)
        else:
            self.n_inconsistencies += 1
            if len(self.inconsistencies) < 5:
                self.inconsistencies.append(message)


def _concat(frames: Iterator[pd.DataFrame]) -> pd.DataFrame | None:
    parts = [frame for frame in frames if len(frame)]
    return pd.concat(parts, ignore_index=True) if parts else None


OPERATIONS = ("to_pandas", "read", "iter_intersections")


def run_reader(
    store_path: Path,
    seed: int,
    duration: float,
    progress: Path,
    reader_seed: int,
    operations: Sequence[str] = OPERATIONS,
) -> dict[str, Any]:
    """Loop over ``to_pandas``, ``read`` and ``iter_intersections`` for ``duration`` seconds."""
    store = Store(store_path, Stream)
    dataset = store[LIVE]
    expected = Expected(seed)
    static = static_frame()
    rng = np.random.default_rng([reader_seed, 99])
    stats = _ReaderStats()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        weights = np.array([{"iter_intersections": 0.5}.get(name, 1.0) for name in operations])
        operation = operations[int(rng.choice(len(operations), p=weights / weights.sum()))]
        high = expected.high(max(read_progress(progress), 0)) + 50
        start: int | None = int(rng.integers(0, high))
        end_excl: int | None = (
            start + int(rng.integers(1, high // 4 + 2)) if start is not None else None
        )
        if rng.random() < 0.2:
            start = None
        if rng.random() < 0.2:
            end_excl = None
        w_lo = read_progress(progress)
        began = time.monotonic()
        static_rows: pd.DataFrame | None = None
        try:
            if operation == "to_pandas":
                start = end_excl = None
                rows = dataset.to_pandas()
                metadata = dataset.key_value_metadata
            elif operation == "read":
                columns = ["ts", "w", "i"] if rng.random() < 0.5 else None
                rows = dataset.read(start, end_excl, columns)
            else:
                chunks = list(
                    store.iter_intersections([LIVE, STATIC], start=start, end_excl=end_excl)
                )
                rows = _concat(chunk[LIVE] for chunk in chunks)
                static_rows = _concat(chunk[STATIC] for chunk in chunks)
        except Exception as error:
            stats.problem("error", operation, f"{type(error).__name__}: {error}")
            continue
        elapsed = time.monotonic() - began
        stats.latencies.setdefault(operation, []).append(elapsed)
        w_hi = read_progress(progress) + 1
        state, problem = expected.check(rows, w_lo, w_hi, start, end_excl)
        if problem is not None:
            stats.problem("inconsistency", operation, f"[{start}, {end_excl}): {problem}")
        if state is not None:
            stats.states_seen.add(state)
            if state < stats.last_full_state:
                stats.problem(
                    "inconsistency", operation, f"state {state} read after {stats.last_full_state}"
                )
            stats.last_full_state = state
            if operation == "to_pandas" and int(metadata.get("last_write", -1)) < state:
                stats.problem(
                    "inconsistency", operation, f"metadata {metadata} older than rows of {state}"
                )
        if operation == "iter_intersections":
            mask = np.ones(len(static), dtype=bool)
            if start is not None:
                mask &= static["ts"].to_numpy() >= start
            if end_excl is not None:
                mask &= static["ts"].to_numpy() < end_excl
            want = static.loc[mask].reset_index(drop=True)
            got = static_rows if static_rows is not None else static.iloc[:0]
            if not (
                len(got) == len(want)
                and np.array_equal(got["ts"].to_numpy(), want["ts"].to_numpy())
            ):
                stats.problem(
                    "inconsistency",
                    operation,
                    f"static key in [{start}, {end_excl}): {len(got)} rows, expected {len(want)}",
                )
    every = [value for values in stats.latencies.values() for value in values]
    return {
        "role": "reader",
        "reads": len(every),
        "latency": _percentiles(every),
        "latency_by_operation": {name: _percentiles(v) for name, v in stats.latencies.items()},
        "inconsistencies": stats.n_inconsistencies,
        "inconsistency_examples": stats.inconsistencies,
        "problems_by_operation": stats.by_operation,
        "errors": stats.n_errors,
        "error_examples": stats.errors,
        "distinct_full_states": len(stats.states_seen),
    }


def tagged_frames(tag: int, count: int, seed: int) -> list[pd.DataFrame]:
    """Return the writes of tagged writer ``tag``: write ``j`` has ``w = tag * 1000 + j``."""
    rng = np.random.default_rng([seed, tag])
    frames = []
    for j in range(count):
        n = int(rng.integers(5, 40))
        frames.append(write_frame(tag * 1000 + j, np.sort(rng.integers(0, 5_000, n))))
    return frames


def run_tagged_writer(
    folder: Path, tag: int, count: int, seed: int, go: Path | None = None
) -> dict[str, Any]:
    """Write :func:`tagged_frames` to one dataset (while another process does too).

    With ``go``, create ``<go>.<tag>`` once ready, then wait for ``go`` to exist.
    """
    dataset = OrderedParquetDataset(folder, ordered_on="ts")
    if go is not None:
        go.with_name(f"{go.name}.{tag}").touch()
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    spans = []
    for frame in tagged_frames(tag, count, seed):
        began = time.time()
        dataset.write(df=frame, row_group_target_size=50, max_n_off_target_rgs=1)
        spans.append((began, time.time()))
    return {"role": "tagged-writer", "tag": tag, "writes": count, "spans": spans}


def run_paused_writer(
    folder: Path, step: str, seconds: float, ready: Path, w: int
) -> dict[str, Any]:
    """Write ``write_frame(w, ...)``, pausing ``seconds`` at ``step`` (the lock held meanwhile)."""

    def pause(name: str, path: Path) -> None:
        if name == step and not ready.exists():
            ready.write_text(str(os.getpid()))
            time.sleep(seconds)

    faults.install(pause)
    dataset = OrderedParquetDataset(folder, ordered_on="ts")
    ts = np.arange(10_000 + w * 100, 10_000 + w * 100 + 20, dtype=np.int64)
    dataset.write(df=write_frame(w, ts), row_group_target_size=ROW_GROUP_TARGET_SIZE)
    return {"role": "paused-writer", "w": w}


def start_role(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m oupsish.testing.concurrency <args>``."""
    return subprocess.Popen(
        [sys.executable, "-m", "oupsish.testing.concurrency", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_role(process: subprocess.Popen[str], timeout: float = 180) -> dict[str, Any]:
    """Wait for a role's process; return its JSON result (raise if it failed)."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{err}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_stress(
    root: Path,
    duration: float,
    n_readers: int = 4,
    seed: int = 11,
    operations: Sequence[str] = OPERATIONS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one writer and ``n_readers`` reader processes on a new store under ``root``.

    Returns the writer's result and the readers'. Raises if the final state is not exactly
    the last committed write's.
    """
    store, progress = root / "store", root / "progress"
    setup_store(store, seed)
    progress.write_text("0")
    common = ["--store", str(store), "--seed", str(seed), "--duration", str(duration)]
    common += ["--progress", str(progress)]
    writer = start_role("writer", *common)
    readers = [
        start_role("reader", *common, "--reader-seed", str(i), "--operations", ",".join(operations))
        for i in range(n_readers)
    ]
    results = [finish_role(process, timeout=duration + 180) for process in [writer, *readers]]
    writer_result, reader_results = results[0], results[1:]
    final = Store(store, Stream)[LIVE].to_pandas()
    last = int(writer_result["last_write"])
    state, problem = Expected(seed).check(final, last, last)
    if (state, problem) != (last, None):
        raise AssertionError(f"final state is not write {last}'s: {problem}")
    return writer_result, reader_results


def summarize(writer: dict[str, Any], readers: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the figures of a stress run: writes, reads, latencies, problems."""
    problems: dict[str, int] = {}
    for reader in readers:
        for key, count in reader["problems_by_operation"].items():
            problems[key] = problems.get(key, 0) + count
    return {
        "writes_committed": writer["writes"],
        "write_latency_s": {k: round(v, 4) for k, v in writer["latency"].items() if k != "n"},
        "reads": sum(reader["reads"] for reader in readers),
        "reads_by_operation": {
            name: sum(r["latency_by_operation"].get(name, {"n": 0})["n"] for r in readers)
            for name in OPERATIONS
        },
        "read_latency_max_s": round(max(reader["latency"]["max"] for reader in readers), 4),
        "read_latency_p99_s": round(max(reader["latency"]["p99"] for reader in readers), 4),
        "read_latency_p50_s": round(
            float(np.median([reader["latency"]["p50"] for reader in readers])), 4
        ),
        "inconsistencies": sum(reader["inconsistencies"] for reader in readers),
        "errors": sum(reader["errors"] for reader in readers),
        "problems_by_operation": problems,
        "distinct_states_read": sum(reader["distinct_full_states"] for reader in readers),
        "examples": [e for r in readers for e in r["inconsistency_examples"] + r["error_examples"]][
            :5
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Run one role; print its result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m oupsish.testing.concurrency")
    roles = parser.add_subparsers(dest="role", required=True)
    writer = roles.add_parser("writer")
    reader = roles.add_parser("reader")
    for role in (writer, reader):
        role.add_argument("--store", type=Path, required=True)
        role.add_argument("--seed", type=int, required=True)
        role.add_argument("--duration", type=float, required=True)
        role.add_argument("--progress", type=Path, required=True)
    writer.add_argument("--start", type=int, default=1)
    reader.add_argument("--reader-seed", type=int, default=0)
    reader.add_argument(
        "--operations",
        default=",".join(OPERATIONS),
        help="comma-separated, among " + str(OPERATIONS),
    )
    tagged = roles.add_parser("tagged-writer")
    tagged.add_argument("--folder", type=Path, required=True)
    tagged.add_argument("--tag", type=int, required=True)
    tagged.add_argument("--count", type=int, required=True)
    tagged.add_argument("--seed", type=int, default=0)
    tagged.add_argument("--go", type=Path, help="wait for this file before writing")
    paused = roles.add_parser("paused-writer")
    paused.add_argument("--folder", type=Path, required=True)
    paused.add_argument("--step", default="before_replace", choices=faults.STEPS)
    paused.add_argument("--seconds", type=float, required=True)
    paused.add_argument("--ready", type=Path, required=True)
    paused.add_argument("--w", type=int, default=999)
    args = parser.parse_args(argv)
    result: dict[str, Any]
    if args.role == "writer":
        result = run_writer(args.store, args.seed, args.start, args.duration, args.progress)
    elif args.role == "reader":
        operations = [name for name in args.operations.split(",") if name]
        unknown = set(operations) - set(OPERATIONS)
        if unknown or not operations:
            parser.error(f"--operations takes names among {OPERATIONS}, got {args.operations!r}")
        result = run_reader(
            args.store, args.seed, args.duration, args.progress, args.reader_seed, operations
        )
    elif args.role == "tagged-writer":
        result = run_tagged_writer(args.folder, args.tag, args.count, args.seed, args.go)
    else:
        result = run_paused_writer(args.folder, args.step, args.seconds, args.ready, args.w)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
