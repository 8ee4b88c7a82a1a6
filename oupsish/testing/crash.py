"""Crash harness: kill a writer process in the middle of a write, then check the dataset.

A *trial* takes a dataset whose content is known (a :class:`ModelledDataset`: the dataset on
disk plus its :class:`~oupsish.testing.ReferenceModel` and key-value metadata), draws a
random write (append, insert into the past, overlap, rows before the first, metadata only;
with or without ``duplicates_on``, with coalescing, with metadata), and has a separate
Python process perform it and die by ``SIGKILL``:

- at a named step of :data:`oupsish.faults.STEPS`, at its ``k``-th occurrence ("after 2 of
  5 data files"), through the fault-injection hook;
- in the middle of a file: :data:`MID_DATA_FILE` leaves the ``k``-th data file half
  written, :data:`MID_METADATA_FILE` the new metadata file;
- at a random instant (:data:`RANDOM`): the parent sleeps a random delay after the child
  starts the write, then kills it.

Before the kill, a *census* runs the same write on a copy of the dataset, in process, to
count how often each step occurs and to time it. After the kill the harness checks that the
dataset opens; that its rows and key-value metadata equal the model's state either before
or after the write (and the same one); that the metadata's statistics match the files
(every listed file exists, holds one row group with the recorded row count, first and last
``ordered_on`` values); then performs the next write in process, checks it against the
model, and checks that no stray file (temporary or unlisted) remains.

Use it as ``with CrashHarness(tmp_path, seed) as harness: harness.trial(...)``; the soak
script ``tests/soak/soak_crash.py`` runs thousands of trials and prints a tally. The child
side is this module's ``__main__`` (``python -m oupsish.testing.crash``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from oupsish import faults
from oupsish import io as parquet_io
from oupsish.commit import is_superseded_name
from oupsish.dataset import OrderedParquetDataset
from oupsish.metadata import METADATA_SUFFIX
from oupsish.testing.model import ReferenceModel

__all__ = [
    "FSYNC_FALSE_SHARE",
    "KILL_POINTS",
    "MID_DATA_FILE",
    "MID_METADATA_FILE",
    "RANDOM",
    "CrashHarness",
    "KillPlan",
    "ModelledDataset",
    "State",
    "TrialResult",
    "WriteSpec",
    "check_stats_match_files",
    "stray_files",
]

MID_DATA_FILE = "mid_data_file"
MID_METADATA_FILE = "mid_metadata_file"
RANDOM = "random"
KILL_POINTS: tuple[str, ...] = (*faults.STEPS, MID_DATA_FILE, MID_METADATA_FILE)
"""Where a step kill can happen: every step of the write, and inside a file being written."""

FSYNC_FALSE_SHARE = 0.25
"""The share of :meth:`CrashHarness.new_dataset`'s datasets written with ``fsync=False``."""
_ORDERED_ON = "ts"
_BASE_TIME = np.datetime64("2024-01-01T00:00", "ns")
_CHILD_TIMEOUT = 120.0


# --------------------------------------------------------------------------------------
# Writes and states
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteSpec:
    """One write, as handed to :meth:`OrderedParquetDataset.write`."""

    kind: str
    df: pd.DataFrame | None
    row_group_target_size: int | str
    duplicates_on: list[str] | None
    max_n_off_target_rgs: int | None
    key_value_metadata: dict[str, str | None] | None

    def kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of ``write`` (fresh copies: nothing is shared)."""
        return {
            "df": None if self.df is None else self.df.copy(),
            "ordered_on": _ORDERED_ON,
            "row_group_target_size": self.row_group_target_size,
            "duplicates_on": None if self.duplicates_on is None else list(self.duplicates_on),
            "max_n_off_target_rgs": self.max_n_off_target_rgs,
            "key_value_metadata": (
                None if self.key_value_metadata is None else dict(self.key_value_metadata)
            ),
        }


@dataclass(frozen=True)
class State:
    """What a dataset holds at one commit: its rows and its key-value metadata."""

    frame: pd.DataFrame | None
    key_value_metadata: dict[str, str]

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return 0 if self.frame is None else len(self.frame)


def same_rows(actual: pd.DataFrame | None, expected: pd.DataFrame | None) -> bool:
    """Return whether two frames hold the same rows in the same order (``None``: no rows)."""
    if actual is None or len(actual) == 0 or expected is None or len(expected) == 0:
        return (actual is None or len(actual) == 0) and (expected is None or len(expected) == 0)
    try:
        pd.testing.assert_frame_equal(
            actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
        )
    except AssertionError:
        return False
    return True


def same_state(actual: State, expected: State) -> bool:
    """Return whether two states hold the same rows and the same key-value metadata."""
    return actual.key_value_metadata == expected.key_value_metadata and same_rows(
        actual.frame, expected.frame
    )


def _row_counter(frame: pd.DataFrame | None) -> Counter[tuple[Hashable, ...]]:
    if frame is None:
        return Counter()
    return Counter(tuple(row) for row in frame.itertuples(index=False, name=None))


def row_difference(actual: pd.DataFrame | None, expected: pd.DataFrame | None) -> tuple[int, int]:
    """Return ``(lost, duplicated)``: rows of ``expected`` not in ``actual``, extra rows."""
    have, want = _row_counter(actual), _row_counter(expected)
    return sum((want - have).values()), sum((have - want).values())


class ModelledDataset:
    """A dataset on disk and what it must hold: a reference model and key-value metadata.

    Parameters
    ----------
    folder : Path
        The dataset's folder (its metadata and lock files go beside it).
    rng : numpy.random.Generator
        Draws the dataset's settings (``ordered_on`` type, ``duplicates_on``, targets).
    fsync : bool, default True
        Whether its writes flush to disk (``fsync=False`` is the opt-in that is not power-cut
        safe; a killed process must still leave either state, the page cache surviving).
    """

    def __init__(self, folder: Path, rng: np.random.Generator, fsync: bool = True) -> None:
        self.folder = folder
        self.fsync = fsync
        self.datetime = bool(rng.random() < 0.35)
        choices: list[list[str] | None] = [None, ["key"], []]
        self.duplicates_on = choices[int(rng.integers(0, len(choices)))]
        self.model = ReferenceModel(_ORDERED_ON)
        self.key_value_metadata: dict[str, str] = {}
        self._metadata_counter = 0

    def __repr__(self) -> str:
        kind = "datetime" if self.datetime else "int"
        return (
            f"ModelledDataset({str(self.folder)!r}, {kind}, "
            f"duplicates_on={self.duplicates_on}, fsync={self.fsync})"
        )

    def handle(self) -> OrderedParquetDataset:
        """Open the dataset."""
        return OrderedParquetDataset(self.folder, fsync=self.fsync)

    def state(self) -> State:
        """Return the state the dataset must be in now."""
        return State(self.model.frame, dict(self.key_value_metadata))

    def state_after(self, spec: WriteSpec) -> State:
        """Return the state after ``spec``, from the model (nothing changes here)."""
        model = ReferenceModel(_ORDERED_ON)
        model.frame = self.model.frame
        if spec.df is not None and len(spec.df):
            model.write(spec.df, duplicates_on=spec.duplicates_on)
        metadata = dict(self.key_value_metadata)
        for key, value in (spec.key_value_metadata or {}).items():
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        return State(model.frame, metadata)

    def apply(self, spec: WriteSpec) -> None:
        """Record that ``spec`` was committed."""
        after = self.state_after(spec)
        self.model.frame = after.frame
        self.key_value_metadata = after.key_value_metadata

    def _range(self) -> tuple[int, int] | None:
        frame = self.model.frame
        if frame is None or not len(frame):
            return None
        values = frame[_ORDERED_ON].to_numpy()
        if self.datetime:
            minutes = (values.astype("datetime64[m]") - _BASE_TIME.astype("datetime64[m]")).astype(
                np.int64
            )
            return int(minutes.min()), int(minutes.max())
        return int(values.min()), int(values.max())

    def _frame(self, rng: np.random.Generator, ticks: np.ndarray[Any, Any]) -> pd.DataFrame:
        ticks = np.sort(ticks.astype(np.int64))
        n = len(ticks)
        ts: np.ndarray[Any, Any] = (
            _BASE_TIME + ticks.astype("timedelta64[m]") if self.datetime else ticks
        )
        frame: pd.DataFrame = pd.DataFrame(
            {
                _ORDERED_ON: ts,
                "key": rng.integers(0, 3, n).astype(np.int64),
                "value": np.round(rng.normal(size=n), 6),
            }
        )
        return frame

    def random_write(self, rng: np.random.Generator) -> WriteSpec:
        """Draw a write: its kind, rows, target size, coalescing and metadata."""
        size_class = rng.random()
        n = int(
            rng.integers(1, 20)
            if size_class < 0.35
            else rng.integers(20, 150)
            if size_class < 0.8
            else rng.integers(150, 500)
        )
        span = max(2, n)
        bounds = self._range()
        df: pd.DataFrame | None
        if bounds is None:
            kind = "first"
            df = self._frame(rng, rng.integers(0, span, n))
        else:
            lo, hi = bounds
            draw = rng.random()
            if draw < 0.1:
                kind = "metadata"
                df = None
            elif draw < 0.45:
                kind = "append"
                df = self._frame(rng, hi + rng.integers(0, span, n))
            elif draw < 0.75:
                kind = "insert"
                start = int(rng.integers(lo, hi + 1))
                df = self._frame(rng, rng.integers(start, min(hi, start + span) + 1, n))
            elif draw < 0.92:
                kind = "overlap"
                df = self._frame(rng, rng.integers(int(rng.integers(lo, hi + 1)), hi + span, n))
            else:
                kind = "before_first"
                df = self._frame(rng, rng.integers(lo - span, lo + 1, n))
        metadata: dict[str, str | None] | None = None
        if kind == "metadata" or rng.random() < 0.5:
            self._metadata_counter += 1
            metadata = {f"k{int(rng.integers(0, 4))}": f"v{self._metadata_counter}"}
            if self.key_value_metadata and rng.random() < 0.3:
                keys = sorted(self.key_value_metadata)
                metadata[keys[int(rng.integers(0, len(keys)))]] = None
        target: int | str = int(rng.integers(12, 160))
        if self.datetime and rng.random() < 0.5:
            target = ["30min", "2h", "12h", "1D"][int(rng.integers(0, 4))]
        coalescing: list[int | None] = [None, 0, 1, 2, 3]
        return WriteSpec(
            kind=kind,
            df=df,
            row_group_target_size=target,
            duplicates_on=None if self.duplicates_on is None else list(self.duplicates_on),
            max_n_off_target_rgs=coalescing[int(rng.integers(0, len(coalescing)))],
            key_value_metadata=metadata,
        )


def read_state(folder: Path) -> tuple[State, pd.DataFrame]:
    """Open the dataset at ``folder``; return its state and row-group statistics."""
    dataset = OrderedParquetDataset(folder)
    frame = dataset.to_pandas()
    return State(frame, dataset.key_value_metadata), dataset.row_group_stats


def check_stats_match_files(folder: Path, stats: pd.DataFrame, n_rows: int) -> list[str]:
    """Return the mismatches between the metadata's row-group statistics and the files.

    Every listed file must exist and hold one row group with the recorded row count, first
    (min) and last (max) ``ordered_on`` value, sorted; the counts must add up to ``n_rows``.
    """
    problems: list[str] = []
    if int(stats["n_rows"].sum()) != n_rows:
        problems.append(f"row groups record {int(stats['n_rows'].sum())} rows, read {n_rows}")
    for file_id, count, low, high in zip(
        stats["file_ids"],
        stats["n_rows"],
        stats["ordered_on_mins"],
        stats["ordered_on_maxs"],
        strict=True,
    ):
        path = folder / f"file_{file_id}.parquet"
        if not path.is_file():
            problems.append(f"{path.name} is listed but missing")
            continue
        try:
            parquet = pq.ParquetFile(path)
            values = parquet.read(columns=[_ORDERED_ON]).column(_ORDERED_ON).to_pandas()
        except Exception as error:
            problems.append(f"{path.name} cannot be read: {type(error).__name__}: {error}")
            continue
        if parquet.metadata.num_row_groups != 1:
            problems.append(f"{path.name} holds {parquet.metadata.num_row_groups} row groups")
        if len(values) != count:
            problems.append(f"{path.name} holds {len(values)} rows, metadata says {count}")
        elif count and (values.iloc[0] != low or values.iloc[-1] != high):
            problems.append(
                f"{path.name} spans [{values.iloc[0]}, {values.iloc[-1]}], metadata [{low}, {high}]"
            )
        if not values.is_monotonic_increasing:
            problems.append(f"{path.name} is not sorted on {_ORDERED_ON}")
    return problems


def stray_files(folder: Path, stats: pd.DataFrame | None) -> list[str]:
    """Return files that should not be there: unlisted files in the folder, temporaries beside.

    Retired files (``.<file>.superseded``, kept for readers of older snapshots) are expected.

    Beside the folder (where other datasets may live), ``<name>_opdmd`` and ``<name>.lock``
    are expected; any other name starting with ``<name>_opdmd``, ``<name>.`` or
    ``.<name>`` (a temporary metadata file) is a stray.
    """
    listed = set() if stats is None else {f"file_{i}.parquet" for i in stats["file_ids"]}
    strays = []
    with contextlib.suppress(FileNotFoundError):
        strays += [
            name
            for name in sorted(os.listdir(folder))
            if name not in listed and not is_superseded_name(name)
        ]
    name = folder.name
    allowed = {name, name + METADATA_SUFFIX, name + ".lock"}
    prefixes = (name + METADATA_SUFFIX, name + ".", "." + name)
    strays += [
        f"../{entry}"
        for entry in sorted(os.listdir(folder.parent))
        if entry not in allowed and entry.startswith(prefixes)
    ]
    return strays


# --------------------------------------------------------------------------------------
# The child process
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPlan:
    """Where the child dies.

    ``point`` is a point of :data:`KILL_POINTS`, killing at its ``occurrence``, or
    :data:`RANDOM`: the parent kills the child, which only reports its steps.
    """

    point: str
    occurrence: int = 1


@dataclass(frozen=True)
class _Job:
    folder: str
    spec: WriteSpec
    plan: KillPlan
    fsync: bool


_began = 0.0  # when the child started its write


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _say_step(step: str) -> None:
    _say(f"step {step} {time.perf_counter() - _began:.6f}")


def _die() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # pragma: no cover - SIGKILL is not deferred
    raise SystemExit(1)  # pragma: no cover


def _write_half(data: bytes, path: str | os.PathLike[str]) -> NoReturn:
    """Leave the first half of ``data`` in ``path``, durably, and die."""
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])
        file.flush()
        os.fsync(file.fileno())
    _die()


def _arm(plan: KillPlan) -> None:
    """Install the hook that reports every step and kills the process where planned."""
    counts: Counter[str] = Counter()

    def hook(step: str, path: Path) -> None:
        counts[step] += 1
        _say_step(step)
        if step == plan.point and counts[step] == plan.occurrence:
            _die()

    faults.install(hook)
    if plan.point == MID_DATA_FILE:
        real_write_file = parquet_io.write_file

        def partial_write_file(path: Path, *args: Any, **kwargs: Any) -> Future[None]:
            written = real_write_file(path, *args, **kwargs)
            counts[MID_DATA_FILE] += 1
            if counts[MID_DATA_FILE] == plan.occurrence:
                _say_step(MID_DATA_FILE)
                written.result()
                _write_half(path.read_bytes(), path)
            return written

        parquet_io.write_file = partial_write_file
    elif plan.point == MID_METADATA_FILE:
        real_write_bytes = Path.write_bytes

        def partial_write_bytes(self: Path, data: Any) -> int:
            name = self.name
            if name.startswith(".") and METADATA_SUFFIX + "." in name:
                _say_step(MID_METADATA_FILE)
                _write_half(bytes(data), self)
            return real_write_bytes(self, data)

        Path.write_bytes = partial_write_bytes  # type: ignore[method-assign]


def _warm_up() -> None:
    """Exercise the write and read paths once, so that the timed write is not the first."""
    with tempfile.TemporaryDirectory() as tmp:
        dataset = OrderedParquetDataset(Path(tmp) / "warm", ordered_on=_ORDERED_ON)
        frame = pd.DataFrame({_ORDERED_ON: np.arange(50), "v": np.arange(50.0)})
        dataset.write(df=frame, row_group_target_size=20)
        dataset.write(
            df=frame.iloc[10:30], row_group_target_size=20, duplicates_on=[], max_n_off_target_rgs=1
        )
        dataset.to_pandas()


def child_main() -> int:
    """Run in the child: warm up, say ``ready``, take one job from stdin, write, say ``done``."""
    _warm_up()
    _say("ready")
    line = sys.stdin.readline().strip()
    if not line:
        return 0  # the parent did not need this process
    global _began
    job: _Job = pickle.loads(Path(line).read_bytes())
    _arm(job.plan)
    _say("start")
    _began = time.perf_counter()
    OrderedParquetDataset(job.folder, fsync=job.fsync).write(**job.spec.kwargs())
    _say(f"done {time.perf_counter() - _began:.6f}")
    return 0


@dataclass(frozen=True)
class ChildReport:
    """What the parent saw of one child."""

    returncode: int
    steps: list[tuple[str, float]]  # step names and seconds since the write started
    completed: bool
    duration: float | None
    stderr: str
    timed_out: bool

    @property
    def killed(self) -> bool:
        """Whether the child died by SIGKILL (and not by the watchdog)."""
        return self.returncode == -signal.SIGKILL and not self.timed_out


class ChildWriter:
    """A writer process started ahead of its job: imports take most of its start-up."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "oupsish.testing.crash"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )

    def close(self) -> None:
        """Stop the process if it is still waiting for a job."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def run(self, job: Path, kill_after: float | None) -> ChildReport:
        """Hand ``job`` to the process; with ``kill_after``, SIGKILL it so long after it starts."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            process.kill()

        watchdog = threading.Timer(_CHILD_TIMEOUT, expire)
        watchdog.start()
        lines: list[str] = []
        try:
            ready = process.stdout.readline().strip()
            if ready == "ready":
                process.stdin.write(f"{job}\n")
                process.stdin.flush()
                started = process.stdout.readline().strip()
                lines.append(started)
                if started == "start" and kill_after is not None:
                    time.sleep(kill_after)
                    process.send_signal(signal.SIGKILL)
            else:
                lines.append(ready)
            lines += process.stdout.read().splitlines()
            returncode = process.wait()
        finally:
            watchdog.cancel()
        steps = [
            (line.split()[1], float(line.split()[2])) for line in lines if line.startswith("step ")
        ]
        done = [line for line in lines if line.startswith("done ")]
        report = ChildReport(
            returncode=returncode,
            steps=steps,
            completed=bool(done),
            duration=float(done[0].split()[1]) if done else None,
            stderr=self._stderr_text(),
            timed_out=timed_out.is_set(),
        )
        self.close()
        return report


# --------------------------------------------------------------------------------------
# The parent: trials
# --------------------------------------------------------------------------------------


@dataclass
class TrialResult:
    """What one killed write did to its dataset."""

    point: str
    occurrence: int
    occurrences: int
    kind: str
    killed: bool
    last_step: str | None
    outcome: str  # "before", "after", "same" (the write changed nothing), "neither", "unreadable"
    fsync: bool = True
    lost_rows: int = 0
    duplicated_rows: int = 0
    leftovers: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recovered: bool = False

    @property
    def label(self) -> str:
        """The kill point, for tallies: random kills are labelled by the last step reached."""
        if self.point != RANDOM:
            return self.point
        if not self.killed:
            return "random:write completed first"
        return f"random:after {self.last_step}" if self.last_step else "random:before any step"

    @property
    def ok(self) -> bool:
        """Whether the trial found nothing wrong."""
        return not self.problems


@dataclass(frozen=True)
class Census:
    """The same write run without a kill, on a copy: step counts, duration, result."""

    counts: Counter[str]
    steps: list[tuple[str, float]]  # step names and seconds since the write started
    duration: float
    state: State | None
    error: str | None

    def occurrences(self, point: str) -> int:
        """How often the write passes ``point``."""
        if point == MID_DATA_FILE:
            return self.counts["after_data_file"]
        if point == MID_METADATA_FILE:
            return self.counts["before_replace"]
        return self.counts[point]


@contextlib.contextmanager
def _without_fsync() -> Iterator[None]:
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real_fsync


class CrashHarness:
    """Runs kill trials on datasets under ``root``.

    Parameters
    ----------
    root : Path
        A scratch folder; each dataset gets its own sub-folder.
    seed : int
        Seeds every random choice (writes, kill points, delays).
    prestarted : int, default 2
        Child processes kept started ahead of their jobs (their imports take most of the
        time of a trial).
    """

    def __init__(self, root: Path, seed: int, prestarted: int = 2) -> None:
        self.prestarted = prestarted
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(seed)
        self._children: list[ChildWriter] = []  # started ahead of their jobs
        self._n_datasets = 0
        self._n_jobs = 0
        self.slowdown = 1.5  # child write time / census write time, used to aim random kills

    def __enter__(self) -> CrashHarness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pre-started child, if any."""
        while self._children:
            self._children.pop().close()

    def _take_child(self) -> ChildWriter:
        child = self._children.pop(0) if self._children else ChildWriter()
        while len(self._children) < self.prestarted:
            self._children.append(ChildWriter())  # they start while this trial runs
        return child

    def new_dataset(self, n_setup: int | None = None, fsync: bool | None = None) -> ModelledDataset:
        """Create a dataset with ``n_setup`` committed random writes (0 to 4 if ``None``).

        Its writes use ``fsync=False`` if ``fsync`` is ``False``; if ``None``, drawn for
        :data:`FSYNC_FALSE_SHARE` of the datasets.
        """
        self._n_datasets += 1
        folder = self.root / f"ds{self._n_datasets}" / "data"
        folder.parent.mkdir(parents=True)
        if fsync is None:
            fsync = bool(self.rng.random() >= FSYNC_FALSE_SHARE)
        dataset = ModelledDataset(folder, self.rng, fsync)
        count = int(self.rng.integers(0, 5)) if n_setup is None else n_setup
        with _without_fsync():  # set-up writes are not under test: skip their flushes
            for _ in range(count):
                spec = dataset.random_write(self.rng)
                dataset.handle().write(**spec.kwargs())
                dataset.apply(spec)
        return dataset

    def census(self, dataset: ModelledDataset, spec: WriteSpec) -> Census:
        """Run ``spec`` on a copy of ``dataset``, counting steps."""
        scratch = self.root / "census"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(dataset.folder.parent, scratch)
        counts: Counter[str] = Counter()
        steps: list[tuple[str, float]] = []
        began = time.perf_counter()

        def count(step: str, path: Path) -> None:
            counts[step] += 1
            steps.append((step, time.perf_counter() - began))

        previous = faults.install(count)
        error = None
        try:
            OrderedParquetDataset(scratch / dataset.folder.name, fsync=dataset.fsync).write(
                **spec.kwargs()
            )
        except Exception as exception:
            error = f"{type(exception).__name__}: {exception}"
        finally:
            faults.install(previous)
        duration = time.perf_counter() - began
        state = None if error else read_state(scratch / dataset.folder.name)[0]
        shutil.rmtree(scratch, ignore_errors=True)
        return Census(counts, steps, duration, state, error)

    def trial_at(self, dataset: ModelledDataset, point: str, recover: bool = True) -> TrialResult:
        """Run a trial killing at ``point``, drawing writes until one passes that point."""
        for _ in range(40):
            spec = dataset.random_write(self.rng)
            census = self.census(dataset, spec)
            if census.occurrences(point):
                return self.trial(dataset, point, spec=spec, census=census, recover=recover)
        raise RuntimeError(f"no random write of {dataset} passes {point!r}")

    def trial(
        self,
        dataset: ModelledDataset,
        point: str,
        *,
        occurrence: int | None = None,
        spec: WriteSpec | None = None,
        census: Census | None = None,
        recover: bool = True,
    ) -> TrialResult:
        """Have a child perform a write and die at ``point``; check the dataset afterwards.

        Parameters
        ----------
        dataset : ModelledDataset
            Updated to the state the dataset is found in.
        point : str
            A point of :data:`KILL_POINTS`, :data:`RANDOM`, or ``"step"`` for a point drawn
            among those the write passes (:data:`RANDOM` if it passes none).
        occurrence : int, optional
            Which occurrence of ``point`` kills; drawn uniformly if not given.
        spec : WriteSpec, optional
            The write; drawn if not given.
        census : Census, optional
            ``spec``'s census, if already run.
        recover : bool, default True
            Perform the next write in process and check it leaves no stray file.
        """
        spec = dataset.random_write(self.rng) if spec is None else spec
        census = self.census(dataset, spec) if census is None else census
        before, after = dataset.state(), dataset.state_after(spec)
        problems: list[str] = []
        if census.error is not None:
            problems.append(f"the write failed without any kill: {census.error}")
        elif census.state is not None and not same_state(census.state, after):
            problems.append("the write, without any kill, disagrees with the reference model")
        if point == "step":
            available = [p for p in KILL_POINTS if census.occurrences(p)]
            point = available[int(self.rng.integers(0, len(available)))] if available else RANDOM
        occurrences = 0 if point == RANDOM else census.occurrences(point)
        if point != RANDOM and occurrences == 0:
            raise ValueError(f"the write never passes {point!r}; use trial_at()")
        if occurrence is None:
            occurrence = 1 if point == RANDOM else int(self.rng.integers(1, occurrences + 1))
        kill_after = (
            float(self.rng.uniform(0.0, 1.1 * census.duration * self.slowdown))
            if point == RANDOM
            else None
        )
        self._n_jobs += 1
        job_path = self.root / f"job{self._n_jobs}.pkl"
        plan = KillPlan(RANDOM if point == RANDOM else point, occurrence)
        job_path.write_bytes(pickle.dumps(_Job(str(dataset.folder), spec, plan, dataset.fsync)))
        child = self._take_child()
        report = child.run(job_path, kill_after)
        job_path.unlink()
        self._learn_slowdown(census, report)
        if report.timed_out:
            problems.append(f"the child hung for {_CHILD_TIMEOUT} s; stderr:\n{report.stderr}")
        elif point != RANDOM and not report.killed:
            problems.append(
                f"the child was not killed at {point} #{occurrence} (exit {report.returncode}); "
                f"stderr:\n{report.stderr}"
            )
        elif point == RANDOM and not (report.killed or report.returncode == 0):
            problems.append(f"the child failed (exit {report.returncode}):\n{report.stderr}")
        result = TrialResult(
            point=point,
            occurrence=occurrence,
            occurrences=occurrences,
            kind=spec.kind,
            killed=report.killed,
            last_step=report.steps[-1][0] if report.steps else None,
            outcome="unreadable",
            fsync=dataset.fsync,
            problems=problems,
        )
        self._check(dataset, spec, before, after, result)
        if recover and result.outcome not in ("neither", "unreadable"):
            self._recover(dataset, result)
        return result

    def _learn_slowdown(self, census: Census, report: ChildReport) -> None:
        """Compare when the child and the census reached the same step, to aim random kills."""
        reference = None
        if report.completed and report.duration is not None:
            reference = (report.duration, census.duration)
        elif report.steps and len(report.steps) <= len(census.steps):
            index = len(report.steps) - 1
            if census.steps[index][0] == report.steps[index][0] and census.steps[index][1] > 0:
                reference = (report.steps[index][1], census.steps[index][1])
        if reference is not None and reference[1] > 0.002:
            ratio = min(max(reference[0] / reference[1], 0.3), 10.0)
            self.slowdown = 0.8 * self.slowdown + 0.2 * ratio

    def _check(
        self,
        dataset: ModelledDataset,
        spec: WriteSpec,
        before: State,
        after: State,
        result: TrialResult,
    ) -> None:
        try:
            state, stats = read_state(dataset.folder)
        except Exception as error:
            result.problems.append(f"the dataset cannot be read: {type(error).__name__}: {error}")
            return
        is_before, is_after = same_state(state, before), same_state(state, after)
        if is_before and is_after:
            result.outcome = "same"
        elif is_before:
            result.outcome = "before"
        elif is_after:
            result.outcome = "after"
            dataset.apply(spec)
        else:
            result.outcome = "neither"
            differences = [row_difference(state.frame, s.frame) for s in (before, after)]
            result.lost_rows, result.duplicated_rows = min(differences, key=sum)
            rows = [same_rows(state.frame, s.frame) for s in (before, after)]
            metadata = [state.key_value_metadata == s.key_value_metadata for s in (before, after)]
            result.problems.append(
                f"the dataset is in neither state: rows match (before, after) {rows}, key-value "
                f"metadata matches {metadata}; {result.lost_rows} rows lost, "
                f"{result.duplicated_rows} duplicated ({state.n_rows} rows, expected "
                f"{before.n_rows} or {after.n_rows})"
            )
        result.problems += check_stats_match_files(dataset.folder, stats, state.n_rows)
        result.leftovers = stray_files(dataset.folder, stats)

    def _recover(self, dataset: ModelledDataset, result: TrialResult) -> None:
        spec = dataset.random_write(self.rng)
        try:
            dataset.handle().write(**spec.kwargs())
        except Exception as error:
            result.problems.append(f"the next write failed: {type(error).__name__}: {error}")
            return
        dataset.apply(spec)
        try:
            state, stats = read_state(dataset.folder)
        except Exception as error:
            result.problems.append(
                f"after the next write, the dataset cannot be read: {type(error).__name__}: {error}"
            )
            return
        if not same_state(state, dataset.state()):
            result.problems.append("after the next write, the dataset disagrees with the model")
        result.problems += check_stats_match_files(dataset.folder, stats, state.n_rows)
        result.stray_files = stray_files(dataset.folder, stats)
        if result.stray_files:
            result.problems.append(f"stray files after the next write: {result.stray_files}")
        result.recovered = True


def tally(results: Iterable[TrialResult]) -> dict[str, Any]:
    """Summarise trials: counts per kill point and outcome, lost and duplicated rows..."""
    results = list(results)
    return {
        "trials": len(results),
        "killed": sum(result.killed for result in results),
        "kills_per_point": dict(sorted(Counter(result.label for result in results).items())),
        "outcomes": dict(sorted(Counter(result.outcome for result in results).items())),
        "write_kinds": dict(sorted(Counter(result.kind for result in results).items())),
        "fsync_false_trials": sum(not result.fsync for result in results),
        "lost_rows": sum(result.lost_rows for result in results),
        "duplicated_rows": sum(result.duplicated_rows for result in results),
        "unreadable_datasets": sum(result.outcome == "unreadable" for result in results),
        "leftovers_found_after_kill": sum(bool(result.leftovers) for result in results),
        "recovery_writes": sum(result.recovered for result in results),
        "stray_files_after_next_write": sum(len(result.stray_files) for result in results),
        "failed_trials": sum(not result.ok for result in results),
    }


if __name__ == "__main__":
    sys.exit(child_main())
