"""fed_learning.optimizers: updates against Keras 3 and NumPy references, tracing, errors."""

import collections
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_learning import optimizers

STEPS = 5


def _weights(seed: int = 0, dtype: Any = np.float32) -> collections.OrderedDict:
    """Small random weights of several shapes, nested in a dict, a list and a tuple."""
    rng = np.random.default_rng(seed)
    return collections.OrderedDict(
        dense=[rng.normal(size=(3, 2)).astype(dtype), rng.normal(size=(2,)).astype(dtype)],
        conv=(rng.normal(size=(2, 2, 2)).astype(dtype),),
        scale=np.asarray(rng.normal(), dtype),
    )


def _gradient_steps(weights: Any, seed: int = 1, decay: float = 1.0) -> list[Any]:
    """`STEPS` random gradients shaped as `weights`, the k-th scaled by `decay**k`."""
    rng = np.random.default_rng(seed)
    return [
        tf.nest.map_structure(
            lambda w, k=k: (decay**k * rng.normal(size=w.shape)).astype(w.dtype), weights
        )
        for k in range(STEPS)
    ]


def _specs(structure: Any) -> Any:
    return tf.nest.map_structure(
        lambda value: tf.TensorSpec.from_tensor(tf.convert_to_tensor(value)), structure
    )


def _fed_trajectory(
    optimizer: optimizers.Optimizer, weights: Any, gradient_steps: list[Any]
) -> tuple[list[list[np.ndarray]], Any]:
    """The flat weights after each step, and the final state."""
    state = optimizer.initialize(_specs(weights))
    current = tf.nest.map_structure(tf.constant, weights)
    trajectory = []
    for gradients in gradient_steps:
        state, current = optimizer.next(
            state, current, tf.nest.map_structure(tf.constant, gradients)
        )
        trajectory.append([w.numpy() for w in tf.nest.flatten(current)])
    return trajectory, state


def _keras_trajectory(
    optimizer: keras.optimizers.Optimizer, weights: Any, gradient_steps: list[Any]
) -> list[list[np.ndarray]]:
    variables = [keras.Variable(w) for w in tf.nest.flatten(weights)]
    trajectory = []
    for gradients in gradient_steps:
        optimizer.apply([tf.constant(g) for g in tf.nest.flatten(gradients)], variables)
        trajectory.append([np.asarray(v.numpy()) for v in variables])
    return trajectory


def _assert_trajectories_close(
    actual: list[list[np.ndarray]], expected: list[list[np.ndarray]], rtol: float = 1e-5
) -> None:
    assert len(actual) == len(expected) == STEPS
    for step, (actual_step, expected_step) in enumerate(zip(actual, expected, strict=True)):
        for leaf, (a, e) in enumerate(zip(actual_step, expected_step, strict=True)):
            np.testing.assert_allclose(
                a, e, rtol=rtol, atol=1e-6, err_msg=f"step {step}, leaf {leaf}"
            )


# Keras's definitions match TFF's for these. Keras's SGD keeps a velocity pre-multiplied by the
# learning rate (m = momentum * m - lr * g; w = w + m) where TFF's accumulates raw gradients
# (v = momentum * v + g; w = w - lr * v): the same update while the learning rate is constant.
# Keras's AdamW decays w by lr * weight_decay * w before Adam's step: TFF's decoupled decay.
# Keras's Adagrad `initial_accumulator_value` is TFF's `initial_preconditioner_value`, and both add
# epsilon under the square root. Keras's RMSprop `rho` is TFF's `decay`, but Keras adds epsilon
# under the square root and TFF outside it, so the rules agree only with epsilon = 0 (the case
# with epsilon > 0 is checked against a NumPy reference below).
KERAS_CASES = [
    pytest.param(
        lambda: optimizers.build_sgdm(learning_rate=0.1),
        lambda: keras.optimizers.SGD(learning_rate=0.1),
        id="sgd",
    ),
    pytest.param(
        lambda: optimizers.build_sgdm(learning_rate=0.1, momentum=0.9),
        lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        id="sgd-momentum",
    ),
    pytest.param(
        lambda: optimizers.build_sgdm(learning_rate=0.1, momentum=0.8, nesterov=True),
        lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.8, nesterov=True),
        id="sgd-nesterov",
    ),
    pytest.param(
        lambda: optimizers.build_adam(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
        lambda: keras.optimizers.Adam(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
        id="adam",
    ),
    pytest.param(
        lambda: optimizers.build_adam(),
        lambda: keras.optimizers.Adam(),
        id="adam-defaults",
    ),
    pytest.param(
        lambda: optimizers.build_adamw(
            learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4, weight_decay=0.1
        ),
        lambda: keras.optimizers.AdamW(
            learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4, weight_decay=0.1
        ),
        id="adamw",
    ),
    pytest.param(
        lambda: optimizers.build_adagrad(
            learning_rate=0.1, initial_preconditioner_value=0.2, epsilon=1e-3
        ),
        lambda: keras.optimizers.Adagrad(
            learning_rate=0.1, initial_accumulator_value=0.2, epsilon=1e-3
        ),
        id="adagrad",
    ),
    pytest.param(
        lambda: optimizers.build_rmsprop(learning_rate=0.05, decay=0.8, epsilon=0.0),
        lambda: keras.optimizers.RMSprop(learning_rate=0.05, rho=0.8, epsilon=0.0),
        id="rmsprop-epsilon-0",
    ),
]


@pytest.mark.parametrize("build, build_keras", KERAS_CASES)
def test_matches_keras(
    build: Callable[[], optimizers.Optimizer], build_keras: Callable[[], Any]
) -> None:
    weights = _weights()
    gradient_steps = _gradient_steps(weights)
    actual, _ = _fed_trajectory(build(), weights, gradient_steps)
    expected = _keras_trajectory(build_keras(), weights, gradient_steps)
    _assert_trajectories_close(actual, expected)
    # The weights moved: the comparison is not between two unchanged copies.
    assert not np.allclose(actual[-1][0], tf.nest.flatten(weights)[0])


def _numpy_rmsprop(
    weights: Any, gradient_steps: list[Any], learning_rate: float, decay: float, epsilon: float
) -> list[list[np.ndarray]]:
    """TFF's RMSprop: s = decay * s + (1 - decay) * g**2; w = w - lr * g / (sqrt(s) + epsilon)."""
    current = [np.array(w, np.float64) for w in tf.nest.flatten(weights)]
    preconditioners = [np.zeros_like(w) for w in current]
    trajectory = []
    for gradients in gradient_steps:
        for i, g in enumerate(tf.nest.flatten(gradients)):
            preconditioners[i] = decay * preconditioners[i] + (1 - decay) * g**2
            current[i] = current[i] - learning_rate * g / (np.sqrt(preconditioners[i]) + epsilon)
        trajectory.append([w.copy() for w in current])
    return trajectory


def test_rmsprop_matches_numpy_reference_with_epsilon_outside_the_square_root() -> None:
    weights = _weights()
    gradient_steps = _gradient_steps(weights, decay=0.3)
    optimizer = optimizers.build_rmsprop(learning_rate=0.05, decay=0.8, epsilon=0.1)
    actual, _ = _fed_trajectory(optimizer, weights, gradient_steps)
    _assert_trajectories_close(
        actual, _numpy_rmsprop(weights, gradient_steps, learning_rate=0.05, decay=0.8, epsilon=0.1)
    )
    # Keras's RMSprop, epsilon under the square root, is a different rule for epsilon > 0.
    keras_rmsprop = keras.optimizers.RMSprop(learning_rate=0.05, rho=0.8, epsilon=0.1)
    keras_final = _keras_trajectory(keras_rmsprop, weights, gradient_steps)[-1]
    assert not all(
        np.allclose(a, k, rtol=1e-3) for a, k in zip(actual[-1], keras_final, strict=True)
    )


def _numpy_adam(
    weights: Any,
    gradient_steps: list[Any],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    yogi_initial_preconditioner: float | None = None,
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Adam with bias correction as TFF applies it, or Yogi's additive second moment
    (Zaheer et al., 2018: v = v - (1 - beta_2) * sign(v - g**2) * g**2) when
    `yogi_initial_preconditioner` is given. Returns the weights and preconditioners per step."""
    current = [np.array(w, np.float64) for w in tf.nest.flatten(weights)]
    accumulators = [np.zeros_like(w) for w in current]
    initial = 0.0 if yogi_initial_preconditioner is None else yogi_initial_preconditioner
    preconditioners = [np.full_like(w, initial) for w in current]
    trajectory, preconditioner_trajectory = [], []
    for t, gradients in enumerate(gradient_steps, start=1):
        normalization = np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for i, g in enumerate(tf.nest.flatten(gradients)):
            g = g.astype(np.float64)
            accumulators[i] = beta_1 * accumulators[i] + (1 - beta_1) * g
            if yogi_initial_preconditioner is None:
                preconditioners[i] = beta_2 * preconditioners[i] + (1 - beta_2) * g**2
            else:
                preconditioners[i] = (
                    preconditioners[i] - (1 - beta_2) * np.sign(preconditioners[i] - g**2) * g**2
                )
            current[i] = current[i] - learning_rate * normalization * accumulators[i] / (
                np.sqrt(preconditioners[i]) + epsilon
            )
        trajectory.append([w.copy() for w in current])
        preconditioner_trajectory.append([p.copy() for p in preconditioners])
    return trajectory, preconditioner_trajectory


def test_yogi_matches_numpy_reference_of_the_published_update() -> None:
    weights = _weights()
    # Shrinking gradients and a small beta_2 make g**2 fall below the preconditioner, so that the
    # sign in Yogi's update takes both values.
    gradient_steps = _gradient_steps(weights, decay=0.3)
    hparams = dict(learning_rate=0.05, beta_1=0.8, beta_2=0.3, epsilon=1e-3)
    optimizer = optimizers.build_yogi(**hparams, initial_preconditioner_value=0.01)
    actual, state = _fed_trajectory(optimizer, weights, gradient_steps)
    expected, preconditioners = _numpy_adam(
        weights, gradient_steps, **hparams, yogi_initial_preconditioner=0.01
    )
    _assert_trajectories_close(actual, expected)
    final_preconditioner = [p.numpy() for p in tf.nest.flatten(state["preconditioner"])]
    for a, e in zip(final_preconditioner, preconditioners[-1], strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5)
    assert any(np.any(later < earlier) for earlier, later in zip(*preconditioners[:2], strict=True))
    assert any(np.any(later > earlier) for earlier, later in zip(*preconditioners[:2], strict=True))
    assert int(state["step"]) == STEPS


def test_initial_slots_have_the_given_values_and_the_weights_dtypes() -> None:
    specs = [tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.float64)]
    yogi = optimizers.build_yogi(initial_preconditioner_value=1e-3).initialize(specs)
    adagrad = optimizers.build_adagrad(0.1).initialize(specs)
    np.testing.assert_allclose(yogi["preconditioner"][0], [1e-3, 1e-3])
    np.testing.assert_allclose(yogi["accumulator"][0], [0.0, 0.0])
    np.testing.assert_allclose(adagrad["preconditioner"][0], [0.1, 0.1])
    assert adagrad["preconditioner"][1].dtype == tf.float64
    assert float(adagrad["preconditioner"][1]) == 0.1


def test_float64_weights_keep_their_dtype_and_precision() -> None:
    weights = _weights(dtype=np.float64)
    weights["scale"] = weights["scale"].astype(np.float32)
    gradient_steps = _gradient_steps(weights)
    hparams = dict(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4)
    actual, state = _fed_trajectory(optimizers.build_adam(**hparams), weights, gradient_steps)
    expected, _ = _numpy_adam(weights, gradient_steps, **hparams)
    # The state's hyperparameters are float32 (0.05 is rounded), the rest of the arithmetic float64.
    _assert_trajectories_close(actual, expected, rtol=1e-6)
    assert [w.dtype for w in actual[-1]] == [np.float64] * 3 + [np.float32]
    assert [s.dtype for s in tf.nest.flatten(state["accumulator"])] == [tf.float64] * 3 + [
        tf.float32
    ]


ALL_OPTIMIZERS = [
    pytest.param(lambda: optimizers.build_sgdm(learning_rate=0.1), id="sgd"),
    pytest.param(lambda: optimizers.build_sgdm(learning_rate=0.1, momentum=0.9), id="sgdm"),
    pytest.param(lambda: optimizers.build_adam(learning_rate=0.1), id="adam"),
    pytest.param(lambda: optimizers.build_adamw(learning_rate=0.1), id="adamw"),
    pytest.param(lambda: optimizers.build_adagrad(learning_rate=0.1), id="adagrad"),
    pytest.param(lambda: optimizers.build_yogi(learning_rate=0.1), id="yogi"),
    pytest.param(lambda: optimizers.build_rmsprop(learning_rate=0.1), id="rmsprop"),
]


@pytest.mark.parametrize("build", ALL_OPTIMIZERS)
def test_runs_in_a_tf_function_traced_once_without_variables(
    build: Callable[[], optimizers.Optimizer],
) -> None:
    optimizer = build()
    numpy_weights = _weights()
    weights = tf.nest.map_structure(tf.constant, numpy_weights)
    gradient_steps = [tf.nest.map_structure(tf.constant, g) for g in _gradient_steps(numpy_weights)]
    specs = _specs(weights)

    initialize = tf.function(lambda: optimizer.initialize(specs))
    state = initialize()
    tf.nest.map_structure(np.testing.assert_array_equal, state, optimizer.initialize(specs))
    state_specs = _specs(state)

    @tf.function(input_signature=[state_specs, specs, specs])
    def step(state: Any, weights: Any, gradients: Any) -> Any:
        return optimizer.next(state, weights, gradients)

    traced_state, traced_weights = state, weights
    eager_state, eager_weights = state, weights
    for gradients in gradient_steps:
        traced_state, traced_weights = step(traced_state, traced_weights, gradients)
        eager_state, eager_weights = optimizer.next(eager_state, eager_weights, gradients)
    assert step.experimental_get_tracing_count() == 1
    tf.nest.map_structure(
        lambda t, e: np.testing.assert_allclose(t, e, rtol=1e-6),
        (traced_state, traced_weights),
        (eager_state, eager_weights),
    )
    # Self-contained graphs (no variables, no captured tensors) are what serialization needs.
    for graph in (initialize.get_concrete_function().graph, step.get_concrete_function().graph):
        assert not graph.variables and not graph.captures
        op_types = {op.type for op in graph.get_operations()}
        assert not op_types & {"VarHandleOp", "VariableV2", "ReadVariableOp", "AssignVariableOp"}


def test_learning_rate_set_inside_a_tf_function_takes_effect_without_retracing() -> None:
    optimizer = optimizers.build_sgdm(learning_rate=0.1, momentum=0.5)
    weights = [tf.constant([1.0, 2.0])]
    gradients = [tf.constant([0.5, -1.0])]
    state = optimizer.initialize(_specs(weights))

    @tf.function(
        input_signature=[_specs(state), _specs(weights), _specs(gradients), tf.TensorSpec([])]
    )
    def scheduled_step(state: Any, weights: Any, gradients: Any, learning_rate: tf.Tensor) -> Any:
        state = optimizer.set_hparams(state, {"learning_rate": learning_rate})
        return optimizer.next(state, weights, gradients)

    state, new_weights = scheduled_step(state, weights, gradients, 0.2)
    np.testing.assert_allclose(new_weights[0], [0.9, 2.2])
    np.testing.assert_allclose(state["accumulator"][0], [0.5, -1.0])
    # With a learning rate of zero the weights stay, while the momentum still accumulates.
    state, unchanged = scheduled_step(state, new_weights, gradients, 0.0)
    np.testing.assert_allclose(unchanged[0], [0.9, 2.2])
    np.testing.assert_allclose(state["accumulator"][0], [0.75, -1.5])
    assert float(state["learning_rate"]) == 0.0
    assert scheduled_step.experimental_get_tracing_count() == 1


def test_hyperparameters_given_as_symbolic_tensors_are_used() -> None:
    weights = [tf.constant([1.0, -1.0])]
    gradients = [tf.constant([2.0, 4.0])]

    @tf.function(input_signature=[tf.TensorSpec([])])
    def one_step(learning_rate: tf.Tensor) -> Any:
        optimizer = optimizers.build_sgdm(learning_rate=learning_rate)
        state = optimizer.initialize(_specs(weights))
        return optimizer.next(state, weights, gradients)[1]

    np.testing.assert_allclose(one_step(0.25)[0], [0.5, -2.0])
    np.testing.assert_allclose(one_step(0.5)[0], [0.0, -3.0])


def test_hyperparameters_given_as_concrete_tensors_and_numpy_values() -> None:
    optimizer = optimizers.build_sgdm(learning_rate=tf.constant(0.5), momentum=np.float32(0.25))
    assert repr(optimizer) == "SGD(learning_rate=0.5, momentum=0.25)"
    with pytest.raises(ValueError, match=r"SGD `learning_rate` must be .* >= 0, got -1.0"):
        optimizers.build_sgdm(learning_rate=tf.constant(-1.0))


DEFAULT_HPARAMS = [
    pytest.param(optimizers.build_sgdm, {"learning_rate": 0.01}, id="sgd"),
    pytest.param(
        lambda: optimizers.build_sgdm(momentum=0.9),
        {"learning_rate": 0.01, "momentum": 0.9},
        id="sgdm",
    ),
    pytest.param(
        optimizers.build_adam,
        {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
        id="adam",
    ),
    pytest.param(
        optimizers.build_adamw,
        {
            "learning_rate": 0.001,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-7,
            "weight_decay": 0.004,
        },
        id="adamw",
    ),
    pytest.param(
        lambda: optimizers.build_adagrad(0.1),
        {"learning_rate": 0.1, "epsilon": 1e-7},
        id="adagrad",
    ),
    pytest.param(
        optimizers.build_yogi,
        {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-3},
        id="yogi",
    ),
    pytest.param(
        optimizers.build_rmsprop,
        {"learning_rate": 0.01, "decay": 0.9, "epsilon": 1e-7},
        id="rmsprop",
    ),
]


@pytest.mark.parametrize("build, defaults", DEFAULT_HPARAMS)
def test_hparams_have_tff_defaults_and_round_trip(
    build: Callable[[], optimizers.Optimizer], defaults: dict[str, float]
) -> None:
    optimizer = build()
    state = optimizer.initialize(_specs(_weights()))
    hparams = optimizer.get_hparams(state)
    assert isinstance(hparams, collections.OrderedDict)
    assert list(hparams) == list(defaults)
    for name, value in defaults.items():
        assert hparams[name].dtype == tf.float32 and hparams[name].shape == ()
        np.testing.assert_allclose(hparams[name], value, rtol=1e-7)

    changed = {name: value / 2 for name, value in defaults.items()}
    new_state = optimizer.set_hparams(state, changed)
    for name, value in optimizer.get_hparams(new_state).items():
        np.testing.assert_allclose(value, changed[name], rtol=1e-7)
    for key in state:
        if key not in defaults:
            assert new_state[key] is state[key]
    np.testing.assert_allclose(
        optimizer.get_hparams(state)["learning_rate"], defaults["learning_rate"]
    )

    round_trip = optimizer.set_hparams(new_state, optimizer.get_hparams(state))
    tf.nest.map_structure(np.testing.assert_array_equal, round_trip, state)

    partial = optimizer.set_hparams(state, {"learning_rate": 0.5})
    assert float(partial["learning_rate"]) == 0.5
    assert list(partial) == list(state)


def test_set_hparams_rejects_unknown_names_and_invalid_values() -> None:
    optimizer = optimizers.build_adam()
    state = optimizer.initialize([tf.TensorSpec([2])])
    with pytest.raises(ValueError, match=r"Adam has no hyperparameters \['lr'\]; its hyperpar"):
        optimizer.set_hparams(state, {"lr": 0.1})
    with pytest.raises(ValueError, match=r"Adam `beta_2` must be a float in \[0, 1\), got 1.0"):
        optimizer.set_hparams(state, {"beta_2": 1.0})
    with pytest.raises(ValueError, match=r"no hyperparameters \['momentum'\]"):
        sgd = optimizers.build_sgdm()
        sgd.set_hparams(sgd.initialize([tf.TensorSpec([2])]), {"momentum": 0.9})
    with pytest.raises(ValueError, match=r"no hyperparameters \['step'\]"):
        optimizer.set_hparams(state, {"step": 3})


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: optimizers.build_sgdm(-0.1), ValueError, r"SGD `learning_rate` .* >= 0, got -0.1"),
        (
            lambda: optimizers.build_sgdm(momentum=1.0),
            ValueError,
            r"`momentum` .* \[0, 1\), got 1.0",
        ),
        (lambda: optimizers.build_sgdm(momentum=-0.5), ValueError, r"`momentum` .*, got -0.5"),
        (
            lambda: optimizers.build_sgdm(nesterov=True),
            ValueError,
            r"needs a momentum > 0, got None",
        ),
        (lambda: optimizers.build_sgdm(nesterov=1), TypeError, r"`nesterov` must be a bool, got 1"),
        (lambda: optimizers.build_adam(-1e-3), ValueError, r"Adam `learning_rate` .*, got -0.001"),
        (
            lambda: optimizers.build_adam(beta_1=1.0),
            ValueError,
            r"Adam `beta_1` .*\[0, 1\), got 1.0",
        ),
        (lambda: optimizers.build_adam(beta_2=-0.1), ValueError, r"Adam `beta_2` .*, got -0.1"),
        (
            lambda: optimizers.build_adam(epsilon=-1e-7),
            ValueError,
            r"Adam `epsilon` .*, got -1e-07",
        ),
        (lambda: optimizers.build_adam(float("nan")), ValueError, r"`learning_rate` .*, got nan"),
        (lambda: optimizers.build_adam(float("inf")), ValueError, r"finite float >= 0, got inf"),
        (lambda: optimizers.build_adam("0.1"), TypeError, r"`learning_rate` .*, got '0.1' \(str\)"),
        (lambda: optimizers.build_adam(True), TypeError, r"`learning_rate` .*, got True \(bool\)"),
        (
            lambda: optimizers.build_adam(tf.constant([0.1, 0.2])),
            TypeError,
            r"`learning_rate` must be a real scalar, got a float32 value of shape \(2,\)",
        ),
        (lambda: optimizers.build_adamw(weight_decay=-0.1), ValueError, r"AdamW `weight_decay`"),
        (
            lambda: optimizers.build_adagrad(0.1, initial_preconditioner_value=-1.0),
            ValueError,
            r"Adagrad `initial_preconditioner_value` must be a finite float >= 0, got -1.0",
        ),
        (
            lambda: optimizers.build_yogi(initial_preconditioner_value=0.0),
            ValueError,
            r"Yogi `initial_preconditioner_value` must be a finite float > 0, got 0.0",
        ),
        (lambda: optimizers.build_rmsprop(decay=1.5), ValueError, r"RMSprop `decay` .*, got 1.5"),
    ],
)
def test_invalid_hyperparameters_are_rejected_at_build_time(
    build: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build()


def test_zero_momentum_is_plain_gradient_descent() -> None:
    optimizer = optimizers.build_sgdm(learning_rate=0.1, momentum=0.0)
    state = optimizer.initialize([tf.TensorSpec([2])])
    assert list(state) == ["learning_rate"]
    _, weights = optimizer.next(state, [tf.constant([1.0, 1.0])], [tf.constant([1.0, -2.0])])
    np.testing.assert_allclose(weights[0], [0.9, 1.2])


Point = collections.namedtuple("Point", ["x", "y"])


def test_nested_structures_keep_their_containers() -> None:
    optimizer = optimizers.build_adam()
    weights = {"b": (tf.ones([2]), [tf.ones([])]), "a": Point(x=tf.ones([1]), y=tf.ones([3]))}
    state = optimizer.initialize(_specs(weights))
    state, new_weights = optimizer.next(
        state, weights, tf.nest.map_structure(tf.ones_like, weights)
    )
    assert isinstance(new_weights, dict) and list(new_weights) == ["b", "a"]
    assert isinstance(new_weights["b"], tuple) and isinstance(new_weights["b"][1], list)
    assert isinstance(new_weights["a"], Point)
    # One Adam step moves every weight by the learning rate against the gradient's sign.
    np.testing.assert_allclose(new_weights["a"].y, [0.999] * 3, rtol=1e-5)
    assert isinstance(state["accumulator"]["a"], Point)


def test_single_tensor_and_empty_weights() -> None:
    optimizer = optimizers.build_adam(learning_rate=0.1)
    state = optimizer.initialize(tf.TensorSpec([2]))
    state, weights = optimizer.next(state, tf.constant([1.0, 2.0]), tf.constant([3.0, -3.0]))
    np.testing.assert_allclose(weights, [0.9, 2.1], rtol=1e-5)
    empty_state, empty = optimizer.next(optimizer.initialize([]), [], [])
    assert empty == [] and int(empty_state["step"]) == 1


def test_indexed_slices_gradients_are_applied_densely() -> None:
    embeddings = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        loss = tf.reduce_sum(tf.gather(embeddings, [0, 2, 0]))
    gradient = tape.gradient(loss, embeddings)
    assert isinstance(gradient, tf.IndexedSlices)
    optimizer = optimizers.build_sgdm(learning_rate=0.5)
    _, (updated,) = optimizer.next(
        optimizer.initialize(_specs([embeddings])), [embeddings], [gradient]
    )
    np.testing.assert_allclose(updated, [[0.0, 1.0], [3.0, 4.0], [4.5, 5.5]])


@pytest.fixture
def sgdm_setup() -> tuple[optimizers.Optimizer, Any, Any]:
    optimizer = optimizers.build_sgdm(momentum=0.9)
    weights = tf.nest.map_structure(tf.constant, _weights())
    return optimizer, optimizer.initialize(_specs(weights)), weights


def _with(structure: Any, path: tuple, value: Any) -> Any:
    """A copy of a nested dict/list/tuple structure with the element at `path` replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(structure, dict):
        return type(structure)(
            {k: _with(v, rest, value) if k == head else v for k, v in structure.items()}
        )
    items = [_with(v, rest, value) if i == head else v for i, v in enumerate(structure)]
    return type(structure)(items)


@pytest.mark.parametrize(
    "path, value, error, message",
    [
        (("dense", 1), None, TypeError, r"gradients at \['dense'\]\[1\] is None; every weight"),
        (
            ("conv", 0),
            tf.zeros([2, 2, 1]),
            ValueError,
            r"gradients at \['conv'\]\[0\] has shape \(2, 2, 1\), but the weight there has "
            r"shape \(2, 2, 2\)",
        ),
        (
            ("scale",),
            tf.constant(1.0, tf.float64),
            TypeError,
            r"gradients at \['scale'\] has dtype float64, but the weight there has dtype float32",
        ),
        (
            ("dense",),
            [tf.zeros([3, 2])],
            ValueError,
            r"gradients and weights differ in structure at \['dense'\]: expected 2 elements",
        ),
        (
            ("dense",),
            tf.zeros([2]),
            ValueError,
            r"at \['dense'\]: expected list of length 2 \(as in weights\), got float32 value",
        ),
        (
            ("conv", 0),
            {"kernel": tf.zeros([2, 2, 2])},
            ValueError,
            r"at \['conv'\]\[0\]: expected float32 value of shape \(2, 2, 2\) \(as in weights\), "
            r"got OrderedDict|got dict",
        ),
        (
            ("dense", 0),
            object(),
            TypeError,
            r"gradients at \['dense'\]\[0\] must be a tensor, got <object object",
        ),
    ],
)
def test_gradients_not_matching_weights_are_named_by_position(
    sgdm_setup: Any, path: tuple, value: Any, error: type[Exception], message: str
) -> None:
    optimizer, state, weights = sgdm_setup
    gradients = _with(weights, path, value)
    with pytest.raises(error, match=message):
        optimizer.next(state, weights, gradients)


def test_gradients_with_other_keys_are_rejected(sgdm_setup: Any) -> None:
    optimizer, state, weights = sgdm_setup
    gradients = collections.OrderedDict(weights)
    gradients["bias"] = gradients.pop("scale")
    with pytest.raises(
        ValueError,
        match=r"at the top level: gradients has missing keys \['scale'\] and unexpected keys "
        r"\['bias'\]",
    ):
        optimizer.next(state, weights, gradients)


def test_state_for_other_weights_or_another_optimizer_is_rejected(sgdm_setup: Any) -> None:
    optimizer, state, weights = sgdm_setup
    other_state = optimizer.initialize(_specs(_with(weights, ("dense", 0), tf.zeros([2, 3]))))
    with pytest.raises(
        ValueError,
        match=r"state\['accumulator'\] at \['dense'\]\[0\] has shape \(2, 3\), but the weight "
        r"there has shape \(3, 2\)\. \(Was initialize\(\) given the specs of these weights\?\)",
    ):
        optimizer.next(other_state, weights, weights)
    adam_state = optimizers.build_adam().initialize(_specs(weights))
    with pytest.raises(ValueError, match=r"SGD expects a state with keys \['learning_rate', "):
        optimizer.next(adam_state, weights, weights)


@pytest.mark.parametrize(
    "specs, error, message",
    [
        ([np.zeros(2)], TypeError, r"specs at \[0\] must be a tf.TensorSpec, got float64 value"),
        ({"w": tf.TensorSpec([2], tf.int32)}, TypeError, r"specs at \['w'\] have dtype int32"),
        ([tf.TensorSpec([None, 2])], ValueError, r"specs at \[0\] have shape \(None, 2\)"),
        (
            (tf.TensorSpec, tf.TensorSpec),
            TypeError,
            r"specs at \[0\] must be a tf.TensorSpec, got the class TensorSpec itself rather than an "
            r"instance \(tf.TensorSpec.from_tensor\(weight\) makes one\)",
        ),
    ],
)
def test_initialize_rejects_specs_it_cannot_build_state_for(
    specs: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        optimizers.build_adagrad(0.1).initialize(specs)


def test_weights_must_be_floating_point() -> None:
    optimizer = optimizers.build_sgdm()
    state = optimizer.initialize([tf.TensorSpec([2])])
    with pytest.raises(
        TypeError, match=r"weights at \[0\] must be floating-point, got dtype int32"
    ):
        optimizer.next(state, [tf.constant([1, 2])], [tf.constant([1, 2])])


def test_plain_sgd_does_not_read_its_specs_as_tff_s_does() -> None:
    # TFF's composing-learning-algorithms tutorial passes the class itself as every spec.
    weights = [tf.constant([1.0, 2.0])]
    specs = tf.nest.map_structure(lambda x: tf.TensorSpec, weights)
    optimizer = optimizers.build_sgdm(learning_rate=0.5)
    state = optimizer.initialize(specs)
    _, updated = optimizer.next(state, weights, [tf.constant([2.0, 2.0])])
    np.testing.assert_allclose(updated[0], [0.0, 1.0])
    with pytest.raises(TypeError, match="the class TensorSpec itself"):
        optimizers.build_sgdm(learning_rate=0.5, momentum=0.9).initialize(specs)
