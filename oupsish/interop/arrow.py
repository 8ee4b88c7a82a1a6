"""A streaming ``pyarrow.RecordBatchReader`` over a range of a dataset, row group by row group."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import pyarrow as pa

from oupsish.commit import DatasetPaths
from oupsish.frames import arrow_name, ordered_values
from oupsish.read import Range, read_row_groups
from oupsish.snapshot import Snapshot

__all__ = ["output_schema", "record_batch_reader"]


def output_schema(
    schema: pa.Schema | None, columns: Sequence[Hashable] | None, where: str
) -> pa.Schema:
    """Return the schema of the selected ``columns`` (all when ``None``)."""
    if schema is None:
        return pa.schema([])
    if columns is None:
        return schema
    names = [arrow_name(column) for column in columns]
    unknown = [name for name in names if name not in schema.names]
    if unknown:
        raise ValueError(
            f"unknown column(s) {unknown} in dataset '{where}'; columns are {schema.names}."
        )
    selected: pa.Schema = schema.empty_table().select(names).schema
    return selected


def record_batch_reader(
    paths: DatasetPaths,
    snapshot: Snapshot,
    schema: pa.Schema | None,
    bounds: Range,
    columns: Sequence[Hashable] | None,
) -> pa.RecordBatchReader:
    """Stream the rows of ``bounds`` (and ``columns``), holding one row group at a time."""
    selected = output_schema(schema, columns, str(paths.folder))
    first, last = bounds.row_groups(snapshot)
    key = arrow_name(snapshot.ordered_on) if snapshot.ordered_on is not None else ""
    filtered = bool(key) and (bounds.start is not None or bounds.end_excl is not None)
    read_names = list(selected.names)
    if filtered and key not in read_names:
        read_names.append(key)

    def batches() -> Iterator[pa.RecordBatch]:
        for index in range(first, last):
            table = read_row_groups(paths, snapshot, schema, [index], read_names)
            if filtered:
                lo, hi = bounds.rows(ordered_values(table.column(key)))
                table = table.slice(lo, hi - lo)
            if table.num_rows:
                yield from table.select(selected.names).to_batches()

    return pa.RecordBatchReader.from_batches(selected, batches())
