"""q-FedAvg: the server step computed by hand from the paper's formulas, and training on digits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_datasets import digits
from fed_learning import algorithms, models, optimizers

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
CLIENTS = [
    (np.array([[1.0, 2.0], [0.5, -1.0]], np.float32), np.array([[1.0], [0.0]], np.float32)),
    (
        np.array([[-1.5, 0.5], [2.0, 1.0], [0.0, 1.0]], np.float32),
        np.array([[3.0], [-2.0], [1.0]], np.float32),
    ),
]
CLIENT_LR = 0.1


def linear_model_fn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return models.from_keras_model(model, keras.losses.MeanSquaredError(), SPEC)


def _datasets():
    return [tf.data.Dataset.from_tensor_slices(c).batch(len(c[0])) for c in CLIENTS]


def _trainable(process, state):
    return [np.array(w) for w in process.get_model_weights(state).trainable]


def test_q_fed_avg_step_is_sum_of_deltas_over_sum_of_h():
    q = 2.0
    process = algorithms.build_q_fed_avg(linear_model_fn, optimizers.build_sgdm(CLIENT_LR), q=q)
    state = process.initialize()
    kernel, bias = _trainable(process, state)
    lipschitz = 1 / CLIENT_LR
    deltas, hs = [], []
    for x, y in CLIENTS:
        residual = x @ kernel + bias - y
        loss = float(np.mean(residual**2))
        update = [CLIENT_LR * 2 * x.T @ residual / len(x), CLIENT_LR * 2 * residual.mean(0)]
        dw = [lipschitz * u for u in update]
        deltas.append([loss**q * d for d in dw])
        hs.append(q * loss ** (q - 1) * sum(np.sum(d**2) for d in dw) + lipschitz * loss**q)
    output = process.next(state, _datasets())
    for i, (got, w0) in enumerate(zip(_trainable(process, output.state), (kernel, bias))):
        want = w0 - (deltas[0][i] + deltas[1][i]) / sum(hs)
        np.testing.assert_allclose(got, want, rtol=1e-4)
    assert output.metrics["client_work"]["train"]["num_examples"] == 5


def test_q_zero_is_fed_avg_with_clients_weighted_equally():
    sgd = optimizers.build_sgdm(CLIENT_LR)
    fair = algorithms.build_q_fed_avg(linear_model_fn, sgd, q=0.0)
    plain = algorithms.build_unweighted_fed_avg(linear_model_fn, sgd)
    got = _trainable(fair, fair.next(fair.initialize(), _datasets()).state)
    want = _trainable(plain, plain.next(plain.initialize(), _datasets()).state)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_client_without_data_is_left_out():
    process = algorithms.build_q_fed_avg(linear_model_fn, optimizers.build_sgdm(CLIENT_LR))
    state = process.initialize()
    alone = _trainable(process, process.next(state, _datasets()[:1]).state)
    with_empty = process.next(state, [_datasets()[0], _datasets()[1].take(0)])
    for a, b in zip(_trainable(process, with_empty.state), alone):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert with_empty.metrics["client_work"]["train"]["num_empty_clients"] == 1


def test_bad_arguments_are_refused_when_built():
    sgd = optimizers.build_sgdm(CLIENT_LR)
    with pytest.raises(ValueError, match="q must be a finite float >= 0, got -1.0"):
        algorithms.build_q_fed_avg(linear_model_fn, sgd, q=-1.0)
    with pytest.raises(ValueError, match="lipschitz must be a finite float > 0, got 0"):
        algorithms.build_q_fed_avg(linear_model_fn, sgd, lipschitz=0)
    with pytest.raises(TypeError, match="q must be a float >= 0, got str"):
        algorithms.build_q_fed_avg(linear_model_fn, sgd, q="1")


DIGITS_SPEC = (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32))


def digits_model_fn():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    return models.from_keras_model(
        model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), DIGITS_SPEC
    )


def _batches(dataset):
    return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(16)


def test_q_fed_avg_learns_digits():
    train, test = digits.load_data(num_clients=6, seed=0)
    clients = [_batches(train.create_tf_dataset_for_client(c)) for c in train.client_ids]
    x, y = zip(
        *(
            _batches(test.create_tf_dataset_for_client(c)).rebatch(10**4).get_single_element()
            for c in test.client_ids
        )
    )
    x, y = np.concatenate(x), np.concatenate(y)
    process = algorithms.build_q_fed_avg(
        digits_model_fn, optimizers.build_sgdm(0.1), q=1.0, lipschitz=1.0
    )
    state = process.initialize()

    def accuracy():
        kernel, bias = process.get_model_weights(state).trainable
        return float(np.mean(np.argmax(x @ kernel + bias, axis=1) == y))

    before = accuracy()
    for _ in range(5):
        state = process.next(state, clients).state
    assert accuracy() > before + 0.3
