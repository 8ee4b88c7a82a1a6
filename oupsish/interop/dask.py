"""Dask: a DataFrame indexed by ``ordered_on`` with divisions from the row-group stats.

One partition per *unit*: consecutive row groups sharing a boundary value are read
together, so partitions never share an index value and divisions are strictly increasing
(the last division is inclusive, as Dask expects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from oupsish.snapshot import Snapshot

if TYPE_CHECKING:
    import dask.dataframe

__all__ = ["read_unit", "to_dask", "units"]


def units(snapshot: Snapshot) -> list[list[int]]:
    """Group row groups into units (a row group starting on its predecessor's last value).

    Units never share an ``ordered_on`` value, so they make valid Dask partitions.
    """
    groups: list[list[int]] = []
    for index in range(len(snapshot)):
        if groups and snapshot.mins[index] == snapshot.maxs[index - 1]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def read_unit(
    files: Sequence[str], schema: pa.Schema, selected: Sequence[str], index: str
) -> pd.DataFrame:
    """Read one partition: ``files`` in order, indexed by ``index``."""
    table = pads.dataset(list(files), schema=schema, format="parquet").to_table(
        columns=[*selected, index] if index not in selected else list(selected)
    )
    frame: pd.DataFrame = table.to_pandas().set_index(index, drop=index not in selected)
    return frame


def to_dask(
    snapshot: Snapshot,
    folder: str,
    schema: pa.Schema,
    columns: Sequence[str] | None,
) -> dask.dataframe.DataFrame:
    """Return a Dask DataFrame over ``snapshot`` with known divisions."""
    try:
        import dask.dataframe as dd
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("this needs dask: pip install 'oupsish[dask]'") from error
    if snapshot.ordered_on is None or not len(snapshot):
        raise ValueError(f"dataset '{folder}' has no rows: nothing to distribute.")
    index = str(snapshot.ordered_on)
    selected = (
        [name for name in schema.names if name != index] if columns is None else list(columns)
    )
    unknown = [name for name in selected if name not in schema.names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} in dataset '{folder}'.")
    groups = units(snapshot)
    parts = [[f"{folder}/{snapshot.file_names[i]}" for i in group] for group in groups]
    divisions: list[Any] = [snapshot.mins[group[0]] for group in groups]
    divisions.append(snapshot.maxs[groups[-1][-1]])
    divisions = [_as_index_value(value, schema.field(index).type) for value in divisions]
    meta = read_unit_meta(schema, selected, index)
    frame: dask.dataframe.DataFrame = dd.from_map(  # type: ignore[no-untyped-call]
        read_unit,
        parts,
        args=(schema, selected, index),
        meta=meta,
        divisions=divisions,
        label=f"oupsish-{index}",
        enforce_metadata=False,
    )
    return frame


def read_unit_meta(schema: pa.Schema, columns: Sequence[str], index: str) -> pd.DataFrame:
    """Return the empty frame a partition looks like."""
    empty = schema.empty_table().select([*columns, index] if index not in columns else columns)
    meta: pd.DataFrame = empty.to_pandas().set_index(index, drop=index not in columns)
    return meta


def _as_index_value(value: Any, arrow_type: pa.DataType) -> Any:
    if pa.types.is_timestamp(arrow_type):
        stamp = pd.Timestamp(np.datetime64(value))
        return stamp.tz_localize("UTC").tz_convert(arrow_type.tz) if arrow_type.tz else stamp
    return value.item() if isinstance(value, np.generic) else value
