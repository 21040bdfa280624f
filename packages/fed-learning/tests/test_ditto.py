"""Ditto: global and personalized models over two rounds computed by hand, the evaluation of the
personalized models, and training on digits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
