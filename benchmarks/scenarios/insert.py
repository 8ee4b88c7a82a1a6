"""Scenario 3: inserts into the past, in one row group of datasets of 10M, 20M, 40M rows."""

from __future__ import annotations

import os
from functools import partial
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
    picked: pd.DataFrame = stored.iloc[np.linspace(0, len(stored) - 1, n).astype(np.int64)]
    picked = picked.reset_index(drop=True)
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


def _build(path: Path, n_rows: int, rg_rows: int) -> OrderedParquetDataset:
    """Write a dataset of ``n_rows`` in large appends (untimed set-up: no fsync, one sync)."""
    builder = OrderedParquetDataset(path, ordered_on=ORDERED_ON, fsync=False)
    step = 5 * rg_rows
    for first in range(0, n_rows, step):
        builder.write(
            df=make_frame(first, min(step, n_rows - first), seed=3), row_group_target_size=rg_rows
        )
    os.sync()
    return OrderedParquetDataset(path)


def run(ctx: Context) -> None:
    rec = ctx.recorder
    rg_rows = ctx.scaled(1_000_000, 10_000)
    sizes = [10 * rg_rows, 20 * rg_rows, 40 * rg_rows]
    n_new = ctx.scaled(10_000, 100)
    work = ctx.workdir(NAME)
    datasets = {size: _build(work / f"ds-{size}", size, rg_rows) for size in sizes}
    variants = (("no duplicates_on", None), ("duplicates_on=timestamp", ORDERED_ON))
    # Each insert hits a row group no insert touched before: slots 1, 2, ... of each dataset.
    assert 2 * ctx.repeats < sizes[0] // rg_rows, "more inserts than row groups to insert into"
    next_slot = dict.fromkeys(sizes, 1)
    seconds: dict[tuple[int, str], tuple[list[float], list[float]]] = {
        (size, label): ([], []) for size in sizes for label, _ in variants
    }
    # The sizes take turns within each round (in a rotating order), so that a slow spell of
    # the machine (host steal, say) does not fall on one size only.
    for round_ in range(ctx.repeats):
        for label, duplicates_on in variants:
            for size in sizes[round_ % len(sizes) :] + sizes[: round_ % len(sizes)]:
                ds = datasets[size]
                first_row = next_slot[size] * rg_rows
                next_slot[size] += 1
                if duplicates_on is None:
                    new = _plain_rows(first_row, rg_rows, n_new)
                else:
                    new = _duplicate_rows(ds, first_row, rg_rows, n_new)
                touched = _file_of(ds, new)
                ours_s, raw_s = seconds[(size, label)]
                raw_s += timed(
                    partial(
                        _raw_rewrite, touched, new, work / "raw.parquet", duplicates_on is not None
                    ),
                    1,
                )
                before = ds.row_group_stats["n_rows"].sum()

                def write(
                    ds: OrderedParquetDataset = ds,
                    new: pd.DataFrame = new,
                    d: str | None = duplicates_on,
                ) -> None:
                    ds.write(df=new, row_group_target_size=rg_rows, duplicates_on=d)

                if ctx.profile and size == sizes[-1] and round_ == 0:
                    with ctx.profiled(f"{NAME}-{size}-{'dup' if duplicates_on else 'plain'}"):
                        ours_s += timed(write, 1)
                else:
                    ours_s += timed(write, 1)
                added = ds.row_group_stats["n_rows"].sum() - before
                assert added == (0 if duplicates_on else n_new), added
    medians = {key: (median(ours), median(raw)) for key, (ours, raw) in seconds.items()}
    for size in sizes:
        for label, _ in variants:
            ours_median, raw_median = medians[(size, label)]
            rec.add(
                NAME,
                f"insert {n_new:,} rows, {size / 1e6:g}M-row dataset, {label}",
                "s",
                ours_median,
                pyarrow=raw_median,
                better="lower",
                target="<= 1.5",
                met=ours_median <= 1.5 * raw_median,
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
        "one file (snappy, no fsync); oupsish also fsyncs and commits its metadata. Three "
        f"datasets ({', '.join(f'{size / 1e6:g}M' for size in sizes)} rows, written "
        "beforehand in large appends) take turns in each round; each insert hits a row "
        "group no insert touched before.",
    )
    remove_dataset(work)
