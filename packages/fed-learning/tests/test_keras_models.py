"""Keras 3 models in fed's algorithms: what is a weight (not the seed state of random layers), batch-norm
statistics and stateful RNN layers in local training, compiled models, and TFF's builder options."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory
from fed_learning import (
    LoopImplementation,
    algorithms,
    build_federated_averaging_process,
    build_federated_evaluation,
    models,
    optimizers,
)
from fed_types import CLIENTS, FederatedType

SPEC = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, np.argmax(x[:, :3], axis=1).astype(np.int32)


def _dataset(n=8, seed=0, batch_size=4):
    return tf.data.Dataset.from_tensor_slices(_data(n, seed)).batch(batch_size)


def _random_layers_model(seed=None, rate=0.5):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6),
            keras.layers.Dropout(rate, seed=seed),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ]
    )


def _model_fn(build, **kwargs):
    def model_fn():
        return models.from_keras_model(
            build(**kwargs), keras.losses.SparseCategoricalCrossentropy(from_logits=True), SPEC
        )

    return model_fn


def test_the_seed_state_of_random_layers_is_not_a_model_weight():
    keras_model = _random_layers_model()
    weights = models.ModelWeights.from_model(keras_model)
    notebook = models.ModelWeights(
        trainable=keras_model.trainable_weights, non_trainable=keras_model.non_trainable_weights
    )
    assert (
        len(weights.non_trainable) == len(notebook.non_trainable) == 2
    )  # moving mean and variance
    for got, want in zip(
        weights.trainable + weights.non_trainable, notebook.trainable + notebook.non_trainable
    ):
        np.testing.assert_array_equal(got, want.numpy())

    other = _random_layers_model()
    for variable in other.trainable_weights:
        variable.assign(tf.ones_like(variable))
    weights.assign_weights_to(other)
    for got, want in zip(other.weights, keras_model.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())

    process = algorithms.build_weighted_fed_avg(
        _model_fn(_random_layers_model), optimizers.build_sgdm(0.1)
    )
    state = process.set_model_weights(process.initialize(), notebook)
    for got, want in zip(process.get_model_weights(state).trainable, notebook.trainable):
        np.testing.assert_array_equal(got, want.numpy())
    pair = ([np.ones_like(w) for w in weights.trainable], list(weights.non_trainable))
    from_pair = process.get_model_weights(process.set_model_weights(state, pair))
    assert isinstance(from_pair, models.ModelWeights)
    np.testing.assert_array_equal(from_pair.trainable[0], pair[0][0])

    with_seeds = models.ModelWeights(
        keras_model.trainable_variables, keras_model.non_trainable_variables
    )
    with pytest.raises(
        ValueError, match=r"it holds <trainable=<float32\[4,6\].*given are .*int64\[2\]"
    ):
        process.set_model_weights(state, with_seeds)
    with pytest.raises(ValueError, match=r"the model has <trainable=.*the weights are"):
        with_seeds.assign_weights_to(other)


def _train_once(process, state, dataset):
    return process.get_model_weights(process.next(state, [dataset]).state).trainable


def test_unseeded_random_layers_draw_new_seeds_on_every_call_and_seeded_ones_repeat():
    for seed, repeats in ((None, False), (7, True)):
        process = algorithms.build_weighted_fed_avg(
            _model_fn(_random_layers_model, seed=seed), optimizers.build_sgdm(0.5)
        )
        state = process.initialize()
        first, second = (_train_once(process, state, _dataset()) for _ in range(2))
        same = all(np.array_equal(a, b) for a, b in zip(first, second))
        assert same == repeats


def _keras_sgd_pass(keras_model, dataset, learning_rate):
    """One pass of plain SGD over the dataset, written with Keras directly."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for x, y in dataset:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, keras_model(x, training=True))
        gradients = tape.gradient(loss, keras_model.trainable_variables)
        for variable, gradient in zip(keras_model.trainable_variables, gradients):
            variable.assign_sub(learning_rate * tf.convert_to_tensor(gradient))
    return [v.numpy() for v in keras_model.trainable_weights]


def test_batch_norm_statistics_update_locally_and_the_server_keeps_its_own():
    process = algorithms.build_weighted_fed_avg(
        _model_fn(_random_layers_model, rate=0.0), optimizers.build_sgdm(0.5)
    )
    state = process.initialize()
    initial = process.get_model_weights(state)
    new = process.get_model_weights(process.next(state, [_dataset(12, seed=3)]).state)

    keras_model = _random_layers_model(rate=0.0)
    models.ModelWeights(*initial).assign_weights_to(keras_model)
    expected = _keras_sgd_pass(keras_model, _dataset(12, seed=3), 0.5)
    for got, want in zip(new.trainable, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(keras_model.non_trainable_weights[0].numpy(), initial.non_trainable[0])
    for got, want in zip(new.non_trainable, initial.non_trainable):
        np.testing.assert_array_equal(got, want)


BATCH, STEPS = 2, 5
SEQUENCE_SPEC = (
    tf.TensorSpec([BATCH, STEPS], tf.int32),
    tf.TensorSpec([BATCH, STEPS], tf.int32),
)


def _gru_model():
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input(batch_shape=(BATCH, STEPS), dtype="int32"),
            keras.layers.Embedding(10, 4),
            keras.layers.GRU(3, stateful=True, return_sequences=True),
            keras.layers.Dense(10),
        ]
    )


def _sequences(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, (3 * BATCH, STEPS)).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, (x + 1) % 10)).batch(BATCH, drop_remainder=True)


def test_a_compiled_clone_with_a_stateful_gru_trains_with_its_state_local_to_a_client_pass():
    base = _gru_model()
    base.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def model_fn():
        return models.from_keras_model(
            keras.models.clone_model(base),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            SEQUENCE_SPEC,
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    with pytest.warns(UserWarning, match="optimizer, loss and metrics are ignored"):
        process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.5))
    pretrained = models.ModelWeights(
        trainable=[v.numpy() for v in base.trainable_weights],
        non_trainable=[v.numpy() for v in base.non_trainable_weights],
    )
    state = process.set_model_weights(process.initialize(), pretrained)
    first = _train_once(process, state, _sequences(4))
    # The GRU's state starts from zero in each client's pass, so the same pass gives the same result.
    for a, b in zip(first, _train_once(process, state, _sequences(4))):
        np.testing.assert_array_equal(a, b)

    keras_model = _gru_model()
    pretrained.assign_weights_to(keras_model)
    expected = _keras_sgd_pass(keras_model, _sequences(4), 0.5)
    for got, want in zip(first, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    with pytest.warns(UserWarning, match="compiled"):
        evaluation = algorithms.build_fed_eval(model_fn)
    metrics = evaluation.next(evaluation.initialize(), [_sequences(5)]).metrics
    assert metrics["client_work"]["eval"]["current_round_metrics"]["num_examples"] == 3 * BATCH


def _linear_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        SPEC,
    )


def test_builders_take_tff_options_and_refuse_unknown_ones():
    clients = [_dataset(8, seed=9)]
    plain = algorithms.build_weighted_fed_avg(_linear_fn, optimizers.build_sgdm(0.2))
    want = _train_once(plain, plain.initialize(), clients[0])
    built = [
        algorithms.build_weighted_fed_avg(
            _linear_fn,
            optimizers.build_sgdm(0.2),
            loop_implementation=LoopImplementation.DATASET_ITERATOR,
            measure_timing=False,
            use_experimental_simulation_loop=True,
        ),
        algorithms.build_unweighted_fed_avg(
            _linear_fn, optimizers.build_sgdm(0.2), use_experimental_simulation_loop=True
        ),
        algorithms.build_weighted_fed_prox(
            _linear_fn,
            0.0,
            optimizers.build_sgdm(0.2),
            loop_implementation=LoopImplementation.DATASET_REDUCE,
        ),
    ]
    for process in built:
        for got, expected in zip(_train_once(process, process.initialize(), clients[0]), want):
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    legacy = build_federated_averaging_process(
        _linear_fn,
        optimizers.build_sgdm(0.2),
        model_update_aggregation_factory=MeanFactory(),
        use_experimental_simulation_loop=True,
    )
    state, _ = legacy.next(legacy.initialize(), clients)
    for got, expected in zip(state.model.trainable, want):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    algorithms.build_fed_sgd(_linear_fn, loop_implementation=LoopImplementation.DATASET_ITERATOR)
    algorithms.build_fed_eval(_linear_fn, use_experimental_simulation_loop=True)
    build_federated_evaluation(_linear_fn, use_experimental_simulation_loop=True)

    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        algorithms.build_weighted_fed_avg(_linear_fn, optimizers.build_sgdm(0.2), no_such_option=1)
    with pytest.raises(
        TypeError, match="loop_implementation must be a fed.learning.LoopImplementation"
    ):
        algorithms.build_weighted_fed_avg(
            _linear_fn, optimizers.build_sgdm(0.2), loop_implementation="reduce"
        )


def test_a_tff_metrics_aggregator_replaces_the_default_one():
    def num_examples_only(metric_finalizers, local_unfinalized_metrics_type):
        @ftf.computation(local_unfinalized_metrics_type)
        def finalize(state):
            return collections.OrderedDict(num_examples=metric_finalizers(state)["num_examples"])

        @fc.federated_computation(FederatedType(local_unfinalized_metrics_type, CLIENTS))
        def aggregate(metrics):
            return fc.federated_map(finalize, fc.federated_sum(metrics))

        return aggregate

    process = algorithms.build_weighted_fed_avg(
        _linear_fn, optimizers.build_sgdm(0.2), metrics_aggregator=num_examples_only
    )
    output = process.next(process.initialize(), [_dataset(8, seed=1), _dataset(4, seed=2)])
    # The counts of clients left out of the round are added to what the aggregator reports, as in TFF.
    assert output.metrics["client_work"]["train"] == collections.OrderedDict(
        num_examples=12, num_non_finite_clients=0, num_empty_clients=0, num_failed_clients=0
    )


@pytest.fixture
def mixed_bfloat16():
    """Keras's global dtype policy set to "mixed_bfloat16" for one test: layers compute in bfloat16
    and keep float32 weights."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def _dense_model():
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3)]
    )


def test_a_model_under_a_mixed_precision_policy_trains_as_keras_does_and_keeps_float32_weights(
    mixed_bfloat16,
):
    process = algorithms.build_weighted_fed_avg(
        _model_fn(_dense_model), optimizers.build_sgdm(0.5), optimizers.build_sgdm(1.0)
    )
    state = process.initialize()
    initial = process.get_model_weights(state).trainable
    assert [np.asarray(w).dtype for w in initial] == [np.float32] * 4
    output = process.next(state, [_dataset(n=16)])
    trained = process.get_model_weights(output.state).trainable
    assert [np.asarray(w).dtype for w in trained] == [np.float32] * 4
    assert np.isfinite(output.metrics["client_work"]["train"]["loss"])

    keras_model = _dense_model()
    assert keras_model(_data(2, 0)[0]).dtype == tf.bfloat16
    expected = _keras_sgd_pass(keras_model, _dataset(n=16), 0.5)
    # bfloat16 keeps about three significant digits, so an op done in another order differs in
    # the last of them: the weights moved by about 0.4, and agree with Keras's to 5e-3.
    moved = max(np.max(np.abs(a - b)) for a, b in zip(trained, initial))
    assert moved > 0.1
    for got, want in zip(trained, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-3)
