"""Polars: eager frames and lazy scans over one snapshot's files, in order."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import polars

__all__ = ["scan", "to_polars"]


def _polars() -> Any:
    try:
        import polars
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("this needs polars: pip install 'oupsish[polars]'") from error
    return polars


def to_polars(table: pa.Table) -> polars.DataFrame:
    """Convert an Arrow table to a Polars frame (zero-copy where types allow)."""
    frame: polars.DataFrame = _polars().from_arrow(table)
    return frame


def scan(files: Sequence[Path], columns: Sequence[Hashable] | None) -> polars.LazyFrame:
    """Return a lazy scan of ``files`` in this order (the rows' ``ordered_on`` order)."""
    pl = _polars()
    if not files:
        raise ValueError("the dataset has no rows to scan.")
    lazy: polars.LazyFrame = pl.scan_parquet(
        [str(path) for path in files], hive_partitioning=False, glob=False
    )
    if columns is not None:
        lazy = lazy.select([str(column) for column in columns])
    return lazy
