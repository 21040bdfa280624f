"""Loops over a client's dataset inside traced computations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from fed_learning.models._functional import lists_to_tuples

# Larger datasets are iterated: read whole, they would all be in memory at once.
_MAX_ELEMENTS_READ_WHOLE = 10_000


def fold_dataset(dataset: tf.data.Dataset, initial: Any, step: Callable[[Any, Any], Any]) -> Any:
    """`step` applied to each element in order, starting from `initial`: what `dataset.reduce` computes.

    A dataset of known cardinality of at most 10,000 elements whose elements are dense tensors is read
    whole first, in one dataset call (one padded tensor per element leaf, and each element's shapes),
    and the loop slices its elements out of those tensors, so that its body holds no dataset ops. Other
    datasets (unknown or infinite cardinality, as after `filter` or `repeat()`; more elements; ragged or
    sparse elements) are read through an iterator. Both give the same elements in the same order.
    (`Dataset.reduce` sets its loop body up again on every call, which costs milliseconds per client.)
    """
    initial = lists_to_tuples(initial)
    spec = dataset.element_spec
    leaves = tf.nest.flatten(spec)
    if not leaves or not all(isinstance(leaf, tf.TensorSpec) for leaf in leaves):
        return _fold_iterating(dataset, initial, step)
    cardinality = dataset.cardinality()
    # The loop over the whole dataset runs no steps where the dataset is iterated instead.
    read_whole = tf.logical_and(cardinality >= 0, cardinality <= _MAX_ELEMENTS_READ_WHOLE)
    carry = _fold_read_whole(dataset, tf.where(read_whole, cardinality, 0), initial, step)
    return tf.cond(read_whole, lambda: carry, lambda: _fold_iterating(dataset, initial, step))


def _fold_iterating(dataset: tf.data.Dataset, initial: Any, step: Callable[[Any, Any], Any]) -> Any:
    iterator = iter(dataset)

    def body(carry: Any, element: Any) -> tuple[Any, Any]:
        return lists_to_tuples(step(carry, element.get_value())), iterator.get_next_as_optional()

    carry, _ = tf.while_loop(
        lambda carry, element: element.has_value(),
        body,
        (initial, iterator.get_next_as_optional()),
    )
    return carry


def _fold_read_whole(
    dataset: tf.data.Dataset,
    count: tf.Tensor,
    initial: Any,
    step: Callable[[Any, Any], Any],
) -> Any:
    spec = dataset.element_spec
    leaf_specs: list[tf.TensorSpec] = tf.nest.flatten(spec)

    def with_shapes(*element: Any) -> tuple[tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
        # tf.data passes a plain tuple's items as separate arguments, anything else as one.
        leaves = tf.nest.flatten(element if type(spec) is tuple else element[0])
        return tuple(tf.shape(leaf, out_type=tf.int64) for leaf in leaves), tuple(leaves)

    whole = dataset.take(count).map(with_shapes).padded_batch(tf.maximum(count, 1))
    # An empty dataset has no batch: a batch of no elements stands in for it.
    empty = tf.data.Dataset.from_tensors(
        tf.nest.map_structure(lambda s: tf.zeros([0, *_known(s)], s.dtype), whole.element_spec)
    )
    shapes, padded = whole.concatenate(empty).take(1).get_single_element()

    def element(i: tf.Tensor) -> Any:
        leaves = []
        for leaf_spec, shape, stacked in zip(leaf_specs, shapes, padded, strict=True):
            leaf = tf.slice(stacked[i], tf.zeros_like(shape[i]), shape[i])
            leaf.set_shape(leaf_spec.shape)
            leaves.append(leaf)
        return tf.nest.pack_sequence_as(spec, leaves)

    def body(i: tf.Tensor, carry: Any) -> tuple[tf.Tensor, Any]:
        return i + 1, lists_to_tuples(step(carry, element(i)))

    _, carry = tf.while_loop(lambda i, carry: i < count, body, (tf.constant(0, tf.int64), initial))
    return carry


def _known(spec: tf.TensorSpec) -> list[int]:
    """The shape of an empty padded batch of `spec`'s elements: its known dimensions, 0 for others."""
    return [d if d is not None else 0 for d in spec.shape.as_list()[1:]]
