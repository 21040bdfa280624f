"""fed.learning.metrics: metric aggregators computed by hand (the sum over clients, then the finalizers),
TFF's way of passing them to the builders, Keras metric finalizers and functional metric functions, the
counters, and bad inputs."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
from fed_learning import algorithms, build_federated_evaluation, metrics, models, optimizers
from fed_types import CLIENTS, SERVER, FederatedType, to_type

SPEC = (tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32))


def _client(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, rng.integers(0, 3, size=n).astype(np.int32)


CLIENT_DATA = [_client(3, seed=1), _client(8, seed=2)]


def _keras_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])


def model_fn():
    return models.from_keras_model(
        _keras_model(),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        SPEC,
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def _datasets():
    # One batch per client: the training metrics are those of the initial weights.
    return [tf.data.Dataset.from_tensor_slices(c).batch(len(c[0])) for c in CLIENT_DATA]


def _correct(x, y):
    return np.argmax(_keras_model()(x).numpy(), axis=1) == y


def test_sum_then_finalize_divides_total_correct_by_total_count_in_fed_avg():
    process = algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=optimizers.build_sgdm(0.1),
        metrics_aggregator=metrics.sum_then_finalize,
    )
    train = process.next(process.initialize(), _datasets()).metrics["client_work"]["train"]
    correct = [_correct(x, y) for x, y in CLIENT_DATA]
    want = sum(c.sum() for c in correct) / sum(len(c) for c in correct)
    assert train["sparse_categorical_accuracy"] == pytest.approx(want, abs=1e-6)
    # The mean of the clients' accuracies differs here, and is not what the aggregator gives.
    assert np.mean([c.mean() for c in correct]) != pytest.approx(want, abs=1e-3)
    assert train["num_examples"] == 11
    assert list(train) == [
        "sparse_categorical_accuracy",
        "loss",
        "num_examples",
        "num_batches",
        "num_non_finite_clients",
        "num_empty_clients",
        "num_failed_clients",
    ]


def test_the_default_metrics_aggregator_is_sum_then_finalize():
    default = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    explicit = algorithms.build_weighted_fed_avg(
        model_fn, optimizers.build_sgdm(0.1), metrics_aggregator=metrics.sum_then_finalize
    )
    got = explicit.next(explicit.initialize(), _datasets()).metrics
    want = default.next(default.initialize(), _datasets()).metrics
    tf.nest.map_structure(np.testing.assert_array_equal, got, want)
    weights = default.get_model_weights(default.initialize())
    evaluate = build_federated_evaluation(model_fn)
    evaluate_explicitly = build_federated_evaluation(
        model_fn, metrics_aggregator=metrics.sum_then_finalize
    )
    tf.nest.map_structure(
        np.testing.assert_array_equal,
        evaluate_explicitly(weights, _datasets()),
        evaluate(weights, _datasets()),
    )


def test_fed_recon_takes_sum_then_finalize_as_its_default():
    spec = (tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 1], tf.float32))

    def recon_model_fn():
        keras.utils.set_random_seed(0)
        global_layer, local_layer = keras.layers.Dense(2), keras.layers.Dense(1)
        keras_model = keras.Sequential([keras.Input((3,)), global_layer, local_layer])
        return models.ReconstructionModel.from_keras_model_and_layers(
            keras_model, global_layers=[global_layer], local_layers=[local_layer], input_spec=spec
        )

    def build(**kwargs):
        return algorithms.build_fed_recon(
            recon_model_fn,
            loss_fn=keras.losses.MeanSquaredError,
            metrics_fn=lambda: [keras.metrics.MeanAbsoluteError()],
            client_optimizer_fn=optimizers.build_sgdm(0.1),
            reconstruction_optimizer_fn=optimizers.build_sgdm(0.1),
            **kwargs,
        )

    rng = np.random.default_rng(3)
    data = [
        tf.data.Dataset.from_tensor_slices(
            (rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32))
        ).batch(2)
        for n in (4, 6)
    ]
    default, explicit = build(), build(metrics_aggregator=metrics.sum_then_finalize)
    got = explicit.next(explicit.initialize(), data).metrics["client_work"]["train"]
    want = default.next(default.initialize(), data).metrics["client_work"]["train"]
    assert list(got) == list(want) and "mean_absolute_error" in got
    tf.nest.map_structure(np.testing.assert_array_equal, got, want)


def test_evaluation_with_a_functional_model_and_create_functional_metric_fns():
    keras_model = _keras_model()
    weights = models.ModelWeights.from_model(keras_model)

    def predict(model_weights, x, training):
        del training
        (kernel, bias), _ = model_weights
        return x @ kernel + bias

    def loss(output, label, sample_weight=None):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(label, output)

    metric_fns = metrics.create_functional_metric_fns(
        collections.OrderedDict(accuracy=keras.metrics.SparseCategoricalAccuracy)
    )
    functional = models.FunctionalModel(
        (tuple(weights.trainable), tuple(weights.non_trainable)),
        predict,
        loss,
        SPEC,
        metrics_fns=metric_fns,
    )
    evaluate = build_federated_evaluation(functional, metrics_aggregator=metrics.sum_then_finalize)
    current = evaluate(functional.initial_weights, _datasets())["eval"]
    correct = np.concatenate([_correct(x, y) for x, y in CLIENT_DATA])
    assert current["accuracy"] == pytest.approx(correct.mean(), abs=1e-6)


def test_create_functional_metric_fns_state_is_summable():
    initialize, update, finalize = metrics.create_functional_metric_fns(keras.metrics.Accuracy)
    batch = models.BatchOutput(loss=None, predictions=tf.constant([0.0, 1.0, 1.0]))
    a = update(initialize(), tf.constant([1.0, 1.0, 1.0]), batch)
    b = update(
        initialize(),
        tf.constant([1.0]),
        models.BatchOutput(loss=None, predictions=tf.constant([0.0])),
    )
    summed = [x + y for x, y in zip(a, b)]
    assert float(finalize(a)) == pytest.approx(2 / 3)
    assert float(finalize(summed)) == pytest.approx(2 / 4)
    with pytest.raises(TypeError, match="must return a Keras metric"):
        metrics.create_functional_metric_fns(lambda: "accuracy")
    with pytest.raises(TypeError, match="metrics_constructor must be"):
        metrics.create_functional_metric_fns(3)


def test_sum_then_finalize_as_a_computation_of_its_own():
    finalizers = collections.OrderedDict(
        accuracy=metrics.create_keras_metric_finalizer(keras.metrics.Accuracy()),
        num_examples=lambda state: state[0],
    )
    local_type = to_type(
        collections.OrderedDict(accuracy=[np.float32, np.float32], num_examples=[np.int64])
    )
    aggregate = metrics.sum_then_finalize(finalizers, local_type)
    assert str(aggregate.type_signature) == (
        "({<accuracy=<float32,float32>,num_examples=<int64>>}@CLIENTS -> "
        "<accuracy=float32,num_examples=int64>@SERVER)"
    )
    clients = [
        collections.OrderedDict(accuracy=[1.0, 2.0], num_examples=[2]),
        collections.OrderedDict(accuracy=[6.0, 6.0], num_examples=[6]),
    ]
    result = aggregate(clients)
    assert result["accuracy"] == pytest.approx(7 / 8)
    assert result["num_examples"] == 8

    # Without the type it is traced for the type it is called with, inside another computation.
    untyped = metrics.sum_then_finalize(finalizers)

    @fc.federated_computation(FederatedType(local_type, CLIENTS))
    def round_metrics(values):
        return untyped(values)

    assert round_metrics(clients) == result


def test_secure_sum_then_finalize_sums_within_ranges_and_reports_its_measurements():
    process = algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=optimizers.build_sgdm(0.1),
        metrics_aggregator=lambda finalizers, metrics_type: metrics.secure_sum_then_finalize(
            finalizers, metrics_type, {"loss": (0.0, 100.0)}
        ),
    )
    plain = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    train = process.next(process.initialize(), _datasets()).metrics["client_work"]["train"]
    want = plain.next(plain.initialize(), _datasets()).metrics["client_work"]["train"]
    assert train["num_examples"] == want["num_examples"] == 11
    assert train["num_batches"] == want["num_batches"] == 2
    # Float states are quantized: each client's sum is within (upper - lower) / (2**32 - 1).
    assert train["sparse_categorical_accuracy"] == pytest.approx(
        want["sparse_categorical_accuracy"], abs=1e-3
    )
    assert train["loss"] == pytest.approx(want["loss"], rel=1e-4)
    groups = train["secure_sum_measurements"]
    assert set(groups) == {"float32_0_1048575", "float32_0_100", "int64_0_1048575"}
    assert all(group["secure_upper_clipped_count"] == 0 for group in groups.values())


def test_secure_sum_then_finalize_clips_to_the_ranges():
    finalizers = collections.OrderedDict(total=lambda state: state[0])
    local_type = to_type(collections.OrderedDict(total=[np.int32]))
    aggregate = metrics.secure_sum_then_finalize(finalizers, local_type, {"total": (0, 10)})
    result = aggregate([collections.OrderedDict(total=[4]), collections.OrderedDict(total=[25])])
    assert result["total"] == 4 + 10
    assert result["secure_sum_measurements"]["int32_0_10"]["secure_upper_clipped_count"] == 1


def test_create_keras_metric_finalizer():
    finalize = metrics.create_keras_metric_finalizer(keras.metrics.MeanSquaredError)
    assert float(finalize([tf.constant(6.0), tf.constant(4.0)])) == pytest.approx(1.5)
    with pytest.raises(ValueError, match=r"takes the values of its variables.*got \[float32\[\]\]"):
        finalize([tf.constant(6.0)])
    with pytest.raises(TypeError, match="takes a list of tensors"):
        finalize(tf.constant(6.0))
    with pytest.raises(TypeError, match="expected a Keras metric or a no-argument function"):
        metrics.create_keras_metric_finalizer("accuracy")
    with pytest.raises(TypeError, match="the function returned int"):
        metrics.create_keras_metric_finalizer(lambda: 3)


def test_counters_count_examples_and_batches_in_a_keras_model():
    def counted_model_fn():
        return models.from_keras_model(
            _keras_model(),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            SPEC,
            metrics=[
                metrics.NumExamplesCounter(name="examples"),
                metrics.NumBatchesCounter(name="batches"),
            ],
        )

    evaluation = algorithms.build_fed_eval(counted_model_fn)
    data = [tf.data.Dataset.from_tensor_slices(c).batch(2) for c in CLIENT_DATA]
    current = evaluation.next(evaluation.initialize(), data).metrics["client_work"]["eval"][
        "current_round_metrics"
    ]
    assert current["examples"] == 3 + 8
    assert current["batches"] == 2 + 4
    counter = metrics.NumExamplesCounter()
    counter.update_state(np.zeros((5, 2), np.float32))
    assert (counter.name, int(counter.result())) == ("num_examples", 5)
    with pytest.raises(TypeError, match="must be tensors or numpy arrays"):
        counter.update_state([1, 2, 3])


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="metric_finalizers must be"):
        metrics.sum_then_finalize(3)
    with pytest.raises(TypeError, match="must map metric names"):
        metrics.sum_then_finalize({"accuracy": 3})
    finalizers = collections.OrderedDict(accuracy=lambda s: s[0] / s[1])
    with pytest.raises(ValueError, match=r"has the metrics \['accuracy'\].*report \['loss'\]"):
        metrics.sum_then_finalize(
            finalizers, collections.OrderedDict(loss=[np.float32, np.float32])
        )
    with pytest.raises(TypeError, match=r"struct of named metric states.*got <float32,float32>"):
        metrics.sum_then_finalize(finalizers, [np.float32, np.float32])
    untyped = metrics.sum_then_finalize(finalizers)
    with pytest.raises(
        TypeError, match=r"placed at CLIENTS.*got <accuracy=<float32,float32>>@SERVER"
    ):

        @fc.federated_computation(
            FederatedType(
                to_type(collections.OrderedDict(accuracy=[np.float32, np.float32])), SERVER
            )
        )
        def at_server(values):
            return untyped(values)

    with pytest.raises(TypeError, match=r"metric_value_ranges\['accuracy'\]\[1\] bounds a int64"):
        metrics.secure_sum_then_finalize(
            finalizers,
            collections.OrderedDict(accuracy=[np.float32, np.int64]),
            {"accuracy": [None, (0.0, 1.5)]},
        )
    with pytest.raises(ValueError, match=r"names \['acc'\], which the metrics do not have"):
        metrics.secure_sum_then_finalize(
            finalizers, collections.OrderedDict(accuracy=[np.float32, np.float32]), {"acc": (0, 1)}
        )
    with pytest.raises(TypeError, match="metrics_aggregator must be a function"):
        algorithms.build_weighted_fed_avg(
            model_fn, optimizers.build_sgdm(0.1), metrics_aggregator="sum_then_finalize"
        )


def test_the_umbrella_exposes_the_module_as_tff_does():
    import fed
    import fed.learning.metrics

    assert fed.learning.metrics.sum_then_finalize is metrics.sum_then_finalize
    assert fed.learning.metrics.NumExamplesCounter is metrics.NumExamplesCounter
