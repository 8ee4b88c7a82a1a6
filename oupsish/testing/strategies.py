"""Hypothesis strategies for frames and write sequences (requires ``hypothesis``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from hypothesis import strategies as st

__all__ = ["WriteStep", "ordered_frames", "write_sequences"]


@st.composite
def ordered_frames(
    draw: st.DrawFn, *, min_rows: int = 0, max_rows: int = 30, span: int = 60
) -> pd.DataFrame:
    """Draw a frame sorted on ``ts`` (int64 in ``[0, span)``, with repeats) plus values.

    Small spans make equal values, shared row-group boundaries and duplicates common.
    """
    n = draw(st.integers(min_rows, max_rows))
    ts = sorted(draw(st.lists(st.integers(0, span - 1), min_size=n, max_size=n)))
    key = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    values = draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))
    frame: pd.DataFrame = pd.DataFrame(
        {
            "ts": np.asarray(ts, dtype=np.int64),
            "key": np.asarray(key, dtype=np.int64),
            "value": np.asarray(values, dtype=np.float64),
        }
    )
    return frame


@dataclass(frozen=True)
class WriteStep:
    """One write of a sequence."""

    df: pd.DataFrame
    row_group_target_size: int
    max_n_off_target_rgs: int | None


@st.composite
def write_sequences(
    draw: st.DrawFn, *, min_writes: int = 1, max_writes: int = 6
) -> tuple[list[WriteStep], list[str] | None]:
    """Draw writes (mixed sizes, targets and coalescing) and one ``duplicates_on`` for all."""
    duplicates_on = draw(st.sampled_from([None, ["key"], []]))
    steps = [
        WriteStep(
            df=draw(ordered_frames()),
            row_group_target_size=draw(st.integers(1, 12)),
            max_n_off_target_rgs=draw(st.sampled_from([None, 0, 1, 2, 3])),
        )
        for _ in range(draw(st.integers(min_writes, max_writes)))
    ]
    return steps, duplicates_on
