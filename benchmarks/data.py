"""The benchmarks' synthetic data: numpy and pandas only.

Kept apart from ``common`` so that ``predecessor.py`` can build the same frames in an
interpreter that has the predecessor (``oups``) but neither oupsish nor pyarrow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

T0 = np.datetime64("2020-01-01T00:00:00", "ns")
ORDERED_ON = "timestamp"
VALUE_COLUMNS = ("a", "b", "c", "d")
COLUMNS = (ORDERED_ON, *VALUE_COLUMNS, "n")


def make_frame(start_row: int, n_rows: int, *, seed: int = 0, offset_ms: int = 0) -> pd.DataFrame:
    """Return rows ``[start_row, start_row + n_rows)`` of a synthetic ordered series.

    Row ``r`` is stamped ``T0 + r seconds + jitter`` with a jitter of 0-999 whole
    milliseconds, so timestamps are strictly increasing within a frame and across frames
    of consecutive rows; ``offset_ms`` shifts a whole series. Values are seeded by
    ``(seed, start_row)``: the same call always returns the same frame.
    """
    rng = np.random.default_rng([seed, start_row])
    rows = np.arange(start_row, start_row + n_rows, dtype=np.int64)
    ms = rows * 1000 + rng.integers(0, 1000, n_rows) + offset_ms
    data: dict[str, Any] = {ORDERED_ON: T0 + ms.astype("timedelta64[ms]")}
    for column in VALUE_COLUMNS:
        data[column] = rng.standard_normal(n_rows)
    data["n"] = rng.integers(0, 1_000_000, n_rows)
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


def row_time(row: float, *, offset_ms: int = 0) -> pd.Timestamp:
    """Return the time at which row ``row`` starts (before its jitter)."""
    time: pd.Timestamp = pd.Timestamp(T0 + np.timedelta64(int(row * 1000) + offset_ms, "ms"))
    return time


def chunks(
    n_chunks: int, chunk_rows: int, *, seed: int = 0, first_row: int = 0
) -> list[pd.DataFrame]:
    """Return consecutive frames of ``chunk_rows`` rows."""
    return [make_frame(first_row + i * chunk_rows, chunk_rows, seed=seed) for i in range(n_chunks)]
