"""Scenario 3: inserts into the past, in one row group of datasets of 10M, 20M, 40M rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import (
    DEFAULT_ENCODING,
    ORDERED_ON,
    Context,
    dataset_files,
    make_frame,
    median,
    remove_dataset,
    row_time,
    timed,
    to_table,
)
from oupsish import OrderedParquetDataset

NAME = "insert"
TITLE = "10k rows inserted inside one row group (row groups of 1M rows)"


def _plain_rows(first_row: int, rg_rows: int, n: int) -> pd.DataFrame:
    """``n`` new rows strictly inside original row group rows ``[first_row, +rg_rows)``.

    Row ``r`` is stamped ``r s + 0..999 ms``: ``r s + 999.5 ms`` lies strictly between
    rows ``r`` and ``r + 1`` and equals no stored value.
    """
    rows = first_row + 1 + np.linspace(0, rg_rows - 3, n).astype(np.int64)
    frame = make_frame(0, n, seed=99)
    stamps = pd.Timestamp("2020-01-01").as_unit("ns") + pd.to_timedelta(
        rows * 1_000_000_000 + 999_500_000, unit="ns"
    )
    frame[ORDERED_ON] = np.asarray(stamps, dtype="datetime64[ns]")
    return frame


def _duplicate_rows(
    ds: OrderedParquetDataset, first_row: int, rg_rows: int, n: int
) -> pd.DataFrame:
    """``n`` corrections of stored rows of the row group (same timestamps, new values)."""
    stored = ds.read(start=row_time(first_row + 1), end_excl=row_time(first_row + rg_rows - 1))
    picked = stored.iloc[np.linspace(0, len(stored) - 1, n).astype(np.int64)].reset_index(drop=True)
    picked["a"] = picked["a"] + 1.0
    return picked


def _file_of(ds: OrderedParquetDataset, new: pd.DataFrame) -> Path:
    """The data file of the row group the new rows fall in."""
    stats = ds.row_group_stats
    first, last = new[ORDERED_ON].iloc[0], new[ORDERED_ON].iloc[-1]
    index = int(np.searchsorted(stats["ordered_on_maxs"].to_numpy(), first.to_datetime64()))
    assert (
        stats["ordered_on_mins"].iloc[index] <= first
        and last <= stats["ordered_on_maxs"].iloc[index]
    )
    return dataset_files(ds)[index]


def _raw_rewrite(path: Path, new: pd.DataFrame, out: Path, dedup: bool) -> None:
    """What raw pyarrow needs to do: read the file, concat, sort (stable), write."""
    table = pa.concat_tables([pq.read_table(path), to_table(new)])
    table = table.take(pc.sort_indices(table, [(ORDERED_ON, "ascending")]))
    if dedup:  # keep the last (new) row of each run of equal timestamps
        stamps = table.column(ORDERED_ON).to_numpy().view(np.int64)
        keep = np.ones(len(stamps), dtype=bool)
        keep[:-1] = stamps[1:] != stamps[:-1]
        table = table.filter(pa.array(keep))
    pq.write_table(table, out, **DEFAULT_ENCODING)


def run(ctx: Context) -> None:
    rec = ctx.recorder
    rg_rows = ctx.scaled(1_000_000, 10_000)
    sizes = [10 * rg_rows, 20 * rg_rows, 40 * rg_rows]
    n_new = ctx.scaled(10_000, 100)
    build_rows = 5 * rg_rows
    work = ctx.workdir(NAME)
    path = work / "ds"
    ds = OrderedParquetDataset(path, ordered_on=ORDERED_ON)
    built = 0
    medians: dict[tuple[int, str], tuple[float, float]] = {}
    variants = (("no duplicates_on", None), ("duplicates_on=timestamp", ORDERED_ON))
    for size in sizes:
        region = built // rg_rows  # untouched original row groups start here
        while built < size:  # grow the same dataset with large appends
            ds.write(df=make_frame(built, build_rows, seed=3), row_group_target_size=rg_rows)
            built += build_rows
        slot = region + 1
        for label, duplicates_on in variants:
            ours_s, raw_s = [], []
            for _ in range(ctx.repeats):
                first_row = slot * rg_rows
                slot += 1
                if duplicates_on is None:
                    new = _plain_rows(first_row, rg_rows, n_new)
                else:
                    new = _duplicate_rows(ds, first_row, rg_rows, n_new)
                touched = _file_of(ds, new)
                raw_s += timed(
                    lambda touched=touched, new=new, d=duplicates_on: _raw_rewrite(
                        touched, new, work / "raw.parquet", d is not None
                    ),
                    1,
                )
                before = ds.row_group_stats["n_rows"].sum()

                def write(new: pd.DataFrame = new, d: str | None = duplicates_on) -> None:
                    ds.write(df=new, row_group_target_size=rg_rows, duplicates_on=d)

                if ctx.profile and size == sizes[-1] and len(ours_s) == 0:
                    with ctx.profiled(f"{NAME}-{size}-{'dup' if duplicates_on else 'plain'}"):
                        ours_s += timed(write, 1)
                else:
                    ours_s += timed(write, 1)
                added = ds.row_group_stats["n_rows"].sum() - before
                assert added == (0 if duplicates_on else n_new), added
            medians[(size, label)] = (median(ours_s), median(raw_s))
            rec.add(
                NAME,
                f"insert {n_new:,} rows, {size / 1e6:g}M-row dataset, {label}",
                "s",
                median(ours_s),
                pyarrow=median(raw_s),
                better="lower",
                target="<= 1.5",
                met=median(ours_s) <= 1.5 * median(raw_s),
            )
    for label, _ in variants:
        ours_growth = medians[(sizes[-1], label)][0] / medians[(sizes[0], label)][0]
        raw_growth = medians[(sizes[-1], label)][1] / medians[(sizes[0], label)][1]
        rec.add(
            NAME,
            f"time {sizes[-1] / 1e6:g}M / {sizes[0] / 1e6:g}M rows, {label}",
            "x",
            ours_growth,
            pyarrow=raw_growth,
            better="lower",
            target="oupsish <= 1.2",
            met=ours_growth <= 1.2,
        )
    rec.note(
        NAME,
        "Raw pyarrow reads the touched row-group file, concatenates the new rows, sorts "
        "(stable), drops duplicates on timestamp for the duplicates_on variant, and writes "
        "one file (snappy, no fsync); oupsish also fsyncs and commits its metadata. The "
        "40M-row dataset is the 10M one grown by appends; each insert hits an untouched row "
        "group.",
    )
    remove_dataset(work)
