"""The tails dataset handles keep between coalescing writes, within one budget per process."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from oupsish import OrderedParquetDataset, tail_cache
from oupsish.read import read_row_groups
from oupsish.testing import assert_same_rows

CHUNK = 1_000
COALESCING: dict[str, Any] = {"row_group_target_size": 10 * CHUNK, "max_n_off_target_rgs": 2}


def frame(step: int) -> pd.DataFrame:
    start = step * CHUNK
    df: pd.DataFrame = pd.DataFrame(
        {"ts": np.arange(start, start + CHUNK), "v": np.arange(start, start + CHUNK) * 0.5}
    )
    return df


@pytest.fixture(autouse=True)
def restored_limit() -> Iterator[None]:
    limit = tail_cache.get_limit()
    yield
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


def test_handles_keep_their_tails_within_the_process_limit(
    tmp_path: Path, disk_reads: list[int]
) -> None:
    tail_cache.set_limit(5 * one_tail_bytes(tmp_path))
    handles = [OrderedParquetDataset(tmp_path / f"ds{i}", ordered_on="ts") for i in range(8)]
    for step in range(6):
        for ds in handles:
            ds.write(df=frame(step), **COALESCING)
            assert tail_cache.kept_bytes() <= tail_cache.get_limit()
    # Each round forgets the tails of the handles written longest ago: their merges read
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


def test_a_dropped_handle_no_longer_counts(tmp_path: Path) -> None:
    before = tail_cache.kept_bytes()
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    ds.write(df=frame(0), **COALESCING)
    assert tail_cache.kept_bytes() > before
    del ds
    gc.collect()
    assert tail_cache.kept_bytes() == before


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
    before = tail_cache.kept_bytes()
    numbers = OrderedParquetDataset(tmp_path / "numbers", ordered_on="ts")
    for step in range(3):
        numbers.write(df=frame(step), **COALESCING)
    assert tail_cache.kept_bytes() - before == 3 * CHUNK * 8  # one int64 column
    strings = OrderedParquetDataset(tmp_path / "strings", ordered_on="ts")
    for step in range(3):
        strings.write(df=frame(step).assign(s="abc"), **COALESCING)
    assert tail_cache.kept_bytes() - before > 3 * CHUNK * (8 + 8 + 3)
    for ds, extra in ((numbers, {}), (strings, {"s": "abc"})):
        ds.write(df=frame(3).assign(**extra), **COALESCING)
        expected = pd.concat([frame(step).assign(**extra) for step in range(4)])
        assert_same_rows(ds.to_pandas(), expected)
