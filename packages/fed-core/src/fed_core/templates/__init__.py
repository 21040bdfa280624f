"""Templates of stateful federated processes: `IterativeProcess`, `MeasuredProcess` and
`AggregationProcess`, each checking its computations' types when built."""

from fed_core.templates.processes import (
    AggregationProcess,
    IterativeProcess,
    MeasuredProcess,
    MeasuredProcessOutput,
)

__all__ = ["AggregationProcess", "IterativeProcess", "MeasuredProcess", "MeasuredProcessOutput"]
