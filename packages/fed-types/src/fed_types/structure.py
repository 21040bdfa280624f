"""TFF's `tff.structure`: functions on `Struct`s and on nests of Python containers.

A nest is a `Struct` or a Python container (list, tuple, dict, OrderedDict, namedtuple, attrs or
dataclass instance) whose elements are nests or leaves; anything else is a leaf. As in `tf.nest`,
`flatten` and `pack_sequence_as` take the values of a mapping in the order of its sorted keys; the
elements of a `Struct` and of every other container are taken in their order.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from fed_types._containers import Elements, container_items, is_namedtuple_class
from fed_types._conversion import constructor_arguments
from fed_types._struct import Struct
from fed_types._types import describe

__all__ = [
    "Struct",
    "flatten",
    "from_container",
    "has_field",
    "is_same_structure",
    "iter_elements",
    "map_structure",
    "name_list",
    "name_list_with_nones",
    "name_to_index_map",
    "pack_sequence_as",
    "to_container_recursive",
    "to_elements",
    "to_odict",
    "to_odict_or_tuple",
    "update_struct",
]


def _check_struct(value: Any, function: str) -> Struct:
    if not isinstance(value, Struct):
        raise TypeError(f"{function} expects a Struct, got {describe(value)}.")
    return value


def name_list(struct: Struct) -> list[str]:
    """The names of the named elements of `struct`, in order (unnamed ones are skipped)."""
    return [name for name in _check_struct(struct, "name_list").names() if name is not None]


def name_list_with_nones(struct: Struct) -> list[str | None]:
    """The names of all elements of `struct`, in order, None for the unnamed ones."""
    return list(_check_struct(struct, "name_list_with_nones").names())


def to_elements(struct: Struct) -> list[tuple[str | None, Any]]:
    """The `(name or None, value)` pairs of `struct`, in order: what `Struct(...)` takes."""
    return list(_check_struct(struct, "to_elements").items())


def iter_elements(struct: Struct) -> Iterator[tuple[str | None, Any]]:
    """An iterator over the `(name or None, value)` pairs of `struct`."""
    return iter(_check_struct(struct, "iter_elements").items())


def has_field(structure: Struct, field: str) -> bool:
    """True if `structure` has an element named `field`."""
    return field in _check_struct(structure, "has_field").names()


def name_to_index_map(structure: Struct) -> dict[str, int]:
    """The position of each named element of `structure`, by name."""
    names = _check_struct(structure, "name_to_index_map").names()
    return {name: index for index, name in enumerate(names) if name is not None}


def to_container_recursive(value: Struct, container_fn: Callable[[Elements], Any]) -> Any:
    """`value` with each `Struct` in it, nested ones first, replaced by `container_fn(elements)`,
    where `elements` are its `(name or None, value)` pairs. Only `Struct`s are followed: a `Struct`
    inside a dict stays as it is."""
    elements = _check_struct(value, "to_container_recursive").items()
    return container_fn(
        [
            (name, to_container_recursive(v, container_fn) if isinstance(v, Struct) else v)
            for name, v in elements
        ]
    )


def _odict(elements: Elements) -> collections.OrderedDict[str, Any]:
    unnamed = [index for index, (name, _) in enumerate(elements) if name is None]
    if unnamed:
        raise ValueError(
            f"Cannot convert a Struct with unnamed elements (at positions {unnamed}) to an "
            f"OrderedDict: {Struct(elements)!r}."
        )
    return collections.OrderedDict(elements)  # type: ignore[arg-type]


def _odict_or_tuple(elements: Elements) -> collections.OrderedDict[str, Any] | tuple[Any, ...]:
    named = [name is not None for name, _ in elements]
    if not any(named):
        return tuple(value for _, value in elements)
    if not all(named):
        raise ValueError(
            "Cannot convert a Struct that mixes named and unnamed elements to an OrderedDict "
            f"or a tuple: {Struct(elements)!r}."
        )
    return collections.OrderedDict(elements)  # type: ignore[arg-type]


def to_odict(struct: Struct, recursive: bool = False) -> collections.OrderedDict[str, Any]:
    """`struct` as an OrderedDict (and, with `recursive`, every `Struct` nested in it too).

    Raises ValueError if an element (of a converted `Struct`) has no name.
    """
    _check_struct(struct, "to_odict")
    if recursive:
        return to_container_recursive(struct, _odict)
    return _odict(list(struct.items()))


def to_odict_or_tuple(
    struct: Struct, recursive: bool = True
) -> collections.OrderedDict[str, Any] | tuple[Any, ...]:
    """`struct` as an OrderedDict if all its elements are named, as a tuple if none are (and, with
    `recursive`, likewise every `Struct` nested in it).

    Raises ValueError for a `Struct` that mixes named and unnamed elements.
    """
    _check_struct(struct, "to_odict_or_tuple")
    if recursive:
        return to_container_recursive(struct, _odict_or_tuple)
    return _odict_or_tuple(list(struct.items()))


def from_container(value: Any, recursive: bool = False) -> Struct:
    """The `Struct` of a Python container's elements: a list's or tuple's unnamed, a mapping's,
    namedtuple's, attrs or dataclass instance's named, a `Struct`'s as they are.

    Only the top level is converted unless `recursive`, which converts the containers nested in it
    too. Raises TypeError if `value` is not a container, or if a mapping has keys that are not str.
    """
    converted = _from_container(value, recursive)
    if not isinstance(converted, Struct):
        raise TypeError(
            f"from_container expects a Python container (list, tuple, dict, namedtuple, attrs or "
            f"dataclass instance) or a Struct, got {describe(value)}."
        )
    return converted


def _from_container(value: Any, recursive: bool) -> Any:
    if isinstance(value, Mapping):
        # Keys become element names as they are: Struct refuses the ones that are not str.
        elements: Elements = list(value.items())
    else:
        items = container_items(value)
        if items is None:
            return value
        elements = items[0]
    if isinstance(value, Struct) and not recursive:
        return value
    if recursive:
        elements = [(name, _from_container(v, True)) for name, v in elements]
    return Struct(elements)


def update_struct(structure: Any, **kwargs: Any) -> Any:
    """A copy of `structure` with the elements named in `kwargs` replaced by their values.

    `structure` is a `Struct`, a mapping, a namedtuple, or an attrs or dataclass instance; the copy
    is of the same type. Only the top level is updated (a nested structure is replaced whole).
    Raises KeyError if `structure` has no element of one of the names, TypeError if it is not a
    structure with named elements.
    """
    plain_sequence = isinstance(structure, (list, tuple)) and not is_namedtuple_class(
        type(structure)
    )
    items = None if plain_sequence else container_items(structure)
    if items is None:
        raise TypeError(
            "update_struct expects a structure with named elements (a Struct, dict, namedtuple, "
            f"attrs or dataclass instance), got {describe(structure)}."
        )
    elements = items[0] if not isinstance(structure, Mapping) else list(structure.items())
    names = [name for name, _ in elements]
    unknown = [key for key in kwargs if key not in names]
    if unknown:
        raise KeyError(
            f"The structure has no element named {', '.join(map(repr, unknown))}; its names are "
            f"{[name for name in names if name is not None]}."
        )
    if isinstance(structure, Mapping):
        updated = dict(structure)
        updated.update(kwargs)
        return type(structure)(updated)  # type: ignore[call-arg]
    return _rebuild(
        structure,
        [(name, kwargs[name] if name in kwargs else value) for name, value in elements],
    )


# ---- nests


def _nest_items(value: Any) -> Elements | None:
    """The `(name, element)` pairs of a nest's top level in flattening order, or None for a
    leaf."""
    if isinstance(value, Mapping):
        return sorted(((key, v) for key, v in value.items()), key=lambda item: item[0])
    items = container_items(value)
    return None if items is None else items[0]


def _rebuild(template: Any, elements: Elements) -> Any:
    """A container like `template` holding `elements` (pairs in `_nest_items` order)."""
    if isinstance(template, Struct):
        return Struct(elements)
    cls = type(template)
    if isinstance(template, Mapping):
        by_key = dict(elements)
        return cls((key, by_key[key]) for key in template)
    values = [value for _, value in elements]
    if isinstance(template, tuple) and is_namedtuple_class(cls):
        return cls(*values)
    if isinstance(template, (list, tuple)):
        return cls(values)
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        return dataclasses.replace(template, **{str(name): value for name, value in elements})
    return cls(**constructor_arguments(cls, elements))


def flatten(struct: Any) -> list[Any]:
    """The leaves of a nest, in order (mappings by sorted key, as `tf.nest` does); a leaf is a list
    of itself."""
    items = _nest_items(struct)
    if items is None:
        return [struct]
    return [leaf for _, value in items for leaf in flatten(value)]


def pack_sequence_as(structure: Any, flat_sequence: list[Any]) -> Any:
    """A nest shaped as `structure` whose leaves are those of `flat_sequence`, in `flatten`'s order.

    Raises ValueError if `flat_sequence` has more or fewer leaves than `structure`.
    """
    if not isinstance(flat_sequence, Iterable) or isinstance(flat_sequence, (str, bytes)):
        raise TypeError(
            f"pack_sequence_as expects the flat sequence of leaves as a list, got "
            f"{describe(flat_sequence)}."
        )
    flat = list(flat_sequence)
    leaves = iter(flat)
    count = len(flatten(structure))
    if len(flat) != count:
        raise ValueError(
            f"The structure has {count} leaves but the flat sequence holds {len(flat)} values."
        )
    return _pack(structure, leaves)


def _pack(structure: Any, leaves: Iterator[Any]) -> Any:
    items = _nest_items(structure)
    if items is None:
        return next(leaves)
    return _rebuild(structure, [(name, _pack(value, leaves)) for name, value in items])


def _difference(a: Any, b: Any, path: str) -> str | None:
    """Where and how the nests `a` and `b` differ in structure, or None if they do not."""
    a_items, b_items = _nest_items(a), _nest_items(b)
    where = path or "the top"
    if a_items is None and b_items is None:
        return None
    if a_items is None or b_items is None or type(a) is not type(b):
        return f"at {where}: {describe(a)} and {describe(b)}"
    a_names = [name for name, _ in a_items]
    b_names = [name for name, _ in b_items]
    if a_names != b_names:
        return f"at {where}: elements {a_names} and {b_names}"
    for index, ((name, x), (_, y)) in enumerate(zip(a_items, b_items, strict=True)):
        step = f"{path}.{name}" if name is not None else f"{path}[{index}]"
        difference = _difference(x, y, step)
        if difference is not None:
            return difference
    return None


def is_same_structure(a: Any, b: Any) -> bool:
    """True if the nests `a` and `b` have the same structure: containers of the same types with the
    same element names, down to the leaves (which may differ)."""
    return _difference(a, b, "") is None


def map_structure(fn: Callable[..., Any], *structures: Any) -> Any:
    """A nest shaped as the first of `structures` whose leaves are `fn` of the leaves at the same
    place in each of them.

    Raises ValueError if no structure is given, TypeError if they differ in structure.
    """
    if not callable(fn):
        raise TypeError(f"map_structure expects a function first, got {describe(fn)}.")
    if not structures:
        raise ValueError("map_structure needs at least one structure.")
    first = structures[0]
    for position, other in enumerate(structures[1:], start=1):
        difference = _difference(first, other, "")
        if difference is not None:
            raise TypeError(
                f"map_structure: structure {position} differs from structure 0 {difference}."
            )
    flat = [flatten(s) for s in structures]
    return pack_sequence_as(first, [fn(*leaves) for leaves in zip(*flat, strict=True)])
