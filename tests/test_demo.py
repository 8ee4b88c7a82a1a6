from __future__ import annotations

from pathlib import Path

import pytest

from oupsish.demo import main, run_demo


def test_demo_summary(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "store", days=4, out=False)
    assert summary["stations"] == ["berlin-1min", "oslo-1min", "paris-1min"]
    assert summary["rows"] == dict.fromkeys(summary["stations"], 4 * 24 * 60)
    assert summary["row_groups"] == dict.fromkeys(summary["stations"], 4)


def test_demo_entry_point_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--days", "8"]) == 0
    printed = capsys.readouterr().out
    assert "inserted a correction of 125 rows" in printed
    assert "iter_intersections:" in printed and "summary" in printed
