"""The benchmark suite still runs: a tiny-scale pass of some scenarios (figures not checked).

Benchmarks are never timed tests; this only keeps ``benchmarks/run.py`` from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_quick(out: Path, only: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "benchmarks/run.py",
        "--quick",
        "--scale",
        "20000",
        "--only",
        only,
        "--out",
        str(out),
        "--tmp",
        str(out),
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_scenarios_run_and_save_their_figures(tmp_path: Path) -> None:
    done = run_quick(tmp_path, "append,live_append,read,intersections")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [saved] = tmp_path.glob("results-*-quick.json")
    results = json.loads(saved.read_text())
    scenarios = {row["scenario"] for row in results["results"]}
    assert scenarios == {"append", "live_append", "read", "intersections"}
    assert all(row["oupsish"] is not None for row in results["results"])
    markdown = (tmp_path / saved.name.replace(".json", ".md")).read_text()
    assert markdown.count("| metric |") == 4
    # Peak RSS is the median of one fresh process per repeat, every run's peak kept.
    memory = results["details"]["intersections"]["memory"]["oupsish"]
    assert len(memory["peaks"]) == results["config"]["repeats"]
    assert memory["peak_over_start"] == sorted(memory["peaks"])[len(memory["peaks"]) // 2]
    if sys.platform.startswith("linux"):  # the disk the durable figures depend on
        assert results["machine"]["filesystem"]["mount"] in str(tmp_path.resolve())
        assert f"File system of the work directory: {results['machine']['filesystem']['type']}" in (
            markdown
        )
        # The CPU time the host took (a virtual machine's steal) is shown next to the figures.
        steals = [results["details"][name]["host_steal"] for name in scenarios]
        assert all(0.0 <= share <= 1.0 for share in steals)
        assert markdown.count("- During this scenario: host steal ") == 4
        assert "of CPU time over the run" in markdown


@pytest.mark.parametrize(
    ("rows", "expected"),
    [(10_000_000, (100_000, 100)), (500_000, (100_000, 5)), (20_000, (20_000, 1))],
)
def test_smaller_runs_append_fewer_chunks_of_the_full_runs_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int, expected: tuple[int, int]
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.common import Context, Recorder

    ctx = Context(rows, True, 1, tmp_path, tmp_path, Recorder())
    assert ctx.batches(100_000, 100) == expected


@pytest.mark.slow
def test_every_scenario_runs(tmp_path: Path) -> None:
    done = run_quick(
        tmp_path, "append,live_append,insert,read,intersections,metadata,streaming,codecs"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
