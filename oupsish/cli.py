"""The ``oupsish`` command: inspect, verify, compact and feed stores from a terminal.

Datasets are found generically: a dataset is a folder with a ``<folder>_opdmd`` metadata
file beside it, so ``oupsish ls STORE`` needs no indexer (``--indexer module:Class``
lists keys instead of paths). Exit codes: 0 success, 1 problems found (``verify``),
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from oupsish._version import __version__
from oupsish.dataset import OrderedParquetDataset
from oupsish.errors import OupsishError
from oupsish.metadata import METADATA_SUFFIX
from oupsish.plan import ON_TARGET_FRACTION

__all__ = ["find_datasets", "main"]


class UsageError(Exception):
    """A command-line mistake: reported on one line, exit code 2."""


def find_datasets(root: Path) -> list[Path]:
    """Return the folders of every dataset under ``root`` (a metadata file beside them)."""
    if not root.is_dir():
        raise UsageError(f"'{root}' is not a folder.")
    found = []
    for folder, subfolders, files in os.walk(root):
        for name in files:
            if name.endswith(METADATA_SUFFIX) and not name.startswith("."):
                found.append(Path(folder) / name[: -len(METADATA_SUFFIX)])
        subfolders.sort()
    return sorted(found)


def open_dataset(path: str) -> OrderedParquetDataset:
    """Open an existing dataset, or fail with a usage error naming what is missing."""
    folder = Path(path)
    metadata = folder.with_name(folder.name + METADATA_SUFFIX)
    if not metadata.is_file():
        raise UsageError(f"'{path}' is not a dataset: there is no metadata file '{metadata}'.")
    return OrderedParquetDataset(folder)


def _progress(enabled: bool, stream: TextIO = sys.stderr) -> Callable[[str], None]:
    """Return a function showing one updating status line, when ``stream`` is a terminal."""
    if not enabled or not stream.isatty():
        return lambda text: None

    def show(text: str) -> None:
        stream.write("\r\x1b[2K" + text)
        stream.flush()

    return show


def _size(ds: OrderedParquetDataset) -> int:
    return sum(path.stat().st_size for path in ds.files if path.exists())


def summary(ds: OrderedParquetDataset, name: str) -> dict[str, Any]:
    """Return the figures ``ls`` shows for one dataset."""
    stats = ds.row_group_stats
    empty = stats.empty
    return {
        "dataset": name,
        "rows": int(stats.n_rows.sum()),
        "row_groups": len(stats),
        "first": None if empty else str(stats.ordered_on_mins.iloc[0]),
        "last": None if empty else str(stats.ordered_on_maxs.iloc[-1]),
        "bytes": _size(ds),
    }


def info(ds: OrderedParquetDataset) -> dict[str, Any]:
    """Return what ``info`` shows: stats, schema, metadata and fragmentation."""
    stats = ds.row_group_stats
    snapshot = ds.snapshot()
    n_rows = stats.n_rows.to_numpy()
    largest = int(n_rows.max()) if len(n_rows) else 0
    small = int((n_rows < ON_TARGET_FRACTION * largest).sum()) if largest else 0
    return {
        **summary(ds, str(ds.dirpath)),
        "ordered_on": ds.ordered_on,
        "commit": snapshot.commit,
        "schema": {field.name: str(field.type) for field in snapshot.schema or []},
        "key_value_metadata": ds.key_value_metadata,
        "fragmentation": {
            "row_group_rows_min": int(n_rows.min()) if len(n_rows) else 0,
            "row_group_rows_median": float(pd.Series(n_rows).median()) if len(n_rows) else 0,
            "row_group_rows_max": largest,
            "small_row_groups": small,
        },
    }


def _print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    out.write("  ".join(c.ljust(widths[c]) for c in columns).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip() + "\n")


def _emit(data: Any, as_json: bool, out: TextIO, text: Callable[[], object]) -> None:
    if as_json:
        json.dump(data, out, indent=2, default=str)
        out.write("\n")
    else:
        text()


def _load_indexer(spec: str) -> type:
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        raise UsageError(f"--indexer must look like 'module:Class', got {spec!r}.")
    if os.getcwd() not in sys.path:  # like ``python -m``: the user's modules are importable
        sys.path.insert(0, os.getcwd())
    try:
        indexer: type = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot load indexer {spec!r}: {error}") from error
    return indexer


def cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    root = Path(args.store)
    if args.indexer:
        from oupsish.store import Store

        store = Store(root, _load_indexer(args.indexer))
        named = [(str(key), store[key]) for key in store]
    else:
        named = [
            (str(folder.relative_to(root)), OrderedParquetDataset(folder))
            for folder in find_datasets(root)
        ]
    rows = [summary(ds, name) for name, ds in named]
    _emit(rows, args.json, out, lambda: _print_table(rows, out))
    return 0


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    ds = open_dataset(args.dataset)
    data = info(ds)

    def text() -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                out.write(f"{key}:\n")
                for inner, inner_value in value.items():
                    out.write(f"  {inner}: {inner_value}\n")
            else:
                out.write(f"{key}: {value}\n")
        out.write("row groups:\n")
        out.write(ds.row_group_stats.to_string(index=False) + "\n")

    _emit(data, args.json, out, text)
    if args.plot:
        from oupsish.plot import plot_row_groups

        plot_row_groups(ds, Path(args.plot))
        if not args.json:
            out.write(f"plot written to {args.plot}\n")
    return 0


def _rows(ds: OrderedParquetDataset, n: int, head: bool) -> pd.DataFrame:
    if n < 0:
        raise UsageError(f"-n must be >= 0, got {n}.")
    stats = ds.row_group_stats
    count = len(stats)
    picked = []
    rows = 0
    order = range(count) if head else range(count - 1, -1, -1)
    for index in order:  # read only the row groups needed
        picked.append(index)
        rows += int(stats.n_rows.iloc[index])
        if rows >= n:
            break
    nothing: pd.DataFrame = pd.DataFrame()
    if not picked:
        return nothing
    lo, hi = min(picked), max(picked) + 1
    frame = ds[lo:hi].to_pandas()
    if frame is None:
        return nothing
    rows_frame: pd.DataFrame = frame.head(n) if head else frame.tail(n).reset_index(drop=True)
    return rows_frame


def _emit_frame(frame: pd.DataFrame, as_json: bool, out: TextIO) -> None:
    _emit(
        json.loads(frame.to_json(orient="records", date_format="iso")),
        as_json,
        out,
        lambda: out.write(frame.to_string(index=False) + "\n"),
    )


def _cmd_rows(args: argparse.Namespace, out: TextIO, head: bool) -> int:
    _emit_frame(_rows(open_dataset(args.dataset), args.n, head), args.json, out)
    return 0


def cmd_head(args: argparse.Namespace, out: TextIO) -> int:
    return _cmd_rows(args, out, head=True)


def cmd_tail(args: argparse.Namespace, out: TextIO) -> int:
    return _cmd_rows(args, out, head=False)


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    _emit_frame(open_dataset(args.dataset).history(), args.json, out)
    return 0


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.path)
    if path.with_name(path.name + METADATA_SUFFIX).is_file():
        folders = [path]
    else:
        folders = find_datasets(path)
    report = {
        str(folder): [str(p) for p in OrderedParquetDataset(folder).verify()] for folder in folders
    }
    problems = sum(len(found) for found in report.values())

    def text() -> None:
        for folder, found in report.items():
            out.write(f"{folder}: {'ok' if not found else f'{len(found)} problem(s)'}\n")
            for problem in found:
                out.write(f"  {problem}\n")
        out.write(f"{len(report)} dataset(s) checked, {problems} problem(s)\n")

    _emit(report, args.json, out, text)
    return 1 if problems else 0


def _target(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def cmd_compact(args: argparse.Namespace, out: TextIO) -> int:
    ds = open_dataset(args.dataset)
    show = _progress(not args.quiet)
    before = len(ds)
    show(f"compacting {before} row groups of {ds.dirpath}...")
    started = time.perf_counter()
    ds.write(row_group_target_size=_target(args.target), max_n_off_target_rgs=args.max_off)
    show("")
    out.write(
        f"{ds.dirpath}: {before} -> {len(ds)} row groups in {time.perf_counter() - started:.2f} s\n"
    )
    return 0


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    csv = Path(args.csv)
    if not csv.is_file():
        raise UsageError(f"CSV file '{csv}' does not exist.")
    ds = OrderedParquetDataset(args.dataset)
    show = _progress(not args.quiet)
    total = csv.stat().st_size
    started = time.perf_counter()
    rows = ds.ingest_csv(
        csv,
        ordered_on=args.ordered_on,
        chunksize=args.chunksize,
        on_chunk=lambda done: show(
            f"ingesting {csv.name}: {done:,} rows (file of {total:,} bytes)"
        ),
        row_group_target_size=_target(args.target),
        duplicates_on=args.duplicates_on,
        max_n_off_target_rgs=args.max_off,
    )
    show("")
    out.write(
        f"{rows:,} rows from {csv} into {ds.dirpath} in {time.perf_counter() - started:.2f} s\n"
    )
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from oupsish.demo import main as demo_main

    return demo_main([] if args.keep is None else ["--keep", args.keep])


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``oupsish`` command."""
    parser = argparse.ArgumentParser(
        prog="oupsish",
        description="Inspect, verify, compact and feed oupsish stores and datasets. A "
        "DATASET is a dataset folder (with its '<folder>_opdmd' metadata file beside it); "
        "a STORE is any folder holding datasets.",
    )
    parser.add_argument("--version", action="version", version=f"oupsish {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        name: str, help_text: str, handler: Callable[..., int], *, json_output: bool = False
    ) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if json_output:
            sub.add_argument("--json", action="store_true", help="print JSON")
        return sub

    ls = verb(
        "ls",
        "list the datasets of a store: rows, row groups, time span, size",
        cmd_ls,
        json_output=True,
    )
    ls.add_argument("store", metavar="STORE")
    ls.add_argument("--indexer", help="list keys of this @toplevel class ('module:Class')")
    info_parser = verb(
        "info",
        "show a dataset's stats, schema, metadata and fragmentation",
        cmd_info,
        json_output=True,
    )
    info_parser.add_argument("dataset", metavar="DATASET")
    info_parser.add_argument("--plot", metavar="PNG", help="draw row-group sizes (matplotlib)")
    for name, handler, what in (("head", cmd_head, "first"), ("tail", cmd_tail, "last")):
        rows = verb(name, f"print the {what} rows of a dataset", handler, json_output=True)
        rows.add_argument("dataset", metavar="DATASET")
        rows.add_argument("-n", type=int, default=10, help="number of rows (default 10)")
    history = verb(
        "history",
        "print a dataset's commits: when, what, by which version",
        cmd_history,
        json_output=True,
    )
    history.add_argument("dataset", metavar="DATASET")
    check = verb(
        "verify",
        "check files against metadata (exit 1 on problems)",
        cmd_verify,
        json_output=True,
    )
    check.add_argument("path", metavar="DATASET_OR_STORE")
    compact = verb("compact", "coalesce small row groups to a target size, atomically", cmd_compact)
    compact.add_argument("dataset", metavar="DATASET")
    compact.add_argument(
        "--target", required=True, help="rows per row group, or a frequency ('1D')"
    )
    compact.add_argument(
        "--max-off", type=int, default=1, help="small row groups tolerated per run"
    )
    compact.add_argument("--quiet", action="store_true", help="no progress line")
    ingest = verb(
        "ingest", "write a CSV file (plain or compressed) into a dataset, in chunks", cmd_ingest
    )
    ingest.add_argument("csv", metavar="CSV")
    ingest.add_argument("dataset", metavar="DATASET")
    ingest.add_argument("--ordered-on", required=True, help="the ordered column (parsed as dates)")
    ingest.add_argument("--chunksize", type=int, default=1_000_000, help="rows per commit")
    ingest.add_argument("--target", default="6345000", help="rows per row group, or a frequency")
    ingest.add_argument("--duplicates-on", nargs="*", help="drop duplicates on these columns")
    ingest.add_argument("--max-off", type=int, default=None, help="coalesce small row groups")
    ingest.add_argument("--quiet", action="store_true", help="no progress line")
    demo = verb("demo", "run the demo on a temporary store", cmd_demo)
    demo.add_argument("--keep", metavar="DIR", help="write the demo store here and keep it")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code."""
    stream = out if out is not None else sys.stdout
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args, stream)
    except BrokenPipeError:  # the reader went away (``oupsish ls STORE | head``): fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (UsageError, OupsishError, ValueError, TypeError, OSError) as error:
        print(f"oupsish {args.verb}: error: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
