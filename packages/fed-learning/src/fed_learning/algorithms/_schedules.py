"""Federated averaging whose client learning rate follows a schedule over rounds.

(Mime Lite's schedule, `build_mime_lite_with_optimizer_schedule`, lives with Mime Lite.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory, WeightedAggregationFactory
from fed_core.templates import MeasuredProcessOutput
from fed_learning._client_training import (
    build_metrics_aggregation,
    data_type_of,
    failed_client_result,
    train_from_optimizer_state,
    weights_type_of,
)
from fed_learning.algorithms._fed_avg import _check_arguments, _compose, _server_optimizer
from fed_learning.algorithms._mime import scheduled_learning_rate
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import TrainableModel, as_model
from fed_learning.optimizers import Optimizer
from fed_learning.templates import (
    ClientWorkProcess,
    DistributionProcess,
    LearningProcess,
    LoopImplementation,
)
from fed_learning.templates._client_work import _train_report, check_loop_options
from fed_learning.templates._templates import ClientFailureGuard, GuardedComputation
from fed_types import CLIENTS, SERVER, FederatedType, StructType

ModelFn = Callable[[], Any]


def _check_optimizer_fn(client_optimizer_fn: Any) -> None:
    if not callable(client_optimizer_fn) or isinstance(client_optimizer_fn, Optimizer):
        raise TypeError(
            "client_optimizer_fn must be a function from a learning rate to a fed optimizer (such as "
            f"`lambda lr: fed.learning.optimizers.build_sgdm(lr)`), got {client_optimizer_fn!r}."
        )
    made = client_optimizer_fn(1.0)
    if not isinstance(made, Optimizer):
        raise TypeError(
            "client_optimizer_fn must return a fed optimizer (fed.learning.optimizers), got "
            f"{made!r} for the learning rate 1.0."
        )


def _build_scheduled_client_work(
    model: TrainableModel,
    learning_rate_fn: Callable[[Any], Any],
    client_optimizer_fn: Callable[[Any], Optimizer],
    metrics_aggregator: Any,
    client_failure: str,
) -> ClientWorkProcess:
    """Model-delta client work (weighted by examples) whose state is the round number (int32, from 0);
    in round `r` the clients train with `client_optimizer_fn(learning_rate_fn(r))`."""
    weights_type = weights_type_of(model)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]

    @ftf.computation(weights_type, data_type_of(model), np.int32)
    def train_on_client(weights, dataset, round_number):
        optimizer = client_optimizer_fn(scheduled_learning_rate(learning_rate_fn, round_number))
        specs = [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype)) for t in trainable_type]
        return train_from_optimizer_state(
            model,
            optimizer,
            weights,
            dataset,
            optimizer.initialize(specs),
            freeze_optimizer_state=False,
            uniform_weighting=False,
        )

    aggregate_metrics = build_metrics_aggregation(
        model, cast(StructType, train_on_client.type_signature.result)[1], metrics_aggregator
    )

    @ftf.computation(np.int32)
    def learning_rate(round_number):
        return scheduled_learning_rate(learning_rate_fn, round_number)

    @ftf.computation(np.int32)
    def add_one(round_number):
        return round_number + 1

    @fc.federated_computation
    def initialize():
        return fc.federated_value(np.int32(0), SERVER)

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(weights_type, CLIENTS),
        FederatedType(data_type_of(model), CLIENTS),
    )
    def next_fn(state, weights, client_data):
        results = fc.federated_map(
            train_on_client,
            fc.federated_zip((weights, client_data, fc.federated_broadcast(state))),
        )
        report = _train_report(aggregate_metrics(results[1]), fc.federated_sum(results[2]))
        report["client_learning_rate"] = fc.federated_map(learning_rate, state)
        return MeasuredProcessOutput(
            fc.federated_map(add_one, state), results[0], fc.federated_zip(report)
        )

    fallback = None
    if client_failure == "drop":
        dropped = failed_client_result(train_on_client)
        fallback = lambda: dropped  # noqa: E731
    return ClientWorkProcess(
        initialize, GuardedComputation(next_fn, [ClientFailureGuard(train_on_client, fallback)])
    )


def build_weighted_fed_avg_with_optimizer_schedule(
    model_fn: ModelFn | FunctionalModel,
    client_learning_rate_fn: Callable[[Any], Any],
    client_optimizer_fn: Callable[[Any], Optimizer],
    server_optimizer_fn: Optimizer | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """Federated averaging whose clients, in round `r` (counted from 0 by the client work's state),
    train with `client_optimizer_fn(client_learning_rate_fn(r))`: the learning rate is constant within a
    round and scheduled across rounds. Updates are weighted by examples and aggregated with
    `model_aggregator` (MeanFactory by default); the server applies them with `server_optimizer_fn` (SGD
    with learning rate 1.0 by default). The round's learning rate is reported as
    `metrics['client_work']['client_learning_rate']`.

    `client_learning_rate_fn` is called in TensorFlow with `r` an int32 scalar tensor and must return a
    scalar (for example `lambda r: 0.1 * 0.5 ** tf.cast(r, tf.float32)`); `client_optimizer_fn` takes
    that learning rate (a tensor) and returns a fed optimizer. `loop_implementation` is accepted and not
    needed; `client_failure` as in `build_weighted_fed_avg`.
    """
    check_loop_options(loop_implementation)
    if not callable(client_learning_rate_fn):
        raise TypeError(
            "client_learning_rate_fn must be a function of the round number, got "
            f"{client_learning_rate_fn!r}."
        )
    _check_optimizer_fn(client_optimizer_fn)
    model_aggregator = model_aggregator or MeanFactory()
    _check_arguments(
        model_aggregator, model_distributor, metrics_aggregator, client_failure, weighted=True
    )
    model = as_model(model_fn)
    client_work = _build_scheduled_client_work(
        model, client_learning_rate_fn, client_optimizer_fn, metrics_aggregator, client_failure
    )
    return _compose(
        model,
        client_work,
        _server_optimizer(server_optimizer_fn, 1.0),
        model_aggregator,
        model_distributor,
    )
