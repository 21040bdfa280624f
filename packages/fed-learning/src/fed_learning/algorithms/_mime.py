"""Mime Lite (Karimireddy et al., "Breaking the centralized barrier for cross-device federated
learning", NeurIPS 2021), composed from the learning templates.

Clients train with the base optimizer from the server's optimizer state, which they use and never change
(SGD with momentum steps along `momentum * server_accumulator + gradient`). Each client also computes the
mean gradient of its loss over all its data at the broadcast model; the server aggregates these full
gradients (weighted as the model updates) and takes one step of the base optimizer with them to update
its state. The model updates are aggregated and applied with the server optimizer as in FedAvg.

Failures as in `build_weighted_fed_avg`: a client whose update or full gradient is not finite, or without
data, has weight 0 in both aggregations and is counted in `metrics['client_work']['train']`; a round that
no client contributes to keeps the model, and the base optimizer's state too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import (
    MeanFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    WeightedAggregationFactory,
)
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_learning._client_training import (
    _all_finite,
    _choose,
    build_gradient_on_client,
    build_metrics_aggregation,
    data_type_of,
    failed_client_result,
    train_from_optimizer_state,
    weights_type_of,
)
from fed_learning.algorithms._fed_avg import (
    _check_arguments,
    _compose,
    _server_optimizer,
    _undefined_without_contributions,
    _weighting,
)
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import TrainableModel, as_model, as_optimizer
from fed_learning.optimizers import Optimizer
from fed_learning.templates import (
    ClientWeighting,
    ClientWorkProcess,
    DistributionProcess,
    LearningProcess,
    LoopImplementation,
)
from fed_learning.templates._client_work import _train_report, check_loop_options
from fed_learning.templates._templates import (
    ClientFailureGuard,
    GuardedComputation,
    check_client_failure,
    guards_of,
)
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType

ModelFn = Callable[[], Any]


def _initial_optimizer_state(optimizer: Optimizer, model: TrainableModel) -> fc.Computation:
    trainable_type = weights_type_of(model).trainable  # type: ignore[attr-defined]

    @ftf.computation
    def initial_state():
        return optimizer.initialize(
            [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype)) for t in trainable_type]
        )

    return initial_state


def _build_mime_on_client(
    model: TrainableModel, optimizer: Optimizer, state_type: Any, uniform_weighting: bool
) -> fc.Computation:
    """`(optimizer_state, weights, data) -> <ClientResult, local metrics, status, full gradient>`."""
    full_gradient_on_client = build_gradient_on_client(model)

    @ftf.computation(state_type, weights_type_of(model), data_type_of(model))
    def mime_on_client(optimizer_state, weights, dataset):
        full = full_gradient_on_client(weights, dataset)
        gradient_finite = tf.equal(full[2]["num_non_finite_clients"], 0)
        result, metrics, status = train_from_optimizer_state(
            model,
            optimizer,
            weights,
            dataset,
            optimizer_state,
            freeze_optimizer_state=True,
            uniform_weighting=uniform_weighting,
            also_finite=gradient_finite,
        )
        return result, metrics, status, full[0].update

    return mime_on_client


def _build_mime_lite_client_work(
    model: TrainableModel,
    optimizer: Optimizer,
    client_weighting: ClientWeighting,
    full_gradient_aggregator: Any,
    metrics_aggregator: Any,
    client_failure: str,
) -> ClientWorkProcess:
    """Client work whose state is `<base optimizer state, full gradient aggregator state>`."""
    trainable_type = weights_type_of(model).trainable  # type: ignore[attr-defined]
    initial_optimizer_state = _initial_optimizer_state(optimizer, model)
    state_type = initial_optimizer_state.type_signature.result
    gradient_aggregator = _undefined_without_contributions(
        _create(full_gradient_aggregator, trainable_type)
    )
    work = _build_mime_on_client(
        model, optimizer, state_type, client_weighting is ClientWeighting.UNIFORM
    )
    metrics_type = work.type_signature.result[1]  # type: ignore[index]
    aggregate_metrics = build_metrics_aggregation(model, metrics_type, metrics_aggregator)

    @ftf.computation(state_type, trainable_type)
    def update_optimizer_state(state, gradient):
        zeros = tf.nest.map_structure(tf.zeros_like, gradient)
        new_state, _ = optimizer.next(state, zeros, gradient)
        # A round no client contributed to has a NaN gradient: the state is kept.
        keep = tf.logical_not(tf.logical_and(_all_finite(gradient), _all_finite(new_state)))
        return _choose(keep, state, new_state)

    @fc.federated_computation
    def initialize():
        return fc.federated_zip(
            (fc.federated_eval(initial_optimizer_state, SERVER), gradient_aggregator.initialize())
        )

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(weights_type_of(model), CLIENTS),
        FederatedType(data_type_of(model), CLIENTS),
    )
    def next_fn(state, weights, client_data):
        optimizer_state, aggregator_state = state[0], state[1]
        results = fc.federated_map(
            work,
            fc.federated_zip((fc.federated_broadcast(optimizer_state), weights, client_data)),
        )
        client_result = results[0]
        gradient = gradient_aggregator.next(
            aggregator_state, results[3], client_result.update_weight
        )
        new_optimizer_state = fc.federated_map(
            update_optimizer_state, fc.federated_zip((optimizer_state, gradient.result))
        )
        measurements = fc.federated_zip(
            _train_report(aggregate_metrics(results[1]), fc.federated_sum(results[2]))
        )
        return MeasuredProcessOutput(
            fc.federated_zip((new_optimizer_state, gradient.state)), client_result, measurements
        )

    fallback = None
    if client_failure == "drop":
        dropped = failed_client_result(work)
        fallback = lambda: dropped  # noqa: E731
    return ClientWorkProcess(
        initialize, GuardedComputation(next_fn, [ClientFailureGuard(work, fallback)])
    )


def scheduled_learning_rate(
    learning_rate_fn: Callable[[Any], Any], round_number: tf.Tensor
) -> tf.Tensor:
    """`learning_rate_fn(round_number)` as a float32 scalar, inside a TensorFlow computation; a function
    that cannot take a tensor, or that returns anything but a real scalar, raises a TypeError that says
    so."""
    try:
        value = tf.convert_to_tensor(learning_rate_fn(round_number))
    except Exception as error:
        raise TypeError(
            "The learning rate function must take the round number as an int32 scalar tensor and "
            f"return a scalar in TensorFlow (such as `lambda r: 0.1 * 0.5 ** tf.cast(r, tf.float32)`); "
            f"calling it failed: {error}"
        ) from error
    if value.shape.rank != 0 or not (value.dtype.is_floating or value.dtype.is_integer):
        raise TypeError(
            "The learning rate function must return a real scalar, got "
            f"{TensorType(value.dtype.as_numpy_dtype, value.shape.as_list())}."
        )
    return tf.cast(value, tf.float32)


def _with_learning_rate_schedule(
    client_work: ClientWorkProcess, optimizer: Optimizer, learning_rate_fn: Callable[[Any], Any]
) -> ClientWorkProcess:
    """Mime Lite's client work with its state's optimizer `learning_rate` set to
    `learning_rate_fn(round_number)` before every round; the state becomes `(round_number, state)`."""
    mime_state_type = cast(FederatedType, client_work.initialize.type_signature.result).member
    optimizer_state_spec = ftf.to_tf_spec(cast(StructType, mime_state_type)[0])
    if "learning_rate" not in optimizer.get_hparams(optimizer_state_spec):
        raise TypeError(
            f"A learning rate schedule needs a base_optimizer with a learning_rate, got {optimizer!r}."
        )

    def with_learning_rate(mime_state: Any, round_number: tf.Tensor) -> Any:
        optimizer_state = optimizer.set_hparams(
            mime_state[0],
            {"learning_rate": scheduled_learning_rate(learning_rate_fn, round_number)},
        )
        return (optimizer_state, mime_state[1])

    @ftf.computation(mime_state_type)
    def first_state(mime_state):
        return tf.constant(0, tf.int32), with_learning_rate(mime_state, tf.constant(0, tf.int32))

    @fc.federated_computation
    def initialize():
        return fc.federated_map(first_state, client_work.initialize())

    state_type = cast(FederatedType, initialize.type_signature.result).member

    @ftf.computation(state_type)
    def next_state(state):
        round_number = state[0] + 1
        return round_number, with_learning_rate(state[1], round_number)

    weights_type, data_type = client_work.next.type_signature.parameter[1:]  # type: ignore[index]

    @fc.federated_computation(initialize.type_signature.result, weights_type, data_type)
    def next_fn(state, weights, client_data):
        output = client_work.next(state[1], weights, client_data)
        new_state = fc.federated_map(next_state, fc.federated_zip((state[0], output.state)))
        return MeasuredProcessOutput(new_state, output.result, output.measurements)

    return ClientWorkProcess(initialize, GuardedComputation(next_fn, guards_of(client_work.next)))


def _create(factory: Any, value_type: Any) -> AggregationProcess:
    if isinstance(factory, WeightedAggregationFactory):
        return factory.create(value_type, TensorType(np.float32))
    return factory.create(value_type)


def _check_optimizer(optimizer: Any, name: str) -> Optimizer:
    if optimizer is None:
        raise TypeError(f"{name} must be a fed.learning.optimizers.Optimizer, got None.")
    return as_optimizer(optimizer)


def _check_full_gradient_aggregator(factory: Any, weighted: bool) -> None:
    kinds = (WeightedAggregationFactory, UnweightedAggregationFactory)
    if not isinstance(factory, kinds):
        raise TypeError(
            f"full_gradient_aggregator must be an aggregation factory, got {factory!r}."
        )
    if weighted and not isinstance(factory, WeightedAggregationFactory):
        raise TypeError(
            "A weighted algorithm needs a weighted full_gradient_aggregator (a "
            f"WeightedAggregationFactory, such as MeanFactory()), got the unweighted {factory!r}; "
            "use build_unweighted_mime_lite for an unweighted aggregator."
        )


def _build_mime_lite(
    model_fn: ModelFn | FunctionalModel,
    base_optimizer: Any,
    server_optimizer: Any,
    client_weighting: ClientWeighting,
    model_distributor: DistributionProcess | None,
    model_aggregator: Any,
    full_gradient_aggregator: Any,
    metrics_aggregator: Any,
    loop_implementation: Any,
    client_failure: str,
    learning_rate_fn: Callable[[Any], Any] | None = None,
) -> LearningProcess:
    check_loop_options(loop_implementation)
    weighted = client_weighting is ClientWeighting.NUM_EXAMPLES
    _check_arguments(
        model_aggregator, model_distributor, metrics_aggregator, client_failure, weighted
    )
    _check_full_gradient_aggregator(full_gradient_aggregator, weighted)
    check_client_failure(client_failure)
    base = _check_optimizer(base_optimizer, "base_optimizer")
    server = _server_optimizer(server_optimizer, 1.0)
    model = as_model(model_fn)
    client_work = _build_mime_lite_client_work(
        model, base, client_weighting, full_gradient_aggregator, metrics_aggregator, client_failure
    )
    if learning_rate_fn is not None:
        client_work = _with_learning_rate_schedule(client_work, base, learning_rate_fn)
    return _compose(model, client_work, server, model_aggregator, model_distributor)


def build_weighted_mime_lite(
    model_fn: ModelFn | FunctionalModel,
    base_optimizer: Optimizer,
    server_optimizer: Optimizer | None = None,
    client_weighting: ClientWeighting | None = ClientWeighting.NUM_EXAMPLES,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    full_gradient_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """Mime Lite: clients train with `base_optimizer` from the server's state of it, which stays fixed
    during local training, and compute their full-batch gradient at the broadcast model; the server
    updates the base optimizer's state with the aggregated full gradients (one `base_optimizer` step) and
    applies the aggregated model deltas with `server_optimizer` (SGD with learning rate 1.0 by default,
    which adds the mean delta to the model).

    Both aggregations are weighted by `client_weighting` (examples by default), with `model_aggregator`
    and `full_gradient_aggregator` (MeanFactory by default). The client work's state is
    `(base optimizer state, full gradient aggregator state)`. `base_optimizer` is a fed optimizer (or a
    function returning a fed or Keras optimizer, which is converted). `loop_implementation` is accepted
    and not needed; `client_failure` as in `build_weighted_fed_avg`.
    """
    return _build_mime_lite(
        model_fn,
        base_optimizer,
        server_optimizer,
        _weighting(client_weighting),
        model_distributor,
        model_aggregator or MeanFactory(),
        full_gradient_aggregator or MeanFactory(),
        metrics_aggregator,
        loop_implementation,
        client_failure,
    )


def build_unweighted_mime_lite(
    model_fn: ModelFn | FunctionalModel,
    base_optimizer: Optimizer,
    server_optimizer: Optimizer | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: UnweightedAggregationFactory | None = None,
    full_gradient_aggregator: UnweightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """Mime Lite where every client's model delta and full gradient count equally
    (UnweightedMeanFactory by default for both); otherwise as `build_weighted_mime_lite`."""
    return _build_mime_lite(
        model_fn,
        base_optimizer,
        server_optimizer,
        ClientWeighting.UNIFORM,
        model_distributor,
        model_aggregator or UnweightedMeanFactory(),
        full_gradient_aggregator or UnweightedMeanFactory(),
        metrics_aggregator,
        loop_implementation,
        client_failure,
    )


def build_mime_lite_with_optimizer_schedule(
    model_fn: ModelFn | FunctionalModel,
    learning_rate_fn: Callable[[Any], Any],
    base_optimizer: Optimizer,
    server_optimizer: Optimizer | None = None,
    client_weighting: ClientWeighting | None = ClientWeighting.NUM_EXAMPLES,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    full_gradient_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """`build_weighted_mime_lite` whose base optimizer's learning rate in round `r` (counted from 0) is
    `learning_rate_fn(r)`: the client work's state is `(round number, (base optimizer state, full
    gradient aggregator state))`, and the state's `learning_rate` is set before every round.

    `learning_rate_fn` is called in TensorFlow with `r` an int32 scalar tensor and must return a scalar
    (for example `lambda r: 0.1 * 0.5 ** tf.cast(r, tf.float32)`).
    """
    if not callable(learning_rate_fn):
        raise TypeError(
            f"learning_rate_fn must be a function of the round number, got {learning_rate_fn!r}."
        )
    return _build_mime_lite(
        model_fn,
        base_optimizer,
        server_optimizer,
        _weighting(client_weighting),
        model_distributor,
        model_aggregator or MeanFactory(),
        full_gradient_aggregator or MeanFactory(),
        metrics_aggregator,
        loop_implementation,
        client_failure,
        learning_rate_fn,
    )
