"""Randomness as TFF's random-noise tutorial describes it: unseeded ops differ across clients and
calls, stateless ops with a broadcast seed are reproducible, generator state flows through
parameters."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.execution import set_local_execution_context
from fed_types import CLIENTS, SERVER, FederatedType, TensorType

SEED = TensorType(np.int64, [2])
GENERATOR_STATE = TensorType(np.int64, [3])


@pytest.fixture(autouse=True)
def four_clients():
    set_local_execution_context(default_num_clients=4)
    yield
    set_local_execution_context()


@ftf.computation
def noise():
    return tf.random.normal([])


@ftf.computation(np.float32)
def plus_noise(x):
    return x + tf.random.uniform([])


@ftf.computation(SEED)
def noise_from_seed(seed):
    return tf.random.stateless_normal([], seed=seed)


@pytest.mark.parametrize("strategy", ["auto", "looped", "per_client"])
def test_unseeded_ops_differ_across_clients_and_calls(strategy, map_strategy):
    map_strategy(strategy)

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def noisy(values):
        return fc.federated_map(plus_noise, values)

    first, second = noisy([0.0] * 4), noisy([0.0] * 4)
    assert len(set(first)) == 4
    assert set(first).isdisjoint(second)


def test_unseeded_ops_differ_across_clients_in_federated_eval():
    @fc.federated_computation
    def noise_on_clients():
        return fc.federated_eval(noise, CLIENTS)

    first, second = noise_on_clients(), noise_on_clients()
    assert len(set(first)) == 4
    assert set(first).isdisjoint(second)


def test_stateless_ops_with_a_broadcast_seed_are_reproducible():
    @fc.federated_computation(FederatedType(SEED, SERVER))
    def min_and_max(seed):
        values = fc.federated_map(noise_from_seed, fc.federated_broadcast(seed))
        return fc.federated_min(values), fc.federated_max(values)

    low, high = min_and_max(np.array([1, 1], np.int64))
    assert low == high
    assert min_and_max(np.array([1, 1], np.int64)) == (low, high)
    assert min_and_max(np.array([2, 2], np.int64))[0] != low


def test_generator_state_carried_through_process_state():
    @ftf.computation(GENERATOR_STATE)
    def draw(state):
        generator = tf.random.Generator.from_state(state, alg="philox")
        sample = generator.normal([2])
        return generator.state.read_value(), sample

    @fc.federated_computation(FederatedType(GENERATOR_STATE, SERVER))
    def next_round(state):
        new_state, sample = fc.federated_apply(draw, state)
        return new_state, fc.federated_broadcast(sample)

    state = tf.random.Generator.from_seed(7).state.numpy()
    reference = tf.random.Generator.from_seed(7)
    for _ in range(3):
        state, sample = next_round(state)  # all clients hold the same sample: one value
        np.testing.assert_allclose(sample, reference.normal([2]), rtol=1e-6)
    np.testing.assert_array_equal(state, reference.state.numpy())


def test_a_generator_seeded_inside_draws_the_same_values_every_call():
    @ftf.computation
    def fixed_noise():
        return tf.random.Generator.from_seed(1).normal([])

    assert fixed_noise() == fixed_noise() == tf.random.Generator.from_seed(1).normal([]).numpy()


@pytest.mark.parametrize("strategy", ["auto", "looped", "per_client"])
def test_non_deterministic_generators_and_keras_initializers_differ_across_clients_and_calls(
    strategy, map_strategy
):
    map_strategy(strategy)

    @ftf.computation(np.float32)
    def generator_noise(x):
        return x + tf.random.Generator.from_non_deterministic_state().normal([])

    @ftf.computation(np.float32)
    def initial_weight(x):
        layer = keras.layers.Dense(1)
        layer.build((None, 1))
        return x + tf.reshape(layer.kernel, [])

    def mapped(computation):
        @fc.federated_computation(FederatedType(np.float32, CLIENTS))
        def on_clients(values):
            return fc.federated_map(computation, values)

        return on_clients

    for computation in (generator_noise, initial_weight):
        on_clients = mapped(computation)
        first, second = on_clients([0.0] * 4), on_clients([0.0] * 4)
        assert len(set(first)) == 4, computation
        assert set(first).isdisjoint(second), computation


def test_a_keras_initializer_with_a_seed_is_reproducible():
    @ftf.computation
    def seeded():
        return keras.initializers.GlorotUniform(seed=3)((2, 2))

    np.testing.assert_array_equal(seeded(), seeded())


def test_unseeded_dropout_built_inside_draws_new_masks_every_call_and_seeded_repeats():
    @ftf.computation(TensorType(np.float32, [64]))
    def unseeded(x):
        return keras.layers.Dropout(0.5)(x, training=True)

    @ftf.computation(TensorType(np.float32, [64]))
    def seeded(x):
        return keras.layers.Dropout(0.5, seed=4)(x, training=True)

    ones = np.ones(64, np.float32)
    assert not np.array_equal(unseeded(ones), unseeded(ones))
    np.testing.assert_array_equal(seeded(ones), seeded(ones))
