"""The planner, without any file: windows and splits from statistics only."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oupsish.plan import (
    PeriodTarget,
    RowCountTarget,
    Window,
    make_room_before_first,
    make_target,
    plan_windows,
)


def plan(
    mins: list[int],
    maxs: list[int],
    n_rows: list[int],
    new: list[int],
    dedup: bool = False,
    target: int = 10,
    max_off: int | None = None,
) -> list[Window]:
    return plan_windows(
        np.array(mins),
        np.array(maxs),
        np.array(n_rows),
        np.array(new),
        drop_duplicates=dedup,
        target=RowCountTarget(target),
        max_n_off_target_rgs=max_off,
    )


def test_append_touches_nothing() -> None:
    assert plan([0, 10], [9, 19], [10, 10], [20, 21]) == [Window(2, 2, 0, 2)]


def test_value_equal_to_last_max_is_appended_without_dedup() -> None:
    assert plan([0, 10], [9, 19], [10, 10], [19, 20]) == [Window(2, 2, 0, 2)]


def test_value_equal_to_last_max_merges_with_dedup() -> None:
    assert plan([0, 10], [9, 19], [10, 10], [19, 20], dedup=True) == [Window(1, 2, 0, 2)]


def test_insert_inside_one_row_group() -> None:
    assert plan([0, 10, 20], [9, 19, 29], [10, 10, 10], [15]) == [Window(1, 2, 0, 1)]


def test_rows_between_row_groups_form_their_own_window() -> None:
    assert plan([0, 20], [9, 29], [10, 10], [12, 15]) == [Window(1, 1, 0, 2)]


def test_gap_rows_next_to_a_touched_group_join_its_window() -> None:
    assert plan([0, 20], [9, 29], [10, 10], [5, 12]) == [Window(0, 1, 0, 2)]


def test_separate_windows_when_an_untouched_group_lies_between() -> None:
    windows = plan([0, 10, 20], [9, 19, 29], [10, 10, 10], [5, 25])
    assert windows == [Window(0, 1, 0, 1), Window(2, 3, 1, 2)]


def test_shared_boundary_value_goes_after_existing_equal_values() -> None:
    # [0, 1] [1, 1] [1, 2]: a new 1 goes inside the last group (after every stored 1).
    assert plan([0, 1, 1], [1, 1, 2], [2, 2, 2], [1]) == [Window(2, 3, 0, 1)]
    # With dedup, every group holding a 1 may hold its duplicate.
    assert plan([0, 1, 1], [1, 1, 2], [2, 2, 2], [1], dedup=True) == [Window(0, 3, 0, 1)]


def test_coalescing_trailing_off_target_groups() -> None:
    # Target 10: the last group (3 rows) is off target; one more small write makes 2 > 1.
    assert plan([0, 10], [9, 12], [10, 3], [13, 14], max_off=1) == [Window(1, 2, 0, 2)]
    # With 2 allowed, the small write is appended on its own.
    assert plan([0, 10], [9, 12], [10, 3], [13, 14], max_off=2) == [Window(2, 2, 0, 2)]
    # 0 behaves like 1.
    assert plan([0, 10], [9, 12], [10, 3], [13, 14], max_off=0) == [Window(1, 2, 0, 2)]
    # Without coalescing, never.
    assert plan([0, 10], [9, 12], [10, 3], [13, 14]) == [Window(2, 2, 0, 2)]


def test_coalescing_completes_a_row_group_rather_than_burying_a_small_one() -> None:
    assert plan([0], [3], [4], list(range(4, 14)), max_off=3) == [Window(0, 1, 0, 10)]


def test_an_on_target_group_is_completed_only_with_one_off_target_group_allowed() -> None:
    # Target 10: 9 rows are on target (>= 8). With max_off=1 the last group is completed
    # first; with more allowed, it stays as it is and the new row starts a group.
    assert plan([0], [8], [9], [9], max_off=1) == [Window(0, 1, 0, 1)]
    assert plan([0], [8], [9], [9], max_off=2) == [Window(1, 1, 0, 1)]
    # An off-target group is still merged when that completes a row group.
    assert plan([0], [6], [7], [7, 8, 9], max_off=2) == [Window(0, 1, 0, 3)]


def test_resizing_without_new_rows() -> None:
    # Two small groups together reach the target: merged; an on-target group is left alone.
    windows = plan([0, 10, 15], [9, 14, 19], [10, 5, 5], [], max_off=1)
    assert windows == [Window(1, 3, 0, 0)]
    assert plan([0, 10], [9, 19], [10, 10], [], max_off=1) == []


def test_room_before_first() -> None:
    assert make_room_before_first([Window(0, 0, 0, 3)]) == [Window(0, 1, 0, 3)]
    merged = make_room_before_first([Window(0, 0, 0, 3), Window(1, 2, 3, 4)])
    assert merged == [Window(0, 2, 0, 4)]
    assert make_room_before_first([Window(1, 1, 0, 3)]) == [Window(1, 1, 0, 3)]


def _never() -> np.ndarray:
    raise AssertionError("a row-count target splits by the count alone")


def test_row_count_split() -> None:
    assert RowCountTarget(4).split_offsets(10, _never).tolist() == [4, 8]
    assert RowCountTarget(4).split_offsets(4, _never).tolist() == []


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_period_split_for_every_unit(unit: str) -> None:
    values = np.array(
        ["2024-01-01T10", "2024-01-01T23", "2024-01-02T00", "2024-01-05T01"],
        dtype=f"datetime64[{unit}]",
    )
    assert PeriodTarget("1D").split_offsets(len(values), lambda: values).tolist() == [2, 3]
    assert PeriodTarget("MS").split_offsets(len(values), lambda: values).tolist() == []


def test_period_split_follows_the_local_calendar() -> None:
    # 23:30 UTC on Jan 1 is 00:30 on Jan 2 in Paris.
    values = np.array(["2024-01-01T22:00", "2024-01-01T23:30"], dtype="datetime64[us]")
    paris = PeriodTarget("1D", tz="Europe/Paris")
    assert paris.split_offsets(len(values), lambda: values).tolist() == [1]
    assert PeriodTarget("1D").split_offsets(len(values), lambda: values).tolist() == []


@pytest.mark.parametrize("bad", [0, -5, True, "nonsense", 1.5, None])
def test_invalid_targets(bad: object) -> None:
    with pytest.raises(ValueError, match="row_group_target_size"):
        make_target(bad)


@st.composite
def stats_and_values(draw: st.DrawFn) -> Any:
    n_rgs = draw(st.integers(0, 6))
    edges = sorted(draw(st.lists(st.integers(0, 40), min_size=2 * n_rgs, max_size=2 * n_rgs)))
    mins, maxs = np.array(edges[0::2], dtype=np.int64), np.array(edges[1::2], dtype=np.int64)
    n_rows = np.array(draw(st.lists(st.integers(1, 12), min_size=n_rgs, max_size=n_rgs)))
    new = np.array(sorted(draw(st.lists(st.integers(0, 42), max_size=15))), dtype=np.int64)
    return mins, maxs, n_rows.astype(np.int64), new


@given(stats_and_values(), st.booleans(), st.sampled_from([None, 0, 1, 2]))
def test_windows_cover_every_new_row_and_every_row_group_they_must(
    data: Any, dedup: bool, max_off: int | None
) -> None:
    mins, maxs, n_rows, new = data
    windows = plan_windows(
        mins,
        maxs,
        n_rows,
        new,
        drop_duplicates=dedup,
        target=RowCountTarget(8),
        max_n_off_target_rgs=max_off,
    )
    # Disjoint, ordered, and together they hold every new row exactly once.
    position = 0
    for window in windows:
        assert window.rg_start <= window.rg_end
        assert window.new_start == position or window.n_new == 0
        position = window.new_end if window.n_new else position
    assert position == len(new)
    for first, second in itertools.pairwise(windows):
        assert first.rg_end <= second.rg_start
    covered = np.zeros(len(mins), dtype=bool)
    for window in windows:
        covered[window.rg_start : window.rg_end] = True
    for window in windows:
        for value in new[window.new_start : window.new_end]:
            for i in range(len(mins)):
                inside = mins[i] <= value < maxs[i] if not dedup else mins[i] <= value <= maxs[i]
                if inside:
                    assert window.rg_start <= i < window.rg_end
            # Rows left outside row groups land between the window's neighbours.
            if window.rg_start > 0:
                before = maxs[window.rg_start - 1]
                assert before < value if dedup else before <= value
            if window.rg_end < len(mins):
                assert value < mins[window.rg_end]
