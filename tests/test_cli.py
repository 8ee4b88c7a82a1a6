"""The ``oupsish`` command, invoked as a subprocess like a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oupsish import OrderedParquetDataset, Store, toplevel
from oupsish.cli import main
from oupsish.testing import assert_same_rows

SCRIPT = Path(sys.executable).parent / "oupsish"
VERBS = ["ls", "info", "head", "tail", "history", "verify", "compact", "ingest", "demo"]


@toplevel
class Sensor:
    site: str
    name: str


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "oupsish"]
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    s = Store(root, Sensor)
    for index, name in enumerate(("t1", "t2")):
        for day in range(3):
            df = pd.DataFrame(
                {
                    "ts": pd.date_range(f"2024-01-0{day + 1}", periods=24, freq="h"),
                    "v": np.arange(24.0) + index,
                }
            )
            s[Sensor("lab", name)].write(df=df, ordered_on="ts")
    return root


def test_help_documents_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    text = run("--help").stdout
    assert all(f"    {verb} " in text for verb in VERBS)
    for verb in VERBS:  # in-process: one interpreter start is enough
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert capsys.readouterr().out.startswith("usage: oupsish " + verb)


def test_ls_plain_json_and_with_an_indexer(store: Path) -> None:
    plain = run("ls", str(store)).stdout.splitlines()
    assert plain[0].split() == ["dataset", "rows", "row_groups", "first", "last", "bytes"]
    assert [line.split()[0] for line in plain[1:]] == ["lab-t1", "lab-t2"]
    listed = json.loads(run("ls", str(store), "--json").stdout)
    assert [(d["dataset"], d["rows"], d["row_groups"]) for d in listed] == [
        ("lab-t1", 72, 3),
        ("lab-t2", 72, 3),
    ]
    keyed = json.loads(run("ls", str(store), "--indexer", "test_cli:Sensor", "--json").stdout)
    assert [d["dataset"] for d in keyed] == ["lab-t1", "lab-t2"]


def test_info_head_tail(store: Path, tmp_path: Path) -> None:
    dataset = str(store / "lab-t1")
    data = json.loads(run("info", dataset, "--json").stdout)
    assert data["rows"] == 72 and data["ordered_on"] == "ts"
    assert data["schema"] == {"ts": "timestamp[ns]", "v": "double"} or "ts" in data["schema"]
    assert data["fragmentation"]["small_row_groups"] == 0
    assert "row groups:" in run("info", dataset).stdout
    head = json.loads(run("head", dataset, "-n", "2", "--json").stdout)
    assert [row["v"] for row in head] == [0.0, 1.0]
    tail = run("tail", dataset, "-n", "1").stdout
    assert "23.0" in tail
    png = tmp_path / "rg.png"
    run("info", dataset, "--plot", str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_verify_exit_codes(store: Path) -> None:
    assert "0 problem(s)" in run("verify", str(store)).stdout
    victim = next((store / "lab-t2").glob("*.parquet"))
    victim.unlink()
    result = run("verify", str(store), check=False)
    assert result.returncode == 1
    assert "missing" in result.stdout and "1 problem(s)" in result.stdout
    report = json.loads(run("verify", str(store / "lab-t2"), "--json", check=False).stdout)
    assert list(report) == [str(store / "lab-t2")]


def test_compact_coalesces_atomically(store: Path) -> None:
    dataset = store / "lab-t1"
    before = OrderedParquetDataset(dataset).to_pandas()
    out = run("compact", str(dataset), "--target", "100").stdout
    assert "3 -> 1 row groups" in out
    after = OrderedParquetDataset(dataset)
    assert len(after) == 1
    assert_same_rows(after.to_pandas(), before)


def test_ingest_csv(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv.gz"
    frame = pd.DataFrame(
        {"ts": pd.date_range("2024-01-01", periods=500, freq="min"), "v": np.arange(500.0)}
    )
    frame.to_csv(csv, index=False)
    dataset = tmp_path / "ds"
    out = run("ingest", str(csv), str(dataset), "--ordered-on", "ts", "--chunksize", "200").stdout
    assert "500 rows" in out
    assert_same_rows(OrderedParquetDataset(dataset).to_pandas(), frame)


def test_errors_name_the_problem_and_exit_2(tmp_path: Path) -> None:
    result = run("info", str(tmp_path / "nope"), check=False)
    assert result.returncode == 2 and "is not a dataset" in result.stderr
    result = run("ls", str(tmp_path / "missing"), check=False)
    assert result.returncode == 2 and "is not a folder" in result.stderr
    result = run("ls", str(tmp_path), "--indexer", "nomodule", check=False)
    assert result.returncode == 2 and "module:Class" in result.stderr
    assert run("bogus", check=False).returncode == 2


def test_demo_verb() -> None:
    assert "summary" in run("demo").stdout


def test_history_verb(store: Path) -> None:
    dataset = str(store / "lab-t1")
    history = json.loads(run("history", dataset, "--json").stdout)
    assert [entry["operation"] for entry in history] == ["append", "append", "append"]
    assert [entry["rows_after"] for entry in history] == [24, 48, 72]
    assert "append" in run("history", dataset).stdout
