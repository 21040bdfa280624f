"""SCAFFOLD: two rounds computed by hand (control variates kept per client), the checks of client
numbers, and training on digits."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_core.execution import ClientWorkError
from fed_datasets import digits
from fed_learning import algorithms, models
from fed_types import TensorType, to_type

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
CLIENTS = [
    (np.array([[1.0, 2.0], [0.5, -1.0]], np.float32), np.array([[1.0], [0.0]], np.float32)),
    (
        np.array([[-1.5, 0.5], [2.0, 1.0], [0.0, 1.0]], np.float32),
        np.array([[3.0], [-2.0], [1.0]], np.float32),
    ),
]
LR, SERVER_LR, NUM_CLIENTS = 0.1, 0.5, 4


def linear_model_fn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return models.from_keras_model(model, keras.losses.MeanSquaredError(), SPEC)


def _dataset(i):
    x, y = CLIENTS[i]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))


def _gradient(weights, i):
    x, y = CLIENTS[i]
    residual = x @ weights[0] + weights[1] - y
    return [2 * x.T @ residual / len(x), 2 * residual.mean(0)]


def _arrays(structure):
    return [np.array(w) for w in structure]


def test_two_rounds_match_the_paper_by_hand():
    process = algorithms.build_scaffold(
        linear_model_fn, LR, server_learning_rate=SERVER_LR, num_clients=NUM_CLIENTS
    )
    state = process.initialize()
    x0 = _arrays(process.get_model_weights(state).trainable)
    # Round 1, clients 3 and 1 (data 0 and 1): every control variate is 0, so one plain SGD step each.
    state = process.next(state, [_dataset(0), _dataset(1)], [3, 1]).state
    g = [_gradient(x0, 0), _gradient(x0, 1)]
    x1 = [w - SERVER_LR * LR * (a + b) / 2 for w, a, b in zip(x0, *g)]
    c_rows = {3: g[0], 1: g[1]}  # c_i+ = (x - y) / (K * lr) = the gradient at x0
    c = [(a + b) / NUM_CLIENTS for a, b in zip(*g)]
    for got, want in zip(_arrays(process.get_model_weights(state).trainable), x1):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    for got, want in zip(_arrays(state.server_control_variate), c):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    # Round 2, client 3 alone: its step is corrected by c - c_3.
    state = process.next(state, [_dataset(0)], [3]).state
    g1 = _gradient(x1, 0)
    y = [w - LR * (gr - ci + cs) for w, gr, ci, cs in zip(x1, g1, c_rows[3], c)]
    new_c3 = [ci - cs + (a - b) / LR for ci, cs, a, b in zip(c_rows[3], c, x1, y)]
    x2 = [a - SERVER_LR * (a - b) for a, b in zip(x1, y)]
    c2 = [cs + (n - o) / NUM_CLIENTS for cs, n, o in zip(c, new_c3, c_rows[3])]
    for got, want in zip(_arrays(process.get_model_weights(state).trainable), x2):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(_arrays(state.server_control_variate), c2):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    table = _arrays(state.client_control_variates)
    for layer, rows in enumerate(table):
        assert rows.shape == (NUM_CLIENTS, *x0[layer].shape)
        np.testing.assert_allclose(rows[3], new_c3[layer], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows[1], c_rows[1][layer], rtol=1e-5)
        assert not rows[0].any() and not rows[2].any()


def test_a_client_without_data_keeps_its_control_variate():
    process = algorithms.build_scaffold(linear_model_fn, LR, num_clients=2)
    state = process.initialize()
    state = process.next(state, [_dataset(0)], [0]).state
    before = _arrays(state.client_control_variates)
    with pytest.warns(RuntimeWarning, match="aggregated update was not finite"):
        output = process.next(state, [_dataset(1).take(0)], [0])
    for a, b in zip(_arrays(output.state.client_control_variates), before):
        np.testing.assert_array_equal(a, b)
    train = output.metrics["client_work"]["train"]
    assert (train["num_empty_clients"], train["num_non_finite_clients"]) == (1, 0)
    assert output.metrics["finalizer"]["update_non_finite"] == 1


def test_client_ids_are_checked_before_the_round():
    process = algorithms.build_scaffold(linear_model_fn, LR, num_clients=3)
    state = process.initialize()
    data = [_dataset(0), _dataset(1)]
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*got 3"):
        process.next(state, data, [0, 3])
    with pytest.raises(ValueError, match="must be distinct, got \\[1, 1\\]"):
        process.next(state, data, [1, 1])
    with pytest.raises(ValueError, match="got 1 ids for 2 datasets"):
        process.next(state, data, [1])
    with pytest.raises(TypeError, match="next needs client_ids"):
        process.next(state, data)
    with pytest.raises(TypeError, match="client_ids must be ints, got float"):
        process.next(state, data, [0.0, 1.0])
    # An array of ids works as a list does; only the named rows change.
    table = process.next(state, data, np.array([2, 0])).state.client_control_variates
    for rows in table:
        assert rows[0].any() and rows[2].any() and not rows[1].any()


def _unreadable():
    """A client dataset that raises while it is read."""

    def records():
        yield np.ones((1, 2), np.float32), np.ones((1, 1), np.float32)
        raise OSError("record 2 is corrupt")

    return tf.data.Dataset.from_generator(records, output_signature=SPEC)


def _nan_client():
    x = np.array([[np.nan, 1.0]], np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.ones((1, 1), np.float32))).batch(1)


def _trained_once(process):
    """A state in which clients 0 and 1 both have non-zero control variates."""
    return process.next(process.initialize(), [_dataset(0), _dataset(1)], [0, 1]).state


def _assert_same(a, b):
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)


def test_a_client_with_a_non_finite_update_keeps_its_control_variate():
    for client_failure in ("raise", "drop"):
        process = algorithms.build_scaffold(
            linear_model_fn, LR, num_clients=2, client_failure=client_failure
        )
        state = _trained_once(process)
        alone = process.next(state, [_dataset(0)], [0]).state
        output = process.next(state, [_dataset(0), _nan_client()], [0, 1])
        train = output.metrics["client_work"]["train"]
        assert (train["num_non_finite_clients"], train["num_failed_clients"]) == (1, 0)
        assert train["num_examples"] == len(CLIENTS[0][0])
        rows_before, rows_after = (
            state.client_control_variates,
            output.state.client_control_variates,
        )
        _assert_same([r[1] for r in rows_after], [r[1] for r in rows_before])
        # The round is the good client's alone.
        _assert_same(
            output.state.global_model_weights.trainable, alone.global_model_weights.trainable
        )
        _assert_same(output.state.server_control_variate, alone.server_control_variate)


def test_a_failing_client_fails_the_round_or_is_dropped_keeping_its_control_variate():
    raising = algorithms.build_scaffold(linear_model_fn, LR, num_clients=2)
    state = _trained_once(raising)
    with pytest.raises(ClientWorkError, match="record 2 is corrupt") as caught:
        raising.next(state, [_dataset(0), _unreadable()], [0, 1])
    assert (caught.value.client_index, caught.value.num_clients) == (1, 2)

    dropping = algorithms.build_scaffold(linear_model_fn, LR, num_clients=2, client_failure="drop")
    alone = dropping.next(state, [_dataset(0)], [0]).state
    with pytest.warns(RuntimeWarning, match="client 1:.*record 2 is corrupt"):
        output = dropping.next(state, [_dataset(0), _unreadable()], [0, 1])
    train = output.metrics["client_work"]["train"]
    assert (train["num_failed_clients"], train["num_non_finite_clients"]) == (1, 0)
    assert train["num_examples"] == len(CLIENTS[0][0])
    for after, before, want in zip(
        _arrays(output.state.client_control_variates),
        _arrays(state.client_control_variates),
        _arrays(alone.client_control_variates),
    ):
        assert before[1].any()
        np.testing.assert_array_equal(after[1], before[1])  # the failed client's variate is kept
        np.testing.assert_array_equal(after[0], want[0])
    _assert_same(output.state.global_model_weights.trainable, alone.global_model_weights.trainable)
    _assert_same(output.state.server_control_variate, alone.server_control_variate)


def test_a_model_distributor_sends_the_weights_and_keeps_its_state(counting_distributor):
    plain = algorithms.build_scaffold(linear_model_fn, LR, num_clients=2)
    weights_type = plain.initialize.type_signature.result.member.global_model_weights
    process = algorithms.build_scaffold(
        linear_model_fn, LR, num_clients=2, model_distributor=counting_distributor(weights_type)
    )
    state = process.initialize()
    assert state.distributor == 0
    for round_number in (1, 2):
        output = process.next(state, [_dataset(0)], [0])
        assert output.metrics["distributor"] == collections.OrderedDict(rounds=round_number)
        expected = plain.next(state._replace(distributor=()), [_dataset(0)], [0]).state
        _assert_same(
            output.state.global_model_weights.trainable, expected.global_model_weights.trainable
        )
        state = output.state
        assert state.distributor == round_number
    assert list(output.metrics) == ["distributor", "client_work", "aggregator", "finalizer"]


def test_bad_arguments_are_refused_when_built(counting_distributor):
    with pytest.raises(ValueError, match="client_learning_rate must be a finite float > 0"):
        algorithms.build_scaffold(linear_model_fn, 0.0)
    with pytest.raises(ValueError, match="num_clients must be an int >= 1, got 0"):
        algorithms.build_scaffold(linear_model_fn, LR, num_clients=0)
    with pytest.raises(ValueError, match="client_failure must be one of"):
        algorithms.build_scaffold(linear_model_fn, LR, client_failure="ignore")
    with pytest.raises(TypeError, match="model_distributor must be a DistributionProcess"):
        algorithms.build_scaffold(linear_model_fn, LR, model_distributor=lambda w: w)
    other_weights = to_type(models.ModelWeights((TensorType(np.float32, [3]),), ()))
    with pytest.raises(TypeError, match=r"must distribute the model weights.*float32\[3\]"):
        algorithms.build_scaffold(
            linear_model_fn, LR, model_distributor=counting_distributor(other_weights)
        )


DIGITS_SPEC = (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32))


def digits_model_fn():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    return models.from_keras_model(
        model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), DIGITS_SPEC
    )


def _batches(dataset):
    return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(16)


def test_scaffold_learns_digits():
    train, test = digits.load_data(num_clients=6, seed=0)
    clients = [_batches(train.create_tf_dataset_for_client(c)) for c in train.client_ids]
    x, y = zip(
        *(
            _batches(test.create_tf_dataset_for_client(c)).rebatch(10**4).get_single_element()
            for c in test.client_ids
        )
    )
    x, y = np.concatenate(x), np.concatenate(y)
    process = algorithms.build_scaffold(digits_model_fn, 0.1, num_clients=6)
    state = process.initialize()

    def accuracy():
        kernel, bias = process.get_model_weights(state).trainable
        return float(np.mean(np.argmax(x @ kernel + bias, axis=1) == y))

    before = accuracy()
    for round_number in range(5):
        # Half the clients take part in each round.
        ids = [(round_number + k) % 6 for k in (0, 2, 4)]
        state = process.next(state, [clients[i] for i in ids], ids).state
    assert accuracy() > before + 0.3
    assert all(
        np.abs(rows).sum(axis=tuple(range(1, rows.ndim))).all()
        for rows in state.client_control_variates
    )
