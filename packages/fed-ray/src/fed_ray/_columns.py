"""Client values on the driver, held by column: what each client holds, without moving it.

A `ColumnClientValues` is a value at CLIENTS whose structure (a `Struct` tree, or one column) has
columns as leaves: `Shared` (one value every client holds, such as a broadcast model), `Local` (one
value per client, held by the driver, such as the clients' datasets) or `Remote` (one value per client,
held by the workers that computed it). Zipping and broadcasting build these without touching the
values; a `federated_map` ships each worker only its clients' share; an aggregation of `Remote` columns
runs where they live. Anything else asks for `members()`, which assembles the values on the driver.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from fed_core.execution.values import ClientValues, map_structure
from fed_types import Struct

_ids = itertools.count()


class Shared:
    """One value that every client holds."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


class Local:
    """One value per client, held by the driver; `packed` is their shippable form, made once."""

    __slots__ = ("members", "packed")

    def __init__(self, members: list[Any]):
        self.members = members
        self.packed: list[Any] | None = None


class RemoteValue:
    """One value per client, stored on the workers: client `k`'s member is on slot `layout[k]`.

    `lineage` is how it was computed (a function and the structure of its operand), so that the members
    of a worker that died can be computed again; `epochs[slot]` is the incarnation of the slot's worker
    that holds them.
    """

    __slots__ = ("id", "layout", "lineage", "epochs", "__weakref__")

    def __init__(self, layout: list[int], lineage: Any, epochs: dict[int, int]):
        self.id = f"v{next(_ids)}"
        self.layout = layout
        self.lineage = lineage
        self.epochs = epochs

    def clients_of(self, slot: int) -> list[int]:
        return [k for k, s in enumerate(self.layout) if s == slot]

    def slots(self) -> list[int]:
        return sorted(set(self.layout))


class Remote:
    """A column whose members are a `RemoteValue`'s."""

    __slots__ = ("value",)

    def __init__(self, value: RemoteValue):
        self.value = value


Column = Shared | Local | Remote


class Source(Protocol):
    """Where a `ColumnClientValues` gets its members from when the driver needs them."""

    def fetch(self, value: RemoteValue) -> list[Any]:
        """The members of a value stored on the workers, in client order."""

    def local(self, members: list[Any]) -> list[Any]:
        """The members of a `Local` column as values (data the workers would materialize, made here)."""


class ColumnClientValues(ClientValues):
    """A value at CLIENTS held by column (see the module's docstring); `members()` assembles it on the
    driver from `source`."""

    __slots__ = ("structure", "_source")

    def __init__(self, structure: Any, size: int, source: Source) -> None:
        self.structure = structure
        self._source = source
        self._size = size
        self._members = None
        self._stacked = None

    @property
    def is_stacked(self) -> bool:
        # No per-member list is held until one is asked for; the columns hold no building blocks.
        return self._members is None

    def members(self) -> list[Any]:
        if self._members is None:
            self._members = assemble(self.structure, self._size, self._source)
        return self._members

    def stacked(self) -> Any:
        if self._stacked is None:
            self._stacked = ClientValues(self.members()).stacked()
        return self._stacked

    def __repr__(self) -> str:
        return f"ColumnClientValues({self._size} clients)"


def structure_of(clients: ClientValues) -> Any:
    """The columns of a client value: its own if held by column; one `Shared` column if every member is
    the same object (a broadcast); else one `Local` column."""
    if isinstance(clients, ColumnClientValues):
        return clients.structure
    members = clients.members()
    if members and all(m is members[0] for m in members):
        return Shared(members[0])
    return Local(members)


def columns(structure: Any) -> list[Column]:
    """The columns of a structure, in order."""
    if isinstance(structure, Struct):
        found: list[Column] = []
        for element in structure:
            found.extend(columns(element))
        return found
    return [structure]


def assemble(structure: Any, size: int, source: Source) -> list[Any]:
    """The members of a structure of columns, assembled on the driver."""

    def expand(column: Column) -> list[Any]:
        if isinstance(column, Shared):
            return [column.value] * size
        if isinstance(column, Local):
            return source.local(column.members)
        return source.fetch(column.value)

    expanded = map_structure(expand, structure)
    return [row(expanded, k) for k in range(size)]


def row(expanded: Any, k: int) -> Any:
    """Client `k`'s member of a structure whose leaves are lists with one entry per client."""
    if isinstance(expanded, Struct):
        return Struct((name, row(e, k)) for name, e in expanded.items())
    return expanded[k]
