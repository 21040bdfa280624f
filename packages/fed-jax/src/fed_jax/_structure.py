"""Between fed's types and JAX's pytrees: the leaves of a value in the order of its fed type, values
packed into the Python containers a JAX function receives, and the fed type of what it returns."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any, cast

import jax
import numpy as np

from fed_types import SequenceType, Struct, StructType, TensorType, Type, container_items


class UnsupportedTypeError(TypeError):
    """A fed type that JAX computations cannot take or return."""


_WIDE = frozenset(np.dtype(d) for d in ("float64", "int64", "uint64", "complex128"))
"""The dtypes JAX computes in only with jax_enable_x64 on."""


def _check_container(container: type | None, what: Any) -> None:
    if container is None or container is Struct:
        return
    if issubclass(container, (dict, list, tuple)):
        return
    raise UnsupportedTypeError(
        f"{what} has the container {container.__name__}, which JAX cannot hold in a pytree; use a "
        f"dict, a list, a tuple or a named tuple"
    )


def leaf_types(t: Type | None) -> list[TensorType]:
    """The tensor types of `t`'s leaves, in the order of its struct elements."""
    if t is None:
        return []
    if isinstance(t, TensorType):
        if t.dtype.kind in "SUO":
            raise UnsupportedTypeError(f"JAX has no string tensors, and {t} holds strings")
        if t.dtype in _WIDE and not jax.config.read("jax_enable_x64"):
            raise UnsupportedTypeError(
                f"{t} is 64-bit, which JAX computes in only with jax_enable_x64 on (it would silently "
                f"become 32-bit); use 32-bit types or jax.config.update('jax_enable_x64', True)"
            )
        return [t]
    if isinstance(t, StructType):
        _check_container(t.python_container, t)
        return [leaf for element in t for leaf in leaf_types(element)]
    if isinstance(t, SequenceType):
        raise UnsupportedTypeError(
            f"JAX has no datasets, so a JAX computation cannot take or return {t}; iterate over a "
            f"sequence in a federated computation (sequence_reduce, sequence_map) that calls it"
        )
    raise UnsupportedTypeError(f"a JAX computation cannot take or return {t}")


def flatten(value: Any, t: Type | None) -> list[Any]:
    """The leaves of `value` (a Python container, a fed Struct or a pytree) in the order of `t`."""
    if t is None:
        return []
    if isinstance(t, TensorType):
        return [value]
    assert isinstance(t, StructType)
    items = container_items(value)
    if items is None or len(items[0]) != len(t):
        raise TypeError(f"expected a value of type {t}, got {value!r}")
    pairs = items[0]
    by_name = {name: element for name, element in pairs if name is not None}
    leaves: list[Any] = []
    for k, (name, element_type) in enumerate(t.items()):
        # Named elements are matched by name: JAX orders a dict's keys, a Python dict keeps insertion order.
        element = by_name[name] if name is not None and name in by_name else pairs[k][1]
        leaves.extend(flatten(element, element_type))
    return leaves


def pack(leaves: Sequence[Any], t: Type | None) -> Any:
    """`leaves` (in the order of `t`) in the containers a JAX function receives: each struct in its
    declared Python container, else an OrderedDict if its elements are named, else a tuple."""
    return _pack(iter(leaves), t)


def _pack(leaves: Any, t: Type | None) -> Any:
    if isinstance(t, TensorType):
        return next(leaves)
    assert isinstance(t, StructType)
    names = t.names()
    elements = [_pack(leaves, element) for element in t]
    container = t.python_container
    if container is not None and container is not Struct:
        if issubclass(container, tuple) and hasattr(container, "_fields"):
            return container(*elements)
        if issubclass(container, dict):
            return container(zip(names, elements))
        if issubclass(container, (list, tuple)):
            return container(elements)
        return container(**dict(zip(cast(list[str], names), elements)))
    if all(name is not None for name in names) and names:
        return collections.OrderedDict(zip(names, elements))
    if any(name is not None for name in names):
        raise UnsupportedTypeError(
            f"a JAX computation cannot take {t}: its elements are partly named, and JAX has no such "
            f"container; name all of them or none"
        )
    return tuple(elements)


def pack_struct(leaves: Sequence[Any], t: Type | None) -> Any:
    """`leaves` as fed's executor form: tensors as they are, structs as `fed_types.Struct`."""
    return _pack_struct(iter(leaves), t)


def _pack_struct(leaves: Any, t: Type | None) -> Any:
    if isinstance(t, TensorType):
        return next(leaves)
    assert isinstance(t, StructType)
    return Struct((name, _pack_struct(leaves, element)) for name, element in t.items())


def result_leaves(value: Any) -> tuple[list[Any], Type]:
    """The leaves of what a JAX function returns while traced, in the order of its containers (a dict's
    insertion order), and its fed type."""
    if isinstance(value, (jax.Array, np.ndarray, np.generic, int, float, bool, complex)) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "aval")
    ):
        array = value if hasattr(value, "aval") else jax.numpy.asarray(value)
        shape = tuple(d if isinstance(d, int) else None for d in array.shape)
        return [array], TensorType(np.dtype(array.dtype), shape)
    items = container_items(value)
    if items is None:
        raise UnsupportedTypeError(
            f"a JAX computation must return arrays or containers of them (dicts, lists, tuples, named "
            f"tuples), got {value!r}"
        )
    pairs, container = items
    container_type = None if container is type(None) else container
    _check_container(container_type, value)
    leaves: list[Any] = []
    elements = []
    for name, element in pairs:
        element_leaves, element_type = result_leaves(element)
        leaves += element_leaves
        elements.append((name, element_type))
    return leaves, StructType(elements, container_type)
