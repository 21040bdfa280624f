"""fold_dataset reads datasets of known, finite cardinality whole and others through an iterator; both
give what `Dataset.reduce` gives, element by element in order."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from fed_learning._loops import fold_dataset


def _fold_in_graph(dataset: tf.data.Dataset, initial, step):
    """Folds `dataset` passed into a traced function as a variant, so that its cardinality is only known
    when the function runs (as in a computation's graph)."""
    spec = dataset.element_spec

    @tf.function(autograph=False)
    def fold(variant):
        return fold_dataset(tf.data.experimental.from_variant(variant, spec), initial, step)

    return tf.nest.map_structure(
        lambda t: t.numpy(), fold(tf.data.experimental.to_variant(dataset))
    )


def _sum_and_trace(carry, batch):
    total, count, first_rows = carry
    x, y = batch
    return (
        total + tf.reduce_sum(x) * 2.0 + tf.cast(tf.reduce_sum(y), tf.float32),
        count + tf.shape(x, out_type=tf.int64)[0],
        first_rows + x[0, 0],
    )


INITIAL = (tf.constant(0.0), tf.constant(0, tf.int64), tf.constant(0.0))


def _expected(dataset, initial, step):
    return tf.nest.map_structure(lambda t: t.numpy(), dataset.reduce(initial, step))


def _batches(n: int, batch: int) -> tf.data.Dataset:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = rng.integers(0, 5, size=n).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


@pytest.mark.parametrize("n,batch", [(10, 5), (11, 5), (3, 10), (1, 1)])
def test_batched_dataset_with_a_short_last_batch_folds_like_reduce(n, batch):
    dataset = _batches(n, batch)
    result = _fold_in_graph(dataset, INITIAL, _sum_and_trace)
    expected = _expected(dataset, INITIAL, _sum_and_trace)
    assert result[1] == n
    np.testing.assert_allclose(result[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result[2], expected[2], rtol=1e-5, atol=1e-6)


def test_empty_dataset_gives_the_initial_carry():
    dataset = _batches(4, 2).take(0)
    result = _fold_in_graph(dataset, INITIAL, _sum_and_trace)
    assert (result[0], result[1], result[2]) == (0.0, 0, 0.0)


def test_dataset_of_unknown_cardinality_is_iterated():
    dataset = _batches(20, 3).filter(lambda x, y: tf.reduce_sum(y) > 4)
    assert int(dataset.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    result = _fold_in_graph(dataset, INITIAL, _sum_and_trace)
    expected = _expected(dataset, INITIAL, _sum_and_trace)
    assert 0 < result[1] < 20
    assert result[1] == expected[1]
    np.testing.assert_allclose(result[0], expected[0], rtol=1e-5, atol=1e-6)


def test_order_is_kept_and_elements_of_varying_shapes_are_unpadded():
    # Each element a vector of its own length: padding to the longest must not reach the step.
    dataset = tf.data.Dataset.range(1, 6).map(lambda n: tf.range(n, dtype=tf.float32))

    def step(carry, element):
        return carry * 10.0 + tf.cast(tf.size(element), tf.float32) + tf.reduce_sum(element) * 0.0

    assert _fold_in_graph(dataset, tf.constant(0.0), step) == pytest.approx(12345.0)


def test_dict_and_scalar_elements():
    dataset = tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(a=np.arange(6, dtype=np.int64), b=np.ones(6, np.float32))
    )

    def step(carry, element):
        return carry + tf.cast(element["a"], tf.float32) * element["b"]

    assert _fold_in_graph(dataset, tf.constant(0.0), step) == pytest.approx(15.0)


def test_ragged_elements_are_iterated():
    ragged = tf.ragged.constant([[1.0], [2.0, 3.0], [4.0, 5.0, 6.0]])
    dataset = tf.data.Dataset.from_tensor_slices(ragged)

    def step(carry, element):
        return carry + tf.reduce_sum(element)

    assert _fold_in_graph(dataset, tf.constant(0.0), step) == pytest.approx(21.0)


def test_dataset_longer_than_read_whole_limit_is_iterated(monkeypatch):
    import fed_tensorflow._dense as dense

    monkeypatch.setattr(dense, "MAX_ELEMENTS_READ_WHOLE", 2)
    dataset = _batches(11, 2)
    result = _fold_in_graph(dataset, INITIAL, _sum_and_trace)
    expected = _expected(dataset, INITIAL, _sum_and_trace)
    assert result[1] == 11
    np.testing.assert_allclose(result[0], expected[0], rtol=1e-5, atol=1e-6)
