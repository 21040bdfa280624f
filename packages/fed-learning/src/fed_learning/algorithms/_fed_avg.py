"""Federated averaging and its relatives (FedProx, FedSGD), composed from the learning templates.

The builders take TFF's keyword arguments. `loop_implementation` and `use_experimental_simulation_loop`
are accepted and change nothing: fed's client loop is always the fast one. `metrics_aggregator` is TFF's
`(metric_finalizers, local_unfinalized_metrics_type) -> federated computation`; by default the clients'
metric states are summed, then finalized.

Failures (docs/failures.md): a client without data, or whose update is not finite, is left out of the
round and counted in `metrics['client_work']['train']`. A round that no client contributes to keeps the
model and the server optimizer state (`metrics['finalizer']['update_non_finite']` is 1), as does a server
update that would make them non-finite (`model_non_finite`). `client_failure` ("raise" or "drop") says
what a client whose work raises does to the round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    build_gradient_on_client,
    initial_weights_computation,
    weights_type_of,
)
from fed_learning._typing import element, member
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
from fed_learning.templates._client_work import (
    check_loop_options,
    check_proximal_strength,
    client_work_process,
)
from fed_learning.templates._templates import check_client_failure
from fed_types import CLIENTS, FederatedType, TensorType

ModelFn = Callable[[], Any]


def _check_arguments(
    aggregator_factory: Any,
    model_distributor: Any,
    metrics_aggregator: Any,
    client_failure: Any,
    weighted: bool,
) -> None:
    """Checks the builders' arguments for the parts of the process, before anything is traced."""
    if not isinstance(
        aggregator_factory,
        (WeightedAggregationFactory, UnweightedAggregationFactory, AggregationProcess),
    ):
        raise TypeError(
            f"model_aggregator must be an aggregation factory, got {aggregator_factory!r}."
        )
    unweighted = (
        isinstance(aggregator_factory, UnweightedAggregationFactory)
        and not isinstance(aggregator_factory, WeightedAggregationFactory)
    ) or (isinstance(aggregator_factory, AggregationProcess) and not aggregator_factory.is_weighted)
    if weighted and unweighted:
        # The clients' weights (their numbers of examples) would be dropped without a word.
        raise TypeError(
            "A weighted algorithm needs a weighted model_aggregator (a WeightedAggregationFactory, "
            f"such as MeanFactory() or robust_aggregator(weighted=True)), got the unweighted "
            f"{aggregator_factory!r}; use the unweighted builder for an unweighted aggregator."
        )
    if model_distributor is not None and not isinstance(model_distributor, DistributionProcess):
        raise TypeError(
            f"model_distributor must be a DistributionProcess, got {model_distributor!r}."
        )
    if metrics_aggregator is not None and not callable(metrics_aggregator):
        raise TypeError(
            "metrics_aggregator must be a function (metric_finalizers, "
            f"local_unfinalized_metrics_type) -> federated computation, got {metrics_aggregator!r}."
        )
    check_client_failure(client_failure)


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
    else:
        aggregator = aggregator_factory
    return compose_learning_process(
        initial_weights_computation(model),
        model_distributor or build_broadcast_process(weights_type),
        client_work,
        _undefined_without_contributions(aggregator),
        build_apply_optimizer_finalizer(server_optimizer, weights_type),
    )


def _undefined_without_contributions(aggregator: AggregationProcess) -> AggregationProcess:
    """`aggregator` as a weighted aggregation whose result is NaN when every client's update weight is 0.

    fed's client work gives weight 0 to the clients it leaves out (no data, a non-finite update, a
    failure). When that is every client there is no update to apply: a weighted mean is then NaN by
    itself, but an unweighted one would be a mean of zero updates, which a server optimizer with momentum
    would still apply. A NaN aggregate is refused by the finalizer, which keeps the model and its state.
    """
    value_type = member(element(aggregator.next.type_signature.parameter, 1))
    weight_type = TensorType(np.float32)
    result_type = member(element(aggregator.next.type_signature.result, "result"))

    def undefined(t: tf.Tensor, defined: tf.Tensor) -> tf.Tensor:
        if not t.dtype.is_floating:
            return t
        return tf.where(defined, t, tf.fill(tf.shape(t), tf.constant(np.nan, t.dtype)))

    @ftf.computation(result_type, weight_type)
    def undefined_if_no_weight(result, total_weight):
        return tf.nest.map_structure(lambda t: undefined(t, total_weight > 0), result)

    @fc.federated_computation(
        aggregator.initialize.type_signature.result,
        FederatedType(value_type, CLIENTS),
        FederatedType(weight_type, CLIENTS),
    )
    def next_fn(state, value, weight):
        if aggregator.is_weighted:
            output = aggregator.next(state, value, weight)
        else:
            output = aggregator.next(state, value)
        result = fc.federated_map(
            undefined_if_no_weight, fc.federated_zip((output.result, fc.federated_sum(weight)))
        )
        return MeasuredProcessOutput(output.state, result, output.measurements)

    return AggregationProcess(aggregator.initialize, next_fn)


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
    client_failure: str,
) -> LearningProcess:
    """The process shared by FedAvg and FedProx: model-delta client work, the aggregator, and a server
    optimizer (SGD with learning rate 1.0 unless given)."""
    check_loop_options(loop_implementation, use_experimental_simulation_loop)
    check_proximal_strength(proximal_strength)
    _check_arguments(
        model_aggregator,
        model_distributor,
        metrics_aggregator,
        client_failure,
        weighted=client_weighting is ClientWeighting.NUM_EXAMPLES,
    )
    client_optimizer = as_optimizer(client_optimizer_fn)
    server_optimizer = _server_optimizer(server_optimizer_fn, 1.0)
    model = as_model(model_fn)
    client_work = build_model_delta_client_work(
        model,
        client_optimizer,
        client_weighting,
        proximal_strength,
        metrics_aggregator=metrics_aggregator,
        client_failure=client_failure,
    )
    return _compose(model, client_work, server_optimizer, model_aggregator, model_distributor)


def build_weighted_fed_avg(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any = None,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | AggregationProcess | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    measure_timing: bool = False,
    use_experimental_simulation_loop: bool = False,
    client_failure: str = "raise",
) -> LearningProcess:
    """Federated averaging: each client trains the broadcast model over its data with the client optimizer;
    the server averages the model deltas weighted by examples (`client_weighting`) with `model_aggregator`
    (MeanFactory by default) and applies them with the server optimizer (SGD with learning rate 1.0 by
    default, which makes the new model the weighted mean of the clients' models).

    `model_fn` is a no-argument function returning a VariableModel (built anew inside the computations,
    as in TFF), or a FunctionalModel. Only trainable weights are averaged: the server keeps its
    non-trainable weights, and what a client's training does to them stays on the client, as in TFF.
    `measure_timing` is accepted; fed reports no timing measurements.

    `client_failure` says what a client whose work raises (its dataset fails while read, say) does to
    the round: "raise" (the default) fails the round with a `fed_core.execution.ClientWorkError` that
    names the client's position and carries the original error; "drop" leaves the client out, with a
    warning, and counts it in `metrics['client_work']['train']['num_failed_clients']`.
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
        client_failure,
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
    client_failure: str = "raise",
) -> LearningProcess:
    """Federated averaging where every client's update counts equally (UnweightedMeanFactory by default);
    `client_failure` as in `build_weighted_fed_avg`."""
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
        client_failure,
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
    client_failure: str = "raise",
) -> LearningProcess:
    """FedProx: federated averaging whose local loss adds `proximal_strength/2 * ||w - w_server||^2`
    (with strength 0 it is exactly FedAvg); `client_failure` as in `build_weighted_fed_avg`."""
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
        client_failure,
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
    client_failure: str = "raise",
) -> LearningProcess:
    """FedProx with every client's update counting equally; `client_failure` as in
    `build_weighted_fed_avg`."""
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
        client_failure,
    )


def build_fed_sgd(
    model_fn: ModelFn | FunctionalModel,
    server_optimizer_fn: Any = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    loop_implementation: LoopImplementation | None = None,
    use_experimental_simulation_loop: bool = False,
    client_failure: str = "raise",
) -> LearningProcess:
    """Federated SGD: clients compute the gradient of the loss over all their data at the broadcast model;
    the server averages them weighted by examples and takes one step of the server optimizer (SGD with
    learning rate 0.1 by default); `client_failure` as in `build_weighted_fed_avg`."""
    check_loop_options(loop_implementation, use_experimental_simulation_loop)
    model_aggregator = model_aggregator or MeanFactory()
    _check_arguments(
        model_aggregator, model_distributor, metrics_aggregator, client_failure, weighted=True
    )
    model = as_model(model_fn)
    server_optimizer = _server_optimizer(server_optimizer_fn, 0.1)
    client_work = client_work_process(
        model, build_gradient_on_client(model), metrics_aggregator, client_failure
    )
    return _compose(model, client_work, server_optimizer, model_aggregator, model_distributor)
