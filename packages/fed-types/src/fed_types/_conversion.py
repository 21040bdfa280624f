"""Conversions between Python values and fed: type inference, and values to and from Python
containers (`to_type`, for type specs, lives with the types it builds).

Struct types remember the Python container they came from (a `dict`, a namedtuple, a dataclass ...),
so that values leave fed in the shape they entered it. Dicts keep their insertion order.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fed_types._containers import Elements, is_attrs_class, is_namedtuple_class, struct_elements
from fed_types._struct import Struct
from fed_types._types import (
    FederatedType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    describe,
    is_dtype_like,
    is_name_value_pair,
    to_dtype,
    to_shape,
    to_type,
)

_INT32 = np.iinfo(np.int32)
_INT64 = np.iinfo(np.int64)


def _infer_int_type(value: int) -> TensorType:
    if _INT32.min <= value <= _INT32.max:
        return TensorType(np.int32)
    if _INT64.min <= value <= _INT64.max:
        return TensorType(np.int64)
    raise TypeError(f"The int {value} does not fit in int64: fed has no integer type for it.")


def _is_value_pair(item: Any) -> bool:
    return is_name_value_pair(item, exclude_dtype_names=False)


def infer_type(value: Any) -> Type:
    """The fed type of a Python value.

    - numpy arrays and scalars: their dtype and shape; tensors of other frameworks (anything with a
      TF-like `dtype` and a `shape`) likewise; a dataset (anything with an `element_spec`) is a
      sequence;
    - Python scalars: `bool`; `int` as `int32`, or `int64` if it does not fit; `float` as `float32`;
      `str` and `bytes` as `str`;
    - lists, tuples, dicts, OrderedDicts, namedtuples, attrs and dataclass instances, nested: a
      struct type that keeps the container. A non-empty list or tuple whose elements are all `(name,
      value)` pairs is a struct with names and no container;
    - a `Struct`: a struct type without container, with its names;
    - an object with a `type_signature` that is a `Type` (a fed value or computation): that type.
    """
    # A Struct reads attributes as its elements: one named `type_signature` is not a signature.
    signature = None if isinstance(value, Struct) else getattr(value, "type_signature", None)
    if isinstance(signature, Type):
        return signature
    if isinstance(value, Type):
        raise TypeError(f"Expected a value, got the type {value}: to_type converts type specs.")
    if value is None:
        raise TypeError("Cannot infer the fed type of None: it has no value to type.")
    # numpy first: np.float64 and np.str_ are also Python floats and strs.
    if isinstance(value, (np.ndarray, np.generic)):
        try:
            return TensorType(value.dtype, value.shape)
        except TypeError as error:
            raise TypeError(f"Cannot infer the fed type of {describe(value)}: {error}") from None
    if isinstance(value, bool):
        return TensorType(np.bool_)
    if isinstance(value, int):
        return _infer_int_type(value)
    if isinstance(value, float):
        return TensorType(np.float32)
    if isinstance(value, (str, bytes)):
        return TensorType(np.str_)
    parts = struct_elements(value, _is_value_pair, pairs_if=all)
    if parts is not None:
        elements, container = parts
        return StructType([(name, infer_type(element)) for name, element in elements], container)
    dtype = getattr(value, "dtype", None)
    if hasattr(value, "shape") and is_dtype_like(dtype) and not isinstance(dtype, str):
        return TensorType(to_dtype(dtype), to_shape(value.shape))
    if hasattr(value, "element_spec"):
        return SequenceType(to_type(value.element_spec))
    raise TypeError(
        f"Cannot infer the fed type of {describe(value)}: expected an array, a Python scalar, "
        "or a container (list, tuple, dict, namedtuple, attrs or dataclass instance, Struct) of "
        "them."
    )


def from_python_container(value: Any) -> Struct:
    """Converts nested Python containers to nested `Struct`s, leaving the leaves alone.

    Containers are those of `container_items`: lists and tuples (unnamed elements), dicts and
    OrderedDicts (in their order), namedtuples, attrs and dataclass instances (named elements), and
    `Struct`s, whose elements are converted in turn. As in `infer_type`, a non-empty list or tuple
    whose elements are all `(name, value)` pairs is a struct with those names, and a mapping's keys
    must be strings. Raises TypeError if `value` itself is not a container.
    """
    converted = _to_structs(value)
    if not isinstance(converted, Struct):
        raise TypeError(f"Expected a Python container, got {describe(value)}.")
    return converted


def _to_structs(value: Any) -> Any:
    parts = struct_elements(value, _is_value_pair, pairs_if=all)
    if parts is None:
        return value
    elements, _ = parts
    return Struct((name, _to_structs(element)) for name, element in elements)


def to_python_container(value: Any, type_spec: Any) -> Any:
    """Converts the `Struct`s in `value` to the Python containers that `type_spec` declares,
    recursively.

    Leaves, and values that are already Python containers, are left alone. A struct type without a
    container becomes a `collections.OrderedDict` if all its elements are named, a `tuple` if none
    are (the empty struct included), and stays a `Struct` if only some are, as no Python container
    holds both. A federated value at CLIENTS that is not all-equal is a list with one member per
    client, and a sequence may be a list; their members are converted one by one.

    Raises ValueError if a value's names differ from the type's or if the type's names do not fit
    its container (a `list` with named elements, a dict with unnamed ones).
    """
    return _to_container(value, to_type(type_spec))


type_to_py_container = to_python_container
"""TFF's name of `to_python_container`."""


def _to_container(value: Any, type_spec: Type) -> Any:
    if isinstance(type_spec, FederatedType):
        if type_spec.all_equal:
            return _to_container(value, type_spec.member)
        if not isinstance(value, list):
            raise TypeError(
                f"Expected a list with one member per client for a value of type {type_spec}, "
                f"got {describe(value)}."
            )
        return [_to_container(member, type_spec.member) for member in value]
    if isinstance(type_spec, SequenceType):
        if isinstance(value, list):
            return [_to_container(element, type_spec.element) for element in value]
        return value
    if not isinstance(type_spec, StructType) or not isinstance(value, Struct):
        return value
    if len(value) != len(type_spec):
        raise ValueError(
            f"A struct of {len(value)} elements does not fit type {type_spec} of "
            f"{len(type_spec)} elements."
        )
    for index, (value_name, type_name) in enumerate(
        zip(value.names(), type_spec.names(), strict=True)
    ):
        if value_name is not None and value_name != type_name:
            raise ValueError(
                f"Element {index} of the value is named {value_name!r} but type {type_spec} "
                f"names it {type_name!r}."
            )
    items = [
        (name, _to_container(element, element_type))
        for (name, element_type), element in zip(type_spec.items(), value, strict=True)
    ]
    return _build(type_spec, items)


def _build(type_spec: StructType, items: Elements) -> Any:
    """Builds the Python container of `type_spec` from its converted elements."""
    named = [name is not None for name, _ in items]
    container = type_spec.python_container
    if container is None:
        if all(named) and items:
            return collections.OrderedDict(items)
        if not any(named):
            return tuple(element for _, element in items)
        return Struct(items)
    if container is Struct:
        return Struct(items)
    if issubclass(container, (list, tuple)) and not is_namedtuple_class(container):
        if any(named):
            raise ValueError(
                f"Cannot build a {container.__qualname__} for type {type_spec}: it has named "
                f"elements, and a {container.__qualname__} has no names."
            )
        return container(element for _, element in items)
    if not all(named):
        raise ValueError(
            f"Cannot build a {container.__qualname__} for type {type_spec}: every element needs "
            "a name."
        )
    build: Callable[..., Any] = container
    try:
        if issubclass(container, Mapping):
            return build(items)
        return build(**constructor_arguments(container, items))
    except TypeError as error:
        raise TypeError(
            f"Cannot build a {container.__qualname__} for type {type_spec}: {error}"
        ) from None


def constructor_arguments(container: type, items: Elements) -> dict[str, Any]:
    """The keyword arguments that build `container` (a dataclass, attrs or other class) from its
    named elements `items`."""
    if is_attrs_class(container):
        # attrs strips leading underscores from private attributes' constructor arguments.
        aliases = {
            f.name: getattr(f, "alias", None) or f.name.lstrip("_")
            for f in container.__attrs_attrs__  # type: ignore[attr-defined]
        }
        return {aliases.get(name, name): element for name, element in items}  # type: ignore[misc]
    return dict(items)  # type: ignore[arg-type]
