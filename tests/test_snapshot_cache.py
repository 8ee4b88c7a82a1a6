"""Snapshots decoded once per metadata file and process (``oupsish.snapshot_cache``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pytest

from oupsish import OrderedParquetDataset, Store, snapshot_cache, toplevel
from oupsish.metadata import decode


@toplevel
class Key:
    name: str


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The metadata files decoded, in order; nothing kept from earlier tests."""
    snapshot_cache.clear()
    decoded: list[str] = []

    def spy(data: bytes, where: str) -> Any:
        decoded.append(where)
        return decode(data, where)

    monkeypatch.setattr("oupsish.commit.decode", spy)
    yield decoded
    snapshot_cache.clear()


def frame(start: int, n: int = 10) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame({"ts": np.arange(start, start + n), "v": np.arange(n) * 0.5})
    return df


def test_a_dataset_opened_again_is_not_decoded_again(tmp_path: Path, decodes: list[str]) -> None:
    OrderedParquetDataset(tmp_path / "ds", ordered_on="ts").write(df=frame(0))
    snapshot_cache.clear()
    store = Store(tmp_path, Key)
    assert decodes == []
    first = store[Key("ds")].snapshot()
    for _ in range(3):
        assert store[Key("ds")].snapshot() is first
    assert len(decodes) == 1


ORDERED = {
    "int64": lambda values: pa.array(values),
    "timestamp[s], stored as ms": lambda values: pa.array(values).cast(pa.timestamp("s")),
    "date64, stored as date32": lambda values: pa.array(values * 86_400_000).view(pa.date64()),
    "string": lambda values: pa.array([f"{value:04d}" for value in values]),
}


@pytest.mark.parametrize("ordered", ORDERED.values(), ids=ORDERED.keys())
def test_a_commit_keeps_the_snapshot_decoding_its_file_gives(
    tmp_path: Path, decodes: list[str], ordered: Callable[[npt.NDArray[Any]], pa.Array[Any]]
) -> None:
    # store[key].write(...) makes a new handle for each write: none decodes the file the
    # previous write committed, and what it holds is what decoding that file gives.
    store = Store(tmp_path, Key)
    for step in range(4):
        values = np.arange(10 * step, 10 * step + 10)
        table = pa.table({"ts": ordered(values), "v": pa.array(values * 0.5)})
        store[Key("ds")].write(df=table, ordered_on="ts", row_group_target_size=20)
    ds = store[Key("ds")]
    assert ds.row_group_stats["n_rows"].tolist() == [10, 10, 10, 10]
    assert decodes == []
    metadata = next(path for path in tmp_path.iterdir() if path.name.endswith("_opdmd"))
    kept, written = ds.snapshot(), decode(metadata.read_bytes(), "check")
    assert kept.stats.equals(written.stats, check_metadata=True)
    assert kept.schema is not None and written.schema is not None
    assert kept.schema.equals(written.schema, check_metadata=True)
    assert (kept.commit, kept.ordered_on, kept.exists, kept.legacy) == (
        written.commit,
        written.ordered_on,
        written.exists,
        written.legacy,
    )
    assert dict(kept.key_value_metadata) == dict(written.key_value_metadata)


def test_a_file_committed_by_another_process_is_decoded(tmp_path: Path, decodes: list[str]) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0))
    script = (
        "import sys, numpy as np, pandas as pd; from oupsish import OrderedParquetDataset; "
        "OrderedParquetDataset(sys.argv[1]).write("
        "df=pd.DataFrame({'ts': np.arange(10, 20), 'v': np.zeros(10)}))"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "ds")], check=True)
    fresh = OrderedParquetDataset(tmp_path / "ds")
    assert len(decodes) == 1
    assert fresh.snapshot().commit == 2
    assert fresh.read()["ts"].tolist() == list(range(20))


def test_a_metadata_file_restored_to_older_bytes_gives_the_older_snapshot(
    tmp_path: Path, decodes: list[str]
) -> None:
    # Whatever its inode, size or times: the bytes read are what the snapshot depends on.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0))
    metadata = next(path for path in tmp_path.iterdir() if path.name.endswith("_opdmd"))
    older = metadata.read_bytes()
    ds.write(df=frame(10))
    assert OrderedParquetDataset(tmp_path / "ds").snapshot().commit == 2
    metadata.write_bytes(older)
    assert OrderedParquetDataset(tmp_path / "ds").snapshot().commit == 1
    assert len(decodes) == 1


def test_snapshots_kept_stay_within_the_limit(
    tmp_path: Path, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path, Key)
    for name in "abcd":
        store[Key(name)].write(df=frame(0), ordered_on="ts")
    one = snapshot_cache.cached_bytes() // 4
    snapshot_cache.clear()
    monkeypatch.setattr("oupsish.snapshot_cache.LIMIT_BYTES", 2 * one)
    for name in "abcd":
        store[Key(name)]
        assert snapshot_cache.cached_bytes() <= 2 * one
    decodes.clear()
    store[Key("d")]  # among the two most recent
    assert decodes == []
    store[Key("a")]  # forgotten
    assert len(decodes) == 1


def test_a_kept_snapshot_does_not_share_the_callers_memory(
    tmp_path: Path, decodes: list[str]
) -> None:
    # The caller may reuse its arrays once write() returns.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(3):
        ts = np.arange(10 * step, 10 * step + 10)
        ds.write(
            df=pd.DataFrame({"ts": ts, "v": np.zeros(10)}, copy=False),
            row_group_target_size=40,
            max_n_off_target_rgs=2,
        )
        ts[:] = -1
    kept = OrderedParquetDataset(tmp_path / "ds").snapshot()
    assert decodes == []
    metadata = next(path for path in tmp_path.iterdir() if path.name.endswith("_opdmd"))
    assert kept.stats.equals(decode(metadata.read_bytes(), "check").stats)
    assert kept.mins.tolist() == [0] and kept.maxs.tolist() == [29]


def test_a_limit_of_zero_keeps_none_and_an_entry_too_large_replaces_none(
    tmp_path: Path, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path, Key)
    store[Key("a")].write(df=frame(0), ordered_on="ts")
    assert snapshot_cache.cached_bytes() > 0
    monkeypatch.setattr("oupsish.snapshot_cache.LIMIT_BYTES", 0)
    store[Key("a")].write(df=frame(10))  # its snapshot is too large: the older one goes too
    assert snapshot_cache.cached_bytes() == 0
    decodes.clear()
    for _ in range(2):
        assert store[Key("a")].snapshot().commit == 2
    assert len(decodes) == 2


def test_a_kept_snapshot_cannot_be_changed_through_its_values(tmp_path: Path) -> None:
    # Every handle on the same state shares it.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0), row_group_target_size=5)
    snapshot = OrderedParquetDataset(tmp_path / "ds").snapshot()
    assert isinstance(snapshot.file_names, tuple)
    for values in (snapshot.n_rows, snapshot.mins, snapshot.maxs, snapshot.row_offsets):
        with pytest.raises(ValueError, match="read-only"):
            values[0] = 7
    assert OrderedParquetDataset(tmp_path / "ds").snapshot().mins.tolist() == [0, 5]
