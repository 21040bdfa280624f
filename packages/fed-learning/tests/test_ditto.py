"""Ditto: global and personalized models over two rounds computed by hand, the evaluation of the
personalized models, and training on digits."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_core.execution import ClientWorkError
from fed_datasets import digits
from fed_learning import algorithms, models, optimizers

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
X = np.array([[1.0, 2.0], [0.5, -1.0], [-1.5, 0.5]], np.float32)
Y = np.array([[1.0], [0.0], [2.0]], np.float32)
LR, PERSONAL_LR, LAM = 0.1, 0.05, 2.0


def linear_model_fn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return models.from_keras_model(
        model, keras.losses.MeanSquaredError(), SPEC, metrics=[keras.metrics.MeanSquaredError()]
    )


def _dataset():
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(3)


def _gradient(weights):
    residual = X @ weights[0] + weights[1] - Y
    return [2 * X.T @ residual / len(X), 2 * residual.mean(0)]


def _loss(weights):
    return float(np.mean((X @ weights[0] + weights[1] - Y) ** 2))


def _arrays(structure):
    return [np.array(w) for w in structure]


def _build(num_clients=3):
    return algorithms.build_ditto(
        linear_model_fn,
        optimizers.build_sgdm(LR),
        optimizers.build_sgdm(PERSONAL_LR),
        lam=LAM,
        num_clients=num_clients,
    )


def test_two_rounds_match_the_paper_by_hand():
    process = _build()
    state = process.initialize()
    w0 = _arrays(process.get_model_weights(state).trainable)
    for layer, rows in enumerate(_arrays(state.personalized_weights)):
        for row in rows:  # every personalized model starts as the initial global model
            np.testing.assert_array_equal(row, w0[layer])
    state = process.next(state, [_dataset()], [2]).state
    w1 = [w - LR * g for w, g in zip(w0, _gradient(w0))]
    v1 = [w - PERSONAL_LR * g for w, g in zip(w0, _gradient(w0))]  # v = w at first: no pull
    state = process.next(state, [_dataset()], [2]).state
    w2 = [w - LR * g for w, g in zip(w1, _gradient(w1))]
    v2 = [v - PERSONAL_LR * (g + LAM * (v - w)) for v, g, w in zip(v1, _gradient(v1), w1)]
    for got, want in zip(_arrays(process.get_model_weights(state).trainable), w2):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    table = _arrays(state.personalized_weights)
    for layer, rows in enumerate(table):
        np.testing.assert_allclose(rows[2], v2[layer], rtol=1e-5)
        np.testing.assert_array_equal(rows[0], w0[layer])
        np.testing.assert_array_equal(rows[1], w0[layer])

    evaluate = algorithms.build_ditto_evaluation(linear_model_fn, process)
    metrics = evaluate(state, [_dataset(), _dataset()], [2, 0])
    want = (_loss(v2) + _loss(w0)) / 2
    np.testing.assert_allclose(metrics["mean_squared_error"], want, rtol=1e-5)
    assert metrics["num_examples"] == 6


def _unreadable():
    """A client dataset that raises while it is read."""

    def records():
        yield X[:1], Y[:1]
        raise OSError("record 2 is corrupt")

    return tf.data.Dataset.from_generator(records, output_signature=SPEC)


def _nan_client():
    return tf.data.Dataset.from_tensor_slices((np.full_like(X, np.nan), Y)).batch(3)


def _personalized_once(**kwargs):
    """A process, and a state in which clients 0 and 1 have trained their personalized models."""
    process = algorithms.build_ditto(
        linear_model_fn,
        optimizers.build_sgdm(LR),
        optimizers.build_sgdm(PERSONAL_LR),
        lam=LAM,
        num_clients=2,
        **kwargs,
    )
    return process, process.next(process.initialize(), [_dataset(), _dataset()], [0, 1]).state


def _assert_rows(after, before, client):
    for a, b in zip(_arrays(after.personalized_weights), _arrays(before.personalized_weights)):
        np.testing.assert_array_equal(a[client], b[client])


def test_a_client_with_a_non_finite_update_keeps_its_personalized_model():
    process, state = _personalized_once(client_failure="drop")
    alone = process.next(state, [_dataset()], [0]).state
    output = process.next(state, [_dataset(), _nan_client()], [0, 1])
    train = output.metrics["client_work"]["train"]
    assert (train["num_non_finite_clients"], train["num_failed_clients"]) == (1, 0)
    assert train["num_examples"] == 3
    _assert_rows(output.state, state, 1)
    _assert_rows(output.state, alone, 0)
    for a, b in zip(
        _arrays(output.state.global_model_weights.trainable),
        _arrays(alone.global_model_weights.trainable),
    ):
        np.testing.assert_array_equal(a, b)


def test_a_failing_client_fails_the_round_or_is_dropped_keeping_its_personalized_model():
    process, state = _personalized_once()
    with pytest.raises(ClientWorkError, match="record 2 is corrupt") as caught:
        process.next(state, [_dataset(), _unreadable()], [0, 1])
    assert caught.value.client_index == 1

    process, state = _personalized_once(client_failure="drop")
    alone = process.next(state, [_dataset()], [0]).state
    with pytest.warns(RuntimeWarning, match="client 1:.*record 2 is corrupt"):
        output = process.next(state, [_dataset(), _unreadable()], [0, 1])
    train = output.metrics["client_work"]["train"]
    assert (train["num_failed_clients"], train["num_non_finite_clients"]) == (1, 0)
    assert train["num_examples"] == 3
    initial = _arrays(process.initialize().personalized_weights)
    assert any((a[1] != b[1]).any() for a, b in zip(_arrays(state.personalized_weights), initial))
    _assert_rows(output.state, state, 1)  # the failed client's model is kept
    _assert_rows(output.state, alone, 0)
    for a, b in zip(
        _arrays(output.state.global_model_weights.trainable),
        _arrays(alone.global_model_weights.trainable),
    ):
        np.testing.assert_array_equal(a, b)


def test_a_model_distributor_sends_the_global_weights(counting_distributor):
    plain, state = _personalized_once()
    weights_type = plain.initialize.type_signature.result.member.global_model_weights
    process, _ = _personalized_once(model_distributor=counting_distributor(weights_type))
    output = process.next(state._replace(distributor=np.int32(4)), [_dataset()], [1])
    assert output.state.distributor == 5
    assert output.metrics["distributor"] == collections.OrderedDict(rounds=5)
    expected = plain.next(state, [_dataset()], [1]).state
    for a, b in zip(
        _arrays(output.state.personalized_weights), _arrays(expected.personalized_weights)
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="model_distributor must be a DistributionProcess"):
        _personalized_once(model_distributor="broadcast")
    with pytest.raises(ValueError, match="client_failure must be one of"):
        _personalized_once(client_failure="skip")


def test_ids_and_arguments_are_checked():
    process = _build()
    state = process.initialize()
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        process.next(state, [_dataset()], [-1])
    evaluate = algorithms.build_ditto_evaluation(linear_model_fn, process)
    with pytest.raises(ValueError, match="got 2 ids for 1 datasets"):
        evaluate(state, [_dataset()], [0, 1])
    with pytest.raises(ValueError, match="lam must be a finite float >= 0, got -1.0"):
        algorithms.build_ditto(
            linear_model_fn, optimizers.build_sgdm(LR), optimizers.build_sgdm(LR), lam=-1.0
        )
    fed_avg = algorithms.build_weighted_fed_avg(linear_model_fn, optimizers.build_sgdm(LR))
    with pytest.raises(TypeError, match="process must be a process built by build_ditto"):
        algorithms.build_ditto_evaluation(linear_model_fn, fed_avg)


DIGITS_SPEC = (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32))


def digits_model_fn():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    return models.from_keras_model(
        model,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        DIGITS_SPEC,
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def _batches(dataset):
    return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(16)


def test_ditto_learns_digits_and_its_personalized_models_fit_their_clients():
    train, test = digits.load_data(num_clients=6, seed=0)
    clients = [_batches(train.create_tf_dataset_for_client(c)) for c in train.client_ids]
    tests = [_batches(test.create_tf_dataset_for_client(c)) for c in test.client_ids]
    ids = list(range(6))
    process = algorithms.build_ditto(
        digits_model_fn,
        optimizers.build_sgdm(0.1),
        optimizers.build_sgdm(0.1),
        lam=0.1,
        num_clients=6,
    )
    evaluate = algorithms.build_ditto_evaluation(digits_model_fn, process)
    state = process.initialize()
    before = evaluate(state, tests, ids)["sparse_categorical_accuracy"]
    for _ in range(5):
        state = process.next(state, clients, ids).state
    personalized = evaluate(state, tests, ids)["sparse_categorical_accuracy"]
    assert personalized > before + 0.3
