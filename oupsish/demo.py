"""A tour of oupsish on a temporary store: ``python -m oupsish.demo`` (or ``oupsish-demo``).

Three weather stations stream minute readings in daily chunks; a late correction lands in
the past and replaces the rows it duplicates; provenance metadata is recorded; then one
synchronized pass over all stations computes a spread per span. Every figure printed is
checked against what was written.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from oupsish._version import __version__
from oupsish.indexer import sublevel, toplevel
from oupsish.store import Store

__all__ = ["main", "run_demo"]


@sublevel
class Sampling:
    """How often a station reports."""

    freq: str


@toplevel
class Station:
    """A station of the demo: its city and its sampling."""

    city: str
    sampling: Sampling


CITIES = ("berlin", "oslo", "paris")
MINUTES_PER_DAY = 24 * 60


def _day_of_readings(city_index: int, day: int, rng: np.random.Generator) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01") + pd.Timedelta(days=day)
    # Stations are offset by a few seconds: their timestamps never coincide.
    timestamps = pd.date_range(start, periods=MINUTES_PER_DAY, freq="min") + pd.Timedelta(
        seconds=7 * city_index
    )
    readings: pd.DataFrame = pd.DataFrame(
        {
            "timestamp": timestamps,
            "celsius": rng.normal(5.0 + 3 * city_index, 2.0, MINUTES_PER_DAY),
            "pressure": rng.normal(1013.0, 5.0, MINUTES_PER_DAY),
        }
    )
    return readings


def run_demo(basepath: Path, days: int = 10, out: bool = True) -> dict[str, object]:
    """Run the demo in ``basepath`` and return its summary figures.

    Parameters
    ----------
    basepath : pathlib.Path
        Folder of the demo store (created).
    days : int, default 10
        Daily chunks written per station.
    out : bool, default True
        Print the tour as it goes.
    """

    def say(text: str) -> None:
        if out:
            print(text)

    rng = np.random.default_rng(42)
    store = Store(basepath, Station)
    keys = [Station(city, Sampling("1min")) for city in CITIES]

    started = time.perf_counter()
    for day in range(days):
        for index, key in enumerate(keys):
            store[key].write(
                df=_day_of_readings(index, day, rng),
                ordered_on="timestamp",
                row_group_target_size="1D",
                max_n_off_target_rgs=2,
            )
    written = days * MINUTES_PER_DAY
    say(
        f"appended {days} daily chunks to {len(store)} stations in "
        f"{time.perf_counter() - started:.2f} s"
    )

    berlin = store[keys[0]]
    # A correction for day 3, 10:00-11:59, arrives late, with duplicated readings.
    when = pd.date_range("2024-01-04 10:00", periods=120, freq="min")
    correction = pd.DataFrame(
        {"timestamp": when, "celsius": np.full(120, -3.0), "pressure": np.full(120, 990.0)}
    )
    correction = pd.concat([correction, correction.tail(5)], ignore_index=True).sort_values(
        "timestamp", kind="stable", ignore_index=True
    )
    stats_before = berlin.row_group_stats
    berlin.write(
        df=correction,
        duplicates_on="timestamp",
        row_group_target_size="1D",
        key_value_metadata={"source": "demo-feed", "corrected": "2024-01-04 10:00/12:00"},
    )
    stats_after = berlin.row_group_stats
    rewritten = sorted(set(stats_before.file_ids) - set(stats_after.file_ids))
    say(
        f"inserted a correction of {len(correction)} rows (5 duplicated) into the past: "
        f"rewrote {len(rewritten)} of {len(stats_before)} row groups ({', '.join(rewritten)})"
    )

    frame = berlin.to_pandas()
    assert frame is not None
    fixed = frame.set_index("timestamp").loc[when, "celsius"]
    assert len(frame) == written and (fixed == -3.0).all(), "the correction must replace rows"
    say(f"berlin holds {len(frame)} rows; metadata {berlin.key_value_metadata}")

    spans = 0
    rows: dict[Hashable, int] = dict.fromkeys(keys, 0)
    spread = []
    start, end_excl = pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-09")
    for chunk in store.iter_intersections(keys, start=start, end_excl=end_excl, n_prev=1):
        spans += 1
        for station, part in chunk.items():
            rows[station] += len(part)
        means = [part["celsius"].mean() for part in chunk.values() if len(part)]
        if means:
            spread.append(max(means) - min(means))
    for station, count in rows.items():  # each key's frames hold its range, plus 1 row before
        assert count == len(store[station].read(start, end_excl)) + 1, (station, count)
    say(
        f"iter_intersections: {spans} synchronized spans over {len(keys)} stations, "
        f"{sum(rows.values())} rows, mean spread {np.mean(spread):.2f} °C"
    )

    summary: dict[str, object] = {
        "version": __version__,
        "stations": [str(key) for key in store],
        "rows": {str(key): int(store[key].row_group_stats.n_rows.sum()) for key in store},
        "row_groups": {str(key): len(store[key]) for key in store},
        "spans": spans,
    }
    say("\nsummary")
    for key in store:
        dataset = store[key]
        stats = dataset.row_group_stats
        say(
            f"  {key!s:<20} {len(stats):>3} row groups  {int(stats.n_rows.sum()):>6} rows  "
            f"{stats.ordered_on_mins.iloc[0]} → {stats.ordered_on_maxs.iloc[-1]}"
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo on a temporary store (kept with ``--keep DIR``)."""
    parser = argparse.ArgumentParser(prog="oupsish-demo", description=__doc__)
    parser.add_argument("--days", type=int, default=10, help="daily chunks per station")
    parser.add_argument("--keep", type=Path, help="write the store here and keep it")
    args = parser.parse_args(argv)
    print(f"oupsish {__version__} demo")
    if args.keep is not None:
        run_demo(args.keep, args.days)
        print(f"\nstore kept in {args.keep}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run_demo(Path(tmp) / "store", args.days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
