"""Bad input, nothing lost: every refused call raises a clear error and changes no byte.

Each test feeds one kind of bad input through the public API and checks two things:

- the error has the right type (``ValueError``/``TypeError``/``KeyError``/``TimeoutError`` or
  the oupsish subclass in :mod:`oupsish.errors`) and its message names the problem (the
  column, the value, the dataset or the file);
- every file under the test's temporary folder is byte-identical before and after, the
  writers' lock file included, and no file or folder appeared or vanished.

Decisions recorded here (and in the messages):

- A frame without rows is a no-op whatever its columns: no lock, no folder, no commit.
  Options are still checked (an invalid option is an error even with an empty frame).
- ``df`` must be a pandas DataFrame or an Arrow table (or record batch), checked alike; a
  dict or a Series is refused with a hint on how to convert it.
- Timestamps keep their timezone nature: tz-naive into tz-aware (or the reverse) is refused;
  another timezone for a tz-aware column is accepted: the same instants, converted losslessly.
- A damaged data file makes every read that needs it fail with ``CorruptDatasetError``; reads
  that do not need it (a range elsewhere) work. A write that must rewrite the damaged row
  group is refused and changes nothing; a write that does not touch it (an append) goes ahead
  and leaves the damaged file as it was, so reads still report the damage.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import data_files

from oupsish import (
    CorruptDatasetError,
    InvalidFrameError,
    OrderedOnMismatchError,
    OrderedParquetDataset,
    SchemaMismatchError,
    Store,
    UnsafeMetadataError,
    sublevel,
    toplevel,
    write,
)

# --------------------------------------------------------------------------------------
# Helpers


def tree(root: Path) -> dict[str, bytes | None]:
    """Return ``{relative path: bytes}`` of every file under ``root`` (folders map to None)."""
    found: dict[str, bytes | None] = {}
    for folder, subfolders, files in os.walk(root):
        for name in subfolders:
            found[(Path(folder) / name).relative_to(root).as_posix() + "/"] = None
        for name in files:
            path = Path(folder) / name
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


@contextlib.contextmanager
def nothing_changes(root: Path) -> Iterator[None]:
    """Check that no file under ``root`` is created, removed or modified in the block."""
    before = tree(root)
    yield
    after = tree(root)
    assert sorted(after) == sorted(before), "files or folders appeared or vanished"
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"files modified: {changed}"


def hours(start: str, count: int, /, **columns: Any) -> pd.DataFrame:
    """A frame of ``count`` hourly rows with the columns of the ``dataset`` fixture."""
    data: dict[str, Any] = {
        "ts": pd.date_range(start, periods=count, freq="h"),
        "v": np.arange(count, dtype="float64"),
        "n": np.arange(count, dtype="int64"),
        "s": [f"s{i}" for i in range(count)],
    }
    data.update(columns)
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


BASE = hours("2024-01-01", 12)  # three row groups of four rows: 00:00-03:00, 04-07, 08-11


@pytest.fixture(scope="module")
def dataset_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder written once; tests work on copies (writes fsync: copies are faster)."""
    root = tmp_path_factory.mktemp("template")
    ds = OrderedParquetDataset(root / "store" / "ds", ordered_on="ts")
    ds.write(df=BASE, row_group_target_size=4)
    assert len(ds) == 3
    return root / "store"


@pytest.fixture
def dataset(tmp_path: Path, dataset_template: Path) -> OrderedParquetDataset:
    """A dataset at ``tmp_path/store/ds`` of three row groups (ts, v, n, s)."""
    shutil.copytree(dataset_template, tmp_path / "store")
    return OrderedParquetDataset(tmp_path / "store" / "ds")


@sublevel
class Sampling:
    freq: str


@toplevel(field_sep=".")
class Measure:
    quantity: str
    city: str
    sampling: Sampling


@toplevel
class Other:
    name: str


BERLIN = Measure("temperature", "berlin", Sampling("1h"))
PARIS = Measure("temperature", "paris", Sampling("1D"))
STOCKHOLM = Measure("pressure", "stockholm", Sampling("1h"))


# --------------------------------------------------------------------------------------
# The frame


def test_unsorted_frame(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    frame = hours("2024-02-01", 4)
    frame = frame.iloc[[0, 2, 1, 3]].reset_index(drop=True)
    with nothing_changes(tmp_path), pytest.raises(InvalidFrameError) as raised:
        dataset.write(df=frame)
    message = str(raised.value)
    assert "sorted ascending on 'ts'" in message
    assert "first at row 2" in message
    assert str(dataset.dirpath) in message


@pytest.mark.parametrize("position", [0, 2, 3])
def test_nat_in_ordered_on(tmp_path: Path, dataset: OrderedParquetDataset, position: int) -> None:
    frame = hours("2024-02-01", 4)
    frame.loc[position, "ts"] = pd.NaT
    with (
        nothing_changes(tmp_path),
        pytest.raises(InvalidFrameError, match=rf"'ts' has 1 null/NaN/NaT .* row {position}"),
    ):
        dataset.write(df=frame)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([1.0, np.nan, 3.0], id="nan"),
        pytest.param(pd.array([1, None, 3], dtype="Int64"), id="pd.NA"),
        pytest.param(["a", None, "c"], id="None-in-strings"),
    ],
)
def test_null_in_ordered_on_of_a_first_write_creates_nothing(tmp_path: Path, values: Any) -> None:
    frame = pd.DataFrame({"k": values, "x": [1.0, 2.0, 3.0]})
    with (
        nothing_changes(tmp_path),
        pytest.raises(InvalidFrameError, match=r"ordered_on column 'k' has 1 null.*row 1.*'/"),
    ):
        write(tmp_path / "new", ordered_on="k", df=frame)
    assert list(tmp_path.iterdir()) == []


def test_ordered_on_values_of_mixed_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"k": pd.Series(["a", 1], dtype=object), "x": [1.0, 2.0]})
    with (
        nothing_changes(tmp_path),
        pytest.raises(InvalidFrameError, match=r"'k' holds values that cannot be compared"),
    ):
        write(tmp_path / "new", ordered_on="k", df=frame)


def test_missing_ordered_on_column(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    frame = hours("2024-02-01", 2).drop(columns="ts")
    with (
        nothing_changes(tmp_path),
        pytest.raises(InvalidFrameError, match=r"ordered_on column 'ts' is not in the frame's"),
    ):
        dataset.write(df=frame)
    # The frame's index is not a column: say so.
    indexed = hours("2024-02-01", 2).set_index("ts")
    with nothing_changes(tmp_path), pytest.raises(InvalidFrameError, match=r"reset_index"):
        dataset.write(df=indexed)


def test_ordered_on_mismatch(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    pattern = r"ordered_on 'v' does not match 'ts'.*cannot change"
    with nothing_changes(tmp_path), pytest.raises(OrderedOnMismatchError, match=pattern):
        dataset.write(df=hours("2024-02-01", 2), ordered_on="v")
    with nothing_changes(tmp_path), pytest.raises(OrderedOnMismatchError, match=pattern):
        OrderedParquetDataset(dataset.dirpath, ordered_on="v")
    with nothing_changes(tmp_path), pytest.raises(ValueError, match=pattern):
        write(dataset.dirpath, ordered_on="v", df=hours("2024-02-01", 2))


@pytest.mark.parametrize("ordered_on", [["ts"], 3, b"ts"])
def test_ordered_on_that_is_not_a_column_name(tmp_path: Path, ordered_on: Any) -> None:
    with (
        nothing_changes(tmp_path),
        pytest.raises(TypeError, match=r"ordered_on must be a column name \(str\), got"),
    ):
        write(tmp_path / "new", ordered_on=ordered_on, df=hours("2024-02-01", 2))


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        pytest.param(
            hours("2024-02-01", 2).drop(columns="v"), r"missing column\(s\) \['v'\]", id="missing"
        ),
        pytest.param(hours("2024-02-01", 2, w=[1, 2]), r"extra column\(s\) \['w'\]", id="extra"),
        pytest.param(
            hours("2024-02-01", 2, n=[1.5, 2.0]),
            r"column 'n' is double \(float64\), the dataset stores int64",
            id="float-into-int",
        ),
        pytest.param(
            hours("2024-02-01", 2, n=[1.0, 2.0]),
            r"column 'n' is double \(float64\), the dataset stores int64",
            id="integral-float-into-int",
        ),
        pytest.param(
            hours("2024-02-01", 2, v=["a", "b"]),
            # pandas 3 stores text as large_string, pandas 2 as string
            r"column 'v' is (large_)?string \(str\), the dataset stores double \(float64\)",
            id="string-into-float",
        ),
        pytest.param(
            hours("2024-02-01", 2, v=[1, 2]),
            r"column 'v' is int64, the dataset stores double \(float64\)",
            id="int-into-float",
        ),
        pytest.param(
            hours("2024-02-01", 2, n=np.array([1, 2], dtype="int32")),
            r"column 'n' is int32, the dataset stores int64",
            id="int32-into-int64",
        ),
        pytest.param(
            hours("2024-02-01", 2, n=[True, False]),
            r"column 'n' is bool, the dataset stores int64",
            id="bool-into-int",
        ),
        pytest.param(
            hours("2024-02-01", 2, s=[1, 2]),
            r"column 's' is int64, the dataset stores (large_)?string",
            id="int-into-string",
        ),
        pytest.param(
            hours("2024-02-01", 2, n=pd.date_range("2024", periods=2)),
            # date_range makes us with pandas 3, ns with pandas 2
            r"column 'n' is timestamp\[(us|ns)\] \(datetime64\[\1\]\), the dataset stores int64",
            id="timestamp-into-int",
        ),
        pytest.param(
            hours("2024-02-01", 2).drop(columns="v").assign(w=1.0),
            r"missing column\(s\) \['v'\].*extra column\(s\) \['w'\]",
            id="renamed",
        ),
    ],
)
def test_frame_not_matching_the_stored_schema(
    tmp_path: Path, dataset: OrderedParquetDataset, frame: pd.DataFrame, pattern: str
) -> None:
    with nothing_changes(tmp_path), pytest.raises(SchemaMismatchError) as raised:
        dataset.write(df=frame)
    message = str(raised.value)
    assert raised.match(pattern)
    assert f"dataset '{dataset.dirpath}'" in message
    assert "['ts', 'v', 'n', 's']" in message  # what was expected


def test_duplicated_column_names(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    frame = hours("2024-02-01", 2)
    frame = pd.concat([frame, frame[["v"]]], axis=1)
    with (
        nothing_changes(tmp_path),
        pytest.raises(InvalidFrameError, match=r"column names must be unique; repeated: \['v'\]"),
    ):
        dataset.write(df=frame)


@pytest.mark.parametrize(
    ("stored_tz", "new_tz", "pattern"),
    [
        (None, "UTC", r"column 'ts' is timestamp\[us, tz=UTC\].*stores timestamp\[us\]"),
        ("Europe/Paris", None, r"column 'ts' is timestamp\[us\].*tz=Europe/Paris"),
    ],
)
def test_tz_aware_versus_naive(
    tmp_path: Path, stored_tz: str | None, new_tz: str | None, pattern: str
) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    stamps = pd.date_range("2024-01-01", periods=3, freq="h", tz=stored_tz, unit="us")
    ds.write(df=pd.DataFrame({"ts": stamps, "v": [1.0, 2.0, 3.0]}))
    later = pd.date_range("2024-02-01", periods=2, freq="h", tz=new_tz, unit="us")
    with nothing_changes(tmp_path), pytest.raises(SchemaMismatchError, match=pattern):
        ds.write(df=pd.DataFrame({"ts": later, "v": [4.0, 5.0]}))


def test_another_timezone_is_converted_not_refused(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="ts")
    paris = pd.date_range("2024-01-01", periods=3, freq="h", tz="Europe/Paris")
    ds.write(df=pd.DataFrame({"ts": paris, "v": [1.0, 2.0, 3.0]}))
    utc = pd.DatetimeIndex([pd.Timestamp("2024-01-01 00:30", tz="Europe/Paris")]).tz_convert("UTC")
    ds.write(df=pd.DataFrame({"ts": utc, "v": [9.0]}))
    result = ds.to_pandas()
    assert result is not None
    assert str(result["ts"].dt.tz) == "Europe/Paris"
    assert result["v"].tolist() == [1.0, 9.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("df", "hint"),
    [
        pytest.param({"ts": [1, 2], "v": [1.0, 2.0]}, "pandas.DataFrame", id="dict"),
        pytest.param("ts,v\n1,1.0", "", id="str"),
        pytest.param(b"ts,v\n1,1.0", "", id="bytes"),
        pytest.param(42, "", id="int"),
        pytest.param(pd.Series([1, 2], name="ts"), "to_frame", id="series"),
        pytest.param(np.zeros((2, 2)), "", id="ndarray"),
    ],
)
def test_not_a_dataframe(
    tmp_path: Path, dataset: OrderedParquetDataset, df: Any, hint: str
) -> None:
    with nothing_changes(tmp_path), pytest.raises(TypeError) as raised:
        dataset.write(df=df)
    message = str(raised.value)
    assert f"df must be a pandas DataFrame or a pyarrow Table, got {type(df).__name__}" in message
    assert str(dataset.dirpath) in message
    assert hint in message


def arrow_hours(start: str, count: int) -> pa.Table:
    return pa.Table.from_pandas(hours(start, count), preserve_index=False)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        pytest.param(
            lambda t: t.take([0, 2, 1, 3]),
            InvalidFrameError,
            ["table must be sorted ascending on 'ts'", "first at row 2"],
            id="unsorted",
        ),
        pytest.param(
            lambda t: t.set_column(
                0, "ts", pa.array([None, *t["ts"].to_pylist()[1:]], t["ts"].type)
            ),
            InvalidFrameError,
            ["'ts' has 1 null/NaN/NaT value(s), first at row 0"],
            id="null-ordered-on",
        ),
        pytest.param(
            lambda t: t.drop_columns(["ts"]),
            InvalidFrameError,
            ["ordered_on column 'ts' is not in the table's columns"],
            id="missing-ordered-on",
        ),
        pytest.param(
            lambda t: t.rename_columns(["ts", "v", "v", "s"]),
            InvalidFrameError,
            ["column names must be unique; repeated: ['v']"],
            id="duplicated-names",
        ),
        pytest.param(
            lambda t: t.set_column(1, "v", t["v"].cast(pa.string())),
            SchemaMismatchError,
            ["the table does not match", "column 'v' is string", "double"],
            id="wrong-type",
        ),
        pytest.param(
            lambda t: t.drop_columns(["n"]),
            SchemaMismatchError,
            ["missing column(s) ['n']"],
            id="missing-column",
        ),
        pytest.param(
            lambda t: t.set_column(0, "ts", t["ts"].dictionary_encode()),
            InvalidFrameError,
            ["'ts' is categorical"],
            id="dictionary-ordered-on",
        ),
    ],
)
def test_bad_arrow_table(
    tmp_path: Path,
    dataset: OrderedParquetDataset,
    make: Callable[[pa.Table], pa.Table],
    error: type[Exception],
    words: list[str],
) -> None:
    table = make(arrow_hours("2024-02-01", 4))
    inputs: list[pa.Table | pa.RecordBatch] = [table, *table.to_batches()[:1]]
    for df in inputs:  # a table, and a record batch
        with nothing_changes(tmp_path), pytest.raises(error) as raised:
            dataset.write(df=df)
        message = str(raised.value)
        assert all(word in message for word in words), message
        assert str(dataset.dirpath) in message


@pytest.mark.parametrize("fsync", ["yes", 1, None])
def test_fsync_must_be_a_bool(tmp_path: Path, fsync: Any) -> None:
    with nothing_changes(tmp_path), pytest.raises(TypeError, match="fsync must be True or False"):
        OrderedParquetDataset(tmp_path / "ds", fsync=fsync)
    with nothing_changes(tmp_path), pytest.raises(TypeError, match="fsync must be True or False"):
        Store(tmp_path / "store", Other, fsync=fsync)


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param([1, 2, 3], id="list-of-ints"),
        pytest.param([None], id="list-of-None"),
        pytest.param(iter(["ts,v"]), id="iterator-of-str"),
    ],
)
def test_not_a_stream_of_dataframes(
    tmp_path: Path, dataset: OrderedParquetDataset, stream: Any
) -> None:
    # An iterable is a stream of frames (streaming ingest); its first item is checked at once.
    with (
        nothing_changes(tmp_path),
        pytest.raises(TypeError, match=r"must yield DataFrames .*; item 0 is a (int|NoneType|str)"),
    ):
        dataset.write(df=stream)


# --------------------------------------------------------------------------------------
# Write options


@pytest.mark.parametrize(
    ("size", "pattern"),
    [
        (0, r"positive number of rows, got 0"),
        (-5, r"positive number of rows, got -5"),
        ("bogus", r"'bogus' is not a positive pandas frequency"),
        ("0D", r"'0D' is not a positive pandas frequency"),
        ("-1D", r"'-1D' is not a positive pandas frequency"),
        ("-2h", r"'-2h' is not a positive pandas frequency"),
        ("0MS", r"'0MS' is not a positive pandas frequency"),
        (True, r"got True"),
        (1.5, r"got float 1.5"),
        (1000.0, r"got float 1000.0"),
        (None, r"got NoneType None"),
    ],
)
def test_invalid_row_group_target_size(
    tmp_path: Path, dataset: OrderedParquetDataset, size: Any, pattern: str
) -> None:
    with nothing_changes(tmp_path), pytest.raises(ValueError, match=pattern) as raised:
        dataset.write(df=hours("2024-02-01", 2), row_group_target_size=size)
    assert str(dataset.dirpath) in str(raised.value)


def test_frequency_on_a_non_datetime_column(tmp_path: Path) -> None:
    ds = OrderedParquetDataset(tmp_path / "ds", ordered_on="k")
    ds.write(df=pd.DataFrame({"k": [1, 2, 3], "v": [1.0, 2.0, 3.0]}))
    pattern = r"'1D' is a frequency, but ordered_on column 'k' .* is int64, not a timestamp"
    with nothing_changes(tmp_path), pytest.raises(ValueError, match=pattern):
        ds.write(df=pd.DataFrame({"k": [4, 5], "v": [4.0, 5.0]}), row_group_target_size="1D")
    # Also on a first write, which must then create nothing.
    with nothing_changes(tmp_path), pytest.raises(ValueError, match=r"'MS' is a frequency"):
        write(
            tmp_path / "other",
            ordered_on="k",
            df=pd.DataFrame({"k": [1.0, 2.0]}),
            row_group_target_size="MS",
        )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(-1, "int -1"), (1.5, "float 1.5"), ("2", "str '2'"), (True, "bool True")],
)
def test_invalid_max_n_off_target_rgs(
    tmp_path: Path, dataset: OrderedParquetDataset, value: Any, shown: str
) -> None:
    with (
        nothing_changes(tmp_path),
        pytest.raises(
            ValueError, match=rf"max_n_off_target_rgs must be None or an int >= 0, got {shown}"
        ),
    ):
        dataset.write(df=hours("2024-02-01", 2), max_n_off_target_rgs=value)


@pytest.mark.parametrize(
    ("duplicates_on", "error", "pattern"),
    [
        ("zz", InvalidFrameError, r"duplicates_on names unknown column\(s\) \['zz'\]"),
        (["v", "zz"], InvalidFrameError, r"duplicates_on names unknown column\(s\) \['zz'\]"),
        (3, TypeError, r"duplicates_on must be None, a column name or a list of names, got int"),
    ],
)
def test_invalid_duplicates_on(
    tmp_path: Path,
    dataset: OrderedParquetDataset,
    duplicates_on: Any,
    error: type[Exception],
    pattern: str,
) -> None:
    # Rows overlapping the stored ones: a deduplicating write would rewrite row groups.
    frame = hours("2024-01-01 02:00", 3)
    with nothing_changes(tmp_path), pytest.raises(error, match=pattern) as raised:
        dataset.write(df=frame, duplicates_on=duplicates_on)
    assert str(dataset.dirpath) in str(raised.value)


@pytest.mark.parametrize(
    ("metadata", "error", "pattern"),
    [
        (["a"], TypeError, r"must be a dict of str to str \(or None\), got list"),
        ("a=b", TypeError, r"must be a dict of str to str \(or None\), got str 'a=b'"),
        ({1: "a"}, TypeError, r"got int 1: str 'a'"),
        ({"a": 1}, TypeError, r"got str 'a': int 1"),
        ({"a": b"x"}, TypeError, r"got str 'a': bytes b'x'"),
        ({"ordered_on": "v"}, ValueError, r"key 'ordered_on' is reserved"),
    ],
)
def test_invalid_key_value_metadata(
    tmp_path: Path,
    dataset: OrderedParquetDataset,
    metadata: Any,
    error: type[Exception],
    pattern: str,
) -> None:
    with nothing_changes(tmp_path), pytest.raises(error, match=pattern) as raised:
        dataset.write(df=hours("2024-02-01", 2), key_value_metadata=metadata)
    assert str(dataset.dirpath) in str(raised.value)
    # Without rows, the metadata alone is refused too.
    with nothing_changes(tmp_path), pytest.raises(error, match=pattern):
        dataset.write(key_value_metadata=metadata)


def test_lock_timeout_names_the_dataset(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    ds = OrderedParquetDataset(dataset.dirpath, lock_timeout=0.05)
    other_writer = filelock.FileLock(str(tmp_path / "store" / "ds.lock"), is_singleton=False)
    pattern = rf"dataset '{re.escape(str(dataset.dirpath))}'.*0.05 s"
    with other_writer, nothing_changes(tmp_path), pytest.raises(TimeoutError, match=pattern):
        ds.write(df=hours("2024-02-01", 2))


# --------------------------------------------------------------------------------------
# Empty frames: a no-op, not an error


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(BASE.iloc[:0], id="same-columns"),
        pytest.param(pd.DataFrame(), id="no-columns"),
        pytest.param(pd.DataFrame({"zz": pd.Series([], dtype="float64")}), id="other-columns"),
        pytest.param(None, id="None"),
    ],
)
def test_empty_frame_is_a_no_op(
    tmp_path: Path, dataset: OrderedParquetDataset, frame: pd.DataFrame | None
) -> None:
    with nothing_changes(tmp_path):
        dataset.write(df=frame)
        dataset.write(df=frame, row_group_target_size="1D", duplicates_on=[])
        write(dataset.dirpath, ordered_on="ts", df=frame)
    result = dataset.to_pandas()
    assert result is not None
    pd.testing.assert_frame_equal(result, BASE)


@pytest.mark.parametrize(
    "frame",
    [pd.DataFrame(), pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns]"), "v": []})],
)
def test_empty_first_write_creates_nothing(tmp_path: Path, frame: pd.DataFrame) -> None:
    store = Store(tmp_path / "store", Measure)
    with nothing_changes(tmp_path):
        store[BERLIN].write(df=frame, ordered_on="ts")
    assert list(tmp_path.iterdir()) == []
    assert BERLIN not in store
    assert len(store) == 0


def test_empty_frame_with_an_invalid_option_is_still_an_error(
    tmp_path: Path, dataset: OrderedParquetDataset
) -> None:
    with nothing_changes(tmp_path), pytest.raises(ValueError, match="row_group_target_size"):
        dataset.write(df=pd.DataFrame(), row_group_target_size=0)


# --------------------------------------------------------------------------------------
# Reads and iter_intersections


@pytest.mark.parametrize(
    ("start", "end_excl"),
    [
        ("2024-01-01 05:00", "2024-01-01 05:00"),
        ("2024-01-01 06:00", "2024-01-01 05:00"),
        (pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-01")),
    ],
)
def test_read_with_start_not_before_end(
    tmp_path: Path, dataset: OrderedParquetDataset, start: Any, end_excl: Any
) -> None:
    with (
        nothing_changes(tmp_path),
        pytest.raises(ValueError, match=r"start .* must be before end_excl"),
    ):
        dataset.read(start=start, end_excl=end_excl)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"start": pd.Timestamp("2024", tz="UTC")},
            TypeError,
            r"tz-aware, but column 'ts' is tz-naive",
        ),
        ({"end_excl": "not a date"}, TypeError, r"'not a date' is not a timestamp"),
        ({"start": 3.5}, TypeError, r"bound 3.5 is a number, but column 'ts' holds timestamps"),
        ({"columns": ["v", "zz"]}, ValueError, r"unknown column\(s\) \['zz'\] in dataset"),
    ],
)
def test_read_with_invalid_arguments(
    tmp_path: Path,
    dataset: OrderedParquetDataset,
    kwargs: dict[str, Any],
    error: type[Exception],
    pattern: str,
) -> None:
    with nothing_changes(tmp_path), pytest.raises(error, match=pattern):
        dataset.read(**kwargs)


OSLO = Measure("humidity", "oslo", Sampling("1h"))


@pytest.fixture(scope="module")
def oslo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset of ours ordered on 't', to add to the predecessor's store."""
    root = tmp_path_factory.mktemp("oslo")
    frame = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=4, freq="h", unit="ns"), "value": 1.0}
    )
    Store(root, Measure)[OSLO].write(df=frame, ordered_on="t")
    return root


@pytest.fixture
def store(fixture_store: Path, oslo_template: Path) -> Store:
    """The predecessor's store (three datasets ordered on 'timestamp'), plus one of ours."""
    shutil.copytree(oslo_template, fixture_store, dirs_exist_ok=True)
    store = Store(fixture_store, Measure)
    assert OSLO in store
    return store


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"n_prev": -1}, ValueError, r"n_prev values must be ints >= 0, got -1"),
        ({"n_prev": [1, -2]}, ValueError, r"n_prev values must be ints >= 0, got -2 in \[1, -2\]"),
        ({"n_prev": [1]}, ValueError, r"n_prev has 1 values for 2 keys"),
        ({"n_prev": [1, 2, 3]}, ValueError, r"n_prev has 3 values for 2 keys"),
        ({"n_prev": 1.5}, TypeError, r"n_prev must be an int or a list of ints .*got float 1.5"),
        ({"n_prev": "2"}, TypeError, r"n_prev must be an int or a list of ints .*got str '2'"),
        (
            {"start": "2024-01-05", "end_excl": "2024-01-05"},
            ValueError,
            r"must be before end_excl.*\(dataset '.*temperature\.berlin/1h'\)",
        ),
        (
            {"start": "2024-01-05", "end_excl": "2024-01-02"},
            ValueError,
            r"must be before end_excl.*\(dataset '.*temperature\.berlin/1h'\)",
        ),
        ({"start": pd.Timestamp("2024", tz="UTC")}, TypeError, r"tz-aware, but column 'timestamp'"),
    ],
)
def test_iter_intersections_invalid_arguments_fail_at_the_call(
    store: Store, fixture_store: Path, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with nothing_changes(fixture_store.parent), pytest.raises(error, match=pattern):
        store.iter_intersections([BERLIN, STOCKHOLM], **kwargs)  # not even iterated


def test_iter_intersections_keys_with_different_ordered_on(
    store: Store, fixture_store: Path
) -> None:
    pattern = (
        r"share their ordered_on.*'temperature.berlin.1h'.*'timestamp'.*'humidity.oslo.1h'.*'t'"
    )
    with nothing_changes(fixture_store.parent), pytest.raises(ValueError, match=pattern):
        store.iter_intersections([BERLIN, OSLO])
    # Same name, another kind of values.
    numbers = Measure("count", "oslo", Sampling("1h"))
    store[numbers].write(df=pd.DataFrame({"timestamp": [1, 2]}), ordered_on="timestamp")
    with nothing_changes(fixture_store.parent), pytest.raises(ValueError, match=r"\(number\)"):
        store.iter_intersections([BERLIN, numbers])


@pytest.mark.parametrize(
    ("keys", "error", "pattern"),
    [
        ([BERLIN, Measure("x", "y", Sampling("1h"))], KeyError, r"key 'x.y.1h' not found"),
        ([BERLIN, "temperature.paris.1D"], TypeError, r"Measure instances, got str"),
        ([BERLIN, Other("berlin")], TypeError, r"Measure instances, got Other"),
        ([BERLIN, BERLIN], ValueError, r"must not repeat"),
    ],
)
def test_iter_intersections_invalid_keys(
    store: Store, fixture_store: Path, keys: list[Any], error: type[Exception], pattern: str
) -> None:
    with nothing_changes(fixture_store.parent), pytest.raises(error, match=pattern):
        store.iter_intersections(keys)


# --------------------------------------------------------------------------------------
# Keys and stores


def _new(cls: Any, *values: Any) -> Any:
    return cls(*values)  # untyped on purpose: wrong types are what is tested


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (
            lambda: _new(Measure, "a.b", "x", Sampling("1h")),
            ValueError,
            r"'quantity' .* 'a.b', which contains '.'",
        ),
        (
            lambda: _new(Measure, "a", "x", Sampling("1.h")),
            ValueError,
            r"field 'freq' of Sampling is '1.h'",
        ),
        (
            lambda: _new(Measure, "a/b", "x", Sampling("1h")),
            ValueError,
            r"'quantity' .* contains '/'",
        ),
        (
            lambda: _new(Measure, "a", "x\\y", Sampling("1h")),
            ValueError,
            r"'city' .* contains '\\\\'",
        ),
        (lambda: _new(Other, "a-b"), ValueError, r"'name' of Other is 'a-b', which contains '-'"),
        (lambda: _new(Other, "a.b"), ValueError, r"'name' of Other is 'a.b', which contains '.'"),
        (lambda: _new(Other, ""), ValueError, r"'name' of Other is an empty string"),
        (lambda: _new(Other, "x_opdmd"), ValueError, r"cannot end with '_opdmd'"),
        (
            lambda: _new(Measure, 1, "x", Sampling("1h")),
            TypeError,
            r"'quantity' of Measure must be str, got int 1",
        ),
        (
            lambda: _new(Measure, "a", "x", "1h"),
            TypeError,
            r"'sampling' of Measure must be a Sampling instance",
        ),
        (lambda: _new(Sampling, 1), TypeError, r"'freq' of Sampling must be str, got int"),
    ],
)
def test_invalid_key_field_values(
    make: Callable[[], Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        make()


def test_invalid_int_key_field_values() -> None:
    @toplevel
    class Year:
        city: str
        year: int

    with pytest.raises(TypeError, match=r"'year' of Year must be int, got str '2024'"):
        _new(Year, "paris", "2024")
    with pytest.raises(TypeError, match=r"'year' of Year must be int, got bool True"):
        _new(Year, "paris", True)
    with pytest.raises(ValueError, match=r"'year' of Year is -1, which contains '-'"):
        _new(Year, "paris", -1)


def test_sublevel_that_is_not_the_last_field() -> None:
    with pytest.raises(TypeError, match=r"field 'sampling' of Bad is a @sublevel class; .*last"):

        @toplevel
        class Bad:
            sampling: Sampling
            city: str


@pytest.mark.parametrize(
    ("indexer", "name"),
    [
        (type("Plain", (), {}), "Plain has to be '@toplevel' decorated"),
        (Sampling, "Sampling has to be '@toplevel' decorated"),
        (BERLIN, r"the @toplevel class itself, got an instance of it: pass Measure, not"),
        (dict, "dict has to be '@toplevel' decorated"),
    ],
)
def test_store_with_a_non_toplevel_indexer(tmp_path: Path, indexer: Any, name: str) -> None:
    with (
        nothing_changes(tmp_path),
        pytest.raises(TypeError, match=name),
    ):
        Store(tmp_path / "store", indexer)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key",
    [Sampling("1h"), "temperature.berlin.1h", Other("berlin"), ("temperature", "berlin")],
)
def test_store_key_of_the_wrong_class(fixture_store: Path, key: Any) -> None:
    store = Store(fixture_store, Measure)
    pattern = rf"keys of this store are Measure instances, got {type(key).__name__}"
    with nothing_changes(fixture_store):
        with pytest.raises(TypeError, match=pattern):
            store[key]
        with pytest.raises(TypeError, match=pattern):
            store.get(key)
        with pytest.raises(TypeError, match=pattern):
            del store[key]
        assert key not in store


def test_deleting_an_unknown_key(fixture_store: Path) -> None:
    store = Store(fixture_store, Measure)
    with nothing_changes(fixture_store), pytest.raises(KeyError, match=r"'temperature.rome.1h'"):
        del store[Measure("temperature", "rome", Sampling("1h"))]


def test_bad_writes_to_a_predecessor_dataset_leave_it_intact(fixture_store: Path) -> None:
    ds = Store(fixture_store, Measure)[BERLIN]
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-03-01", periods=2, freq="h", unit="ns"),
            "value": [1.0, 2.0],
            "station": ["a", "b"],
            "count": [1.5, 2.5],
        }
    )
    with (
        nothing_changes(fixture_store),
        pytest.raises(
            SchemaMismatchError,
            match=r"column 'count' is double \(float64\), the dataset stores int64",
        ),
    ):
        ds.write(df=frame)
    with nothing_changes(fixture_store), pytest.raises(OrderedOnMismatchError, match="'timestamp'"):
        ds.write(df=frame.assign(count=[1, 2]), ordered_on="value")
    with nothing_changes(fixture_store), pytest.raises(InvalidFrameError, match="sorted"):
        ds.write(df=frame.assign(count=[1, 2]).iloc[::-1].reset_index(drop=True))


# --------------------------------------------------------------------------------------
# Damaged data files


def _truncate(path: Path, keep: int) -> None:
    """Keep the first ``keep`` bytes of a file (all but ``-keep`` when negative)."""
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("keep", [0, 100, -1])
def test_truncated_data_file(tmp_path: Path, dataset: OrderedParquetDataset, keep: int) -> None:
    first = data_files(dataset)[0]
    _truncate(first, keep)
    reopened = OrderedParquetDataset(dataset.dirpath)
    # Every read that needs the damaged row group fails loudly, naming it.
    with nothing_changes(tmp_path):
        for read in (
            reopened.to_pandas,
            lambda: reopened.read(),
            lambda: reopened.read(end_excl="2024-01-01 02:00"),
            lambda: reopened.read(columns=["v"]),
            lambda: reopened[0].to_pandas(),
            lambda: reopened[:].to_pandas(),
        ):
            with pytest.raises(CorruptDatasetError, match=re.escape(first.name)):
                read()
    # Reads that do not need it return exactly the right rows.
    later = reopened.read(start="2024-01-01 04:00")
    pd.testing.assert_frame_equal(later, BASE.iloc[4:].reset_index(drop=True))
    # A write that must rewrite the damaged row group is refused, and changes nothing.
    insert = hours("2024-01-01 01:30", 1)
    with nothing_changes(tmp_path), pytest.raises(CorruptDatasetError) as raised:
        reopened.write(df=insert)
    assert first.name in str(raised.value) and "refused" in str(raised.value)
    with nothing_changes(tmp_path), pytest.raises(CorruptDatasetError, match=re.escape(first.name)):
        reopened.write(df=hours("2024-01-01 02:00", 1), duplicates_on="ts")
    # A write that does not touch it goes ahead and leaves the damage as it was: visible.
    damaged = first.read_bytes()
    reopened.write(df=hours("2024-02-01", 2), row_group_target_size=4)
    assert first.read_bytes() == damaged
    with pytest.raises(CorruptDatasetError, match=re.escape(first.name)):
        reopened.to_pandas()
    assert len(reopened.read(start="2024-02-01")) == 2


def test_data_file_replaced_by_other_rows(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    files = data_files(dataset)
    files[1].write_bytes(files[0].read_bytes())  # same row count, other rows
    with nothing_changes(tmp_path):
        with pytest.raises(
            CorruptDatasetError, match=rf"'{re.escape(files[1].name)}' holds 'ts' values"
        ):
            dataset.to_pandas()
        with pytest.raises(CorruptDatasetError, match=re.escape(files[1].name)):
            dataset.read(start="2024-01-01 05:00", end_excl="2024-01-01 06:00")
        with pytest.raises(CorruptDatasetError, match="refused"):
            dataset.write(df=hours("2024-01-01 05:30", 1))
    # Fewer rows than recorded.
    pq.write_table(pa.Table.from_pandas(BASE.iloc[4:6], preserve_index=False), files[1])
    with nothing_changes(tmp_path), pytest.raises(CorruptDatasetError, match=r"hold 10 rows .* 12"):
        dataset.to_pandas()


def test_missing_data_file(tmp_path: Path, dataset: OrderedParquetDataset) -> None:
    files = data_files(dataset)
    files[1].unlink()
    with nothing_changes(tmp_path):
        with pytest.raises(CorruptDatasetError, match=rf"missing.*{re.escape(files[1].name)}"):
            dataset.to_pandas()
        with pytest.raises(
            CorruptDatasetError, match=rf"missing.*{re.escape(files[1].name)}.*refused"
        ):
            dataset.write(df=hours("2024-01-01 05:30", 1))


def test_truncated_first_file_of_a_predecessor_dataset(fixture_store: Path) -> None:
    store = Store(fixture_store, Measure)
    first = fixture_store / "temperature.paris" / "1D" / "file_00000.parquet"
    _truncate(first, 50)
    with nothing_changes(fixture_store):
        with pytest.raises(CorruptDatasetError, match=r"file_00000\.parquet"):
            store[PARIS].to_pandas()
        with pytest.raises(CorruptDatasetError, match=r"file_00000\.parquet"):
            list(store.iter_intersections([PARIS]))
        frame = pd.DataFrame(
            {"timestamp": pd.date_range("2024-06-01", periods=1, unit="ns"), "value": [1.0]}
        )
        with pytest.raises(CorruptDatasetError, match=r"file_00000\.parquet"):
            store[PARIS].write(df=frame)


# --------------------------------------------------------------------------------------
# Damaged metadata files


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        pytest.param(lambda data: b"", r"cannot be read as Parquet", id="empty"),
        pytest.param(
            lambda data: data[: len(data) // 2], r"cannot be read as Parquet", id="truncated"
        ),
        pytest.param(lambda data: data[:-1], r"cannot be read as Parquet", id="last-byte-missing"),
        pytest.param(lambda data: b"garbage " * 50, r"cannot be read as Parquet", id="garbage"),
        pytest.param(lambda data: b'{"ordered_on": "ts"}', r"cannot be read as Parquet", id="json"),
        pytest.param(
            lambda data: _parquet_bytes(pa.table({"x": [1]})),
            r"holds no oupsish \(nor oups\) metadata",
            id="foreign-parquet",
        ),
        pytest.param(
            lambda data: _parquet_bytes(
                pq.read_table(pa.BufferReader(data)).replace_schema_metadata({"oupsish": "{oops"})
            ),
            r"oupsish document is malformed",
            id="malformed-document",
        ),
    ],
)
def test_damaged_metadata_file(
    tmp_path: Path, dataset: OrderedParquetDataset, damage: Callable[[bytes], bytes], pattern: str
) -> None:
    metadata = tmp_path / "store" / "ds_opdmd"
    metadata.write_bytes(damage(metadata.read_bytes()))
    full = rf"metadata file '{re.escape(str(metadata))}' is not valid: .*{pattern}"
    with nothing_changes(tmp_path):
        with pytest.raises(CorruptDatasetError, match=full):
            OrderedParquetDataset(dataset.dirpath)
        with pytest.raises(CorruptDatasetError, match=full):
            dataset.to_pandas()
        with pytest.raises(CorruptDatasetError, match=full):
            dataset.write(df=hours("2024-02-01", 2))
        with pytest.raises(CorruptDatasetError, match=full):
            write(dataset.dirpath, ordered_on="ts", df=hours("2024-02-01", 2))


class _Exploit:
    """Pickles as a call to ``func(*args)``: what a hostile metadata file would hold."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


def _payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch '{marker}'"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system-protocol-0": f"cos\nsystem\n(S'{command}'\ntR.".encode(),
        "os.system-inst-opcode": f"(S'{command}'\nios\nsystem\n.".encode(),
        "os.system-protocol-4": pickle.dumps(_Exploit(os.system, command), protocol=4),
        "builtins.eval": pickle.dumps(_Exploit(eval, code), protocol=2),
        "builtins.exec-in-dict": pickle.dumps(
            {"ordered_on": "timestamp", "x": _Exploit(exec, code)}
        ),
        "path.touch": pickle.dumps({"ordered_on": _Exploit(Path.touch, marker)}),
        "class-instance": pickle.dumps({"ordered_on": pa.int64()}),
        "persistent-id": b"(dp0\nS'ordered_on'\nP1\ns.",
    }


@pytest.mark.parametrize("payload", list(_payloads(Path("marker"))))
def test_legacy_metadata_pickle_referencing_code_is_refused_not_run(
    tmp_path: Path, fixture_store: Path, payload: str
) -> None:
    marker = tmp_path / "executed"
    metadata = fixture_store / "pressure.stockholm" / "1h_opdmd"
    table = pq.read_table(metadata)
    hostile = {**(table.schema.metadata or {}), b"oups": _payloads(marker)[payload]}
    pq.write_table(table.replace_schema_metadata(hostile), metadata)
    store = Store(fixture_store, Measure)
    full = (
        rf"metadata file '{re.escape(str(metadata))}' is refused: .*(references '|persistent ids)"
    )
    with nothing_changes(tmp_path):
        assert STOCKHOLM in store  # discovery reads no metadata
        with pytest.raises(UnsafeMetadataError, match=full):
            OrderedParquetDataset(metadata.parent / "1h")
        with pytest.raises(UnsafeMetadataError, match=full):
            store[STOCKHOLM].to_pandas()
        with pytest.raises(UnsafeMetadataError, match=full):
            store.iter_intersections([BERLIN, STOCKHOLM])
        frame = pd.DataFrame(
            {"timestamp": pd.date_range("2024-06-01", periods=1, unit="ns"), "value": [1.0]}
        )
        with pytest.raises(UnsafeMetadataError, match=full):
            write(metadata.parent / "1h", ordered_on="timestamp", df=frame)
    assert not marker.exists(), "nothing read from disk may ever be executed"


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        (pickle.dumps(["ordered_on", "timestamp"]), r"must be a dict of strings"),
        (pickle.dumps({"ordered_on": b"timestamp"}), r"must be a dict of strings"),
        (pickle.dumps({"ordered_on": "timestamp"})[:-3], r"cannot be read"),
        (b"", r"cannot be read"),
    ],
)
def test_legacy_metadata_pickle_of_other_data_is_refused(
    tmp_path: Path, fixture_store: Path, payload: bytes, pattern: str
) -> None:
    metadata = fixture_store / "pressure.stockholm" / "1h_opdmd"
    table = pq.read_table(metadata)
    bad = {**(table.schema.metadata or {}), b"oups": payload}
    pq.write_table(table.replace_schema_metadata(bad), metadata)
    with nothing_changes(tmp_path), pytest.raises(CorruptDatasetError, match=pattern):
        Store(fixture_store, Measure)[STOCKHOLM].to_pandas()


# --------------------------------------------------------------------------------------
# Foreign files


FOREIGN = {
    "README.txt": b"notes about this dataset",
    "part-0.parquet": b"",  # filled with real Parquet below
    "file_x.parquet": b"not ours",
    "file_00000.parquet.bak": b"a backup",
    "file_00001.csv": b"ts,v\n",
    ".hidden": b"dotfile",
    "notes/file_00000.parquet": b"in a subfolder",
}


def _add_foreign_files(folder: Path) -> None:
    for name, content in FOREIGN.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "part-0.parquet":
            pq.write_table(pa.Table.from_pandas(BASE.iloc[:2], preserve_index=False), path)
        else:
            path.write_bytes(content)


def test_foreign_files_in_the_dataset_folder_are_ignored_and_kept(
    tmp_path: Path, dataset: OrderedParquetDataset
) -> None:
    _add_foreign_files(dataset.dirpath)
    foreign = {name: data for name, data in tree(dataset.dirpath).items() if name in FOREIGN}
    assert len(foreign) == len(FOREIGN)
    # Reads ignore them.
    with nothing_changes(tmp_path):
        result = dataset.to_pandas()
        assert result is not None
        pd.testing.assert_frame_equal(result, BASE)
        assert len(dataset.read(start="2024-01-01 05:00")) == 7
        assert len(OrderedParquetDataset(dataset.dirpath)) == 3
    # Writes of every kind ignore them and never delete them.
    dataset.write(df=hours("2024-01-01 01:30", 1))  # insert: rewrites a row group
    dataset.write(df=hours("2024-01-02", 2), row_group_target_size=4, max_n_off_target_rgs=1)
    dataset.write(df=hours("2024-01-01 05:00", 2), duplicates_on="ts")
    dataset.write(key_value_metadata={"k": "v"})
    after = tree(dataset.dirpath)
    for name, data in foreign.items():
        assert after.get(name) == data, f"foreign file {name} was changed or removed"
    result = dataset.to_pandas()
    assert result is not None and len(result) == 12 + 1 + 2


def test_foreign_files_and_folders_beside_datasets_in_a_store(fixture_store: Path) -> None:
    (fixture_store / "README.md").write_text("my store")
    (fixture_store / "notes.txt_opdmd").write_text("not metadata")
    (fixture_store / "temperature.berlin" / "old").mkdir()
    (fixture_store / "temperature.berlin" / "old" / "x.parquet").write_bytes(b"x")
    (fixture_store / "a.b" / "c").mkdir(parents=True)
    store = Store(fixture_store, Measure)
    assert store.keys == sorted([BERLIN, PARIS, STOCKHOLM])
    frame = pd.DataFrame(
        {"timestamp": pd.date_range("2024-06-01", periods=1, unit="ns"), "value": [1.0]}
    )
    store[PARIS].write(df=frame)
    assert (fixture_store / "README.md").read_text() == "my store"
    assert (fixture_store / "temperature.berlin" / "old" / "x.parquet").read_bytes() == b"x"


def test_a_foreign_hidden_tmp_file_survives_writes(
    tmp_path: Path, dataset: OrderedParquetDataset
) -> None:
    notes = dataset.dirpath / ".notes.tmp"
    notes.write_bytes(b"mine")
    dataset.write(df=hours("2024-02-01", 2))
    assert notes.read_bytes() == b"mine"
