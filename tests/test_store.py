from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oupsish import OrderedParquetDataset, Store, sublevel, toplevel


@sublevel
class Sampling:
    freq: str


@toplevel
class Measure:
    quantity: str
    city: str
    sampling: Sampling


@toplevel
class Station:
    name: str
    year: int


def days(start: str, n: int) -> pd.DataFrame:
    df: pd.DataFrame = pd.DataFrame(
        {"ts": pd.date_range(start, periods=n, freq="D"), "v": np.arange(n, dtype=float)}
    )
    return df


def test_indexer_must_be_toplevel(tmp_path: Path) -> None:
    class Plain:
        name: str

    with pytest.raises(TypeError, match="Plain has to be '@toplevel' decorated"):
        Store(tmp_path, Plain)
    with pytest.raises(TypeError, match="has to be '@toplevel' decorated"):
        Store(tmp_path, Sampling)


@pytest.mark.parametrize("as_path", [True, False])
def test_store_accepts_str_or_path(tmp_path: Path, as_path: bool) -> None:
    basepath = tmp_path / "store"
    store = Store(basepath if as_path else str(basepath), Station)
    assert store.basepath == basepath
    assert len(store) == 0


def test_lazy_creation_then_visible_everywhere(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", Measure)
    other_handle = Store(tmp_path / "store", Measure)
    key = Measure("temperature", "berlin", Sampling("1D"))
    dataset = store[key]
    assert isinstance(dataset, OrderedParquetDataset)
    assert not (tmp_path / "store").exists(), "store[key] alone must create nothing"
    assert key not in store and len(store) == 0
    dataset.write(df=days("2024-01-01", 3), ordered_on="ts")
    for handle in (store, other_handle):
        assert key in handle
        assert len(handle) == 1
        assert list(handle) == [key]
        assert handle.keys == [key]
    assert dataset.dirpath == tmp_path / "store" / "temperature-berlin" / "1D"


def test_discovery_sorting_and_repr(tmp_path: Path) -> None:
    store = Store(tmp_path, Station)
    keys = [Station("paris", 2024), Station("berlin", 2025), Station("berlin", 2023)]
    for key in keys:
        store[key].write(df=days("2024-01-01", 2), ordered_on="ts")
    # Foreign content is ignored: a file, a folder without metadata, a misfit name.
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty-1").mkdir()
    (tmp_path / "no_fields_opdmd").write_text("garbage")
    rediscovered = Store(tmp_path, Station)
    assert rediscovered.keys == sorted(keys)
    assert list(rediscovered) == [
        Station("berlin", 2023),
        Station("berlin", 2025),
        Station("paris", 2024),
    ]
    assert repr(rediscovered) == "berlin-2023\nberlin-2025\nparis-2024"
    assert Station("rome", 2024) not in rediscovered
    assert "berlin-2023" not in rediscovered  # only keys are members


def test_get_passes_dataset_options(tmp_path: Path) -> None:
    store = Store(tmp_path, Station)
    key = Station("oslo", 2024)
    dataset = store.get(key, ordered_on="ts", lock_timeout=1.5)
    dataset.write(df=days("2024-01-01", 2))
    assert store[key].ordered_on == "ts"
    with pytest.raises(ValueError, match="ordered_on"):
        store.get(key, ordered_on="other")


def test_wrong_key_type(tmp_path: Path) -> None:
    store = Store(tmp_path, Station)
    with pytest.raises(TypeError, match="Station instances, got str"):
        store["oslo-2024"]


def test_delete_removes_files_and_empty_parents(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", Measure)
    daily = Measure("temperature", "berlin", Sampling("1D"))
    hourly = Measure("temperature", "berlin", Sampling("1h"))
    for key in (daily, hourly):
        store[key].write(df=days("2024-01-01", 2), ordered_on="ts")
    del store[daily]
    assert daily not in store and hourly in store
    parent = tmp_path / "store" / "temperature-berlin"
    assert sorted(path.name for path in parent.iterdir()) == [
        "1h",
        "1h.lock",
        "1h_history",
        "1h_opdmd",
    ]
    del store[hourly]
    assert len(store) == 0
    assert not parent.exists(), "an emptied parent folder is removed"
    assert (tmp_path / "store").is_dir(), "the store's own folder stays"
    with pytest.raises(KeyError, match="temperature-berlin-1D"):
        del store[daily]


def test_keys_pickle_and_rebuild_from_text(tmp_path: Path) -> None:
    key = Measure("temperature", "berlin", Sampling("1D"))
    assert pickle.loads(pickle.dumps(key)) == key
    # The methods @toplevel adds are invisible to type checkers, hence the ignores.
    assert Measure.from_str(str(key)) == key  # type: ignore[attr-defined]
    assert Measure.from_path(key.to_path()) == key  # type: ignore[attr-defined]
    assert Station.from_str("oslo-2024") == Station("oslo", 2024)  # type: ignore[attr-defined]
    assert Station.from_str("oslo-2024-extra") is None  # type: ignore[attr-defined]


def test_delete_keeps_foreign_files_and_their_folder(tmp_path: Path) -> None:
    store = Store(tmp_path, Station)
    key = Station("oslo", 2024)
    store[key].write(df=days("2024-01-01", 2), ordered_on="ts")
    (tmp_path / "oslo-2024" / "notes.txt").write_text("mine")
    del store[key]
    assert key not in store
    assert [p.name for p in (tmp_path / "oslo-2024").iterdir()] == ["notes.txt"]


def test_an_instance_is_not_an_indexer(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pass Station, not Station"):
        Store(tmp_path, Station("oslo", 2024))  # type: ignore[arg-type]
