"""Federated evaluation: the model's metrics over the clients' data, exactly aggregated."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory
from fed_learning._client_training import (
    build_evaluate_on_client,
    build_metrics_aggregation,
    data_type_of,
    initial_weights_computation,
    metric_finalizer,
    weights_type_of,
    zero_metrics_computation,
)
from fed_learning.algorithms._fed_avg import ModelFn
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import as_model
from fed_learning.templates import (
    DistributionProcess,
    LearningAlgorithmState,
    LearningProcess,
    LearningProcessOutput,
    LoopImplementation,
    build_broadcast_process,
)
from fed_learning.templates._client_work import check_loop_options
from fed_learning.templates._templates import ClientFailureGuard, GuardedComputation
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType


def build_fed_eval(
    model_fn: ModelFn | FunctionalModel,
    model_distributor: DistributionProcess | None = None,
    metrics_aggregation_process: Any = None,
    loop_implementation: LoopImplementation | None = None,
    use_experimental_simulation_loop: bool = False,
) -> LearningProcess:
    """A LearningProcess that evaluates the model held in its state on each round's clients. Metrics:
    `metrics['client_work']['eval']['current_round_metrics'][name]` (this round's clients) and
    `['total_rounds_metrics'][name]` (all rounds so far); each is computed exactly over all examples.

    The state is laid out as TFF's: `client_work` is `<<>, summed metric states of all rounds>`, and
    `aggregator` the state of the mean of the clients' (empty) model updates, which the model is never
    changed by.

    `loop_implementation` and `use_experimental_simulation_loop` are accepted and change nothing; a
    `metrics_aggregation_process` other than None is not supported yet.
    """
    check_loop_options(loop_implementation, use_experimental_simulation_loop)
    if metrics_aggregation_process is not None:
        raise NotImplementedError(
            "build_fed_eval does not take a metrics_aggregation_process yet: its metrics are the clients' "
            "metric states summed, then finalized."
        )
    model = as_model(model_fn)
    weights_type = weights_type_of(model)
    distributor = model_distributor or build_broadcast_process(weights_type)
    evaluate = build_evaluate_on_client(model)
    metrics_type = evaluate.type_signature.result
    finalize = metric_finalizer(model)
    initial_weights = initial_weights_computation(model)
    zero_metrics = zero_metrics_computation(metrics_type)
    # Evaluation changes no weights: the clients' model updates are empty, and their mean keeps TFF's
    # state and measurements (`value_sum_process`, `mean_value`, ...).
    model_aggregator = MeanFactory().create(StructType([]), TensorType(np.float32))

    @ftf.computation(metrics_type, metrics_type)
    def accumulate_and_finalize(round_metrics, total_metrics):
        total = tf.nest.map_structure(tf.add, round_metrics, total_metrics)
        report = collections.OrderedDict(
            eval=collections.OrderedDict(
                current_round_metrics=finalize(round_metrics),
                total_rounds_metrics=finalize(total),
            )
        )
        return total, report

    @fc.federated_computation
    def initialize():
        empty = fc.federated_value((), SERVER)
        return fc.federated_zip(
            LearningAlgorithmState(
                fc.federated_eval(initial_weights, SERVER),
                distributor.initialize(),
                fc.federated_zip((empty, fc.federated_eval(zero_metrics, SERVER))),
                model_aggregator.initialize(),
                empty,
            )
        )

    @fc.federated_computation(
        initialize.type_signature.result, FederatedType(data_type_of(model), CLIENTS)
    )
    def next_fn(state, client_data):
        distributed = distributor.next(state.distributor, state.global_model_weights)
        round_metrics = fc.federated_sum(
            fc.federated_map(evaluate, fc.federated_zip((distributed.result, client_data)))
        )
        updated = fc.federated_map(
            accumulate_and_finalize, fc.federated_zip((round_metrics, state.client_work[1]))
        )
        aggregated = model_aggregator.next(
            state.aggregator,
            fc.federated_value((), CLIENTS),
            fc.federated_value(np.float32(1.0), CLIENTS),
        )
        empty = fc.federated_value((), SERVER)
        new_state = fc.federated_zip(
            LearningAlgorithmState(
                state.global_model_weights,
                distributed.state,
                fc.federated_zip((state.client_work[0], updated[0])),
                aggregated.state,
                state.finalizer,
            )
        )
        metrics = fc.federated_zip(
            collections.OrderedDict(
                distributor=distributed.measurements,
                client_work=updated[1],
                aggregator=aggregated.measurements,
                finalizer=empty,
            )
        )
        return LearningProcessOutput(new_state, metrics)

    return LearningProcess(
        initialize,
        GuardedComputation(next_fn, [ClientFailureGuard(evaluate, None)]),
        lambda state: state.global_model_weights,
        lambda state, weights: state._replace(global_model_weights=weights),
    )


def build_federated_evaluation(
    model_fn: ModelFn | FunctionalModel,
    broadcast_process: DistributionProcess | None = None,
    metrics_aggregator: Any = None,
    use_experimental_simulation_loop: bool = False,
) -> fc.Computation:
    """TFF's older evaluation: a computation `(weights@SERVER, data@CLIENTS) -> OrderedDict(eval=metrics)@SERVER`.

    `broadcast_process` (a DistributionProcess) replaces the plain broadcast of the weights;
    `metrics_aggregator` is as in the training builders; `use_experimental_simulation_loop` is accepted and
    changes nothing.
    """
    check_loop_options(None, use_experimental_simulation_loop)
    if broadcast_process is not None and not isinstance(broadcast_process, DistributionProcess):
        raise TypeError(
            f"broadcast_process must be a DistributionProcess, got {broadcast_process!r}."
        )
    model = as_model(model_fn)
    weights_type = weights_type_of(model)
    evaluate = build_evaluate_on_client(model)
    aggregate = build_metrics_aggregation(model, evaluate.type_signature.result, metrics_aggregator)

    @fc.federated_computation(
        FederatedType(weights_type, SERVER), FederatedType(data_type_of(model), CLIENTS)
    )
    def evaluation(model_weights, client_data):
        if broadcast_process is None:
            weights_at_clients = fc.federated_broadcast(model_weights)
        else:
            weights_at_clients = broadcast_process.next(
                broadcast_process.initialize(), model_weights
            ).result
        per_client = fc.federated_map(evaluate, fc.federated_zip((weights_at_clients, client_data)))
        return fc.federated_zip(collections.OrderedDict(eval=aggregate(per_client)))

    return GuardedComputation(evaluation, [ClientFailureGuard(evaluate, None)])
