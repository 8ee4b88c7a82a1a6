"""Jobs run in a fresh interpreter, to measure peak RSS: ``python -m benchmarks.jobs NAME JSON``.

Each job imports what it needs, warms up (so that lazy imports, first-call caches and
thread pools started on first use are not counted), records its RSS, resets the peak-RSS
mark, does the work, and prints one JSON line with the peak RSS above the starting point.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from benchmarks.common import (
    ORDERED_ON,
    WARM_ROWS,
    frame_bytes,
    make_frame,
    peak_rss_bytes,
    remove_dataset,
    reset_peak_rss,
    rss_bytes,
    to_table,
)
from oupsish import OrderedParquetDataset, Store, toplevel


@toplevel
class Series:
    """Key of the datasets of the iter_intersections scenario."""

    name: str


def _measure(prepare: Callable[[], Any], work: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    gc.collect()
    start_rss = rss_bytes()
    state = prepare()
    gc.collect()
    exact = reset_peak_rss()
    begin = time.perf_counter()
    result = work(state)
    result["seconds"] = time.perf_counter() - begin
    result["peak_over_start"] = peak_rss_bytes() - start_rss
    result["start_rss"] = start_rss
    result["peak_reset"] = exact
    return result


def _clear(path: Path) -> None:
    """Remove what an earlier run of a job left at ``path`` (jobs may run several times)."""
    remove_dataset(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.with_suffix(".parquet"))


def intersections(params: dict[str, Any]) -> dict[str, Any]:
    """A full pass of iter_intersections (or raw pyarrow reading the files one by one)."""
    store = Store(params["base"], Series)
    keys = [Series(name) for name in params["keys"]]
    files = [Path(file) for file in params["files"]]
    # Warm up on a short range: imports, first-call caches.
    for _ in store.iter_intersections(keys, end_excl=pd.Timestamp(params["warm_end"])):
        pass
    pq.read_table(files[0]).to_pandas()

    def work(_: object) -> dict[str, Any]:
        rows, chunks = 0, 0
        if params["mode"] == "oupsish":
            for chunk in store.iter_intersections(keys):
                rows += sum(len(frame) for frame in chunk.values())
                chunks += 1
        else:
            for file in files:
                frame = pq.read_table(file).to_pandas()
                rows += len(frame)
                chunks += 1
        return {"rows": rows, "chunks": chunks}

    return _measure(lambda: None, work)


def stream(params: dict[str, Any]) -> dict[str, Any]:
    """Write ``n_chunks`` chunks one by one with ``ds.write`` or a ParquetWriter."""
    path = Path(params["path"])
    _clear(path)
    chunk_rows, n_chunks = params["chunk_rows"], params["n_chunks"]
    oupsish = params["mode"] == "oupsish"
    warm = path.with_name(path.name + "-warm")
    small = make_frame(0, WARM_ROWS)
    OrderedParquetDataset(warm, ordered_on=ORDERED_ON).write(df=small)
    with pq.ParquetWriter(warm.with_suffix(".parquet"), to_table(small).schema) as writer:
        writer.write_table(to_table(small))
    remove_dataset(warm)

    def prepare() -> pd.DataFrame:
        return make_frame(0, chunk_rows)

    def work(base: pd.DataFrame) -> dict[str, Any]:
        span = pd.Timedelta(seconds=chunk_rows)

        def chunk(k: int) -> pd.DataFrame:
            shifted: pd.DataFrame = base.assign(**{ORDERED_ON: base[ORDERED_ON] + k * span})
            return shifted

        if oupsish:
            ds = OrderedParquetDataset(path, ordered_on=ORDERED_ON)
            for k in range(n_chunks):
                ds.write(df=chunk(k), **params["write_options"])
        else:
            schema = to_table(base).schema
            with pq.ParquetWriter(
                path.with_suffix(".parquet"), schema, compression="snappy"
            ) as writer:
                for k in range(n_chunks):
                    writer.write_table(to_table(chunk(k)), row_group_size=chunk_rows)
        return {"chunk_bytes": frame_bytes(base)}

    return _measure(prepare, work)


def csv(params: dict[str, Any]) -> dict[str, Any]:
    """Ingest a CSV file in chunks: ``ds.ingest_csv``, or pyarrow's CSV reader + ParquetWriter."""
    import pyarrow.csv as pa_csv

    path, source = Path(params["path"]), params["csv"]
    _clear(path)
    chunk_rows = params["chunk_rows"]
    warm = path.with_name(path.name + "-warm")
    OrderedParquetDataset(warm, ordered_on=ORDERED_ON).ingest_csv(params["warm_csv"])
    remove_dataset(warm)

    def work(_: object) -> dict[str, Any]:
        if params["mode"] == "oupsish":
            ds = OrderedParquetDataset(path, ordered_on=ORDERED_ON)
            rows = ds.ingest_csv(source, chunksize=chunk_rows, row_group_target_size=chunk_rows)
        else:
            reader = pa_csv.open_csv(source)
            rows = 0
            with pq.ParquetWriter(path.with_suffix(".parquet"), reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch, row_group_size=chunk_rows)
                    rows += batch.num_rows
        return {"rows": rows}

    return _measure(lambda: None, work)


JOBS = {"intersections": intersections, "stream": stream, "csv": csv}


def main() -> None:
    name, params = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(JOBS[name](params)))


if __name__ == "__main__":
    main()
