"""Personalization evaluation: per-client metrics of the baseline and each strategy, checked against
numpy on a linear model."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_learning import algorithms, models
from fed_types import TensorType

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
W0 = np.array([[0.5], [-0.5]], np.float32)
STEP = 0.1


def model_fn():
    keras_model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                1, use_bias=False, kernel_initializer=keras.initializers.Constant(W0)
            ),
        ]
    )
    return models.from_keras_model(keras_model, keras.losses.MeanSquaredError(), SPEC)


def _client(seed, n_train, n_test):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_test, 2)).astype(np.float32)
    y = (x @ np.array([[1.0], [2.0]]) + 0.5).astype(np.float32)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


CLIENTS = [_client(1, 4, 3), _client(2, 5, 2), _client(3, 3, 4)]


def _inputs(clients=CLIENTS):
    return [
        collections.OrderedDict(
            train_data=tf.data.Dataset.from_tensor_slices(train),
            test_data=tf.data.Dataset.from_tensor_slices(test),
        )
        for train, test in clients
    ]


def evaluate(model, dataset):
    x, y = dataset.batch(1000).get_single_element()
    predictions = model.predict_on_batch(x, training=False)
    return collections.OrderedDict(
        mse=tf.reduce_mean(tf.square(predictions - y)), num_examples=tf.shape(x)[0]
    )


def _gradient_step(model, dataset, optimizer=None):
    x, y = dataset.batch(1000).get_single_element()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model.predict_on_batch(x) - y))
    gradients = tape.gradient(loss, model.trainable_variables)
    if optimizer is None:
        for variable, gradient in zip(model.trainable_variables, gradients):
            variable.assign_sub(STEP * gradient)
    else:
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))


def build_one_step():
    def personalize(model, train_data, test_data):
        _gradient_step(model, train_data)
        return evaluate(model, test_data)

    return personalize


def build_two_keras_steps():
    optimizer = keras.optimizers.SGD(STEP)  # its variables are made when the strategy is built

    def personalize(model, train_data, test_data):
        _gradient_step(model, train_data, optimizer)
        _gradient_step(model, train_data, optimizer)
        return collections.OrderedDict(after_two=evaluate(model, test_data))

    return personalize


def _mse(w, x, y):
    return float(np.mean(np.square(x @ w - y)))


def _step(w, x, y):
    return w - STEP * 2.0 / len(x) * x.T @ (x @ w - y)


def _weights():
    return models.ModelWeights([W0], [])


def test_metrics_of_every_client_for_baseline_and_each_strategy():
    computation = algorithms.build_personalization_eval_computation(
        model_fn,
        collections.OrderedDict(one_step=build_one_step, two_keras_steps=build_two_keras_steps),
        evaluate,
    )
    result = computation(_weights(), _inputs())
    assert list(result) == ["baseline_metrics", "one_step", "two_keras_steps"]
    assert list(result["baseline_metrics"]) == ["mse", "num_examples"]
    assert list(result["two_keras_steps"]) == ["after_two"]
    w = W0.astype(np.float64)
    for k, ((x_train, y_train), (x_test, y_test)) in enumerate(CLIENTS):
        assert result["baseline_metrics"]["mse"][k] == pytest.approx(_mse(w, x_test, y_test), 1e-5)
        assert result["baseline_metrics"]["num_examples"][k] == len(x_test)
        once = _step(w, x_train, y_train)
        assert result["one_step"]["mse"][k] == pytest.approx(_mse(once, x_test, y_test), 1e-5)
        # Every strategy starts from the broadcast weights, not from the previous strategy's model.
        twice = _step(once, x_train, y_train)
        assert result["two_keras_steps"]["after_two"]["mse"][k] == pytest.approx(
            _mse(twice, x_test, y_test), 1e-5
        )
    assert computation.type_signature.result.member["baseline_metrics"]["mse"] == TensorType(
        np.float32, [None]
    )


def test_at_most_max_num_clients_are_sampled_without_replacement():
    computation = algorithms.build_personalization_eval_computation(
        model_fn, collections.OrderedDict(one_step=build_one_step), evaluate, max_num_clients=2
    )
    baseline = [_mse(W0, *test) for _, test in CLIENTS]
    personalized = [_mse(_step(W0, *train), *test) for train, test in CLIENTS]
    seen = set()
    for _ in range(12):
        result = computation(_weights(), _inputs())
        got = result["baseline_metrics"]["mse"]
        assert len(got) == 2
        chosen = [int(np.argmin(np.abs(np.array(baseline) - value))) for value in got]
        assert chosen[0] < chosen[1]  # two different clients, in their order
        for position, k in enumerate(chosen):
            assert got[position] == pytest.approx(baseline[k], 1e-5)
            # Entry `position` of every metric comes from the same client.
            assert result["one_step"]["mse"][position] == pytest.approx(personalized[k], 1e-5)
        seen.add(tuple(chosen))
    assert len(seen) > 1


def test_context_is_given_to_every_strategy():
    def build_scaled():
        def personalize(model, train_data, test_data, context):
            return collections.OrderedDict(scaled=2.0 * context)

        return personalize

    computation = algorithms.build_personalization_eval_computation(
        model_fn,
        collections.OrderedDict(scaled=build_scaled),
        evaluate,
        context_tff_type=TensorType(np.float32),
    )
    inputs = _inputs(CLIENTS[:2])
    for client, context in zip(inputs, [1.5, -1.0]):
        client["context"] = np.float32(context)
    result = computation(_weights(), inputs)
    np.testing.assert_allclose(result["scaled"]["scaled"], [3.0, -2.0])


def test_bad_arguments_are_refused_when_building():
    strategies = collections.OrderedDict(one_step=build_one_step)
    with pytest.raises(ValueError, match="'baseline_metrics' is the key"):
        algorithms.build_personalization_eval_computation(
            model_fn, collections.OrderedDict(baseline_metrics=build_one_step), evaluate
        )
    with pytest.raises(ValueError, match="max_num_clients must be a positive int, got 0"):
        algorithms.build_personalization_eval_computation(
            model_fn, strategies, evaluate, max_num_clients=0
        )
    with pytest.raises(TypeError, match="max_num_clients must be a positive int"):
        algorithms.build_personalization_eval_computation(
            model_fn, strategies, evaluate, max_num_clients=2.5
        )
    with pytest.raises(TypeError, match="must return a fed.learning.models.VariableModel"):
        algorithms.build_personalization_eval_computation(lambda: 3, strategies, evaluate)
    with pytest.raises(TypeError, match=r"personalize_fn_dict\['one_step'\] must be"):
        algorithms.build_personalization_eval_computation(
            model_fn, collections.OrderedDict(one_step=3), evaluate
        )
    with pytest.raises(TypeError, match="baseline_evaluate_fn must be a function"):
        algorithms.build_personalization_eval_computation(model_fn, strategies, None)
