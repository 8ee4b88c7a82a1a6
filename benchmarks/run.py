"""Run the oupsish benchmark suite against raw pyarrow.

Usage::

    python benchmarks/run.py [--quick] [--scale ROWS] [--out DIR] [--only a,b] [--profile]

Each scenario prints a table (oupsish figure, raw pyarrow figure measured in the same run,
ratio, issue-4 target); the whole run is saved as ``results-<date>-<quick|full>.json`` and
``.md`` under ``--out`` (``benchmarks/results/`` by default).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    FULL_ROWS,
    QUICK_ROWS,
    Context,
    Recorder,
    cpu_ticks,
    filesystem,
    fmt,
    machine,
    save,
    settle,
    steal_share,
)
from benchmarks.scenarios import SCENARIOS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [module.NAME for module in SCENARIOS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"small scale ({QUICK_ROWS:,} rows), fewer repeats"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=None,
        metavar="ROWS",
        help=f"rows of the main dataset (default {FULL_ROWS:,}; {QUICK_ROWS:,} with --quick); "
        "the numbers of appended chunks and of files written follow it, their sizes stay; "
        "other sizes follow in proportion",
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (median)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="folder for results-<date>-<mode>.json/.md (default benchmarks/results/)",
    )
    parser.add_argument(
        "--only", default=None, help=f"comma-separated scenarios among: {', '.join(names)}"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile oupsish's side of each scenario with pyinstrument (text under OUT/profiles)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary data")
    parser.add_argument(
        "--oups-python",
        default=None,
        metavar="PYTHON",
        help="a Python with the predecessor (pip install oups==2025.12.1, Python 3.13): "
        "appends and live appends are also measured with it, in the same run",
    )
    args = parser.parse_args(argv)
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(names))
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; choose among {names}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = args.scale or (QUICK_ROWS if args.quick else FULL_ROWS)
    repeats = args.repeats or (1 if args.quick else 3)
    mode = "quick" if args.quick else "full"
    selected = [
        module for module in SCENARIOS if args.only is None or module.NAME in args.only.split(",")
    ]
    info = machine()
    print(
        f"oupsish benchmarks ({mode}): {rows:,} rows, {repeats} repeat(s); "
        f"{info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB; python {info['python']}, "
        f"pyarrow {info['pyarrow']}, pandas {info['pandas']}, numpy {info['numpy']}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    recorder = Recorder()
    tmp = Path(tempfile.mkdtemp(prefix="oupsish-bench-", dir=args.tmp))
    info["filesystem"] = filesystem(tmp)
    failed = []
    begin, begin_ticks = time.perf_counter(), cpu_ticks()
    try:
        ctx = Context(
            rows, args.quick, repeats, tmp, args.out, recorder, args.profile, args.oups_python
        )
        for module in selected:
            settle()
            start, load, ticks = time.perf_counter(), os.getloadavg()[0], cpu_ticks()
            try:
                module.run(ctx)
            except Exception:
                failed.append(module.NAME)
                recorder.note(module.NAME, "FAILED: " + traceback.format_exc(limit=3))
                traceback.print_exc()
            recorder.seconds[module.NAME] = time.perf_counter() - start
            recorder.detail(
                module.NAME,
                load_avg_1min=[load, os.getloadavg()[0]],
                host_steal=steal_share(ticks, cpu_ticks()),
            )
            recorder.print_scenario(module.NAME, module.TITLE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["load_avg_end"] = os.getloadavg()
    info["host_steal"] = steal_share(begin_ticks, cpu_ticks())
    info["total_seconds"] = round(time.perf_counter() - begin, 1)
    config = {
        "mode": mode,
        "rows": rows,
        "factor": rows / FULL_ROWS,
        "repeats": repeats,
        "scenarios": [module.NAME for module in selected],
        "titles": {module.NAME: module.TITLE for module in selected},
        "argv": sys.argv[1:] if argv is None else argv,
    }
    json_path, md_path = save(recorder, info, config, args.out, mode)
    targets = [row for row in recorder.rows if row.met is not None]
    missed = [row for row in targets if not row.met]
    print(
        f"\n{len(targets) - len(missed)}/{len(targets)} targets met in "
        f"{info['total_seconds']:.0f} s; results: {json_path}, {md_path}"
    )
    if rows != FULL_ROWS:
        print(
            f"  (at {rows:,} rows the datasets, row groups and memory jobs are smaller than "
            "the targets assume: they are judged on full runs)"
        )
    for row in missed:
        ratio = row.ratio
        shown = f"value {fmt(row.oupsish, row.unit)}" if ratio is None else f"ratio {ratio:.2f}"
        print(f"  missed: {row.scenario}: {row.metric} ({shown}, target {row.target})")
    if failed:
        print(f"FAILED scenarios: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
