"""Federated averaging and its relatives (FedProx, FedSGD), composed from the learning templates.

The builders take TFF's keyword arguments. `loop_implementation` and `use_experimental_simulation_loop`
are accepted and change nothing: fed's client loop is always the fast one. `metrics_aggregator` is TFF's
`(metric_finalizers, local_unfinalized_metrics_type) -> federated computation`; by default the clients'
metric states are summed, then finalized.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fed_aggregators import (
    MeanFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    WeightedAggregationFactory,
)
from fed_core.templates import AggregationProcess
from fed_learning._client_training import (
    build_gradient_on_client,
    initial_weights_computation,
    weights_type_of,
)
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import TrainableModel, as_model, as_optimizer
from fed_learning.optimizers import Optimizer, build_sgdm
from fed_learning.templates import (
    ClientWeighting,
    ClientWorkProcess,
    DistributionProcess,
    LearningProcess,
    LoopImplementation,
    build_apply_optimizer_finalizer,
    build_broadcast_process,
    build_model_delta_client_work,
    compose_learning_process,
)
from fed_learning.templates._client_work import check_loop_options, client_work_process
from fed_types import TensorType

ModelFn = Callable[[], Any]


def _compose(
    model: TrainableModel,
    client_work: ClientWorkProcess,
    server_optimizer: Optimizer,
    aggregator_factory: Any,
    model_distributor: DistributionProcess | None,
) -> LearningProcess:
    weights_type = weights_type_of(model)
    update_type = weights_type.trainable  # type: ignore[attr-defined]
    if isinstance(aggregator_factory, WeightedAggregationFactory):
        aggregator = aggregator_factory.create(update_type, TensorType(np.float32))
    elif isinstance(aggregator_factory, UnweightedAggregationFactory):
        aggregator = aggregator_factory.create(update_type)
    elif isinstance(aggregator_factory, AggregationProcess):
        aggregator = aggregator_factory
    else:
        raise TypeError(
            f"model_aggregator must be an aggregation factory, got {aggregator_factory!r}."
        )
    if model_distributor is not None and not isinstance(model_distributor, DistributionProcess):
        raise TypeError(
            f"model_distributor must be a DistributionProcess, got {model_distributor!r}."
        )
    return compose_learning_process(
        initial_weights_computation(model),
        model_distributor or build_broadcast_process(weights_type),
        client_work,
        aggregator,
        build_apply_optimizer_finalizer(server_optimizer, weights_type),
    )


def _server_optimizer(server_optimizer_fn: Any, default_learning_rate: float) -> Optimizer:
    if server_optimizer_fn is None:
        return build_sgdm(default_learning_rate)
    return as_optimizer(server_optimizer_fn)


def _weighting(client_weighting: Any) -> ClientWeighting:
    if client_weighting is None:
        return ClientWeighting.NUM_EXAMPLES
    if isinstance(client_weighting, ClientWeighting):
        return client_weighting
    raise TypeError(f"client_weighting must be a ClientWeighting, got {client_weighting!r}.")


def _check_measure_timing(measure_timing: Any) -> None:
    if not isinstance(measure_timing, bool):
        raise TypeError(f"measure_timing must be a bool, got {measure_timing!r}.")


def _build_model_delta_process(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any,
    client_weighting: ClientWeighting,
    proximal_strength: float,
    model_distributor: DistributionProcess | None,
    model_aggregator: Any,
    metrics_aggregator: Any,
    loop_implementation: Any,
    use_experimental_simulation_loop: Any,
) -> LearningProcess:
    """The process shared by FedAvg and FedProx: model-delta client work, the aggregator, and a server
    optimizer (SGD with learning rate 1.0 unless given)."""
    check_loop_options(loop_implementation, use_experimental_simulation_loop)
    model = as_model(model_fn)
    client_work = build_model_delta_client_work(
        model,
        as_optimizer(client_optimizer_fn),
        client_weighting,
        proximal_strength,
        metrics_aggregator=metrics_aggregator,
    )
    server_optimizer = _server_optimizer(server_optimizer_fn, 1.0)
    return _compose(model, client_work, server_optimizer, model_aggregator, model_distributor)


def build_weighted_fed_avg(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any = None,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    measure_timing: bool = False,
    use_experimental_simulation_loop: bool = False,
) -> LearningProcess:
    """Federated averaging: each client trains the broadcast model over its data with the client optimizer;
    the server averages the model deltas weighted by examples (`client_weighting`) with `model_aggregator`
    (MeanFactory by default) and applies them with the server optimizer (SGD with learning rate 1.0 by
    default, which makes the new model the weighted mean of the clients' models).

    `model_fn` is a no-argument function returning a VariableModel (built anew inside the computations,
    as in TFF), or a FunctionalModel. Only trainable weights are averaged: the server keeps its
    non-trainable weights, and what a client's training does to them stays on the client, as in TFF.
    `measure_timing` is accepted; fed reports no timing measurements.
    """
    _check_measure_timing(measure_timing)
    return _build_model_delta_process(
        model_fn,
        client_optimizer_fn,
        server_optimizer_fn,
        _weighting(client_weighting),
        0.0,
        model_distributor,
        model_aggregator or MeanFactory(),
        metrics_aggregator,
        loop_implementation,
        use_experimental_simulation_loop,
    )


def build_unweighted_fed_avg(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: UnweightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    measure_timing: bool = False,
    use_experimental_simulation_loop: bool = False,
) -> LearningProcess:
    """Federated averaging where every client's update counts equally (UnweightedMeanFactory by default)."""
    _check_measure_timing(measure_timing)
    return _build_model_delta_process(
        model_fn,
        client_optimizer_fn,
        server_optimizer_fn,
        ClientWeighting.UNIFORM,
        0.0,
        model_distributor,
        model_aggregator or UnweightedMeanFactory(),
        metrics_aggregator,
        loop_implementation,
        use_experimental_simulation_loop,
    )


def build_weighted_fed_prox(
    model_fn: ModelFn | FunctionalModel,
    proximal_strength: float,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any = None,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    use_experimental_simulation_loop: bool = False,
) -> LearningProcess:
    """FedProx: federated averaging whose local loss adds `proximal_strength/2 * ||w - w_server||^2`
    (with strength 0 it is exactly FedAvg)."""
    return _build_model_delta_process(
        model_fn,
        client_optimizer_fn,
        server_optimizer_fn,
        _weighting(client_weighting),
        proximal_strength,
        model_distributor,
        model_aggregator or MeanFactory(),
        metrics_aggregator,
        loop_implementation,
        use_experimental_simulation_loop,
    )


def build_unweighted_fed_prox(
    model_fn: ModelFn | FunctionalModel,
    proximal_strength: float,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: UnweightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    use_experimental_simulation_loop: bool = False,
) -> LearningProcess:
    """FedProx with every client's update counting equally."""
    return _build_model_delta_process(
        model_fn,
        client_optimizer_fn,
        server_optimizer_fn,
        ClientWeighting.UNIFORM,
        proximal_strength,
        model_distributor,
        model_aggregator or UnweightedMeanFactory(),
        metrics_aggregator,
        loop_implementation,
        use_experimental_simulation_loop,
    )


def build_fed_sgd(
    model_fn: ModelFn | FunctionalModel,
    server_optimizer_fn: Any = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    use_experimental_simulation_loop: bool = False,
) -> LearningProcess:
    """Federated SGD: clients compute the gradient of the loss over all their data at the broadcast model;
    the server averages them weighted by examples and takes one step of the server optimizer (SGD with
    learning rate 0.1 by default)."""
    check_loop_options(loop_implementation, use_experimental_simulation_loop)
    model = as_model(model_fn)
    server_optimizer = _server_optimizer(server_optimizer_fn, 0.1)
    client_work = client_work_process(model, build_gradient_on_client(model), metrics_aggregator)
    return _compose(
        model, client_work, server_optimizer, model_aggregator or MeanFactory(), model_distributor
    )
