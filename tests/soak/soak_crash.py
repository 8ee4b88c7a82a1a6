"""Soak the crash harness: thousands of randomized kill trials, then a tally.

Each trial has a child process perform a random write (append, insert into the past,
overlap, rows before the first, metadata only; with and without ``duplicates_on``, with
coalescing, with key-value metadata) and die by SIGKILL, either at a step of the write
drawn among those it passes (at a random occurrence: "after 3 of 7 data files", inside a
half-written file...) or at a random instant. After each kill the dataset must read as
exactly the state before or after the write, its metadata must match its files, and the
next write must succeed and leave no stray file. Trials are chained on a dataset (up to
three kills in a row, so that some kills hit the clean-up of an earlier one).

Usage::

    python tests/soak/soak_crash.py --trials 1000 [--workers 2] [--seed 1] [--json out.json]

Exits with status 1 if any trial finds a problem.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from oupsish.testing.crash import RANDOM, CrashHarness, TrialResult, tally


def run_chunk(chunk: int, n_trials: int, seed: int, root: str) -> list[TrialResult]:
    """Run ``n_trials`` trials in chains on fresh datasets; keep the datasets that failed."""
    results: list[TrialResult] = []
    with CrashHarness(Path(root) / f"chunk{chunk}", seed) as harness:
        rng = harness.rng
        while len(results) < n_trials:
            dataset = harness.new_dataset()
            chain = int(rng.integers(1, 4))
            for index in range(chain):
                last = index == chain - 1 or len(results) + 1 >= n_trials
                point = RANDOM if rng.random() < 0.5 else "step"
                result = harness.trial(dataset, point, recover=last or bool(rng.random() < 0.5))
                results.append(result)
                if not result.ok or last:
                    break
            if all(result.ok for result in results):
                shutil.rmtree(dataset.folder.parent, ignore_errors=True)
    return results


def print_tally(summary: dict[str, Any], elapsed: float) -> None:
    """Print the tally, one figure a line."""
    print(f"trials: {summary['trials']} in {elapsed:.0f} s")
    print(f"killed by SIGKILL: {summary['killed']}")
    print("kills per point:")
    for label, count in summary["kills_per_point"].items():
        print(f"  {label:<44} {count}")
    print(f"outcomes: {summary['outcomes']}")
    print(f"write kinds: {summary['write_kinds']}")
    print(f"trials with fsync=False: {summary['fsync_false_trials']}")
    for name in (
        "lost_rows",
        "duplicated_rows",
        "unreadable_datasets",
        "leftovers_found_after_kill",
        "recovery_writes",
        "stray_files_after_next_write",
        "failed_trials",
    ):
        print(f"{name.replace('_', ' ')}: {summary[name]}")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; return 0 if every trial passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=25, help="trials per task")
    parser.add_argument("--root", help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", help="also save the tally and failures to this file")
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="oupsish-soak-"))
    sizes = [args.chunk] * (args.trials // args.chunk)
    if args.trials % args.chunk:
        sizes.append(args.trials % args.chunk)
    began = time.monotonic()
    results: list[TrialResult] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        futures = [
            pool.submit(run_chunk, chunk, size, args.seed * 1_000_003 + chunk, str(root))
            for chunk, size in enumerate(sizes)
        ]
        for future in as_completed(futures):
            results += future.result()
            failed = sum(not result.ok for result in results)
            print(
                f"  {len(results)}/{args.trials} trials, {failed} failed, "
                f"{time.monotonic() - began:.0f} s",
                flush=True,
            )
    elapsed = time.monotonic() - began
    summary = tally(results)
    print_tally(summary, elapsed)
    failures = [result for result in results if not result.ok]
    for result in failures[:10]:
        print(f"FAILED {result.label} #{result.occurrence} ({result.kind}): {result.problems}")
    if args.json:
        document = {
            "tally": summary,
            "elapsed_s": elapsed,
            "failures": [
                {"label": r.label, "kind": r.kind, "problems": r.problems} for r in failures
            ],
        }
        Path(args.json).write_text(json.dumps(document, indent=2))
    if not failures:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"datasets of failed trials kept under {root}")
    ok = not failures and summary["trials"] >= args.trials
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
