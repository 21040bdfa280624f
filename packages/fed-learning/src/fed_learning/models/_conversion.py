"""Accepting the forms users give models and optimizers in: model functions, Keras optimizer factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fed_learning.models._functional import FunctionalModel, ModelWeights
from fed_learning.models._variable import KerasVariableModel, Model, VariableModel
from fed_learning.optimizers import (
    Optimizer,
    build_adagrad,
    build_adam,
    build_adamw,
    build_rmsprop,
    build_sgdm,
)


class VariableModelSource:
    """A VariableModel (or a model of TFF's older `Model` interface) made by a model function.

    One model is built now, outside any computation: it gives the weights' types and initial values, the
    input spec and the metric finalizers. Inside the client computations, `build()` calls the model
    function again, so that every call gets fresh variables.
    """

    def __init__(self, model_fn: Callable[[], Any], prototype: VariableModel | Model):
        self.model_fn = model_fn
        self.prototype = prototype
        self.legacy = not isinstance(prototype, VariableModel)
        self.input_spec = prototype.input_spec
        self.initial_weights = ModelWeights(
            [_array(v) for v in prototype.trainable_variables],
            [_array(v) for v in prototype.non_trainable_variables],
        )

    def build(self) -> VariableModel | Model:
        """A new model from the model function."""
        model = self.model_fn()
        if model is self.prototype:
            raise ValueError(
                "The model function returned the same model twice: it must build a new model, with new "
                "variables, on every call (fed calls it inside its computations, as TFF does)."
            )
        if not isinstance(model, (VariableModel, Model)):
            raise TypeError(
                f"The model function returned {model!r} inside a computation, where it first returned a "
                f"{type(self.prototype).__name__}."
            )
        return model


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


TrainableModel = FunctionalModel | VariableModelSource


def as_model(
    model: Callable[[], Any] | FunctionalModel | VariableModel | VariableModelSource,
) -> TrainableModel:
    """What fed's algorithms train: a FunctionalModel, given or the functional form of a Keras model; or
    the model function of any other VariableModel (or older `Model`), which the algorithms call inside
    their computations."""
    if isinstance(model, (FunctionalModel, VariableModelSource)):
        return model
    if isinstance(model, KerasVariableModel):
        return model.functional_model()
    if isinstance(model, (VariableModel, Model)):
        raise TypeError(
            f"Got a {type(model).__name__} instance: give a no-argument function that builds the model "
            "(such as the model class itself), which fed calls inside its computations to get fresh "
            "variables, as TFF does."
        )
    if callable(model):
        built = model()
        if isinstance(built, FunctionalModel):
            return built
        if isinstance(built, KerasVariableModel):
            return built.functional_model()
        if isinstance(built, (VariableModel, Model)):
            return VariableModelSource(model, built)
        raise TypeError(
            "Expected a model function returning a VariableModel (such as one from "
            f"fed.learning.models.from_keras_model), got one returning {built!r}."
        )
    raise TypeError(
        "Expected a model function returning a VariableModel (such as one from "
        f"fed.learning.models.from_keras_model) or a FunctionalModel, got {model!r}."
    )


def _from_keras(optimizer: Any) -> Optimizer:
    config = optimizer.get_config()
    kind = type(optimizer).__name__
    learning_rate = float(config["learning_rate"])
    if kind == "SGD":
        momentum = float(config.get("momentum") or 0.0)
        return build_sgdm(
            learning_rate, momentum or None, nesterov=bool(config.get("nesterov", False))
        )
    if kind == "Adam":
        return build_adam(learning_rate, config["beta_1"], config["beta_2"], config["epsilon"])
    if kind == "AdamW":
        return build_adamw(
            learning_rate,
            config["beta_1"],
            config["beta_2"],
            config["epsilon"],
            config["weight_decay"],
        )
    if kind == "Adagrad":
        return build_adagrad(learning_rate, config["initial_accumulator_value"], config["epsilon"])
    if kind == "RMSprop":
        if config.get("momentum") or config.get("centered"):
            raise NotImplementedError(
                "RMSprop with momentum or centered=True has no fed counterpart yet."
            )
        return build_rmsprop(learning_rate, config["rho"], config["epsilon"])
    raise NotImplementedError(
        f"The Keras optimizer {kind} has no fed counterpart; use one of fed.learning.optimizers' builders "
        f"(build_sgdm, build_adam, build_adamw, build_adagrad, build_yogi, build_rmsprop)."
    )


def as_optimizer(optimizer: Optimizer | Callable[[], Any]) -> Optimizer:
    """A fed optimizer from a fed optimizer, or from a function returning a fed or Keras optimizer (TFF's
    older `client_optimizer_fn=lambda: tf.keras.optimizers.SGD(0.02)`)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if hasattr(optimizer, "get_config") and hasattr(optimizer, "apply_gradients"):
        raise TypeError(
            f"Got a Keras optimizer instance ({type(optimizer).__name__}): give a function returning "
            f"one, such as `lambda: keras.optimizers.{type(optimizer).__name__}(...)`, as TFF takes "
            "it, or a fed optimizer (fed.learning.optimizers.build_sgdm(...))."
        )
    if callable(optimizer):
        made = optimizer()
        if isinstance(made, Optimizer):
            return made
        if hasattr(made, "get_config") and "learning_rate" in made.get_config():
            return _from_keras(made)
        raise TypeError(
            f"The optimizer function returned {made!r}: expected a fed or Keras optimizer."
        )
    raise TypeError(f"Expected a fed optimizer or a function returning one, got {optimizer!r}.")
