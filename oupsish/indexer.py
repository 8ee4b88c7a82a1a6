"""Dataset keys: ``@toplevel`` and ``@sublevel`` dataclasses that map keys to folders.

A toplevel class describes the first folder level of a store; its last field may be a
``@sublevel`` instance describing the next folder level, and so on. Fields are ``int`` or
``str``. Each level's values are joined by ``field_sep`` into one folder name::

    @sublevel
    class Sampling:
        frequency: str

    @toplevel
    class Measure:
        quantity: str
        city: str
        sampling: Sampling

    Measure("temperature", "berlin", Sampling("1D")).to_path()  # temperature-berlin/1D
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
elif sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # Python 3.10: the marker only informs type checkers.

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator


__all__ = ["is_sublevel", "is_toplevel", "sublevel", "toplevel"]

T = TypeVar("T")

DEFAULT_FIELD_SEP = "-"
# A folder name ending like this would collide with a sibling dataset's metadata file.
RESERVED_SUFFIX = "_opdmd"
_PATH_CHARS = ("/", "\\", os.sep)
_TOPLEVEL_MARK = "__oupsish_toplevel__"
_SUBLEVEL_MARK = "__oupsish_sublevel__"
_LEVEL_SPEC = "__oupsish_level_fields__"
_SEP_ATTRIBUTE = "field_sep"


def is_toplevel(obj: object) -> bool:
    """Return whether ``obj`` is a ``@toplevel`` class or an instance of one."""
    return getattr(obj, _TOPLEVEL_MARK, False) is True


def is_sublevel(obj: object) -> bool:
    """Return whether ``obj`` is a ``@sublevel`` class or an instance of one."""
    return getattr(obj, _SUBLEVEL_MARK, False) is True


@dataclasses.dataclass(frozen=True)
class _LevelFields:
    """The fields of one level: leaf fields (int or str) and an optional deeper level."""

    leaves: tuple[tuple[str, type], ...]
    child_name: str | None
    child_class: type | None


def _resolve_annotation(cls: type, name: str, annotation: Any, caller_ns: dict[str, Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        return typing.get_type_hints(cls, localns=caller_ns)[name]
    except Exception:
        pass
    builtin = {"int": int, "str": str}
    if annotation in builtin:
        return builtin[annotation]
    if annotation in caller_ns:
        return caller_ns[annotation]
    raise TypeError(
        f"cannot resolve the type {annotation!r} of field '{name}' of {cls.__name__}; "
        "define it before the class that uses it."
    )


def _level_fields(cls: type, caller_ns: dict[str, Any]) -> _LevelFields:
    """Inspect a dataclass's fields and check that they make a valid level."""
    fields = dataclasses.fields(cls)
    if not fields:
        raise TypeError(f"{cls.__name__} has no field: a level needs at least one field.")
    leaves: list[tuple[str, type]] = []
    child_name: str | None = None
    child_class: type | None = None
    for position, field in enumerate(fields):
        field_type = _resolve_annotation(cls, field.name, field.type, caller_ns)
        if field_type is int or field_type is str:
            leaves.append((field.name, field_type))
        elif isinstance(field_type, type) and is_sublevel(field_type):
            if position != len(fields) - 1:
                raise TypeError(
                    f"field '{field.name}' of {cls.__name__} is a @sublevel class; "
                    "a sublevel can only be the last field."
                )
            if not leaves:
                raise TypeError(
                    f"{cls.__name__} has only a sublevel field '{field.name}'; "
                    "a level needs at least one int or str field."
                )
            child_name, child_class = field.name, field_type
        else:
            raise TypeError(
                f"field '{field.name}' of {cls.__name__} has type {field_type!r}; "
                "fields must be int, str, or a @sublevel class (last field only)."
            )
    return _LevelFields(tuple(leaves), child_name, child_class)


def _check_leaf_type(owner: str, name: str, expected: type, value: object) -> None:
    # bool is an int subclass; it is rejected because its text form does not round-trip.
    if type(value) is not expected:
        raise TypeError(
            f"field '{name}' of {owner} must be {expected.__name__}, "
            f"got {type(value).__name__} {value!r}."
        )


def _check_level_types(instance: object) -> None:
    spec: _LevelFields = getattr(type(instance), _LEVEL_SPEC)
    owner = type(instance).__name__
    for name, expected in spec.leaves:
        _check_leaf_type(owner, name, expected, getattr(instance, name))
    if spec.child_name is not None:
        child = getattr(instance, spec.child_name)
        if not isinstance(child, spec.child_class):  # type: ignore[arg-type]
            assert spec.child_class is not None
            raise TypeError(
                f"field '{spec.child_name}' of {owner} must be a {spec.child_class.__name__} "
                f"instance, got {type(child).__name__} {child!r}."
            )


def _check_leaf_text(owner: str, name: str, value: object, field_sep: str) -> None:
    text = str(value)
    if text == "":
        raise ValueError(f"field '{name}' of {owner} is an empty string; it names a folder.")
    for forbidden in (field_sep, ".", *_PATH_CHARS):
        if forbidden in text:
            dot = "" if field_sep == "." else ", '.'"
            raise ValueError(
                f"field '{name}' of {owner} is {value!r}, which contains {forbidden!r}; "
                f"values cannot contain the field separator {field_sep!r}{dot} "
                "or a path separator."
            )
    if text.endswith(RESERVED_SUFFIX):
        raise ValueError(
            f"field '{name}' of {owner} is {value!r}; values cannot end with "
            f"{RESERVED_SUFFIX!r}, which names metadata files."
        )


def _levels(instance: object) -> list[object]:
    """Return the instance and its nested sublevel instances, top first."""
    levels = [instance]
    while True:
        spec: _LevelFields = getattr(type(levels[-1]), _LEVEL_SPEC)
        if spec.child_name is None:
            return levels
        levels.append(getattr(levels[-1], spec.child_name))


def _level_texts(instance: object) -> list[list[str]]:
    texts = []
    for level in _levels(instance):
        spec: _LevelFields = getattr(type(level), _LEVEL_SPEC)
        texts.append([str(getattr(level, name)) for name, _ in spec.leaves])
    return texts


def _level_classes(cls: type) -> list[type]:
    classes = [cls]
    while True:
        spec: _LevelFields = getattr(classes[-1], _LEVEL_SPEC)
        if spec.child_class is None:
            return classes
        classes.append(spec.child_class)


def _parse_leaf(text: str, expected: type) -> int | str:
    if expected is int:
        value = int(text)
        if str(value) != text:  # "007" or "+7" would not round-trip to the same folder
            raise ValueError(f"{text!r} is not the canonical text of an int")
        return value
    return text


def _build(cls: type, level_texts: list[list[str]]) -> Any:
    """Instantiate ``cls`` (and its sublevels) from per-level field texts."""
    classes = _level_classes(cls)
    if len(level_texts) != len(classes):
        raise ValueError("wrong number of levels")
    child: object | None = None
    for level_cls, texts in zip(reversed(classes), reversed(level_texts), strict=True):
        spec: _LevelFields = getattr(level_cls, _LEVEL_SPEC)
        if len(texts) != len(spec.leaves):
            raise ValueError("wrong number of fields")
        leaves = zip(texts, spec.leaves, strict=True)
        values: list[object] = [_parse_leaf(text, expected) for text, (_, expected) in leaves]
        if spec.child_name is not None:
            values.append(child)
        child = level_cls(*values)
    return child


def _field_sep(cls: type) -> str:
    return typing.cast(str, getattr(cls, _SEP_ATTRIBUTE))


def _check_toplevel_texts(instance: object) -> None:
    sep = _field_sep(type(instance))
    for level in _levels(instance):
        spec: _LevelFields = getattr(type(level), _LEVEL_SPEC)
        for name, _ in spec.leaves:
            _check_leaf_text(type(level).__name__, name, getattr(level, name), sep)


def _validate_sublevel(self: Any) -> None:
    _check_level_types(self)


def _validate_toplevel(self: Any) -> None:
    _check_level_types(self)
    _check_toplevel_texts(self)


def _key_str(self: Any) -> str:
    sep = _field_sep(type(self))
    return sep.join(text for texts in _level_texts(self) for text in texts)


def _key_to_path(self: Any) -> Path:
    """Return the dataset's folder, relative to the store, one directory per level."""
    sep = _field_sep(type(self))
    return Path(*(sep.join(texts) for texts in _level_texts(self)))


def _key_from_path(cls: type[T], path: str | PurePath) -> T | None:
    """Rebuild a key from its relative folder path, or return ``None`` if it does not fit."""
    sep = _field_sep(cls)
    try:
        parts = PurePath(path).parts
        return typing.cast(T, _build(cls, [part.split(sep) for part in parts]))
    except (TypeError, ValueError):
        return None


def _key_from_str(cls: type[T], text: object) -> T | None:
    """Rebuild a key from ``str(key)``, or return ``None`` if the text does not fit."""
    if not isinstance(text, str):
        return None
    sep = _field_sep(cls)
    values = text.split(sep)
    sizes = [len(getattr(level, _LEVEL_SPEC).leaves) for level in _level_classes(cls)]
    if len(values) != sum(sizes):
        return None
    level_texts, start = [], 0
    for size in sizes:
        level_texts.append(values[start : start + size])
        start += size
    try:
        return typing.cast(T, _build(cls, level_texts))
    except (TypeError, ValueError):
        return None


def _make_level(cls: type[T], caller_ns: dict[str, Any], toplevel_sep: str | None) -> type[T]:
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} defines __post_init__; oupsish uses it to validate.")
    # The generated __init__ only calls a __post_init__ present when the dataclass is made.
    validate = _validate_sublevel if toplevel_sep is None else _validate_toplevel
    setattr(cls, "__post_init__", validate)  # noqa: B010
    dc = dataclasses.dataclass(order=True, frozen=True)(cls)
    setattr(dc, _LEVEL_SPEC, _level_fields(dc, caller_ns))
    if toplevel_sep is None:
        setattr(dc, _SUBLEVEL_MARK, True)
        return dc
    attributes: dict[str, Any] = {
        "__str__": _key_str,
        "to_path": _key_to_path,
        "from_path": classmethod(_key_from_path),
        "from_str": classmethod(_key_from_str),
        "field_sep": toplevel_sep,
        "depth": len(_level_classes(dc)),
        _TOPLEVEL_MARK: True,
    }
    for name, value in attributes.items():
        setattr(dc, name, value)
    return dc


def _caller_namespace() -> dict[str, Any]:
    # Field annotations may be strings (``from __future__ import annotations``) naming a
    # sublevel class defined in the caller's function: resolve them in the caller's scope.
    frame = sys._getframe(2)
    return {**frame.f_globals, **frame.f_locals}


@dataclass_transform(eq_default=True, order_default=True, frozen_default=True)
def sublevel(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, ordered dataclass usable as the last field of a key level.

    Parameters
    ----------
    cls : type
        A class whose fields are annotated ``int`` or ``str``; its last field may itself be a
        ``@sublevel`` class, for a deeper folder level.

    Returns
    -------
    type
        The decorated dataclass.
    """
    return _make_level(cls, _caller_namespace(), None)


@overload
@dataclass_transform(eq_default=True, order_default=True, frozen_default=True)
def toplevel(cls: type[T], /) -> type[T]: ...


@overload
@dataclass_transform(eq_default=True, order_default=True, frozen_default=True)
def toplevel(
    cls: None = None, /, *, field_sep: str = ..., fields_sep: str | None = ...
) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(eq_default=True, order_default=True, frozen_default=True)
def toplevel(
    cls: type[T] | None = None,
    /,
    *,
    field_sep: str = DEFAULT_FIELD_SEP,
    fields_sep: str | None = None,
) -> type[T] | Callable[[type[T]], type[T]]:
    """Make ``cls`` a dataset key: a frozen, ordered dataclass that maps to a folder.

    Parameters
    ----------
    cls : type
        A class whose fields are annotated ``int`` or ``str``; its last field may be a
        ``@sublevel`` class, giving one more folder level.
    field_sep : str, default "-"
        Joins a level's field values into one folder name, and all values in ``str(key)``.
    fields_sep : str, optional
        Alias of ``field_sep`` (the spelling used in the predecessor's documentation).

    Returns
    -------
    type
        The decorated dataclass, with ``to_path()``, ``from_path()``, ``from_str()``,
        ``field_sep`` and ``depth`` (the number of folder levels).

    Raises
    ------
    TypeError
        If a field is neither int, str nor a sublevel, or a sublevel is not the last field.
    ValueError
        If ``field_sep`` is empty or contains '.' or a path separator.

    Examples
    --------
    >>> @toplevel
    ... class CityYear:
    ...     city: str
    ...     year: int
    >>> key = CityYear("berlin", 2023)
    >>> str(key), key.to_path().as_posix()
    ('berlin-2023', 'berlin-2023')
    >>> CityYear.from_str("paris-2024")
    CityYear(city='paris', year=2024)
    """
    sep = field_sep if fields_sep is None else fields_sep
    if not isinstance(sep, str) or sep == "":
        raise ValueError(f"field_sep must be a non-empty string, got {sep!r}.")
    if any(char in sep for char in _PATH_CHARS):
        raise ValueError(f"field_sep cannot contain a path separator, got {sep!r}.")
    if cls is None:
        namespace = _caller_namespace()

        def decorate(inner: type[T]) -> type[T]:
            return _make_level(inner, namespace, sep)

        return decorate
    return _make_level(cls, _caller_namespace(), sep)
