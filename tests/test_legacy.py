"""Stores written by the predecessor (oups 2025.12) open, read exactly, and accept writes."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oupsish import OrderedParquetDataset, Store, UnsafeMetadataError, sublevel, toplevel
from oupsish.testing import assert_same_rows

FIXTURES = Path(__file__).parent / "fixtures"

EXPECTED: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES / "oups_store.expected.json").read_text()
)


@sublevel
class Sampling:
    freq: str


@toplevel(field_sep=".")
class Measure:
    quantity: str
    city: str
    sampling: Sampling


def test_discovers_every_dataset(fixture_store: Path) -> None:
    store = Store(fixture_store, Measure)
    assert [str(key) for key in store] == sorted(EXPECTED)
    assert [str(key.to_path()) for key in store] == [EXPECTED[k]["path"] for k in sorted(EXPECTED)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reads_exactly_the_expected_contents(fixture_store: Path, name: str) -> None:
    expected = EXPECTED[name]
    store = Store(fixture_store, Measure)
    key = Measure.from_str(name)  # type: ignore[attr-defined]
    assert key is not None and key in store
    dataset = store[key]
    assert dataset.ordered_on == expected["ordered_on"]
    assert len(dataset) == expected["n_row_groups"]
    assert dataset.key_value_metadata == expected["key_value_metadata"]
    assert dataset.row_group_stats["n_rows"].tolist() == expected["row_group_n_rows"]
    df = dataset.to_pandas()
    assert df is not None
    assert len(df) == expected["n_rows"]
    assert list(df.columns) == expected["columns"]
    # The expected dtypes are pandas 3's; pandas 2 reads text as object.
    text = "str" if int(pd.__version__.split(".")[0]) >= 3 else "object"
    expected_dtypes = {c: text if t == "str" else t for c, t in expected["dtypes"].items()}
    assert {c: str(t) for c, t in df.dtypes.items()} == expected_dtypes
    assert str(df["timestamp"].iloc[0]) == expected["first_timestamp"]
    assert str(df["timestamp"].iloc[-1]) == expected["last_timestamp"]
    assert df["value"].sum() == pytest.approx(expected["value_sum"], rel=1e-12)
    assert df["timestamp"].is_monotonic_increasing


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accepts_an_append_and_an_insert(fixture_store: Path, name: str) -> None:
    store = Store(fixture_store, Measure)
    key = Measure.from_str(name)  # type: ignore[attr-defined]
    dataset = store[key]
    before = dataset.to_pandas()
    assert before is not None
    last = before["timestamp"].iloc[-1]
    row = before.iloc[[-1]].reset_index(drop=True)
    appended = row.assign(timestamp=last + pd.Timedelta("1h"))
    dataset.write(df=appended, key_value_metadata={"migrated": "yes"})
    inserted = row.assign(timestamp=before["timestamp"].iloc[0] + pd.Timedelta("1s"))
    dataset.write(df=inserted)

    reopened = Store(fixture_store, Measure)[key]
    after = reopened.to_pandas()
    expected = (
        pd.concat([before, appended, inserted], ignore_index=True)
        .sort_values("timestamp", kind="stable")
        .reset_index(drop=True)
    )
    assert_same_rows(after, expected)
    assert reopened.key_value_metadata == {
        **EXPECTED[name]["key_value_metadata"],
        "migrated": "yes",
    }
    # The folder stays readable by any Parquet reader, in order.
    plain = pq.read_table(reopened.dirpath).to_pandas()
    assert_same_rows(plain, expected)


def _legacy_metadata_with(dataset_metadata: Path, payload: bytes) -> bytes:
    """Return the legacy metadata file with its pickled ``oups`` entry replaced."""
    table = pq.read_table(dataset_metadata)
    schema_metadata = dict(table.schema.metadata or {})
    assert b"oups" in schema_metadata
    schema_metadata[b"oups"] = payload
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(schema_metadata), sink)
    return sink.getvalue()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    "make_payload",
    [
        pytest.param(lambda marker: pickle.dumps(_Exploit(marker)), id="callable-global"),
        pytest.param(lambda marker: pickle.dumps({"ordered_on": pa.int64()}), id="class"),
        pytest.param(lambda marker: pickle.dumps({"ordered_on": 3}), id="not-str-values"),
        pytest.param(lambda marker: b"\x80\x05garbage", id="garbage"),
    ],
)
def test_legacy_pickle_with_anything_but_plain_strings_is_refused(
    fixture_store: Path, tmp_path: Path, make_payload: Any
) -> None:
    marker = tmp_path / "executed"
    metadata_file = fixture_store / "pressure.stockholm" / "1h_opdmd"
    metadata_file.write_bytes(_legacy_metadata_with(metadata_file, make_payload(marker)))
    before = metadata_file.read_bytes()
    with pytest.raises((UnsafeMetadataError, ValueError), match="1h_opdmd"):
        OrderedParquetDataset(fixture_store / "pressure.stockholm" / "1h").to_pandas()
    assert not marker.exists(), "nothing read from disk may ever be executed"
    assert metadata_file.read_bytes() == before
