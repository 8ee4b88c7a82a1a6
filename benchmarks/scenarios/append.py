"""Scenario 1: appends of 100 chunks, next to raw pyarrow writing the same chunks."""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from benchmarks.common import (
    DEFAULT_ENCODING,
    MB,
    ORDERED_ON,
    PLAIN_ENCODING,
    Context,
    chunks,
    fmt,
    frame_bytes,
    fresh_dir,
    interleaved,
    paired,
    remove_dataset,
    to_table,
    tree_bytes,
    write_durably,
)
from oupsish import OrderedParquetDataset
from oupsish.commit import fsync_path

NAME = "append"
TITLE = "100 chunks of 100k rows appended one write each, row_group_target_size=1M rows"
N_CHUNKS, CHUNK_ROWS, TARGET = 100, 100_000, 1_000_000


def run(ctx: Context) -> None:
    rec = ctx.recorder
    chunk_rows, n_chunks = ctx.batches(CHUNK_ROWS, N_CHUNKS)
    frames = chunks(n_chunks, chunk_rows)
    n_rows = n_chunks * chunk_rows
    n_bytes = sum(frame_bytes(frame) for frame in frames)
    work = ctx.workdir(NAME)
    ours_path, raw_path, disk_path = work / "ds", work / "raw", work / "disk"

    def ours(encoding: dict[str, Any], fsync: bool = True) -> None:
        ds = OrderedParquetDataset(ours_path, ordered_on=ORDERED_ON, fsync=fsync)
        for frame in frames:
            ds.write(df=frame, row_group_target_size=TARGET, **encoding)

    def raw(encoding: dict[str, Any], sync: bool = False) -> None:
        for i, frame in enumerate(frames):
            path = raw_path / f"part-{i:05d}.parquet"
            pq.write_table(to_table(frame), path, **encoding)
            if sync:
                fsync_path(path)

    def disk_alone(encoded: list[bytes]) -> None:
        # The I/O floor of a durable append: the same bytes, already encoded, written to
        # one file per chunk and fsynced, as each oupsish write must before it returns.
        for i, data in enumerate(encoded):
            write_durably(disk_path / f"part-{i:05d}.parquet", data)

    append_s = 0.0  # the durable appends with the default encoding, for the predecessor's table
    for label, encoding in (
        ("default (snappy, no dictionary on numbers)", DEFAULT_ENCODING),
        ("none, no dictionary", PLAIN_ENCODING),
    ):
        with ctx.profiled(f"{NAME}-{label.split()[0]}"):
            ours(encoding)  # warm-up (and profile, when asked)
        fresh_dir(raw_path)
        raw(encoding)
        encoded = [path.read_bytes() for path in sorted(raw_path.iterdir())]
        found = interleaved(
            {
                "ours": (partial(ours, encoding), partial(remove_dataset, ours_path)),
                "raw": (partial(raw, encoding), partial(fresh_dir, raw_path)),
                "raw+fsync": (partial(raw, encoding, True), partial(fresh_dir, raw_path)),
                "ours, fsync=False": (
                    partial(ours, encoding, False),
                    partial(remove_dataset, ours_path),
                ),
                "disk alone": (partial(disk_alone, encoded), partial(fresh_dir, disk_path)),
            },
            ctx.repeats,
        )
        del encoded
        ours_s, raw_s = found["ours"], found["raw"]
        if encoding is DEFAULT_ENCODING:
            append_s = ours_s
        rec.add(
            NAME,
            f"append rows/s, {label}",
            "rows/s",
            n_rows / ours_s,
            pyarrow=n_rows / raw_s,
            target=">= 0.9",
            met=raw_s / ours_s >= 0.9,
        )
        rec.add(
            NAME,
            f"append MB/s, {label}",
            "MB/s",
            n_bytes / MB / ours_s,
            pyarrow=n_bytes / MB / raw_s,
        )
        rec.add(
            NAME,
            f"append rows/s, {label}, vs pyarrow + fsync of each file",
            "rows/s",
            n_rows / ours_s,
            pyarrow=n_rows / found["raw+fsync"],
        )
        rec.add(
            NAME,
            f"durable ceiling, {label}: the encoded files written and fsynced, no encoding",
            "rows/s",
            n_rows / found["disk alone"],
            pyarrow=n_rows / raw_s,
        )
        rec.add(
            NAME,
            f"append rows/s, {label}, vs that durable ceiling",
            "rows/s",
            n_rows / ours_s,
            pyarrow=n_rows / found["disk alone"],
        )
        rec.add(
            NAME,
            f"append rows/s, {label}, fsync=False (opt-in: not power-cut safe)",
            "rows/s",
            n_rows / found["ours, fsync=False"],
            pyarrow=n_rows / raw_s,
        )
        n_rgs = len(OrderedParquetDataset(ours_path))
        rec.add(
            NAME,
            f"size on disk, {label}",
            "MB",
            tree_bytes(ours_path) / MB,
            pyarrow=tree_bytes(raw_path) / MB,
            better="lower",
        )
        rec.detail(NAME, **{f"row_groups[{label}]": n_rgs})

    # One write of all rows: oupsish splits it into row groups of TARGET rows; pyarrow
    # writes the same files.
    whole = pd.concat(frames, ignore_index=True)

    def ours_bulk() -> None:
        ds = OrderedParquetDataset(ours_path, ordered_on=ORDERED_ON)
        ds.write(df=whole, row_group_target_size=TARGET)

    def raw_bulk() -> None:
        for i, start in enumerate(range(0, n_rows, TARGET)):
            part = whole.iloc[start : start + TARGET]
            pq.write_table(to_table(part), raw_path / f"part-{i:05d}.parquet", **DEFAULT_ENCODING)

    ours_s, raw_s = paired(
        ours_bulk,
        raw_bulk,
        ctx.repeats,
        setup_ours=lambda: remove_dataset(ours_path),
        setup_raw=lambda: fresh_dir(raw_path),
    )
    rec.add(
        NAME,
        "one write of all rows (default encoding)",
        "rows/s",
        n_rows / ours_s,
        pyarrow=n_rows / raw_s,
        target=">= 0.9",
        met=raw_s / ours_s >= 0.9,
    )
    if ctx.oups_python:
        found = ctx.predecessor(
            "append", work / "oups", n_chunks=n_chunks, chunk_rows=chunk_rows, target=TARGET
        )
        theirs = n_rows / found["seconds"]
        rec.table(
            NAME,
            [
                "appends (default encoding)",
                f"predecessor (oups {found['version']}, no fsync)",
                "oupsish (durable)",
                "oupsish / predecessor",
            ],
            [
                [
                    f"{n_chunks} chunks x {chunk_rows:,} rows",
                    fmt(theirs, "rows/s"),
                    fmt(n_rows / append_s, "rows/s"),
                    f"{n_rows / append_s / theirs:.2f}",
                ]
            ],
        )
        rec.detail(NAME, predecessor=found)
    rec.note(
        NAME,
        f"{n_chunks} chunks x {chunk_rows:,} rows ({n_bytes / MB:.0f} MB in pandas); each write "
        f"adds its own row group (no max_n_off_target_rgs), like pyarrow writing one file per "
        f"chunk. 'one write of all rows' splits into {-(-n_rows // TARGET)} row group(s) of "
        f"up to {TARGET:,} rows on both sides. oupsish fsyncs each file (durability); the "
        "'+ fsync' baseline shows what that costs raw pyarrow. The 'durable ceiling' writes "
        "pyarrow's encoded files again, already in memory, with an fsync each: the disk's pace "
        "for durable writes; its ratio to raw pyarrow bounds what any durable append can reach.",
    )
    remove_dataset(work)
