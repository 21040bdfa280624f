"""`fed.simulation`: client data for simulation (`fed.simulation.datasets`), client sampling, the
training loop (`run_training_process`, with TFF's metric key names), the composition of a dataset
computation with a process, so that clients build their own datasets, and realistic clients (speeds,
availability, dropouts) on a simulated clock, for synchronous rounds with a deadline and for FedBuff."""

import fed_datasets as datasets
from fed_core import Computation
from fed_datasets import (
    ClientData,
    build_client_selection_fn,
    build_uniform_sampling_fn,
    compose_dataset_computation_with_computation,
    compose_dataset_computation_with_iterative_process,
)
from fed_learning.program import (
    EVALUATION_METRICS_PREFIX,
    EVALUATION_TIME_KEY,
    ROUND_NUMBER_KEY,
    TRAINING_TIME_KEY,
    run_training_process,
)
from fed_learning.simulation import (
    AvailabilityTrace,
    BufferedAsynchronousSimulation,
    ClientPopulation,
    DiurnalAvailability,
    SimulatedClock,
    SynchronousSimulation,
    load_availability_trace,
)
from fed_learning.templates import LearningProcess

__all__ = [
    "AvailabilityTrace",
    "BufferedAsynchronousSimulation",
    "ClientPopulation",
    "DiurnalAvailability",
    "EVALUATION_METRICS_PREFIX",
    "EVALUATION_TIME_KEY",
    "ROUND_NUMBER_KEY",
    "SimulatedClock",
    "SynchronousSimulation",
    "TRAINING_TIME_KEY",
    "ClientData",
    "build_client_selection_fn",
    "build_uniform_sampling_fn",
    "compose_dataset_computation_with_computation",
    "compose_dataset_computation_with_iterative_process",
    "compose_dataset_computation_with_learning_process",
    "datasets",
    "load_availability_trace",
    "run_training_process",
]


def compose_dataset_computation_with_learning_process(
    dataset_computation: Computation, process: LearningProcess
) -> LearningProcess:
    """`compose_dataset_computation_with_iterative_process` for a `LearningProcess`: the result is a
    `LearningProcess` too, with the same `get_model_weights` and `set_model_weights`."""
    if not isinstance(process, LearningProcess):
        raise TypeError(
            f"Expected process to be a LearningProcess, got {process!r} of type "
            f"{type(process).__qualname__}."
        )
    composed = compose_dataset_computation_with_iterative_process(dataset_computation, process)
    return LearningProcess(
        composed.initialize, composed.next, process.get_model_weights, process.set_model_weights
    )
