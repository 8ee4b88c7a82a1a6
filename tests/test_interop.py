# mypy: disable-error-code="no-untyped-call"
# (dask and distributed are untyped)
"""Arrow streams, Polars, DuckDB and Dask, each against the real library."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from distributed import Client, LocalCluster

from oupsish import OrderedParquetDataset, Store, toplevel


@toplevel
class Sensor:
    name: str


def readings(n: int, offset: str = "0s", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="min") + pd.Timedelta(offset),
            "v": rng.normal(size=n),
            "k": rng.integers(0, 5, n),
        }
    )
    return df


@pytest.fixture
def ds(tmp_path: Path) -> OrderedParquetDataset:
    dataset = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    dataset.write(df=readings(1000), row_group_target_size=150)
    return dataset


def test_record_batch_reader_streams_a_range(ds: OrderedParquetDataset) -> None:
    start, end = pd.Timestamp("2024-01-01 02:00"), pd.Timestamp("2024-01-01 09:00")
    reader = ds.to_batches(start, end, columns=["v"])
    assert isinstance(reader, pa.RecordBatchReader)
    assert reader.schema.names == ["v"]
    batches = list(reader)
    assert len(batches) > 1, "one batch per row group, read lazily"
    streamed = pa.Table.from_batches(batches).to_pandas()
    pd.testing.assert_frame_equal(streamed, ds.read(start, end, columns=["v"]))


def test_polars_eager_lazy_and_c_stream(ds: OrderedParquetDataset) -> None:
    expected = ds.read()
    eager = ds.to_polars()
    assert eager.shape == expected.shape
    assert eager["v"].to_list() == expected["v"].tolist()
    lazy = ds.scan_polars(columns=["ts", "v"])
    assert isinstance(lazy, pl.LazyFrame)
    collected = lazy.collect()
    assert collected["ts"].is_sorted()
    assert collected["v"].to_list() == expected["v"].tolist()
    from_stream = pl.DataFrame(ds)  # __arrow_c_stream__
    assert from_stream["v"].to_list() == expected["v"].tolist()
    ranged = pl.DataFrame(ds.to_batches(end_excl=pd.Timestamp("2024-01-01 01:00")))
    assert ranged.height == 60


def test_duckdb_relation_and_c_stream(ds: OrderedParquetDataset) -> None:
    expected = ds.read()
    relation = ds.to_duckdb()
    assert relation.aggregate("count(*)").fetchall()[0] == (1000,)
    ordered = relation.project("v").fetchnumpy()["v"]
    np.testing.assert_array_equal(ordered, expected["v"].to_numpy())
    con = duckdb.connect()
    assert con.from_arrow(ds).aggregate("sum(k)").fetchall()[0] == (int(expected["k"].sum()),)


def test_duckdb_views_of_store_keys_and_a_cross_dataset_query(tmp_path: Path) -> None:
    store = Store(tmp_path, Sensor)
    store[Sensor("a")].write(df=readings(500, seed=1), ordered_on="ts", row_group_target_size=90)
    store[Sensor("b")].write(
        df=readings(400, "30s", seed=2), ordered_on="ts", row_group_target_size=70
    )
    con = store.to_duckdb()
    assert sorted(row[0] for row in con.sql("SHOW TABLES").fetchall()) == ["a", "b"]
    # Each reading of a with the latest reading of b at or before it (b starts 30 s later).
    joined = con.sql(
        "SELECT count(*), sum(a.v - b.v) FROM a ASOF JOIN b ON a.ts >= b.ts"
    ).fetchall()[0]
    frame_a, frame_b = store[Sensor("a")].read(), store[Sensor("b")].read()
    expected = pd.merge_asof(frame_a, frame_b, on="ts").dropna()
    assert joined is not None and joined[0] == len(expected) == 499
    assert joined[1] == pytest.approx((expected.v_x - expected.v_y).sum())


def test_dask_divisions_equal_the_stats(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=readings(1000), row_group_target_size=150)
    # Row groups sharing a boundary value: such row groups form one partition.
    shared = pd.DataFrame({"ts": [pd.Timestamp("2024-01-02")] * 300, "v": 1.0, "k": 1})
    ds.write(df=shared, row_group_target_size=150)
    stats = ds.row_group_stats
    ddf = ds.to_dask()
    assert ddf.known_divisions
    divisions = list(ddf.divisions)
    # Partition starts are unique; the last division (inclusive) may equal the last start
    # when the last partition holds a single value, as here.
    assert divisions[:-1] == sorted(set(divisions[:-1]))
    assert divisions[-1] >= divisions[-2]
    assert set(divisions[:-1]) <= set(stats.ordered_on_mins)
    assert divisions[-1] == stats.ordered_on_maxs.iloc[-1]
    assert ddf.npartitions == len(set(stats.ordered_on_mins))
    pd.testing.assert_frame_equal(ddf.compute(), ds.read().set_index("ts"))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


def test_distributed_resample_and_join_match_pandas(tmp_path: Path, client: Client) -> None:
    store = Store(tmp_path, Sensor)
    a, b = Sensor("a"), Sensor("b")
    store[a].write(df=readings(3000, seed=1), ordered_on="ts", row_group_target_size=400)
    store[b].write(df=readings(3000, seed=2), ordered_on="ts", row_group_target_size=700)
    da, db = store[a].to_dask(columns=["v"]), store[b].to_dask(columns=["v"])

    hourly = da.resample("1h").mean().compute()
    expected_hourly = store[a].read().set_index("ts")[["v"]].resample("1h").mean()
    pd.testing.assert_frame_equal(hourly, expected_hourly)

    joined = da.rename(columns={"v": "a"}).join(db.rename(columns={"v": "b"})).compute()
    frame_a = store[a].read().set_index("ts")[["v"]].rename(columns={"v": "a"})
    frame_b = store[b].read().set_index("ts")[["v"]].rename(columns={"v": "b"})
    pd.testing.assert_frame_equal(joined, frame_a.join(frame_b))
    assert isinstance(da, dd.DataFrame)
