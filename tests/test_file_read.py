"""Reading many data files (``oupsish.file_read``): small files decoded from memory, larger
ones streamed, runs of files on several threads; the rows come back in order either way."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FilesOpenUnder, data_files

from oupsish import OrderedParquetDataset, file_read
from oupsish.errors import CorruptDatasetError
from oupsish.file_read import read_files

N_ROW_GROUPS = 40
ROWS = 50


def _frame(start: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    values = rng.random(n)
    frame: pd.DataFrame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=start + n, freq="min", tz="Europe/Paris")[
                start:
            ],
            "v": values,
            "n": pd.array([None if value < 0.1 else start for value in values], dtype="Int64"),
            "s": [f"row {start + i}" if i % 7 else None for i in range(n)],
            "c": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        }
    )
    return frame


@pytest.fixture
def dataset(tmp_path: Path) -> OrderedParquetDataset:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for start in range(0, N_ROW_GROUPS * ROWS, 10 * ROWS):
        ds.write(df=_frame(start, 10 * ROWS), row_group_target_size=ROWS)
    assert len(ds) == N_ROW_GROUPS
    return ds


def _expected(ds: OrderedParquetDataset) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in data_files(ds)])


@pytest.mark.parametrize("whole_file_bytes", [0, 1 << 20], ids=["streamed", "from-memory"])
@pytest.mark.parametrize("readers", [1, 2, 4])
def test_many_files_read_back_in_order(
    monkeypatch: pytest.MonkeyPatch,
    dataset: OrderedParquetDataset,
    whole_file_bytes: int,
    readers: int,
    files_open_under: FilesOpenUnder,
) -> None:
    monkeypatch.setattr(file_read, "WHOLE_FILE_BYTES", whole_file_bytes)
    monkeypatch.setattr(file_read._readers, "max_workers", readers)
    expected = pd.concat(
        [_frame(start, 10 * ROWS) for start in range(0, N_ROW_GROUPS * ROWS, 10 * ROWS)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(dataset.read(), expected)
    table = dataset.to_arrow()
    assert {column.num_chunks for column in table.columns} == {N_ROW_GROUPS}
    projected = dataset.read(columns=["s", "v"])
    pd.testing.assert_frame_equal(projected, expected[["s", "v"]])
    ranged = dataset.read(start=expected["ts"][333], end_excl=expected["ts"][1555])
    pd.testing.assert_frame_equal(ranged, expected.iloc[333:1555].reset_index(drop=True))
    assert files_open_under(dataset.dirpath) == []


@pytest.mark.parametrize("damaged", [0, 21, N_ROW_GROUPS - 1], ids=["first", "middle", "last"])
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_file_in_any_run_is_named(
    dataset: OrderedParquetDataset, damaged: int, damage: str
) -> None:
    path = data_files(dataset)[damaged]
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-1])
    reopened = OrderedParquetDataset(dataset.dirpath)
    with pytest.raises(CorruptDatasetError, match=re.escape(path.name)):
        reopened.to_arrow()
    with pytest.raises(CorruptDatasetError, match=re.escape(path.name)):
        reopened.read(columns=["v"])


def test_files_of_another_shape_follow_the_schema(dataset: OrderedParquetDataset) -> None:
    files = data_files(dataset)
    schema = pq.read_schema(files[0])
    expected = _expected(dataset)
    # A file without column "n", another with an extra column, both read as the schema says.
    pq.write_table(pq.read_table(files[3]).drop_columns(["n"]), files[3])
    pq.write_table(pq.read_table(files[30]).append_column("extra", pa.array([1] * ROWS)), files[30])
    table = read_files(files, schema)
    assert table.schema == schema
    assert table.column("n").slice(3 * ROWS, ROWS).null_count == ROWS
    unchanged = [name for name in schema.names if name != "n"]
    assert table.select(unchanged).equals(expected.select(unchanged))
    assert read_files(files, schema, ["v", "ts"]).equals(expected.select(["v", "ts"]))
    # Without a schema, the first file's.
    assert read_files(files[4:], None).equals(expected.slice(4 * ROWS))


def test_no_read_goes_on_once_an_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_read._readers, "max_workers", 4)
    running: set[int] = set()
    lock = threading.Lock()

    def read_run(run: Sequence[str | Path]) -> list[pa.Table]:
        first = int(str(run[0]))
        with lock:
            running.add(first)
        try:
            if first == 0:
                raise OSError("disk gone")
            time.sleep(0.2)
            return [pa.table({"x": [first]})]
        finally:
            with lock:
                running.discard(first)

    with pytest.raises(OSError, match="disk gone"):
        file_read._in_runs([str(i) for i in range(4 * file_read.FEW_FILES)], read_run)
    assert running == set()


def test_runs_return_the_tables_in_file_order(monkeypatch: pytest.MonkeyPatch) -> None:
    for readers in (1, 2, 3, 4):
        monkeypatch.setattr(file_read._readers, "max_workers", readers)
        for n in (1, file_read.FEW_FILES, file_read.FEW_FILES + 1, 5 * file_read.FEW_FILES + 3):
            paths = [str(i) for i in range(n)]
            tables = file_read._in_runs(
                paths, lambda run: [pa.table({"x": [int(str(path))]}) for path in run]
            )
            assert [table.column("x")[0].as_py() for table in tables] == list(range(n))
