"""Mime Lite and client learning-rate schedules, checked against rounds computed by hand in numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_aggregators import UnweightedMeanFactory
from fed_core.execution import ClientWorkError
from fed_datasets import digits
from fed_learning import algorithms, models, optimizers

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
W0 = np.array([[0.5], [-0.5]], np.float32)
LR, MOMENTUM = 0.1, 0.9

# Client A has one batch of 2 examples; client B two batches (2 examples, then 1).
X_A = np.array([[1.0, 2.0], [3.0, 1.0]], np.float32)
Y_A = np.array([[1.0], [2.0]], np.float32)
X_B = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
Y_B = np.array([[1.0], [0.0], [3.0]], np.float32)
CLIENTS = [(X_A, Y_A), (X_B, Y_B)]


def model_fn():
    keras_model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                1, use_bias=False, kernel_initializer=keras.initializers.Constant(W0)
            ),
        ]
    )
    return models.from_keras_model(keras_model, keras.losses.MeanSquaredError(), SPEC)


def _datasets():
    return [tf.data.Dataset.from_tensor_slices((x, y)).batch(2) for x, y in CLIENTS]


def _gradient(w, x, y):
    """The gradient of the mean squared error of `x @ w` against `y`."""
    return 2.0 / len(x) * x.T @ (x @ w - y)


def _batches(x, y):
    return [(x[i : i + 2], y[i : i + 2]) for i in range(0, len(x), 2)]


def _mime_round(w, accumulator, learning_rate, weighted):
    """One Mime Lite round with SGD momentum as the base optimizer: clients step along
    `momentum * accumulator + gradient` with the server's accumulator, never changing it; the server
    averages the deltas and the full-batch gradients and takes one momentum step on the accumulator."""
    deltas, full_gradients, weights = [], [], []
    for x, y in CLIENTS:
        full_gradients.append(_gradient(w, x, y))
        local = w.copy()
        for xb, yb in _batches(x, y):
            local = local - learning_rate * (MOMENTUM * accumulator + _gradient(local, xb, yb))
        deltas.append(w - local)
        weights.append(len(x) if weighted else 1.0)
    weights = np.array(weights) / np.sum(weights)
    mean_delta = sum(p * d for p, d in zip(weights, deltas))
    mean_gradient = sum(p * g for p, g in zip(weights, full_gradients))
    return w - mean_delta, MOMENTUM * accumulator + mean_gradient


def _kernel(process, state):
    return process.get_model_weights(state).trainable[0]


@pytest.mark.parametrize("weighted", [True, False])
def test_two_rounds_match_a_hand_computation(weighted):
    base = optimizers.build_sgdm(LR, momentum=MOMENTUM)
    if weighted:
        process = algorithms.build_weighted_mime_lite(model_fn, base)
    else:
        process = algorithms.build_unweighted_mime_lite(model_fn, base)
    state = process.initialize()
    np.testing.assert_allclose(_kernel(process, state), W0)
    w, accumulator = W0.astype(np.float64), np.zeros_like(W0, np.float64)
    for _ in range(2):
        output = process.next(state, _datasets())
        state = output.state
        w, accumulator = _mime_round(w, accumulator, LR, weighted)
        np.testing.assert_allclose(_kernel(process, state), w, rtol=1e-5)
        optimizer_state = state.client_work[0]
        np.testing.assert_allclose(optimizer_state["accumulator"][0], accumulator, rtol=1e-5)
        assert optimizer_state["learning_rate"] == pytest.approx(LR)
        assert optimizer_state["momentum"] == pytest.approx(MOMENTUM)
    train = output.metrics["client_work"]["train"]
    assert train["num_examples"] == 5
    assert train["num_batches"] == 3
    assert [train[k] for k in ("num_non_finite_clients", "num_empty_clients")] == [0, 0]


def test_clients_do_not_carry_the_optimizer_state_between_their_steps():
    # In round 2 the server's accumulator is nonzero; if client B's second step used an accumulator
    # advanced by its first step, the model would differ from Mime Lite's.
    process = algorithms.build_weighted_mime_lite(
        model_fn, optimizers.build_sgdm(LR, momentum=MOMENTUM)
    )
    state = process.next(process.initialize(), _datasets()).state
    state = process.next(state, _datasets()).state
    w, accumulator = W0.astype(np.float64), np.zeros_like(W0, np.float64)
    w, accumulator = _mime_round(w, accumulator, LR, True)
    x, y = X_B, Y_B
    carried = w.copy()
    v = accumulator.copy()
    for xb, yb in _batches(x, y):
        v = MOMENTUM * v + _gradient(carried, xb, yb)
        carried = carried - LR * v
    frozen = w.copy()
    for xb, yb in _batches(x, y):
        frozen = frozen - LR * (MOMENTUM * accumulator + _gradient(frozen, xb, yb))
    assert not np.allclose(carried, frozen, rtol=1e-3)
    expected, _ = _mime_round(w, accumulator, LR, True)
    np.testing.assert_allclose(_kernel(process, state), expected, rtol=1e-5)


def test_schedule_sets_the_base_learning_rate_of_each_round():
    process = algorithms.build_mime_lite_with_optimizer_schedule(
        model_fn,
        lambda round_number: LR * 0.5 ** tf.cast(round_number, tf.float32),
        optimizers.build_sgdm(1.0, momentum=MOMENTUM),
    )
    state = process.initialize()
    assert state.client_work[0] == 0
    assert state.client_work[1][0]["learning_rate"] == pytest.approx(LR)
    w, accumulator = W0.astype(np.float64), np.zeros_like(W0, np.float64)
    for round_number, learning_rate in enumerate([LR, LR / 2]):
        state = process.next(state, _datasets()).state
        w, accumulator = _mime_round(w, accumulator, learning_rate, True)
        np.testing.assert_allclose(_kernel(process, state), w, rtol=1e-5)
        assert state.client_work[0] == round_number + 1
        assert state.client_work[1][0]["learning_rate"] == pytest.approx(
            LR * 0.5 ** (round_number + 1)
        )
        np.testing.assert_allclose(
            state.client_work[1][0]["accumulator"][0], accumulator, rtol=1e-5
        )


def _fed_avg_round(w, learning_rate):
    deltas, weights = [], []
    for x, y in CLIENTS:
        local = w.copy()
        for xb, yb in _batches(x, y):
            local = local - learning_rate * _gradient(local, xb, yb)
        deltas.append(w - local)
        weights.append(len(x))
    return w - sum(n * d for n, d in zip(weights, deltas)) / sum(weights)


def test_fed_avg_schedule_uses_the_learning_rate_of_each_round():
    process = algorithms.build_weighted_fed_avg_with_optimizer_schedule(
        model_fn,
        # A Python conditional works too: TensorFlow's autograph turns it into a tf.cond.
        lambda round_number: LR if round_number < 1 else LR / 2,
        lambda learning_rate: optimizers.build_sgdm(learning_rate),
    )
    state = process.initialize()
    assert state.client_work == 0
    w = W0.astype(np.float64)
    for round_number, learning_rate in enumerate([LR, LR / 2]):
        output = process.next(state, _datasets())
        state = output.state
        w = _fed_avg_round(w, learning_rate)
        np.testing.assert_allclose(_kernel(process, state), w, rtol=1e-5)
        assert state.client_work == round_number + 1
        client_work = output.metrics["client_work"]
        assert client_work["client_learning_rate"] == pytest.approx(learning_rate)
        assert client_work["train"]["num_examples"] == 5


def test_a_round_without_contributions_keeps_model_and_optimizer_state():
    process = algorithms.build_weighted_mime_lite(
        model_fn, optimizers.build_sgdm(LR, momentum=MOMENTUM)
    )
    state = process.next(process.initialize(), _datasets()).state
    empty = tf.data.Dataset.from_tensor_slices((X_A, Y_A)).take(0).batch(2)
    with pytest.warns(RuntimeWarning, match="not finite"):
        output = process.next(state, [empty, empty])
    np.testing.assert_array_equal(_kernel(process, output.state), _kernel(process, state))
    np.testing.assert_array_equal(
        output.state.client_work[0]["accumulator"][0], state.client_work[0]["accumulator"][0]
    )
    assert output.metrics["client_work"]["train"]["num_empty_clients"] == 2
    assert output.metrics["finalizer"]["update_non_finite"] == 1


def test_an_empty_client_is_left_out_of_both_means():
    process = algorithms.build_weighted_mime_lite(
        model_fn, optimizers.build_sgdm(LR, momentum=MOMENTUM)
    )
    empty = tf.data.Dataset.from_tensor_slices((X_A, Y_A)).take(0).batch(2)
    output = process.next(process.initialize(), [_datasets()[0], empty])
    g = _gradient(W0.astype(np.float64), X_A, Y_A)
    np.testing.assert_allclose(_kernel(process, output.state), W0 - LR * g, rtol=1e-5)
    np.testing.assert_allclose(output.state.client_work[0]["accumulator"][0], g, rtol=1e-5)
    assert output.metrics["client_work"]["train"]["num_empty_clients"] == 1


def _failing_dataset():
    def generate():
        yield X_A, Y_A
        raise OSError("corrupt record")

    return tf.data.Dataset.from_generator(generate, output_signature=SPEC)


def test_a_failing_or_non_finite_client_is_left_out_when_dropping():
    process = algorithms.build_weighted_mime_lite(
        model_fn, optimizers.build_sgdm(LR, momentum=MOMENTUM), client_failure="drop"
    )
    state = process.initialize()
    alone = process.next(state, [_datasets()[0]])
    nan_x = X_B.copy()
    nan_x[0, 0] = np.nan
    non_finite = tf.data.Dataset.from_tensor_slices((nan_x, Y_B)).batch(2)
    # The client's error is the generator's, or TensorFlow's cancellation of the client's other
    # function that was running when it was raised: either way it names client 1.
    with pytest.warns(RuntimeWarning, match="client 1: .*(corrupt record|CancelledError)"):
        output = process.next(state, [_datasets()[0], _failing_dataset(), non_finite])
    np.testing.assert_allclose(_kernel(process, output.state), _kernel(process, alone.state))
    np.testing.assert_allclose(
        output.state.client_work[0]["accumulator"][0], alone.state.client_work[0]["accumulator"][0]
    )
    train = output.metrics["client_work"]["train"]
    assert [train[k] for k in ("num_non_finite_clients", "num_failed_clients")] == [1, 1]
    assert train["num_examples"] == 2
    with pytest.raises(ClientWorkError, match="client 0"):
        algorithms.build_weighted_mime_lite(
            model_fn, optimizers.build_sgdm(LR, momentum=MOMENTUM)
        ).next(state, [_failing_dataset()])


def test_bad_arguments_are_refused_when_building():
    base = optimizers.build_sgdm(LR)
    with pytest.raises(TypeError, match="weighted model_aggregator"):
        algorithms.build_weighted_mime_lite(
            model_fn, base, model_aggregator=UnweightedMeanFactory()
        )
    with pytest.raises(TypeError, match="weighted full_gradient_aggregator"):
        algorithms.build_weighted_mime_lite(
            model_fn, base, full_gradient_aggregator=UnweightedMeanFactory()
        )
    with pytest.raises(TypeError, match="full_gradient_aggregator must be an aggregation factory"):
        algorithms.build_unweighted_mime_lite(model_fn, base, full_gradient_aggregator="mean")
    with pytest.raises(TypeError, match="base_optimizer"):
        algorithms.build_weighted_mime_lite(model_fn, None)
    with pytest.raises(TypeError, match="learning_rate_fn must be a function"):
        algorithms.build_mime_lite_with_optimizer_schedule(model_fn, 0.1, base)
    with pytest.raises(TypeError, match="int32 scalar tensor"):
        algorithms.build_mime_lite_with_optimizer_schedule(model_fn, lambda r: {0: 0.1}[r], base)
    with pytest.raises(TypeError, match="real scalar, got float32\\[2\\]"):
        algorithms.build_weighted_fed_avg_with_optimizer_schedule(
            model_fn, lambda r: tf.constant([0.1, 0.2]), optimizers.build_sgdm
        )
    with pytest.raises(TypeError, match="client_optimizer_fn must return a fed optimizer"):
        algorithms.build_weighted_fed_avg_with_optimizer_schedule(
            model_fn, lambda r: 0.1, lambda lr: keras.optimizers.SGD(lr)
        )
    with pytest.raises(TypeError, match="weighted model_aggregator"):
        algorithms.build_weighted_fed_avg_with_optimizer_schedule(
            model_fn, lambda r: 0.1, optimizers.build_sgdm, model_aggregator=UnweightedMeanFactory()
        )


# Training on the bundled handwritten digits: 10 clients with label skew.
NUM_ROUNDS = 8


def _digits():
    train, test = digits.load_data(num_clients=10, alpha=0.5, seed=0)

    def batches(client_data, client_id):
        element = client_data.create_tf_dataset_for_client(client_id)
        return element.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(16)

    train_sets = [batches(train, i) for i in train.client_ids]
    test_x, test_y = [], []
    for i in test.client_ids:
        for x, y in batches(test, i):
            test_x.append(x.numpy())
            test_y.append(y.numpy())
    return train_sets, np.concatenate(test_x), np.concatenate(test_y)


def _digits_model_fn():
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    return models.from_keras_model(
        keras_model,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32)),
    )


def _accuracy(weights, x, y):
    kernel, bias = weights.trainable
    return float(np.mean(np.argmax(x @ kernel + bias, axis=1) == y))


def test_mime_lite_learns_the_digits():
    train_sets, test_x, test_y = _digits()
    process = algorithms.build_weighted_mime_lite(
        _digits_model_fn, optimizers.build_sgdm(0.05, momentum=0.9)
    )
    state = process.initialize()
    initial = _accuracy(process.get_model_weights(state), test_x, test_y)
    accuracies = []
    for _ in range(NUM_ROUNDS):
        state = process.next(state, train_sets).state
        accuracies.append(_accuracy(process.get_model_weights(state), test_x, test_y))
    assert initial < 0.3
    assert accuracies[-1] > 0.8
    assert accuracies[-1] > accuracies[NUM_ROUNDS // 2 - 1] > initial


def test_a_round_no_client_contributes_to_keeps_the_server_optimizer_state():
    process = algorithms.build_weighted_mime_lite(
        model_fn, optimizers.build_sgdm(LR, momentum=MOMENTUM), client_failure="drop"
    )
    state = process.next(process.initialize(), _datasets()).state
    nan_x = X_B.copy()
    nan_x[0, 0] = np.nan
    non_finite = tf.data.Dataset.from_tensor_slices((nan_x, Y_B)).batch(2)
    with pytest.warns(RuntimeWarning, match="was refused"):
        output = process.next(state, [non_finite])
    assert output.metrics["client_work"]["train"]["num_non_finite_clients"] == 1
    before, after = state.client_work[0]["accumulator"], output.state.client_work[0]["accumulator"]
    assert np.any(np.asarray(before[0]) != 0)  # momentum the first round built up
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_kernel(process, output.state), _kernel(process, state))
