"""Interop with the Arrow ecosystem: streams, Polars, DuckDB and Dask.

Each reader here works on the explicit, ordered list of files of one snapshot, never on a
glob of a live folder, so a concurrent write cannot make it see a mix of two states.
Polars, DuckDB and Dask are optional: they are imported only when used
(``pip install oupsish[polars]``, ``[duckdb]``, ``[dask]``).
"""
