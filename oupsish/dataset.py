"""``OrderedParquetDataset``: one ordered dataset, one row group per Parquet file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from oupsish import tail_cache
from oupsish.commit import (
    DatasetPaths,
    Signature,
    Transaction,
    is_superseded_name,
    is_temporary_name,
    metadata_signature,
    read_snapshot,
)
from oupsish.errors import CorruptDatasetError, ReadOnlyError
from oupsish.frames import OrderedOn, arrow_name
from oupsish.history import history_path, read_history
from oupsish.ingest import Batch, csv_chunks, csv_tables, is_stream, write_stream
from oupsish.interop import dask as interop_dask
from oupsish.interop import duckdb as interop_duckdb
from oupsish.interop import polars as interop_polars
from oupsish.interop.arrow import record_batch_reader
from oupsish.io import DEFAULT_COMPRESSION, ParquetOptions
from oupsish.naming import is_data_file_name, parse_name
from oupsish.plan import DEFAULT_ROW_GROUP_TARGET_SIZE
from oupsish.read import Range, read_row_groups, read_table, retrying, to_frame
from oupsish.snapshot import Snapshot
from oupsish.verify import Problem, verify_dataset
from oupsish.writer import WriteOptions, resolve_ordered_on, schema_of, write_dataset

if TYPE_CHECKING:
    import dask.dataframe
    import duckdb
    import polars

__all__ = ["DatasetView", "OrderedParquetDataset", "write"]


def _row_group_stats(snapshot: Snapshot, indices: Sequence[int] | range) -> pd.DataFrame:
    stats = snapshot.stats.take(pa.array(list(indices), pa.int64()))
    # "file_<id>.parquet" -> "<id>", on the whole column at once.
    file_ids = pc.utf8_slice_codeunits(stats.column("file_names"), len("file_"), -len(".parquet"))
    frame: pd.DataFrame = stats.drop_columns(["file_names"]).to_pandas()
    frame.insert(0, "file_ids", file_ids.to_pandas())
    return frame


def _check_lock_timeout(lock_timeout: float | None) -> float | None:
    if lock_timeout is not None and (
        isinstance(lock_timeout, bool)
        or not isinstance(lock_timeout, int | float)
        or lock_timeout < 0
    ):
        raise ValueError(f"lock_timeout must be None or a number >= 0, got {lock_timeout!r}.")
    return lock_timeout


class _Reader:
    """Reading shared by datasets and their views: a snapshot source and a row-group subset."""

    _paths: DatasetPaths

    def _load(self, force: bool) -> Snapshot:
        raise NotImplementedError

    def _indices(self, snapshot: Snapshot) -> range | Sequence[int]:
        return range(len(snapshot))

    def _schema(self, snapshot: Snapshot) -> pa.Schema | None:
        return schema_of(self._paths, snapshot)

    @property
    def dirpath(self) -> Path:
        """The dataset's folder."""
        return self._paths.folder

    @property
    def ordered_on(self) -> OrderedOn | None:
        """The column rows are ordered on."""
        return self._load(False).ordered_on

    @property
    def key_value_metadata(self) -> dict[str, str]:
        """The user's key-value metadata (a copy)."""
        return dict(self._load(False).key_value_metadata)

    @property
    def row_group_stats(self) -> pd.DataFrame:
        """One row per row group: ``file_ids``, ``n_rows``, ``ordered_on_mins``/``maxs``."""
        snapshot = self._load(False)
        return _row_group_stats(snapshot, self._indices(snapshot))

    def __len__(self) -> int:
        return len(self._indices(self._load(False)))

    def _read_table(
        self,
        snapshot: Snapshot,
        start: object,
        end_excl: object,
        columns: Sequence[Hashable] | None,
    ) -> pa.Table:
        schema = self._schema(snapshot)
        indices = self._indices(snapshot)
        if isinstance(indices, range) and indices == range(len(snapshot)):
            return read_table(
                self._paths,
                snapshot,
                schema,
                Range.of(snapshot, schema, start, end_excl, str(self.dirpath)),
                columns,
            )
        return read_row_groups(self._paths, snapshot, schema, indices)

    @property
    def files(self) -> list[Path]:
        """The data files of the current snapshot, in ``ordered_on`` order."""
        snapshot = self._load(False)
        return [self._paths.data_file(snapshot.file_names[i]) for i in self._indices(snapshot)]

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """Export all rows through the Arrow C stream interface (Polars, DuckDB...)."""
        reader = self._batches(None, None, None)
        return reader.__arrow_c_stream__(requested_schema)  # type: ignore[no-untyped-call]

    def _batches(
        self, start: object, end_excl: object, columns: Sequence[Hashable] | None
    ) -> pa.RecordBatchReader:
        snapshot = self._load(False)
        schema = self._schema(snapshot)
        indices = self._indices(snapshot)
        if not (isinstance(indices, range) and indices == range(len(snapshot))):
            snapshot = snapshot.subset(indices)
        bounds = Range.of(snapshot, schema, start, end_excl, str(self.dirpath))
        return record_batch_reader(self._paths, snapshot, schema, bounds, columns)

    def to_polars(self) -> polars.DataFrame:
        """Return all rows as a Polars DataFrame (needs ``oupsish[polars]``)."""
        table = retrying(self._load, lambda snapshot: self._read_table(snapshot, None, None, None))
        return interop_polars.to_polars(table)

    def to_pandas(self) -> pd.DataFrame | None:
        """Return all rows in ``ordered_on`` order with a fresh index, or ``None`` if empty."""
        table = retrying(self._load, lambda snapshot: self._read_table(snapshot, None, None, None))
        if table.num_rows == 0:
            return None
        return to_frame(table)


class OrderedParquetDataset(_Reader):
    """A dataset of rows ordered on one column, stored as one row group per Parquet file.

    Creating the object touches nothing on disk; the first :meth:`write` creates the
    folder ``dirpath``, the metadata file ``<dirpath>_opdmd`` beside it and the lock file
    ``<dirpath>.lock``. Every read sees one committed state; writers are serialised by the
    lock, held only while writing.

    Parameters
    ----------
    dirpath : str or os.PathLike
        The dataset's folder.
    ordered_on : str, optional
        The column rows are ordered on. Fixed by the first write; giving another value for
        an existing dataset raises ``ValueError``.
    lock_timeout : float, optional
        Seconds a write waits for another writer of this dataset; ``None`` waits as long
        as needed. On expiry, ``TimeoutError`` names the dataset.
    lock_lifetime : float, optional
        Accepted for compatibility with ``oups``, without effect: a lock held by a process
        that died is released by the operating system.
    fsync : bool, default True
        Make every commit durable (``fsync`` of its files and folders) before ``write``
        returns. ``False`` is faster: commits stay atomic for readers and survive the
        writing process dying at any point, but an OS crash or power loss may lose or
        damage recent commits, as with SQLite's ``synchronous=OFF``. For scratch data, or
        data you can ingest again.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ds = OrderedParquetDataset(f"{tmp}/ds", ordered_on="ts")
    ...     ds.write(df=pd.DataFrame({"ts": [1, 2, 3], "v": [1.0, 2.0, 3.0]}))
    ...     ds.read(start=2).to_dict("list")
    {'ts': [2, 3], 'v': [2.0, 3.0]}
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        ordered_on: OrderedOn | None = None,
        lock_timeout: float | None = None,
        lock_lifetime: float | None = None,
        fsync: bool = True,
    ) -> None:
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be True or False, got {type(fsync).__name__} {fsync!r}.")
        self._paths = DatasetPaths(dirpath)
        self._lock_timeout = _check_lock_timeout(lock_timeout)
        self._fsync = fsync
        self._cache: tuple[Signature | None, Snapshot] | None = None
        snapshot = self._load(False)
        self._requested_ordered_on = resolve_ordered_on(
            snapshot.ordered_on, ordered_on, str(self._paths.folder)
        )

    def _load(self, force: bool) -> Snapshot:
        """Return the committed snapshot, re-reading the metadata file only if it changed."""
        signature = metadata_signature(self._paths)
        if not force and self._cache is not None and self._cache[0] == signature:
            return self._cache[1]
        snapshot = read_snapshot(self._paths) if signature is not None else Snapshot.empty()
        self._cache = (signature, snapshot)
        return snapshot

    def __repr__(self) -> str:
        return f"OrderedParquetDataset({str(self._paths.folder)!r})"

    @property
    def ordered_on(self) -> OrderedOn | None:
        """The column rows are ordered on."""
        return self._load(False).ordered_on or self._requested_ordered_on

    @property
    def is_newly_initialized(self) -> bool:
        """Whether the dataset has no metadata file on disk yet."""
        return not self._load(False).exists

    @property
    def max_file_id(self) -> int:
        """Highest top-level file id in use (``-1`` when empty)."""
        names = self._load(False).file_names
        return max((parse_name(name)[0][0] for name in names), default=-1)

    def snapshot(self) -> Snapshot:
        """Return the current committed state (an immutable :class:`Snapshot`)."""
        return self._load(False)

    def __getitem__(self, item: int | slice) -> DatasetView:
        snapshot = self._load(False)
        count = len(snapshot)
        if isinstance(item, slice):
            indices = range(count)[item]
            if indices.step < 0:
                raise ValueError("a view keeps row groups in order: its step must be positive.")
            return DatasetView(self._paths, snapshot, indices)
        if isinstance(item, int | np.integer) and not isinstance(item, bool):
            index = int(item)
            if not -count <= index < count:
                raise IndexError(
                    f"row group {index} out of range: dataset '{self.dirpath}' has {count}."
                )
            return DatasetView(self._paths, snapshot, range(index % count, index % count + 1))
        raise TypeError(f"row groups are selected by int or slice, not {type(item).__name__}.")

    def read(
        self,
        start: object = None,
        end_excl: object = None,
        columns: Sequence[Hashable] | None = None,
    ) -> pd.DataFrame:
        """Return the rows with ``start <= ordered_on < end_excl``, reading only what is needed.

        Parameters
        ----------
        start, end_excl : optional
            Bounds comparable with ``ordered_on`` values (a timestamp for a datetime
            column); ``None`` leaves that side open.
        columns : list, optional
            Columns to return, in this order; all by default.

        Returns
        -------
        pandas.DataFrame
            Possibly empty, with a ``RangeIndex`` starting at 0.
        """
        return to_frame(self.to_arrow(start, end_excl, columns))

    def to_arrow(
        self,
        start: object = None,
        end_excl: object = None,
        columns: Sequence[Hashable] | None = None,
    ) -> pa.Table:
        """Return the rows of ``[start, end_excl)`` as a ``pyarrow.Table`` (see :meth:`read`)."""
        return retrying(
            self._load, lambda snapshot: self._read_table(snapshot, start, end_excl, columns)
        )

    def to_batches(
        self,
        start: object = None,
        end_excl: object = None,
        columns: Sequence[Hashable] | None = None,
    ) -> pa.RecordBatchReader:
        """Stream the rows of ``[start, end_excl)`` as a ``pyarrow.RecordBatchReader``.

        Row groups are read one at a time, when the reader asks for them, from the snapshot
        current at this call. Memory stays at about one row group. The reader also exposes
        ``__arrow_c_stream__``: ``polars.DataFrame(reader)``, ``duckdb.from_arrow(reader)``.
        """
        return self._batches(start, end_excl, columns)

    def to_polars(
        self,
        start: object = None,
        end_excl: object = None,
        columns: Sequence[Hashable] | None = None,
    ) -> polars.DataFrame:
        """Return the rows of ``[start, end_excl)`` as a Polars DataFrame (see :meth:`read`).

        Needs ``pip install oupsish[polars]``.
        """
        return interop_polars.to_polars(self.to_arrow(start, end_excl, columns))

    def scan_polars(self, columns: Sequence[Hashable] | None = None) -> polars.LazyFrame:
        """Return a Polars ``LazyFrame`` over the current snapshot's files, in order.

        The scan is bound to this snapshot's file list: if a later write supersedes one of
        its files before the query is collected, collecting fails; scan again.
        """
        return interop_polars.scan(self.files, columns)

    def to_duckdb(
        self, connection: duckdb.DuckDBPyConnection | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Return a DuckDB relation over the current snapshot's files, in order.

        Parameters
        ----------
        connection : duckdb.DuckDBPyConnection, optional
            Where to create the relation; a new in-memory connection by default.
        """
        snapshot = self._load(False)
        empty = (self._schema(snapshot) or pa.schema([])).empty_table()
        return interop_duckdb.relation(self.files, connection, empty)

    def to_dask(self, columns: Sequence[Hashable] | None = None) -> dask.dataframe.DataFrame:
        """Return a Dask DataFrame indexed by ``ordered_on``, with known divisions.

        Divisions come from the row-group statistics: one partition per row group, or per
        run of row groups sharing a boundary value (so divisions stay strictly
        increasing). Needs ``pip install oupsish[dask]``.
        """
        snapshot = self._load(False)
        schema = self._schema(snapshot)
        if schema is None:
            raise ValueError(f"dataset '{self.dirpath}' has no rows: nothing to distribute.")
        names = None if columns is None else [arrow_name(column) for column in columns]
        return interop_dask.to_dask(snapshot, str(self._paths.folder), schema, names)

    def write(
        self,
        *,
        df: pd.DataFrame
        | pa.Table
        | pa.RecordBatch
        | Iterable[pd.DataFrame | pa.Table | pa.RecordBatch]
        | pa.RecordBatchReader
        | None = None,
        ordered_on: OrderedOn | None = None,
        row_group_target_size: int | str = DEFAULT_ROW_GROUP_TARGET_SIZE,
        duplicates_on: str | Sequence[Hashable] | None = None,
        max_n_off_target_rgs: int | None = None,
        key_value_metadata: Mapping[str, str | None] | None = None,
        compression: str | None = DEFAULT_COMPRESSION,
        batch_rows: int | None = None,
        **parquet_options: Any,
    ) -> None:
        """Merge ``df`` into the dataset, in order, in one atomic commit.

        Rows after the last stored value are appended; rows falling among stored rows are
        merged with the row groups they overlap, which are rewritten; other row groups are
        neither read nor rewritten. Equal ``ordered_on`` values keep insertion order:
        stored rows first. The caller's frame and lists are never modified.

        Parameters
        ----------
        df : pandas.DataFrame, pyarrow.Table or RecordBatch, an iterable of them, or a
            pyarrow.RecordBatchReader, optional
            New rows, sorted on ``ordered_on``, with no null there. ``None`` or an empty
            frame writes no rows (metadata and resizing still apply). Arrow data is written
            without a detour through pandas. A stream (an iterable of frames or tables, a
            generator, a ``RecordBatchReader``) is written batch by
            batch, one commit per batch, at bounded memory; each batch must be sorted
            and ``key_value_metadata`` is committed with the first one.
        ordered_on : str, optional
            Required by the first write unless given to the constructor.
        row_group_target_size : int or str, default 6_345_000
            Rows per row group, or a pandas frequency (``"1D"``, ``"MS"``) giving each
            period its own row group(s).
        duplicates_on : str or list, optional
            Drop rows equal on these columns (plus ``ordered_on``), keeping the last, i.e.
            new data wins; ``[]`` compares all columns. Only new rows and the row groups
            they overlap are deduplicated.
        max_n_off_target_rgs : int, optional
            ``None`` appends row groups as they come. An int ``n`` merges off-target row
            groups (under 80% of the target, or several in one period) next to the new
            rows once there would be more than ``n`` (``0`` behaves like ``1``).
        key_value_metadata : dict, optional
            Keys to add or update; a ``None`` value removes the key. Committed with the rows.
        compression : str, default "snappy"
            Parquet codec of new files.
        batch_rows : int, optional
            For a stream: gather frames until a batch has this many rows (default: one
            commit per frame).
        **parquet_options
            Further options of :func:`pyarrow.parquet.write_table` (``compression_level``,
            ``use_dictionary``...).

        Raises
        ------
        ValueError
            If the frame is unsorted, has nulls in ``ordered_on``, lacks it, or its
            columns or types differ from the dataset's; if an option is invalid.
        TimeoutError
            If another writer holds the dataset longer than ``lock_timeout``.
        """
        if is_stream(df):
            first = True

            def write_batch(batch: Batch) -> None:
                nonlocal first
                self.write(
                    df=batch,
                    ordered_on=ordered_on,
                    row_group_target_size=row_group_target_size,
                    duplicates_on=duplicates_on,
                    max_n_off_target_rgs=max_n_off_target_rgs,
                    key_value_metadata=key_value_metadata if first else None,
                    compression=compression,
                    **parquet_options,
                )
                first = False

            write_stream(df, write_batch, batch_rows)
            if first and key_value_metadata:
                write_batch(pd.DataFrame())
            return
        options = WriteOptions(
            ordered_on=ordered_on if ordered_on is not None else self._requested_ordered_on,
            row_group_target_size=row_group_target_size,
            duplicates_on=duplicates_on,
            max_n_off_target_rgs=max_n_off_target_rgs,
            key_value_metadata=key_value_metadata,
            parquet=ParquetOptions.from_kwargs(compression, parquet_options),
        )
        self._load(False)
        self._cache = write_dataset(
            self._paths, df, options, self._lock_timeout, self._cache, self._fsync
        )

    def ingest_csv(
        self,
        path: str | os.PathLike[str],
        *,
        ordered_on: str | None = None,
        chunksize: int = 1_000_000,
        parse_options: pa_csv.ParseOptions | None = None,
        convert_options: pa_csv.ConvertOptions | None = None,
        read_csv: Mapping[str, Any] | None = None,
        on_chunk: Callable[[int], object] | None = None,
        **write_options: Any,
    ) -> int:
        """Parse a CSV file (plain or ``.gz``/``.bz2``/``.zst``...) in chunks and write them.

        Each chunk is one commit. pyarrow parses the file block by block, straight into
        Arrow: memory holds about one chunk, whatever the file's size. Empty and
        header-only files write nothing.

        Parameters
        ----------
        path : str or os.PathLike
            The CSV file; compression is inferred from its extension.
        ordered_on : str, optional
            The ordered column (the dataset's by default); parsed as a timestamp when it
            holds text (ISO 8601 by default).
        chunksize : int, default 1_000_000
            Rows parsed and committed at a time.
        parse_options, convert_options : pyarrow.csv.ParseOptions, ConvertOptions, optional
            How pyarrow parses the file (delimiter, column types, timestamp formats...).
            Columns the dataset already stores are parsed with its types.
        read_csv : dict, optional
            Options of :func:`pandas.read_csv` (``sep``, ``dtype``, ``parse_dates``...):
            when given, pandas parses the file instead of pyarrow (slower, more memory).
        on_chunk : callable, optional
            Called with the number of rows parsed so far, before each chunk is written
            (progress reporting).
        **write_options
            Options of :meth:`write`.

        Returns
        -------
        int
            The number of rows read from the file.
        """
        column = ordered_on if ordered_on is not None else self.ordered_on
        if not isinstance(column, str):
            raise ValueError(f"ingest_csv needs ordered_on for dataset '{self.dirpath}'.")
        chunks: Iterator[pd.DataFrame | pa.Table]
        if read_csv is not None:
            if parse_options is not None or convert_options is not None:
                raise ValueError(
                    "ingest_csv takes pyarrow's parse_options/convert_options or pandas' "
                    "read_csv options, not both."
                )
            chunks = csv_chunks(path, column, chunksize, dict(read_csv))
        else:
            stored = self._schema(self._load(False))
            chunks = csv_tables(path, column, chunksize, stored, parse_options, convert_options)
        rows = 0

        def counted() -> Iterator[pd.DataFrame | pa.Table]:
            nonlocal rows
            for chunk in chunks:
                rows += len(chunk)
                if on_chunk is not None:
                    on_chunk(rows)
                yield chunk
                del chunk  # written: let it go before the next chunk is parsed

        self.write(df=counted(), ordered_on=column, **write_options)
        return rows

    def history(self) -> pd.DataFrame:
        """Return the commits of this dataset, oldest first.

        Columns: ``commit``, ``time`` (UTC), ``operation`` (``append``, ``insert``,
        ``compact``, ``delete``, ``metadata``), ``rows_added`` and ``rows_removed`` (rows of
        the row groups written and superseded), ``rows_after``, ``row_groups_added``,
        ``row_groups_removed``, ``metadata_change`` (``{key: new value or None}``) and
        ``version`` (of oupsish). Commits made by ``oups`` are not recorded.
        """
        snapshot = self._load(True)
        return read_history(history_path(self._paths.metadata), snapshot.commit)

    def verify(self) -> list[Problem]:
        """Check the files on disk against the committed metadata; change nothing.

        Every file the metadata lists must exist, decode (every page of every column),
        hold one row group with the recorded row count, ``ordered_on`` min and max and the
        dataset's schema. Data files no snapshot lists (left by an interrupted write) are
        reported too. It reads every file in full, one at a time, in batches.

        Returns
        -------
        list of Problem
            Empty when the dataset is sound. Each problem has a ``kind``, a ``path`` and
            a ``detail``; ``str(problem)`` reads as one line.
        """
        try:
            snapshot = self._load(True)
            schema = schema_of(self._paths, snapshot)
        except CorruptDatasetError as error:
            return [Problem("metadata", str(self._paths.metadata), str(error))]
        except OSError as error:
            return [Problem("unreadable", str(self._paths.folder), str(error))]
        return verify_dataset(self._paths, snapshot, schema)

    def remove_from_disk(self, preserve_metadata: bool = False, release_lock: bool = True) -> None:
        """Delete the dataset's files.

        Parameters
        ----------
        preserve_metadata : bool, default False
            Keep an empty dataset with its ``ordered_on``, schema and key-value metadata
            instead of removing everything.
        release_lock : bool, default True
            Accepted for compatibility with ``oups``; the lock is only held while writing.
        """
        paths = self._paths
        if not paths.metadata.exists() and not paths.folder.exists():
            return
        with Transaction(paths, self._lock_timeout, fsync=self._fsync) as txn:
            tail_cache.forget(paths.folder)  # under the lock: no later write's tail is lost
            snapshot = txn.snapshot
            if preserve_metadata and snapshot.exists:
                empty = Snapshot.empty().stats
                if len(snapshot):
                    empty = snapshot.stats.slice(0, 0)
                txn.commit(
                    snapshot.successor(
                        ordered_on=snapshot.ordered_on,
                        schema=schema_of(paths, snapshot),
                        key_value_metadata=snapshot.key_value_metadata,
                        stats=empty,
                    )
                )
            else:
                # Removing the metadata file first is the atomic step: the dataset is gone.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(paths.metadata)
                _remove_own_files(paths.folder)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(history_path(paths.metadata))
                txn.remove_marker()  # before the lock file: see Transaction.remove_marker
                # Unlinked while held: a waiting writer sees a dead inode and retries.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(paths.lock)
        self._cache = None


def _remove_own_files(folder: Path) -> None:
    """Delete the files oupsish wrote in ``folder``, then the folder if nothing else is left.

    Files that are not oupsish's (a user's notes, a subfolder) are kept, and so is the folder.
    """
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False) and (
                is_data_file_name(entry.name)
                or is_temporary_name(entry.name)
                or is_superseded_name(entry.name)
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    with contextlib.suppress(FileNotFoundError, OSError):
        folder.rmdir()


class DatasetView(_Reader):
    """A read-only view over some row groups of one snapshot of a dataset."""

    def __init__(self, paths: DatasetPaths, snapshot: Snapshot, indices: range) -> None:
        self._paths = paths
        self._snapshot = snapshot
        self._range = indices

    def _load(self, force: bool) -> Snapshot:
        return self._snapshot

    def _indices(self, snapshot: Snapshot) -> range:
        return self._range

    def __repr__(self) -> str:
        return f"DatasetView({str(self._paths.folder)!r}, row_groups={self._range})"

    def __getitem__(self, item: int | slice) -> DatasetView:
        if isinstance(item, slice):
            indices = self._range[item]
            if indices.step < 0:
                raise ValueError("a view keeps row groups in order: its step must be positive.")
            return DatasetView(self._paths, self._snapshot, indices)
        count = len(self._range)
        if not -count <= int(item) < count:
            raise IndexError(f"row group {item} out of range: the view has {count}.")
        index = self._range[int(item)]
        return DatasetView(self._paths, self._snapshot, range(index, index + 1))

    def write(self, *args: Any, **kwargs: Any) -> None:
        """Refuse: views are read-only."""
        raise ReadOnlyError("cannot write through a read-only view of a dataset.")

    def remove_from_disk(self, *args: Any, **kwargs: Any) -> None:
        """Refuse: views are read-only."""
        raise ReadOnlyError("cannot remove a dataset through a read-only view.")


def write(
    dirpath: str | os.PathLike[str] | OrderedParquetDataset,
    ordered_on: OrderedOn | None = None,
    df: pd.DataFrame | None = None,
    **options: Any,
) -> None:
    """Write ``df`` into the dataset at ``dirpath`` (a path or a dataset).

    Takes the options of :meth:`OrderedParquetDataset.write`. Prefer
    ``store[key].write(...)`` in a :class:`~oupsish.Store`.
    """
    dataset = (
        dirpath
        if isinstance(dirpath, OrderedParquetDataset)
        else OrderedParquetDataset(dirpath, ordered_on=ordered_on)
    )
    dataset.write(df=df, ordered_on=ordered_on, **options)
