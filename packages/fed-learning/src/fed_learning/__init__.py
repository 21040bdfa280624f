"""fed-learning: federated learning on fed (exposed as `fed.learning`)."""

from fed_core.execution import ClientWorkError
from fed_learning import (
    algorithms,
    metrics,
    model_update_aggregator,
    models,
    optimizers,
    program,
    programs,
    templates,
)
from fed_learning.__about__ import __version__
from fed_learning.algorithms import build_federated_averaging_process, build_federated_evaluation
from fed_learning.model_update_aggregator import (
    compression_aggregator,
    dp_aggregator,
    robust_aggregator,
    secure_aggregator,
)
from fed_learning.models import Model, ModelWeights, from_compiled_keras_model, from_keras_model
from fed_learning.templates import ClientWeighting, LoopImplementation

__all__ = [
    "ClientWeighting",
    "ClientWorkError",
    "LoopImplementation",
    "Model",
    "ModelWeights",
    "__version__",
    "algorithms",
    "build_federated_averaging_process",
    "build_federated_evaluation",
    "compression_aggregator",
    "dp_aggregator",
    "from_compiled_keras_model",
    "from_keras_model",
    "metrics",
    "model_update_aggregator",
    "models",
    "optimizers",
    "program",
    "programs",
    "robust_aggregator",
    "secure_aggregator",
    "templates",
]
