"""A row group's columns encoded on several threads (``oupsish.parallel_encode``,
``oupsish.column_join``): the file is the one pyarrow writes on one thread, byte for byte."""

from __future__ import annotations

import errno
import functools
import os
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FilesOpenUnder
from hypothesis import given, settings
from hypothesis import strategies as st

from oupsish import OrderedParquetDataset, parallel_encode
from oupsish import io as parquet_io
from oupsish.column_join import JoinError, Part, joined_footer, plan_groups, split_footer
from oupsish.durable import SyncedFile
from oupsish.io import ParquetOptions
from oupsish.parallel_encode import encode_in_parts
from oupsish.testing.crash import read_state, same_state, stray_files
from oupsish.threads import LazyPool

THREADS = LazyPool(3, "test-encode")


# --- planning ------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=40), st.integers(1, 12))
def test_groups_cover_the_columns_in_order_and_balance_them(sizes: list[int], n: int) -> None:
    groups = plan_groups(sizes, n)
    assert [index for group in groups for index in group] == list(range(len(sizes)))
    assert len(groups) == min(n, len(sizes))
    assert all(len(group) for group in groups)
    heaviest = max(sum(sizes[i] for i in group) for group in groups)
    assert heaviest <= sum(sizes) / len(groups) + max(sizes)


# --- joined files: byte for byte what pyarrow writes -----------------------------------------


def _strings(rng: np.random.Generator, n: int) -> list[str | None]:
    words = ["", "a", "bb", "été", "x" * 40]
    picks = rng.integers(0, len(words), n)
    return [None if rng.random() < 0.1 else words[int(pick)] for pick in picks]


def _column(kind: str, rng: np.random.Generator, n: int) -> pa.Array[Any]:
    nulls = rng.random(n) < 0.1
    if kind == "i64":
        return pa.array(rng.integers(-(2**40), 2**40, n), mask=nulls)
    if kind == "f64":
        values = rng.normal(size=n)
        values[rng.random(n) < 0.05] = np.nan
        return pa.array(values, mask=nulls)
    if kind == "bool":
        return pa.array(rng.random(n) < 0.5, mask=nulls)
    if kind == "ts_tz":
        return pa.array(rng.integers(0, 2**50, n), mask=nulls).cast(pa.timestamp("us", "UTC"))
    if kind == "str":
        return pa.array(_strings(rng, n), pa.string())
    if kind == "dict":
        return pa.array(_strings(rng, n), pa.string()).dictionary_encode()
    if kind == "decimal":
        return pa.array([Decimal(int(v)) / 100 for v in rng.integers(-(10**6), 10**6, n)])
    if kind == "list":
        return pa.array([[int(v)] * int(v % 3) for v in rng.integers(0, 100, n)])
    if kind == "struct":
        return pa.StructArray.from_arrays(
            [pa.array(rng.integers(0, 9, n)), pa.array(_strings(rng, n))], ["n", "s"]
        )
    raise AssertionError(kind)


KINDS = ("i64", "f64", "bool", "ts_tz", "str", "dict", "decimal", "list", "struct")


@st.composite
def tables_and_groups(draw: st.DrawFn) -> tuple[pa.Table, list[range]]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=2, max_size=7))
    n_rows = draw(st.integers(1, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = pa.table({f"{kind}_{i}": _column(kind, rng, n_rows) for i, kind in enumerate(kinds)})
    sizes = [column.nbytes for column in table.columns]
    groups = plan_groups(sizes, draw(st.integers(2, len(kinds))))
    return table.replace_schema_metadata({"origin": "test"}), groups


OPTIONS = st.sampled_from(
    [
        ParquetOptions(),
        ParquetOptions("zstd", {"compression_level": 3}),
        ParquetOptions("none", {"use_dictionary": True, "data_page_size": 2048}),
        ParquetOptions("gzip", {"write_statistics": False, "data_page_version": "2.0"}),
        ParquetOptions("snappy", {"write_page_checksum": True, "use_dictionary": ["str_0"]}),
    ]
)


def single_threaded(table: pa.Table, options: ParquetOptions) -> bytes:
    memory = pa.BufferOutputStream()
    parquet_io._encode(memory, table, options)
    return bytes(memory.getvalue())


def in_parts(table: pa.Table, options: ParquetOptions, groups: list[range], piece: int) -> bytes:
    memory = pa.BufferOutputStream()
    encode_to = functools.partial(parquet_io._encode_part, options=options)
    encode_in_parts(memory.write, table, groups, encode_to, THREADS, piece)
    return bytes(memory.getvalue())


@settings(max_examples=60, deadline=None)
@given(tables_and_groups(), OPTIONS, st.sampled_from([1, 100, 4096, 512 * 2**10]))
def test_joined_file_is_the_single_threaded_file(
    drawn: tuple[pa.Table, list[range]], options: ParquetOptions, piece: int
) -> None:
    table, groups = drawn
    assert in_parts(table, options, groups, piece) == single_threaded(table, options)


def test_files_with_a_page_index_are_not_joined() -> None:
    table = pa.table({"a": [1, 2], "b": [3.0, 4.0]})
    options = ParquetOptions("snappy", {"write_page_index": True})
    parts = []
    for name in ("a", "b"):
        data = memoryview(single_threaded(table.select([name]), options))
        start, metadata = split_footer(data)
        parts.append(Part(metadata, start - 4))
    with pytest.raises(JoinError, match="unexpected column chunk fields"):
        joined_footer(parts, b"")


@pytest.mark.parametrize("end", [b"", b"PAR1", b"\xff\xff\xff\x7fPAR1", b"\x02\x00\x00\x00PAR1"])
def test_damaged_footers_are_refused(end: bytes) -> None:
    with pytest.raises(JoinError):
        split_footer(end)


# --- through the public API -----------------------------------------------------------------


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table of 2+ columns is encoded in parts, on 3 threads."""
    monkeypatch.setattr(parquet_io, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parquet_io, "_encoders", THREADS)


def frame(start: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": np.arange(start, start + 2 * n, 2, dtype=np.int64),
            "key": rng.integers(0, 3, n),
            "value": rng.normal(size=n),
            "label": rng.choice(["x", "yy", "zzz"], n),
        }
    )
    return df


WRITES: list[dict[str, Any]] = [
    {"df": frame(0, 500, 1), "row_group_target_size": 200},
    {"df": frame(1000, 120, 2), "row_group_target_size": 200, "max_n_off_target_rgs": 2},
    {"df": frame(1240, 90, 3), "row_group_target_size": 200, "max_n_off_target_rgs": 2},
    {"df": frame(301, 150, 4), "row_group_target_size": 200, "duplicates_on": "ts"},
    {"df": frame(2000, 400, 5), "row_group_target_size": 200, "compression": "zstd"},
]


def write_all(folder: Path) -> dict[str, bytes]:
    dataset = OrderedParquetDataset(folder, ordered_on="ts")
    for write in WRITES:
        dataset.write(**write)
    return {path.name: path.read_bytes() for path in sorted(folder.glob("file_*.parquet"))}


@pytest.mark.parametrize("held_in_memory", [0, 1000, parallel_encode.HELD_IN_MEMORY])
def test_datasets_written_in_parts_hold_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: None, held_in_memory: int
) -> None:
    # Parts waiting for their turn are held in memory, or spilled to a temporary file.
    monkeypatch.setattr(parallel_encode, "HELD_IN_MEMORY", held_in_memory)
    monkeypatch.setattr(parquet_io, "WRITE_BUFFER_BYTES", 256)
    in_parts_files = write_all(tmp_path / "parts")
    monkeypatch.setattr(parquet_io, "PARALLEL_MIN_BYTES", 1 << 62)
    single_files = write_all(tmp_path / "single")
    assert len(in_parts_files) > 5
    assert in_parts_files == single_files


def test_no_descriptor_is_left_open(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parallel: None,
    files_open_under: FilesOpenUnder,
) -> None:
    monkeypatch.setattr(parallel_encode, "HELD_IN_MEMORY", 0)  # every waiting part spilled
    table = pa.Table.from_pandas(frame(0, 50_000, 1), preserve_index=False)
    parquet_io.write_file(tmp_path / "f.parquet", table, ParquetOptions(), sync=True).result()
    assert files_open_under(tmp_path) == []
    assert pq.read_table(tmp_path / "f.parquet").equals(table)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    OrderedParquetDataset(folder, ordered_on="ts").write(
        df=frame(0, 300, 1), row_group_target_size=100
    )
    return folder


def write_over(folder: Path) -> None:
    OrderedParquetDataset(folder).write(df=frame(101, 200, 2), row_group_target_size=100)


def check_unchanged(folder: Path, before: Any) -> None:
    state, stats = read_state(folder)
    assert same_state(state, before)
    assert stray_files(folder, stats) == []
    OrderedParquetDataset(folder).write(df=frame(5000, 10, 3), row_group_target_size=100)


@pytest.mark.parametrize("failing_column", ["ts", "value", "label"])  # first part ... last
def test_an_encoder_error_refuses_the_write(
    written: Path, monkeypatch: pytest.MonkeyPatch, parallel: None, failing_column: str
) -> None:
    before = read_state(written)[0]
    encode_part = parquet_io._encode_part

    def failing(sink: pa.NativeFile, table: pa.Table, *args: Any, **kwargs: Any) -> None:
        if failing_column in table.column_names:
            raise pa.ArrowInvalid("encoder failed")
        encode_part(sink, table, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(parquet_io, "_encode_part", failing)
        with pytest.raises(pa.ArrowInvalid, match="encoder failed"):
            write_over(written)
    check_unchanged(written, before)


@pytest.mark.parametrize("failing_call", [1, 2, 3, 6])
def test_a_disk_error_from_an_encoder_thread_refuses_the_write(
    written: Path, monkeypatch: pytest.MonkeyPatch, parallel: None, failing_call: int
) -> None:
    before = read_state(written)[0]
    calls: list[str] = []
    write = SyncedFile.write

    def failing(self: SyncedFile, data: Any) -> int:
        calls.append(threading.current_thread().name)
        if len(calls) == failing_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    with monkeypatch.context() as patch:
        patch.setattr(parquet_io, "WRITE_BUFFER_BYTES", 64)  # many writes per file
        patch.setattr(SyncedFile, "write", failing)
        with pytest.raises(OSError, match="No space left"):
            write_over(written)
    n_calls = len(calls)
    time.sleep(0.05)
    assert len(calls) == n_calls  # nothing writes once the write has failed
    assert all(name.startswith("test-encode") for name in calls)
    check_unchanged(written, before)
