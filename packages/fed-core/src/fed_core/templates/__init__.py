"""Templates of stateful federated processes: `IterativeProcess`, `MeasuredProcess`,
`AggregationProcess` and `EstimationProcess`, each checking its computations' types when built."""

from fed_core.templates.processes import (
    AggregationProcess,
    EstimationProcess,
    IterativeProcess,
    MeasuredProcess,
    MeasuredProcessOutput,
)

__all__ = [
    "AggregationProcess",
    "EstimationProcess",
    "IterativeProcess",
    "MeasuredProcess",
    "MeasuredProcessOutput",
]
