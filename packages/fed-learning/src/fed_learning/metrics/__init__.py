"""Metrics for federated learning (TFF's `tff.learning.metrics`): aggregators from the clients'
unfinalized metrics to their values at the server, Keras metric finalizers, and counters."""

from fed_learning.metrics._aggregator import secure_sum_then_finalize, sum_then_finalize
from fed_learning.metrics._counters import NumBatchesCounter, NumExamplesCounter
from fed_learning.metrics._keras import (
    create_functional_metric_fns,
    create_keras_metric_finalizer,
)
from fed_learning.metrics._types import (
    FunctionalMetricFinalizersType,
    MetricFinalizersType,
    MetricsAggregatorType,
)

__all__ = [
    "FunctionalMetricFinalizersType",
    "MetricFinalizersType",
    "MetricsAggregatorType",
    "NumBatchesCounter",
    "NumExamplesCounter",
    "create_functional_metric_fns",
    "create_keras_metric_finalizer",
    "secure_sum_then_finalize",
    "sum_then_finalize",
]
