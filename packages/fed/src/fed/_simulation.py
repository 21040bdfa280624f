"""`fed.simulation`: client data for simulation (`fed.simulation.datasets`), client sampling, and the
training loop (`run_training_process`, with TFF's metric key names)."""

import fed_datasets as datasets
from fed_datasets import ClientData, build_client_selection_fn, build_uniform_sampling_fn
from fed_learning.program import (
    EVALUATION_METRICS_PREFIX,
    EVALUATION_TIME_KEY,
    ROUND_NUMBER_KEY,
    TRAINING_TIME_KEY,
    run_training_process,
)

__all__ = [
    "EVALUATION_METRICS_PREFIX",
    "EVALUATION_TIME_KEY",
    "ROUND_NUMBER_KEY",
    "TRAINING_TIME_KEY",
    "ClientData",
    "build_client_selection_fn",
    "build_uniform_sampling_fn",
    "datasets",
    "run_training_process",
]
