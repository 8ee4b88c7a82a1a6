"""Writers killed by SIGKILL at every step of a write, and at random instants.

Each trial (see :mod:`oupsish.testing.crash`) has a child process perform a random write
and die; the dataset must then open, read as exactly the state before or after that write
(rows and key-value metadata alike), have metadata statistics matching its files, and
accept the next write, which must leave no stray file. The soak version of these tests is
``tests/soak/soak_crash.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oupsish import faults
from oupsish.testing.crash import (
    KILL_POINTS,
    MID_DATA_FILE,
    MID_METADATA_FILE,
    RANDOM,
    CrashHarness,
    TrialResult,
    tally,
)

# Where the dataset must read as before the write, and where as after: the rename of the
# metadata file (between "before_replace" and "after_replace") is the commit point, and
# faults.STEPS lists the steps in the order a write passes them.
AFTER_COMMIT = set(faults.STEPS[faults.STEPS.index("after_replace") :])
BEFORE_COMMIT = set(faults.STEPS) - AFTER_COMMIT | {MID_DATA_FILE, MID_METADATA_FILE}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashHarness]:
    with CrashHarness(tmp_path_factory.mktemp("crash"), seed=20_240_601) as crash_harness:
        yield crash_harness


def assert_ok(result: TrialResult) -> None:
    assert result.ok, f"{result.label} #{result.occurrence}/{result.occurrences}: {result.problems}"


def test_every_step_is_a_kill_point() -> None:
    assert {"after_data_file", "before_metadata", "before_replace"} <= BEFORE_COMMIT
    assert {"after_metadata", "after_superseded_removal"} <= AFTER_COMMIT
    assert set(KILL_POINTS) == BEFORE_COMMIT | AFTER_COMMIT


@pytest.mark.parametrize("fsync", [True, False], ids=["durable", "fsync=False"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_step(harness: CrashHarness, point: str, fsync: bool) -> None:
    """Without fsync (the opt-in), a killed process still leaves one state or the other."""
    dataset = harness.new_dataset(n_setup=2, fsync=fsync)
    if point == "after_leftover_removal":
        # Leave leftovers (placed but uncommitted files) for the next writer to clean up.
        first = harness.trial_at(dataset, "after_data_file_placed", recover=False)
        assert_ok(first)
        assert first.leftovers
    result = harness.trial_at(dataset, point)
    assert_ok(result)
    assert result.killed
    assert result.label == point
    expected = "before" if point in BEFORE_COMMIT else "after"
    assert result.outcome in (expected, "same")
    assert result.recovered
    assert not result.stray_files


@pytest.mark.parametrize("point", ["after_data_file", "after_data_file_placed"])
def test_kill_after_first_and_last_of_many_data_files(harness: CrashHarness, point: str) -> None:
    dataset = harness.new_dataset(n_setup=1)
    for _ in range(40):
        spec = dataset.random_write(harness.rng)
        census = harness.census(dataset, spec)
        if census.occurrences(point) >= 3:
            break
    else:
        pytest.fail(f"no write of {dataset} makes 3 data files")
    n_files = census.occurrences(point)
    for occurrence in (1, n_files):  # the second kill meets the leftovers of the first
        result = harness.trial(
            dataset, point, occurrence=occurrence, spec=spec, census=census, recover=occurrence > 1
        )
        assert_ok(result)
        assert result.killed
        assert result.outcome in ("before", "same")
    assert result.recovered and not result.stray_files


@pytest.mark.parametrize("point", ["after_data_file_placed", "after_replace"])
def test_kill_during_first_write(harness: CrashHarness, point: str) -> None:
    dataset = harness.new_dataset(n_setup=0)
    result = harness.trial_at(dataset, point)
    assert_ok(result)
    assert result.kind == "first"
    assert result.outcome == ("after" if point in AFTER_COMMIT else "before")


@pytest.mark.parametrize("trial", range(20))
def test_kill_at_random_instant(harness: CrashHarness, trial: int) -> None:
    dataset = harness.new_dataset()
    result = harness.trial(dataset, RANDOM)
    assert_ok(result)
    assert result.outcome in ("before", "after", "same")


@pytest.mark.slow
def test_soak_chained_kills(tmp_path: Path) -> None:
    """Chains of up to three kills per dataset, half at steps, half at random instants."""
    results: list[TrialResult] = []
    with CrashHarness(tmp_path, seed=7) as crash_harness:
        while len(results) < 200:
            dataset = crash_harness.new_dataset()
            for index in range(3):
                point = RANDOM if crash_harness.rng.random() < 0.5 else "step"
                result = crash_harness.trial(dataset, point, recover=index == 2)
                results.append(result)
                assert_ok(result)
    summary = tally(results)
    assert summary["lost_rows"] == summary["duplicated_rows"] == 0
    assert summary["unreadable_datasets"] == summary["stray_files_after_next_write"] == 0
