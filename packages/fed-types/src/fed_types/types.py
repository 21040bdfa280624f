"""TFF-shaped helpers on types: `fed.types`.

The type classes and constructors, `to_type`, serialization, conversion of values to the Python
containers a type declares, and predicates over the structure of a type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from fed_types._conversion import infer_type, type_to_py_container
from fed_types._placements import (
    CLIENTS,
    SERVER,
    Placement,
    placement_from_name,
    placement_from_uri,
)
from fed_types._serialization import deserialize_type, serialize_type
from fed_types._types import (
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    StructWithPythonType,
    TensorType,
    Type,
    at_clients,
    at_server,
    to_type,
)

__all__ = [
    "CLIENTS",
    "SERVER",
    "AbstractType",
    "FederatedType",
    "FunctionType",
    "Placement",
    "PlacementType",
    "SequenceType",
    "StructType",
    "StructWithPythonType",
    "TensorType",
    "Type",
    "at_clients",
    "at_server",
    "contains",
    "contains_only",
    "count",
    "deserialize_type",
    "infer_type",
    "is_structure_of",
    "is_structure_of_floats",
    "is_structure_of_integers",
    "is_structure_of_tensors",
    "placement_from_name",
    "placement_from_uri",
    "preorder",
    "serialize_type",
    "to_type",
    "type_to_py_container",
]


def _check_type(type_spec: object, function: str) -> None:
    if not isinstance(type_spec, Type):
        raise TypeError(
            f"{function} expects a fed Type, got {type_spec!r} of Python type "
            f"{type(type_spec).__qualname__}; to_type converts type specs."
        )


def _check_predicate(predicate: object, function: str) -> None:
    if not callable(predicate):
        raise TypeError(f"{function} expects a predicate (a callable), got {predicate!r}.")


def preorder(type_spec: Type) -> Iterator[Type]:
    """`type_spec` and every type nested in it, parents before their children."""
    _check_type(type_spec, "preorder")
    return _preorder(type_spec)


def _preorder(type_spec: Type) -> Iterator[Type]:
    yield type_spec
    for child in type_spec.children():
        yield from _preorder(child)


def contains(type_spec: Type, predicate: Callable[[Type], bool]) -> bool:
    """True if `predicate` holds for `type_spec` or any type nested in it."""
    _check_type(type_spec, "contains")
    _check_predicate(predicate, "contains")
    return any(predicate(t) for t in preorder(type_spec))


def contains_only(type_spec: Type, predicate: Callable[[Type], bool]) -> bool:
    """True if `predicate` holds for `type_spec` and every type nested in it."""
    _check_type(type_spec, "contains_only")
    _check_predicate(predicate, "contains_only")
    return all(predicate(t) for t in preorder(type_spec))


def count(type_spec: Type, predicate: Callable[[Type], bool]) -> int:
    """How many of `type_spec` and the types nested in it satisfy `predicate`."""
    _check_type(type_spec, "count")
    _check_predicate(predicate, "count")
    return sum(1 for t in preorder(type_spec) if predicate(t))


def is_structure_of(type_spec: Type, predicate: Callable[[TensorType], bool]) -> bool:
    """True if `type_spec` is a tensor type, or a (nested) struct of tensor types, and `predicate`
    holds for every one of those tensor types. The empty struct qualifies."""
    _check_type(type_spec, "is_structure_of")
    _check_predicate(predicate, "is_structure_of")
    return _is_structure_of(type_spec, predicate)


def _is_structure_of(type_spec: Type, predicate: Callable[[TensorType], bool]) -> bool:
    if isinstance(type_spec, TensorType):
        return bool(predicate(type_spec))
    if isinstance(type_spec, StructType):
        return all(_is_structure_of(element, predicate) for element in type_spec)
    return False


def _unplaced(type_spec: Type) -> Type:
    """`type_spec` with every federated type in it replaced by its member."""
    if isinstance(type_spec, FederatedType):
        return _unplaced(type_spec.member)
    if isinstance(type_spec, StructType):
        elements = [(name, _unplaced(element)) for name, element in type_spec.items()]
        return StructType(elements, type_spec.python_container)
    return type_spec


def is_structure_of_floats(type_spec: Type) -> bool:
    """True if `type_spec` is a tensor of a floating dtype, or structs of them, possibly federated.

    The empty struct qualifies: it holds nothing else.
    """
    _check_type(type_spec, "is_structure_of_floats")
    return is_structure_of(
        _unplaced(type_spec), lambda t: bool(np.issubdtype(t.dtype, np.floating))
    )


def is_structure_of_integers(type_spec: Type) -> bool:
    """True if `type_spec` is a tensor of an integer dtype (signed or not), or structs of them,
    possibly federated. The empty struct qualifies."""
    _check_type(type_spec, "is_structure_of_integers")
    return is_structure_of(_unplaced(type_spec), lambda t: bool(np.issubdtype(t.dtype, np.integer)))


def is_structure_of_tensors(type_spec: Type) -> bool:
    """True if `type_spec` is a tensor, or structs of tensors (not federated). The empty struct
    qualifies."""
    _check_type(type_spec, "is_structure_of_tensors")
    return is_structure_of(type_spec, lambda t: True)
