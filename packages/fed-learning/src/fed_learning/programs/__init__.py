"""`fed.learning.programs`: TFF's program logic for training a model (`train_model`)."""

from fed_learning.programs._evaluation import EvaluationManager
from fed_learning.programs._train_model import CHECKPOINT_KEY, train_model

__all__ = ["CHECKPOINT_KEY", "EvaluationManager", "train_model"]
