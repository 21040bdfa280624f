"""TFF's tutorial "Random noise generation in TFF", run with `import fed as tff` (and fed standing in for
`federated_language`, whose names fed has at its top level): identical noise from a broadcast seed,
independent noise from generators and from Keras initializers built inside computations, unseeded ops on
the server, generators seeded inside, and seeds carried as state with `tf.random.stateless_*`. Each test
checks the tutorial's own assertions."""

import numpy as np
import pytest
import tensorflow as tf

import fed as federated_language
import fed as tff


@pytest.fixture(autouse=True)
def ten_clients():
    # Set to use 10 clients.
    tff.backends.native.set_sync_local_cpp_execution_context(default_num_clients=10)
    yield
    tff.backends.native.set_sync_local_cpp_execution_context()


def test_hello_world():
    @federated_language.federated_computation
    def hello_world():
        return "Hello, World!"

    assert hello_world() in ("Hello, World!", b"Hello, World!")


@tff.tensorflow.computation
def noise_from_seed(seed):
    return tf.random.stateless_normal((), seed=seed)


def test_identical_noise_on_clients():
    seed_type_at_server = federated_language.FederatedType(
        federated_language.to_type((np.int64, [2])), federated_language.SERVER
    )

    @federated_language.federated_computation(seed_type_at_server)
    def get_random_min_and_max_deterministic(seed):
        # Broadcast seed to all clients.
        seed_on_clients = federated_language.federated_broadcast(seed)
        # Clients generate noise from seed deterministicly.
        noise_on_clients = federated_language.federated_map(noise_from_seed, seed_on_clients)
        # Aggregate and return the min and max of the values generated on clients.
        min = federated_language.federated_min(noise_on_clients)
        max = federated_language.federated_max(noise_on_clients)
        return min, max

    seed = tf.constant([1, 1], dtype=tf.int64)
    min, max = get_random_min_and_max_deterministic(seed)
    assert min == max
    seed += 1
    new_min, new_max = get_random_min_and_max_deterministic(seed)
    assert new_min == new_max
    assert new_min != min


def test_independent_noise_on_clients():
    @tff.tensorflow.computation
    def nondeterministic_noise():
        gen = tf.random.Generator.from_non_deterministic_state()
        return gen.normal(())

    @federated_language.federated_computation
    def get_random_min_and_max_nondeterministic():
        noise_on_clients = federated_language.federated_eval(
            nondeterministic_noise, federated_language.CLIENTS
        )
        min = federated_language.federated_min(noise_on_clients)
        max = federated_language.federated_max(noise_on_clients)
        return min, max

    min, max = get_random_min_and_max_nondeterministic()
    assert min != max
    new_min, new_max = get_random_min_and_max_nondeterministic()
    assert new_min != new_max
    assert new_min != min and new_max != max


def _keras_model():
    inputs = tf.keras.Input(shape=(1,))
    outputs = tf.keras.layers.Dense(1)(inputs)
    return tf.keras.Model(inputs=inputs, outputs=outputs)


def test_model_initializer_on_clients():
    @tff.tensorflow.computation
    def tff_return_model_init():
        model = _keras_model()
        # return the initialized single weight value of the dense layer
        return tf.reshape(tff.learning.models.ModelWeights.from_model(model).trainable[0], [-1])[0]

    @federated_language.federated_computation
    def get_random_min_and_max_nondeterministic():
        noise_on_clients = federated_language.federated_eval(
            tff_return_model_init, federated_language.CLIENTS
        )
        min = federated_language.federated_min(noise_on_clients)
        max = federated_language.federated_max(noise_on_clients)
        return min, max

    min, max = get_random_min_and_max_nondeterministic()
    assert min != max
    new_min, new_max = get_random_min_and_max_nondeterministic()
    assert new_min != new_max
    assert new_min != min and new_max != max


def test_tf_function_with_a_global_seed_repeats_but_a_computation_does_not():
    tf.random.set_seed(1)

    @tf.function
    def return_one_noise_tf(_):
        return tf.random.normal([])

    n1 = return_one_noise_tf(1)
    n2 = return_one_noise_tf(2)
    assert n1 == n2

    tf.random.set_seed(1)

    @tff.tensorflow.computation
    def return_one_noise(_):
        return tf.random.normal([])

    n1 = return_one_noise(1)
    n2 = return_one_noise(2)
    assert n1 != n2


def test_generators_seeded_inside_computations():
    @tff.tensorflow.computation
    def tff_return_one_noise(i):
        g = tf.random.Generator.from_seed(i)

        @tf.function
        def tf_return_one_noise():
            return g.normal([])

        return tf_return_one_noise()

    @federated_language.federated_computation
    def return_two_noise():
        return (tff_return_one_noise(1), tff_return_one_noise(2))

    n1, n2 = return_two_noise()
    assert n1 != n2

    @tff.tensorflow.computation
    def tff_return_nested_noise(i):
        g = tf.random.Generator.from_seed(i)
        weights = [
            tf.ones([2, 2], dtype=tf.float32),
            tf.constant([2], dtype=tf.float32),
        ]

        @tf.function
        def tf_return_one_noise():
            return tf.nest.map_structure(lambda x: g.normal(tf.shape(x)), weights)

        return tf_return_one_noise()

    @federated_language.federated_computation
    def return_two_nested_noise():
        return (tff_return_nested_noise(1), tff_return_nested_noise(2))

    n1, n2 = return_two_nested_noise()
    assert n1[1] != n2[1]


def timestamp_seed():
    # tf.timestamp returns microseconds as decimal places, thus scaling by 1e6.
    return tf.cast(tf.timestamp() * 1e6, tf.int64)


class RandomSeedGenerator:
    def initialize(self, seed=None):
        if seed is None:
            return tf.stack([timestamp_seed(), 0])
        else:
            return tf.constant(self.seed, dtype=tf.int64, shape=(2,))

    def next(self, state):
        return state + tf.constant([0, 1], tf.int64)

    def structure_next(self, state, nest_structure):
        "Returns seed in nested structure and the next state seed."
        flat_structure = tf.nest.flatten(nest_structure)
        flat_seeds = [state + tf.constant([0, i], tf.int64) for i in range(len(flat_structure))]
        nest_seeds = tf.nest.pack_sequence_as(nest_structure, flat_seeds)
        return nest_seeds, flat_seeds[-1] + tf.constant([0, 1], tf.int64)


def test_stateless_noise_with_a_seed_carried_as_state():
    @tff.tensorflow.computation
    def tff_return_one_noise(seed_state):
        g = RandomSeedGenerator()
        weights = [
            tf.ones([2, 2], dtype=tf.float32),
            tf.constant([2], dtype=tf.float32),
        ]

        @tf.function
        def tf_return_one_noise():
            nest_seeds, updated_state = g.structure_next(seed_state, weights)
            nest_noise = tf.nest.map_structure(
                lambda x, s: tf.random.stateless_normal(shape=tf.shape(x), seed=s),
                weights,
                nest_seeds,
            )
            return nest_noise, updated_state

        return tf_return_one_noise()

    @tff.tensorflow.computation
    def tff_init_state():
        g = RandomSeedGenerator()
        return g.initialize()

    @federated_language.federated_computation
    def return_two_noise():
        seed_state = tff_init_state()
        n1, seed_state = tff_return_one_noise(seed_state)
        n2, seed_state = tff_return_one_noise(seed_state)
        return (n1, n2)

    n1, n2 = return_two_noise()
    assert n1[1] != n2[1]
    assert np.shape(n1[0]) == (2, 2)
