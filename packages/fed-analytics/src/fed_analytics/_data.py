"""Reading a client's dataset inside a TensorFlow computation."""

from __future__ import annotations

import tensorflow as tf


def all_elements(dataset: tf.data.Dataset, dtype: tf.DType) -> tf.Tensor:
    """Every element of `dataset` (of scalars, or of rank-1 batches) in order, as one rank-1 tensor.

    Read as one batch with `get_single_element`, with an empty batch after it for an empty dataset:
    `Dataset.reduce` with a concatenation costs about 6 ms per call, this about 0.3 ms, and
    computations run once per client."""
    if dataset.element_spec.shape.rank == 1:
        dataset = dataset.unbatch()
    everything = dataset.batch(2**31 - 1)
    empty = tf.data.Dataset.from_tensors(tf.zeros([0], dtype))
    return everything.concatenate(empty).take(1).get_single_element()
