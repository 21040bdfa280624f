"""Client work that trains a model on each client's data and returns the model delta, and the finalizer that
applies the aggregated delta with a server optimizer."""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.templates import MeasuredProcessOutput
from fed_learning._client_training import (
    CLIENT_STATUS_NAMES,
    _all_finite,
    _choose,
    build_metrics_aggregation,
    build_train_on_client,
    failed_client_result,
)
from fed_learning.models import FunctionalModel, ModelWeights
from fed_learning.models._conversion import (
    TrainableModel,
    VariableModelSource,
    as_model,
    as_optimizer,
)
from fed_learning.optimizers import Optimizer
from fed_learning.templates._templates import (
    ClientFailureGuard,
    ClientWorkProcess,
    FinalizerProcess,
    GuardedComputation,
    check_client_failure,
)
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType, to_type


class ClientWeighting(enum.Enum):
    """How clients' updates are weighted in the mean: by their number of examples, or equally."""

    NUM_EXAMPLES = "num_examples"
    UNIFORM = "uniform"


class LoopImplementation(enum.Enum):
    """TFF's choice of how a client's training loop runs over its dataset. fed accepts either value and
    always runs the same loop: a `tf.while_loop` over the dataset's iterator, which TFF's
    `DATASET_ITERATOR` also is, set up once per computation instead of once per client."""

    DATASET_ITERATOR = "dataset_iterator"
    DATASET_REDUCE = "dataset_reduce"


def check_loop_options(
    loop_implementation: Any = None, use_experimental_simulation_loop: Any = False
) -> None:
    """Validates TFF's loop options, which fed accepts and does not need (its loop is always the fast one)."""
    if loop_implementation is not None and not isinstance(loop_implementation, LoopImplementation):
        raise TypeError(
            "loop_implementation must be a fed.learning.LoopImplementation, got "
            f"{loop_implementation!r}."
        )
    if not isinstance(use_experimental_simulation_loop, bool):
        raise TypeError(
            "use_experimental_simulation_loop must be a bool, got "
            f"{use_experimental_simulation_loop!r}."
        )


def build_model_delta_client_work(
    model_fn: Callable[[], Any] | FunctionalModel | VariableModelSource,
    optimizer: Optimizer | Callable[[], Any],
    client_weighting: ClientWeighting = ClientWeighting.NUM_EXAMPLES,
    proximal_strength: float = 0.0,
    *,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    client_failure: str = "raise",
) -> ClientWorkProcess:
    """Client work that trains the model (`model_fn()`, or a FunctionalModel) with `optimizer` (a fed
    optimizer, or a function returning one or a Keras optimizer) over one pass of each client's data, returning
    `ClientResult(update=initial - trained trainable weights, update_weight=...)` and the training metrics as
    measurements (`OrderedDict(train=OrderedDict(loss=..., <metric>=..., num_examples=...))`).

    With `proximal_strength` mu > 0 the local loss adds `mu/2 * ||w - w_initial||^2` (FedProx). An update
    with a NaN or Inf in it is not averaged in: its weight is 0, it is replaced by zeros, and the client's
    metrics are left out. A client without data has weight 0 too. `train` also counts the clients left
    out: `num_non_finite_clients`, `num_empty_clients` and `num_failed_clients`. `client_failure` says
    what a client whose work raises does to the round: "raise" (the round fails with a ClientWorkError
    naming the client) or "drop" (the client is left out, with a warning). `metrics_aggregator` is TFF's:
    `(metric_finalizers, local_unfinalized_metrics_type) -> federated computation` (by default the metric
    states are summed, then finalized); `loop_implementation` is accepted and not needed.
    """
    check_proximal_strength(proximal_strength)
    if not isinstance(client_weighting, ClientWeighting):
        raise TypeError(f"client_weighting must be a ClientWeighting, got {client_weighting!r}.")
    check_loop_options(loop_implementation)
    check_client_failure(client_failure)
    model = as_model(model_fn)
    work = build_train_on_client(
        model,
        as_optimizer(optimizer),
        client_weighting is ClientWeighting.UNIFORM,
        proximal_strength,
    )
    return client_work_process(model, work, metrics_aggregator, client_failure)


def check_proximal_strength(proximal_strength: Any) -> float:
    """Validates FedProx's `proximal_strength`: a finite float >= 0."""
    if isinstance(proximal_strength, bool) or not isinstance(
        proximal_strength, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"proximal_strength must be a float >= 0, got {type(proximal_strength).__name__} "
            f"{proximal_strength!r}."
        )
    if not (np.isfinite(proximal_strength) and proximal_strength >= 0):
        raise ValueError(f"proximal_strength must be a finite float >= 0, got {proximal_strength}.")
    return float(proximal_strength)


def client_work_process(
    model: TrainableModel,
    work_on_client: fc.Computation,
    metrics_aggregator: Any = None,
    client_failure: str = "raise",
) -> ClientWorkProcess:
    """A stateless ClientWorkProcess around `work_on_client: (<weights, data> -> <ClientResult, local
    metrics, status>)`: it maps the work over the clients, aggregates their metrics and reports them with
    the summed status counts (`CLIENT_STATUS_NAMES`) as `OrderedDict(train=...)`. A client whose work
    raises fails the round ("raise") or is left out with `failed_client_result` ("drop")."""
    check_client_failure(client_failure)
    weights_type, data_type = work_on_client.type_signature.parameter  # type: ignore[misc]
    metrics_type = work_on_client.type_signature.result[1]  # type: ignore[index]
    aggregate_metrics = build_metrics_aggregation(model, metrics_type, metrics_aggregator)
    fallback = None
    if client_failure == "drop":
        dropped = failed_client_result(work_on_client)
        fallback = lambda: dropped  # noqa: E731

    @fc.federated_computation
    def initialize():
        return fc.federated_value((), SERVER)

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(weights_type, CLIENTS),
        FederatedType(data_type, CLIENTS),
    )
    def next_fn(state, weights, client_data):
        results = fc.federated_map(work_on_client, fc.federated_zip((weights, client_data)))
        train = aggregate_metrics(results[1])
        status = fc.federated_sum(results[2])
        measurements = fc.federated_zip(_train_report(train, status))
        return MeasuredProcessOutput(state, results[0], measurements)

    return ClientWorkProcess(
        initialize, GuardedComputation(next_fn, [ClientFailureGuard(work_on_client, fallback)])
    )


def _train_report(train: Any, status: Any) -> collections.OrderedDict[str, Any]:
    """`OrderedDict(train=...)` with the counts of left-out clients added to the training metrics, or put
    beside them where the metrics are not a struct with names or already use one of the counts' names."""
    member = train.type_signature.member
    names = member.names() if isinstance(member, StructType) else []
    if names and None not in names and not set(names) & set(CLIENT_STATUS_NAMES):
        merged = [(name, train[name]) for name in names]
        merged += [(name, status[name]) for name in CLIENT_STATUS_NAMES]
        return collections.OrderedDict(train=fc.federated_zip(collections.OrderedDict(merged)))
    return collections.OrderedDict(
        [("train", train)] + [(name, status[name]) for name in CLIENT_STATUS_NAMES]
    )


def reject_non_finite_update(
    state: Any, update: Any
) -> tuple[tf.Tensor, collections.OrderedDict[str, tf.Tensor]]:
    """The default `should_reject_update` of `build_apply_optimizer_finalizer`: rejects an update with a
    NaN or Inf in it, and measures `update_non_finite` (int32: 1 if rejected, else 0)."""
    del state
    finite = _all_finite(update)
    non_finite = tf.cast(tf.logical_not(finite), tf.int32)
    return tf.logical_not(finite), collections.OrderedDict(update_non_finite=non_finite)


def _with_model_check(measurements: Any) -> collections.OrderedDict[str, Any]:
    """`should_reject_update`'s measurements as an OrderedDict with room for `model_non_finite`."""
    if measurements is None or (isinstance(measurements, tuple) and not measurements):
        return collections.OrderedDict()
    if not isinstance(measurements, Mapping):
        raise TypeError(
            "should_reject_update must return its measurements as a dict of tensors (or None), got "
            f"{type(measurements).__name__}."
        )
    if "model_non_finite" in measurements:
        raise ValueError(
            "should_reject_update's measurements may not use the name 'model_non_finite': the "
            "finalizer reports it."
        )
    return collections.OrderedDict(measurements)


def build_apply_optimizer_finalizer(
    optimizer: Optimizer | Callable[[], Any],
    model_weights_type: Any,
    should_reject_update: Callable[[Any, Any], tuple[Any, Any]] = reject_non_finite_update,
) -> FinalizerProcess:
    """A finalizer that treats the aggregated update as a gradient of the trainable weights and applies
    `optimizer` to them; the optimizer's state is the finalizer's state.

    `should_reject_update(new_optimizer_state, update) -> (reject, measurements)` decides, in TensorFlow,
    whether to keep the previous weights and optimizer state instead; its measurements (a dict of
    tensors, or None for none) are the finalizer's. By default an update with a NaN or Inf is rejected and
    measured as `update_non_finite` (0 or 1).

    Whatever `should_reject_update` says, an update that would make the new trainable weights or the new
    optimizer state non-finite (a learning rate that overflows them, say) is refused too, and measured as
    `model_non_finite` (1 if refused for that reason alone, else 0).
    """
    if not callable(should_reject_update):
        raise TypeError(
            "should_reject_update must be a function (optimizer_state, update) -> (reject, "
            f"measurements), got {should_reject_update!r}."
        )
    optimizer = as_optimizer(optimizer)
    weights_type = to_type(model_weights_type)
    trainable_type = getattr(weights_type, "trainable", None)
    if trainable_type is None or getattr(weights_type, "non_trainable", None) is None:
        raise TypeError(
            "model_weights_type must be the type of a ModelWeights, <trainable=...,non_trainable=...>, "
            f"got {weights_type}."
        )

    @ftf.computation
    def initial_state():
        specs = [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype)) for t in trainable_type]
        return optimizer.initialize(specs)

    state_type = initial_state.type_signature.result

    @ftf.computation(state_type, weights_type, trainable_type)
    def apply(opt_state, weights, update):
        new_state, trainable = optimizer.next(opt_state, list(weights.trainable), list(update))
        # The new weights keep the containers (lists or tuples) of the old ones, so the state's type holds.
        trainable = tf.nest.pack_sequence_as(weights.trainable, list(trainable))
        returned = should_reject_update(new_state, update)
        if not (isinstance(returned, (tuple, list)) and len(returned) == 2):
            raise TypeError(
                f"should_reject_update must return a pair (reject, measurements), got {returned!r}."
            )
        reject, measurements = returned
        reject = tf.convert_to_tensor(reject)
        if reject.dtype != tf.bool or reject.shape.rank != 0:
            raise TypeError(
                "should_reject_update must return a scalar bool as its first value, got "
                f"{TensorType(reject.dtype.as_numpy_dtype, reject.shape.as_list())}."
            )
        measurements = _with_model_check(measurements)
        model_non_finite = tf.logical_and(
            tf.logical_not(reject),
            tf.logical_not(tf.logical_and(_all_finite(trainable), _all_finite(new_state))),
        )
        measurements["model_non_finite"] = tf.cast(model_non_finite, tf.int32)
        reject = tf.logical_or(reject, model_non_finite)
        new_state, trainable = _choose(
            reject, (opt_state, weights.trainable), (new_state, trainable)
        )
        return new_state, ModelWeights(trainable, weights.non_trainable), measurements

    @fc.federated_computation
    def initialize():
        return fc.federated_eval(initial_state, SERVER)

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(weights_type, SERVER),
        FederatedType(trainable_type, SERVER),
    )
    def next_fn(state, weights, update):
        applied = fc.federated_map(apply, fc.federated_zip((state, weights, update)))
        return MeasuredProcessOutput(applied[0], applied[1], applied[2])

    return FinalizerProcess(initialize, next_fn)
