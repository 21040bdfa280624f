"""The types of metric finalizers and metric aggregators, as TFF names them."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Protocol

MetricFinalizersType = collections.OrderedDict[str, Callable[[Any], Any]]
"""A VariableModel's `metric_finalizers()`: metric names to functions from a metric's summed state to
its value."""

MetricsState = collections.OrderedDict[str, Any]
"""Metric names to metric states (lists of tensors)."""

FunctionalMetricFinalizersType = Callable[[MetricsState], MetricsState]
"""A FunctionalModel's `finalize_metrics`: from all metric states to all metric values, by name."""


class MetricsAggregatorType(Protocol):
    """What the learning builders take as `metrics_aggregator`: a function of the model's finalizers (and
    the clients' metrics type) returning a federated computation from the clients' unfinalized metrics
    (`{T}@CLIENTS`) to the round's metric values at SERVER, such as `sum_then_finalize`."""

    def __call__(
        self,
        metric_finalizers: MetricFinalizersType | FunctionalMetricFinalizersType,
        local_unfinalized_metrics_type: Any = None,
    ) -> Any: ...
