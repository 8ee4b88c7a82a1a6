"""Write planning: which row groups a write merges and where merged rows are split.

Everything here is pure: functions of the row-group statistics (``mins``, ``maxs``,
``n_rows``) and of the new rows' ``ordered_on`` values, returning frozen records. The writer
executes them; the tests check them against a pandas model without touching a file.

Vocabulary
----------
window
    A contiguous run of existing row groups ``[rg_start, rg_end)`` (possibly empty: a pure
    insertion before ``rg_start``) merged with the new rows ``[new_start, new_end)``. The
    merged rows replace those row groups; row groups outside every window are not read.
off-target row group
    With a row-count target: fewer rows than 80% of the target, or more than the target.
    With a period target: a row group spanning several periods, or sharing its period with
    a neighbour.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "DEFAULT_ROW_GROUP_TARGET_SIZE",
    "PeriodTarget",
    "RowCountTarget",
    "Target",
    "Window",
    "make_room_before_first",
    "make_target",
    "plan_windows",
]

DEFAULT_ROW_GROUP_TARGET_SIZE = 6_345_000
ON_TARGET_FRACTION = 0.8

Values = npt.NDArray[Any]


@dataclass(frozen=True)
class Window:
    """Existing row groups ``[rg_start, rg_end)`` merged with new rows ``[new_start, new_end)``."""

    rg_start: int
    rg_end: int
    new_start: int
    new_end: int

    @property
    def n_new(self) -> int:
        """Number of new rows merged in this window."""
        return self.new_end - self.new_start


@dataclass(frozen=True)
class RowCountTarget:
    """Row groups of ``rows`` rows."""

    rows: int

    @property
    def min_on_target(self) -> int:
        """Fewest rows a row group may hold and still be on target."""
        return max(1, int(ON_TARGET_FRACTION * self.rows))

    def off_target(self, n_rows: Values, mins: Values, maxs: Values) -> npt.NDArray[np.bool_]:
        """Return which row groups are off target."""
        return (n_rows < self.min_on_target) | (n_rows > self.rows)

    def split_offsets(self, n_rows: int, values: Callable[[], Values]) -> npt.NDArray[np.int64]:
        """Return the row offsets (after 0) where ``n_rows`` merged rows start a new row group.

        The count alone decides: ``values`` is not called.
        """
        return np.arange(self.rows, n_rows, self.rows, dtype=np.int64)


@dataclass(frozen=True)
class PeriodTarget:
    """One row group per period of a pandas frequency (``"1D"``, ``"MS"``...).

    ``tz`` is the column's timezone: values are UTC instants and periods follow the local
    calendar there.
    """

    freq: str
    tz: str | None = None

    def period_codes(self, *arrays: Values) -> list[npt.NDArray[np.int64]]:
        """Return, for each array of datetime64 values, the index of each value's period.

        Codes are comparable across the arrays of one call.
        """
        wall = [self._wall_time(values) for values in arrays]
        offset = pd.tseries.frequencies.to_offset(self.freq)
        if isinstance(offset, pd.offsets.Tick):
            return [self._tick_codes(values, offset) for values in wall]
        non_empty = [values for values in wall if len(values)]
        if not non_empty:
            return [np.zeros(0, dtype=np.int64) for _ in wall]
        first = min(values.min() for values in non_empty)
        last = max(values.max() for values in non_empty)
        start = offset.rollback(pd.Timestamp(first).normalize())
        bounds = pd.date_range(start, pd.Timestamp(last), freq=offset)
        bound_values = bounds.to_numpy().astype(non_empty[0].dtype)
        return [
            (np.searchsorted(bound_values, values, side="right") - 1).astype(np.int64)
            for values in wall
        ]

    def _wall_time(self, values: Values) -> Values:
        if self.tz is None or len(values) == 0:
            return values
        local = pd.DatetimeIndex(values).tz_localize("UTC").tz_convert(self.tz)
        wall: Values = local.tz_localize(None).to_numpy().astype(values.dtype)
        return wall

    @staticmethod
    def _tick_codes(values: Values, offset: pd.offsets.Tick) -> npt.NDArray[np.int64]:
        unit, _ = np.datetime_data(values.dtype)
        step = np.timedelta64(offset.nanos, "ns").astype(f"timedelta64[{unit}]").astype(np.int64)
        if step <= 0:
            raise ValueError(
                f"row_group_target_size {offset.freqstr!r} is finer than the column's "
                f"resolution ({unit})."
            )
        codes: npt.NDArray[np.int64] = np.floor_divide(values.view(np.int64), step)
        return codes

    def off_target(self, n_rows: Values, mins: Values, maxs: Values) -> npt.NDArray[np.bool_]:
        """Return which row groups span several periods or share one with a neighbour."""
        min_codes, max_codes = self.period_codes(mins, maxs)
        off: npt.NDArray[np.bool_] = min_codes != max_codes
        shared = max_codes[:-1] == min_codes[1:]
        off[:-1] |= shared
        off[1:] |= shared
        return off

    def split_offsets(self, n_rows: int, values: Callable[[], Values]) -> npt.NDArray[np.int64]:
        """Return the row offsets (after 0) where a new period starts.

        ``values()`` returns the ``n_rows`` merged ``ordered_on`` values.
        """
        (codes,) = self.period_codes(values())
        return (np.flatnonzero(codes[1:] != codes[:-1]) + 1).astype(np.int64)


Target = RowCountTarget | PeriodTarget


def make_target(row_group_target_size: object, *, tz: str | None = None) -> Target:
    """Validate ``row_group_target_size`` (rows, or a pandas frequency) into a target.

    Raises
    ------
    ValueError
        If it is not a positive int nor a known pandas frequency.
    """
    if isinstance(row_group_target_size, bool):
        raise ValueError(
            f"row_group_target_size must be a positive int or a pandas frequency string, "
            f"got {row_group_target_size!r}."
        )
    if isinstance(row_group_target_size, int | np.integer):
        if row_group_target_size <= 0:
            raise ValueError(
                f"row_group_target_size must be a positive number of rows, "
                f"got {row_group_target_size}."
            )
        return RowCountTarget(int(row_group_target_size))
    if isinstance(row_group_target_size, str):
        try:
            offset = pd.tseries.frequencies.to_offset(row_group_target_size)
        except ValueError:
            offset = None
        if offset is None or offset.n <= 0:
            raise ValueError(
                f"row_group_target_size {row_group_target_size!r} is not a positive pandas "
                "frequency (such as '1D', '6h', 'MS')."
            )
        return PeriodTarget(row_group_target_size, tz)
    raise ValueError(
        f"row_group_target_size must be a positive int or a pandas frequency string, "
        f"got {type(row_group_target_size).__name__} {row_group_target_size!r}."
    )


def _overlap_windows(
    mins: Values, maxs: Values, new_values: Values, drop_duplicates: bool
) -> list[Window]:
    """Return the windows where new rows must be merged, before any coalescing.

    A new value must be merged into a row group when it would land strictly inside it (so
    that existing rows with equal values stay first), or, when dropping duplicates, when it
    lies within the row group's ``[min, max]`` (it may duplicate one of its rows). Values
    landing between row groups form windows of their own. Row groups next to each other
    and the new rows between them form one window.
    """
    n_new = len(new_values)
    if n_new == 0:
        return []
    if len(mins) == 0:
        return [Window(0, 0, 0, n_new)]
    last_max = maxs[-1]
    if new_values[0] > last_max or (not drop_duplicates and new_values[0] == last_max):
        # A pure append (the common case): no need to place every new value.
        return [Window(len(mins), len(mins), 0, n_new)]
    # first: first row group that does not lie entirely before the value.
    first = np.searchsorted(maxs, new_values, side="left" if drop_duplicates else "right")
    # last: last row group starting at or before the value.
    last = np.searchsorted(mins, new_values, side="right") - 1
    touches = last >= first
    # Positions on the line gap0, rg0, gap1, rg1, ...: gap k is 2k, row group i is 2i + 1.
    start_pos = np.where(touches, 2 * first + 1, 2 * first)
    end_pos = np.where(touches, 2 * last + 1, 2 * first)
    reach = np.maximum.accumulate(end_pos)
    step = start_pos[1:] - reach[:-1]
    # A window ends where an untouched row group lies between two consecutive values.
    breaks = np.flatnonzero((step >= 3) | ((step == 2) & (reach[:-1] % 2 == 0))) + 1
    bounds = [0, *breaks.tolist(), n_new]
    windows = []
    for lo, hi in itertools.pairwise(bounds):
        windows.append(Window(int(start_pos[lo]) // 2, (int(reach[hi - 1]) + 1) // 2, lo, hi))
    return windows


@dataclass(frozen=True)
class _RowGroups:
    """Statistics of the existing row groups, as the planner sees them."""

    mins: Values
    maxs: Values
    n_rows: Values

    def __len__(self) -> int:
        return len(self.n_rows)


def _window_edges(window: Window, rgs: _RowGroups, new_values: Values) -> tuple[Any, Any]:
    firsts, lasts = [], []
    if window.rg_end > window.rg_start:
        firsts.append(rgs.mins[window.rg_start])
        lasts.append(rgs.maxs[window.rg_end - 1])
    if window.n_new:
        firsts.append(new_values[window.new_start])
        lasts.append(new_values[window.new_end - 1])
    return min(firsts), max(lasts)


def _absorbable(
    rgs: _RowGroups,
    windows: Sequence[Window],
    new_values: Values,
    target: Target,
    off: npt.NDArray[np.bool_],
    complete_on_target: bool,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Return which row groups may be absorbed by a window on their right, on their left.

    Off-target row groups always may. With a row-count target and ``complete_on_target``,
    so may an on-target row group short of the target (it is merged only if that completes
    it). With a period target, so may a row group sharing its period with the window next
    to it.
    """
    if isinstance(target, RowCountTarget):
        absorbable = off | (rgs.n_rows < target.rows) if complete_on_target else off
        return absorbable, absorbable.copy()
    left_ok, right_ok = off.copy(), off.copy()
    if windows:
        edges = [_window_edges(w, rgs, new_values) for w in windows]
        edge_firsts = np.array([first for first, _ in edges], dtype=rgs.mins.dtype)
        edge_lasts = np.array([last for _, last in edges], dtype=rgs.maxs.dtype)
        min_codes, max_codes, first_codes, last_codes = target.period_codes(
            rgs.mins, rgs.maxs, edge_firsts, edge_lasts
        )
        for index, window in enumerate(windows):
            before, after = window.rg_start - 1, window.rg_end
            if before >= 0 and max_codes[before] == first_codes[index]:
                left_ok[before] = True
            if after < len(rgs) and min_codes[after] == last_codes[index]:
                right_ok[after] = True
    return left_ok, right_ok


def _is_off_target_output(window: Window, rgs: _RowGroups, target: Target) -> bool:
    if isinstance(target, PeriodTarget):
        return True
    rows = int(rgs.n_rows[window.rg_start : window.rg_end].sum()) + window.n_new
    return rows < target.min_on_target


def _coalesce(
    windows: list[Window],
    rgs: _RowGroups,
    new_values: Values,
    target: Target,
    max_n_off_target_rgs: int,
) -> list[Window]:
    """Extend windows over neighbouring off-target row groups when there are too many.

    Off-target row groups (and, with a row-count target and ``max_n_off_target_rgs``
    of 1, the incomplete last one) next to a window (or, with no new rows, next to each
    other) form a run with it. The run is merged into one window when it holds more than
    ``max_n_off_target_rgs`` off-target pieces, or, with a row-count target, when it has
    enough rows to complete a row group.
    """
    off = target.off_target(rgs.n_rows, rgs.mins, rgs.maxs)
    # With one off-target row group allowed, the last one is completed first. With more,
    # an on-target row group is left as it is: completing it would rewrite it whole (80%
    # of a row group or more) for a few rows, on every write.
    complete_on_target = max_n_off_target_rgs <= 1
    left_ok, right_ok = _absorbable(rgs, windows, new_values, target, off, complete_on_target)
    n_rgs = len(rgs)
    covered = np.zeros(n_rgs, dtype=bool)
    for window in windows:
        covered[window.rg_start : window.rg_end] = True

    # Candidate runs: [rg_lo, rg_hi) with the windows they contain.
    runs: list[tuple[int, int, list[Window]]] = []
    if windows:
        for window in windows:
            lo, hi = window.rg_start, window.rg_end
            while lo > 0 and not covered[lo - 1] and left_ok[lo - 1]:
                lo -= 1
            while hi < n_rgs and not covered[hi] and right_ok[hi]:
                hi += 1
            if runs and lo <= runs[-1][1]:
                prev_lo, _, prev_windows = runs[-1]
                runs[-1] = (prev_lo, hi, [*prev_windows, window])
            else:
                runs.append((lo, hi, [window]))
    else:
        start = None
        for index in range(n_rgs + 1):
            if index < n_rgs and left_ok[index]:
                start = index if start is None else start
            elif start is not None:
                runs.append((start, index, []))
                start = None

    result: list[Window] = []
    for lo, hi, run_windows in runs:
        absorbed = ~covered[lo:hi]
        n_absorbed = int(absorbed.sum())
        # With a period target, a row group absorbed for sharing a window's period would be
        # off target after the write, so it counts too.
        counted = off[lo:hi] if isinstance(target, RowCountTarget) else np.ones(hi - lo, bool)
        n_off = int((counted & absorbed).sum())
        n_off += sum(_is_off_target_output(w, rgs, target) for w in run_windows)
        n_rows = int(rgs.n_rows[lo:hi].sum()) + sum(w.n_new for w in run_windows)
        completes = isinstance(target, RowCountTarget) and n_rows >= target.rows
        if n_absorbed and (n_off > max_n_off_target_rgs or completes):
            new_start = run_windows[0].new_start if run_windows else 0
            new_end = run_windows[-1].new_end if run_windows else 0
            result.append(Window(lo, hi, new_start, new_end))
        else:
            result.extend(run_windows)
    return result


def plan_windows(
    mins: Values,
    maxs: Values,
    n_rows: Values,
    new_values: Values,
    *,
    drop_duplicates: bool,
    target: Target,
    max_n_off_target_rgs: int | None,
) -> list[Window]:
    """Return the windows of a write, in row-group order, disjoint.

    Parameters
    ----------
    mins, maxs, n_rows : numpy.ndarray
        Statistics of the existing row groups, in order (``maxs[i] <= mins[i + 1]``).
    new_values : numpy.ndarray
        ``ordered_on`` values of the new rows, sorted, already free of duplicates when
        ``drop_duplicates``.
    drop_duplicates : bool
        Whether duplicates are dropped, which makes a row group's ``max`` value overlap.
    target : RowCountTarget or PeriodTarget
        The row-group sizing rule.
    max_n_off_target_rgs : int or None
        ``None``: never merge row groups the new rows do not overlap. An int ``n``
        (``0`` behaves like ``1``): merge off-target row groups next to new rows when there
        would be more than ``n`` of them, or when they can complete a row group; with
        ``n = 1``, complete the last row group first, even if on target.

    Returns
    -------
    list of Window
    """
    windows = _overlap_windows(mins, maxs, new_values, drop_duplicates)
    if max_n_off_target_rgs is None or len(n_rows) == 0:
        return windows
    rgs = _RowGroups(mins, maxs, n_rows)
    return _coalesce(windows, rgs, new_values, target, max(1, max_n_off_target_rgs))


def make_room_before_first(windows: list[Window]) -> list[Window]:
    """Merge new rows inserted before the first row group with that row group.

    Used when the first row group's file name leaves no room for a name before it.
    """
    if not windows or windows[0].rg_end != 0:
        return windows
    first = windows[0]
    if len(windows) > 1 and windows[1].rg_start == 1:
        second = windows[1]
        return [Window(0, second.rg_end, first.new_start, second.new_end), *windows[2:]]
    return [Window(0, 1, first.new_start, first.new_end), *windows[1:]]
