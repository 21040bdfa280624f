"""Nested structures walked in `tf.nest` order, with paths that say where two of them differ."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import tensorflow as tf


def _children(value: Any) -> list[tuple[str, Any]] | None:
    """A container's `(path step, child)` pairs in `tf.nest.flatten` order, or None for a leaf."""
    if isinstance(value, Mapping):
        return [(f"[{key!r}]", value[key]) for key in sorted(value)]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return [(f".{field}", child) for field, child in zip(value._fields, value, strict=True)]
    if isinstance(value, list | tuple):
        return [(f"[{index}]", child) for index, child in enumerate(value)]
    if tf.nest.is_nested(value):
        # Other containers tf.nest knows (attrs classes) are addressed by leaf position.
        return [(f"[{index}]", child) for index, child in enumerate(tf.nest.flatten(value))]
    return None


def where(path: str) -> str:
    """A path as it reads in a message."""
    return path if path else "the top level"


def describe(value: Any) -> str:
    """A short description of a value, as it reads in a message."""
    if value is None:
        return "None"
    if isinstance(value, type):
        # A class such as tf.TensorSpec has `shape` and `dtype` attributes, but they are not values.
        return f"the class {value.__qualname__} itself rather than an instance"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {sorted(value, key=repr)}"
    children = _children(value)
    if children is not None:
        return f"{type(value).__name__} of length {len(children)}"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{tf.as_dtype(dtype).name} value of shape {tf.TensorShape(shape)}"
    return f"{value!r} ({type(value).__name__})"


def flatten_with_paths(structure: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The `(path, leaf)` pairs of `structure`, in the order of `tf.nest.flatten(structure)`."""
    children = _children(structure)
    if children is None:
        yield path, structure
        return
    for step, child in children:
        yield from flatten_with_paths(child, path + step)


def assert_same_structure(
    reference: Any, other: Any, reference_name: str, other_name: str, path: str = ""
) -> None:
    """Raises ValueError naming the first place where `other` is nested unlike `reference`.

    Containers match when both are mappings with the same keys, or both are sequences (lists,
    tuples) of the same length; leaves are not compared.
    """
    reference_children, other_children = _children(reference), _children(other)
    if reference_children is None and other_children is None:
        return
    mismatch = f"{other_name} and {reference_name} differ in structure at {where(path)}:"
    if (
        reference_children is None
        or other_children is None
        or isinstance(reference, Mapping) != isinstance(other, Mapping)
    ):
        raise ValueError(
            f"{mismatch} expected {describe(reference)} (as in {reference_name}), "
            f"got {describe(other)}."
        )
    if isinstance(reference, Mapping):
        missing = [key for key in reference if key not in other]
        unexpected = [key for key in other if key not in reference]
        if missing or unexpected:
            differences = [
                f"{label} keys {sorted(keys, key=repr)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected))
                if keys
            ]
            raise ValueError(f"{mismatch} {other_name} has {' and '.join(differences)}.")
    elif len(reference_children) != len(other_children):
        raise ValueError(
            f"{mismatch} expected {len(reference_children)} elements (as in {reference_name}), "
            f"got {len(other_children)}."
        )
    for (step, reference_child), (_, other_child) in zip(
        reference_children, other_children, strict=True
    ):
        assert_same_structure(reference_child, other_child, reference_name, other_name, path + step)
