"""Ditto (Li et al., 2021, "Ditto: Fair and Robust Federated Learning through Personalization"): a global
model trained by federated averaging, and for each client a personalized model trained on its own data
and pulled towards the global model by the proximal term `lam/2 * ||v - w||^2`.

The personalized models are per-client state, kept as SCAFFOLD keeps its control variates (see
`fed_learning.algorithms._scaffold`): a table of `num_clients` rows of trainable weights in the server
state, each client's row sent to it with `federated_select` and written back after the round.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory, WeightedAggregationFactory
from fed_learning._client_training import (
    _all_finite,
    _choose,
    build_metrics_aggregation,
    build_train_on_client,
    data_type_of,
    initial_weights_computation,
    open_session,
    weights_type_of,
)
from fed_learning._loops import fold_dataset
from fed_learning.algorithms._adaptive import check_hyperparameter
from fed_learning.algorithms._fed_avg import (
    ModelFn,
    _check_arguments,
    _server_optimizer,
    _undefined_without_contributions,
    _weighting,
)
from fed_learning.algorithms._scaffold import (
    ClientIdsComputation,
    PerClientStateProcess,
    build_row_selection,
    build_row_write_back,
    check_count,
    checked_distributor,
    client_failure_guards,
    first_element,
    round_measurements,
)
from fed_learning.models import FunctionalModel, ModelWeights
from fed_learning.models._conversion import TrainableModel, as_model, as_optimizer
from fed_learning.models._functional import num_examples_of
from fed_learning.optimizers import Optimizer
from fed_learning.templates import (
    ClientWeighting,
    DistributionProcess,
    LearningProcessOutput,
    build_apply_optimizer_finalizer,
)
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, StructType, TensorType


class DittoState(NamedTuple):
    """Ditto's state: the global model's weights, each client's personalized trainable weights (a table
    of `num_clients` rows, each starting as the initial global weights), and the states of the model
    distributor, the aggregator and the server optimizer."""

    global_model_weights: Any
    personalized_weights: Any
    distributor: Any
    aggregator: Any
    finalizer: Any


def _build_personal_training(
    model: TrainableModel, optimizer: Optimizer, lam: float
) -> fc.Computation:
    """`(global weights, data, personalized rows) -> <new personalized trainable weights, status>`: one
    pass over the client's data with `optimizer` on `loss(v) + lam/2 * ||v - w||^2`. A client without
    data, or whose result is not finite, keeps its personalized weights. The status holds
    `num_failed_clients` (0 here; 1 in the result that stands for a client whose work raised)."""
    weights_type = weights_type_of(model)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]

    @ftf.computation(weights_type, data_type_of(model), SequenceType(trainable_type))
    def train_personalized(weights, dataset, rows):
        anchor = list(tf.nest.flatten(weights.trainable))
        personal = list(first_element(rows, tuple(tf.zeros_like(w) for w in anchor)))
        session = open_session(
            model,
            ModelWeights(
                tf.nest.pack_sequence_as(weights.trainable, personal), weights.non_trainable
            ),
        )
        optimizer_state = optimizer.initialize(
            tuple(tf.TensorSpec(w.shape, w.dtype) for w in anchor)
        )

        def step(carry, batch):
            local, opt_state, count = carry
            with tf.GradientTape() as tape:
                sources = session.sources(local)
                session.watch(tape, local)
                output, local = session.forward(local, batch, True)
                distance = tf.add_n(
                    [tf.reduce_sum(tf.square(v - w)) for v, w in zip(sources, anchor)]
                )
                loss = output.loss + 0.5 * lam * distance
            gradients = tape.gradient(
                loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            opt_state, trainable = optimizer.next(
                opt_state, tuple(session.values(local)), tuple(gradients)
            )
            local = session.assign(local, list(trainable))
            return local, opt_state, count + num_examples_of(output)

        local, _, count = fold_dataset(
            dataset, (session.start(), optimizer_state, tf.constant(0, tf.int64)), step
        )
        trained = session.values(local)
        keep = tf.logical_and(_all_finite(trained), count > 0)
        status = collections.OrderedDict(num_failed_clients=tf.constant(0, tf.int32))
        return _choose(keep, list(trained), list(personal)), status

    return train_personalized


def build_ditto(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    personal_optimizer_fn: Any,
    lam: float = 0.1,
    server_optimizer_fn: Any = None,
    num_clients: int = 10,
    client_weighting: ClientWeighting | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    model_distributor: DistributionProcess | None = None,
    client_failure: str = "raise",
) -> PerClientStateProcess:
    """Ditto: federated averaging of a global model, plus a personalized model per client.

    In a round each client trains the global weights `w` as `build_weighted_fed_avg` does (one pass with
    `client_optimizer_fn`; the server averages the deltas, weighted by `client_weighting`, and applies
    them with `server_optimizer_fn`, SGD at learning rate 1.0 by default), and trains its personalized
    weights `v` (one more pass, with `personal_optimizer_fn`) on its loss plus `lam/2 * ||v - w||^2`, `w`
    being the weights broadcast at the start of the round. `lam` = 0 trains purely local models; a large
    `lam` keeps them near the global one.

    Clients are numbered 0..`num_clients`-1 and a round is `next(state, client_data, client_ids)`.
    `build_ditto_evaluation` evaluates the personalized models. The metrics are FedAvg's
    (`client_work`'s `train` metrics are the global model's training metrics).

    `model_distributor` sends the global weights to the clients (a broadcast by default). A client left
    out of the global model's update (no data, a non-finite update, or, with `client_failure="drop"`,
    work that raises) keeps its personalized weights; with `client_failure="raise"` (the default) a
    client whose work raises fails the round, as in `build_weighted_fed_avg`.
    """
    lam = check_hyperparameter(lam, "lam", allow_zero=True)
    num_clients = check_count(num_clients)
    client_weighting = _weighting(client_weighting)
    model_aggregator = model_aggregator or MeanFactory()
    _check_arguments(
        model_aggregator, model_distributor, metrics_aggregator, client_failure, weighted=True
    )
    client_optimizer = as_optimizer(client_optimizer_fn)
    personal_optimizer = as_optimizer(personal_optimizer_fn)
    server_optimizer = _server_optimizer(server_optimizer_fn, 1.0)
    model = as_model(model_fn)
    weights_type = weights_type_of(model)
    distributor = checked_distributor(model_distributor, weights_type)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]
    train_global = build_train_on_client(
        model, client_optimizer, client_weighting is ClientWeighting.UNIFORM, 0.0
    )
    train_personal = _build_personal_training(model, personal_optimizer, lam)
    metrics_type = train_global.type_signature.result[1]  # type: ignore[index]
    aggregate_metrics = build_metrics_aggregation(model, metrics_type, metrics_aggregator)
    aggregator = _undefined_without_contributions(
        model_aggregator.create(trainable_type, TensorType(np.float32))
    )
    finalizer = build_apply_optimizer_finalizer(server_optimizer, weights_type)
    initial_weights = initial_weights_computation(model)

    @ftf.computation
    def initial_personalized():
        return [
            tf.tile(tf.expand_dims(w, 0), [num_clients] + [1] * w.shape.rank)
            for w in tf.nest.flatten(initial_weights().trainable)
        ]

    table_type = initial_personalized.type_signature.result
    select = build_row_selection(table_type, num_clients)
    write = build_row_write_back(table_type, trainable_type, num_clients)
    status_type = train_global.type_signature.result[2]  # type: ignore[index]
    personal_status_type = train_personal.type_signature.result[1]  # type: ignore[index]

    @ftf.computation(status_type, personal_status_type)
    def left_out(status, personal_status):
        # A client whose global update is not used keeps its personalized weights.
        dropped = status["num_failed_clients"] + status["num_non_finite_clients"]
        return tf.minimum(dropped + personal_status["num_failed_clients"], 1)

    @fc.federated_computation
    def initialize():
        return fc.federated_zip(
            DittoState(
                fc.federated_eval(initial_weights, SERVER),
                fc.federated_eval(initial_personalized, SERVER),
                distributor.initialize(),
                aggregator.initialize(),
                finalizer.initialize(),
            )
        )

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(data_type_of(model), CLIENTS),
        FederatedType(TensorType(np.int32), CLIENTS),
    )
    def next_fn(state, client_data, client_ids):
        distributed = distributor.next(state.distributor, state.global_model_weights)
        weights = distributed.result
        trained = fc.federated_map(train_global, fc.federated_zip((weights, client_data)))
        rows = select(state.personalized_weights, client_ids)
        personalized = fc.federated_map(
            train_personal, fc.federated_zip((weights, client_data, rows))
        )
        aggregated = aggregator.next(state.aggregator, trained[0].update, trained[0].update_weight)
        finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        failed = fc.federated_map(left_out, fc.federated_zip((trained[2], personalized[1])))
        table = write(state.personalized_weights, client_ids, personalized[0], failed)
        train = aggregate_metrics(trained[1])
        status = fc.federated_sum(trained[2])
        new_state = fc.federated_zip(
            DittoState(
                finalized.result, table, distributed.state, aggregated.state, finalized.state
            )
        )
        metrics = round_measurements(distributed, train, status, aggregated, finalized)
        return LearningProcessOutput(new_state, metrics)

    guards = client_failure_guards(train_global, client_failure) + client_failure_guards(
        train_personal, client_failure
    )
    return PerClientStateProcess(initialize, next_fn, num_clients, guards)


def build_ditto_evaluation(
    model_fn: ModelFn | FunctionalModel, process: PerClientStateProcess
) -> fc.Computation:
    """A computation `evaluate(state, client_data, client_ids) -> metrics` that evaluates each client's
    personalized model (from the state of `process`, built by `build_ditto` with the same `model_fn`) on
    its data: the model's metrics summed over the clients, then finalized."""
    state_type = process.state_type if isinstance(process, PerClientStateProcess) else None
    state = state_type.member if isinstance(state_type, FederatedType) else None
    if not isinstance(state, StructType) or "personalized_weights" not in state.names():
        raise TypeError(f"process must be a process built by build_ditto, got {process!r}.")
    model = as_model(model_fn)
    num_clients = process.num_clients
    if state.global_model_weights != weights_type_of(model):
        raise TypeError(
            f"model_fn's weights ({weights_type_of(model)}) are not those of the process "
            f"({state.global_model_weights})."
        )
    weights_type = weights_type_of(model)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]
    table_type = state.personalized_weights
    select = build_row_selection(table_type, num_clients)

    @ftf.computation(weights_type, data_type_of(model), SequenceType(trainable_type))
    def evaluate_personalized(weights, dataset, rows):
        zeros = tuple(tf.zeros_like(w) for w in tf.nest.flatten(weights.trainable))
        personal = tf.nest.pack_sequence_as(weights.trainable, list(first_element(rows, zeros)))
        session = open_session(model, ModelWeights(personal, weights.non_trainable))

        def step(local, batch):
            return session.forward(local, batch, False)[1]

        return session.metrics(fold_dataset(dataset, session.start(), step))

    aggregate_metrics = build_metrics_aggregation(
        model, evaluate_personalized.type_signature.result
    )

    @fc.federated_computation(
        process.state_type,
        FederatedType(data_type_of(model), CLIENTS),
        FederatedType(TensorType(np.int32), CLIENTS),
    )
    def evaluate(state, client_data, client_ids):
        weights = fc.federated_broadcast(state.global_model_weights)
        rows = select(state.personalized_weights, client_ids)
        metrics = fc.federated_map(
            evaluate_personalized, fc.federated_zip((weights, client_data, rows))
        )
        return aggregate_metrics(metrics)

    return ClientIdsComputation(evaluate, num_clients, after=None)
