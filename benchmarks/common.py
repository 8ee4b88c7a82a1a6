"""Shared pieces of the benchmark suite: data, timing, memory, result recording.

Everything a scenario needs comes through a :class:`Context`: the scale, the number of
repeats, a private temporary folder, and the :class:`Recorder` that collects each figure
next to its raw pyarrow baseline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

# Re-exported: the scenarios take everything from here.
from benchmarks.data import ORDERED_ON as ORDERED_ON
from benchmarks.data import chunks as chunks
from benchmarks.data import make_frame as make_frame
from benchmarks.data import row_time as row_time

REPO = Path(__file__).resolve().parents[1]
FULL_ROWS = 10_000_000
QUICK_ROWS = 500_000
ROW_BYTES = 48  # 6 columns of 8 bytes: what one row costs in a pandas frame
WARM_ROWS = 60_000
"""Rows the memory jobs write before measuring: enough (2.9 MB) for oupsish to start its
encoder threads, whose one-time set-up (about 18 MB, whatever the chunk size) is then not
counted as the stream's."""
# Encoding options of the package's default write (``compression="snappy"``), and the
# cheapest one the anchors were measured with.
# oupsish's default: snappy, dictionary encoding only for string/binary/categorical
# columns. The synthetic data has none, so raw pyarrow gets use_dictionary=False: the same
# encoding on both sides.
DEFAULT_ENCODING: dict[str, Any] = {"compression": "snappy", "use_dictionary": False}
PLAIN_ENCODING: dict[str, Any] = {"compression": "none", "use_dictionary": False}


# --- data -----------------------------------------------------------------------------------


def frame_bytes(df: pd.DataFrame) -> int:
    """Memory of a frame as pandas reports it (``memory_usage(deep=True)``)."""
    return int(df.memory_usage(deep=True).sum())


def to_table(df: pd.DataFrame) -> pa.Table:
    """What raw pyarrow does with a pandas frame before writing it."""
    return pa.Table.from_pandas(df, preserve_index=False)


# --- files ----------------------------------------------------------------------------------


SIBLING_SUFFIXES = ("_opdmd", "_history", ".lock")  # files beside a dataset's folder


def remove_dataset(path: Path) -> None:
    """Remove a dataset folder with the files beside it (metadata, history, lock)."""
    shutil.rmtree(path, ignore_errors=True)
    for suffix in SIBLING_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.with_name(path.name + suffix))


def write_durably(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to the new file ``path`` and fsync it: the disk's part of a durable write."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def fresh_dir(path: Path) -> Path:
    """Return ``path`` as a new empty folder."""
    remove_dataset(path)
    path.mkdir(parents=True)
    return path


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (plus its metadata files, if it is a dataset)."""
    total = 0
    for folder, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in names)
    for suffix in SIBLING_SUFFIXES[:2]:
        beside = path.with_name(path.name + suffix)
        if beside.exists():
            total += beside.stat().st_size
    return total


def dataset_files(dataset: Any) -> list[Path]:
    """The data files of an oupsish dataset, in row-group order (its current snapshot)."""
    return [Path(dataset.dirpath) / name for name in dataset.snapshot().file_names]


# --- timing ---------------------------------------------------------------------------------


def timed(
    fn: Callable[[], Any],
    repeats: int,
    setup: Callable[[], Any] | None = None,
) -> list[float]:
    """Run ``fn`` ``repeats`` times (``setup`` before each, untimed); return the seconds."""
    seconds = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        settle()
        gc.collect()
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def settle() -> None:
    """Write back every dirty page first (untimed): the writes a run leaves in the page
    cache (raw pyarrow does not fsync) must not slow the fsyncs of the next one."""
    os.sync()


def paired(
    ours: Callable[[], Any],
    raw: Callable[[], Any],
    repeats: int,
    setup_ours: Callable[[], Any] | None = None,
    setup_raw: Callable[[], Any] | None = None,
) -> tuple[float, float]:
    """Time oupsish and its baseline alternately (so drifting load hits both); return medians."""
    found = interleaved({"ours": (ours, setup_ours), "raw": (raw, setup_raw)}, repeats)
    return found["ours"], found["raw"]


def interleaved(
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]], repeats: int
) -> dict[str, float]:
    """Time several ``(fn, setup)`` cases in turn, ``repeats`` rounds; return their medians.

    Rounds alternate the order (A B, B A, ...) so that neither side always runs first,
    right after the other's allocations or writes.
    """
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(repeats):
        names = list(cases) if round_ % 2 == 0 else list(reversed(cases))
        for name in names:
            fn, setup = cases[name]
            seconds[name] += timed(fn, 1, setup)
    return {name: median(values) for name, values in seconds.items()}


def median(values: list[float]) -> float:
    """The median, the figure every scenario reports."""
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


# --- memory ---------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not found in /proc/self/status")


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); ``False`` if not."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (since start, or since the last reset)."""
    try:
        return _status_kib("VmHWM") * 1024
    except (OSError, RuntimeError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# --- the host -------------------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int] | None:
    """Return the CPU time the host stole from this machine, and all CPU time, since boot.

    In clock ticks, from ``/proc/stat`` (Linux); ``None`` where it cannot be read. A virtual
    machine's "steal" is the time its vCPUs were ready to run while the host ran something
    else: figures measured while it is high are slow for reasons outside the code.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user and nice)
    ticks = [int(value) for value in fields[1:9]]
    return ticks[7], sum(ticks)


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen by the host between two :func:`cpu_ticks` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _steal_text(details: dict[str, Any]) -> str:
    share = details.get("host_steal")
    return "" if share is None else f"host steal {share:.1%} of CPU time"


def run_job(
    name: str,
    params: dict[str, Any],
    timeout: float = 1800,
    python: str = sys.executable,
    module: str = "benchmarks.jobs",
) -> dict[str, Any]:
    """Run job ``name`` of ``module`` in a fresh interpreter; return its JSON reply.

    A fresh process makes peak-RSS figures independent of what the parent already holds;
    ``python`` may be another interpreter (the predecessor's, ``benchmarks.predecessor``).
    """
    command = [python, "-m", module, name, json.dumps(params)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"job {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    reply: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return reply


def median_job(name: str, params: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Run job ``name`` ``repeats`` times, each in a fresh interpreter; return the median run.

    Peak RSS varies from one process to the next (how the allocators place and keep memory:
    1.60-1.90x in eight runs of the same iter_intersections pass), so a single process can
    land high or low. The reply returned is the run with the median ``peak_over_start`` (the
    higher of the two middle ones for an even count), with the median ``seconds`` of all
    runs; it gains ``peaks``, every run's value, so the spread is kept with the results.
    """
    replies = [run_job(name, params) for _ in range(max(1, repeats))]
    replies.sort(key=lambda reply: float(reply["peak_over_start"]))
    chosen = dict(replies[len(replies) // 2])
    chosen["peaks"] = [reply["peak_over_start"] for reply in replies]
    chosen["seconds"] = median([float(reply["seconds"]) for reply in replies])
    return chosen


def peaks_text(job: dict[str, Any], unit_bytes: float) -> str:
    """The peaks of every run of a :func:`median_job`, in multiples of ``unit_bytes``."""
    return ", ".join(f"{peak / unit_bytes:.2f}" for peak in job["peaks"]) + "x"


# --- results --------------------------------------------------------------------------------

MB = 1e6


def fmt(value: float | None, unit: str) -> str:
    """Format a figure for the tables."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if unit == "rows/s":
        return f"{value / 1e6:.2f}M rows/s"
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MB/s":
        return f"{value:.0f} MB/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:.4g} {unit}"


@dataclass
class Row:
    """One figure of one scenario, next to its raw pyarrow baseline."""

    scenario: str
    metric: str
    unit: str
    oupsish: float | None
    pyarrow: float | None = None
    better: str = "higher"  # which way is better for the oupsish figure
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """``oupsish / pyarrow`` (for times, above 1 means slower than pyarrow)."""
        if self.oupsish is None or not self.pyarrow:
            return None
        return self.oupsish / self.pyarrow

    def cells(self) -> list[str]:
        ratio = self.ratio
        met = {None: "", True: "yes", False: "NO"}[self.met]
        return [
            self.metric,
            fmt(self.oupsish, self.unit),
            fmt(self.pyarrow, self.unit),
            "-" if ratio is None else f"{ratio:.2f}",
            self.target,
            met,
        ]


HEADER = ["metric", "oupsish", "raw pyarrow", "ratio", "target", "met"]


def render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    """Render a table as aligned text or as markdown."""
    table = [header, *rows]
    if markdown:
        lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


@dataclass
class Recorder:
    """Collects rows and per-scenario details; prints and saves them."""

    rows: list[Row] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, list[tuple[list[str], list[list[str]]]]] = field(default_factory=dict)

    def add(self, scenario: str, metric: str, unit: str, oupsish: float | None, **kw: Any) -> Row:
        row = Row(scenario, metric, unit, oupsish, **kw)
        self.rows.append(row)
        return row

    def detail(self, scenario: str, **values: Any) -> None:
        self.details.setdefault(scenario, {}).update(values)

    def note(self, scenario: str, text: str) -> None:
        self.notes.setdefault(scenario, []).append(text)

    def table(self, scenario: str, header: list[str], rows: list[list[str]]) -> None:
        """Attach a free-form table to a scenario (printed and saved after its figures)."""
        self.tables.setdefault(scenario, []).append((header, rows))

    def scenario_rows(self, scenario: str) -> list[Row]:
        return [row for row in self.rows if row.scenario == scenario]

    def print_scenario(self, scenario: str, title: str) -> None:
        steal = _steal_text(self.details.get(scenario, {}))
        took = f"{self.seconds.get(scenario, 0):.1f} s" + (f", {steal}" if steal else "")
        print(f"\n== {scenario}: {title} ({took})")
        print(render(HEADER, [row.cells() for row in self.scenario_rows(scenario)], False))
        for header, rows in self.tables.get(scenario, []):
            print()
            print(render(header, rows, markdown=False))
        for text in self.notes.get(scenario, []):
            print(f"   note: {text}")
        sys.stdout.flush()


# --- context --------------------------------------------------------------------------------


@dataclass
class Context:
    """What a scenario runs with."""

    rows: int
    quick: bool
    repeats: int
    tmp: Path
    out: Path
    recorder: Recorder
    profile: bool = False
    oups_python: str | None = None  # an interpreter with the predecessor, oups 2025.12

    @property
    def factor(self) -> float:
        """Scale relative to the issue's full size (10M rows)."""
        return self.rows / FULL_ROWS

    def scaled(self, n: int, minimum: int = 1) -> int:
        """``n`` (a full-scale count of rows) at this run's scale, at least ``minimum``."""
        return max(minimum, round(n * self.factor))

    def batches(self, size: int, count: int) -> tuple[int, int]:
        """``count`` writes (or files) of ``size`` rows at full scale, as ``(size, count)`` here.

        The count follows the scale and the size stays, down to the rows there are: a
        write's cost depends on its size (an fsync weighs more on a small one), so ratios
        measured at another scale stay comparable with the full run's.
        """
        total = self.scaled(size * count)
        size = min(size, total)
        return size, max(1, total // size)

    def workdir(self, scenario: str) -> Path:
        return fresh_dir(self.tmp / scenario)

    def predecessor(self, job: str, path: Path, **params: Any) -> dict[str, Any]:
        """Run ``job`` of ``benchmarks/predecessor.py`` on a dataset at ``path``, then remove it."""
        if self.oups_python is None:
            raise ValueError("the predecessor runs only with --oups-python")
        settle()
        try:
            return run_job(
                job,
                {"path": str(path), **params},
                python=self.oups_python,
                module="benchmarks.predecessor",
            )
        finally:
            remove_dataset(path)

    @contextlib.contextmanager
    def profiled(self, label: str) -> Iterator[None]:
        """Profile the block with pyinstrument when ``--profile`` is on (text under out/)."""
        if not self.profile:
            yield
            return
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            folder = self.out / "profiles"
            folder.mkdir(parents=True, exist_ok=True)
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
            (folder / f"{slug}.txt").write_text(text)


# --- machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    return str(getattr(imported, "__version__", "?"))


def filesystem(path: Path) -> dict[str, Any]:
    """Describe the file system holding ``path``: device, mount point, type, options (Linux).

    For ext4, ``journal`` says whether it has one: without, an ``fsync`` writes the inode
    itself rather than a journal commit, and creating a file skips, one by one, the inodes
    freed in the last seconds. Empty where ``/proc/mounts`` does not exist.
    """
    path = Path(os.path.realpath(path))
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            mount = Path(fields[1].replace("\\040", " "))
            within = mount == path or mount in path.parents
            if within and len(str(mount)) > len(info.get("mount", "")):
                info = {
                    "device": fields[0],
                    "mount": str(mount),
                    "type": fields[2],
                    "options": fields[3],
                }
    if not info:
        return info
    if info["type"] == "ext4":
        with contextlib.suppress(OSError):
            device = Path(info["device"]).name
            task = (Path("/sys/fs/ext4") / device / "journal_task").read_text()
            info["journal"] = task.strip() != "<none>"
    return info


def _filesystem_text(info: dict[str, Any]) -> str:
    if not info:
        return "unknown"
    journal = {True: ", with a journal", False: ", without a journal", None: ""}
    return (
        f"{info['type']} ({info['device']} on {info['mount']}{journal[info.get('journal')]}; "
        f"{info['options']})"
    )


def machine() -> dict[str, Any]:
    """Describe the machine and the software the figures were measured with."""
    memory = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 2**20, 1)
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "oupsish": _version("oupsish"),
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "fastparquet": _version("fastparquet"),
        "pyarrow_cpu_count": pa.cpu_count(),
        "pyarrow_io_threads": pa.io_thread_count(),
        "memory_pool": pa.default_memory_pool().backend_name,
        "load_avg_start": os.getloadavg(),
    }


def save(
    recorder: Recorder, info: dict[str, Any], config: dict[str, Any], out: Path, mode: str
) -> tuple[Path, Path]:
    """Write ``results-<date>-<mode>.json`` and ``.md`` under ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"results-{dt.date.today().isoformat()}-{mode}"
    document = {
        "machine": info,
        "config": config,
        "results": [{**asdict(row), "ratio": row.ratio} for row in recorder.rows],
        "details": recorder.details,
        "notes": recorder.notes,
        "tables": recorder.tables,
        "seconds": recorder.seconds,
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    run_steal = _steal_text(info)
    lines = [
        f"# oupsish benchmarks — {mode} run, {info['date']}",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, {info['os']}",
        f"- Python {info['python']}, oupsish {info['oupsish']}, pyarrow {info['pyarrow']}, "
        f"pandas {info['pandas']}, numpy {info['numpy']}, fastparquet {info['fastparquet']}",
        f"- File system of the work directory: {_filesystem_text(info.get('filesystem', {}))}",
        f"- Scale: {config['rows']:,} rows (factor {config['factor']:g} of the issue's 10M), "
        f"repeats {config['repeats']} (medians); load average at start "
        f"{_loads(info['load_avg_start'])}, at end {_loads(info.get('load_avg_end'))}"
        + (f"; {run_steal} over the run" if run_steal else ""),
        "- Ratio = oupsish / raw pyarrow, both measured in this run "
        "(for times, below 1 is better; for rates, above 1 is better).",
        "",
    ]
    titles = config.get("titles", {})
    for scenario in dict.fromkeys(row.scenario for row in recorder.rows):
        lines.append(f"## {scenario}: {titles.get(scenario, '')}".rstrip(": "))
        lines.append("")
        rows = [row.cells() for row in recorder.scenario_rows(scenario)]
        lines.append(render(HEADER, rows, markdown=True))
        for header, extra in recorder.tables.get(scenario, []):
            lines.extend(["", render(header, extra, markdown=True)])
        steal = _steal_text(recorder.details.get(scenario, {}))
        notes = [
            *recorder.notes.get(scenario, []),
            *([f"During this scenario: {steal}."] if steal else []),
        ]
        lines.extend(["", *[f"- {text}" for text in notes]])
        lines.append("")
    md_path = out / f"{stem}.md"
    md_path.write_text("\n".join(lines).rstrip() + "\n")
    return json_path, md_path


def _loads(values: Any) -> str:
    if not values:
        return "?"
    return "/".join(f"{value:.2f}" for value in values)
