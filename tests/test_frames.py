"""Frame to Arrow conversion: the fast path for plain numpy columns matches pyarrow's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oupsish import OrderedParquetDataset
from oupsish.errors import InvalidFrameError
from oupsish.frames import _sorted_without_nulls, check_frame, frame_to_table

COLUMN_KINDS: dict[str, Callable[[np.random.Generator, int], Any]] = {
    "float": lambda rng, n: np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
    "int": lambda rng, n: rng.integers(-5, 5, n),
    "uint8": lambda rng, n: rng.integers(0, 5, n).astype(np.uint8),
    "bool": lambda rng, n: rng.random(n) < 0.5,
    "ns": lambda rng, n: np.where(
        rng.random(n) < 0.2,
        np.datetime64("NaT", "ns"),
        np.datetime64("2024-01-01", "ns") + rng.integers(0, 10**12, n).astype("m8[ns]"),
    ),
    "ms": lambda rng, n: (
        np.datetime64("2024-01-01", "ms") + rng.integers(0, 10**6, n).astype("m8[ms]")
    ),
    "str": lambda rng, n: np.array(["a", "b", None], dtype=object)[rng.integers(0, 3, n)],
    "tz": lambda rng, n: pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC"),
}


def pyarrow_conversion(df: pd.DataFrame, stored: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False).select(stored.names).cast(stored)


@given(
    st.lists(st.sampled_from(sorted(COLUMN_KINDS)), min_size=1, max_size=5),
    st.integers(0, 20),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_conversion_matches_pyarrow(kinds: list[str], n: int, seed: int, reorder: bool) -> None:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"c{i}": COLUMN_KINDS[kind](rng, n) for i, kind in enumerate(kinds)})
    stored = pa.Table.from_pandas(df, preserve_index=False).schema
    if reorder:  # a frame whose columns come in another order than the stored ones
        df = df[df.columns[::-1]]
    table = frame_to_table(df, stored, "ds")
    assert table.schema.equals(stored, check_metadata=True)
    assert table.equals(pyarrow_conversion(df, stored))


@pytest.mark.parametrize(
    ("values", "stored_type"),
    [
        (np.array([0, 1000, 2000], dtype="datetime64[ns]"), pa.timestamp("us")),
        (np.array([0, 1, 2], dtype="datetime64[s]"), pa.timestamp("ns")),
    ],
)
def test_another_timestamp_unit_is_cast(
    values: np.ndarray[Any, Any], stored_type: pa.DataType
) -> None:
    df = pd.DataFrame({"c": values})
    stored = pa.schema([pa.field("c", stored_type)])
    table = frame_to_table(df, stored, "ds")
    assert table.schema.field("c").type == stored_type
    assert table.equals(pyarrow_conversion(df, stored))


def test_conversion_and_checks_without_pandas_column_arrays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path reads pandas' arrays through a private method; without it, the same."""
    rng = np.random.default_rng(7)
    df = pd.DataFrame({kind: make(rng, 50) for kind, make in COLUMN_KINDS.items()})
    df["order"] = np.arange(50)
    stored = pa.Table.from_pandas(df, preserve_index=False).schema
    with_private = frame_to_table(check_frame(df, "order", "ds"), stored, "ds")
    monkeypatch.delattr(pd.DataFrame, "_get_column_array")
    assert frame_to_table(check_frame(df, "order", "ds"), stored, "ds").equals(with_private)
    assert with_private.equals(pyarrow_conversion(df, stored))
    df.loc[3, "order"] = 1
    with pytest.raises(InvalidFrameError, match=r"sorted ascending on 'order'.* row 3"):
        check_frame(df, "order", "ds")


@pytest.mark.parametrize(
    ("values", "clean"),
    [
        pytest.param(np.array([np.iinfo(np.int64).min, 0]), True, id="int64-min-is-a-number"),
        pytest.param(np.array(["NaT", "2024-01-01"], dtype="M8[ns]"), False, id="NaT-first"),
        pytest.param(np.array(["2024-01-01", "NaT"], dtype="M8[ns]"), False, id="NaT-last"),
        pytest.param(np.array(["2024-01-01", "2024-01-01"], dtype="M8[us]"), True, id="equal"),
        pytest.param(np.array([np.nan, 1.0]), False, id="NaN-first"),
        pytest.param(np.array([1.0, 2.0, np.nan]), False, id="NaN-last"),
    ],
)
def test_ordered_column_checks(values: np.ndarray[Any, Any], clean: bool) -> None:
    df = pd.DataFrame({"k": values, "x": np.arange(len(values))})
    if clean:
        assert check_frame(df, "k", "ds") is df
    else:
        with pytest.raises(InvalidFrameError, match="null/NaN/NaT"):
            check_frame(df, "k", "ds")


def test_big_endian_columns_are_written_as_their_values(tmp_path: Path) -> None:
    # pyarrow refuses byte-swapped arrays; pandas keeps them (from FITS or HDF5 files).
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for start in (0, 5):
        ds.write(
            df=pd.DataFrame(
                {
                    "ts": np.arange(start, start + 5, dtype=">i8"),
                    "x": np.arange(start, start + 5, dtype=">f8") / 2,
                }
            )
        )
    result = ds.to_pandas()
    assert result is not None
    assert result["ts"].tolist() == list(range(10))
    assert result["x"].tolist() == [value / 2 for value in range(10)]


def test_big_endian_datetimes_are_checked_as_their_values() -> None:
    # pandas makes them native in a frame; the check itself takes any byte order.
    dates = np.array(["2024-01-01", "2024-01-02", "2025-03-01"], dtype=">M8[ns]")
    assert _sorted_without_nulls(dates)
    assert not _sorted_without_nulls(dates[::-1].copy())
    assert not _sorted_without_nulls(np.array(["NaT", "2024-01-01"], dtype=">M8[ns]"))


def test_ordered_on_naming_several_columns_is_refused() -> None:
    columns = pd.MultiIndex.from_tuples([("ts", "a"), ("ts", "b")])
    df = pd.DataFrame(np.arange(6).reshape(3, 2), columns=columns)
    with pytest.raises(InvalidFrameError, match=r"names 2 columns .*\('ts', 'a'\)"):
        check_frame(df, "ts", "ds")


def test_frames_with_labels_other_than_strings_keep_pandas_rules() -> None:
    df = pd.DataFrame({"ts": np.arange(3), 1: np.zeros(3), (2, "a"): np.ones(3)})
    assert check_frame(df, "ts", "ds") is df
    unsorted = df.iloc[::-1].reset_index(drop=True)
    with pytest.raises(InvalidFrameError, match="sorted ascending on 'ts'"):
        check_frame(unsorted, "ts", "ds")
    repeated = pd.DataFrame(np.zeros((2, 3)), columns=["ts", np.nan, np.nan])
    with pytest.raises(InvalidFrameError, match="must be unique"):
        check_frame(repeated, "ts", "ds")
    with pytest.raises(InvalidFrameError, match="not in the frame's columns"):
        check_frame(df, "other", "ds")
