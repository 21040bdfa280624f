"""FedAvgM, FedAdagrad, FedAdam and FedYogi: server steps computed by hand, and training on digits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_datasets import digits
from fed_learning import algorithms, models, optimizers

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
X = np.array([[1.0, 2.0], [0.5, -1.0], [-1.5, 0.5]], np.float32)
Y = np.array([[1.0], [0.0], [2.0]], np.float32)
CLIENT_LR = 0.1


def linear_model_fn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return models.from_keras_model(model, keras.losses.MeanSquaredError(), SPEC)


def _dataset():
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(3)


def _delta(kernel, bias):
    """The client's model delta (initial - trained) after one SGD step on the mean squared error."""
    residual = X @ kernel + bias - Y
    return CLIENT_LR * 2 * X.T @ residual / len(X), CLIENT_LR * 2 * residual.mean(0)


def _rounds(process, n):
    state = process.initialize()
    history = [[np.array(w) for w in process.get_model_weights(state).trainable]]
    for _ in range(n):
        state = process.next(state, [_dataset()]).state
        history.append([np.array(w) for w in process.get_model_weights(state).trainable])
    return history


def test_fed_avgm_applies_the_mean_delta_with_server_momentum():
    process = algorithms.build_fed_avgm(
        linear_model_fn, optimizers.build_sgdm(CLIENT_LR), server_learning_rate=0.5
    )
    history = _rounds(process, 2)
    (k0, b0), (k1, b1), (k2, b2) = history
    d1 = _delta(k0, b0)
    np.testing.assert_allclose(k1, k0 - 0.5 * d1[0], rtol=1e-5)
    np.testing.assert_allclose(b1, b0 - 0.5 * d1[1], rtol=1e-5)
    d2 = _delta(k1, b1)
    np.testing.assert_allclose(k2, k1 - 0.5 * (0.9 * d1[0] + d2[0]), rtol=1e-5)
    np.testing.assert_allclose(b2, b1 - 0.5 * (0.9 * d1[1] + d2[1]), rtol=1e-5)


def _adam_like_step(w, d, lr, v, tau, beta_1=0.9, beta_2=0.99):
    normalization = np.sqrt(1 - beta_2) / (1 - beta_1)
    return w - lr * normalization * (1 - beta_1) * d / (np.sqrt(v) + tau)


@pytest.mark.parametrize("name", ["adagrad", "adam", "yogi"])
def test_adaptive_server_step_is_the_papers(name):
    tau = 1e-3
    builder = getattr(algorithms, f"build_fed_{name}")
    process = builder(linear_model_fn, optimizers.build_sgdm(CLIENT_LR), server_learning_rate=0.05)
    (k0, b0), (k1, b1) = _rounds(process, 1)
    for w0, w1, d in zip((k0, b0), (k1, b1), _delta(k0, b0)):
        if name == "adagrad":
            s = tau**2 + d**2
            want = w0 - 0.05 * d / np.sqrt(s + tau**2)
        elif name == "adam":
            want = _adam_like_step(w0, d, 0.05, 0.01 * d**2, tau)
        else:
            v0 = tau**2
            want = _adam_like_step(w0, d, 0.05, v0 + 0.01 * np.sign(d**2 - v0) * d**2, tau)
        np.testing.assert_allclose(w1, want, rtol=1e-4)


def test_bad_tau_and_learning_rate_are_refused_when_built():
    sgd = optimizers.build_sgdm(CLIENT_LR)
    with pytest.raises(ValueError, match="tau must be a finite float > 0, got 0.0"):
        algorithms.build_fed_adam(linear_model_fn, sgd, tau=0.0)
    with pytest.raises(TypeError, match="tau must be a float > 0, got str"):
        algorithms.build_fed_yogi(linear_model_fn, sgd, tau="small")
    with pytest.raises(ValueError, match="learning_rate"):
        algorithms.build_fed_avgm(linear_model_fn, sgd, server_learning_rate=-1.0)


DIGITS_SPEC = (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32))


def digits_model_fn():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    return models.from_keras_model(
        model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), DIGITS_SPEC
    )


def _digits(num_clients=6):
    train, test = digits.load_data(num_clients=num_clients, seed=0)

    def batches(dataset):
        return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(16)

    clients = [batches(train.create_tf_dataset_for_client(c)) for c in train.client_ids]
    x, y = zip(
        *(
            batches(test.create_tf_dataset_for_client(c)).rebatch(10**4).get_single_element()
            for c in test.client_ids
        )
    )
    return clients, np.concatenate(x), np.concatenate(y)


def _accuracy(process, state, x, y):
    kernel, bias = process.get_model_weights(state).trainable
    return float(np.mean(np.argmax(x @ kernel + bias, axis=1) == y))


@pytest.mark.parametrize(
    "name, server_learning_rate",
    [("avgm", 1.0), ("adagrad", 0.1), ("adam", 0.03), ("yogi", 0.03)],
)
def test_adaptive_builders_learn_digits(name, server_learning_rate):
    clients, x, y = _digits()
    builder = getattr(algorithms, f"build_fed_{name}")
    process = builder(
        digits_model_fn, optimizers.build_sgdm(0.1), server_learning_rate=server_learning_rate
    )
    state = process.initialize()
    before = _accuracy(process, state, x, y)
    for _ in range(5):
        state = process.next(state, clients).state
    assert _accuracy(process, state, x, y) > before + 0.3
