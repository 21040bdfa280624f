"""Python containers: how a namedtuple, dict, dataclass ... splits into the elements of a struct.

The one place that decides what a Python container is; type conversion, type inference and the
conversion of values to `Struct`s all build on `container_items`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fed_types._placements import Placement
from fed_types._struct import Struct

Elements = list[tuple[str | None, Any]]


def is_attrs_class(cls: type) -> bool:
    """True if `cls` is an attrs class (recognised without importing attrs)."""
    return getattr(cls, "__attrs_attrs__", None) is not None


def is_namedtuple_class(cls: type) -> bool:
    """True if `cls` is a namedtuple class."""
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def container_items(value: Any) -> tuple[Elements, type] | None:
    """The `(name or None, element)` pairs of a Python container and the container's type, or None
    if `value` is not a container.

    - a `Struct`: its items, and the container type `type(None)`;
    - a namedtuple: its fields, by name;
    - a list or tuple: its elements, unnamed;
    - a mapping: its values, named by `str(key)`, in the mapping's order;
    - a dataclass or attrs instance: its fields, by name, in declaration order.

    Anything else is not a container: placements (although dataclasses), strings, arrays, scalars.
    """
    if isinstance(value, Struct):
        return list(value.items()), type(None)
    if isinstance(value, Placement):
        return None
    cls = type(value)
    if isinstance(value, tuple) and is_namedtuple_class(cls):
        return list(zip(cls._fields, value)), cls
    if isinstance(value, (list, tuple)):
        return [(None, element) for element in value], cls
    if isinstance(value, Mapping):
        return [(str(key), element) for key, element in value.items()], cls
    if isinstance(value, type):
        return None
    if dataclasses.is_dataclass(value):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)], cls
    if is_attrs_class(cls):
        return [(f.name, getattr(value, f.name)) for f in cls.__attrs_attrs__], cls
    return None


def struct_elements(
    value: Any, is_pair: Callable[[Any], bool], *, pairs_if: Callable[[Iterable[bool]], bool]
) -> tuple[Elements, type | None] | None:
    """The elements of the struct that `value` makes and the container type to keep, or None if
    `value` is not a container.

    `container_items`, with fed_types' own rules on top: a `Struct` keeps no container; a list or
    tuple of `(name, x)` pairs, as decided by `pairs_if` applied to `is_pair` of every element, is
    a struct with names and no container (that is how TFF users write named structs); the keys of a
    mapping must be strings, as they become element names.
    """
    items = container_items(value)
    if items is None:
        return None
    elements, container = items
    if isinstance(value, Struct):
        return elements, None
    if isinstance(value, (list, tuple)) and not is_namedtuple_class(container):
        if value and pairs_if(is_pair(element) for element in value):
            return [item if is_pair(item) else (None, item) for item in value], None
        return elements, container
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(
                    f"Expected the keys of a {container.__qualname__} to be element names (str), "
                    f"got key {key!r}."
                )
    return elements, container
