# mypy: disable-error-code="attr-defined,arg-type"
# (the methods @toplevel adds are invisible to type checkers; wrong types are tested)
from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oupsish import is_toplevel, sublevel, toplevel


@sublevel
class Sampling:
    frequency: str


@toplevel
class Measure:
    quantity: str
    city: str
    sampling: Sampling


@sublevel
class Version:
    number: int


@sublevel
class Source:
    name: str
    version: Version


@toplevel(field_sep=".")
class Deep:
    kind: str
    year: int
    source: Source


@toplevel
class Flat:
    city: str
    year: int


def test_paths_and_strings() -> None:
    key = Measure("temperature", "berlin", Sampling("1D"))
    assert str(key) == "temperature-berlin-1D"
    assert key.to_path() == Path("temperature-berlin/1D")
    assert Measure.depth == 2 and Measure.field_sep == "-"
    deep = Deep("price", 2024, Source("feed", Version(3)))
    assert str(deep) == "price.2024.feed.3"
    assert deep.to_path() == Path("price.2024/feed/3")
    assert Deep.depth == 3


@pytest.mark.parametrize(
    "key",
    [
        Measure("temperature", "berlin", Sampling("1D")),
        Deep("price", 2024, Source("feed", Version(3))),
        Flat("paris", 5),
    ],
)
def test_round_trips_are_exact(key: Any) -> None:
    cls = type(key)
    assert cls.from_path(key.to_path()) == key
    assert cls.from_str(str(key)) == key
    assert type(cls.from_str(str(key))) is cls
    assert pickle.loads(pickle.dumps(key)) == key


def test_from_text_returns_none_when_it_does_not_fit() -> None:
    assert Flat.from_str("paris-2024-extra") is None
    assert Flat.from_str("paris") is None
    assert Flat.from_str("paris-abc") is None  # not an int
    assert Flat.from_str("paris-007") is None  # would not round-trip to the same folder
    assert Flat.from_str("-2024") is None  # empty field
    assert Flat.from_str(42) is None
    assert Measure.from_path("temperature-berlin") is None  # missing level
    assert Measure.from_path("a-b/c/d") is None  # extra level
    assert Measure.from_path("a-b-c/1D") is None  # too many fields in a level


@pytest.mark.parametrize(
    ("make", "error", "field"),
    [
        (lambda: Flat("a-b", 1), ValueError, "city"),
        (lambda: Flat("a.b", 1), ValueError, "city"),
        (lambda: Flat("a/b", 1), ValueError, "city"),
        (lambda: Flat("", 1), ValueError, "city"),
        (lambda: Flat("x_opdmd", 1), ValueError, "city"),
        (lambda: Flat(1, 1), TypeError, "city"),
        (lambda: Flat("a", "1"), TypeError, "year"),
        (lambda: Flat("a", True), TypeError, "year"),
        (lambda: Measure("a", "b", "1D"), TypeError, "sampling"),
        (lambda: Measure("a", "b", Sampling(1)), TypeError, "frequency"),
        (lambda: Measure("a", "b", Sampling("1-D")), ValueError, "frequency"),
    ],
)
def test_validation_names_the_field(
    make: Callable[[], object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=f"'{field}'"):
        make()


def test_negative_int_with_dash_separator_is_rejected() -> None:
    with pytest.raises(ValueError, match="year"):
        Flat("a", -1)


def test_schema_errors_at_decoration() -> None:
    with pytest.raises(TypeError, match="last field"):

        @toplevel
        class Bad:
            sampling: Sampling
            city: str

    with pytest.raises(TypeError, match="float"):

        @toplevel
        class Float:
            value: float

    with pytest.raises(ValueError, match="field_sep"):
        toplevel(field_sep="")


def test_keys_sort_by_field_values() -> None:
    keys = [Flat("b", 1), Flat("a", 10), Flat("a", 2)]
    assert sorted(keys) == [Flat("a", 2), Flat("a", 10), Flat("b", 1)]


def test_is_toplevel() -> None:
    assert is_toplevel(Flat) and is_toplevel(Flat("a", 1))
    assert not is_toplevel(Sampling)
    assert not is_toplevel(int)


def test_fields_sep_alias_of_the_predecessor_docs() -> None:
    @toplevel(fields_sep="_")
    class Alias:
        a: str
        b: str

    assert str(Alias("x", "y")) == "x_y"
