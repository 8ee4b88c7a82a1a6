"""Long reads keep one snapshot while writers commit: superseded files stay readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oupsish import OrderedParquetDataset, SnapshotExpiredError, Store, durable, toplevel
from oupsish import commit as commit_module


@toplevel
class Key:
    name: str


def frame(values: np.ndarray, tag: float) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame({"ts": values, "tag": np.full(len(values), tag)})
    return df


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path, Key)
    for name in ("a", "b"):
        s[Key(name)].write(df=frame(np.arange(100), 0.0), ordered_on="ts", row_group_target_size=10)
    return s


def rewrite_everything(ds: OrderedParquetDataset) -> None:
    """Replace every row (same ts, new tag): every file of the old snapshot is superseded."""
    ds.write(df=frame(np.arange(100), 1.0), duplicates_on="ts", row_group_target_size=10)


def test_iter_intersections_reads_one_snapshot_while_writers_commit(store: Store) -> None:
    keys = [Key("a"), Key("b")]
    iterator = store.iter_intersections(keys)
    chunks = [next(iterator)]
    for key in keys:
        rewrite_everything(store[key])
    chunks.extend(iterator)
    for key in keys:
        rows = pd.concat([chunk[key] for chunk in chunks], ignore_index=True)
        assert rows["ts"].tolist() == list(range(100))
        assert set(rows["tag"]) == {0.0}, "all rows from the snapshot the iteration started on"
    assert store[keys[0]].read()["tag"].eq(1.0).all()


def test_record_batch_reader_keeps_its_snapshot(store: Store) -> None:
    ds = store[Key("a")]
    reader = ds.to_batches()
    first = reader.read_next_batch()
    rewrite_everything(ds)
    rest = pa.Table.from_batches(list(reader))
    assert first.num_rows + rest.num_rows == 100
    assert set(rest.column("tag").to_pylist()) == {0.0}


def hidden_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_superseded_files_stay_hidden_in_the_folder_until_purged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = store[Key("a")]
    old_files = ds.files
    rewrite_everything(ds)
    retired = sorted(f".{path.name}.superseded" for path in old_files)
    assert hidden_files(ds.dirpath) == retired
    assert pq.read_table(ds.dirpath).num_rows == 100, "pyarrow reading the folder sees one state"
    assert ds.verify() == []
    monkeypatch.setattr(commit_module, "SUPERSEDED_RETENTION_SECONDS", 0.0)
    ds.write(df=frame(np.arange(100, 101), 2.0))  # purges what was retired before
    durable.wait_for_background()  # the purge runs beside the write
    assert hidden_files(ds.dirpath) == []


def test_a_read_outliving_the_retention_fails_loudly(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [Key("a")]
    iterator = store.iter_intersections(keys)
    next(iterator)
    monkeypatch.setattr(commit_module, "SUPERSEDED_RETENTION_SECONDS", 0.0)
    rewrite_everything(store[keys[0]])
    store[keys[0]].write(df=frame(np.arange(100, 101), 2.0))  # purges
    durable.wait_for_background()
    with pytest.raises(SnapshotExpiredError, match="start the iteration again"):
        list(iterator)
    # One-shot reads simply start over on the new snapshot.
    assert len(store[keys[0]].read()) == 101


def test_remove_from_disk_removes_superseded_files(store: Store, tmp_path: Path) -> None:
    ds = store[Key("a")]
    rewrite_everything(ds)
    del store[Key("a")]
    assert not (tmp_path / "a").exists()
