"""DuckDB: relations and views over snapshots' explicit file lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

__all__ = ["connect", "files_sql", "relation"]


def connect(connection: duckdb.DuckDBPyConnection | None) -> duckdb.DuckDBPyConnection:
    """Return ``connection``, or a new in-memory one."""
    if connection is not None:
        return connection
    try:
        import duckdb
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("this needs duckdb: pip install 'oupsish[duckdb]'") from error
    return duckdb.connect()


def files_sql(files: Sequence[Path]) -> str:
    """Return a ``read_parquet([...])`` call over ``files``, in order, as SQL."""
    quoted = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
    return f"read_parquet([{quoted}])"


def relation(
    files: Sequence[Path], connection: duckdb.DuckDBPyConnection | None, empty: Any
) -> duckdb.DuckDBPyRelation:
    """Return a relation over ``files`` (or over the Arrow table ``empty`` if none)."""
    con = connect(connection)
    if not files:
        return con.from_arrow(empty)
    return con.sql(f"SELECT * FROM {files_sql(files)}")


def quote_identifier(name: str) -> str:
    """Quote ``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'
