"""TFF's older entry points, as its seed tutorials use them."""

from __future__ import annotations

import collections
from typing import Any

import fed_core as fc
from fed_core.templates import AggregationProcess, IterativeProcess
from fed_learning.algorithms._fed_avg import ModelFn, build_weighted_fed_avg
from fed_learning.models import FunctionalModel
from fed_learning.templates import ClientWeighting, DistributionProcess
from fed_learning.templates._templates import GuardedComputation, guards_of


def build_federated_averaging_process(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any = None,
    server_optimizer_fn: Any = None,
    client_weighting: ClientWeighting | None = None,
    broadcast_process: DistributionProcess | None = None,
    aggregation_process: AggregationProcess | None = None,
    model_update_aggregation_factory: Any = None,
    use_experimental_simulation_loop: bool = False,
) -> IterativeProcess:
    """An IterativeProcess of federated averaging whose `next(state, data)` returns `(state, metrics)`, with
    `state.model` the server's ModelWeights and `metrics['train'][name]` the training metrics. The client
    optimizer defaults to SGD with learning rate 0.1, the server optimizer to SGD with learning rate 1.0.

    TFF's older arguments: `broadcast_process` (a DistributionProcess), `aggregation_process` (an
    AggregationProcess for the model updates) or `model_update_aggregation_factory` (an aggregation
    factory), not both; `use_experimental_simulation_loop` is accepted and changes nothing.
    """
    from fed_learning.optimizers import build_sgdm

    if aggregation_process is not None and model_update_aggregation_factory is not None:
        raise ValueError("Give aggregation_process or model_update_aggregation_factory, not both.")
    process = build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn if client_optimizer_fn is not None else build_sgdm(0.1),
        server_optimizer_fn,
        client_weighting=client_weighting,
        model_distributor=broadcast_process,
        model_aggregator=aggregation_process or model_update_aggregation_factory,
        use_experimental_simulation_loop=use_experimental_simulation_loop,
    )
    state_type, data_type = process.next.type_signature.parameter  # type: ignore[misc]

    @fc.federated_computation(state_type, data_type)
    def next_fn(state, federated_data):
        output = process.next(state, federated_data)
        metrics = output.metrics
        return output.state, fc.federated_zip(
            collections.OrderedDict(
                broadcast=metrics.distributor,
                aggregation=metrics.aggregator,
                train=metrics.client_work.train,
            )
        )

    # The round keeps the client failure handling of the process it wraps.
    return IterativeProcess(
        process.initialize, GuardedComputation(next_fn, guards_of(process.next))
    )
