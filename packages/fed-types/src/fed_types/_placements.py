"""Placements: where a federated value lives."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Placement:
    """A placement literal such as `CLIENTS` or `SERVER`.

    `uri` is the stable identifier used in serialized types; `name` is what the compact notation
    prints.
    """

    uri: str
    name: str
    description: str = dataclasses.field(compare=False, default="")

    def __post_init__(self) -> None:
        for field in ("uri", "name", "description"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise TypeError(
                    f"Expected the {field} of a placement to be a str, got {value!r} of Python "
                    f"type {type(value).__qualname__}."
                )

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


CLIENTS = Placement(
    "clients",
    "CLIENTS",
    "The collective of all client devices: a value placed here has one member per client.",
)
"""The collective of all client devices: a value placed here has one member per client."""
SERVER = Placement(
    "server",
    "SERVER",
    "The single coordinating server: a value placed here has one member.",
)
"""The single coordinating server: a value placed here has one member."""

_BY_URI = {p.uri: p for p in (CLIENTS, SERVER)}
_BY_NAME = {p.name: p for p in (CLIENTS, SERVER)}


def placement_from_uri(uri: str) -> Placement:
    """Returns the placement literal with this `uri` (`'clients'` or `'server'`)."""
    if not isinstance(uri, str):
        raise TypeError(f"Expected a placement URI ('clients' or 'server') as a str, got {uri!r}.")
    try:
        return _BY_URI[uri]
    except KeyError:
        raise ValueError(f"Unknown placement {uri!r}: expected one of {sorted(_BY_URI)}.") from None


def placement_from_name(name: str) -> Placement:
    """Returns the placement literal printed as `name` (`'CLIENTS'` or `'SERVER'`)."""
    if not isinstance(name, str):
        raise TypeError(
            f"Expected a placement name ('CLIENTS' or 'SERVER') as a str, got {name!r}."
        )
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"Unknown placement {name!r}: expected one of {sorted(_BY_NAME)}."
        ) from None
