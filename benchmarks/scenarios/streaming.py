"""Scenario 7: peak memory while writing a stream 10x larger than one chunk."""

from __future__ import annotations

from benchmarks.common import MB, Context, run_job

NAME = "streaming"
TITLE = "peak RSS writing 10 chunks one by one, as a multiple of one chunk's frame"
N_CHUNKS = 10


def run(ctx: Context) -> None:
    rec = ctx.recorder
    chunk_rows = ctx.scaled(1_000_000, 500_000)  # >= 24 MB even in --quick
    work = ctx.workdir(NAME)
    base = {"chunk_rows": chunk_rows, "n_chunks": N_CHUNKS}
    raw = run_job("stream", {**base, "mode": "pyarrow", "path": str(work / "raw")})
    variants = (
        ("ds.write per chunk, row groups = chunk", {"row_group_target_size": chunk_rows}),
        (
            "ds.write per chunk, row groups = 4 chunks, max_n_off_target_rgs=2",
            {"row_group_target_size": 4 * chunk_rows, "max_n_off_target_rgs": 2},
        ),
    )
    for i, (label, options) in enumerate(variants):
        ours = run_job(
            "stream",
            {**base, "mode": "oupsish", "path": str(work / f"ds{i}"), "write_options": options},
        )
        chunk_bytes = ours["chunk_bytes"]
        multiple = ours["peak_over_start"] / chunk_bytes
        rec.add(
            NAME,
            f"peak RSS / chunk frame: {label}",
            "x",
            multiple,
            pyarrow=raw["peak_over_start"] / chunk_bytes,
            better="lower",
            target="<= 3" if i == 0 else "",
            met=multiple <= 3 if i == 0 else None,
        )
        rec.add(
            NAME,
            f"stream rows/s: {label}",
            "rows/s",
            N_CHUNKS * chunk_rows / ours["seconds"],
            pyarrow=N_CHUNKS * chunk_rows / raw["seconds"],
        )
        rec.detail(NAME, **{f"job[{label}]": ours})
    rec.detail(NAME, **{"job[pyarrow]": raw})
    rec.note(
        NAME,
        f"{N_CHUNKS} chunks of {chunk_rows:,} rows ({raw['chunk_bytes'] / MB:.0f} MB each in "
        "pandas), written in a fresh process; peak RSS (VmHWM, reset after warm-up) above the "
        "RSS before the chunk was built, so the caller's own chunk counts as 1x. Baseline: one "
        "pyarrow ParquetWriter streaming the same chunks (snappy) into one file.",
    )
