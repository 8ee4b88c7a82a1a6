from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oupsish.naming import (
    allocate_keys,
    format_name,
    has_room_before,
    is_data_file_name,
    parse_name,
)

segments = st.lists(st.integers(0, 99_999), min_size=0, max_size=3)
keys = st.builds(
    lambda top, children: (top, *children),
    st.integers(0, 99_999),
    segments,
).filter(lambda key: key[-1] != 0 or len(key) == 1)


def test_names_round_trip() -> None:
    assert format_name((3,), 5, None) == "file_00003.parquet"
    assert format_name((3, 50_000), 5, 12) == "file_00003_50000-12.parquet"
    assert parse_name("file_00003_50000-12.parquet") == ((3, 50_000), 5)
    assert parse_name("file_00003.parquet") == ((3,), 5)
    for bad in ["file_3.parq", "../file_00001.parquet", "file_00001_5.parquet", "x.parquet"]:
        assert not is_data_file_name(bad)
        with pytest.raises(ValueError, match="not a row-group file name"):
            parse_name(bad)


def test_appends_are_consecutive_and_inserts_spread() -> None:
    assert allocate_keys(None, None, 3, 5) == [(0,), (1,), (2,)]
    assert allocate_keys((7,), None, 2, 5) == [(8,), (9,)]
    assert allocate_keys((3,), (4,), 1, 5) == [(3, 50_000)]
    assert allocate_keys((2,), (5,), 2, 5) == [(3,), (4,)]
    assert allocate_keys((99_999,), None, 1, 5) == [(99_999, 1)]
    assert allocate_keys(None, (0,), 1, 5) is None
    assert not has_room_before((0,))
    assert allocate_keys(None, (0, 50_000), 1, 5) == [(0, 25_000)]


@given(st.one_of(st.none(), keys), st.one_of(st.none(), keys), st.integers(1, 50))
def test_allocated_keys_sort_between_bounds_like_their_names(
    lo: tuple[int, ...] | None, hi: tuple[int, ...] | None, count: int
) -> None:
    if lo is not None and hi is not None and lo >= hi:
        lo, hi = hi, lo
        if lo == hi:
            return
    allocated = allocate_keys(lo, hi, count, 5)
    if allocated is None:
        assert lo is None and hi == (0,)
        return
    assert len(allocated) == count
    assert allocated == sorted(set(allocated))
    assert all(key[-1] != 0 or len(key) == 1 for key in allocated)
    bounded = ([lo] if lo is not None else []) + allocated + ([hi] if hi is not None else [])
    assert bounded == sorted(bounded) and len(set(bounded)) == len(bounded)
    names = [
        format_name(key, 5, commit)
        for key, commit in zip(bounded, range(len(bounded)), strict=False)
    ]
    assert names == sorted(names)
