from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from oupsish import OrderedParquetDataset

FIXTURES = Path(__file__).parent / "fixtures"

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def fixture_store(tmp_path: Path) -> Path:
    """A writable copy of the store written by the predecessor (oups 2025.12)."""
    import shutil

    target = tmp_path / "oups_store"
    shutil.copytree(FIXTURES / "oups_store", target)
    return target


def data_files(ds: OrderedParquetDataset) -> list[Path]:
    """The dataset's row-group files, in order."""
    return [ds.dirpath / f"file_{file_id}.parquet" for file_id in ds.row_group_stats["file_ids"]]


FilesOpenUnder = Callable[[Path], list[str]]


@pytest.fixture
def files_open_under() -> FilesOpenUnder:
    """What this process holds open in a folder: the targets of its descriptors there.

    Counting all descriptors instead is flaky: pyarrow and the garbage collector close
    files of earlier tests at any moment. A nameless temporary file shows as
    ``<folder>/#<inode> (deleted)``.
    """
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")

    def files(folder: Path) -> list[str]:
        found = []
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:  # closed meanwhile, or the listing's own descriptor
                continue
            if target.startswith(str(folder) + os.sep):
                found.append(target)
        return found

    return files


@pytest.fixture(autouse=True)
def no_tail_kept_from_other_tests() -> None:
    """Tails of coalescing writes are kept per process: each test starts without any."""
    from oupsish import tail_cache

    tail_cache.clear()
