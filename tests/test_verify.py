from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import data_files

from oupsish import CorruptDatasetError, OrderedParquetDataset, Store, file_read, toplevel


@pytest.fixture(autouse=True, params=["from-memory", "streamed"])
def file_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check holds whether files are decoded from memory or streamed from disk."""
    if request.param == "streamed":
        monkeypatch.setattr(file_read, "WHOLE_FILE_BYTES", -1)


@toplevel
class Sensor:
    name: str


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def seeded(tmp_path: Path) -> OrderedParquetDataset:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    df = pd.DataFrame({"ts": np.arange(30), "v": np.arange(30.0)})
    ds.write(df=df, row_group_target_size=10)
    return ds


def kinds(ds: OrderedParquetDataset) -> list[str]:
    return [problem.kind for problem in ds.verify()]


def test_a_sound_dataset_has_no_problem_and_verify_changes_nothing(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    before = tree_bytes(tmp_path)
    assert ds.verify() == []
    assert tree_bytes(tmp_path) == before


def test_missing_file(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    data_files(ds)[1].unlink()
    [problem] = ds.verify()
    assert problem.kind == "missing" and problem.path == str(data_files(ds)[1])
    with pytest.raises(CorruptDatasetError, match="missing"):
        ds.to_pandas()


def test_truncated_file(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    victim = data_files(ds)[0]
    victim.write_bytes(victim.read_bytes()[:-20])
    assert kinds(ds) == ["unreadable"]
    with pytest.raises(CorruptDatasetError, match="cannot be read"):
        ds.to_pandas()


def test_a_damaged_page_of_any_column_is_caught(tmp_path: Path) -> None:
    # Reads decode only the columns they need, and coalescing writes copy pages without
    # decoding them: verify() decodes every page.
    ds = seeded(tmp_path)
    victim = data_files(ds)[1]
    chunk = pq.read_metadata(victim).row_group(0).column(1)  # "v", not the ordered column
    assert chunk.path_in_schema == "v"
    data = bytearray(victim.read_bytes())
    data[chunk.data_page_offset : chunk.data_page_offset + 8] = b"\xff" * 8  # its page header
    victim.write_bytes(bytes(data))
    assert len(ds.read(columns=["ts"])) == 30  # the ordered column alone still reads
    [problem] = ds.verify()
    assert problem.kind == "unreadable" and problem.path == str(victim)
    with pytest.raises(CorruptDatasetError, match=victim.name):
        ds.to_pandas()


def test_swapped_content_is_caught_by_counts_and_bounds(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    first, second, _ = data_files(ds)
    pq.write_table(pa.table({"ts": list(range(12, 20)), "v": [float(i) for i in range(8)]}), first)
    pq.write_table(pq.read_table(data_files(ds)[2]), second)  # same count, wrong values
    problems = ds.verify()
    assert [(p.kind, p.path) for p in problems] == [
        ("row_count", str(first)),
        ("min_max", str(first)),
        ("min_max", str(second)),
    ]
    assert "records [0, 9]" in problems[1].detail
    with pytest.raises(CorruptDatasetError, match="hold 28 rows where the metadata records 30"):
        ds.to_pandas()


@pytest.mark.parametrize("n_row_groups", [3, 300])
def test_reads_catch_a_file_replaced_by_one_with_as_many_rows(
    tmp_path: Path, n_row_groups: int
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    n_rows = 10 * n_row_groups
    ds.write(
        df=pd.DataFrame({"ts": np.arange(n_rows), "v": np.arange(n_rows, dtype=float)}),
        row_group_target_size=10,
    )
    victim = data_files(ds)[n_row_groups - 2]
    # 10 rows, the last row group's values
    pq.write_table(pq.read_table(data_files(ds)[-1]), victim)
    with pytest.raises(CorruptDatasetError, match=f"'{victim.name}' holds 'ts' values from"):
        ds.to_pandas()
    with pytest.raises(CorruptDatasetError, match=f"'{victim.name}'"):
        ds.to_arrow(columns=["ts"])
    first = ds[:1].to_pandas()
    assert first is not None and first["ts"].tolist() == list(range(10))


def test_schema_and_sorting(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    first = data_files(ds)[0]
    pq.write_table(pa.table({"ts": list(range(10)), "v": list(range(10))}), first)  # int64 v
    assert kinds(ds) == ["schema"]
    pq.write_table(
        pa.table({"ts": [0, 9, 1, 2, 3, 4, 5, 6, 7, 8], "v": [float(i) for i in range(10)]}), first
    )
    assert kinds(ds) == ["unsorted"]


def test_types_parquet_stores_in_another_form_are_the_dataset_schema(tmp_path: Path) -> None:
    # Parquet has no seconds nor date64, and names list items "element": the files read
    # back as timestamp[ms], date32 and list<element: ...>, which reads cast back.
    seconds = pa.array(np.arange(20), pa.int64()).cast(pa.timestamp("s"))
    table = pa.table(
        {
            "ts": seconds,
            "utc": seconds.cast(pa.timestamp("s", "UTC")),
            "day": pa.array(np.arange(20) * 86_400_000, pa.int64()).cast(pa.date64()),
            "time": pa.array(np.arange(20), pa.int32()).cast(pa.time32("s")),
            "items": pa.array([[n] for n in range(20)], pa.list_(pa.int64())),
        }
    )
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for start in (0, 10):
        ds.write(df=table.slice(start, 10), row_group_target_size=10)
    assert ds.verify() == []
    assert ds.to_arrow().equals(table)
    days = pa.array(np.arange(10), pa.int64())  # another type than the dataset's
    pq.write_table(table.slice(0, 10).set_column(2, "day", days), data_files(ds)[0])
    assert kinds(ds) == ["schema"]
    # Parquet's form, with a value the dataset's type cannot hold (reads refuse it too).
    milliseconds = pa.array([0, 1500, *range(2000, 10_000, 1000)]).cast(pa.timestamp("ms"))
    pq.write_table(table.slice(0, 10).set_column(0, "ts", milliseconds), data_files(ds)[0])
    assert kinds(ds) == ["schema"]
    assert "1500" in ds.verify()[0].detail
    with pytest.raises(CorruptDatasetError, match="1500"):
        ds.to_arrow()


def test_a_duration_ordered_column_is_verified(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="d")
    durations = pa.array(np.arange(20), pa.int64()).cast(pa.duration("s"))
    zeros = pa.array(np.zeros(20))
    ds.write(df=pa.table({"d": durations, "v": zeros}), row_group_target_size=10)
    assert ds.verify() == []
    pq.write_table(pa.table({"d": durations[1:11], "v": zeros[:10]}), data_files(ds)[0])
    assert kinds(ds) == ["min_max"]


def test_orphans_and_temporaries_are_reported_foreign_files_ignored(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    (ds.dirpath / "file_00099-9.parquet").write_bytes(b"left by a crash")
    (ds.dirpath / f".file_00003-9.parquet.{'0a1b' * 8}.tmp").write_bytes(b"partial")
    (ds.dirpath / "README.txt").write_text("mine")
    assert kinds(ds) == ["temporary", "orphan"]


def test_unreadable_metadata(tmp_path: Path) -> None:
    ds = seeded(tmp_path)
    metadata = tmp_path / "ds_opdmd"
    metadata.write_bytes(b"garbage")
    [problem] = ds.verify()
    assert problem.kind == "metadata" and "ds_opdmd" in problem.path


def test_store_verify_lists_only_datasets_with_problems(tmp_path: Path) -> None:
    store = Store(tmp_path, Sensor)
    for name in ("a", "b"):
        store[Sensor(name)].write(
            df=pd.DataFrame({"ts": np.arange(5), "v": np.arange(5.0)}), ordered_on="ts"
        )
    assert store.verify() == {}
    next((tmp_path / "b").glob("*.parquet")).unlink()
    report = store.verify()
    assert list(report) == [Sensor("b")]
    assert [problem.kind for problem in report[Sensor("b")]] == ["missing"]
    assert str(report[Sensor("b")][0]).startswith("missing: ")
