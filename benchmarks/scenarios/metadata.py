"""Scenario 6: a dataset of 5,000 row groups, and a store of 2,000 keys."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from benchmarks.common import (
    DEFAULT_ENCODING,
    ORDERED_ON,
    Context,
    make_frame,
    median,
    paired,
    remove_dataset,
    timed,
    to_table,
)
from oupsish import OrderedParquetDataset, Store, snapshot_cache, sublevel, toplevel

NAME = "metadata"
TITLE = "open/append/read a 5,000-row-group dataset; discover a store of 2,000 keys"
RG_ROWS = 2_000
N_FREQS = 5


@sublevel
class Sampling:
    freq: str


@toplevel
class Instrument:
    exchange: str
    symbol: str
    sampling: Sampling


def _open(path: object, decoded: bool = False) -> None:
    if not decoded:  # as in a new process: the metadata file is decoded
        snapshot_cache.clear()
    ds = OrderedParquetDataset(path)  # type: ignore[arg-type]
    len(ds)
    ds.row_group_stats  # noqa: B018


def _construct(path: object) -> None:
    snapshot_cache.clear()
    OrderedParquetDataset(path)  # type: ignore[arg-type]


def run(ctx: Context) -> None:
    rec = ctx.recorder
    n_rgs = ctx.scaled(5_000, 500)
    n_keys = ctx.scaled(2_000, 200)
    work = ctx.workdir(NAME)
    path = work / "ds"
    ds = OrderedParquetDataset(path, ordered_on=ORDERED_ON)
    n_rows = n_rgs * RG_ROWS
    step = 1000 * RG_ROWS
    for start in range(0, n_rows, step):
        ds.write(
            df=make_frame(start, min(step, n_rows - start), seed=6), row_group_target_size=RG_ROWS
        )
    assert len(ds) == n_rgs
    folder = str(path)

    # Open: construct + len + row_group_stats, on a fresh object each time.
    with ctx.profiled(f"{NAME}-open"):
        _open(path)
    ours_s, raw_s = paired(
        lambda: _open(path), lambda: len(pads.dataset(folder, format="parquet").files), 20
    )
    rec.add(
        NAME,
        f"open {n_rgs:,} row groups (+len, row_group_stats) vs pads.dataset(folder)",
        "s",
        ours_s,
        pyarrow=raw_s,
        better="lower",
        target="<= 10 ms",
        met=ours_s <= 0.010,
    )
    reopen_s = median(timed(lambda: _open(path, decoded=True), 20))
    rec.add(
        NAME,
        f"open {n_rgs:,} row groups again in the same process (snapshot kept)",
        "s",
        reopen_s,
        pyarrow=raw_s,
        better="lower",
    )
    construct_s = median(timed(lambda: _construct(path), 20))
    rec.detail(NAME, construct_only_s=construct_s)

    # One small append (each repeat appends 100 rows: one more row group).
    appended = iter(range(10**6))
    raw_dir = work / "raw-small"
    raw_dir.mkdir()

    def small() -> pd.DataFrame:
        i = next(appended)
        return make_frame(n_rows + i * 100, 100, seed=7)

    frames = [small() for _ in range(2 * max(5, ctx.repeats))]
    ours_frames, raw_frames = iter(frames[: len(frames) // 2]), iter(frames[len(frames) // 2 :])
    ours_s, raw_s = paired(
        lambda: ds.write(df=next(ours_frames), row_group_target_size=RG_ROWS),
        lambda: pq.write_table(
            to_table(next(raw_frames)), raw_dir / "small.parquet", **DEFAULT_ENCODING
        ),
        len(frames) // 2,
    )
    rec.add(
        NAME,
        "one small append (100 rows) vs write_table",
        "s",
        ours_s,
        pyarrow=raw_s,
        better="lower",
    )
    if ctx.profile:
        with ctx.profiled(f"{NAME}-small-append"):
            ds.write(df=small(), row_group_target_size=RG_ROWS)
    shutil.rmtree(raw_dir)

    total = ds.row_group_stats["n_rows"].sum()
    with ctx.profiled(f"{NAME}-read-all"):
        ds.to_pandas()
    for label, ours, raw in (
        (
            "read all to_pandas() vs read_table(folder).to_pandas()",
            ds.to_pandas,
            lambda: pq.read_table(folder).to_pandas(),
        ),
        ("read all to_arrow() vs read_table(folder)", ds.to_arrow, lambda: pq.read_table(folder)),
    ):
        ours_s, raw_s = paired(ours, raw, ctx.repeats + 2)  # ~2 s a read
        rec.add(
            NAME,
            label,
            "rows/s",
            total / ours_s,
            pyarrow=total / raw_s,
            target=">= 1.0",
            met=ours_s <= raw_s,
        )
    remove_dataset(path)

    # A store of n_keys datasets two folder levels deep, copied from one written dataset.
    base = work / "store"
    store = Store(base, Instrument)
    first = Instrument("x0", "s0", Sampling("f0"))
    store[first].write(df=make_frame(0, 100), ordered_on=ORDERED_ON)
    source = store[first].dirpath
    for i in range(1, n_keys):
        key = Instrument(f"x{i // (N_FREQS * 20)}", f"s{i // N_FREQS}", Sampling(f"f{i % N_FREQS}"))
        target = base / key.to_path()  # type: ignore[attr-defined]
        shutil.copytree(source, target)
        for suffix in ("_opdmd", "_history"):  # the files beside the dataset's folder
            beside = source.with_name(source.name + suffix)
            if beside.exists():
                shutil.copy2(beside, target.with_name(target.name + suffix))

    def walk() -> int:
        found = 0
        for _, _, names in os.walk(base):
            found += sum(name.endswith("_opdmd") for name in names)
        return found

    assert len(Store(base, Instrument)) == n_keys == walk()
    with ctx.profiled(f"{NAME}-discover"):
        len(Store(base, Instrument))
    ours_s, raw_s = paired(lambda: len(Store(base, Instrument)), walk, max(5, ctx.repeats))
    rec.add(
        NAME,
        f"discover {n_keys:,} keys: len(Store) vs os.walk",
        "s",
        ours_s,
        pyarrow=raw_s,
        better="lower",
        target="<= 0.2 s",
        met=ours_s <= 0.2,
    )
    rec.note(
        NAME,
        f"{n_rgs:,} row groups of {RG_ROWS:,} rows. 'open' baseline: pyarrow discovering the "
        "folder's files (pads.dataset). 'open' decodes the metadata file, as a new process "
        "does (the process's kept snapshots cleared first); 'again' finds the snapshot the "
        f"process decoded; construct alone: {construct_s * 1e3:.2f} ms. Store "
        f"keys are two folder levels deep ({N_FREQS} samplings per instrument); its "
        "baseline is a plain os.walk counting metadata files.",
    )
    remove_dataset(work)
