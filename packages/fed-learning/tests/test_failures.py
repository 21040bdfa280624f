"""What learning rounds do when clients cannot contribute, when the server update would break the model,
when a client's work raises, and what state is left after a failed round."""

import collections
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_core.execution import ClientWorkError
from fed_learning import algorithms, models, optimizers

INPUT_SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
COUNTS = ("num_non_finite_clients", "num_empty_clients", "num_failed_clients")


def model_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
        keras.losses.MeanSquaredError(),
        INPUT_SPEC,
    )


def _data(x, y=None, batch_size=2):
    x = np.asarray(x, np.float32).reshape(-1, 2)
    y = np.ones((len(x), 1), np.float32) if y is None else np.asarray(y, np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y.reshape(-1, 1))).batch(batch_size)


def _good(seed=0):
    x = np.random.default_rng(seed).normal(size=(4, 2))
    return _data(x, x[:, :1] - x[:, 1:])


EMPTY = _data(np.zeros((0, 2)))
NAN = _data([[np.nan, 1.0], [1.0, 2.0]])
INF = _data([[np.inf, 1.0], [1.0, 2.0]])


def _failing(after_batches=1, message="the disk is on fire"):
    def generate():
        for _ in range(after_batches):
            yield np.ones((2, 2), np.float32), np.ones((2, 1), np.float32)
        raise OSError(message)

    return tf.data.Dataset.from_generator(generate, output_signature=INPUT_SPEC)


def _weights(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _assert_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def _next(process, state, data):
    """`process.next`, returning its output and the RuntimeWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        output = process.next(state, data)
    return output, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


MOMENTUM = optimizers.build_sgdm(1.0, momentum=0.9)
BUILDERS = {
    "weighted_fed_avg": lambda **kw: algorithms.build_weighted_fed_avg(
        model_fn, optimizers.build_sgdm(0.1), server_optimizer_fn=MOMENTUM, **kw
    ),
    "unweighted_fed_avg": lambda **kw: algorithms.build_unweighted_fed_avg(
        model_fn, optimizers.build_sgdm(0.1), server_optimizer_fn=MOMENTUM, **kw
    ),
    "weighted_fed_prox": lambda **kw: algorithms.build_weighted_fed_prox(
        model_fn, 0.1, optimizers.build_sgdm(0.1), server_optimizer_fn=MOMENTUM, **kw
    ),
    "fed_sgd": lambda **kw: algorithms.build_fed_sgd(
        model_fn, server_optimizer_fn=optimizers.build_sgdm(0.1, momentum=0.9), **kw
    ),
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def trained(request):
    """A process and its state after one good round, so that its server optimizer has momentum."""
    process = BUILDERS[request.param](client_failure="drop")
    state = process.next(process.initialize(), [_good(0), _good(1)]).state
    return process, state


@pytest.mark.parametrize(
    "clients, reason",
    [
        ([EMPTY, EMPTY], "num_empty_clients"),
        ([NAN, INF], "num_non_finite_clients"),
        ([_failing(), _failing(0)], "num_failed_clients"),
    ],
    ids=["empty", "non_finite", "failed"],
)
def test_a_round_without_a_usable_update_keeps_the_model_and_optimizer_state(
    trained, clients, reason
):
    process, state = trained
    output, warned = _next(process, state, clients)
    assert _same(_weights(process, output.state), _weights(process, state))
    for got, want in zip(tf.nest.flatten(output.state.finalizer), tf.nest.flatten(state.finalizer)):
        np.testing.assert_array_equal(got, want)
    train = output.metrics["client_work"]["train"]
    assert {name: int(train[name]) for name in COUNTS} == {
        name: 2 if name == reason else 0 for name in COUNTS
    }
    assert train["num_examples"] == 0
    assert output.metrics["finalizer"]["update_non_finite"] == 1
    assert any("no client contributed a usable update" in w for w in warned)
    # The kept state goes on training.
    assert not _same(
        _weights(process, process.next(output.state, [_good(2)]).state), _weights(process, state)
    )


def test_clients_without_a_usable_update_are_left_out_of_a_round_that_others_contribute_to():
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    state = process.initialize()
    alone = process.next(state, [_good(3)])
    mixed = process.next(state, [_good(3), EMPTY, NAN])
    _assert_close(_weights(process, mixed.state), _weights(process, alone.state))
    train = mixed.metrics["client_work"]["train"]
    assert [int(train[name]) for name in COUNTS] == [1, 1, 0]
    assert train["num_examples"] == alone.metrics["client_work"]["train"]["num_examples"] == 4
    assert mixed.metrics["finalizer"] == collections.OrderedDict(
        update_non_finite=0, model_non_finite=0
    )


def test_a_server_update_that_would_make_the_model_non_finite_is_refused():
    # A finite update that a huge server learning rate turns into Inf weights.
    process = algorithms.build_weighted_fed_avg(
        model_fn, optimizers.build_sgdm(0.1), server_optimizer_fn=optimizers.build_sgdm(1e38)
    )
    state = process.initialize()
    output, warned = _next(process, state, [_data([[100.0, 100.0]], [[-1e6]], batch_size=1)])
    assert _same(_weights(process, output.state), _weights(process, state))
    assert output.metrics["finalizer"] == collections.OrderedDict(
        update_non_finite=0, model_non_finite=1
    )
    assert any("would have made the model weights" in w for w in warned)
    assert all(np.isfinite(w).all() for w in _weights(process, output.state))


@pytest.fixture(scope="module")
def fed_avg_raise():
    return algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))


def test_a_failing_client_fails_the_round_with_an_error_naming_it(fed_avg_raise):
    state = fed_avg_raise.initialize()
    with pytest.raises(ClientWorkError) as raised:
        fed_avg_raise.next(state, [_good(0), _failing(), _good(1)])
    error = raised.value
    assert error.client_index == 1 and error.num_clients == 3
    assert "client 1 (of 3" in str(error)
    assert "OSError: the disk is on fire" in str(error)
    assert isinstance(error.__cause__, tf.errors.OpError)
    assert "the disk is on fire" in str(error.__cause__)
    assert any("client_failure='drop'" in note for note in error.__notes__)


def test_after_a_failed_round_the_state_is_unchanged_and_usable(fed_avg_raise):
    state = fed_avg_raise.initialize()
    before = _weights(fed_avg_raise, state)
    expected = _weights(fed_avg_raise, fed_avg_raise.next(state, [_good(5)]).state)
    failures = [
        (ClientWorkError, [_good(5), _failing()]),
        # Data of the wrong type is refused before anything runs.
        (TypeError, [_data(np.zeros((2, 2))).map(lambda x, y: (tf.cast(x, tf.int32), y))]),
        (TypeError, "not a list of datasets"),
    ]
    for error, clients in failures:
        with pytest.raises(error):
            fed_avg_raise.next(state, clients)
        assert _same(_weights(fed_avg_raise, state), before)
    with pytest.raises(ValueError, match="do not fit"):
        fed_avg_raise.set_model_weights(state, ([np.zeros((3, 1), np.float32)], []))
    again = fed_avg_raise.next(state, [_good(5)])
    assert _same(_weights(fed_avg_raise, again.state), expected)


def test_dropping_a_failing_client_keeps_the_others_work():
    process = algorithms.build_weighted_fed_avg(
        model_fn, optimizers.build_sgdm(0.1), client_failure="drop"
    )
    state = process.initialize()
    alone = process.next(state, [_good(4)])
    output, warned = _next(process, state, [_failing(message="corrupt record"), _good(4)])
    _assert_close(_weights(process, output.state), _weights(process, alone.state))
    train = output.metrics["client_work"]["train"]
    assert [int(train[name]) for name in COUNTS] == [0, 0, 1]
    assert train["num_examples"] == 4  # the failed client's batch before the error is not counted
    (message,) = [w for w in warned if "left out of the round" in w]
    assert "client 0: " in message and "OSError: corrupt record" in message


def test_client_failure_must_be_raise_or_drop():
    with pytest.raises(
        ValueError, match=r"client_failure must be one of \['raise', 'drop'\], got 'skip'"
    ):
        algorithms.build_unweighted_fed_avg(
            model_fn, optimizers.build_sgdm(0.1), client_failure="skip"
        )


def test_the_older_federated_averaging_process_names_a_failing_client_too():
    process = algorithms.build_federated_averaging_process(model_fn)
    with pytest.raises(ClientWorkError, match=r"client 0 \(of 1"):
        process.next(process.initialize(), [_failing()])


@pytest.mark.parametrize(
    ("values", "finite"),
    [
        ([np.ones((3, 2), np.float32), np.zeros(2, np.float64)], True),
        # Finite values whose sum overflows are still finite.
        ([np.full(4, 3e38, np.float32)], True),
        ([np.array([1.0, np.inf], np.float32)], False),
        ([np.ones(2, np.float32), np.array([-np.inf], np.float64)], False),
        ([np.array([np.nan, 0.0], np.float16)], False),
        ([np.array([65504.0, 65504.0], np.float16)], True),
        # Integer tensors are not checked; no floating-point tensor at all is finite.
        ([np.array([1, 2], np.int32)], True),
        ([], True),
    ],
)
def test_an_update_is_finite_exactly_where_every_floating_point_value_is(values, finite):
    from fed_learning._client_training import _all_finite

    assert bool(_all_finite(values)) is finite
    assert bool(tf.function(_all_finite)(values)) is finite


def test_a_non_finite_update_is_replaced_by_zeros_of_its_shapes_and_a_finite_one_kept():
    from fed_learning._client_training import _zeroed_unless

    update = [tf.constant([[1.0, -2.0]]), tf.constant([3.0], tf.float64)]
    kept = _zeroed_unless(tf.constant(True), update)
    zeroed = _zeroed_unless(tf.constant(False), update)
    for got, want in zip(kept, update):
        np.testing.assert_array_equal(got, want)
    assert [(z.dtype, z.shape) for z in zeroed] == [(u.dtype, u.shape) for u in update]
    assert all(not np.any(z) for z in zeroed)
