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


def test_write_takes_arrow_tables_and_record_batches(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    table = pa.Table.from_pandas(chunk(0, 100), preserve_index=False)
    ds.write(df=table, row_group_target_size=60)
    ds.write(df=pa.Table.from_pandas(chunk(100, 20), preserve_index=False).to_batches()[0])
    assert_same_rows(ds.to_pandas(), chunk(0, 120))
    assert ds.row_group_stats.n_rows.tolist() == [60, 40, 20]


def test_arrow_table_without_pandas_metadata_and_with_duplicates(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=chunk(0, 10))
    stamps = chunk(5, 3)["ts"].to_numpy()
    table = pa.table({"v": [50.0, 51.0, 52.0, 53.0], "ts": pa.array(np.repeat(stamps, [1, 2, 1]))})
    ds.write(df=table, duplicates_on="ts")  # new data wins, the last of equal rows is kept
    expected = chunk(0, 10)
    expected.loc[5:7, "v"] = [50.0, 52.0, 53.0]
    assert_same_rows(ds.to_pandas(), expected)


def test_stream_of_tables_and_frames(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    items: list[pd.DataFrame | pa.Table] = [
        pa.Table.from_pandas(chunk(0, 30), preserve_index=False),
        pa.Table.from_pandas(chunk(30, 30), preserve_index=False),
        chunk(60, 30),
    ]
    ds.write(df=iter(items), batch_rows=50)
    assert_same_rows(ds.to_pandas(), chunk(0, 90))
    assert ds.row_group_stats.n_rows.tolist() == [60, 30]  # frames and tables never mixed


def write_csv(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.to_csv(path, index=False)
    return frame


def test_ingest_csv_parses_with_pyarrow_in_exact_chunks(tmp_path: Path) -> None:
    # Over one pyarrow block (1 MB): later blocks must keep the types of the first.
    n = 60_000
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="s"),
            "count": np.arange(n, dtype="int64"),
            "price": np.round(np.linspace(1, 2, n), 3),
            "name": [f"n{i % 7}" for i in range(n)],
        }
    )
    frame.loc[n - 1, "ts"] += pd.Timedelta("500ms")  # a fraction of a second, last block only
    path = tmp_path / "big.csv"
    write_csv(path, frame)
    assert path.stat().st_size > 2**21
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    progress: list[int] = []
    rows = ds.ingest_csv(
        path, chunksize=25_000, row_group_target_size=25_000, on_chunk=progress.append
    )
    assert rows == n and progress == [25_000, 50_000, 60_000]
    assert ds.row_group_stats.n_rows.tolist() == [25_000, 25_000, 10_000]
    assert_same_rows(ds.to_pandas(), frame)


def test_ingest_csv_into_an_existing_dataset_uses_its_types(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=chunk(0, 3))  # v is float64
    path = tmp_path / "more.csv"
    path.write_text("ts,v\n2024-01-01T00:00:05,5\n2024-01-01T00:00:06,6\n")  # v looks like int
    assert ds.ingest_csv(path) == 2
    assert ds.read()["v"].tolist() == [0.0, 1.0, 2.0, 5.0, 6.0]


def test_ingest_csv_date_formats(tmp_path: Path) -> None:
    import pyarrow.csv as pa_csv

    path = tmp_path / "eu.csv"
    path.write_text("ts;v\n02/01/2024 10:00;1.5\n03/01/2024 10:00;2.5\n")
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    with pytest.raises(ValueError, match=r"eu\.csv.*timestamp_parsers"):
        ds.ingest_csv(path, parse_options=pa_csv.ParseOptions(delimiter=";"))
    assert ds.is_newly_initialized
    ds.ingest_csv(
        path,
        parse_options=pa_csv.ParseOptions(delimiter=";"),
        convert_options=pa_csv.ConvertOptions(timestamp_parsers=["%d/%m/%Y %H:%M"]),
    )
    assert ds.read()["ts"].tolist() == [
        pd.Timestamp("2024-01-02 10:00"),
        pd.Timestamp("2024-01-03 10:00"),
    ]
    other = OrderedParquetDataset(tmp_path / "other", ordered_on="ts")
    other.ingest_csv(path, read_csv={"sep": ";", "date_format": "%d/%m/%Y %H:%M"})
    assert_same_rows(other.to_pandas(), ds.to_pandas())
    with pytest.raises(ValueError, match="not both"):
        other.ingest_csv(
            path, read_csv={"sep": ";"}, parse_options=pa_csv.ParseOptions(delimiter=";")
        )


def test_ingest_csv_of_dates_into_a_dataset_with_a_categorical(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    first = pd.DataFrame(
        {"ts": pd.to_datetime(["2024-01-01", "2024-01-02"]), "label": ["a", "b"]}
    ).astype({"label": "category"})
    ds.write(df=first)
    path = tmp_path / "days.csv"
    path.write_text("ts,label\n2024-01-03,c\n2024-01-04,a\n")  # dates only: inferred date32
    assert ds.ingest_csv(path) == 2
    result = ds.read()
    assert result["ts"].tolist() == list(pd.date_range("2024-01-01", periods=4, freq="D"))
    assert isinstance(result["label"].dtype, pd.CategoricalDtype)
    assert result["label"].astype(str).tolist() == ["a", "b", "c", "a"]
    fresh = OrderedParquetDataset(tmp_path / "fresh", ordered_on="ts")
    fresh.ingest_csv(path)  # a first write: the dates become timestamps too
    assert fresh.read()["ts"].dtype.kind == "M"
