"""`dataset.reduce` on a computation's sequence parameter runs as fed's loop over the dataset, and
computes what TensorFlow's `Dataset.reduce` computes."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed_tensorflow as ftf
from fed_tensorflow._payload import GraphPayload, all_nodes
from fed_types import SequenceType, TensorType

XY = collections.OrderedDict(x=TensorType(np.float32, [2]), y=TensorType(np.int32))


def _ops(computation) -> set[str]:
    payload = GraphPayload.decode(computation._building_block.payload)
    return {node.op for node in all_nodes(payload.graph_def)}


def _examples(n: int) -> collections.OrderedDict:
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    return collections.OrderedDict(x=x, y=np.arange(n, dtype=np.int32) % 3)


def _tf_reduce(examples, batch, initial, step):
    """What TensorFlow's own `Dataset.reduce` gives, eagerly."""
    dataset = tf.data.Dataset.from_tensor_slices(examples)
    if batch:
        dataset = dataset.batch(batch)
    return tf.nest.map_structure(lambda t: t.numpy(), dataset.reduce(initial, step))


def _as_elements(examples):
    return [
        collections.OrderedDict(x=x, y=y) for x, y in zip(examples["x"], examples["y"], strict=True)
    ]


def sum_and_count(state, element):
    return collections.OrderedDict(
        total=state["total"] + tf.reduce_sum(element["x"]) * tf.cast(element["y"], tf.float32),
        count=state["count"] + 1,
    )


def initial():
    return collections.OrderedDict(total=0.0, count=0)


@pytest.mark.parametrize("n", [0, 1, 7])
def test_a_reduce_on_a_parameter_runs_as_a_loop_and_equals_tensorflows(n):
    @ftf.computation(SequenceType(XY))
    def reduced(dataset):
        return dataset.reduce(initial(), sum_and_count)

    assert "ReduceDataset" not in _ops(reduced)
    got = reduced(_as_elements(_examples(n)))
    want = _tf_reduce(_examples(n), None, initial(), sum_and_count)
    assert got["total"] == pytest.approx(want["total"]) and got["count"] == want["count"] == n


def test_a_reduce_func_with_a_tensor_condition_is_converted_by_autograph():
    def step(state, element):
        # AutoGraph turns this `if` on a tensor into a conditional, as Dataset.reduce's does.
        if element["y"] > 0:
            state = state + tf.reduce_sum(element["x"])
        else:
            state = state - 1.0
        return state

    @ftf.computation(SequenceType(XY))
    def reduced(dataset):
        return dataset.reduce(tf.constant(0.0), step)

    assert "ReduceDataset" not in _ops(reduced)
    want = _tf_reduce(_examples(9), None, tf.constant(0.0), step)
    assert reduced(_as_elements(_examples(9))) == pytest.approx(want)

    @ftf.computation(SequenceType(XY))
    def looped(dataset):  # AutoGraph's `for` over a dataset, as TensorFlow runs it
        total = tf.constant(0.0)
        for element in dataset:
            if element["y"] > 0:
                total += tf.reduce_sum(element["x"])
            else:
                total -= 1.0
        return total

    assert looped(_as_elements(_examples(9))) == pytest.approx(want)


def test_batches_of_unknown_count_are_iterated_and_equal_tensorflows():
    @ftf.computation(SequenceType(XY))
    def positives(dataset):
        kept = dataset.filter(lambda e: e["y"] > 0)  # unknown cardinality: iterated
        return kept.reduce(initial(), sum_and_count)

    def kept(state, element):
        return sum_and_count(state, element) if element["y"] > 0 else state

    got = positives(_as_elements(_examples(8)))
    want = _tf_reduce(_examples(8), None, initial(), kept)
    assert got["total"] == pytest.approx(want["total"]) and got["count"] == want["count"]


def test_a_state_whose_shape_changes_is_left_to_tensorflows_reduce():
    @ftf.computation(SequenceType(XY))
    def all_labels(dataset):
        # The state grows by one label per element: Dataset.reduce relaxes its shape to [None].
        return dataset.reduce(tf.zeros([0], tf.int32), lambda s, e: tf.concat([s, [e["y"]]], 0))

    assert "ReduceDataset" in _ops(all_labels)
    np.testing.assert_array_equal(all_labels(_as_elements(_examples(5))), [0, 1, 2, 0, 1])


def test_a_reduce_func_returning_another_structure_gets_tensorflows_error():
    with pytest.raises(TypeError, match="new state must match the initial state"):

        @ftf.computation(SequenceType(XY))
        def wrong(dataset):
            return dataset.reduce(initial(), lambda s, e: s["total"])


def test_a_reduce_over_batches_with_another_parameter_equals_tensorflows():
    def mean_of_batches(state, batch):
        return (state[0] + tf.reduce_mean(batch["x"]), state[1] + tf.shape(batch["y"])[0])

    batches = SequenceType(
        collections.OrderedDict(x=TensorType(np.float32, [None, 2]), y=TensorType(np.int32, [None]))
    )

    @ftf.computation(batches, TensorType(np.float32))
    def train(dataset, scale):
        total, count = dataset.reduce((tf.constant(0.0), 0), mean_of_batches)
        return total * scale, count

    assert "ReduceDataset" not in _ops(train)
    examples = _examples(7)
    data = [
        collections.OrderedDict(x=examples["x"][i : i + 3], y=examples["y"][i : i + 3])
        for i in range(0, 7, 3)
    ]
    total, count = train(data, 2.0)
    want_total, want_count = _tf_reduce(examples, 3, (tf.constant(0.0), 0), mean_of_batches)
    assert total == pytest.approx(2.0 * want_total) and count == want_count == 7


def test_a_step_that_builds_a_layer_on_its_first_call_keeps_it():
    import keras

    layer = keras.layers.Dense(1, kernel_initializer="ones")  # built on its first call

    @ftf.computation(SequenceType(TensorType(np.float32, [2])))
    def through_a_layer(dataset):
        return dataset.reduce(tf.zeros([1]), lambda state, x: state + layer(x[None])[0])

    assert "ReduceDataset" not in _ops(through_a_layer)
    np.testing.assert_allclose(through_a_layer([np.array([1.0, 2.0], np.float32)] * 3), [9.0])


@pytest.mark.parametrize("n", [64, 65, 300])
def test_only_a_client_sized_dataset_is_read_whole_larger_ones_are_streamed(n):
    from fed_tensorflow._dense import _REDUCE_ELEMENTS_READ_WHOLE, read_if_readable

    count, _, padded = read_if_readable(tf.data.Dataset.range(n), _REDUCE_ELEMENTS_READ_WHOLE)
    assert int(count) == (n if n <= 64 else -1) and len(padded[0]) == (n if n <= 64 else 0)

    @ftf.computation(SequenceType(XY))
    def reduced(dataset):
        return dataset.reduce(initial(), sum_and_count)

    got = reduced(_as_elements(_examples(n)))
    want = _tf_reduce(_examples(n), None, initial(), sum_and_count)
    assert got["total"] == pytest.approx(want["total"]) and got["count"] == want["count"] == n


def test_a_step_that_draws_at_random_is_left_to_tensorflows_reduce():
    @ftf.computation(SequenceType(np.float32))
    def noisy(dataset):
        return dataset.reduce(
            tf.constant(0.0), lambda state, x: state + x + tf.random.uniform([], seed=3)
        )

    # Dataset.reduce sets the op up anew on every call: a seeded draw gives the same numbers.
    assert "ReduceDataset" in _ops(noisy)
    assert noisy([1.0, 2.0]) == noisy([1.0, 2.0])
