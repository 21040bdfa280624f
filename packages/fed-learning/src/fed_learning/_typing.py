"""Typed access to the parts of fed types whose shape a computation's construction guarantees."""

from __future__ import annotations

from fed_types import FederatedType, StructType, Type


def element(t: Type | None, key: int | str) -> Type:
    """The element `key` (a position or a name) of the struct type `t`."""
    if not isinstance(t, StructType):
        raise TypeError(f"expected a struct type with an element {key!r}, got {t}")
    return t[key]


def member(t: Type | None) -> Type:
    """The member type of the federated type `t`."""
    if not isinstance(t, FederatedType):
        raise TypeError(f"expected a federated type, got {t}")
    return t.member
