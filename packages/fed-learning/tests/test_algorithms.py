"""Federated averaging and its relatives, checked numerically against centralized TensorFlow."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_learning import algorithms, models, optimizers
from fed_learning.templates import LearningAlgorithmState

INPUT_SPEC = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))


def _keras_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def model_fn():
    return models.from_keras_model(
        _keras_model(),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        INPUT_SPEC,
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def _arrays(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (np.argmax(x[:, :3], axis=1)).astype(np.int32)
    return x, y


def _dataset(x, y, batch_size):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def _centralized_sgd_step(weights, x, y, learning_rate):
    keras_model = _keras_model()
    models.ModelWeights(*weights).assign_weights_to(keras_model)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, keras_model(x))
    gradients = tape.gradient(loss, keras_model.trainable_variables)
    return [
        w.numpy() - learning_rate * g.numpy()
        for w, g in zip(keras_model.trainable_variables, gradients)
    ]


def test_one_client_one_step_equals_one_centralized_sgd_step():
    x, y = _arrays(16, seed=1)
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.5))
    state = process.initialize()
    initial = process.get_model_weights(state)
    output = process.next(state, [_dataset(x, y, batch_size=16)])
    expected = _centralized_sgd_step(initial, x, y, 0.5)
    for got, want in zip(process.get_model_weights(output.state).trainable, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    train = output.metrics["client_work"]["train"]
    assert train["num_examples"] == 16
    assert train["num_batches"] == 1
    # TFF's order: the Keras metrics, then loss, num_examples and num_batches; then the counts of
    # clients left out of the round.
    assert list(train) == [
        "sparse_categorical_accuracy",
        "loss",
        "num_examples",
        "num_batches",
        "num_non_finite_clients",
        "num_empty_clients",
        "num_failed_clients",
    ]
    assert [train[k] for k in list(train)[-3:]] == [0, 0, 0]
    assert list(output.metrics) == ["distributor", "client_work", "aggregator", "finalizer"]
    assert output.metrics["finalizer"] == collections.OrderedDict(
        update_non_finite=0, model_non_finite=0
    )


def _train_alone(process, state, dataset):
    return process.get_model_weights(process.next(state, [dataset]).state).trainable


def test_weighted_fed_avg_is_the_example_weighted_mean_of_client_models():
    sizes = [8, 24, 12]
    clients = [_dataset(*_arrays(n, seed=10 + i), batch_size=4) for i, n in enumerate(sizes)]
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    state = process.initialize()
    per_client = [_train_alone(process, state, d) for d in clients]
    together = process.get_model_weights(process.next(state, clients).state).trainable
    for layer, got in enumerate(together):
        want = sum(n * w[layer] for n, w in zip(sizes, per_client)) / sum(sizes)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    unweighted = algorithms.build_unweighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    equal = unweighted.get_model_weights(
        unweighted.next(unweighted.initialize(), clients).state
    ).trainable
    for layer, got in enumerate(equal):
        np.testing.assert_allclose(
            got, np.mean([w[layer] for w in per_client], axis=0), rtol=1e-5, atol=1e-6
        )


def test_fed_prox_with_zero_strength_is_fed_avg_and_positive_strength_differs():
    clients = [_dataset(*_arrays(12, seed=s), batch_size=3) for s in (3, 4)]
    avg = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.3))
    prox0 = algorithms.build_weighted_fed_prox(model_fn, 0.0, optimizers.build_sgdm(0.3))
    prox1 = algorithms.build_weighted_fed_prox(model_fn, 5.0, optimizers.build_sgdm(0.3))
    results = [
        p.get_model_weights(p.next(p.initialize(), clients).state).trainable
        for p in (avg, prox0, prox1)
    ]
    for a, b in zip(results[0], results[1]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    initial = avg.get_model_weights(avg.initialize()).trainable
    moved_avg = sum(np.sum((a - i) ** 2) for a, i in zip(results[0], initial))
    moved_prox = sum(np.sum((a - i) ** 2) for a, i in zip(results[2], initial))
    assert moved_prox < moved_avg  # the proximal term holds clients near the server model


def test_a_nan_client_update_is_rejected_not_averaged_in():
    good = _dataset(*_arrays(10, seed=5), batch_size=5)
    x, y = _arrays(10, seed=6)
    x[0, 0] = np.nan
    bad = _dataset(x, y, batch_size=5)
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.2))
    state = process.initialize()
    alone = _train_alone(process, state, good)
    with_bad = process.get_model_weights(process.next(state, [good, bad]).state).trainable
    for a, b in zip(alone, with_bad):
        assert np.all(np.isfinite(b))
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_evaluation_accuracy_over_clients_equals_centralized_accuracy():
    parts = [_arrays(n, seed=20 + n) for n in (7, 13, 30)]
    evaluation = algorithms.build_fed_eval(model_fn)
    state = evaluation.initialize()
    first = evaluation.next(state, [_dataset(x, y, 4) for x, y in parts])
    metrics = first.metrics["client_work"]["eval"]
    x_all = np.concatenate([x for x, _ in parts])
    y_all = np.concatenate([y for _, y in parts])
    keras_model = _keras_model()
    models.ModelWeights(*evaluation.get_model_weights(state)).assign_weights_to(keras_model)
    logits = keras_model(x_all).numpy()
    accuracy = np.mean(np.argmax(logits, axis=1) == y_all)
    assert metrics["current_round_metrics"]["sparse_categorical_accuracy"] == pytest.approx(
        accuracy, abs=1e-6
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(
        y_all, logits
    ).numpy()
    # The loss is the example-weighted mean of batch losses, i.e. the mean over all examples.
    assert metrics["current_round_metrics"]["loss"] == pytest.approx(float(np.mean(loss)), rel=1e-5)
    second = evaluation.next(first.state, [_dataset(*parts[0], 4)])
    assert second.metrics["client_work"]["eval"]["total_rounds_metrics"]["num_examples"] == 50 + 7


def test_evaluation_state_and_metrics_are_laid_out_as_tff_lays_them_out():
    evaluation = algorithms.build_fed_eval(model_fn)
    state_type = evaluation.initialize.type_signature.result.member
    assert str(state_type.client_work) == (
        "<<>,<sparse_categorical_accuracy=<float32,float32>,loss=<float32,float32>,"
        "num_examples=<int64>,num_batches=<int64>>>"
    )
    assert str(state_type.aggregator) == "<value_sum_process=<>,weight_sum_process=<>>"
    assert str(state_type.finalizer) == "<>"
    x, y = _arrays(6, seed=3)
    output = evaluation.next(evaluation.initialize(), [_dataset(x, y, 4)])
    assert output.state.client_work[0] == ()
    assert list(output.state.client_work[1]["num_examples"]) == [6]
    assert output.metrics["aggregator"] == collections.OrderedDict(mean_value=(), mean_weight=())
    assert output.metrics["finalizer"] == ()


def test_fed_sgd_is_a_full_batch_gradient_step_on_the_union():
    parts = [_arrays(n, seed=40 + n) for n in (6, 10)]
    process = algorithms.build_fed_sgd(model_fn, server_optimizer_fn=optimizers.build_sgdm(0.7))
    state = process.initialize()
    new = process.get_model_weights(
        process.next(state, [_dataset(x, y, 4) for x, y in parts]).state
    )
    x_all = np.concatenate([x for x, _ in parts])
    y_all = np.concatenate([y for _, y in parts])
    expected = _centralized_sgd_step(process.get_model_weights(state), x_all, y_all, 0.7)
    for got, want in zip(new.trainable, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_keras_optimizer_factories_and_legacy_process():
    clients = [_dataset(*_arrays(8, seed=60), batch_size=4)]
    keras_built = algorithms.build_weighted_fed_avg(model_fn, lambda: keras.optimizers.SGD(0.2))
    fed_built = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.2))
    a = keras_built.get_model_weights(
        keras_built.next(keras_built.initialize(), clients).state
    ).trainable
    b = fed_built.get_model_weights(fed_built.next(fed_built.initialize(), clients).state).trainable
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6)

    legacy = algorithms.build_federated_averaging_process(
        model_fn, client_optimizer_fn=lambda: keras.optimizers.SGD(0.2)
    )
    state = legacy.initialize()
    state, metrics = legacy.next(state, clients)
    assert isinstance(state, LearningAlgorithmState)
    for x, y in zip(state.model.trainable, b):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    assert set(metrics) == {"broadcast", "aggregation", "train"}
    assert metrics["train"]["num_examples"] == 8
    evaluation = algorithms.build_federated_evaluation(model_fn)
    assert set(evaluation(state.model, clients)["eval"]) >= {"loss", "sparse_categorical_accuracy"}


def test_set_model_weights_and_training_reduces_the_loss():
    clients = [_dataset(*_arrays(40, seed=s), batch_size=8) for s in (70, 71, 72)]
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.5))
    state = process.initialize()
    losses = []
    for _ in range(4):
        output = process.next(state, clients)
        state = output.state
        losses.append(output.metrics["client_work"]["train"]["loss"])
    assert losses[-1] < losses[0]
    reset = process.set_model_weights(state, process.get_model_weights(process.initialize()))
    for a, b in zip(
        process.get_model_weights(reset).trainable,
        process.get_model_weights(process.initialize()).trainable,
    ):
        np.testing.assert_array_equal(a, b)


def test_compiled_models_are_accepted_with_a_warning():
    keras_model = _keras_model()
    keras_model.compile(loss="sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="its optimizer, loss and metrics are ignored"):
        models.from_keras_model(
            keras_model, keras.losses.SparseCategoricalCrossentropy(), INPUT_SPEC
        )
    wrapped = models.from_compiled_keras_model(
        keras_model, (np.zeros((2, 4), np.float32), np.zeros(2, np.int32))
    )
    assert wrapped.input_spec[0].shape.as_list() == [None, 4]


def test_variable_model_forward_pass_accumulates_metrics():
    model = model_fn()
    x, y = _arrays(6, seed=80)
    model.forward_pass((x, y))
    model.forward_pass((x[:2], y[:2]))
    state = model.report_local_unfinalized_metrics()
    assert [int(v) for v in state["num_examples"]] == [8]
    assert [int(v) for v in state["num_batches"]] == [2]
    finalized = collections.OrderedDict(
        (k, fn(state[k])) for k, fn in model.metric_finalizers().items()
    )
    assert 0.0 <= float(finalized["sparse_categorical_accuracy"]) <= 1.0
    model.reset_metrics()
    assert int(model.report_local_unfinalized_metrics()["num_examples"][0]) == 0


def _record_vectorized_maps(monkeypatch):
    """A list that gets, for each map the backend tries to run with a vectorized form, whether it did."""
    from fed_tensorflow._backend import LoadedTensorFlowComputation

    ran_vectorized = []
    original = LoadedTensorFlowComputation._map_vectorized

    def recording(self, clients, pool):
        result = original(self, clients, pool)
        ran_vectorized.append(result is not None)
        return result

    monkeypatch.setattr(LoadedTensorFlowComputation, "_map_vectorized", recording)
    return ran_vectorized


def _vectorized_and_per_client(map_strategy, build, clients):
    """One round of the process `build()` makes, with the map strategy "vectorized" and then
    "per_client": for each, the trained weights and the client work's training metrics."""
    outcomes = []
    for strategy in ("vectorized", "per_client"):
        map_strategy(strategy)
        process = build()
        output = process.next(process.initialize(), clients)
        outcomes.append(
            (
                process.get_model_weights(output.state).trainable,
                output.metrics["client_work"]["train"],
            )
        )
    return outcomes


@pytest.mark.parametrize(
    "build",
    [
        lambda: algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1)),
        lambda: algorithms.build_weighted_fed_avg(
            model_fn, optimizers.build_sgdm(0.1, momentum=0.9), model_aggregator=None
        ),
        lambda: algorithms.build_weighted_fed_prox(
            model_fn, proximal_strength=0.5, client_optimizer_fn=optimizers.build_sgdm(0.1)
        ),
    ],
)
def test_clients_trained_at_once_by_the_vectorized_form_equal_one_call_per_client(
    build, map_strategy, monkeypatch
):
    """The model of dense layers has a vectorized client step: a group of clients whose batches have
    the same shapes train as one batched computation, with the results of one call per client."""
    ran_vectorized = _record_vectorized_maps(monkeypatch)
    sizes = [8, 8, 8, 5, 8, 0, 13]
    clients = [_dataset(*_arrays(n, seed=30 + i), batch_size=4) for i, n in enumerate(sizes)]
    (vectorized, v_metrics), (per_client, p_metrics) = _vectorized_and_per_client(
        map_strategy, build, clients
    )
    assert ran_vectorized == [True]
    for got, want in zip(vectorized, per_client, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert v_metrics["num_examples"] == p_metrics["num_examples"] == sum(sizes)
    np.testing.assert_allclose(v_metrics["loss"], p_metrics["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        v_metrics["sparse_categorical_accuracy"], p_metrics["sparse_categorical_accuracy"]
    )


def test_a_non_finite_client_in_a_vectorized_group_is_left_out_as_one_call_per_client_leaves_it(
    map_strategy, monkeypatch
):
    """The finite check runs per client inside the vectorized form too: of a group of clients whose
    batches have the same shapes, the one whose features overflow its update is counted and left
    out, and the others train as they do one call each."""
    ran_vectorized = _record_vectorized_maps(monkeypatch)
    sizes = [8, 8, 8]
    arrays = [_arrays(n, seed=60 + i) for i, n in enumerate(sizes)]
    arrays[1][0][:] = 1e30  # near float32's limit: the client's update is not finite
    clients = [_dataset(x, y, batch_size=4) for x, y in arrays]
    (vectorized, v_train), (per_client, p_train) = _vectorized_and_per_client(
        map_strategy,
        lambda: algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1)),
        clients,
    )
    assert ran_vectorized == [True]
    assert v_train["num_non_finite_clients"] == p_train["num_non_finite_clients"] == 1
    assert v_train["num_examples"] == p_train["num_examples"] == 16
    for got, want in zip(vectorized, per_client, strict=True):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_rounds_on_in_memory_client_data_kept_read_equal_one_call_per_client(map_strategy):
    """Clients of a `TestClientData` that come back round after round are read whole once and kept by
    the backend, which hands client training their elements: the rounds give what rounds of one call
    per client on datasets made by tf.data give, weights and metrics."""
    from fed_datasets import TestClientData

    sizes = [8, 5, 0, 13, 8, 1]
    arrays = {f"c{i}": _arrays(n, seed=50 + i) for i, n in enumerate(sizes)}
    data = TestClientData(arrays).preprocess(lambda d: d.batch(4))
    cohorts = [["c0", "c1", "c2", "c3"], ["c3", "c4", "c5", "c0"], ["c0", "c3", "c4", "c1"]] * 2
    outcomes = {}
    for strategy in ("looped", "per_client"):
        map_strategy(strategy)
        process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
        state = process.initialize()
        metrics = []
        for cohort in cohorts:
            if strategy == "looped":
                datasets = [data.create_tf_dataset_for_client(c) for c in cohort]
            else:
                datasets = [_dataset(*arrays[c], batch_size=4) for c in cohort]
            output = process.next(state, datasets)
            state = output.state
            metrics.append(output.metrics["client_work"]["train"])
        outcomes[strategy] = (process.get_model_weights(state).trainable, metrics)
    # Kept are the clients in two looped rounds (the first round, the data set's first, runs no
    # loop): all but c2, in rounds 1 and 4 only.
    (cache,) = data._factory._read_caches.values()
    assert sorted(cache.index) == ["c0", "c1", "c3", "c4", "c5"]
    (kept, kept_metrics), (per_client, per_client_metrics) = outcomes.values()
    for got, want in zip(kept, per_client, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(kept_metrics, per_client_metrics, strict=True):
        assert got["num_examples"] == want["num_examples"]
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
        np.testing.assert_allclose(
            got["sparse_categorical_accuracy"], want["sparse_categorical_accuracy"]
        )
