"""Federated averaging with a stateful server optimizer: FedAvgM (Hsu et al., 2019) and the adaptive
FedAdagrad, FedAdam and FedYogi (Reddi et al., 2021).

Each is `build_weighted_fed_avg` with a named server optimizer: the server treats the negated mean model
delta as a pseudo-gradient and steps with momentum, Adagrad, Adam or Yogi. The defaults are the papers':
server momentum 0.9 for FedAvgM; beta_1 = 0.9, beta_2 = 0.99 and an adaptivity `tau` of 1e-3 for the
adaptive ones (`tau` is the constant added to the square root of the second-moment estimate, which also
starts at `tau**2`). fed's Adam and Yogi apply the usual bias correction, which the paper leaves out; it
only changes the first rounds' step sizes. The paper tunes the server learning rate per task: the
defaults are starting points, not tuned values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fed_aggregators import WeightedAggregationFactory
from fed_learning.algorithms._fed_avg import ModelFn, build_weighted_fed_avg
from fed_learning.models import FunctionalModel
from fed_learning.optimizers import Optimizer, build_adagrad, build_adam, build_sgdm, build_yogi
from fed_learning.templates import ClientWeighting, DistributionProcess, LearningProcess


def _with_server_optimizer(
    server_optimizer: Optimizer,
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    client_weighting: ClientWeighting | None,
    model_distributor: DistributionProcess | None,
    model_aggregator: WeightedAggregationFactory | None,
    metrics_aggregator: Any,
    client_failure: str,
) -> LearningProcess:
    return build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn,
        server_optimizer_fn=server_optimizer,
        client_weighting=client_weighting,
        model_distributor=model_distributor,
        model_aggregator=model_aggregator,
        metrics_aggregator=metrics_aggregator,
        client_failure=client_failure,
    )


def build_fed_avgm(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_learning_rate: float = 1.0,
    server_momentum: float = 0.9,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """FedAvgM (Hsu et al., 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated
    Visual Classification"): federated averaging whose server applies the mean model delta with SGD and
    momentum, `v = server_momentum * v + delta; w = w - server_learning_rate * v`. The momentum buffer `v`
    is the finalizer's state. The other arguments are `build_weighted_fed_avg`'s."""
    return _with_server_optimizer(
        build_sgdm(server_learning_rate, momentum=server_momentum),
        model_fn,
        client_optimizer_fn,
        client_weighting,
        model_distributor,
        model_aggregator,
        metrics_aggregator,
        client_failure,
    )


def build_fed_adagrad(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_learning_rate: float = 0.1,
    tau: float = 1e-3,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """FedAdagrad (Reddi et al., 2021, "Adaptive Federated Optimization"): federated averaging whose server
    applies the mean model delta `d` with Adagrad, `s = s + d**2; w = w - lr * d / sqrt(s + tau**2)`, with
    `s` starting at `tau**2`. The preconditioner `s` is the finalizer's state. The other arguments are
    `build_weighted_fed_avg`'s."""
    check_hyperparameter(tau, "tau")
    return _with_server_optimizer(
        build_adagrad(server_learning_rate, initial_preconditioner_value=tau**2, epsilon=tau**2),
        model_fn,
        client_optimizer_fn,
        client_weighting,
        model_distributor,
        model_aggregator,
        metrics_aggregator,
        client_failure,
    )


def build_fed_adam(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_learning_rate: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.99,
    tau: float = 1e-3,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """FedAdam (Reddi et al., 2021): federated averaging whose server applies the mean model delta with
    Adam (`fed_learning.optimizers.build_adam` with `epsilon=tau`). Its moment estimates are the
    finalizer's state. The other arguments are `build_weighted_fed_avg`'s."""
    check_hyperparameter(tau, "tau")
    return _with_server_optimizer(
        build_adam(server_learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=tau),
        model_fn,
        client_optimizer_fn,
        client_weighting,
        model_distributor,
        model_aggregator,
        metrics_aggregator,
        client_failure,
    )


def build_fed_yogi(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_learning_rate: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.99,
    tau: float = 1e-3,
    client_weighting: ClientWeighting | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """FedYogi (Reddi et al., 2021): federated averaging whose server applies the mean model delta with
    Yogi (`fed_learning.optimizers.build_yogi` with `epsilon=tau`, the preconditioner starting at
    `tau**2`). Its moment estimates are the finalizer's state. The other arguments are
    `build_weighted_fed_avg`'s."""
    check_hyperparameter(tau, "tau")
    return _with_server_optimizer(
        build_yogi(
            server_learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=tau,
            initial_preconditioner_value=tau**2,
        ),
        model_fn,
        client_optimizer_fn,
        client_weighting,
        model_distributor,
        model_aggregator,
        metrics_aggregator,
        client_failure,
    )


def check_hyperparameter(value: Any, name: str, allow_zero: bool = False) -> float:
    """Validates a hyperparameter that must be a finite float > 0 (or >= 0 with `allow_zero`)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float {bound}, got {type(value).__name__} {value!r}.")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite float {bound}, got {value}.")
    return float(value)
