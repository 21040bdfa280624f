"""Runtime values inside executors: client values (per-client or stacked) and structure helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fed_types import Struct, container_items


def map_structure(fn: Callable[..., Any], *values: Any) -> Any:
    """Applies `fn` to the leaves of one or more Structs of the same shape (a leaf is anything not a Struct)."""
    first = values[0]
    if isinstance(first, Struct):
        return Struct(
            (name, map_structure(fn, *(v[i] for v in values)))
            for i, (name, _) in enumerate(first.items())
        )
    return fn(*values)


def leaves(value: Any) -> list[Any]:
    """The leaves of a (nested) Struct, in order."""
    if isinstance(value, Struct):
        out: list[Any] = []
        for element in value:
            out.extend(leaves(element))
        return out
    return [value]


def to_executor_form(value: Any) -> Any:
    """Nested Python containers (as a native dataset yields them) become nested Structs; leaves stay."""
    items = container_items(value)
    if items is None:
        return value
    return Struct((name, to_executor_form(element)) for name, element in items[0])


class _NoArgument:
    def __repr__(self) -> str:
        return "NO_ARGUMENT"


NO_ARGUMENT = _NoArgument()
"""The argument of a call of a computation that takes none."""


class ClientValues:
    """The members of a value placed at CLIENTS, one per client, in client order.

    Held either as a list of members or in stacked form (the same structure as one member, each leaf an array
    with a leading client axis), and converted lazily between the two: a backend that runs all clients in one
    vectorized call returns the stacked form, and aggregations reduce it along the client axis without
    splitting it into members.
    """

    __slots__ = ("_members", "_stacked", "_size")

    def __init__(
        self, members: Sequence[Any] | None = None, *, stacked: Any = None, size: int | None = None
    ):
        if (members is None) == (stacked is None):
            raise ValueError("ClientValues takes exactly one of members or stacked.")
        self._members: list[Any] | None = None if members is None else list(members)
        self._stacked = stacked
        if self._members is not None:
            self._size = len(self._members)
        else:
            self._size = int(np.shape(leaves(stacked)[0])[0]) if size is None else size

    def __len__(self) -> int:
        return self._size

    @property
    def is_stacked(self) -> bool:
        """True if the values are held in stacked form (no per-member split has happened yet)."""
        return self._members is None

    def members(self) -> list[Any]:
        """The per-client members (split from the stacked form on first use)."""
        if self._members is None:
            # One conversion per leaf, then cheap numpy slices (slicing native tensors costs an op each).
            stacked = map_structure(np.asarray, self._stacked)
            self._members = [
                map_structure(lambda leaf, i=i: leaf[i], stacked) for i in range(self._size)
            ]
        return self._members

    def stacked(self) -> Any:
        """The values with a leading client axis on every leaf (stacked on first use); needs at least one client."""
        if self._stacked is None:
            if not self._members:
                raise ValueError("Cannot stack the values of zero clients.")
            self._stacked = map_structure(
                lambda *xs: np.stack([np.asarray(x) for x in xs]), *self._members
            )
        return self._stacked

    def __repr__(self) -> str:
        form = "stacked" if self.is_stacked else "members"
        return f"ClientValues({self._size} clients, {form})"
