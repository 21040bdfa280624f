"""Conversions between fed types and TensorFlow: dtypes, `tf.TensorSpec`, `tf.data` element specs
and Keras variables."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from typing import Any

import tensorflow as tf

import fed_types
from fed_types import SequenceType, Struct, StructType, TensorType, Type


def to_type(spec: Any) -> Type:
    """The fed type of a TensorFlow type spec, or of any spec `fed_types.to_type` accepts.

    TF dtypes are scalar tensor types; a `tf.TensorSpec`, a `tf.Variable` or a `keras.Variable` is
    the tensor type of its dtype and shape; a `tf.data.DatasetSpec` or a dataset is a sequence of
    its element spec; containers (dicts, OrderedDicts, namedtuples, tuples, lists, attrs classes) of
    these are structs that keep their container:
    `to_type(OrderedDict(x=tf.TensorSpec([None, 784], tf.float32)))` is `<x=float32[?,784]>`.
    A `tf.SparseTensorSpec` or `tf.RaggedTensorSpec` is the struct of the tensor's components, as
    in TFF (`<indices=int64[?,2],values=float32[?],dense_shape=int64[2]>` for a sparse matrix),
    whose Python container is `tf.SparseTensor` or `tf.RaggedTensor`: datasets of such elements
    pass to and from TensorFlow computations as they are.
    """
    dtype = spec if isinstance(spec, tf.DType) else getattr(spec, "dtype", None)
    if isinstance(dtype, tf.DType) and dtype in (tf.variant, tf.resource):
        raise TypeError(
            f"Expected a spec of numeric, bool or string tensors, got {spec!r}: TensorFlow's "
            f"internal {dtype.name} tensors have no fed type (a dataset is a sequence, typed by "
            f"its element_spec)."
        )
    return fed_types.to_type(spec)


def to_tf_dtype(dtype: Any) -> tf.DType:
    """The TensorFlow dtype of a numpy dtype, a dtype name or a fed `TensorType` (`str` is
    `tf.string`)."""
    if isinstance(dtype, TensorType):
        dtype = dtype.dtype
    numpy_dtype = fed_types.to_dtype(dtype)
    if numpy_dtype.kind in "US":
        return tf.string
    return tf.as_dtype(numpy_dtype)


def _tf_shape(t: TensorType) -> tf.TensorShape:
    return tf.TensorShape(None if t.rank is None else list(t.shape))  # type: ignore[arg-type]


def tensor_spec(t: TensorType) -> tf.TensorSpec:
    """The `tf.TensorSpec` of a tensor type."""
    return tf.TensorSpec(_tf_shape(t), to_tf_dtype(t.dtype))


def is_composite(t: Type) -> bool:
    """True for the struct type of a sparse or ragged tensor (see `to_type`): inside a dataset
    element it is one value, not a struct of tensors."""
    container = t.python_container if isinstance(t, StructType) else None
    return isinstance(container, type) and issubclass(container, (tf.SparseTensor, tf.RaggedTensor))


def leaf_spec(t: TensorType | StructType) -> Any:
    """The spec of a leaf of a dataset element (see `element_leaves`): a `tf.TensorSpec`, or the
    `tf.SparseTensorSpec` or `tf.RaggedTensorSpec` of a sparse or ragged tensor's struct type."""
    if isinstance(t, TensorType):
        return tensor_spec(t)
    if issubclass(t.python_container, tf.SparseTensor):  # type: ignore[arg-type]
        values, dense_shape = t["values"], t["dense_shape"]
        rank = dense_shape.shape[0] if dense_shape.rank == 1 else None
        shape = tf.TensorShape(None if rank is None else [None] * rank)
        return tf.SparseTensorSpec(shape, to_tf_dtype(values))
    flat_values, row_splits = t["flat_values"], t["nested_row_splits"]
    ragged_rank = len(row_splits)
    if flat_values.rank is None:
        shape = tf.TensorShape(None)
    else:
        shape = tf.TensorShape([None] * (ragged_rank + 1) + list(flat_values.shape[1:]))
    splits_dtype = to_tf_dtype(row_splits[0]) if ragged_rank else tf.int64
    return tf.RaggedTensorSpec(shape, to_tf_dtype(flat_values), ragged_rank, splits_dtype)


def to_tf_spec(type_spec: Any) -> Any:
    """The TensorFlow spec of a fed type: a `tf.TensorSpec` for a tensor type, a
    `tf.data.DatasetSpec` for a sequence, and for a struct its Python container (if it has none, an
    OrderedDict if all elements are named, a tuple if none are) of its elements' specs."""
    t = fed_types.to_type(type_spec)
    if isinstance(t, TensorType) or is_composite(t):
        return leaf_spec(t)  # type: ignore[arg-type]
    if isinstance(t, SequenceType):
        return tf.data.DatasetSpec(element_structure(t.element))
    if isinstance(t, StructType):
        container = t.python_container
        elements = Struct((name, to_tf_spec(element)) for name, element in t.items())
        if container is None:
            return plain_container(elements)
        return fed_types.to_python_container(elements, t)
    raise TypeError(
        f"Expected a tensor, sequence or struct type, got {t}: it has no TensorFlow spec."
    )


def element_leaves(element: Type) -> list[TensorType | StructType]:
    """The leaves of a sequence's element in order: its tensor types, and the struct types of its
    sparse and ragged tensors (raises for what `tf.data` cannot hold)."""
    if isinstance(element, TensorType) or is_composite(element):
        return [element]  # type: ignore[list-item]
    if isinstance(element, StructType):
        return [leaf for e in element for leaf in element_leaves(e)]
    if isinstance(element, SequenceType):
        raise NotImplementedError(
            f"Sequences of sequences are not supported: {SequenceType(element)}."
        )
    raise TypeError(f"A sequence holds tensors or structs of tensors, not {element}.")


def element_structure(element: Type, leaves: Iterator[Any] | None = None) -> Any:
    """The nested structure of a dataset element of type `element`: each struct in its container
    when `tf.data` can hold it (mappings, namedtuples, attrs classes; lists become tuples), else in
    an OrderedDict (named elements) or a tuple (unnamed). The leaves are taken from `leaves`, by
    default the specs of the leaves (`leaf_spec`)."""
    if leaves is None:
        leaves = iter([leaf_spec(t) for t in element_leaves(element)])
    if isinstance(element, TensorType) or is_composite(element):
        return next(leaves)
    assert isinstance(element, StructType)
    elements = Struct((name, element_structure(e, leaves)) for name, e in element.items())
    container = element.python_container
    if container is not None and _nest_compatible(container):
        if issubclass(container, list):
            return tuple(elements)
        return fed_types.to_python_container(elements, element)
    return plain_container(elements)


def plain_structure(element: Type, leaves: Iterator[Any] | None = None) -> Any:
    """Like `element_structure`, but ignoring Python containers: OrderedDicts and tuples only.

    Its `tf.nest` order depends only on the type's names, so it is the order of the components of
    every dataset variant that crosses a graph's boundary, whichever containers the type carries in
    this process.
    """
    if leaves is None:
        leaves = iter([leaf_spec(t) for t in element_leaves(element)])
    if isinstance(element, TensorType) or is_composite(element):
        return next(leaves)
    assert isinstance(element, StructType)
    return plain_container(
        Struct((name, plain_structure(e, leaves)) for name, e in element.items())
    )


def plain_container(elements: Struct) -> Any:
    """The elements in an OrderedDict if all are named, in a tuple if none are."""
    names = elements.names()
    if names and all(n is not None for n in names):
        return collections.OrderedDict(elements.items())
    if not any(n is not None for n in names):
        return tuple(elements)
    raise NotImplementedError(
        f"TensorFlow has no structure for a struct that mixes named and unnamed elements "
        f"(names: {list(names)})."
    )


def _nest_compatible(container: type) -> bool:
    if issubclass(container, Mapping) or issubclass(container, (list, tuple)):
        return True
    return hasattr(container, "__attrs_attrs__")
