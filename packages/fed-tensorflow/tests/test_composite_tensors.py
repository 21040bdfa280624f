"""Sparse and ragged tensors: their TFF types, and datasets of them through TensorFlow
computations."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_types import CLIENTS, FederatedType, SequenceType, TensorType

BatchType = collections.namedtuple("BatchType", ["tokens", "tags"])
VOCABULARY_SIZE = 13


def bag_of_words(rows: list[list[int]], batch_size: int = 2) -> tf.data.Dataset:
    """Batches of (sparse {0, 1} token indicators, a dense tag), as in TFF's sparse tutorial."""

    def to_batch(tokens):
        indicators = tf.SparseTensor(
            tf.reshape(tokens, (-1, 1)),
            tf.ones(tf.size(tokens), tf.int32),
            dense_shape=(VOCABULARY_SIZE,),
        )
        return BatchType(tf.sparse.reorder(indicators), tf.cast(tokens[0], tf.float32))

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(rows, tf.int64))
    return dataset.map(to_batch).batch(batch_size)


def test_sparse_and_ragged_specs_are_typed_as_tff_types_them():
    sparse = ftf.to_type(tf.SparseTensorSpec([None, VOCABULARY_SIZE], tf.int32))
    assert str(sparse) == "<indices=int64[?,2],values=int32[?],dense_shape=int64[2]>"
    assert sparse.python_container is tf.SparseTensor
    assert str(ftf.to_type(tf.SparseTensorSpec(None, tf.float32))) == (
        "<indices=int64[?,?],values=float32[?],dense_shape=int64[?]>"
    )
    ragged = ftf.to_type(tf.RaggedTensorSpec([None, None, 2], tf.float32, ragged_rank=1))
    assert str(ragged) == "<flat_values=float32[?,2],nested_row_splits=<int64[?]>>"
    assert ragged.python_container is tf.RaggedTensor
    assert str(ftf.to_type(tf.RaggedTensorSpec(None, tf.int32, ragged_rank=2))) == (
        "<flat_values=int32[*],nested_row_splits=<int64[?],int64[?]>>"
    )
    assert ftf.to_tf_spec(sparse) == tf.SparseTensorSpec([None, None], tf.int32)
    assert ftf.to_tf_spec(ragged) == tf.RaggedTensorSpec([None, None, 2], tf.float32, 1)


def test_a_dataset_of_sparse_batches_flows_through_tensorflow_computations():
    data = bag_of_words([[0, 1], [4, 8], [1, 2]])
    sequence = SequenceType(data.element_spec)
    assert str(sequence.element) == (
        "<tokens=<indices=int64[?,2],values=int32[?],dense_shape=int64[2]>,tags=float32[?]>"
    )

    @ftf.computation(sequence)
    def token_count(dataset):
        return dataset.reduce(np.int32(0), lambda n, batch: n + tf.sparse.reduce_sum(batch.tokens))

    @ftf.computation(sequence)
    def doubled(dataset):
        return dataset.map(lambda b: BatchType(tf.sparse.add(b.tokens, b.tokens), b.tags))

    @fc.federated_computation(FederatedType(sequence, CLIENTS))
    def total_tokens(datasets):
        return fc.federated_sum(fc.federated_map(token_count, datasets))

    assert token_count(data) == 6
    assert total_tokens([data, bag_of_words([[3, 3], [5, 6]], batch_size=1)]) == 10
    assert doubled.type_signature.result == sequence
    batches = doubled(data)
    assert [type(b.tokens) for b in batches] == [tf.SparseTensor, tf.SparseTensor]
    assert tf.sparse.to_dense(batches[1].tokens).numpy().tolist() == [
        [0, 2, 2] + [0] * (VOCABULARY_SIZE - 3)
    ]
    # A sequence result comes back as a list of its elements, which passes back in as it is.
    assert token_count(batches) == 12


def test_a_dataset_of_ragged_rows_flows_through_a_tensorflow_computation():
    rows = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1, 2], [3], [4, 5, 6]]))
    batches = rows.batch(2)

    @ftf.computation(SequenceType(batches.element_spec))
    def row_lengths(dataset):
        return dataset.reduce(
            tf.zeros([0], tf.int64), lambda lengths, b: tf.concat([lengths, b.row_lengths()], 0)
        )

    assert row_lengths(batches).tolist() == [2, 1, 3]
    # A list of ragged elements passes as a dataset of them.
    listed = [tf.ragged.constant([[1, 2], [3]]), tf.ragged.constant([[4]])]
    assert row_lengths(listed).tolist() == [2, 1, 1]


def test_a_sparse_tensor_passes_as_a_parameter():
    spec = tf.SparseTensorSpec([2, 2], tf.int32)

    @ftf.computation(ftf.to_type(spec))
    def total(sparse):
        return tf.sparse.reduce_sum(sparse)

    assert total(tf.sparse.from_dense(np.array([[0, 3], [4, 0]], np.int32))) == 7
    with pytest.raises(TypeError, match="expected <indices=int64"):
        total(tf.ragged.constant([[1]]))


def test_a_list_of_sparse_elements_needs_at_least_one():
    sequence = SequenceType(bag_of_words([[0, 1]]).element_spec)

    @ftf.computation(sequence)
    def count(dataset):
        return dataset.reduce(np.int32(0), lambda n, _: n + 1)

    with pytest.raises(ValueError, match="empty dataset of .* from a list: pass a tf.data.Dataset"):
        count([])
    assert count.type_signature.result == TensorType(np.int32)
