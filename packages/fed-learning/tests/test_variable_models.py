"""A user's own VariableModel (the image-classification tutorial's MnistModel, shrunk) and a model of TFF's
older `tff.learning.Model` interface train with every algorithm and evaluate, checked against hand-written
TensorFlow loops."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_learning import (
    Model,
    algorithms,
    build_federated_averaging_process,
    build_federated_evaluation,
    models,
    optimizers,
)

FEATURES, CLASSES = 6, 3


class LinearVariables(tf.Module):
    def __init__(self):
        super().__init__()
        self.weights = tf.Variable(lambda: tf.zeros((FEATURES, CLASSES)), name="weights")
        self.bias = tf.Variable(lambda: tf.zeros((CLASSES,)), name="bias")
        self.num_examples = tf.Variable(0.0, trainable=False)
        self.loss_sum = tf.Variable(0.0, trainable=False)
        self.accuracy_sum = tf.Variable(0.0, trainable=False)


def _probabilities(weights, bias, x):
    return tf.nn.softmax(tf.matmul(x, weights) + bias)


def _loss_and_accuracy(probabilities, labels):
    flat = tf.reshape(labels, [-1])
    loss = -tf.reduce_mean(tf.reduce_sum(tf.one_hot(flat, CLASSES) * tf.math.log(probabilities), 1))
    predictions = tf.cast(tf.argmax(probabilities, 1), tf.int32)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(predictions, flat), tf.float32))
    return loss, accuracy, predictions


INPUT_SPEC = collections.OrderedDict(
    x=tf.TensorSpec([None, FEATURES], tf.float32), y=tf.TensorSpec([None, 1], tf.int32)
)


class LinearModel(models.VariableModel):
    """The tutorial's MnistModel, written the same way (tf.function methods, metrics in variables)."""

    def __init__(self):
        self._v = LinearVariables()

    @property
    def trainable_variables(self):
        return [self._v.weights, self._v.bias]

    @property
    def non_trainable_variables(self):
        return []

    @property
    def local_variables(self):
        return [self._v.num_examples, self._v.loss_sum, self._v.accuracy_sum]

    @property
    def input_spec(self):
        return INPUT_SPEC

    @tf.function
    def predict_on_batch(self, x, training=True):
        return _probabilities(self._v.weights, self._v.bias, x)

    @tf.function
    def forward_pass(self, batch, training=True):
        probabilities = _probabilities(self._v.weights, self._v.bias, batch["x"])
        loss, accuracy, predictions = _loss_and_accuracy(probabilities, batch["y"])
        n = tf.cast(tf.size(batch["y"]), tf.float32)
        self._v.num_examples.assign_add(n)
        self._v.loss_sum.assign_add(loss * n)
        self._v.accuracy_sum.assign_add(accuracy * n)
        return models.BatchOutput(
            loss=loss, predictions=predictions, num_examples=tf.shape(batch["x"])[0]
        )

    @tf.function
    def report_local_unfinalized_metrics(self):
        v = self._v
        return collections.OrderedDict(
            num_examples=[v.num_examples],
            loss=[v.loss_sum, v.num_examples],
            accuracy=[v.accuracy_sum, v.num_examples],
        )

    def metric_finalizers(self):
        return collections.OrderedDict(
            num_examples=tf.function(func=lambda s: s[0]),
            loss=tf.function(func=lambda s: s[0] / s[1]),
            accuracy=tf.function(func=lambda s: s[0] / s[1]),
        )

    @tf.function
    def reset_metrics(self):
        for variable in self.local_variables:
            variable.assign(tf.zeros_like(variable))


def _client(n, seed, batch_size=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = np.argmax(x[:, :CLASSES], axis=1).astype(np.int32).reshape(-1, 1)
    return x, y


def _dataset(x, y, batch_size=4):
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(x=x, y=y)).batch(batch_size)


def _batches(x, y, batch_size=4):
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def _local_sgd(weights, x, y, learning_rate, proximal_strength=0.0, losses=None):
    """One client's pass of SGD over its batches, written directly in TensorFlow; appends each batch's
    `(loss, size)` to `losses`."""
    w, b = (tf.Variable(t) for t in weights)
    w0, b0 = (tf.constant(t) for t in weights)
    for xb, yb in _batches(x, y):
        with tf.GradientTape() as tape:
            loss, _, _ = _loss_and_accuracy(_probabilities(w, b, xb), yb)
            if losses is not None:
                losses.append((float(loss), len(xb)))
            loss += (
                0.5
                * proximal_strength
                * (tf.reduce_sum((w - w0) ** 2) + tf.reduce_sum((b - b0) ** 2))
            )
        gw, gb = tape.gradient(loss, [w, b])
        w.assign_sub(learning_rate * gw)
        b.assign_sub(learning_rate * gb)
    return [w.numpy(), b.numpy()]


def _metrics(weights, parts):
    """The example-weighted loss and accuracy of `weights` over all the parts' batches."""
    total = loss_sum = accuracy_sum = 0.0
    for x, y in parts:
        for xb, yb in _batches(x, y):
            loss, accuracy, _ = _loss_and_accuracy(_probabilities(*weights, xb), yb)
            loss_sum += float(loss) * len(xb)
            accuracy_sum += float(accuracy) * len(xb)
            total += len(xb)
    return total, loss_sum / total, accuracy_sum / total


def _weighted_mean(arrays_by_client, weights):
    return [
        sum(w * arrays[i] for w, arrays in zip(weights, arrays_by_client)) / sum(weights)
        for i in range(len(arrays_by_client[0]))
    ]


PARTS = [_client(10, seed=1), _client(7, seed=2)]
ZEROS = [np.zeros((FEATURES, CLASSES), np.float32), np.zeros((CLASSES,), np.float32)]


def _assert_weights(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_fed_avg_trains_a_custom_variable_model_as_a_hand_written_loop():
    process = algorithms.build_weighted_fed_avg(
        LinearModel,
        client_optimizer_fn=optimizers.build_sgdm(learning_rate=0.5),
        server_optimizer_fn=optimizers.build_sgdm(learning_rate=1.0),
    )
    state = process.initialize()
    _assert_weights(process.get_model_weights(state).trainable, ZEROS)
    output = process.next(state, [_dataset(x, y) for x, y in PARTS])

    losses = []
    trained = [_local_sgd(ZEROS, x, y, 0.5, losses=losses) for x, y in PARTS]
    _assert_weights(
        process.get_model_weights(output.state).trainable,
        _weighted_mean(trained, [len(x) for x, _ in PARTS]),
    )
    train = output.metrics["client_work"]["train"]
    assert list(train)[:3] == ["num_examples", "loss", "accuracy"]
    assert train["num_examples"] == 17
    # The training loss is accumulated batch by batch during local training, over all clients.
    expected = sum(loss * n for loss, n in losses) / 17
    assert train["loss"] == pytest.approx(expected, rel=1e-5)


def test_a_round_of_a_custom_variable_model_serializes_and_runs_restored():
    """The model is built inside the client computation, so the round ships without the Python class."""
    process = algorithms.build_weighted_fed_avg(LinearModel, optimizers.build_sgdm(0.5))
    state = process.initialize()
    datasets = [_dataset(x, y) for x, y in PARTS]
    restored = deserialize_computation(serialize_computation(process.next))
    got = restored(state, datasets)
    want = process.next(state, datasets)
    _assert_weights(
        got.state.global_model_weights.trainable, want.state.global_model_weights.trainable
    )
    assert got.metrics["client_work"]["train"] == want.metrics["client_work"]["train"]


def test_unweighted_fed_avg_and_fed_prox_train_a_custom_variable_model():
    datasets = [_dataset(x, y) for x, y in PARTS]
    unweighted = algorithms.build_unweighted_fed_avg(LinearModel, optimizers.build_sgdm(0.5))
    got = unweighted.get_model_weights(unweighted.next(unweighted.initialize(), datasets).state)
    _assert_weights(
        got.trainable, _weighted_mean([_local_sgd(ZEROS, x, y, 0.5) for x, y in PARTS], [1, 1])
    )

    prox = algorithms.build_weighted_fed_prox(LinearModel, 2.0, optimizers.build_sgdm(0.5))
    got = prox.get_model_weights(prox.next(prox.initialize(), datasets).state)
    trained = [_local_sgd(ZEROS, x, y, 0.5, proximal_strength=2.0) for x, y in PARTS]
    _assert_weights(got.trainable, _weighted_mean(trained, [10, 7]))


def test_fed_sgd_takes_a_gradient_step_on_a_custom_variable_model():
    process = algorithms.build_fed_sgd(LinearModel, server_optimizer_fn=optimizers.build_sgdm(0.7))
    state = process.initialize()
    new = process.get_model_weights(process.next(state, [_dataset(x, y) for x, y in PARTS]).state)
    # FedSGD's gradient is the example-weighted mean of batch-mean gradients: the gradient of the mean loss.
    w, b = (tf.Variable(t) for t in ZEROS)
    with tf.GradientTape() as tape:
        total = tf.add_n(
            [
                _loss_and_accuracy(_probabilities(w, b, xb), yb)[0] * len(xb)
                for x, y in PARTS
                for xb, yb in _batches(x, y)
            ]
        ) / sum(len(x) for x, _ in PARTS)
    gradients = tape.gradient(total, [w, b])
    _assert_weights(new.trainable, [z - 0.7 * g.numpy() for z, g in zip(ZEROS, gradients)])


def test_fed_eval_and_federated_evaluation_of_a_custom_variable_model():
    training = algorithms.build_weighted_fed_avg(LinearModel, optimizers.build_sgdm(0.5))
    trained_state = training.next(training.initialize(), [_dataset(x, y) for x, y in PARTS]).state
    weights = training.get_model_weights(trained_state)
    num_examples, loss, accuracy = _metrics(weights.trainable, PARTS)

    evaluation = algorithms.build_fed_eval(LinearModel)
    state = evaluation.set_model_weights(evaluation.initialize(), weights)
    first = evaluation.next(state, [_dataset(x, y) for x, y in PARTS])
    current = first.metrics["client_work"]["eval"]["current_round_metrics"]
    assert current["num_examples"] == num_examples
    assert current["loss"] == pytest.approx(loss, rel=1e-5)
    assert current["accuracy"] == pytest.approx(accuracy, rel=1e-5)
    second = evaluation.next(first.state, [_dataset(*PARTS[0])])
    assert second.metrics["client_work"]["eval"]["total_rounds_metrics"]["num_examples"] == 27

    legacy = build_federated_evaluation(LinearModel)(weights, [_dataset(x, y) for x, y in PARTS])
    assert legacy["eval"]["loss"] == pytest.approx(loss, rel=1e-5)


class CountingModel(LinearModel):
    """A model whose non-trainable variable (a count of the batches seen, as batch-norm statistics are
    updated by training) changes during local training and scales the logits."""

    def __init__(self):
        super().__init__()
        self._batches = tf.Variable(1.0, trainable=False)

    @property
    def non_trainable_variables(self):
        return [self._batches]

    @tf.function
    def forward_pass(self, batch, training=True):
        logits = (tf.matmul(batch["x"], self._v.weights) + self._v.bias) / self._batches
        loss, _, predictions = _loss_and_accuracy(tf.nn.softmax(logits), batch["y"])
        if training:
            self._batches.assign_add(1.0)
        n = tf.cast(tf.size(batch["y"]), tf.float32)
        self._v.num_examples.assign_add(n)
        self._v.loss_sum.assign_add(loss * n)
        self._v.accuracy_sum.assign_add(0.0)
        return models.BatchOutput(loss, predictions, tf.shape(batch["x"])[0])


def test_non_trainable_variables_change_during_local_training_and_stay_on_the_client():
    process = algorithms.build_weighted_fed_avg(CountingModel, optimizers.build_sgdm(0.5))
    state = process.initialize()
    output = process.next(state, [_dataset(x, y) for x, y in PARTS])

    def local(x, y):
        w, b = (tf.Variable(t) for t in ZEROS)
        for count, (xb, yb) in enumerate(_batches(x, y), start=1):
            with tf.GradientTape() as tape:
                logits = (tf.matmul(xb, w) + b) / count
                loss, _, _ = _loss_and_accuracy(tf.nn.softmax(logits), yb)
            gw, gb = tape.gradient(loss, [w, b])
            w.assign_sub(0.5 * gw)
            b.assign_sub(0.5 * gb)
        return [w.numpy(), b.numpy()]

    new = process.get_model_weights(output.state)
    _assert_weights(new.trainable, _weighted_mean([local(x, y) for x, y in PARTS], [10, 7]))
    # As in TFF, only the trainable weights are averaged: the server keeps its non-trainable ones.
    assert new.non_trainable[0] == 1.0


def test_a_model_instance_is_refused_with_directions():
    with pytest.raises(TypeError, match="no-argument function that builds the model"):
        algorithms.build_weighted_fed_avg(LinearModel(), optimizers.build_sgdm(0.1))


def test_a_model_function_returning_one_model_again_is_refused():
    shared = LinearModel()
    with pytest.raises(ValueError, match="must build a new model"):
        algorithms.build_weighted_fed_avg(lambda: shared, optimizers.build_sgdm(0.1))


def test_finalizers_must_name_the_reported_metrics():
    class Mismatched(LinearModel):
        def metric_finalizers(self):
            return collections.OrderedDict(loss=lambda s: s[0] / s[1])

    with pytest.raises(ValueError, match=r"metric_finalizers\(\) has the metrics \['loss'\]"):
        algorithms.build_fed_eval(Mismatched)


@fc.federated_computation
def _aggregate_outputs(outputs):
    return collections.OrderedDict(
        num_examples=fc.federated_sum(outputs.num_examples),
        loss=fc.federated_mean(outputs.loss, outputs.num_examples),
    )


class OlderLinearModel(Model):
    """TFF's older interface: local outputs aggregated by the model's own federated computation."""

    def __init__(self):
        self._v = LinearVariables()

    @property
    def trainable_variables(self):
        return [self._v.weights, self._v.bias]

    @property
    def non_trainable_variables(self):
        return []

    @property
    def input_spec(self):
        return INPUT_SPEC

    @tf.function
    def forward_pass(self, batch, training=True):
        probabilities = _probabilities(self._v.weights, self._v.bias, batch["x"])
        loss, _, predictions = _loss_and_accuracy(probabilities, batch["y"])
        n = tf.cast(tf.size(batch["y"]), tf.float32)
        self._v.num_examples.assign_add(n)
        self._v.loss_sum.assign_add(loss * n)
        return models.BatchOutput(loss, predictions, tf.shape(batch["x"])[0])

    @tf.function
    def report_local_outputs(self):
        return collections.OrderedDict(
            num_examples=self._v.num_examples, loss=self._v.loss_sum / self._v.num_examples
        )

    @property
    def federated_output_computation(self):
        return _aggregate_outputs


def test_a_model_of_the_older_interface_trains_and_evaluates():
    process = build_federated_averaging_process(
        OlderLinearModel, client_optimizer_fn=optimizers.build_sgdm(0.5)
    )
    state, metrics = process.next(process.initialize(), [_dataset(x, y) for x, y in PARTS])
    trained = [_local_sgd(ZEROS, x, y, 0.5) for x, y in PARTS]
    _assert_weights(state.model.trainable, _weighted_mean(trained, [10, 7]))
    assert metrics["train"]["num_examples"] == 17

    evaluation = build_federated_evaluation(OlderLinearModel)
    result = evaluation(state.model, [_dataset(x, y) for x, y in PARTS])
    num_examples, loss, _ = _metrics(state.model.trainable, PARTS)
    assert result["eval"]["num_examples"] == num_examples
    # The model's own aggregation: the example-weighted mean of the clients' mean losses.
    assert result["eval"]["loss"] == pytest.approx(loss, rel=1e-5)

    with pytest.raises(TypeError, match="report_local_unfinalized_metrics"):
        algorithms.build_fed_eval(OlderLinearModel)
