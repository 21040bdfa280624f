"""FedBuff: its arithmetic against numpy on a tiny problem, its asynchronous schedule on the simulated
clock worked out by hand, reproducibility, and training on the shipped digits data."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_learning import algorithms, models, optimizers
from fed_learning.simulation import BufferedAsynchronousSimulation, ClientPopulation

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
CLIENT_LR = 0.1
SERVER_LR = 0.5


def model_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
        keras.losses.MeanSquaredError(),
        SPEC,
    )


def _fedbuff(buffer_size, **kwargs):
    return algorithms.build_fedbuff(
        model_fn,
        optimizers.build_sgdm(CLIENT_LR),
        optimizers.build_sgdm(SERVER_LR),
        buffer_size,
        **kwargs,
    )


X_A = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0], [-1.0, 1.0]], np.float32)
Y_A = np.array([[1.0], [0.0], [2.0], [-1.0]], np.float32)
X_B = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, -2.0], [1.0, 0.0]], np.float32)
Y_B = np.array([[0.5], [1.5], [0.0], [1.0]], np.float32)


def _data(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # one batch: one local step


def _numpy_delta(weights, x, y):
    """The model delta of one SGD step on the mean squared error of a linear model."""
    kernel, bias = (np.asarray(w, np.float64) for w in weights.trainable)
    residual = x @ kernel + bias - y
    grad_kernel = 2 * x.T @ residual / len(x)
    grad_bias = 2 * residual.mean(axis=0)
    return [CLIENT_LR * grad_kernel, CLIENT_LR * grad_bias]


def _trainable(process, state):
    return [np.asarray(w, np.float64) for w in process.get_model_weights(state).trainable]


def _assert_weights(actual, expected):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def process_2():
    return _fedbuff(2)


def test_the_client_update_is_fedavgs_one_sgd_step(process_2):
    state = process_2.initialize()
    weights = process_2.get_model_weights(state)
    results, measurements = process_2.train(weights, [_data(X_A, Y_A), _data(X_B, Y_B)])
    for result, (x, y) in zip(results, [(X_A, Y_A), (X_B, Y_B)]):
        _assert_weights(result.update, _numpy_delta(weights, x, y))
        assert float(result.update_weight) == 1.0
    assert measurements["train"]["num_examples"] == 8


def test_buffer_of_one_applies_each_update_scaled_by_its_staleness():
    process = _fedbuff(1)
    state = process.initialize()
    w0 = process.get_model_weights(state)
    (from_w0_a, from_w0_b), _ = process.train(w0, [_data(X_A, Y_A), _data(X_B, Y_B)])

    state, first = process.receive(state, from_w0_a, model_version=0)
    delta_a = _numpy_delta(w0, X_A, Y_A)
    w1 = [w - SERVER_LR * d for w, d in zip(_trainable(process, _initial(process)), delta_a)]
    _assert_weights(_trainable(process, state), w1)
    assert (first["staleness"], first["applied"]) == (0, 1)
    assert process.get_model_version(state) == 1

    # The second update was trained from version 0 and arrives at version 1: staleness 1.
    state, second = process.receive(state, from_w0_b, model_version=0)
    weight = 1 / np.sqrt(2.0)
    assert second["staleness"] == 1 and second["staleness_weight"] == pytest.approx(weight)
    w2 = [w - SERVER_LR * weight * d for w, d in zip(w1, _numpy_delta(w0, X_B, Y_B))]
    _assert_weights(_trainable(process, state), w2)
    assert process.get_model_version(state) == 2


def _initial(process):
    return process.initialize()


def test_buffer_of_two_applies_the_mean_of_two_updates(process_2):
    state = process_2.initialize()
    w0 = process_2.get_model_weights(state)
    (a, b), _ = process_2.train(w0, [_data(X_A, Y_A), _data(X_B, Y_B)])

    state, first = process_2.receive(state, a, 0)
    assert first["applied"] == 0 and process_2.get_model_version(state) == 0
    _assert_weights(_trainable(process_2, state), [np.asarray(w) for w in w0.trainable])
    _assert_weights(state.buffer, _numpy_delta(w0, X_A, Y_A))
    assert int(state.buffer_count) == 1

    state, second = process_2.receive(state, b, 0)
    assert second["applied"] == 1 and process_2.get_model_version(state) == 1
    mean = [(da + db) / 2 for da, db in zip(_numpy_delta(w0, X_A, Y_A), _numpy_delta(w0, X_B, Y_B))]
    expected = [np.asarray(w) - SERVER_LR * m for w, m in zip(w0.trainable, mean)]
    _assert_weights(_trainable(process_2, state), expected)
    assert int(state.buffer_count) == 0
    assert all(not np.asarray(b).any() for b in state.buffer)


@pytest.mark.parametrize(
    "weighting, kwargs, expected",
    [
        ("inverse_sqrt", {}, lambda s: 1 / np.sqrt(1 + s)),
        ("constant", {}, lambda s: np.ones_like(s)),
        ("polynomial", {"staleness_exponent": 2.0}, lambda s: (1 + s) ** -2.0),
        (lambda s: 0.9**s, {}, lambda s: 0.9**s),
    ],
    ids=["inverse_sqrt", "constant", "polynomial", "callable"],
)
def test_staleness_weights_match_numpy(weighting, kwargs, expected):
    process = _fedbuff(1, staleness_weighting=weighting, **kwargs)
    staleness = np.arange(8, dtype=np.float64)
    got = [process.staleness_weight(int(s)) for s in staleness]
    np.testing.assert_allclose(got, expected(staleness), rtol=1e-12)


def test_a_bad_staleness_function_or_version_is_refused_and_the_state_kept(process_2):
    state = process_2.initialize()
    (a,), _ = process_2.train(process_2.get_model_weights(state), [_data(X_A, Y_A)])
    with pytest.raises(ValueError, match=r"model_version must be a version the server has had"):
        process_2.receive(state, a, 3)
    negative = _fedbuff(1, staleness_weighting=lambda s: -1.0)
    with pytest.raises(ValueError, match=r"finite float >= 0, got -1.0 for staleness 0"):
        negative.receive(negative.initialize(), a, 0)
    with pytest.raises(TypeError, match="Expected a FedBuffState"):
        process_2.get_model_version({"model_version": 0})
    assert int(state.buffer_count) == 0


def _two_client_simulation(process, seed=0):
    # Four examples each: client "a" takes 4 s, client "b" 10 s.
    population = ClientPopulation(["a", "b"], [1.0, 2.5])
    data = {"a": _data(X_A, Y_A), "b": _data(X_B, Y_B)}
    return BufferedAsynchronousSimulation(process, population, data, seed=seed)


def test_the_schedule_on_the_simulated_clock_is_as_worked_out_by_hand():
    process = _fedbuff(1, max_concurrency=2)
    simulation = _two_client_simulation(process)
    state, measurements = simulation.run(process.initialize(), model_updates=4)
    # t=4: a (from v0) -> v1; a restarts from v1, t=8 -> v2; t=10: b (from v0, staleness 2) -> v3;
    # a restarted at t=8 from v2, t=12: staleness 1 -> v4.
    assert measurements["updates_applied"] == 4
    assert measurements["updates_received"] == 4
    assert measurements["staleness_mean"] == pytest.approx((0 + 0 + 2 + 1) / 4)
    assert measurements["staleness_max"] == 2
    assert measurements["simulated_seconds"] == pytest.approx(12.0)
    assert measurements["model_version"] == 4
    assert measurements["clients_started"] == 6  # a, b at 0; a at 4 and 8; b at 10; a at 12
    assert measurements["dropped"] == 0
    assert measurements["wall_clock_seconds"] > 0

    # The same steps, one client at a time, through the process's computations.
    replay = process.initialize()
    w = {0: process.get_model_weights(replay)}
    sequence = [("a", 0), ("a", 1), ("b", 0), ("a", 2)]
    data = {"a": _data(X_A, Y_A), "b": _data(X_B, Y_B)}
    for client, version in sequence:
        (result,), _ = process.train(w[version], [data[client]])
        replay, _ = process.receive(replay, result, version)
        w[process.get_model_version(replay)] = process.get_model_weights(replay)
    _assert_weights(_trainable(process, state), _trainable(process, replay))


def test_a_run_continues_where_the_last_stopped():
    process = _fedbuff(1, max_concurrency=2)
    simulation = _two_client_simulation(process)
    state, first = simulation.run(process.initialize(), until_seconds=9.0)
    assert (first["updates_applied"], first["simulated_seconds"]) == (2, 9.0)
    state, second = simulation.run(state, model_updates=2)
    assert second["simulated_seconds"] == pytest.approx(12.0)
    assert second["staleness_max"] == 2 and second["model_version"] == 4


def test_clients_that_drop_out_send_nothing():
    process = _fedbuff(1, max_concurrency=2)
    population = ClientPopulation(["a", "b"], [1.0, 2.5], dropout_probability=[0.0, 1.0])
    data = {"a": _data(X_A, Y_A), "b": _data(X_B, Y_B)}
    simulation = BufferedAsynchronousSimulation(process, population, data, seed=1)
    _, measurements = simulation.run(process.initialize(), until_seconds=30.0)
    assert measurements["dropped"] >= 1
    # Only "a" reports, one update every 4 s, none of them stale.
    assert measurements["updates_received"] == 7
    assert measurements["staleness_max"] == 0


def test_an_update_of_weight_zero_is_not_counted():
    process = _fedbuff(2, max_concurrency=2)
    state = process.initialize()
    empty = _data(X_A[:0], Y_A[:0])
    (result,), _ = process.train(process.get_model_weights(state), [empty])
    assert float(result.update_weight) == 0
    state, received = process.receive(state, result, 0)
    assert (received["discarded"], int(state.buffer_count)) == (1, 0)

    population = ClientPopulation(["a", "e"], [1.0, 1.0], network_latency=1.0)
    simulation = BufferedAsynchronousSimulation(
        process, population, {"a": _data(X_A, Y_A), "e": empty}, seed=0
    )
    _, measurements = simulation.run(process.initialize(), until_seconds=10.0)
    # "a" reports every 5 s (4 examples and 1 s of latency), "e" every second with nothing in it.
    assert (measurements["updates_received"], measurements["updates_discarded"]) == (2, 10)
    assert measurements["model_version"] == 1
    silent = ClientPopulation(["a", "e"], [1.0, 1.0])
    simulation = BufferedAsynchronousSimulation(
        process, silent, {"a": _data(X_A, Y_A), "e": empty}, seed=0
    )
    with pytest.raises(ValueError, match="Client 'e' has no examples and no network latency"):
        simulation.run(process.initialize(), model_updates=1)


def _lognormal_run(seed):
    process = _fedbuff(2, max_concurrency=3)
    population = ClientPopulation.sample(
        [str(i) for i in range(6)], seed=3, speed_sigma=1.0, dropout_probability=0.2
    )
    data = {str(i): _data(X_A * (i + 1) / 6, Y_A) for i in range(6)}
    simulation = BufferedAsynchronousSimulation(process, population, data, seed=seed)
    state, measurements = simulation.run(process.initialize(), model_updates=4)
    del measurements["wall_clock_seconds"]
    return _trainable(process, state), measurements


def test_the_same_seed_gives_the_same_run():
    weights, measurements = _lognormal_run(seed=7)
    again, measurements_again = _lognormal_run(seed=7)
    assert measurements == measurements_again
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)
    _, other = _lognormal_run(seed=8)
    assert other["simulated_seconds"] != measurements["simulated_seconds"]


def test_fedbuff_learns_the_shipped_digits():
    from fed_datasets import digits

    input_spec = (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32))

    def digits_model_fn():
        keras.utils.set_random_seed(0)
        return models.from_keras_model(
            keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)]),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec,
        )

    def flat(dataset):
        return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(16)

    train, test = digits.load_data(num_clients=20, seed=0)
    train = train.preprocess(flat)
    x, y = next(iter(flat(test.create_tf_dataset_from_all_clients()).unbatch().batch(10_000)))

    def accuracy(weights):
        kernel, bias = (np.asarray(w) for w in weights.trainable)
        return float(np.mean(np.argmax(x.numpy() @ kernel + bias, axis=1) == y.numpy()))

    process = algorithms.build_fedbuff(
        digits_model_fn, optimizers.build_sgdm(0.1), buffer_size=3, max_concurrency=6
    )
    population = ClientPopulation.sample(
        train.client_ids, seed=0, speed_sigma=0.8, dropout_probability=0.1
    )
    simulation = BufferedAsynchronousSimulation(process, population, train, seed=0)
    state = process.initialize()
    before = accuracy(process.get_model_weights(state))
    state, measurements = simulation.run(state, model_updates=20)
    after = accuracy(process.get_model_weights(state))
    assert measurements["model_version"] == 20
    assert measurements["staleness_mean"] > 0  # six clients at once, a buffer of three
    assert after > before + 0.3, (before, after)
    assert math.isfinite(measurements["simulated_seconds"])
