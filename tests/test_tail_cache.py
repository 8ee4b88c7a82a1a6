"""The tails kept between coalescing writes, within one budget per process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from oupsish import OrderedParquetDataset, Store, tail_cache, toplevel
from oupsish.read import read_row_groups
from oupsish.stitch import footer_agrees
from oupsish.testing import assert_same_rows

CHUNK = 1_000


@toplevel
class Key:
    name: str


COALESCING: dict[str, Any] = {"row_group_target_size": 10 * CHUNK, "max_n_off_target_rgs": 2}


def frame(step: int) -> pd.DataFrame:
    start = step * CHUNK
    df: pd.DataFrame = pd.DataFrame(
        {"ts": np.arange(start, start + CHUNK), "v": np.arange(start, start + CHUNK) * 0.5}
    )
    return df


@pytest.fixture(autouse=True)
def restored_limit() -> Iterator[None]:
    """Tests may lower the limit: it is restored, and no tail is left behind."""
    limit = tail_cache.get_limit()
    yield
    tail_cache.clear()
    tail_cache.set_limit(limit)


@pytest.fixture
def disk_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each write read back from disk, when it read any."""
    reads: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        table = read_row_groups(*args, **kwargs)
        if table.num_rows:
            reads.append(table.num_rows)
        return table

    monkeypatch.setattr("oupsish.writer.read_row_groups", spy)
    return reads


def one_tail_bytes(tmp_path: Path) -> int:
    """What one handle keeps after two coalescing writes of ``CHUNK`` rows."""
    before = tail_cache.kept_bytes()
    ds = OrderedParquetDataset(tmp_path / "probe", ordered_on="ts")
    for step in range(2):
        ds.write(df=frame(step), **COALESCING)
    kept = tail_cache.kept_bytes() - before
    ds.remove_from_disk()
    assert kept > 0
    return kept


def test_tails_of_all_datasets_stay_within_the_process_limit(
    tmp_path: Path, disk_reads: list[int]
) -> None:
    tail_cache.set_limit(5 * one_tail_bytes(tmp_path))
    handles = [OrderedParquetDataset(tmp_path / f"ds{i}", ordered_on="ts") for i in range(8)]
    for step in range(6):
        for ds in handles:
            ds.write(df=frame(step), **COALESCING)
            assert tail_cache.kept_bytes() <= tail_cache.get_limit()
    # Each round forgets the tails of the datasets written longest ago: their merges read
    # the ordered column of their tail from disk.
    assert disk_reads
    for ds in handles:
        assert_same_rows(ds.to_pandas(), pd.concat([frame(step) for step in range(6)]))
        assert ds.verify() == []


def test_a_handle_within_the_limit_merges_its_tail_without_reading_it(
    tmp_path: Path, disk_reads: list[int]
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(6):
        ds.write(df=frame(step), **COALESCING)
    assert disk_reads == []
    assert_same_rows(ds.to_pandas(), pd.concat([frame(step) for step in range(6)]))


def test_a_lower_limit_forgets_tails_at_once(tmp_path: Path, disk_reads: list[int]) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0), **COALESCING)
    assert tail_cache.kept_bytes() > 0
    tail_cache.set_limit(0)
    assert tail_cache.kept_bytes() == 0
    for step in range(1, 4):
        ds.write(df=frame(step), **COALESCING)
    assert tail_cache.kept_bytes() == 0
    assert disk_reads
    assert_same_rows(ds.to_pandas(), pd.concat([frame(step) for step in range(4)]))


def test_a_new_handle_for_each_write_merges_the_kept_tail(
    tmp_path: Path, disk_reads: list[int]
) -> None:
    # store[key].write(...) makes a new handle on every call.
    store = Store(tmp_path / "store", Key)
    for step in range(6):
        store[Key("a")].write(df=frame(step), ordered_on="ts", **COALESCING)
    assert disk_reads == []
    expected = pd.concat([frame(step) for step in range(6)])
    assert_same_rows(store[Key("a")].to_pandas(), expected)


def test_a_commit_by_another_process_makes_the_kept_tail_unusable(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(2):
        ds.write(df=frame(step), **COALESCING)
    files = ds.files
    # Another process recreates the dataset: the same file names, other ordered values.
    script = (
        "import sys, numpy as np, pandas as pd; from oupsish import OrderedParquetDataset; "
        "ds = OrderedParquetDataset(sys.argv[1]); ds.remove_from_disk(); "
        "[OrderedParquetDataset(sys.argv[1], ordered_on='ts').write("
        "df=pd.DataFrame({'ts': np.arange(n, n + 1000) * 2 + 1, 'v': np.zeros(1000)}), "
        "row_group_target_size=10_000, max_n_off_target_rgs=2) for n in (0, 1000)]"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "ds")], check=True)
    assert ds.files == files
    late = frame(4)  # after the other process's values
    ds.write(df=late, **COALESCING)
    theirs = pd.DataFrame({"ts": np.arange(2000) * 2 + 1, "v": np.zeros(2000)})
    assert_same_rows(ds.to_pandas(), pd.concat([theirs, late]))
    assert ds.verify() == []
    assert ds.row_group_stats["ordered_on_mins"].tolist() == [1]


def test_idle_tails_are_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tail_cache.kept_bytes()
    idle = OrderedParquetDataset(tmp_path / "idle", ordered_on="ts")
    idle.write(df=frame(0), **COALESCING)
    kept = tail_cache.kept_bytes() - before
    assert kept > 0
    monkeypatch.setattr(tail_cache, "IDLE_SECONDS", 0.0)
    other = OrderedParquetDataset(tmp_path / "other", ordered_on="ts")
    other.write(df=frame(0), ordered_on="ts")  # any write looks for idle tails
    assert tail_cache.kept_bytes() < before + kept


def test_clear_forgets_every_tail(tmp_path: Path, disk_reads: list[int]) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0), **COALESCING)
    ds.write(df=frame(1), **COALESCING)
    tail_cache.clear()
    assert tail_cache.kept_bytes() == 0
    ds.write(df=frame(2), **COALESCING)
    assert disk_reads
    assert_same_rows(ds.to_pandas(), pd.concat([frame(step) for step in range(3)]))


def test_a_handle_removing_its_dataset_forgets_its_tail(tmp_path: Path) -> None:
    before = tail_cache.kept_bytes()
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0), **COALESCING)
    ds.remove_from_disk()
    assert tail_cache.kept_bytes() == before


@pytest.mark.parametrize("limit", [-1, 1.5, "1GB", True, None])
def test_the_limit_is_a_number_of_bytes(limit: object) -> None:
    before = tail_cache.get_limit()
    with pytest.raises(ValueError, match="number of bytes"):
        tail_cache.set_limit(limit)  # type: ignore[arg-type]
    assert tail_cache.get_limit() == before


def test_a_tail_whose_pages_are_copied_is_kept_as_its_ordered_column(tmp_path: Path) -> None:
    # Stitched appends need the ordered column of the tail only; merges that encode the
    # rows again (dictionary-encoded strings here) need them whole.
    numbers = OrderedParquetDataset(tmp_path / "numbers", ordered_on="ts")
    numbers.write(df=frame(0), **COALESCING)
    assert tail_cache.kept_bytes() == CHUNK * (8 + 8)  # no merge yet: whole rows
    for step in range(1, 4):  # the third write copies pages; the fourth adds a file
        numbers.write(df=frame(step), **COALESCING)
    assert tail_cache.kept_bytes() == 4 * CHUNK * 8  # one int64 column
    strings = OrderedParquetDataset(tmp_path / "strings", ordered_on="ts")
    for step in range(4):
        strings.write(df=frame(step).assign(s="abc"), **COALESCING)
    assert tail_cache.kept_bytes() - 4 * CHUNK * 8 > 4 * CHUNK * (8 + 8 + 3)
    for ds, extra in ((numbers, {}), (strings, {"s": "abc"})):
        ds.write(df=frame(4).assign(**extra), **COALESCING)
        expected = pd.concat([frame(step).assign(**extra) for step in range(5)])
        assert_same_rows(ds.to_pandas(), expected)


def test_a_non_nullable_ordered_column_is_kept_with_its_field(
    tmp_path: Path, disk_reads: list[int]
) -> None:
    # Stitched files keep their ordered column, encoded files theirs: both with the
    # dataset's field, so that the two concatenate.
    fields: list[pa.Field[Any]] = [
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("v", pa.float64()),
    ]
    schema = pa.schema(fields)
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    tables = [pa.Table.from_pandas(frame(step), schema=schema) for step in range(8)]
    for table in tables:
        ds.write(df=table, **COALESCING)
    assert disk_reads == []
    assert_same_rows(ds.to_pandas(), pd.concat([frame(step) for step in range(8)]))
    assert ds.verify() == []


def test_a_tail_that_does_not_match_the_metadata_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On file systems with coarse timestamps, a dataset recreated by another process may
    # give its metadata file the inode, size and times of the one the tail was kept for.
    for module in ("oupsish.commit", "oupsish.dataset", "oupsish.writer"):
        monkeypatch.setattr(f"{module}.metadata_signature", lambda paths: (1, 2, 3, 4))
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(2):
        ds.write(df=frame(step), **COALESCING)
    script = (
        "import sys, numpy as np, pandas as pd; from oupsish import OrderedParquetDataset; "
        "OrderedParquetDataset(sys.argv[1]).remove_from_disk(); "
        "[OrderedParquetDataset(sys.argv[1], ordered_on='ts').write("
        "df=pd.DataFrame({'ts': np.arange(n, n + 1000) * 2 + 1, 'v': np.zeros(1000)}), "
        "row_group_target_size=10_000, max_n_off_target_rgs=2) for n in (0, 1000)]"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "ds")], check=True)
    fresh = OrderedParquetDataset(tmp_path / "ds")
    assert fresh.files == ds.files
    fresh.write(df=frame(4), **COALESCING)
    monkeypatch.undo()
    theirs = pd.DataFrame({"ts": np.arange(2000) * 2 + 1, "v": np.zeros(2000)})
    written = OrderedParquetDataset(tmp_path / "ds")
    assert_same_rows(written.to_pandas(), pd.concat([theirs, frame(4)]))
    assert written.verify() == []


ORDERED_TYPES = {
    "timestamp[ns]": pa.timestamp("ns"),
    "timestamp[s], stored as ms": pa.timestamp("s"),
    "timestamp[us, tz]": pa.timestamp("us", "Europe/Paris"),
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "int16": pa.int16(),
    "float64": pa.float64(),
    "date32": pa.date32(),
    "string": pa.string(),
    "time32[s], stored as ms": pa.time32("s"),
    "duration[ms]": pa.duration("ms"),
}


@pytest.mark.parametrize("ordered_type", ORDERED_TYPES.values(), ids=ORDERED_TYPES.keys())
def test_kept_ordered_columns_are_checked_against_footers_and_copied_from_memory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    disk_reads: list[int],
    ordered_type: pa.DataType,
) -> None:
    # Before copying pages from a kept tail, each file's footer statistics are decoded and
    # compared with the metadata: they must agree for every type an ordered column takes,
    # or each merge would read the column back from disk.
    agreed: list[bool] = []

    def spy(*args: Any) -> bool:
        agreed.append(footer_agrees(*args))
        return agreed[-1]

    monkeypatch.setattr("oupsish.writer.footer_agrees", spy)
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    tables = []
    for step in range(6):
        ts = frame(step)["ts"].to_numpy()
        values: pa.Array[Any]
        if ordered_type == pa.string():
            values = pa.array([f"{n:08d}" for n in ts])
        elif ordered_type in (pa.date32(), pa.time32("s")):
            values = pa.array(ts, pa.int32())
        else:
            values = pa.array(ts)
        nested = pa.array([[n] for n in ts], pa.list_(pa.int64()))  # leaves before "ts"'s
        tables.append(
            pa.table({"l": nested, "ts": values.cast(ordered_type), "v": pa.array(ts * 0.5)})
        )
        ds.write(df=tables[-1], use_dictionary=False, **COALESCING)
    assert agreed and all(agreed)
    assert disk_reads == []
    assert ds.to_arrow().equals(pa.concat_tables(tables).cast(ds.to_arrow().schema))
    assert ds.verify() == []


def test_a_tail_whose_pages_cannot_be_copied_is_kept_whole(
    tmp_path: Path, disk_reads: list[int]
) -> None:
    # Decimals are not stitched: the merges encode the rows, from memory.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    decimals = pa.array([Decimal("1.5")] * CHUNK, pa.decimal128(9, 2))
    tables = [pa.Table.from_pandas(frame(step)).append_column("d", decimals) for step in range(6)]
    for table in tables:
        ds.write(df=table, use_dictionary=False, **COALESCING)
    assert disk_reads == []
    assert ds.verify() == []
    assert len(ds.read()) == 6 * CHUNK
