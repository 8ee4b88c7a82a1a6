from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from oupsish import OrderedParquetDataset, __version__
from oupsish.history import append_entry, entry, history_path
from oupsish.snapshot import Snapshot, file_changes, stats_table


def rows(start: int, n: int) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame({"k": np.arange(start, start + n), "v": np.ones(n)})
    return df


def test_every_commit_is_recorded_and_survives_reopening(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    assert ds.history().empty
    ds.write(df=rows(0, 30), row_group_target_size=10, key_value_metadata={"src": "a"})
    ds.write(df=rows(30, 5), row_group_target_size=10)
    ds.write(df=rows(12, 1), row_group_target_size=10)  # inside the second row group
    ds.write(key_value_metadata={"src": None, "v": "2"})
    ds.write(row_group_target_size=100, max_n_off_target_rgs=1)
    history = OrderedParquetDataset(tmp_path / "ds").history()
    assert history.commit.tolist() == [1, 2, 3, 4, 5]
    assert history.operation.tolist() == ["append", "append", "insert", "metadata", "compact"]
    assert history.rows_after.tolist() == [30, 35, 36, 36, 36]
    first, _, insert, metadata, compact = history.to_dict("records")
    assert (first["rows_added"], first["row_groups_added"]) == (30, 3)
    assert (insert["rows_added"], insert["rows_removed"]) == (11, 10)
    assert (insert["row_groups_added"], insert["row_groups_removed"]) == (2, 1)  # 11 rows: 10 + 1
    assert first["metadata_change"] == {"src": "a"}
    assert metadata["metadata_change"] == {"src": None, "v": "2"}
    assert compact["row_groups_added"] == 1
    assert set(history.version) == {__version__}
    assert history.time.dt.tz is not None and history.time.is_monotonic_increasing


def test_lines_of_commits_that_never_happened_are_ignored(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=rows(0, 3))
    path = history_path(tmp_path / "ds_opdmd")
    # A writer died after appending its line (commit 2) but before the metadata swap,
    # and another one was torn mid-line.
    append_entry(path, {"commit": 2, "operation": "ghost"})
    with open(path, "ab") as file:
        file.write(b'{"commit": 2, "oper')
    assert ds.history().operation.tolist() == ["append"]
    ds.write(df=rows(3, 3))  # commit 2 for real: its line wins
    assert ds.history().operation.tolist() == ["append", "append"]
    assert ds.history().rows_after.tolist() == [3, 6]


def test_remove_from_disk_removes_the_history(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=rows(0, 3))
    ds.remove_from_disk()
    assert list(tmp_path.iterdir()) == []


def snapshot_of(ids: list[int]) -> Snapshot:
    names = [f"file_{i:05d}.parquet" for i in ids]
    n = len(names)
    stats = stats_table(names, [1] * n, list(range(n)), list(range(n)), pa.int64())
    return Snapshot.empty().successor(
        ordered_on="k", schema=None, key_value_metadata={}, stats=stats
    )


def naive_operation(before: list[int], after: list[int]) -> str:
    """The operation by plain set differences (every row group holds one row here)."""
    old, new = set(before), set(after)
    if old == new:
        return "metadata"
    if not new - old:
        return "delete"
    if len(before) == len(after) and len(new - old) < len(old - new):
        return "compact"
    kept = [i for i in before if i in new]
    return "append" if kept == before[: len(kept)] else "insert"


@given(
    st.lists(st.integers(0, 30), unique=True, max_size=20),
    st.lists(st.integers(0, 30), unique=True, max_size=20),
)
def test_file_changes_match_set_differences(before: list[int], after: list[int]) -> None:
    """Skipping the common prefix and suffix finds exactly the set differences, in order."""
    old, new = snapshot_of(before), snapshot_of(after)
    changes = file_changes(old, new)
    assert [after[i] for i in changes.added] == [i for i in after if i not in before]
    assert [before[i] for i in changes.removed] == [i for i in before if i not in after]
    assert entry(old, new)["operation"] == naive_operation(before, after)
