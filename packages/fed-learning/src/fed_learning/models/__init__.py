"""`fed.learning.models`: models for federated learning."""

from fed_learning.models._functional import (
    BatchOutput,
    FunctionalModel,
    MetricSpec,
    ModelWeights,
    functional_model_from_keras,
)
from fed_learning.models._reconstruction import (
    ReconstructionBatchOutput,
    ReconstructionDatasetSplitFn,
    ReconstructionModel,
)
from fed_learning.models._variable import (
    KerasVariableModel,
    Model,
    VariableModel,
    from_compiled_keras_model,
    from_keras_model,
)

__all__ = [
    "BatchOutput",
    "FunctionalModel",
    "KerasVariableModel",
    "MetricSpec",
    "Model",
    "ModelWeights",
    "ReconstructionBatchOutput",
    "ReconstructionDatasetSplitFn",
    "ReconstructionModel",
    "VariableModel",
    "from_compiled_keras_model",
    "from_keras_model",
    "functional_model_from_keras",
]
