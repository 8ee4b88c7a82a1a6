"""Execute the documentation: every ```python block of README.md and docs/*.md.

Blocks of one page run in order in one namespace, in a temporary working directory, so a
page reads like a session. Blocks meant to be shown but not run use another language tag
(``text``, ``console``).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(1)) for match in BLOCK.finditer(text)
    ]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A real module: dataclasses (the indexers) look their module up in sys.modules.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict[str, Any] = module.__dict__
    blocks = python_blocks(page)
    for line, code in blocks:
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{page.name}, block at line {line} failed: {error!r}") from error


def test_every_predecessor_example_is_on_the_compat_page() -> None:
    text = (ROOT / "docs" / "compat.md").read_text()
    names = [
        "test_store_indexer_hierarchy",
        "test_store_indexer_simple",
        "test_store_ordered_parquet_dataset_example",
        "test_store_basic_usage",
        "test_store_write_params",
        "test_store_write_helper",
        "test_store_incremental",
        "test_store_manual_vs_store",
    ]
    assert all(f"(`{name}`)" in text for name in names)
    assert "from oups" not in BLOCK.sub("", text) or "from oups.store import ..." in text
    assert all("oups.store" not in code for _, code in python_blocks(ROOT / "docs" / "compat.md"))
