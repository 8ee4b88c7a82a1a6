from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from oupsish import (
    DatasetView,
    OrderedParquetDataset,
    ReadOnlyError,
    SchemaMismatchError,
    write,
)


def all_rows(reader: OrderedParquetDataset | DatasetView) -> pd.DataFrame:
    """``to_pandas()``, which must not be empty here."""
    rows = reader.to_pandas()
    assert rows is not None
    return rows


def frame(ts: Any, **columns: Any) -> pd.DataFrame:
    ts = pd.to_datetime(ts) if isinstance(ts[0], str) else ts
    data = {"ts": ts}
    data.update(columns or {"v": np.arange(len(ts), dtype=float)})
    df: pd.DataFrame = pd.DataFrame(data)
    return df


def hours(start: str, n: int, **columns: Any) -> pd.DataFrame:
    data: dict[str, Any] = {"ts": pd.date_range(start, periods=n, freq="h")}
    data.update(columns or {"v": np.arange(n, dtype=float)})
    df: pd.DataFrame = pd.DataFrame(data)
    return df


def snapshot_files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        name: (os.stat(folder / name).st_ino, os.stat(folder / name).st_mtime_ns)
        for name in os.listdir(folder)
    }


def test_new_dataset_touches_nothing_on_disk(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "a" / "ds", ordered_on="ts")
    assert ds.is_newly_initialized
    assert ds.to_pandas() is None
    assert len(ds) == 0
    assert list(tmp_path.iterdir()) == []


def test_write_then_read(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 5))
    assert not ds.is_newly_initialized
    result = all_rows(ds)
    assert result["v"].tolist() == [0, 1, 2, 3, 4]
    assert isinstance(result.index, pd.RangeIndex) and result.index.start == 0
    assert sorted(os.listdir(tmp_path)) == ["ds", "ds.lock", "ds_history", "ds_opdmd"]


def test_ordered_on_is_required_then_fixed(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="ordered_on is required"):
        ds.write(df=hours("2024-01-01", 2))
    ds.write(df=hours("2024-01-01", 2), ordered_on="ts")
    assert ds.ordered_on == "ts"
    with pytest.raises(ValueError, match="does not match 'ts'"):
        ds.write(df=hours("2024-01-01", 2).rename(columns={"ts": "t"}), ordered_on="t")
    with pytest.raises(ValueError, match="does not match 'ts'"):
        OrderedParquetDataset(tmp_path / "ds", ordered_on="other")


def test_insert_rewrites_only_the_overlapped_row_group(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 40), row_group_target_size=10)
    before = snapshot_files(ds.dirpath)
    ds.write(df=frame(["2024-01-01 12:30"], v=[99.0]), row_group_target_size=10)
    after = snapshot_files(ds.dirpath)
    kept = set(before) & set(after)
    assert len(before) - len(kept) == 1  # only the second row group was replaced
    assert all(before[name] == after[name] for name in kept)
    values = all_rows(ds)["v"].tolist()
    assert values[:14] == [*range(13), 99.0]
    assert pq.read_table(ds.dirpath).to_pandas()["v"].tolist() == values


def test_rows_between_row_groups_touch_no_row_group(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=pd.DataFrame({"k": [0, 1, 10, 11]}), row_group_target_size=2)
    before = snapshot_files(ds.dirpath)
    ds.write(df=pd.DataFrame({"k": [5]}), row_group_target_size=2)
    after = snapshot_files(ds.dirpath)
    assert set(before) <= set(after) and len(after) == 3
    assert all_rows(ds)["k"].tolist() == [0, 1, 5, 10, 11]


def test_prepend_before_the_first_row_group(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=pd.DataFrame({"k": [10, 11, 12, 13]}), row_group_target_size=2)
    for start in (8, 6, 4, 2, 0):
        ds.write(df=pd.DataFrame({"k": [start, start + 1]}), row_group_target_size=2)
    assert all_rows(ds)["k"].tolist() == list(range(14))
    assert pq.read_table(ds.dirpath).to_pandas()["k"].tolist() == list(range(14))


@pytest.mark.parametrize("duplicates_on", ["key", ["key"], ("key",)])
def test_duplicates_keep_the_new_row(tmp_path: Path, duplicates_on: Any) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=pd.DataFrame({"ts": [1, 2, 3], "key": [1, 1, 1], "v": [1.0, 2.0, 3.0]}))
    new = pd.DataFrame({"ts": [2, 2, 4], "key": [1, 1, 1], "v": [20.0, 21.0, 4.0]})
    ds.write(df=new, duplicates_on=duplicates_on)
    assert all_rows(ds)["v"].tolist() == [1.0, 21.0, 3.0, 4.0]


def test_duplicates_on_all_columns(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=pd.DataFrame({"ts": [1, 2], "v": [1.0, 2.0]}))
    ds.write(df=pd.DataFrame({"ts": [2, 2], "v": [2.0, 5.0]}), duplicates_on=[])
    assert all_rows(ds)["v"].tolist() == [1.0, 2.0, 5.0]


def test_write_never_modifies_the_callers_objects(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    df = pd.DataFrame({"ts": [1, 1, 2], "key": [1, 1, 2], "v": [1.0, 2.0, 3.0]})
    original = df.copy()
    duplicates_on = ["key"]
    metadata = {"a": "1", "b": None}
    ds.write(df=df, duplicates_on=duplicates_on, key_value_metadata=metadata)
    pd.testing.assert_frame_equal(df, original)
    assert duplicates_on == ["key"]
    assert metadata == {"a": "1", "b": None}


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_frequency_row_groups_for_every_unit_and_timezone(
    tmp_path: Path, unit: Literal["s", "ms", "us", "ns"], tz: str | None
) -> None:
    ts = pd.date_range("2024-01-01 20:00", periods=16, freq="2h", tz=tz).as_unit(unit)
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=pd.DataFrame({"ts": ts, "v": range(16)}), row_group_target_size="1D")
    stats = ds.row_group_stats
    days = [ts.normalize() for ts in stats["ordered_on_mins"]]
    assert days == [ts.normalize() for ts in stats["ordered_on_maxs"]]
    assert len(set(days)) == len(days) == 3
    result = all_rows(ds)
    assert result["ts"].dt.tz == ts.tz and str(result["ts"].dtype).startswith("datetime64")
    assert result["v"].tolist() == list(range(16))


def test_month_start_frequency_and_coalescing(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    days = pd.date_range("2024-01-01", "2024-03-31", freq="D")
    for chunk in np.array_split(np.arange(len(days)), 9):
        ds.write(
            df=pd.DataFrame({"ts": days[chunk], "v": chunk}),
            row_group_target_size="MS",
            max_n_off_target_rgs=1,
        )
    assert ds.row_group_stats["n_rows"].tolist() == [31, 29, 31]
    assert all_rows(ds)["v"].tolist() == list(range(len(days)))


def test_live_appends_with_coalescing_keep_row_groups_near_target(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    for start in range(0, 1000, 10):
        ds.write(
            df=pd.DataFrame({"k": np.arange(start, start + 10)}),
            row_group_target_size=100,
            max_n_off_target_rgs=2,
        )
    n_rows = ds.row_group_stats["n_rows"].tolist()
    assert sum(n_rows) == 1000
    on_target = [80 <= n <= 100 for n in n_rows]
    assert all(on_target[:-2])  # at most max_n_off_target_rgs off target, at the end
    assert len(n_rows) <= 13
    # An on-target row group is not rewritten to complete it: 90 rows stay 90 rows.
    assert n_rows[:3] == [90, 90, 90]


def test_max_n_off_target_rgs_zero_behaves_like_one(tmp_path: Path) -> None:
    layouts = []
    for n in (0, 1):
        ds = OrderedParquetDataset(tmp_path / f"ds{n}", ordered_on="k")
        for start in range(0, 50, 5):
            ds.write(
                df=pd.DataFrame({"k": range(start, start + 5)}),
                row_group_target_size=20,
                max_n_off_target_rgs=n,
            )
        layouts.append(ds.row_group_stats["n_rows"].tolist())
    assert layouts[0] == layouts[1] == [20, 20, 10]


def test_resizing_without_new_rows(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    for start in range(0, 30, 3):
        ds.write(df=pd.DataFrame({"k": range(start, start + 3)}), row_group_target_size=10)
    assert len(ds) == 10
    ds.write(row_group_target_size=10, max_n_off_target_rgs=1)
    assert ds.row_group_stats["n_rows"].tolist() == [10, 10, 10]
    assert all_rows(ds)["k"].tolist() == list(range(30))


def test_key_value_metadata_add_update_remove(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 2), key_value_metadata={"source": "a", "version": "1"})
    ds.write(
        df=hours("2024-01-02", 2),
        key_value_metadata={"version": "2", "source": None, "new": "x"},
    )
    assert ds.key_value_metadata == {"version": "2", "new": "x"}
    ds.write(key_value_metadata={"only": "metadata"})
    reopened = OrderedParquetDataset(tmp_path / "ds")
    assert reopened.key_value_metadata == {"version": "2", "new": "x", "only": "metadata"}
    assert "ordered_on" not in reopened.key_value_metadata
    assert len(all_rows(reopened)) == 4


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (pd.DataFrame({"ts": [10]}), r"missing column\(s\) \['v'\]"),
        (pd.DataFrame({"ts": [10], "v": [1.0], "w": [1]}), r"extra column\(s\) \['w'\]"),
        (pd.DataFrame({"ts": [10], "v": ["text"]}), "column 'v' is (large_)?string"),
        (pd.DataFrame({"ts": [10], "v": [1]}), "column 'v' is int64, the dataset stores double"),
    ],
)
def test_schema_changes_are_rejected_and_nothing_changes(
    tmp_path: Path, new: pd.DataFrame, message: str
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=pd.DataFrame({"ts": [1, 2], "v": [1.5, 2.5]}))
    before = {p.name: p.read_bytes() for p in ds.dirpath.parent.rglob("*") if p.is_file()}
    with pytest.raises(SchemaMismatchError, match=message):
        ds.write(df=new)
    after = {p.name: p.read_bytes() for p in ds.dirpath.parent.rglob("*") if p.is_file()}
    assert before == after


def test_lossless_type_differences_are_accepted(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    first = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=2, unit="ns"),
            "c": pd.Categorical(["a", "b"]),
            "s": pd.Series(["x", "y"], dtype=object),
        }
    )
    ds.write(df=first)
    second = pd.DataFrame(
        {
            "s": pd.Series(["z", "w"], dtype="str"),
            "ts": pd.date_range("2024-01-03", periods=2, unit="us"),
            "c": pd.Categorical(["c", "a"]),  # a new category
        }
    )
    ds.write(df=second)
    result = all_rows(ds)
    assert result.columns.tolist() == ["ts", "c", "s"]
    assert result["c"].tolist() == ["a", "b", "c", "a"]
    assert isinstance(result["c"].dtype, pd.CategoricalDtype)
    assert result["ts"].dtype == "datetime64[ns]"


@pytest.mark.parametrize(
    "categories",
    [
        pd.Categorical([3, 1, 3, 2, 1]),
        pd.Categorical(pd.to_datetime(["2024", "2023", "2024", "2022", "2023"])),
        pd.Categorical(list("cacba"), categories=list("abc"), ordered=True),
    ],
    ids=["numbers", "timestamps", "ordered strings"],
)
def test_categoricals_read_back_as_written(tmp_path: Path, categories: pd.Categorical) -> None:
    # Parquet restores dictionaries of strings only: other categoricals read back as their
    # values, and are encoded again to the stored type.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    df = pd.DataFrame({"ts": range(5), "c": categories})
    for part in (df.iloc[:3], df.iloc[3:]):  # two row groups, with their own dictionaries
        ds.write(df=part, row_group_target_size=3)
    result = all_rows(ds)
    assert isinstance(result["c"].dtype, pd.CategoricalDtype)
    assert result["c"].dtype.ordered == categories.ordered
    assert result["c"].tolist() == list(categories)
    assert ds.verify() == []


def test_views(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=pd.DataFrame({"k": range(10)}), row_group_target_size=3)
    assert len(ds) == 4
    last = ds[-1]
    assert all_rows(last)["k"].tolist() == [9]
    middle = ds[1:3]
    assert len(middle) == 2
    frame_ = all_rows(middle)
    assert frame_["k"].tolist() == [3, 4, 5, 6, 7, 8]
    assert isinstance(frame_.index, pd.RangeIndex) and frame_.index.start == 0
    assert middle.row_group_stats["n_rows"].tolist() == [3, 3]
    assert all_rows(middle[-1])["k"].tolist() == [6, 7, 8]
    with pytest.raises(IndexError, match="out of range"):
        ds[4]
    with pytest.raises(ReadOnlyError):
        middle.write(df=pd.DataFrame({"k": [1]}))
    with pytest.raises(PermissionError):
        middle.remove_from_disk()


def test_range_read_touches_only_needed_row_groups(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(
        df=pd.DataFrame({"k": range(100), "v": range(100), "w": range(100)}),
        row_group_target_size=10,
    )
    # Damage every file outside [30, 50): a read of that range must not notice.
    for name, lo in zip(sorted(os.listdir(ds.dirpath)), range(0, 100, 10), strict=True):
        if not 30 <= lo < 50:
            (ds.dirpath / name).write_bytes(b"garbage")
    result = ds.read(start=32, end_excl=47, columns=["w"])
    assert result.columns.tolist() == ["w"]
    assert result["w"].tolist() == list(range(32, 47))
    assert ds.read(start=32, end_excl=32.5)["k"].tolist() == [32]
    assert ds.to_arrow(start=40, end_excl=50).num_rows == 10


def test_range_read_bounds(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 24), row_group_target_size=5)
    result = ds.read(start="2024-01-01 03:00", end_excl=pd.Timestamp("2024-01-01 07:30"))
    assert result["v"].tolist() == [3, 4, 5, 6, 7]
    assert ds.read(start="2025-01-01").empty
    assert ds.read(end_excl="2023-01-01").columns.tolist() == ["ts", "v"]
    with pytest.raises(ValueError, match="must be before end_excl"):
        ds.read(start="2024-01-02", end_excl="2024-01-01")
    with pytest.raises(TypeError, match="tz-aware"):
        ds.read(start=pd.Timestamp("2024-01-01", tz="UTC"))
    with pytest.raises(ValueError, match="unknown column"):
        ds.read(columns=["nope"])


def test_empty_frame_is_a_no_op(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 3))
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    ds.write(df=hours("2024-01-01", 0))
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after


def test_remove_from_disk(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 3), key_value_metadata={"a": "b"})
    ds.remove_from_disk(preserve_metadata=True)
    assert ds.to_pandas() is None and ds.key_value_metadata == {"a": "b"}
    assert not ds.is_newly_initialized
    ds.write(df=hours("2024-01-01", 2))
    assert len(all_rows(ds)) == 2
    ds.remove_from_disk()
    assert list(tmp_path.iterdir()) == []
    assert ds.is_newly_initialized


def test_write_helper(tmp_path: Path) -> None:
    write(tmp_path / "ds", ordered_on="ts", df=hours("2024-01-01", 3), row_group_target_size="1D")
    ds = OrderedParquetDataset(tmp_path / "ds")
    write(ds, ordered_on="ts", df=hours("2024-01-02", 1))
    assert len(all_rows(ds)) == 4
    assert ds.max_file_id == 1


def test_compression_and_parquet_options(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=hours("2024-01-01", 3), compression="zstd", compression_level=5)
    name = ds.row_group_stats["file_ids"][0]
    metadata = pq.ParquetFile(ds.dirpath / f"file_{name}.parquet").metadata
    assert metadata.row_group(0).column(1).compression == "ZSTD"
    with pytest.raises(TypeError, match="unexpected keyword"):
        ds.write(df=hours("2024-01-02", 3), object_encoding="utf8")
