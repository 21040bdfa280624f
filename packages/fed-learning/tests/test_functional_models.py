"""FunctionalModel with TFF's API: `functional_model_from_keras` takes TFF's metric constructors, the model's
methods take TFF's keyword names, weights are tuples, and the building-your-own-algorithm tutorial's client
loop runs."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_learning import algorithms, models, optimizers
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType

FEATURES, CLASSES = 5, 3


def _keras_model():
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(CLASSES, kernel_initializer=keras.initializers.GlorotNormal(seed=0)),
            keras.layers.Softmax(),
        ]
    )


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = np.argmax(x[:, :CLASSES], axis=1).astype(np.int32).reshape(-1, 1)
    return x, y


def _dataset(x, y, batch_size=4):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


INPUT_SPEC = _dataset(*_data(4, 0)).element_spec


def _functional(metrics_constructor=None):
    return models.functional_model_from_keras(
        _keras_model(),
        loss_fn=keras.losses.SparseCategoricalCrossentropy(),
        input_spec=INPUT_SPEC,
        metrics_constructor=metrics_constructor,
    )


def test_metrics_constructors_in_every_form_tff_takes():
    by_name = _functional(collections.OrderedDict(accuracy=keras.metrics.SparseCategoricalAccuracy))
    # As in TFF, a metrics_constructor's metrics are all that is reported.
    assert by_name.metric_names == ["accuracy"]
    assert _functional(None).metric_names == ["loss", "num_examples", "num_batches"]
    assert list(by_name.initialize_metrics_state()) == by_name.metric_names
    one = _functional(keras.metrics.SparseCategoricalAccuracy)
    assert one.metric_names[0] == "sparse_categorical_accuracy"
    several = _functional(
        lambda: collections.OrderedDict(acc=keras.metrics.SparseCategoricalAccuracy())
    )
    assert several.metric_names[0] == "acc"
    with pytest.raises(TypeError, match="keyed by str names"):
        _functional(collections.OrderedDict([(1, keras.metrics.SparseCategoricalAccuracy)]))
    with pytest.raises(ValueError, match="repeated"):
        _functional(
            [keras.metrics.SparseCategoricalAccuracy(), keras.metrics.SparseCategoricalAccuracy()]
        )


def test_a_user_metric_named_loss_takes_the_place_of_fed_s_own():
    x, y = _data(12, seed=1)
    model = _functional(collections.OrderedDict(loss=keras.metrics.MeanSquaredError))
    assert model.metric_names == ["loss"]
    evaluation = algorithms.build_fed_eval(model)
    state = evaluation.initialize()
    metrics = evaluation.next(state, [_dataset(x, y)]).metrics["client_work"]["eval"]
    keras_model = _keras_model()
    models.ModelWeights(*evaluation.get_model_weights(state)).assign_weights_to(keras_model)
    mse = float(np.mean((keras_model(x).numpy() - y) ** 2))
    assert metrics["current_round_metrics"]["loss"] == pytest.approx(mse, rel=1e-5)


def test_predict_and_loss_take_tff_keyword_names_and_a_plain_weights_pair():
    model = _functional()
    x, y = _data(6, seed=2)
    trainable, non_trainable = model.initial_weights
    assert isinstance(trainable, tuple) and isinstance(non_trainable, tuple)
    output = model.predict_on_batch(model_weights=(trainable, ()), x=x, training=False)
    keras_model = _keras_model()
    np.testing.assert_allclose(output, keras_model(x).numpy(), rtol=1e-6)
    loss = model.loss(output=output, label=y)
    want = keras.losses.SparseCategoricalCrossentropy()(y, keras_model(x)).numpy()
    assert float(loss) == pytest.approx(float(want), rel=1e-6)


def test_the_tutorial_client_loop_with_tuple_weights_as_loop_state():
    """The building-your-own-algorithm tutorial's client_update, run as TFF's users write it."""
    model = _functional(collections.OrderedDict(accuracy=keras.metrics.SparseCategoricalAccuracy))

    @tf.function
    def client_update(model, dataset, initial_weights, client_optimizer):
        client_weights = initial_weights.trainable
        optimizer_state = client_optimizer.initialize(
            tf.nest.map_structure(tf.TensorSpec.from_tensor, client_weights)
        )
        for batch in dataset:
            x, y = batch
            with tf.GradientTape() as tape:
                tape.watch(client_weights)
                outputs = model.predict_on_batch(
                    model_weights=(client_weights, ()), x=x, training=True
                )
                loss = model.loss(output=outputs, label=y)
            grads = tape.gradient(loss, client_weights)
            optimizer_state, client_weights = client_optimizer.next(
                optimizer_state, weights=client_weights, gradients=grads
            )
        return models.ModelWeights(client_weights, non_trainable=())

    @ftf.computation
    def server_init():
        return models.ModelWeights(*model.initial_weights)

    weights_type = server_init.type_signature.result
    data_type = SequenceType(ftf.to_type(model.input_spec))

    @ftf.computation(data_type, weights_type)
    def client_update_fn(dataset, server_weights):
        return client_update(model, dataset, server_weights, optimizers.build_sgdm(0.1))

    @fc.federated_computation(
        FederatedType(weights_type, SERVER), FederatedType(data_type, CLIENTS)
    )
    def next_fn(server_weights, datasets):
        client_weights = fc.federated_map(
            client_update_fn, (datasets, fc.federated_broadcast(server_weights))
        )
        return fc.federated_mean(client_weights)

    x, y = _data(8, seed=3)
    new = next_fn(server_init(), [_dataset(x, y)])

    keras_model = _keras_model()
    sgd = keras.optimizers.SGD(0.1)
    for xb, yb in _dataset(x, y):
        with tf.GradientTape() as tape:
            loss = keras.losses.SparseCategoricalCrossentropy()(yb, keras_model(xb, training=True))
        sgd.apply_gradients(
            zip(
                tape.gradient(loss, keras_model.trainable_variables),
                keras_model.trainable_variables,
            )
        )
    for got, want in zip(new.trainable, keras_model.trainable_weights):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_a_functional_model_built_with_tff_keywords_trains():
    """TFF's constructor: keyword arguments, a plain (trainable, non_trainable) tuple, a loss taking
    (output, label, sample_weight) and metrics_fns."""

    def predict_on_batch(model_weights, x, training):
        del training
        (w, b), _ = model_weights
        return tf.matmul(x, w) + b

    def loss(output, label, sample_weight=None):
        del sample_weight
        return tf.reduce_mean(tf.square(output - label))

    def initialize():
        return collections.OrderedDict(squared_error=(tf.constant(0.0), tf.constant(0.0)))

    def update(state, labels, batch_output, sample_weight=None):
        total, count = state["squared_error"]
        error = tf.reduce_sum(tf.square(batch_output.predictions - labels))
        n = tf.cast(tf.size(labels), tf.float32)
        return collections.OrderedDict(squared_error=(total + error, count + n))

    def finalize(state):
        total, count = state["squared_error"]
        return collections.OrderedDict(squared_error=total / count)

    model = models.FunctionalModel(
        initial_weights=((np.zeros((2, 1), np.float32), np.zeros((1,), np.float32)), ()),
        predict_on_batch_fn=predict_on_batch,
        loss_fn=loss,
        metrics_fns=(initialize, update, finalize),
        input_spec=(tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32)),
    )
    x = np.array([[1, 0], [0, 1], [1, 1], [2, 1]], np.float32)
    y = x @ np.array([[2.0], [-1.0]], np.float32)
    process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.1))
    state = process.initialize()
    output = process.next(state, [tf.data.Dataset.from_tensor_slices((x, y)).batch(4)])
    # One full-batch gradient step from zeros on the mean squared error.
    w = -0.1 * (2 * x.T @ (-y) / 4)
    b = -0.1 * (2 * np.mean(-y, axis=0))
    new = process.get_model_weights(output.state)
    assert isinstance(new.trainable, tuple)
    np.testing.assert_allclose(new.trainable[0], w, rtol=1e-5)
    np.testing.assert_allclose(new.trainable[1], b, rtol=1e-5)
    train = output.metrics["client_work"]["train"]
    # As TFF reports them: the model's own metrics first, then the built-in ones.
    assert list(train)[:4] == ["squared_error", "loss", "num_examples", "num_batches"]
    assert train["squared_error"] == pytest.approx(float(np.mean(y**2)), rel=1e-5)
    assert train["loss"] == pytest.approx(float(np.mean(y**2)), rel=1e-5)

    with pytest.raises(TypeError, match="mapping of metric names to states"):
        models.FunctionalModel(
            initial_weights=((), ()),
            predict_on_batch_fn=predict_on_batch,
            loss_fn=loss,
            metrics_fns=(lambda: (), update, finalize),
            input_spec=None,
        )
