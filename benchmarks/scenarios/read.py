"""Scenario 4: full reads, a 1% range read and a column-projected read."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import (
    ORDERED_ON,
    Context,
    dataset_files,
    make_frame,
    paired,
    remove_dataset,
    row_time,
)
from oupsish import OrderedParquetDataset

NAME = "read"
TITLE = "full, 1% range and column-projected reads of a 10M-row dataset (row groups 1M)"


def run(ctx: Context) -> None:
    rec = ctx.recorder
    n_rows = ctx.rows
    rg_rows = ctx.scaled(1_000_000, 10_000)
    work = ctx.workdir(NAME)
    path = work / "ds"
    ds = OrderedParquetDataset(path, ordered_on=ORDERED_ON)
    step = 2 * rg_rows
    for start in range(0, n_rows, step):
        ds.write(
            df=make_frame(start, min(step, n_rows - start), seed=4), row_group_target_size=rg_rows
        )
    folder = str(path)
    files = [str(file) for file in dataset_files(ds)]
    repeats = 2 * ctx.repeats + 3  # reads take under a second and vary by 2x: more rounds

    def rate(label: str, ours: object, raw: object, target: str = "", floor: float = 0.0) -> None:
        ours_s, raw_s = paired(ours, raw, repeats)  # type: ignore[arg-type]
        ratio = raw_s / ours_s
        rec.add(
            NAME,
            label,
            "rows/s",
            n_rows / ours_s,
            pyarrow=n_rows / raw_s,
            target=target,
            met=(ratio >= floor) if target else None,
        )

    with ctx.profiled(f"{NAME}-to_pandas"):
        ds.to_pandas()
    rate(
        "full read to_pandas() vs read_table(folder).to_pandas()",
        ds.to_pandas,
        lambda: pq.read_table(folder).to_pandas(),
        ">= 0.95",
        0.95,
    )
    rate(
        "full read to_arrow() vs read_table(folder)",
        ds.to_arrow,
        lambda: pq.read_table(folder),
        ">= 0.95",
        0.95,
    )
    rate(
        "full read to_arrow() vs ParquetDataset(files).read()",
        ds.to_arrow,
        lambda: pq.ParquetDataset(files).read(),
    )

    # 1% of the rows, straddling the boundary between two row groups.
    span = max(1, n_rows // 100)
    lo_row = n_rows // 2 - span // 2
    lo, hi = row_time(lo_row), row_time(lo_row + span)
    # What pyarrow makes of [(ORDERED_ON, ">=", lo), (ORDERED_ON, "<", hi)], typed.
    filters = (pc.field(ORDERED_ON) >= lo) & (pc.field(ORDERED_ON) < hi)
    assert len(ds.read(start=lo, end_excl=hi)) == pq.read_table(folder, filters=filters).num_rows
    for label, ours, raw in (
        (
            "1% range read(start, end_excl) vs read_table(filters).to_pandas()",
            lambda: ds.read(start=lo, end_excl=hi),
            lambda: pq.read_table(folder, filters=filters).to_pandas(),
        ),
        (
            "1% range to_arrow(start, end_excl) vs read_table(filters)",
            lambda: ds.to_arrow(start=lo, end_excl=hi),
            lambda: pq.read_table(folder, filters=filters),
        ),
    ):
        ours_s, raw_s = paired(ours, raw, 3 * repeats)
        rec.add(
            NAME,
            label,
            "s",
            ours_s,
            pyarrow=raw_s,
            better="lower",
            target="<= 1.2",
            met=ours_s <= 1.2 * raw_s,
        )

    columns = [ORDERED_ON, "a"]
    rate(
        "projected read(columns=[timestamp, a]) vs read_table(columns).to_pandas()",
        lambda: ds.read(columns=columns),
        lambda: pq.read_table(folder, columns=columns).to_pandas(),
    )
    rec.note(
        NAME,
        f"{n_rows:,} rows in {len(files)} files, OS page cache warm for both. The 1% range "
        f"({span:,} rows) straddles a row-group boundary; raw pyarrow prunes row groups by "
        "their statistics and filters rows.",
    )
    remove_dataset(work)
