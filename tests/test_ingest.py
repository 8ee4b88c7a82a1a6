from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from oupsish import OrderedParquetDataset
from oupsish.testing import assert_same_rows


def chunk(start: int, n: int) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="s") + pd.Timedelta(seconds=start),
            "v": np.arange(start, start + n, dtype=float),
        }
    )
    return df


def chunks(count: int, size: int) -> Iterator[pd.DataFrame]:
    for index in range(count):
        yield chunk(index * size, size)


def test_write_accepts_a_generator_one_commit_per_batch(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=chunks(10, 100), row_group_target_size=250, key_value_metadata={"src": "gen"})
    assert_same_rows(ds.to_pandas(), pd.concat(chunks(10, 100), ignore_index=True))
    assert ds.key_value_metadata == {"src": "gen"}
    assert ds.row_group_stats.n_rows.sum() == 1000


def test_batch_rows_gathers_frames(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=iter([chunk(0, 30), chunk(30, 0), chunk(30, 30)]), batch_rows=50)
    assert ds.row_group_stats.n_rows.tolist() == [60]


def test_write_accepts_a_record_batch_reader(tmp_path: Path) -> None:
    table = pa.Table.from_pandas(chunk(0, 1000), preserve_index=False)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=128))
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=reader)
    assert_same_rows(ds.to_pandas(), chunk(0, 1000))


def test_empty_stream_only_commits_metadata(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=iter([]))
    assert ds.is_newly_initialized
    ds.write(df=chunk(0, 3))
    ds.write(df=iter([]), key_value_metadata={"k": "v"})
    assert ds.key_value_metadata == {"k": "v"} and len(ds.read()) == 3


def test_stream_items_must_be_frames(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    with pytest.raises(TypeError, match="item 1 is a list"):
        ds.write(df=iter([chunk(0, 3), [1, 2]]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_rows"):
        ds.write(df=iter([chunk(0, 3)]), batch_rows=0)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_ingest_csv_in_chunks(tmp_path: Path, suffix: str) -> None:
    expected = chunk(0, 2500).assign(label=lambda df: [f"r{i}" for i in range(len(df))])
    path = tmp_path / f"data{suffix}"
    expected.to_csv(path, index=False)
    if suffix.endswith(".gz"):
        with gzip.open(path) as compressed:
            assert compressed.read(2) == b"ts"
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    rows = ds.ingest_csv(path, chunksize=1000, row_group_target_size=1000)
    assert rows == 2500
    assert_same_rows(ds.to_pandas(), expected)
    assert ds.row_group_stats.n_rows.tolist() == [1000, 1000, 500]


def test_ingest_empty_and_header_only_csv(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("ts,v\n")
    assert ds.ingest_csv(tmp_path / "empty.csv") == 0
    assert ds.ingest_csv(tmp_path / "header.csv") == 0
    assert ds.is_newly_initialized
    (tmp_path / "other.csv").write_text("time,v\n2024-01-01,1\n")
    with pytest.raises(ValueError, match=r"other\.csv.*'ts'"):
        ds.ingest_csv(tmp_path / "other.csv")
