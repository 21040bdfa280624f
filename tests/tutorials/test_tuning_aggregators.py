"""TFF's tutorial "Tuning recommended aggregations for learning", run with `import fed as tff`: each of its
factories built as it builds them, the presets it names as equivalents, and FedAvg trained with each on the
handwritten digits that ship with fed, reading the measurements the factories report."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed as tff

ROUNDS = 4


def _client_data():
    train, _ = tff.simulation.datasets.digits.load_data(num_clients=6, seed=0)

    def preprocess(dataset):
        return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(20)

    return [preprocess(train.create_tf_dataset_for_client(c)) for c in train.client_ids]


CLIENT_DATA = _client_data()
INPUT_SPEC = CLIENT_DATA[0].element_spec


def model_fn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    return tff.learning.models.from_keras_model(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=INPUT_SPEC,
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def _train(model_aggregator, weighted=True):
    build = (
        tff.learning.algorithms.build_weighted_fed_avg
        if weighted
        else tff.learning.algorithms.build_unweighted_fed_avg
    )
    process = build(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.5),
        model_aggregator=model_aggregator,
    )
    state = process.initialize()
    losses, outputs = [], []
    for _ in range(ROUNDS):
        output = process.next(state, CLIENT_DATA)
        state = output.state
        losses.append(float(output.metrics["client_work"]["train"]["loss"]))
        outputs.append(output.metrics["aggregator"])
    return losses, outputs


def test_hello_world():
    assert tff.tensorflow_computation(lambda: "Hello, World!")() in (
        "Hello, World!",
        b"Hello, World!",
    )


def test_median_estimate():
    median_estimate = tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.5, learning_rate=0.2
    )
    state = median_estimate.initialize()
    for _ in range(60):
        state = median_estimate.next(state, [0.5, 2.0, 3.0, 4.0, 5.0])
    # The median of the values is 3: the estimate settles within one learning-rate step of it.
    assert 3.0 / math.exp(0.2) <= median_estimate.report(state) <= 3.0 * math.exp(0.2)


def test_zeroing_mean_trains_and_reports_zeroing():
    zeroing_norm = tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=10.0,
        target_quantile=0.98,
        learning_rate=math.log(10),
        multiplier=2.0,
        increment=1.0,
    )
    zeroing_mean = tff.aggregators.zeroing_factory(
        zeroing_norm=zeroing_norm, inner_agg_factory=tff.aggregators.MeanFactory()
    )
    losses, measurements = _train(zeroing_mean)
    assert losses[-1] < losses[0]
    assert measurements[0]["zeroing_norm"] == pytest.approx(21.0)
    assert measurements[0]["zeroed_count"] == 0


def test_clipping_mean_trains_and_adapts_the_norm():
    clipping_norm = tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.8, learning_rate=0.2
    )
    clipping_mean = tff.aggregators.clipping_factory(
        clipping_norm=clipping_norm, inner_agg_factory=tff.aggregators.MeanFactory()
    )
    losses, measurements = _train(clipping_mean)
    assert losses[-1] < losses[0]
    norms = [float(m["clipping_norm"]) for m in measurements]
    assert norms[0] == pytest.approx(1.0)
    assert len(set(norms)) > 1  # it follows the updates' norms
    assert 0 <= measurements[0]["clipped_count"] <= len(CLIENT_DATA)


def test_robust_aggregator_is_zeroing_around_clipping():
    factory = tff.learning.robust_aggregator()
    losses, measurements = _train(factory)
    assert losses[-1] < losses[0]
    assert set(measurements[0]) == {"zeroing", "zeroing_norm", "zeroed_count"}
    assert set(measurements[0]["zeroing"]) == {"clipping", "clipping_norm", "clipped_count"}
    unweighted = tff.learning.robust_aggregator(clipping=False, weighted=False)
    assert isinstance(unweighted, tff.aggregators.UnweightedAggregationFactory)


def test_dp_mean_trains_unweighted():
    dp_mean = tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
        noise_multiplier=0.1, clients_per_round=100
    )
    losses, measurements = _train(dp_mean, weighted=False)
    assert np.isfinite(losses).all()
    assert "clip" in measurements[0]["dp_query_metrics"]
    preset = tff.learning.dp_aggregator(noise_multiplier=0.1, clients_per_round=100, zeroing=False)
    assert type(preset) is type(dp_mean)


def test_compressed_mean_reports_the_bytes_sent():
    compressed_mean = tff.aggregators.MeanFactory(
        tff.aggregators.EncodedSumFactory.quantize_above_threshold(
            quantization_bits=8, threshold=500
        )
    )
    losses, measurements = _train(compressed_mean)
    assert losses[-1] < losses[0]
    sent = measurements[0]["mean_value"]
    # The 64x10 kernel (640 floats) is quantized to 8 bits; the 10 biases go as they are.
    assert sent["bytes_before"] == (640 + 10) * 4
    assert sent["bytes_after"] < sent["bytes_before"] / 3
    preset = tff.learning.compression_aggregator(zeroing=False, clipping=False)
    assert isinstance(preset, tff.aggregators.MeanFactory)


def test_secure_mean_trains():
    secagg_bound = tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=50.0,
        target_quantile=0.95,
        learning_rate=1.0,
        multiplier=2.0,
    )
    secure_mean = tff.aggregators.MeanFactory(tff.aggregators.SecureSumFactory(secagg_bound))
    losses, measurements = _train(secure_mean)
    assert losses[-1] < losses[0]
    assert measurements[0]["mean_value"]["secure_upper_threshold"] == pytest.approx(100.0)


def test_secure_aggregator_preset_trains():
    losses, _ = _train(tff.learning.secure_aggregator())
    assert losses[-1] < losses[0]


def test_mean_without_aggregator_changes_is_the_baseline():
    baseline, _ = _train(tff.aggregators.MeanFactory())
    zeroed, _ = _train(tff.learning.robust_aggregator(clipping=False))
    # Zeroing with a norm far above these updates' leaves training as the plain mean trains.
    np.testing.assert_allclose(zeroed, baseline, rtol=1e-5)


def test_dp_aggregator_preset_trains_without_noise_and_stays_finite_with_it():
    clients = len(CLIENT_DATA)
    quiet, measurements = _train(
        tff.learning.dp_aggregator(noise_multiplier=0.0, clients_per_round=clients), weighted=False
    )
    assert quiet[-1] < quiet[0]
    clip = measurements[0]["zeroing"]["dp_query_metrics"]["clip"]
    assert clip > 0.1  # the adaptive clip grows from 0.1 toward the updates' median norm
    noisy, _ = _train(
        tff.learning.dp_aggregator(noise_multiplier=0.1, clients_per_round=clients), weighted=False
    )
    assert np.isfinite(noisy).all()
