"""Struct: the value container for values of a struct type."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np


class Struct:
    """An ordered, immutable list of values, each optionally named.

    Elements are read by position (`s[0]`), by name (`s['a']`, `s.a`), or all at once (`s.items()`).
    A name that collides with a method (`items`, `names`) is still readable with `s['items']`.
    """

    __slots__ = ("_elements", "_names")

    def __init__(self, elements: Iterable[tuple[str | None, Any]]):
        if not isinstance(elements, Iterable) or isinstance(elements, (str, bytes)):
            raise TypeError(
                f"Expected the elements of a Struct as (name or None, value) pairs, got "
                f"{elements!r} of Python type {type(elements).__qualname__}; Struct.named(a=1) "
                "and Struct.unnamed(1, 2) build one from values."
            )
        items = []
        names: dict[str, int] = {}
        for index, item in enumerate(elements):
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(
                    f"Expected (name or None, value) pairs, got {item!r} at position {index}."
                )
            name, value = item
            if name is not None:
                if not isinstance(name, str):
                    raise TypeError(f"Struct element names must be strings, got {name!r}.")
                if name in names:
                    raise ValueError(f"Duplicate element name {name!r} in a struct.")
                names[name] = index
            items.append((name, value))
        object.__setattr__(self, "_elements", tuple(items))
        object.__setattr__(self, "_names", names)

    @classmethod
    def named(cls, **values: Any) -> Struct:
        """A struct whose elements are all named, in keyword order."""
        return cls(values.items())

    @classmethod
    def unnamed(cls, *values: Any) -> Struct:
        """A struct whose elements are all unnamed."""
        return cls((None, v) for v in values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Struct is immutable.")

    def items(self) -> tuple[tuple[str | None, Any], ...]:
        """The elements as `(name or None, value)` pairs, in order."""
        return self._elements

    def names(self) -> tuple[str | None, ...]:
        """The element names in order, None for unnamed elements."""
        return tuple(name for name, _ in self._elements)

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[Any]:
        return (v for _, v in self._elements)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._elements[self._names[key]][1]
            except KeyError:
                raise KeyError(
                    f"Struct has no element named {key!r}; its names are {self.names()}."
                ) from None
        if isinstance(key, slice):
            return [v for _, v in self._elements[key]]
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool):
            raise TypeError(
                f"Struct elements are read by position (an int), name (a str) or slice, got {key!r}."
            )
        try:
            return self._elements[key][1]
        except IndexError:
            raise IndexError(
                f"Index {key} out of range for a Struct of {len(self._elements)} elements."
            ) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._elements[self._names[name]][1]
        except KeyError:
            raise AttributeError(
                f"Struct has no element named {name!r}; its names are {self.names()}."
            ) from None

    def __dir__(self) -> Iterable[str]:
        return list(super().__dir__()) + list(self._names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Struct) or self.names() != other.names():
            return False
        return all(_values_equal(a, b) for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        raise TypeError("Struct is not hashable: it may hold arrays.")

    def __repr__(self) -> str:
        parts = [
            f"{name}={value!r}" if name is not None else repr(value)
            for name, value in self._elements
        ]
        return "Struct<" + ", ".join(parts) + ">"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Struct, (self._elements,))


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Struct) or isinstance(b, Struct):
        return a == b
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        return bool(np.array_equal(a, b))
    return bool(a == b)
