"""``Store``: a collection of ordered datasets, one per key of a ``@toplevel`` indexer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oupsish.dataset import OrderedParquetDataset
from oupsish.indexer import is_toplevel
from oupsish.interop import duckdb as interop_duckdb
from oupsish.intersections import KeySource, iter_intersections
from oupsish.metadata import METADATA_SUFFIX
from oupsish.verify import Problem

if TYPE_CHECKING:
    import duckdb

__all__ = ["Store"]

_DEPTH_ATTRIBUTE = "depth"


class Store:
    """Datasets keyed by instances of a ``@toplevel`` class, under one folder.

    Each key maps to the folder ``basepath / key.to_path()``. A dataset exists once its
    first write has committed; ``store[key]`` alone creates nothing on disk. The store
    keeps no cache: ``len``, ``in`` and iteration always reflect the disk.

    Parameters
    ----------
    basepath : str or os.PathLike
        The folder holding the datasets.
    indexer : type
        A ``@toplevel``-decorated class.
    fsync : bool, default True
        Passed to every dataset of the store (see :class:`OrderedParquetDataset`).

    Raises
    ------
    TypeError
        If ``indexer`` is not ``@toplevel``-decorated or ``basepath`` is not a path.
    """

    def __init__(
        self, basepath: str | os.PathLike[str], indexer: type, *, fsync: bool = True
    ) -> None:
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be True or False, got {type(fsync).__name__} {fsync!r}.")
        self._fsync = fsync
        if not isinstance(basepath, str | os.PathLike):
            raise TypeError(
                f"basepath must be a str or a path, got {type(basepath).__name__} {basepath!r}."
            )
        candidate: object = indexer  # checked at run time, whatever the annotation says
        if not isinstance(candidate, type) and is_toplevel(candidate):
            raise TypeError(
                f"Store takes the @toplevel class itself, got an instance of it: "
                f"pass {type(indexer).__name__}, not {indexer!r}."
            )
        if not (isinstance(indexer, type) and is_toplevel(indexer)):
            name = getattr(indexer, "__name__", repr(indexer))
            raise TypeError(f"{name} has to be '@toplevel' decorated.")
        self._basepath = Path(os.path.abspath(basepath))
        self._indexer = indexer

    @property
    def basepath(self) -> Path:
        """The folder holding the datasets."""
        return self._basepath

    @property
    def indexer(self) -> type:
        """The ``@toplevel`` class of the keys."""
        return self._indexer

    def _metadata_folders(self) -> Iterator[Path]:
        """Yield the relative folder of every dataset: a metadata file at the schema's depth."""
        depth = int(getattr(self._indexer, _DEPTH_ATTRIBUTE))
        level: list[tuple[Path, Path]] = [(self._basepath, Path())]
        for _ in range(depth - 1):
            deeper = []
            for folder, relative in level:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    for entry in os.scandir(folder):
                        if entry.is_dir(follow_symlinks=False):
                            deeper.append((Path(entry.path), relative / entry.name))
            level = deeper
        for folder, relative in level:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(folder):
                    name = entry.name
                    if name.endswith(METADATA_SUFFIX) and not name.startswith("."):
                        yield relative / name[: -len(METADATA_SUFFIX)]

    @property
    def keys(self) -> list[Any]:
        """The keys of the datasets on disk, sorted."""
        found = (self._indexer.from_path(relative) for relative in self._metadata_folders())  # type: ignore[attr-defined]
        return sorted(key for key in found if key is not None)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, self._indexer):
            return False
        folder = self._basepath / key.to_path()  # type: ignore[attr-defined]
        return bool(folder.with_name(folder.name + METADATA_SUFFIX).is_file())

    def __repr__(self) -> str:
        return "\n".join(str(key) for key in self.keys)

    def _check_key(self, key: object) -> None:
        if not isinstance(key, self._indexer):
            raise TypeError(
                f"keys of this store are {self._indexer.__name__} instances, "
                f"got {type(key).__name__} {key!r}."
            )

    def get(self, key: Any, **kwargs: Any) -> OrderedParquetDataset:
        """Return the dataset of ``key`` (created on its first write).

        Parameters
        ----------
        key : indexer instance
            The dataset's key.
        **kwargs
            ``ordered_on``, ``lock_timeout``, ``lock_lifetime``, ``fsync`` (the store's by
            default) of :class:`OrderedParquetDataset`.
        """
        self._check_key(key)
        kwargs.setdefault("fsync", self._fsync)
        return OrderedParquetDataset(self._basepath / key.to_path(), **kwargs)

    def __getitem__(self, key: Any) -> OrderedParquetDataset:
        return self.get(key)

    def __delitem__(self, key: Any) -> None:
        self._check_key(key)
        if key not in self:
            raise KeyError(f"key '{key}' not found in store.")
        dataset = self.get(key)
        dataset.remove_from_disk()
        folder = dataset.dirpath.parent
        while folder != self._basepath and self._basepath in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def verify(self) -> dict[Any, list[Problem]]:
        """Verify every dataset (see :meth:`OrderedParquetDataset.verify`).

        Returns
        -------
        dict
            ``{key: problems}`` for the datasets with problems; empty when all are sound.
        """
        report = {}
        for key in self.keys:
            problems = self.get(key).verify()
            if problems:
                report[key] = problems
        return report

    def to_duckdb(
        self,
        keys: Sequence[Any] | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """Register datasets as DuckDB views named ``str(key)``; return the connection.

        Each view reads the explicit file list of the dataset's current snapshot, in
        order. Needs ``pip install oupsish[duckdb]``.

        Parameters
        ----------
        keys : list, optional
            The keys to register; all keys of the store by default.
        connection : duckdb.DuckDBPyConnection, optional
            Where to create the views; a new in-memory connection by default.
        """
        con = interop_duckdb.connect(connection)
        for key in self.keys if keys is None else keys:
            self._check_key(key)
            if key not in self:
                raise KeyError(f"key '{key}' not found in store.")
            files = self.get(key).files
            source = interop_duckdb.files_sql(files)
            name = interop_duckdb.quote_identifier(str(key))
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source}")
        return con

    def iter_intersections(
        self,
        keys: Sequence[Any],
        start: object = None,
        n_prev: int | Sequence[int] = 0,
        end_excl: object = None,
        columns: Sequence[Hashable] | None = None,
        output: str = "pandas",
    ) -> Iterator[dict[Hashable, Any]]:
        """Stream several datasets side by side over a common range of ``ordered_on``.

        Each yield is a dict ``{key: DataFrame}`` for one span ``[lo, hi)``; spans are
        consecutive and cover ``[start, end_excl)``. Concatenating one key's frames gives
        exactly its rows in the range. Spans start where a row group starts in any of the
        datasets, so memory stays at about one row group per key. Every key is in every
        yield (with an empty frame when it has no rows in the span).

        Parameters
        ----------
        keys : list
            Keys of datasets sharing the same ``ordered_on`` column.
        start, end_excl : optional
            Bounds of the range; ``None`` leaves that side open. ``0`` is a real bound.
        n_prev : int or list of int, default 0
            Rows before ``start`` to prepend to each key's first frame (one value for all
            keys, or one per key, in the order of ``keys``).
        columns : list, optional
            Columns to yield (all by default); the ordered column is read regardless.
        output : {"pandas", "arrow"}, default "pandas"
            Yield pandas DataFrames or ``pyarrow.Table`` objects.

        Raises
        ------
        KeyError
            If a key has no dataset in the store.
        ValueError
            If datasets have different ``ordered_on`` columns, ``start >= end_excl``, or
            ``n_prev`` is negative or does not match ``keys``.
        """
        keys = list(keys)
        if len(set(keys)) != len(keys):
            raise ValueError("keys must not repeat.")
        sources = []
        for key in keys:
            self._check_key(key)
            if key not in self:
                raise KeyError(f"key '{key}' not found in store.")
            dataset = self.get(key)
            sources.append(KeySource(key, dataset._paths, dataset._load))
        return iter_intersections(
            sources, start=start, n_prev=n_prev, end_excl=end_excl, columns=columns, output=output
        )
