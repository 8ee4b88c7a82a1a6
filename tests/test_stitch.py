"""Row groups concatenated without re-encoding (``oupsish.stitch``, ``oupsish.thrift``)."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oupsish import CorruptDatasetError, OrderedParquetDataset, tail_cache
from oupsish import stitch as stitch_module
from oupsish.stitch import Source, concatenate_row_groups
from oupsish.testing import assert_same_rows
from oupsish.thrift import ThriftError, decode, encode

COLUMN_TYPES: dict[str, pa.DataType] = {
    "i8": pa.int8(),
    "i32": pa.int32(),
    "i64": pa.int64(),
    "u32": pa.uint32(),
    "u64": pa.uint64(),
    "f32": pa.float32(),
    "f64": pa.float64(),
    "bool": pa.bool_(),
    "ts": pa.timestamp("ns"),
    "ts_tz": pa.timestamp("us", tz="Europe/Paris"),
    "date": pa.date32(),
    "str": pa.string(),
    "bin": pa.binary(),
}


def column_values(data_type: pa.DataType) -> st.SearchStrategy[Any]:
    if pa.types.is_unsigned_integer(data_type):
        return st.integers(0, 2 ** (data_type.bit_width) - 1)
    if pa.types.is_integer(data_type):
        bound = 2 ** (data_type.bit_width - 1)
        return st.integers(-bound, bound - 1)
    if pa.types.is_floating(data_type):
        if data_type == pa.float32():
            return st.floats(allow_nan=True, width=32)
        return st.floats(allow_nan=True)
    if pa.types.is_boolean(data_type):
        return st.booleans()
    if pa.types.is_timestamp(data_type):
        return st.integers(-(2**55), 2**55)  # stored as int64, within datetime's range
    if pa.types.is_date(data_type):
        return st.integers(-(10**5), 10**5)  # stored as int32, within datetime's range
    if pa.types.is_string(data_type):
        return st.text(max_size=8)
    return st.binary(max_size=8)


def as_array(values: list[Any], data_type: pa.DataType) -> pa.Array[Any]:
    if pa.types.is_timestamp(data_type):
        return pa.array(values, pa.int64()).cast(data_type)
    if pa.types.is_date(data_type):
        return pa.array(values, pa.int32()).cast(data_type)
    return pa.array(values, data_type)


@st.composite
def tables(draw: st.DrawFn) -> tuple[pa.Schema, list[pa.Table]]:
    """A schema and 2-4 tables of it (values or nulls), some of them empty."""
    names = draw(st.lists(st.sampled_from(sorted(COLUMN_TYPES)), min_size=1, unique=True))
    schema = pa.schema([pa.field(name, COLUMN_TYPES[name]) for name in names])
    parts = []
    for _ in range(draw(st.integers(2, 4))):
        n_rows = draw(st.integers(1, 12))  # a dataset has no empty row group
        columns = []
        for field in schema:
            values = st.none() | column_values(field.type)
            drawn = draw(st.lists(values, min_size=n_rows, max_size=n_rows))
            columns.append(as_array(drawn, field.type))
        parts.append(pa.Table.from_arrays(columns, schema=schema))
    return schema, parts


def assert_same_table(got: pa.Table, expected: pa.Table) -> None:
    """Equal tables, NaN included (``Table.equals`` finds NaN unequal to itself)."""
    assert got.schema == expected.schema
    assert [c.null_count for c in got.columns] == [c.null_count for c in expected.columns]
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas())


def encoded(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    options.setdefault("use_dictionary", False)
    options.setdefault("row_group_size", max(1, table.num_rows))
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def concatenated(files: list[bytes], n_rows: int) -> bytes | None:
    """The concatenation of files held in memory (``n_rows`` in all), as one file's bytes."""
    pieces = concatenate_row_groups([Source.of_bytes(data) for data in files], n_rows)
    if pieces is None:
        return None
    return b"".join(
        piece
        if isinstance(piece, bytes)
        else files[piece.source][piece.offset : piece.offset + piece.length]
        for piece in pieces
    )


def statistics(data: bytes) -> list[tuple[Any, Any, Any]]:
    """Each column's (min, max, null count), ``None`` where absent."""
    group = pq.read_metadata(io.BytesIO(data)).row_group(0)
    found: list[tuple[Any, Any, Any]] = []
    for index in range(group.num_columns):
        stats = group.column(index).statistics
        if stats is None:
            found.append((None, None, None))
            continue
        bounds = (stats.min, stats.max) if stats.has_min_max else (None, None)
        found.append((*bounds, stats.null_count))
    return found


@settings(deadline=None)
@given(tables(), st.sampled_from(["none", "snappy", "zstd"]))
def test_concatenation_reads_as_the_concatenated_rows(
    drawn: tuple[pa.Schema, list[pa.Table]], compression: str
) -> None:
    _, parts = drawn
    whole = pa.concat_tables(parts)
    data = concatenated([encoded(part, compression=compression) for part in parts], len(whole))
    assert data is not None
    assert_same_table(pq.read_table(io.BytesIO(data)), whole)
    metadata = pq.read_metadata(io.BytesIO(data))
    assert metadata.num_row_groups == 1
    assert metadata.num_rows == whole.num_rows
    expected = statistics(encoded(whole, compression=compression))
    got = statistics(data)
    per_part = [statistics(encoded(part)) for part in parts]
    for index, ((low, high, nulls), (want_low, want_high, want_nulls)) in enumerate(
        zip(got, expected, strict=True)
    ):
        assert nulls == want_nulls
        if low is not None:  # float bounds: -0.0 and 0.0 compare equal, either is right
            assert (low, high) == (want_low, want_high)
        elif want_low is not None:
            # Bounds are dropped only when a part had values but no bounds (only NaN).
            assert any(
                stats[index][0] is None and part.column(index).null_count < part.num_rows
                for stats, part in zip(per_part, parts, strict=True)
            )


def test_a_concatenation_concatenates_again() -> None:
    parts = [
        pa.table({"v": pa.array(np.arange(start, start + 5, dtype=np.int64))})
        for start in (0, 5, 10)
    ]
    first = concatenated([encoded(parts[0]), encoded(parts[1])], 10)
    assert first is not None
    second = concatenated([first, encoded(parts[2])], 15)
    assert second is not None
    assert pq.read_table(io.BytesIO(second)).equals(pa.concat_tables(parts))


@pytest.mark.parametrize(
    ("second", "n_rows"),
    [
        (lambda t: encoded(t, compression="zstd"), 10),  # another codec
        (lambda t: encoded(t, use_dictionary=True), 10),  # a dictionary page
        (lambda t: encoded(t, write_page_index=True), 10),  # a page index
        (lambda t: encoded(t.cast(pa.schema([pa.field("v", pa.int32())]))), 10),  # a schema
        (lambda t: encoded(pa.concat_tables([t, t]), row_group_size=2), 15),  # 5 row groups
        (lambda t: encoded(t)[:-10], 10),  # truncated
        (lambda t: b"PAR1" + os.urandom(64) + struct.pack("<I", 40) + b"PAR1", 10),  # garbage
        (lambda t: b"not a parquet file", 10),
        (encoded, 11),  # not the rows expected
    ],
)
def test_what_cannot_be_concatenated_is_refused(second: Any, n_rows: int) -> None:
    table = pa.table({"v": pa.array(np.arange(5, dtype=np.int64))})
    assert concatenated([encoded(table), encoded(table)], 10) is not None
    assert concatenated([encoded(table), second(table)], n_rows) is None


def test_one_file_is_not_concatenated() -> None:
    assert concatenated([encoded(pa.table({"v": [1]}))], 1) is None


def test_unordered_statistics_are_refused() -> None:
    decimals = pa.table({"d": pa.array([1, -2], pa.decimal128(5, 0))})
    assert concatenated([encoded(decimals), encoded(decimals)], 4) is None


@settings(deadline=None, max_examples=300)
@given(st.data())
def test_damaged_footers_never_raise(data: st.DataObject) -> None:
    # A damaged file may make a damaged concatenation (its pages are copied, unread), but
    # reading its footer stays within its bytes and ends in a result or None, never an error.
    table = pa.table({"v": pa.array(np.arange(5, dtype=np.int64)), "s": ["a", "b", "c", "d", "e"]})
    damaged = bytearray(encoded(table))
    (size,) = struct.unpack("<I", damaged[-8:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(len(damaged) - 8 - size, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    files = [bytes(damaged), encoded(table)]
    result = concatenated(files, 10)
    if result is not None:
        assert len(result) <= sum(len(file) for file in files) + 4096


def test_thrift_round_trips_pyarrow_footers() -> None:
    table = pa.table(
        {
            "v": [1.0, None, 3.0],
            "s": ["x", None, "z"],
            "t": pa.array([1, 2, 3], pa.timestamp("ms", tz="UTC")),
        }
    )
    data = encoded(table, use_dictionary=True, write_page_index=True)
    (size,) = struct.unpack("<I", data[-8:-4])
    footer = data[-8 - size : -8]
    metadata, used = decode(footer)
    assert used == size
    assert encode(metadata) == footer


@pytest.mark.parametrize(
    "damage",
    [
        b"\x19\xfc\xff\x7f" + b"\x00" * 4,  # a list claiming more items than there are bytes
        b"\x1c" * 40,  # structs nested beyond the limit
        b"\x16" + b"\xff" * 12,  # a varint that never ends
        b"\x18\x7f",  # a binary longer than the bytes
        b"\x1b\x00",  # a map: not used by Parquet
    ],
)
def test_thrift_refuses_malformed_bytes(damage: bytes) -> None:
    with pytest.raises(ThriftError):
        decode(damage)


def frame(start: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    df: pd.DataFrame = pd.DataFrame(
        {
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(start, start + n), "s"),
            "v": rng.random(n),
            "k": rng.integers(0, 5, n),
        }
    )
    return df


FOOTER_CASES = {
    "timestamp[ns]": pa.array([1, 5, 9], pa.timestamp("ns")),
    "timestamp[s], stored as ms": pa.array([1, 5, 9], pa.timestamp("s")),
    "timestamp[ms, tz]": pa.array([1, 5, 9], pa.timestamp("ms", "Europe/Paris")),
    "uint64 beyond int64": pa.array([1, 5, 2**63 + 5], pa.uint64()),
    "int8": pa.array([-3, 5, 9], pa.int8()),
    "uint32": pa.array([1, 5, 2**32 - 1], pa.uint32()),
    "float32": pa.array([0.1, 0.5, 0.9], pa.float32()),
    "string": pa.array(["a", "b", "é"], pa.string()),
    "large_binary": pa.array([b"a", b"b", b"z"], pa.large_binary()),
    "date32": pa.array([1, 5, 9], pa.int32()).view(pa.date32()),
    "date64, stored as days": pa.array(np.array([1, 5, 9]) * 86_400_000).view(pa.date64()),
    "time32[s], stored as ms": pa.array([1, 5, 9], pa.int32()).view(pa.time32("s")),
    "time64[ns]": pa.array([1, 5, 9], pa.int64()).view(pa.time64("ns")),
    "duration[s]": pa.array([1, 5, 9], pa.int64()).view(pa.duration("s")),
}


@pytest.mark.parametrize("values", FOOTER_CASES.values(), ids=FOOTER_CASES.keys())
def test_footer_agrees_with_the_first_and_last_values_only(values: pa.Array[Any]) -> None:
    # Nested columns before it: the ordered column's leaf is found past theirs.
    nested: dict[str, list[Any]] = {
        "x": [0.0, 1.0, 2.0],
        "l": [[1], [], [2, 3]],
        "s": [{"a": 1, "b": [2]}] * 3,
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table({**nested, "c": values}), buffer, use_dictionary=False)
    source = Source.of_bytes(buffer.getvalue())
    first_last = pa.concat_arrays([values[:1], values[2:]])
    assert stitch_module.footer_agrees(source, 3, "c", first_last)
    assert not stitch_module.footer_agrees(source, 3, "c", values[:2])  # another last value
    assert not stitch_module.footer_agrees(source, 4, "c", first_last)  # another row count
    assert not stitch_module.footer_agrees(source, 3, "x", first_last)  # another column
    assert not stitch_module.footer_agrees(source, 3, "s", first_last)  # not a leaf


@pytest.mark.parametrize(
    ("values", "options"),
    [
        (pa.array([1, 9]).cast(pa.decimal128(21, 2)), {}),  # statistics not decoded here
        (pa.array([1, 9], pa.int64()), {"write_statistics": False}),
        (
            pa.array([1_000_001, 9_000_000], pa.timestamp("ns")),
            {"coerce_timestamps": "ms", "allow_truncated_timestamps": True},
        ),
    ],
    ids=["decimal", "no statistics", "truncated to ms"],
)
def test_a_footer_that_cannot_tell_does_not_agree(
    values: pa.Array[Any], options: dict[str, Any]
) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"c": values}), buffer, **options)
    assert not stitch_module.footer_agrees(Source.of_bytes(buffer.getvalue()), 2, "c", values)


@pytest.fixture
def stitches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each concatenation the writer attempts succeeds, in order."""
    calls: list[bool] = []
    real = stitch_module.concatenate_row_groups

    def spy(files: Any, n_rows: int) -> Any:
        result = real(files, n_rows)
        calls.append(result is not None)
        return result

    monkeypatch.setattr("oupsish.writer.concatenate_row_groups", spy)
    return calls


@pytest.mark.parametrize("fsync", [True, False])  # without fsync, files are written on a thread
def test_coalescing_writes_copy_pages_and_read_back(
    tmp_path: Path, stitches: list[bool], fsync: bool
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts", fsync=fsync)
    frames = [frame(step * 10, 10) for step in range(12)]
    for df in frames:
        ds.write(df=df, row_group_target_size=40, max_n_off_target_rgs=2)
    assert stitches and all(stitches)
    expected = pd.concat(frames, ignore_index=True)
    assert_same_rows(ds.to_pandas(), expected)
    assert_same_rows(pq.read_table(ds.dirpath).to_pandas(), expected)
    assert ds.verify() == []  # every file matches the metadata
    for name in os.listdir(ds.dirpath):
        if not name.startswith("."):
            assert pq.ParquetFile(ds.dirpath / name).metadata.num_row_groups == 1


def test_writes_that_are_not_plain_appends_encode_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr("oupsish.writer.concatenate_row_groups", lambda *args: calls.append(1))
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(4):  # duplicates may drop stored rows: rows are merged, not copied
        ds.write(
            df=frame(step * 10, 10),
            row_group_target_size=40,
            max_n_off_target_rgs=2,
            duplicates_on="ts",
        )
    ds.write(df=frame(5, 3), max_n_off_target_rgs=2)  # an insert into the past
    strings = OrderedParquetDataset(tmp_path / "strings", ordered_on="ts")
    for step in range(4):  # strings are dictionary-encoded: pages tied to their row group
        strings.write(df=frame(step * 10, 10).assign(s="x"), max_n_off_target_rgs=2)
    assert calls == []
    assert len(ds.read()) == 43


def test_coalescing_without_the_tail_in_memory_reads_only_the_ordered_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No rows kept in memory (as after another process's commit): the stored pages are
    # copied, and only the ordered column is read, to place the row-group boundaries and
    # check the stored files' bounds.
    from oupsish import read, writer

    columns_read: list[tuple[Any, list[int]]] = []
    real = read.read_row_groups

    def spy(paths: Any, snapshot: Any, schema: Any, indices: Any, columns: Any = None) -> Any:
        columns_read.append((columns, list(indices)))
        return real(paths, snapshot, schema, indices, columns)

    monkeypatch.setattr(writer, "read_row_groups", spy)
    frames = [frame(step * 10, 10) for step in range(12)]
    for df in frames:
        tail_cache.clear()
        OrderedParquetDataset(tmp_path / "ds", ordered_on="ts").write(
            df=df, row_group_target_size=40, max_n_off_target_rgs=2
        )
    stored_reads = [columns for columns, indices in columns_read if indices]
    assert stored_reads and all(columns == ["ts"] for columns in stored_reads)
    ds = OrderedParquetDataset(tmp_path / "ds")
    assert_same_rows(ds.to_pandas(), pd.concat(frames, ignore_index=True))
    assert ds.verify() == []
    assert ds.row_group_stats["n_rows"].tolist() == [40, 40, 40]


def _fewer_rows(tail: Path) -> None:
    pq.write_table(pq.read_table(tail).slice(0, 5), tail, use_dictionary=False)


def _as_many_other_rows(tail: Path) -> None:
    other = frame(0, 20).assign(ts=lambda df: df["ts"] - pd.Timedelta(1, "s"))
    pq.write_table(pa.Table.from_pandas(other, preserve_index=False), tail, use_dictionary=False)


@pytest.mark.parametrize("fresh_handle", [True, False])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_fewer_rows, "hold 5 rows where the metadata records"),
        (_as_many_other_rows, "'{tail}' holds 'ts' values"),
    ],
    ids=["fewer rows", "as many other rows"],
)
def test_a_damaged_tail_is_not_copied_and_the_write_refused(
    tmp_path: Path, fresh_handle: bool, damage: Callable[[Path], None], message: str
) -> None:
    # The handle that wrote the tail keeps its ordered column only, to place the boundaries
    # of the merged row group; a file on disk that no longer holds the rows its metadata
    # records (damaged, replaced) must not be copied into it, whichever handle writes. The
    # kept column matches the metadata, not the file: the file's footer tells before its
    # pages are copied, as reading it would.
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    for step in range(2):
        ds.write(df=frame(step * 10, 10), row_group_target_size=40, max_n_off_target_rgs=1)
    tail = sorted(path for path in ds.dirpath.iterdir() if not path.name.startswith("."))[-1]
    damage(tail)
    before = {path.name: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    if fresh_handle:  # and nothing kept in memory, as in another process
        tail_cache.clear()
    writer = OrderedParquetDataset(tmp_path / "ds") if fresh_handle else ds
    with pytest.raises(CorruptDatasetError, match=message.format(tail=tail.name)):
        writer.write(df=frame(20, 10), row_group_target_size=40, max_n_off_target_rgs=1)
    after = {path.name: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert after == before


def test_fresh_handles_coalesce_into_periods(tmp_path: Path, stitches: list[bool]) -> None:
    # Row groups of one minute: appends within the minute are copied into its row group,
    # the first rows of the next minute start a new one.
    frames = [frame(step * 20, 20) for step in range(9)]  # 180 s: minutes 0, 1 and 2
    for df in frames:
        tail_cache.clear()  # nothing kept in memory, as in another process
        OrderedParquetDataset(tmp_path / "ds", ordered_on="ts").write(
            df=df, row_group_target_size="1min", max_n_off_target_rgs=2
        )
    ds = OrderedParquetDataset(tmp_path / "ds")
    assert_same_rows(ds.to_pandas(), pd.concat(frames, ignore_index=True))
    assert ds.verify() == []
    stats = ds.row_group_stats
    minutes = [ts.floor("min") for ts in stats["ordered_on_mins"]]
    assert minutes == [ts.floor("min") for ts in stats["ordered_on_maxs"]]
    assert len(set(minutes)) == len(minutes) == 3
    assert stitches and all(stitches)
