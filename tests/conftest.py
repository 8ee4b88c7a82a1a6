from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
