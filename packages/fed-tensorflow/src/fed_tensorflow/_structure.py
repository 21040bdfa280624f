"""The leaves of TensorFlow computations' parameters and results: tensors and sequences, in order.

A graph takes and returns one tensor per leaf (a sequence travels as a dataset variant tensor), so
values are flattened along their fed type on the way in and packed back on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from fed_types import SequenceType, Struct, StructType, TensorType, Type, from_python_container

Leaf = TensorType | SequenceType


def leaf_types(t: Type | None) -> list[Leaf]:
    """The tensor and sequence types of `t` in order (none for None); TypeError for other kinds."""
    if t is None:
        return []
    if isinstance(t, (TensorType, SequenceType)):
        return [t]
    if isinstance(t, StructType):
        return [leaf for element in t for leaf in leaf_types(element)]
    raise TypeError(f"expected tensors, sequences and structs of them, given {t}")


def flatten(value: Any, t: Type | None) -> list[Any]:
    """The leaves of `value` (a `Struct` or Python container for a struct type) along `t`."""
    if t is None:
        return []
    if isinstance(t, StructType):
        pairs = zip(_as_struct(value, t), t, strict=True)
        return [leaf for element, element_type in pairs for leaf in flatten(element, element_type)]
    return [value]


def _as_struct(value: Any, t: StructType) -> Struct:
    """`value` (a `Struct` or Python container) as a `Struct` of `t`'s length; ValueError if not."""
    struct = value if isinstance(value, Struct) else from_python_container(value)
    if len(struct) != len(t):
        raise ValueError(f"Expected a value of type {t}, got one of {len(struct)} elements.")
    return struct


def flatten_columns(values: list[Any], t: Type | None) -> list[list[Any]]:
    """The leaves of many values of type `t` (clients' arguments), as one column per leaf: what
    `flatten` gives for each value, transposed. A part that all the values share (a broadcast model:
    the same object in every client's argument) is flattened once."""
    if t is None:
        return []
    if not values:
        return [[] for _ in leaf_types(t)]
    if isinstance(t, StructType):
        first = values[0]
        if all(value is first for value in values):
            return [[leaf] * len(values) for leaf in flatten(first, t)]
        structs = [_as_struct(value, t) for value in values]
        columns: list[list[Any]] = []
        for position, element_type in enumerate(t):
            columns.extend(flatten_columns([s[position] for s in structs], element_type))
        return columns
    return [list(values)]


@tf.autograph.experimental.do_not_convert
def pack(t: Type, leaves: Iterator[Any]) -> Any:
    """The value of type `t` made of `leaves` in order: a `Struct` for each struct type."""
    if isinstance(t, StructType):
        return Struct((name, pack(element, leaves)) for name, element in t.items())
    return next(leaves)
