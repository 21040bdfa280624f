"""`fed.learning.templates`: the parts of learning algorithms and their composition."""

from fed_learning.templates._client_work import (
    ClientWeighting,
    LoopImplementation,
    build_apply_optimizer_finalizer,
    build_model_delta_client_work,
    reject_non_finite_update,
)
from fed_learning.templates._templates import (
    ClientResult,
    ClientWorkProcess,
    DistributionProcess,
    FinalizerProcess,
    LearningAlgorithmState,
    LearningProcess,
    LearningProcessOutput,
    build_broadcast_process,
    compose_learning_process,
)

__all__ = [
    "ClientResult",
    "ClientWeighting",
    "ClientWorkProcess",
    "DistributionProcess",
    "FinalizerProcess",
    "LearningAlgorithmState",
    "LearningProcess",
    "LearningProcessOutput",
    "LoopImplementation",
    "build_apply_optimizer_finalizer",
    "build_broadcast_process",
    "build_model_delta_client_work",
    "compose_learning_process",
    "reject_non_finite_update",
]
