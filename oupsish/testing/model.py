"""The reference model of a dataset: plain pandas."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import pandas as pd

__all__ = ["ReferenceModel", "assert_same_rows"]


class ReferenceModel:
    """What an ordered dataset holds, computed with pandas only.

    The model is exact when every write of a sequence uses the same ``duplicates_on``
    (then stored rows never hold duplicates, so deduplicating "the row groups new rows
    overlap" and deduplicating everything agree).

    Parameters
    ----------
    ordered_on : str
        The column rows are ordered on.
    """

    def __init__(self, ordered_on: str) -> None:
        self.ordered_on = ordered_on
        self.frame: pd.DataFrame | None = None

    def write(
        self, df: pd.DataFrame, duplicates_on: str | Sequence[Hashable] | None = None
    ) -> None:
        """Apply one write."""
        subset = self._subset(df, duplicates_on)
        new = df if subset is None else df.drop_duplicates(subset=subset, keep="last")
        parts = [part for part in (self.frame, new) if part is not None and len(part)]
        if not parts:
            return
        combined = pd.concat(parts, ignore_index=True)
        combined = combined.sort_values(self.ordered_on, kind="stable", ignore_index=True)
        if subset is not None:
            combined = combined.drop_duplicates(subset=subset, keep="last", ignore_index=True)
        self.frame = combined

    def _subset(
        self, df: pd.DataFrame, duplicates_on: str | Sequence[Hashable] | None
    ) -> list[Hashable] | None:
        if duplicates_on is None:
            return None
        names: list[Hashable] = (
            [duplicates_on] if isinstance(duplicates_on, str) else list(duplicates_on)
        )
        if not names:
            return list(df.columns)
        return names if self.ordered_on in names else [*names, self.ordered_on]

    def between(self, start: object = None, end_excl: object = None) -> pd.DataFrame:
        """Return the rows with ``start <= ordered_on < end_excl``."""
        rows: pd.DataFrame
        if self.frame is None:
            rows = pd.DataFrame()
            return rows
        values = self.frame[self.ordered_on]
        mask = pd.Series(True, index=self.frame.index)
        if start is not None:
            mask &= values >= start
        if end_excl is not None:
            mask &= values < end_excl
        rows = self.frame.loc[mask].reset_index(drop=True)
        return rows


def assert_same_rows(actual: pd.DataFrame | None, expected: pd.DataFrame | None) -> None:
    """Assert two frames hold the same rows in the same order (``None`` means no rows)."""
    actual_rows = 0 if actual is None else len(actual)
    expected_rows = 0 if expected is None else len(expected)
    assert actual_rows == expected_rows, f"{actual_rows} rows, expected {expected_rows}"
    if actual_rows == 0:
        return
    assert actual is not None and expected is not None
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )
