"""End-to-end writes against the pandas reference model, and invariants of the layout."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings

from oupsish import DatasetView, OrderedParquetDataset
from oupsish.naming import is_data_file_name
from oupsish.plan import Window
from oupsish.snapshot import Snapshot, empty_stats, stats_table
from oupsish.testing import ReferenceModel, assert_same_rows
from oupsish.testing.strategies import write_sequences
from oupsish.writer import _splice


def all_rows(reader: OrderedParquetDataset | DatasetView) -> pd.DataFrame:
    """``to_pandas()``, which must not be empty here."""
    rows = reader.to_pandas()
    assert rows is not None
    return rows


def check_layout(ds: OrderedParquetDataset) -> None:
    """Row groups are in order, match their files, and the folder reads in order by name."""
    stats = ds.row_group_stats
    mins, maxs = stats["ordered_on_mins"].to_numpy(), stats["ordered_on_maxs"].to_numpy()
    assert (mins <= maxs).all()
    assert (maxs[:-1] <= mins[1:]).all()
    names = sorted(name for name in os.listdir(ds.dirpath) if not name.startswith("."))
    assert all(is_data_file_name(name) for name in names)
    assert [f"file_{file_id}.parquet" for file_id in stats["file_ids"]] == names
    for name, n_rows in zip(names, stats["n_rows"], strict=True):
        metadata = pq.ParquetFile(Path(ds.dirpath) / name).metadata
        assert metadata.num_row_groups == 1
        assert metadata.num_rows == n_rows


@settings(max_examples=300)
@given(write_sequences())
def test_writes_match_the_reference_model(sequence: Any) -> None:
    steps, duplicates_on = sequence
    with tempfile.TemporaryDirectory() as tmp:
        ds = OrderedParquetDataset(Path(tmp) / "ds", ordered_on="ts")
        model = ReferenceModel("ts")
        for step in steps:
            ds.write(
                df=step.df,
                row_group_target_size=step.row_group_target_size,
                max_n_off_target_rgs=step.max_n_off_target_rgs,
                duplicates_on=duplicates_on,
            )
            model.write(step.df, duplicates_on=duplicates_on)
            assert_same_rows(ds.to_pandas(), model.frame)
        if model.frame is not None:
            check_layout(ds)
            # Any Parquet reader taking files in name order sees the same rows.
            assert_same_rows(pq.read_table(ds.dirpath).to_pandas(), model.frame)


def test_equal_values_on_a_shared_boundary_keep_row_groups_sorted(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=pd.DataFrame({"k": [0, 1, 1, 2, 3]}), row_group_target_size=2)
    ds.write(df=pd.DataFrame({"k": [1, 2]}), row_group_target_size=2)
    assert all_rows(ds)["k"].tolist() == [0, 1, 1, 1, 2, 2, 3]
    check_layout(ds)


def test_equal_values_keep_insertion_order_across_row_groups(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=pd.DataFrame({"k": [5] * 7, "v": range(7)}), row_group_target_size=3)
    ds.write(df=pd.DataFrame({"k": [5, 5], "v": [7, 8]}), row_group_target_size=3)
    ds.write(df=pd.DataFrame({"k": [4, 5, 6], "v": [-1, 9, 10]}), row_group_target_size=3)
    assert all_rows(ds)["v"].tolist() == [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_large_random_sequence_matches_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    model = ReferenceModel("ts")
    for _ in range(40):
        n = int(rng.integers(1, 400))
        ts = np.sort(rng.integers(0, 5000, n))
        df = pd.DataFrame({"ts": ts, "key": rng.integers(0, 3, n), "v": rng.normal(size=n)})
        ds.write(
            df=df,
            row_group_target_size=int(rng.integers(50, 300)),
            max_n_off_target_rgs=int(rng.integers(0, 4)),
            duplicates_on="key",
        )
        model.write(df, duplicates_on="key")
    assert_same_rows(ds.to_pandas(), model.frame)
    check_layout(ds)


def test_statistics_of_another_type_are_cast_when_spliced() -> None:
    # Bounds stored as timestamp[us] next to a window's of timestamp[ns]: the result has
    # the ordered column's type throughout (only parts of another type are cast).
    stored_type, new_type = pa.timestamp("us"), pa.timestamp("ns")
    times = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).as_unit("us")
    names = ["file_0001-1.parquet", "file_0002-1.parquet", "file_0003-1.parquet"]
    snapshot = Snapshot.empty("ts").successor(
        ordered_on="ts",
        schema=None,
        key_value_metadata={},
        stats=stats_table(names, [1, 1, 1], pa.array(times), pa.array(times), stored_type),
    )
    replaced = pa.array(pd.to_datetime(["2024-01-02 12:00"]).as_unit("ns"))
    window_stats = stats_table(["file_0002-2.parquet"], [2], replaced, replaced, new_type)
    stats, file_names = _splice(snapshot, [(Window(1, 2, 0, 1), window_stats)], new_type)
    assert file_names == [names[0], "file_0002-2.parquet", names[2]]
    assert stats.schema == empty_stats(new_type).schema
    assert stats.column("ordered_on_mins").to_pylist() == [
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-01-02 12:00"),
        pd.Timestamp("2024-01-03"),
    ]
    assert stats.column("n_rows").to_pylist() == [1, 2, 1]
