"""Evaluation of a ReconstructionModel: each client reconstructs its local variables on one part of its data
with the global variables frozen, then computes the loss and metrics on the other part."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_learning._client_training import zero_metrics_computation
from fed_learning._loops import fold_dataset
from fed_learning._typing import element
from fed_learning.algorithms._fed_recon import (
    LossFn,
    MetricsFn,
    ModelFn,
    ReconstructionModelSource,
    _optimizer,
    check_distributor,
    metric_specs,
    num_examples_in,
    reconstruct,
    split_client_data,
)
from fed_learning.models._functional import MetricSpec
from fed_learning.models._reconstruction import (
    ReconstructionDatasetSplitFn,
    ReconstructionModel,
)
from fed_learning.optimizers import Optimizer
from fed_learning.templates import (
    ClientResult,
    ClientWorkProcess,
    DistributionProcess,
    FinalizerProcess,
    LearningProcess,
    compose_learning_process,
)
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType, Type


def _sum_then_finalize_process(specs: list[MetricSpec], metrics_type: Type) -> AggregationProcess:
    """Sums the clients' metric states, adds them to the total of past rounds (its state, `<<>, total>` as
    TFF lays it out) and gives `(this round's metrics, all rounds' metrics)`, finalized."""
    zero_metrics = zero_metrics_computation(metrics_type)

    def finalize(state: Any) -> collections.OrderedDict[str, Any]:
        return collections.OrderedDict((s.name, s.finalize(list(state[s.name]))) for s in specs)

    @ftf.computation(metrics_type, metrics_type)
    def accumulate_and_finalize(round_metrics, total_metrics):
        total = tf.nest.map_structure(tf.add, round_metrics, total_metrics)
        return total, (finalize(round_metrics), finalize(total))

    @fc.federated_computation
    def initialize():
        empty = fc.federated_value((), SERVER)
        return fc.federated_zip((empty, fc.federated_eval(zero_metrics, SERVER)))

    @fc.federated_computation(
        initialize.type_signature.result, FederatedType(metrics_type, CLIENTS)
    )
    def next_fn(state, unfinalized_metrics):
        round_metrics = fc.federated_sum(unfinalized_metrics)
        updated = fc.federated_map(
            accumulate_and_finalize, fc.federated_zip((round_metrics, state[1]))
        )
        return MeasuredProcessOutput(
            fc.federated_zip((state[0], updated[0])), updated[1], fc.federated_value((), SERVER)
        )

    return AggregationProcess(initialize, next_fn)


def _identity_finalizer(weights_type: Type, update_type: Type) -> FinalizerProcess:
    """A finalizer that keeps the server's weights as they are."""

    @fc.federated_computation
    def initialize():
        return fc.federated_value((), SERVER)

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(weights_type, SERVER),
        FederatedType(update_type, SERVER),
    )
    def next_fn(state, weights, update):
        del update
        return MeasuredProcessOutput(state, weights, fc.federated_value((), SERVER))

    return FinalizerProcess(initialize, next_fn)


def _evaluate_on_client(
    source: ReconstructionModelSource,
    loss: Any,
    specs: list[MetricSpec],
    reconstruction_optimizer: Optimizer,
    dataset_split_fn: ReconstructionDatasetSplitFn,
) -> fc.Computation:
    @ftf.computation(source.weights_type, source.data_type)
    def client_computation(incoming_model_weights, client_dataset):
        model, local_variables = source.build_with_weights(incoming_model_weights)
        recon_data, eval_data = split_client_data(dataset_split_fn, client_dataset)
        reconstruct(model, local_variables, recon_data, loss, reconstruction_optimizer)

        def step(states, batch):
            output = model.forward_pass(batch, training=False)
            batch_loss = loss(y_true=output.labels, y_pred=output.predictions)
            n = num_examples_in(output)
            return tuple(
                spec.update(list(state), output.labels, output.predictions, batch_loss, n)
                for spec, state in zip(specs, states)
            )

        states = fold_dataset(eval_data, tuple(spec.initial_state() for spec in specs), step)
        return collections.OrderedDict(
            (spec.name, list(state)) for spec, state in zip(specs, states)
        )

    return client_computation


def build_fed_recon_eval(
    model_fn: ModelFn,
    *,
    loss_fn: LossFn,
    metrics_fn: MetricsFn | None = None,
    reconstruction_optimizer_fn: Any = None,
    dataset_split_fn: ReconstructionDatasetSplitFn | None = None,
    model_distributor: DistributionProcess | None = None,
    metrics_aggregation_process: AggregationProcess | None = None,
) -> LearningProcess:
    """A LearningProcess that evaluates the global weights held in its state: on each client, the local
    variables are reconstructed with `reconstruction_optimizer_fn` (SGD with learning rate 0.1 if None)
    on the first dataset `dataset_split_fn` gives (by default the even batches), then the metrics of
    `metrics_fn` and `loss` are computed on the second (the odd batches), with `training=False`. The
    weights never change.

    Metrics: `metrics['client_work']['eval']['current_round_metrics'][name]` (this round's clients) and
    `['total_rounds_metrics'][name]` (all rounds so far). `metrics_aggregation_process` replaces the
    default summing of the clients' metric states: an AggregationProcess whose `next(state, unfinalized
    metrics@CLIENTS)` gives `(current_round_metrics, total_rounds_metrics)` at SERVER.
    """
    source = ReconstructionModelSource(model_fn)
    if dataset_split_fn is None:
        dataset_split_fn = ReconstructionModel.build_dataset_split_fn(split_dataset=True)
    elif not callable(dataset_split_fn):
        raise TypeError(
            "dataset_split_fn must be a function from a client's dataset to two datasets, got "
            f"{dataset_split_fn!r}."
        )
    distributor = check_distributor(model_distributor, source.weights_type)
    loss, specs = metric_specs(loss_fn, metrics_fn)
    evaluate = _evaluate_on_client(
        source, loss, specs, _optimizer(reconstruction_optimizer_fn, 0.1), dataset_split_fn
    )
    metrics_type = evaluate.type_signature.result
    if metrics_aggregation_process is None:
        metrics_aggregation_process = _sum_then_finalize_process(specs, metrics_type)
    elif not isinstance(metrics_aggregation_process, AggregationProcess):
        raise TypeError(
            "metrics_aggregation_process must be an AggregationProcess, got "
            f"{metrics_aggregation_process!r}."
        )
    metrics_process = metrics_aggregation_process
    value_type = metrics_process.next.type_signature.parameter[1]  # type: ignore[index]
    if not value_type.is_assignable_from(FederatedType(metrics_type, CLIENTS)):
        raise TypeError(
            f"metrics_aggregation_process must aggregate the clients' metric states, "
            f"{FederatedType(metrics_type, CLIENTS)}; it takes {value_type}."
        )
    result_type = element(metrics_process.next.type_signature.result, "result")
    result_member = result_type.member if isinstance(result_type, FederatedType) else None
    if not (isinstance(result_member, StructType) and len(result_member) == 2):
        raise TypeError(
            "metrics_aggregation_process must give (current_round_metrics, total_rounds_metrics); it "
            f"gives {result_type}."
        )
    # Evaluation changes no weights: each client's update is empty, and their mean keeps TFF's state and
    # measurements.
    update_weight = np.float32(1.0)

    @fc.federated_computation
    def client_initialize():
        return metrics_process.initialize()

    @fc.federated_computation(
        client_initialize.type_signature.result,
        FederatedType(source.weights_type, CLIENTS),
        FederatedType(source.data_type, CLIENTS),
    )
    def client_next(state, model_weights, client_dataset):
        unfinalized = fc.federated_map(evaluate, fc.federated_zip((model_weights, client_dataset)))
        output = metrics_process.next(state, unfinalized)
        measurements = fc.federated_zip(
            collections.OrderedDict(
                eval=collections.OrderedDict(
                    current_round_metrics=output.result[0],
                    total_rounds_metrics=output.result[1],
                )
            )
        )
        empty_result = fc.federated_value(ClientResult((), update_weight), CLIENTS)
        return MeasuredProcessOutput(output.state, empty_result, measurements)

    empty_update = StructType([])
    return compose_learning_process(
        source.initial_weights,
        distributor,
        ClientWorkProcess(client_initialize, client_next),
        MeanFactory().create(empty_update, TensorType(np.float32)),
        _identity_finalizer(source.weights_type, empty_update),
    )
