"""Sequences as `tf.data` datasets, and datasets as the variant tensors that graphs take and return.

A variant crossing a graph's boundary holds its element's tensors in the `tf.nest` order of the
element type's plain structure (`plain_structure`: OrderedDicts and tuples), which depends only on
the type's names: a graph traced in one process reads datasets made in another correctly even where
the Python containers of the type are not known.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import numpy as np
import tensorflow as tf

from fed_core.execution.interface import memoized_by_structure
from fed_tensorflow._dense import ParameterDataset
from fed_tensorflow._structure import flatten
from fed_tensorflow._type_conversions import (
    element_leaves,
    element_structure,
    is_composite,
    plain_container,
    plain_structure,
)
from fed_types import Struct, StructType, TensorType, Type, from_python_container


def to_variant(dataset: tf.data.Dataset) -> tf.Tensor:
    """The variant tensor of `dataset`, its components in the order of its element's plain
    structure."""
    spec = dataset.element_spec
    if not _in_plain_order(spec):
        unpack = type(spec) is tuple  # tf.data passes a tuple element's components as arguments
        dataset = dataset.map(lambda *parts: _to_plain(parts if unpack else parts[0]))
    return tf.data.experimental.to_variant(dataset)


@tf.autograph.experimental.do_not_convert
def parameter_dataset(variant: tf.Tensor, element: Type) -> tf.data.Dataset:
    """The dataset a traced function receives for a sequence parameter: its elements in the Python
    containers of `element` (see `element_structure`), tuned for small datasets.

    A client's dataset is usually small and iterated once per call, and each iteration pays for the
    static optimizations and autotuning that `tf.data` sets up when it starts: they cost more than
    they save here.
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return ParameterDataset(
        from_variant(variant, element, with_containers=True).with_options(options)
    )


def parameter_element_spec(element: Type) -> Any:
    """The element structure of the dataset a traced function receives for a sequence parameter
    whose elements are of type `element` (see `parameter_dataset`)."""
    with tf.Graph().as_default():
        variant = tf.compat.v1.placeholder(tf.variant, [])
        return parameter_dataset(variant, element).element_spec


def from_variant(
    variant: tf.Tensor, element: Type, *, with_containers: bool = False
) -> tf.data.Dataset:
    """The dataset held by `variant`; its elements are OrderedDicts and tuples, or, with
    `with_containers`, the Python containers of `element` (see `element_structure`)."""
    plain = plain_structure(element)
    if not with_containers:
        return tf.data.experimental.from_variant(variant, plain)
    structure = element_structure(element)
    n = len(element_leaves(element))
    # For each position in tf.nest order, the index of the tensor in type order.
    plain_order = tf.nest.flatten(plain_structure(element, iter(range(n))))
    if tf.nest.flatten(element_structure(element, iter(range(n)))) == plain_order:
        return tf.data.experimental.from_variant(variant, structure)
    unpack = isinstance(plain, tuple)

    def with_element_containers(*components: Any) -> Any:
        nested = tf.nest.flatten(components if unpack else components[0])
        in_type_order = [None] * n
        for position, index in enumerate(plain_order):
            in_type_order[index] = nested[position]
        return element_structure(element, iter(in_type_order))

    return tf.data.experimental.from_variant(variant, plain).map(with_element_containers)


def as_dataset(value: Any, element: Type) -> tf.data.Dataset:
    """`value` if it is a dataset, else a dataset of its elements (a list or other iterable, each
    element a value of type `element` in executor or Python form)."""
    if isinstance(value, tf.data.Dataset):
        return value
    return from_elements(list(value), element)


def from_elements(elements: Iterable[Any], element: Type) -> tf.data.Dataset:
    """A dataset of `elements` (values of type `element`), with plain-structured elements."""
    leaves = element_leaves(element)
    if not all(isinstance(t, TensorType) for t in leaves):
        # Sparse and ragged tensors stay whole: they can be neither made arrays nor stacked.
        rows = [_leaf_values(e, element) for e in elements]
        if not rows:
            raise ValueError(
                f"Cannot make an empty dataset of {element} from a list: pass a tf.data.Dataset."
            )
        datasets = [tf.data.Dataset.from_tensors(plain_structure(element, iter(r))) for r in rows]
        # `from_list` takes no sparse or ragged tensors: the elements are concatenated instead,
        # in pairs, so that the nesting of datasets grows with the log of their number.
        while len(datasets) > 1:
            pairs = [a.concatenate(b) for a, b in zip(datasets[::2], datasets[1::2], strict=False)]
            datasets = pairs + datasets[len(pairs) * 2 :]
        return datasets[0]
    tensors = cast(list[TensorType], leaves)
    rows = [
        [_array(leaf, t) for leaf, t in zip(flatten(e, element), tensors, strict=True)]
        for e in elements
    ]
    if not rows:
        columns = [_empty(t) for t in tensors]
        return tf.data.Dataset.from_tensor_slices(plain_structure(element, iter(columns)))
    shapes = {tuple(a.shape for a in row) for row in rows}
    if len(shapes) == 1:
        columns = [np.stack(column) for column in zip(*rows, strict=True)]
        return tf.data.Dataset.from_tensor_slices(plain_structure(element, iter(columns)))
    # Elements of different shapes (a smaller last batch) cannot be stacked.
    return tf.data.experimental.from_list([plain_structure(element, iter(row)) for row in rows])


def _leaf_values(value: Any, element: Type) -> list[Any]:
    """The leaves of one element along `element`, sparse and ragged tensors whole (made again
    from their components where they come as a `Struct` of them)."""
    if isinstance(element, TensorType):
        return [value]
    if is_composite(element):
        if not isinstance(value, Struct):
            return [value]
        if issubclass(cast(StructType, element).python_container, tf.SparseTensor):  # type: ignore[arg-type]
            return [tf.SparseTensor(value.indices, value.values, value.dense_shape)]
        splits = tuple(value.nested_row_splits)
        return [tf.RaggedTensor.from_nested_row_splits(value.flat_values, splits)]
    struct = value if isinstance(value, Struct) else from_python_container(value)
    return [leaf for v, t in zip(struct, element, strict=True) for leaf in _leaf_values(v, t)]  # type: ignore[call-overload]


def _array(value: Any, t: TensorType) -> np.ndarray:
    if t.dtype.kind in "US":
        return np.asarray(value.numpy() if isinstance(value, tf.Tensor) else value)
    return np.asarray(value, dtype=t.dtype)


def _empty(t: TensorType) -> np.ndarray:
    dims = () if t.rank is None else t.shape
    shape = tuple(0 if d is None else d for d in dims)  # type: ignore[union-attr]
    return np.zeros((0, *shape), dtype=np.str_ if t.dtype.kind in "US" else t.dtype)


def _to_plain(value: Any) -> Any:
    """`value` with its Python containers replaced by OrderedDicts (named) and tuples (unnamed)."""
    try:
        struct = from_python_container(value)
    except TypeError:
        return value
    return _struct_to_plain(struct)


def _struct_to_plain(value: Any) -> Any:
    if not isinstance(value, Struct):
        return value
    return plain_container(Struct((name, _struct_to_plain(v)) for name, v in value.items()))


# Whether element specs are in plain order, by their structure keys (`memoized_by_structure`):
# clients' datasets made one by one have equal specs in separate objects.
_plain_order: dict[Any, bool] = {}


def _in_plain_order(spec: Any) -> bool:
    return memoized_by_structure(
        _plain_order,
        spec,
        lambda: all(
            a is b
            for a, b in zip(tf.nest.flatten(spec), tf.nest.flatten(_to_plain(spec)), strict=True)
        ),
    )
