"""Federated averaging under attack: with two Byzantine clients among eleven on a small linear regression,
robust aggregators still find the true weights, and the plain mean does not."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_aggregators import MeanFactory
from fed_aggregators._gather import FEDERATED_GATHER
from fed_aggregators._robust import (
    BulyanFactory,
    CoordinateMedianFactory,
    KrumFactory,
    MultiKrumFactory,
    NormBoundedMeanFactory,
    TrimmedMeanFactory,
)
from fed_core.framework import get_map_reduce_form, run_map_reduce_form
from fed_learning import algorithms, models, optimizers

TRUE_KERNEL = np.array([[2.0], [-1.0], [0.5]], np.float32)
TRUE_BIAS = np.array([0.3], np.float32)
NUM_HONEST, NUM_BYZANTINE = 9, 2
ROUNDS = 5
INPUT_SPEC = (tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 1], tf.float32))


def _model_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
        keras.losses.MeanSquaredError(),
        INPUT_SPEC,
    )


def _client_datasets():
    """Honest clients hold exact linear data; Byzantine ones the same inputs with labels negated and
    scaled by 50, so that their updates are huge and point the wrong way."""
    rng = np.random.default_rng(7)
    datasets = []
    for client in range(NUM_HONEST + NUM_BYZANTINE):
        x = rng.normal(size=(32, 3)).astype(np.float32)
        y = x @ TRUE_KERNEL + TRUE_BIAS
        if client >= NUM_HONEST:
            y = -50.0 * y
        datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    return datasets


@functools.cache
def _distance_with_the_plain_mean():
    return _distance_to_truth_after_training(MeanFactory())[0]


def _distance_to_truth_after_training(aggregator):
    process = algorithms.build_weighted_fed_avg(
        _model_fn, optimizers.build_sgdm(0.2), model_aggregator=aggregator
    )
    state = process.initialize()
    datasets = _client_datasets()
    for _ in range(ROUNDS):
        output = process.next(state, datasets)
        state = output.state
    kernel, bias = process.get_model_weights(state).trainable
    distance = np.sqrt(np.sum((kernel - TRUE_KERNEL) ** 2) + np.sum((bias - TRUE_BIAS) ** 2))
    return distance, output.metrics["aggregator"]


def test_the_plain_mean_is_pulled_away_by_byzantine_clients():
    assert _distance_with_the_plain_mean() > 10.0


@pytest.mark.parametrize(
    "aggregator",
    [
        CoordinateMedianFactory(),
        TrimmedMeanFactory(beta=0.2),
        KrumFactory(num_byzantine=NUM_BYZANTINE),
        MultiKrumFactory(num_byzantine=NUM_BYZANTINE, num_selected=5),
        BulyanFactory(num_byzantine=NUM_BYZANTINE),
    ],
    ids=repr,
)
def test_a_robust_aggregator_finds_the_true_weights(aggregator):
    distance, measurements = _distance_to_truth_after_training(aggregator)
    assert distance < 0.05
    assert measurements["num_clients"] == NUM_HONEST + NUM_BYZANTINE
    if "selected_clients" in measurements:
        assert set(measurements["selected_clients"].tolist()) <= set(range(NUM_HONEST))


def test_norm_bounding_limits_the_byzantine_pull():
    bounded, measurements = _distance_to_truth_after_training(
        NormBoundedMeanFactory(norm_bound=0.5)
    )
    assert measurements["clipped_count"] >= NUM_BYZANTINE
    assert bounded < 1.0 < 10.0 < _distance_with_the_plain_mean()


def test_a_robust_round_splits_into_map_reduce_form_with_the_gather_as_its_aggregation():
    process = algorithms.build_weighted_fed_avg(
        _model_fn, optimizers.build_sgdm(0.2), model_aggregator=KrumFactory(NUM_BYZANTINE)
    )
    state = process.initialize()
    datasets = _client_datasets()
    form = get_map_reduce_form(process.next)
    assert FEDERATED_GATHER in [a.uri for a in form.aggregations]
    split_state, split_metrics = run_map_reduce_form(form, state, datasets)
    whole = process.next(state, datasets)
    for got, want in zip(
        process.get_model_weights(split_state).trainable,
        process.get_model_weights(whole.state).trainable,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (
        split_metrics["aggregator"]["selected_clients"].tolist()
        == whole.metrics["aggregator"]["selected_clients"].tolist()
    )
