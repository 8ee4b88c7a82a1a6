from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oupsish import Store, toplevel
from oupsish.testing import ReferenceModel, assert_same_rows
from oupsish.testing.strategies import ordered_frames


@toplevel
class Sensor:
    name: str


def seeded_store(tmp_path: Path, frames: dict[str, tuple[pd.DataFrame, int]]) -> Store:
    store = Store(tmp_path / "store", Sensor)
    for name, (df, target) in frames.items():
        # Written in two chunks so row groups come from appends and merges alike.
        half = len(df) // 2
        for part in (df.iloc[:half], df.iloc[half:]):
            store[Sensor(name)].write(df=part, ordered_on="ts", row_group_target_size=target)
    return store


def units_max_rows(store: Store, key: Sensor) -> int:
    """Most rows in one unit: consecutive row groups sharing boundary values."""
    stats = store[key].row_group_stats
    largest = current = 0
    for index in range(len(stats)):
        shared = index and stats.ordered_on_mins[index] == stats.ordered_on_maxs[index - 1]
        current = current + int(stats.n_rows[index]) if shared else int(stats.n_rows[index])
        largest = max(largest, current)
    return largest


bounds = st.one_of(st.none(), st.integers(-2, 62))


@settings(max_examples=150)
@given(
    frames=st.lists(
        st.tuples(ordered_frames(min_rows=1, max_rows=25), st.integers(1, 8)),
        min_size=1,
        max_size=3,
    ),
    start=bounds,
    end_excl=bounds,
    n_prev=st.lists(st.integers(0, 5), min_size=3, max_size=3),
)
def test_iter_intersections_matches_the_model(
    tmp_path_factory: pytest.TempPathFactory,
    frames: list[tuple[pd.DataFrame, int]],
    start: int | None,
    end_excl: int | None,
    n_prev: list[int],
) -> None:
    tmp_path = tmp_path_factory.mktemp("inter")
    named = {f"k{index}": pair for index, pair in enumerate(frames)}
    store = seeded_store(tmp_path, named)
    keys = [Sensor(name) for name in named]
    n_prev = n_prev[: len(keys)]
    if start is not None and end_excl is not None and start >= end_excl:
        with pytest.raises(ValueError, match="before end_excl"):
            list(store.iter_intersections(keys, start=start, n_prev=n_prev, end_excl=end_excl))
        return
    chunks = list(store.iter_intersections(keys, start=start, n_prev=n_prev, end_excl=end_excl))

    previous_max: Any = None
    for chunk in chunks:
        assert list(chunk) == keys, "every key is in every yield, in the order given"
        values = [frame["ts"] for frame in chunk.values() if len(frame)]
        if not values:
            continue
        # Spans are consecutive: everything in a yield comes after the previous yield.
        body = [v[v >= start] if start is not None and chunk is chunks[0] else v for v in values]
        low = min((int(v.min()) for v in body if len(v)), default=None)
        if previous_max is not None and low is not None:
            assert low >= previous_max
        previous_max = max(int(v.max()) for v in values)

    for key, (df, _), count in zip(keys, named.values(), n_prev, strict=True):
        model = ReferenceModel("ts")
        model.write(df)
        expected = model.between(start, end_excl)
        if start is not None and count:
            before = model.between(None, start)
            expected = pd.concat([before.iloc[max(0, len(before) - count) :], expected])
        parts = [chunk[key] for chunk in chunks if len(chunk[key])]
        got = pd.concat(parts, ignore_index=True) if parts else None
        assert_same_rows(got, expected if len(expected) else None)
        # Memory: a key's frame never holds more than one unit of row groups (+ n_prev).
        limit = units_max_rows(store, key) + count
        assert all(len(chunk[key]) <= limit for chunk in chunks)


def test_zero_is_a_real_bound(tmp_path: Path) -> None:
    df = pd.DataFrame({"ts": np.arange(-3, 4), "v": np.arange(7.0)})
    store = seeded_store(tmp_path, {"a": (df, 2)})
    key = Sensor("a")
    after = pd.concat([c[key] for c in store.iter_intersections([key], start=0)])
    assert after["ts"].tolist() == [0, 1, 2, 3]
    before = pd.concat([c[key] for c in store.iter_intersections([key], end_excl=0)])
    assert before["ts"].tolist() == [-3, -2, -1]


def test_n_prev_list_stays_attached_to_its_key(tmp_path: Path) -> None:
    early = pd.DataFrame({"ts": np.arange(0, 10), "v": np.arange(10.0)})
    late = pd.DataFrame({"ts": np.arange(20, 30), "v": np.arange(10.0)})
    store = seeded_store(tmp_path, {"early": (early, 3), "late": (late, 3)})
    keys = [Sensor("early"), Sensor("late")]
    chunks = list(store.iter_intersections(keys, start=25, n_prev=[2, 1]))
    early_rows = pd.concat([c[keys[0]] for c in chunks])
    late_rows = pd.concat([c[keys[1]] for c in chunks])
    assert early_rows["ts"].tolist() == [8, 9], "early has no rows in range: only its n_prev"
    assert late_rows["ts"].tolist() == [24, 25, 26, 27, 28, 29]


def test_timestamps_and_bound_types(tmp_path: Path) -> None:
    store = Store(tmp_path, Sensor)
    for name, offset in (("a", "0min"), ("b", "30min")):
        ts = pd.date_range("2024-01-01", periods=48, freq="h") + pd.Timedelta(offset)
        df = pd.DataFrame({"ts": ts, "v": np.arange(48.0)})
        store[Sensor(name)].write(df=df, ordered_on="ts", row_group_target_size="6h")
    keys = [Sensor("a"), Sensor("b")]
    chunks = list(
        store.iter_intersections(
            keys, start=pd.Timestamp("2024-01-01 12:00"), end_excl="2024-01-02"
        )
    )
    assert len(chunks) >= 2
    a = pd.concat([c[keys[0]] for c in chunks])
    b = pd.concat([c[keys[1]] for c in chunks])
    assert len(a) == 12 and len(b) == 12
    assert b["ts"].iloc[-1] == pd.Timestamp("2024-01-01 23:30")


def test_unknown_key_and_mismatched_ordered_on(tmp_path: Path) -> None:
    store = seeded_store(tmp_path, {"a": (pd.DataFrame({"ts": [1, 2], "v": [1.0, 2.0]}), 2)})
    with pytest.raises(KeyError, match="'nope' not found"):
        list(store.iter_intersections([Sensor("a"), Sensor("nope")]))
    store[Sensor("b")].write(df=pd.DataFrame({"t2": [1, 2], "v": [1.0, 2.0]}), ordered_on="t2")
    with pytest.raises(ValueError, match="share their ordered_on"):
        list(store.iter_intersections([Sensor("a"), Sensor("b")]))


def test_holds_about_one_row_group_per_key(tmp_path: Path) -> None:
    n = 400_000
    store = Store(tmp_path, Sensor)
    keys = []
    for index, size in enumerate((40_000, 50_000, 64_000)):
        ts = np.arange(n, dtype=np.int64) * 4 + index
        df = pd.DataFrame({"ts": ts, "a": np.ones(n), "b": np.ones(n)})
        keys.append(Sensor(f"k{index}"))
        store[keys[-1]].write(df=df, ordered_on="ts", row_group_target_size=size)
    whole = 3 * n * 24  # bytes of all datasets in memory
    tracemalloc.start()
    rows = 0
    for chunk in store.iter_intersections(keys):
        rows += sum(len(frame) for frame in chunk.values())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows == 3 * n
    assert peak < whole / 4, f"peak {peak} bytes for {whole} bytes of data"


def test_columns_and_arrow_output(tmp_path: Path) -> None:
    df = pd.DataFrame({"ts": np.arange(20), "a": np.arange(20.0), "b": np.arange(20.0) * 2})
    store = seeded_store(tmp_path, {"x": (df, 4)})
    key = Sensor("x")
    chunks = list(store.iter_intersections([key], start=5, n_prev=2, columns=["b"]))
    got = pd.concat([chunk[key] for chunk in chunks], ignore_index=True)
    assert list(got.columns) == ["b"] and got["b"].tolist() == (np.arange(3, 20) * 2.0).tolist()
    tables = list(store.iter_intersections([key], columns=["ts", "a"], output="arrow"))
    assert all(isinstance(chunk[key], pa.Table) for chunk in tables)
    assert pa.concat_tables([chunk[key] for chunk in tables]).column("a").to_pylist() == list(
        np.arange(20.0)
    )
    with pytest.raises(ValueError, match="unknown column"):
        list(store.iter_intersections([key], columns=["nope"]))
    with pytest.raises(ValueError, match="output must be"):
        list(store.iter_intersections([key], output="polars"))
