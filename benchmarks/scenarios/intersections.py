"""Scenario 5: ``iter_intersections`` over 4 datasets with different row-group sizes."""

from __future__ import annotations

import pyarrow.parquet as pq

from benchmarks.common import (
    MB,
    ORDERED_ON,
    ROW_BYTES,
    Context,
    dataset_files,
    make_frame,
    median_job,
    paired,
    peaks_text,
    remove_dataset,
    row_time,
)
from benchmarks.jobs import Series
from oupsish import Store

NAME = "intersections"
TITLE = "iter_intersections over 4 datasets of 2.5M rows (row groups 250k/300k/400k/500k)"
RG_ROWS = (250_000, 300_000, 400_000, 500_000)


def run(ctx: Context) -> None:
    rec = ctx.recorder
    # Memory figures need row groups well above the interpreter's noise, even in --quick.
    rows_per_key = ctx.scaled(2_500_000, 500_000)
    rg_rows = [rows * rows_per_key // 2_500_000 for rows in RG_ROWS]
    work = ctx.workdir(NAME)
    store = Store(work / "store", Series)
    keys = [Series(f"s{k}") for k in range(len(rg_rows))]
    for k, (key, rows) in enumerate(zip(keys, rg_rows, strict=True)):
        # Offset series: each starts 5% later than the previous, 250 ms apart.
        frame = make_frame(k * rows_per_key // 20, rows_per_key, seed=10 + k, offset_ms=250 * k)
        store[key].write(df=frame, ordered_on=ORDERED_ON, row_group_target_size=rows)
    files = [str(file) for key in keys for file in dataset_files(store[key])]
    total = len(keys) * rows_per_key

    def ours() -> int:
        n = 0
        for chunk in store.iter_intersections(keys):
            n += sum(len(frame) for frame in chunk.values())
        assert n == total, (n, total)
        return n

    def raw() -> int:
        n = 0
        for file in files:
            n += len(pq.read_table(file).to_pandas())
        return n

    with ctx.profiled(f"{NAME}-pass"):
        ours()
    ours_s, raw_s = paired(ours, raw, max(3, 2 * ctx.repeats))
    rec.add(
        NAME,
        "full pass rows/s vs reading the files one by one",
        "rows/s",
        total / ours_s,
        pyarrow=total / raw_s,
        target=">= 0.9",
        met=raw_s / ours_s >= 0.9,
    )
    params = {
        "base": str(work / "store"),
        "keys": [key.name for key in keys],
        "files": files,
        "warm_end": str(row_time(rows_per_key // 10)),
    }
    mem = {
        mode: median_job("intersections", {**params, "mode": mode}, ctx.repeats)
        for mode in ("oupsish", "pyarrow")
    }
    one_rg_per_key = sum(rg_rows) * ROW_BYTES
    rec.add(
        NAME,
        "chunks (spans / files)",
        "count",
        mem["oupsish"]["chunks"],
        pyarrow=mem["pyarrow"]["chunks"],
        better="",
    )
    ours_multiple = mem["oupsish"]["peak_over_start"] / one_rg_per_key
    rec.add(
        NAME,
        "peak RSS, in row groups per key",
        "x",
        ours_multiple,
        pyarrow=mem["pyarrow"]["peak_over_start"] / one_rg_per_key,
        better="lower",
        target="<= ~2",
        met=ours_multiple <= 2.2,
    )
    rec.add(
        NAME,
        "peak RSS above start",
        "MB",
        mem["oupsish"]["peak_over_start"] / MB,
        pyarrow=mem["pyarrow"]["peak_over_start"] / MB,
        better="lower",
    )
    rec.detail(NAME, memory=mem, one_row_group_per_key_bytes=one_rg_per_key)
    rec.note(
        NAME,
        f"{len(keys)} keys x {rows_per_key:,} rows, row groups {rg_rows}; one row group per "
        f"key = {one_rg_per_key / MB:.0f} MB of pandas frame. Peak RSS: the median of "
        f"{len(mem['oupsish']['peaks'])} fresh processes (VmHWM reset after warm-up; oupsish's "
        f"runs: {peaks_text(mem['oupsish'], one_rg_per_key)}); the baseline reads each file to "
        "pandas, one at a time. The loop keeps the previous chunk alive while the next is "
        "built, as user code does.",
    )
    remove_dataset(work)
