"""From the user's frame to an Arrow table of the dataset's schema, with every check.

The schema of a dataset is fixed by its first write. Later frames must have the same
columns (in any order) with the same types, up to lossless differences a user cannot
easily control: timestamp resolution (``ns`` vs ``us``), ``string`` vs ``large_string``,
the index width of categoricals (whose categories may grow from one write to the next).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from oupsish.errors import InvalidFrameError, SchemaMismatchError

__all__ = [
    "arrow_name",
    "bound_value",
    "check_frame",
    "check_ordered_column",
    "check_table",
    "conform_table",
    "frame_to_table",
    "normalize_duplicates_on",
    "ordered_values",
    "storage_schema",
]

OrderedOn = str | tuple[str, ...]

_DICTIONARY_INDEX = pa.int32()


def arrow_name(label: Hashable) -> str:
    """Return the Arrow column name pyarrow gives to a pandas column label."""
    if isinstance(label, str):
        return label
    if isinstance(label, tuple):
        return str(tuple(arrow_name(part) for part in label))
    return str(label)


def _conversion_hint(df: object) -> str:
    if isinstance(df, pd.Series):
        return " Convert a Series with series.to_frame() or pass a DataFrame of all columns."
    if isinstance(df, dict):
        return " Build the frame with pandas.DataFrame(your_dict)."
    return ""


def check_frame(df: object, ordered_on: OrderedOn, dataset: str) -> pd.DataFrame:
    """Check that ``df`` can be written: a DataFrame, ordered on a clean, sorted column.

    Raises
    ------
    TypeError
        If ``df`` is not a pandas DataFrame.
    InvalidFrameError
        If ``ordered_on`` is missing, has nulls, is not sorted, or column names repeat.

    A frame without rows is returned as is, whatever its columns: it writes nothing.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"df must be a pandas DataFrame or a pyarrow Table, got {type(df).__name__} "
            f"(dataset '{dataset}')." + _conversion_hint(df)
        )
    if len(df) == 0:
        return df  # no rows: nothing to write, whatever the columns
    names: list[Any] = df.columns.tolist()
    plain_names = all(isinstance(name, str) for name in names)
    if plain_names:  # without the hash table pandas builds on an index's first lookup
        unique, present = len(set(names)) == len(names), ordered_on in names
    else:  # pandas' rules for other labels (NaN equals NaN, tuples of a MultiIndex...)
        unique, present = df.columns.is_unique, ordered_on in df.columns
    if not unique:
        duplicated = df.columns[df.columns.duplicated()].unique().tolist()
        raise InvalidFrameError(
            f"column names must be unique; repeated: {duplicated} (dataset '{dataset}')."
        )
    if not present:
        hint = ""
        if ordered_on in (df.index.names or []):
            hint = " It is the frame's index: call df.reset_index() first."
        raise InvalidFrameError(
            f"ordered_on column {ordered_on!r} is not in the frame's columns "
            f"{df.columns.tolist()} (dataset '{dataset}').{hint}"
        )
    if plain_names and isinstance(ordered_on, str):
        values = _numpy_values(df, names.index(ordered_on))
        if values is not None and values.dtype.kind in "iufM" and _sorted_without_nulls(values):
            return df
    column: Any = df[ordered_on]  # a frame if it is a first level of several names
    if isinstance(column, pd.DataFrame):
        labels = [name for name in names if isinstance(name, tuple) and name[0] == ordered_on]
        raise InvalidFrameError(
            f"ordered_on {ordered_on!r} names {column.shape[1]} columns of the frame, "
            f"{labels}; it must name one (dataset '{dataset}')."
        )
    check_ordered_column(column, ordered_on, dataset)
    return df


def _numpy_values(df: pd.DataFrame, position: int) -> npt.NDArray[Any] | None:
    """Return the values of a frame's column as the numpy array pandas holds, or ``None``.

    ``None`` for columns of other dtypes (extension types: categories, strings, dates with
    a time zone...). The array is pandas' own, to read only. Through
    ``DataFrame._get_column_array`` where pandas has it: it does not make a Series, which
    costs about 20 us a column in pandas 3.
    """
    get = getattr(df, "_get_column_array", None)
    if get is None:  # another pandas: the public way
        column = df.iloc[:, position]
        return column.to_numpy() if isinstance(column.dtype, np.dtype) else None
    values = get(position)
    if isinstance(values, np.ndarray):
        return values
    # Dates and durations without a time zone are held in arrays wrapping numpy's.
    return np.asarray(values) if isinstance(values.dtype, np.dtype) else None


def check_table(table: pa.Table, ordered_on: OrderedOn, dataset: str) -> None:
    """Check that an Arrow table can be written, as :func:`check_frame` does a frame.

    ``ordered_on`` names the column the way pyarrow does (:func:`arrow_name`).
    """
    if table.num_rows == 0:
        return
    names = table.column_names
    if len(set(names)) != len(names):
        duplicated = sorted({name for name in names if names.count(name) > 1})
        raise InvalidFrameError(
            f"column names must be unique; repeated: {duplicated} (dataset '{dataset}')."
        )
    name = arrow_name(ordered_on)
    if name not in names:
        raise InvalidFrameError(
            f"ordered_on column {name!r} is not in the table's columns {names} "
            f"(dataset '{dataset}')."
        )
    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        _fail_categorical(ordered_on, dataset)
    # A view on the values, with NaN/NaT/None for nulls: no copy of the column for numbers.
    check_ordered_column(
        pd.Series(ordered_values(column), copy=False), ordered_on, dataset, "table"
    )


def _fail_categorical(ordered_on: OrderedOn, dataset: str) -> NoReturn:
    raise InvalidFrameError(
        f"ordered_on column {ordered_on!r} is categorical; it must hold ordered values "
        f"such as timestamps or numbers (dataset '{dataset}')."
    )


_NAT = np.iinfo(np.int64).min
"""The integer a NaT is stored as."""


def _sorted_without_nulls(values: npt.NDArray[Any]) -> bool:
    """Whether numbers or datetimes (at least one) are sorted ascending, without NaN or NaT.

    NaN fails every comparison: sorted and clean in one pass over the data. Datetimes are
    compared as the integers they are, four times faster than as datetimes; NaT, the
    smallest integer, then can only be the first value if the rest are sorted.
    """
    if values.dtype.kind == "M":
        values = values.view(np.dtype(np.int64).newbyteorder(values.dtype.byteorder))
        if values[0] == _NAT:
            return False
    return values[0] == values[0] and bool(np.all(values[1:] >= values[:-1]))


def check_ordered_column(
    column: pd.Series[Any], ordered_on: OrderedOn, dataset: str, holder: str = "frame"
) -> None:
    """Raise unless ``column`` (of at least one row) is free of nulls and sorted ascending."""
    dtype = column.dtype
    if (
        isinstance(dtype, np.dtype)
        and dtype.kind in "iufM"
        and _sorted_without_nulls(column.to_numpy())
    ):
        return
    if isinstance(column.dtype, pd.CategoricalDtype):
        _fail_categorical(ordered_on, dataset)
    nulls = column.isna()
    if nulls.any():
        first = int(np.flatnonzero(nulls.to_numpy())[0])
        raise InvalidFrameError(
            f"ordered_on column {ordered_on!r} has {int(nulls.sum())} null/NaN/NaT value(s), "
            f"first at row {first} (dataset '{dataset}')."
        )
    try:
        if column.is_monotonic_increasing:
            return
        values = column.to_numpy()
        decreasing = np.flatnonzero(values[1:] < values[:-1])
    except TypeError as error:
        raise InvalidFrameError(
            f"ordered_on column {ordered_on!r} holds values that cannot be compared with each "
            f"other ({error}); it must hold one type of ordered values (dataset '{dataset}')."
        ) from error
    where = f", first at row {int(decreasing[0]) + 1}" if len(decreasing) else ""
    raise InvalidFrameError(
        f"the {holder} must be sorted ascending on {ordered_on!r}; it is not{where} "
        f"(dataset '{dataset}')."
    )


def normalize_duplicates_on(
    duplicates_on: str | Sequence[Hashable] | None,
    ordered_on: OrderedOn,
    columns: Sequence[Hashable],
    dataset: str,
) -> list[Hashable] | None:
    """Return the columns rows are compared on to drop duplicates, or ``None`` to keep all.

    A name or list of names is extended with ``ordered_on``; ``[]`` means all columns. The
    caller's list is never modified.
    """
    if duplicates_on is None:
        return None
    if isinstance(duplicates_on, str) or (
        isinstance(duplicates_on, tuple) and duplicates_on in columns
    ):
        subset: list[Hashable] = [duplicates_on]
    elif isinstance(duplicates_on, Sequence):
        subset = list(duplicates_on)
        if not subset:
            return list(columns)
    else:
        raise TypeError(
            f"duplicates_on must be None, a column name or a list of names, "
            f"got {type(duplicates_on).__name__} (dataset '{dataset}')."
        )
    unknown = [name for name in subset if name not in columns]
    if unknown:
        raise InvalidFrameError(
            f"duplicates_on names unknown column(s) {unknown}; columns are "
            f"{list(columns)} (dataset '{dataset}')."
        )
    if ordered_on not in subset:
        subset.append(ordered_on)
    return subset


def _normalize_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(arrow_type):
        return pa.dictionary(_DICTIONARY_INDEX, arrow_type.value_type, arrow_type.ordered)
    return arrow_type


def storage_schema(schema: pa.Schema) -> pa.Schema:
    """Return the schema a first frame is stored with (categoricals get int32 indices)."""
    fields = [field.with_type(_normalize_type(field.type)) for field in schema]
    normalized = pa.schema(fields)
    return normalized.with_metadata(schema.metadata) if schema.metadata else normalized


def _same_family(actual: pa.DataType, stored: pa.DataType) -> bool:
    if actual.equals(stored) or pa.types.is_null(actual):
        return True
    if pa.types.is_timestamp(actual) and pa.types.is_timestamp(stored):
        # Any resolution; tz-aware into tz-aware is a lossless conversion of the same instants.
        return (actual.tz is None) == (stored.tz is None)
    strings = (pa.types.is_string, pa.types.is_large_string)
    if any(f(actual) for f in strings) and any(f(stored) for f in strings):
        return True
    binaries = (pa.types.is_binary, pa.types.is_large_binary)
    if any(f(actual) for f in binaries) and any(f(stored) for f in binaries):
        return True
    if pa.types.is_dictionary(actual) and pa.types.is_dictionary(stored):
        return bool(actual.ordered == stored.ordered) and _same_family(
            actual.value_type, stored.value_type
        )
    return False


def _type_text(arrow_type: pa.DataType) -> str:
    """Name an Arrow type, with the pandas dtype a user knows when it reads differently."""
    if pa.types.is_timestamp(arrow_type):
        tz = f", {arrow_type.tz}" if arrow_type.tz is not None else ""
        pandas_name = f"datetime64[{arrow_type.unit}{tz}]"
    elif pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        pandas_name = "str"
    elif pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        pandas_name = str(np.dtype(arrow_type.to_pandas_dtype()))
    else:
        pandas_name = str(arrow_type)
    text = str(arrow_type)
    return text if pandas_name == text else f"{text} ({pandas_name})"


def _schema_problems(actual: pa.Schema, stored: pa.Schema) -> list[str]:
    problems = []
    missing = [name for name in stored.names if name not in actual.names]
    extra = [name for name in actual.names if name not in stored.names]
    if missing:
        problems.append(f"missing column(s) {missing} (in the dataset, not in the frame)")
    if extra:
        problems.append(f"extra column(s) {extra} (in the frame, not in the dataset)")
    for field in actual:
        if field.name in stored.names:
            expected = stored.field(field.name).type
            if not _same_family(field.type, expected):
                problems.append(
                    f"column '{field.name}' is {_type_text(field.type)}, "
                    f"the dataset stores {_type_text(expected)}"
                )
    return problems


def frame_to_table(df: pd.DataFrame, stored: pa.Schema | None, dataset: str) -> pa.Table:
    """Convert a checked frame to an Arrow table with the dataset's stored schema.

    With no stored schema yet (first write), the frame's own schema, normalized by
    :func:`storage_schema`, becomes the dataset's.

    Raises
    ------
    SchemaMismatchError
        If columns are missing, extra or of another type than the stored schema.
    """
    if stored is not None:
        arrays = _plain_arrays(df, stored)
        if arrays is not None:
            return pa.Table.from_arrays(arrays, schema=stored)
    try:
        # Threads only pay off on large frames; starting them costs ~3 ms per call.
        threads = None if len(df) * len(df.columns) > 1_000_000 else 1
        table = pa.Table.from_pandas(
            _with_native_byte_order(df), preserve_index=False, nthreads=threads
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InvalidFrameError(
            f"the frame cannot be converted to Arrow: {error} (dataset '{dataset}')."
        ) from error
    return conform_table(table, stored, dataset)


def _with_native_byte_order(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with its big-endian numpy columns (pyarrow refuses them) made native."""
    swapped = {
        name: dtype.newbyteorder("=")
        for name, dtype in df.dtypes.items()
        if isinstance(dtype, np.dtype) and not dtype.isnative
    }
    return df.astype(swapped) if swapped else df


def _plain_arrays(df: pd.DataFrame, stored: pa.Schema) -> list[pa.Array[Any]] | None:
    """Return the columns as arrays of the stored types, if all are plain numpy columns.

    Each column's numpy dtype must map to its stored type exactly. Then
    :func:`pyarrow.Table.from_pandas` would only wrap each column (NaN and NaT becoming
    nulls, as here) and add metadata the stored schema replaces anyway; this skips its
    fixed cost, about half a millisecond per call. ``None`` asks for the general conversion.
    """
    if df.columns.tolist() != stored.names:
        return None
    arrays = []
    for position, field in enumerate(stored):
        values = _numpy_values(df, position)
        if values is None or values.dtype.kind not in "biufM" or not values.dtype.isnative:
            return None
        if pa.from_numpy_dtype(values.dtype) != field.type:
            return None
        arrays.append(_plain_array(values, field.type))
    return arrays


def _plain_array(values: npt.NDArray[Any], arrow_type: pa.DataType) -> pa.Array[Any]:
    """Wrap a numpy column without copying it when it holds no NaN or NaT (the usual case).

    Checking for them with numpy is ten times faster than pyarrow's own null detection.
    """
    kind = values.dtype.kind
    # A minimum is NaN if any value is, NaT if any is (the smallest integer): faster than
    # isnan() or isnat(), which build an array of flags.
    has_nulls = len(values) > 0 and (
        (kind == "f" and bool(np.isnan(values.min())))
        or (kind == "M" and values.view(np.int64).min() == _NAT)
    )
    if has_nulls or not values.flags.c_contiguous:
        return pa.array(values, type=arrow_type, from_pandas=True)
    if kind == "M":
        return pa.array(values.view(np.int64)).view(arrow_type)
    return pa.array(values, type=arrow_type)


def conform_table(
    table: pa.Table, stored: pa.Schema | None, dataset: str, holder: str = "frame"
) -> pa.Table:
    """Cast ``table`` to the dataset's stored schema (or, on a first write, normalize its own).

    Raises
    ------
    SchemaMismatchError
        If columns are missing, extra or of another type than the stored schema.
    """
    if stored is None:
        return table.cast(storage_schema(table.schema))
    problems = _schema_problems(table.schema, stored)
    if problems:
        raise SchemaMismatchError(
            f"dataset '{dataset}': the {holder} does not match the dataset's schema: "
            + "; ".join(problems)
            + f". The dataset's columns are {stored.names}; nothing was written."
        )
    table = table.select(stored.names)
    if table.schema.equals(stored, check_metadata=True):
        return table
    try:
        return table.cast(stored)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise SchemaMismatchError(
            f"dataset '{dataset}': the {holder}'s values do not fit the dataset's schema "
            f"{stored.names}: {error}."
        ) from error


def ordered_values(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> npt.NDArray[Any]:
    """Return ``ordered_on`` values as a numpy array that compares like the column.

    Timestamps with a timezone become UTC ``datetime64``; strings become objects.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = column.cast(pa.timestamp(column.type.unit))
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _ceil_to_unit(nanoseconds: int, unit: str) -> int:
    per_unit = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    return -((-nanoseconds) // per_unit)


def bound_value(value: object, arrow_type: pa.DataType, column: OrderedOn) -> Any:
    """Convert a range bound to a value comparable with :func:`ordered_values`.

    The result ``b`` is such that, for any stored value ``v``, ``v >= b`` and ``v < b`` mean
    the same as comparing ``v`` with ``value`` itself (bounds finer than the column's
    resolution are rounded up).

    Raises
    ------
    TypeError
        If ``value`` cannot be compared with the column (for instance a naive timestamp
        for a timezone-aware column).
    """
    if pa.types.is_timestamp(arrow_type):
        if isinstance(value, bool | int | float | np.number):
            # pandas would read a number as nanoseconds since 1970: surely not what was meant.
            raise TypeError(
                f"bound {value!r} is a number, but column {column!r} holds timestamps: pass a "
                "pandas Timestamp, a datetime or a date string."
            )
        try:
            stamp = pd.Timestamp(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"bound {value!r} is not a timestamp, as column {column!r} requires."
            ) from error
        if stamp is pd.NaT:
            raise TypeError(f"bound for column {column!r} cannot be NaT.")
        if (stamp.tzinfo is None) != (arrow_type.tz is None):
            state = "tz-naive" if stamp.tzinfo is None else "tz-aware"
            expected = f"tz-aware ({arrow_type.tz})" if arrow_type.tz else "tz-naive"
            raise TypeError(f"bound {value!r} is {state}, but column {column!r} is {expected}.")
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        unit = arrow_type.unit
        return np.datetime64(_ceil_to_unit(stamp.as_unit("ns").value, unit), unit)
    if pa.types.is_integer(arrow_type):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(f"bound {value!r} is not a number, as column {column!r} requires.")
        return math.ceil(value)
    if pa.types.is_floating(arrow_type):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(f"bound {value!r} is not a number, as column {column!r} requires.")
        return float(value)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        if not isinstance(value, str):
            raise TypeError(f"bound {value!r} is not a string, as column {column!r} requires.")
        return value
    try:
        return pa.scalar(value).cast(arrow_type).as_py()  # type: ignore[call-overload]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise TypeError(f"bound {value!r} cannot be compared with column {column!r}.") from error
