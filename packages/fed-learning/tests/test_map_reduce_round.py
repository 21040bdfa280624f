"""A FedAvg round split into MapReduce form (what a distributed executor runs: server prepare, client
work, aggregations, server update) gives the same new model and metrics as the round run whole."""

import keras
import numpy as np
import tensorflow as tf

from fed_core.framework import get_map_reduce_form, run_map_reduce_form
from fed_learning import algorithms, models, optimizers

INPUT_SPEC = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))


def model_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        INPUT_SPEC,
    )


def _client(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def test_a_fed_avg_round_in_map_reduce_form_matches_the_whole_round():
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    clients = [_client(n, seed) for seed, n in enumerate([8, 12, 4])]
    state = process.initialize()

    form = get_map_reduce_form(process.next)
    assert form.aggregations, "the round aggregates the clients' updates"
    split_state, split_metrics = run_map_reduce_form(form, state, clients)
    whole = process.next(state, clients)

    got = process.get_model_weights(split_state).trainable
    want = process.get_model_weights(whole.state).trainable
    assert len(got) == len(want) == 2  # the dense layer's kernel and bias
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    train = split_metrics["client_work"]["train"]
    assert train["num_examples"] == whole.metrics["client_work"]["train"]["num_examples"] == 24
    np.testing.assert_allclose(
        train["loss"], whole.metrics["client_work"]["train"]["loss"], rtol=1e-6
    )
