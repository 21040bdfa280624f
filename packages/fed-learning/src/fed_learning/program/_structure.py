"""Nested program values (Python containers, named tuples, dataclasses, attrs classes, fed Structs) as
flat lists of leaves, and back into the containers of a template."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from fed_types import Struct, container_items


def flatten(value: Any) -> list[Any]:
    """The leaves of `value`, depth first, in its containers' order."""
    items = container_items(value)
    if items is None:
        return [value]
    return [leaf for _, element in items[0] for leaf in flatten(element)]


def shape_of(value: Any) -> str:
    """A description of `value`'s nesting (container kinds and names, not leaves), to tell structures
    apart."""
    items = container_items(value)
    if items is None:
        return "*"
    pairs, container = items
    inner = ",".join(f"{name}={shape_of(v)}" if name else shape_of(v) for name, v in pairs)
    label = "Struct" if container is type(None) else getattr(container, "__name__", "container")
    return f"{label}({inner})"


def flatten_with_paths(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """`(name, leaf)` pairs, names joined with '/' from the containers' names (or positions)."""
    items = container_items(value)
    if items is None:
        return [(prefix, value)]
    out: list[tuple[str, Any]] = []
    for index, (name, element) in enumerate(items[0]):
        part = name if name is not None else str(index)
        out.extend(flatten_with_paths(element, f"{prefix}/{part}" if prefix else part))
    return out


def pack_like(template: Any, leaves: list[Any]) -> Any:
    """`leaves` in the containers of `template`, each leaf converted to the kind of the template's."""
    iterator = iter(leaves)
    packed = _pack(template, iterator)
    if next(iterator, None) is not None:
        raise ValueError("more leaves than the template has")
    return packed


def _pack(template: Any, leaves: Any) -> Any:
    items = container_items(template)
    if items is None:
        try:
            leaf = next(leaves)
        except StopIteration:
            raise ValueError("fewer leaves than the template has") from None
        return _like(template, leaf)
    pairs, container = items
    elements = [_pack(element, leaves) for _, element in pairs]
    names = [name for name, _ in pairs]
    if isinstance(template, Struct):
        return Struct(zip(names, elements))
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(*elements)
    if isinstance(template, collections.defaultdict):
        return collections.defaultdict(template.default_factory, zip(template, elements))
    if isinstance(template, Mapping):
        return type(template)(zip((k for k in template), elements))  # type: ignore[call-arg]
    if isinstance(template, (list, tuple)):
        return type(template)(elements)
    values = dict(zip(names, elements))
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        fields = dataclasses.fields(template)
        rebuilt = dataclasses.replace(
            template, **{f.name: values[f.name] for f in fields if f.init}
        )
        for f in fields:
            if not f.init:  # set after construction, as the class itself does
                object.__setattr__(rebuilt, f.name, values[f.name])
        return rebuilt
    attributes = type(template).__attrs_attrs__  # an attrs class: its __init__ takes the aliases
    return type(template)(
        **{getattr(a, "alias", a.name.lstrip("_")): values[a.name] for a in attributes}
    )


def _like(template: Any, leaf: Any) -> Any:
    if template is None or isinstance(template, (bytes, str)) and isinstance(leaf, (bytes, str)):
        return leaf
    if isinstance(template, np.ndarray):
        return np.asarray(leaf)
    if isinstance(template, np.generic):
        return np.asarray(leaf)[()]
    if isinstance(template, bool):
        return bool(leaf)
    if isinstance(template, int):
        return int(leaf)
    if isinstance(template, float):
        return float(leaf)
    if isinstance(template, str):
        return str(leaf)
    if isinstance(template, bytes):
        return bytes(leaf)
    return leaf


def to_array(leaf: Any) -> np.ndarray:
    """A leaf as a numpy array (tensors through `.numpy()`)."""
    if hasattr(leaf, "numpy") and not isinstance(leaf, np.ndarray):
        leaf = leaf.numpy()
    return np.asarray(leaf)
