"""Files of fixed-width columns written from Arrow's buffers (``oupsish.plain_encode``):
byte for byte the files pyarrow writes, or left to pyarrow."""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oupsish import OrderedParquetDataset, plain_encode, stitch, thrift
from oupsish import io as parquet_io
from oupsish.durable import SyncedFile
from oupsish.io import ParquetOptions
from oupsish.threads import LazyPool

TYPES: dict[str, tuple[pa.DataType, str]] = {
    "int32": (pa.int32(), "int32"),
    "int64": (pa.int64(), "int64"),
    "uint32": (pa.uint32(), "uint32"),
    "uint64": (pa.uint64(), "uint64"),
    "float32": (pa.float32(), "float32"),
    "float64": (pa.float64(), "float64"),
    "timestamp[ns]": (pa.timestamp("ns"), "int64"),
    "timestamp[us, tz]": (pa.timestamp("us", "Europe/Paris"), "int64"),
    "timestamp[ms]": (pa.timestamp("ms"), "int64"),
    "date32": (pa.date32(), "int32"),
    "time32[ms]": (pa.time32("ms"), "int32"),
    "time64[us]": (pa.time64("us"), "int64"),
    "time64[ns]": (pa.time64("ns"), "int64"),
    "duration[us]": (pa.duration("us"), "int64"),
}
LENGTHS = [1, 7, 19_999, 20_000, 20_001, 40_000, 61_234]


def _values(kind: str, rng: np.random.Generator, n: int) -> pa.Array[Any]:
    arrow_type, storage = TYPES[kind]
    if storage.startswith("float"):
        values = rng.normal(size=n).astype(storage)
        values[rng.random(n) < 0.2] = 0.0
        values[rng.random(n) < 0.2] = -0.0  # Parquet's rule for zero bounds
        values[rng.random(n) < 0.01] = np.inf
        values[rng.random(n) < 0.01] = -np.inf
        return pa.array(values, arrow_type)
    if kind.startswith("time"):
        unit = getattr(arrow_type, "unit", "ns")
        limit = {"ms": 86_400_000, "us": 86_400 * 10**6, "ns": 86_400 * 10**9}[unit]
        high = limit if kind.startswith(("time32", "time64")) else 2**62
        times: pa.Array[Any] = pa.array(rng.integers(0, high, n, dtype=storage)).cast(arrow_type)
        return times
    info = np.iinfo(storage)
    integers = rng.integers(info.min, info.max, n, dtype=storage, endpoint=True)
    cast: pa.Array[Any] = pa.array(integers).cast(arrow_type)
    return cast


def _pyarrow_bytes(table: pa.Table, codec: Any) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=codec, use_dictionary=False)
    return bytes(sink.getvalue().to_pybytes())


# Tests of files this module writes; with pyarrow < 23 it writes none (tested at the end).
writes_here = pytest.mark.skipif(
    not plain_encode.PAGES_LIKE_PYARROW, reason="pyarrow < 23 cuts pages by size only"
)

THREADS = LazyPool(2, "test-plain-encode")
real = pq.write_table


def _ours(table: pa.Table, codec: str, threads: LazyPool | None = None) -> bytes | None:
    pieces = plain_encode.encoded_pieces(table, codec, {}, threads)
    return None if pieces is None else b"".join(pieces)


@writes_here
@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=4),
    n_rows=st.sampled_from(LENGTHS),
    codec=st.sampled_from(["none", "snappy", "zstd", "gzip", "brotli"]),
    required=st.booleans(),
    layout=st.sampled_from(["one chunk", "sliced", "chunked"]),
    threads=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_files_are_pyarrows_byte_for_byte(
    kinds: list[str],
    n_rows: int,
    codec: str,
    required: bool,
    layout: str,
    threads: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    extra = 5 if layout == "sliced" else 0
    arrays = [_values(kind, rng, n_rows + extra) for kind in kinds]
    fields = [
        pa.field(f"c{i}", array.type, nullable=not (required and i == 0))
        for i, array in enumerate(arrays)
    ]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    if layout == "sliced":
        table = table.slice(3, n_rows)
    elif layout == "chunked" and n_rows > 1:
        table = pa.concat_tables([table.slice(0, n_rows // 3), table.slice(n_rows // 3)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plain_encode, "MIN_ROWS", 1)  # small tables too, to compare the bytes
        ours = _ours(table, codec, THREADS if threads else None)
    assert ours is not None, "the fast path should take every supported type"
    assert ours == _pyarrow_bytes(table, codec)
    # The footer kept for coalescing writes (built when first asked for) is the decoded one.
    (size,) = struct.unpack("<I", ours[-8:-4])
    kept, _ = stitch._footer(stitch.Source.of_bytes(ours))
    assert kept == thrift.decode(ours[-8 - size : -8])[0]


@writes_here
def test_schemas_differing_only_in_metadata_keep_their_own() -> None:
    # Schemas compare equal whatever their metadata: the forms must not be shared.
    values = pa.array(np.arange(30_000, dtype=np.int64))
    for metadata in ({"source": "a"}, {"source": "bb"}, None):
        table = pa.table({"same_fields": values}).replace_schema_metadata(metadata)
        assert _ours(table, "none") == _pyarrow_bytes(table, "none")
    field = pa.field("same_fields", pa.int64(), metadata={"unit": "m"})
    table = pa.table({"same_fields": values}, schema=pa.schema([field]))
    assert _ours(table, "none") == _pyarrow_bytes(table, "none")


@writes_here
@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("run_bytes", [1, 300_000, 10**9])
def test_pages_compressed_on_threads_come_in_order(
    monkeypatch: pytest.MonkeyPatch, run_bytes: int, codec: str
) -> None:
    # Runs of one page, of a few pages, and one run: more runs than the threads hold
    # ahead. gzip's codec keeps a stream: threads sharing one crashed the process.
    monkeypatch.setattr(plain_encode, "RUN_BYTES", run_bytes)
    rng = np.random.default_rng(3)
    table = pa.table({f"c{i}": pa.array(rng.normal(size=60_000)) for i in range(3)})
    for _ in range(3):
        assert _ours(table, codec, THREADS) == _pyarrow_bytes(table, codec)


@writes_here
def test_columns_in_many_chunks_are_written_as_one() -> None:
    # As the CSV reader gives them: pages span chunks, which are not combined (a copy).
    rng = np.random.default_rng(5)
    parts = [
        pa.table({"t": pa.array(rng.integers(0, 10**9, n)), "x": pa.array(rng.normal(size=n))})
        for n in rng.integers(0, 9_000, 37)
    ]
    table = pa.concat_tables(parts)
    assert table.column(0).num_chunks == 37
    assert _ours(table, "snappy") == _pyarrow_bytes(table, "snappy")


@writes_here
def test_nan_in_any_chunk_of_a_page_leaves_the_table_to_pyarrow() -> None:
    clean = pa.table({"nan_chunk": pa.array(np.arange(30_000, dtype=np.float64))})
    assert _ours(clean, "none") == _pyarrow_bytes(clean, "none")  # the form is now kept
    with_nan = pa.table({"nan_chunk": pa.array([1.0, np.nan, 2.0])})
    assert _ours(pa.concat_tables([clean.slice(0, 5), with_nan, clean]), "none") is None


@writes_here
def test_pandas_metadata_is_kept() -> None:
    frame = pd.DataFrame({"t": pd.date_range("2026", periods=30_000, freq="s"), "x": 1.5})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert _ours(table, "snappy") == _pyarrow_bytes(table, "snappy")


@pytest.mark.parametrize(
    ("table", "extra"),
    [
        (pa.table({"x": pa.array([1.0, None, 3.0])}), {}),
        (pa.table({"x": pa.array([1.0, np.nan, 3.0])}), {}),
        (pa.table({"x": pa.array(["a", "b"])}), {}),
        (pa.table({"x": pa.array([1, 2], pa.timestamp("s"))}), {}),
        (pa.table({"x": pa.array([1, 2], pa.int16())}), {}),
        (pa.table({"x": pa.array([1, 2])}), {"use_dictionary": True}),
        (pa.table({"x": pa.array([1, 2])}), {"data_page_size": 1024}),
        (pa.table({"x": pa.array([1, 2])}), {"compression_level": 5, "zstd": True}),
        (pa.table({"x": pa.array([], pa.int64())}), {}),
        (pa.table({"x": pa.array(np.arange(plain_encode.MIN_ROWS - 1))}), {}),
        (pa.table({f"c{i}": pa.array(np.arange(10_000)) for i in range(200)}), {}),
        (pa.table({"x": pa.array(np.arange(20_000))}), {"by column": True}),
    ],
    ids=[
        "nulls",
        "nan",
        "strings",
        "timestamp[s]",
        "int16",
        "dictionary",
        "page size",
        "codec level",
        "empty",
        "small",
        "wide",
        "codec per column",
    ],
)
def test_other_tables_and_options_are_left_to_pyarrow(
    table: pa.Table, extra: dict[str, Any]
) -> None:
    codec: Any = "zstd" if extra.pop("zstd", False) else "snappy"
    if extra.pop("by column", False):
        codec = {"x": "zstd"}
    assert plain_encode.encoded_pieces(table, codec, extra, THREADS) is None
    options = ParquetOptions(codec, extra)
    read = pq.read_table(pa.BufferReader(parquet_io.encode(table, options)))
    assert read.cast(table.schema).to_pandas().equals(table.to_pandas())  # NaN equals NaN


@writes_here
def test_the_probe_is_made_once_per_schema_whatever_the_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The probe's rows are made up: a first table with NaN neither turns the path off
    # nor has every later table probed again.
    encoded = []

    def counted(*args: Any, **kwargs: Any) -> None:
        encoded.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", counted)
    schema = pa.schema([("nan_probe", pa.float64())])
    with_nan = pa.table({"nan_probe": [np.nan, 1.0]}, schema=schema)
    for _ in range(3):
        assert _ours(with_nan, "none") is None
    clean = pa.table({"nan_probe": pa.array(np.linspace(-1, 1, 25_000))}, schema=schema)
    assert _ours(clean, "none") is not None
    assert len(encoded) == 2  # the template and the probe, once
    monkeypatch.undo()
    assert _ours(clean, "none") == _pyarrow_bytes(clean, "none")


def test_a_probe_that_differs_turns_the_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if pyarrow cut pages elsewhere: the probe catches it before any file is written.
    monkeypatch.setattr(plain_encode, "ROWS_PER_PAGE", 10_000)
    table = pa.table({"other_pages": pa.array(np.arange(30_000, dtype=np.int64))})
    assert plain_encode.encoded_pieces(table, "none", {}) is None
    assert bytes(parquet_io.encode(table, ParquetOptions("none"))) == _pyarrow_bytes(table, "none")


@writes_here
@pytest.mark.parametrize("compression", ["snappy", "none"])
def test_dataset_files_are_pyarrows_without_its_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    encoded = []
    real_encode = parquet_io._encode

    def counted(*args: Any, **kwargs: Any) -> None:
        encoded.append(1)
        real_encode(*args, **kwargs)

    monkeypatch.setattr(parquet_io, "_encode", counted)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=50_000, freq="ms"),
            "a": np.random.default_rng(0).normal(size=50_000),
            "n": np.arange(50_000),
        }
    )
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="timestamp")
    ds.write(df=frame, row_group_target_size=30_000, compression=compression)
    assert encoded == []  # written from the frame's buffers, not by pyarrow's encoder
    files = sorted((tmp_path / "ds").glob("*.parquet"))
    assert len(files) == 2
    for path in files:
        table = pq.read_table(path)
        assert path.read_bytes() == _pyarrow_bytes(table, compression)
    assert ds.read().equals(frame)


@pytest.mark.parametrize("batch_bytes", [1, 100, 10**6])
def test_pieces_reach_the_file_in_order(tmp_path: Path, batch_bytes: int) -> None:
    pieces = [bytes([i % 251]) * (i % 17) for i in range(2_000)]  # more than one writev takes
    file = SyncedFile(tmp_path / "f", sync=True)
    file.write_pieces(iter(pieces), batch_bytes)
    file.finish().result()
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)


@writes_here
def test_footers_written_here_are_not_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Coalescing writes read the footers of the files they copy: those this process
    # wrote are known already.
    read, decoded = [], []
    real_footer, real_decode = stitch._footer, stitch.decode  # type: ignore[attr-defined]

    def footer(source: Any) -> Any:
        read.append(1)
        return real_footer(source)

    def decode(data: Any) -> Any:
        decoded.append(1)
        return real_decode(data)

    monkeypatch.setattr(stitch, "_footer", footer)
    monkeypatch.setattr(stitch, "decode", decode)
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="timestamp")
    for i in range(8):
        frame = pd.DataFrame(
            {
                "timestamp": pd.date_range(f"2026-01-0{i + 1}", periods=10_000, freq="s"),
                "x": np.arange(10_000, dtype=np.float64),
            }
        )
        ds.write(df=frame, row_group_target_size=30_000, max_n_off_target_rgs=2)
    assert len(ds) < 8 and read  # merges copied files, reading their footers
    assert decoded == []


@writes_here
def test_a_footer_kept_to_build_is_built_alike_by_threads_at_once() -> None:
    # The decoded form of a footer written here is built when first asked for; threads
    # asking at once may each build it, and must get equal structs.
    table = pa.table({"t": pa.array(np.arange(20_000)), "x": pa.array(np.ones(20_000))})
    data = b"".join(plain_encode.encoded_pieces(table, "none", {}) or [])
    (size,) = struct.unpack("<I", data[-8:-4])
    expected = thrift.decode(data[-8 - size : -8])[0]
    start = threading.Barrier(4)
    found: list[Any] = []

    def read() -> None:
        start.wait()
        found.append(stitch._footer(stitch.Source.of_bytes(data))[0])

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and all(footer == expected for footer in found)


def test_with_pyarrow_before_23_every_file_is_pyarrows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain_encode, "PAGES_LIKE_PYARROW", False)
    table = pa.table({"v": pa.array(np.arange(30_000, dtype="int64"))})
    assert plain_encode.encoded_pieces(table, "snappy", {}, None) is None
