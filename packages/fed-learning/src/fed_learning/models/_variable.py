"""VariableModel: TFF's model interface, with variables.

fed's learning algorithms build a VariableModel inside their TensorFlow computations by calling the model
function, as TFF does: each client's work gets fresh variables, loads the broadcast weights into them and
trains them. A Keras model (from `from_keras_model`) is trained through its functional form instead, which
carries what Keras would change in variables (batch-norm statistics, seeds, RNN states) through the
client's pass: the same semantics, without building the model again.
"""

from __future__ import annotations

import abc
import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from fed_learning.models._functional import (
    BatchOutput,
    FunctionalModel,
    keras_functional_model,
    num_examples_of,
    split_batch,
    warn_if_compiled,
)


class VariableModel(abc.ABC):
    """A model with variables (TFF's `tff.learning.models.VariableModel`).

    `forward_pass` runs the model on a batch and accumulates local metrics in the model's local variables;
    `report_local_unfinalized_metrics()` gives their states (an OrderedDict of metric names to lists of
    tensors), which are summed over clients and turned into values at the server by `metric_finalizers()`
    (an OrderedDict of the same names to functions of a summed state). A model function given to fed's
    algorithms must build a new model, with new variables, on every call.
    """

    @property
    @abc.abstractmethod
    def trainable_variables(self) -> Sequence[Any]: ...

    @property
    @abc.abstractmethod
    def non_trainable_variables(self) -> Sequence[Any]: ...

    @property
    def local_variables(self) -> Sequence[Any]:
        """The variables of the local metrics."""
        return []

    @property
    @abc.abstractmethod
    def input_spec(self) -> Any: ...

    @abc.abstractmethod
    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput:
        """Runs the model on a batch, accumulates the local metrics, and returns loss and predictions."""

    @abc.abstractmethod
    def predict_on_batch(self, x: Any, training: bool = True) -> Any: ...

    @abc.abstractmethod
    def report_local_unfinalized_metrics(self) -> collections.OrderedDict[str, Any]:
        """The accumulated metric states (summable across clients), by metric name."""

    @abc.abstractmethod
    def metric_finalizers(self) -> collections.OrderedDict[str, Callable[[Any], Any]]:
        """For each metric, the function from its (summed) state to its value."""

    @abc.abstractmethod
    def reset_metrics(self) -> None: ...


class Model(abc.ABC):
    """TFF's older model interface (`tff.learning.Model`): `report_local_outputs()` gives the local metrics
    and `federated_output_computation`, a federated computation, aggregates them from the clients to the
    server. fed's algorithms train such models as they train VariableModels."""

    @property
    @abc.abstractmethod
    def trainable_variables(self) -> Sequence[Any]: ...

    @property
    @abc.abstractmethod
    def non_trainable_variables(self) -> Sequence[Any]: ...

    @property
    def local_variables(self) -> Sequence[Any]:
        return []

    @property
    @abc.abstractmethod
    def input_spec(self) -> Any: ...

    @abc.abstractmethod
    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput: ...

    @abc.abstractmethod
    def report_local_outputs(self) -> Any:
        """Tensors accumulated over the forward passes so far (typically metrics)."""

    @property
    @abc.abstractmethod
    def federated_output_computation(self) -> Any:
        """A federated computation from `report_local_outputs()`'s value at CLIENTS to the metrics at
        SERVER."""


class KerasVariableModel(VariableModel):
    """A Keras 3 model wrapped as a VariableModel (made by `from_keras_model`).

    Its weights are the Keras model's `trainable_weights` and `non_trainable_weights`; its metrics (`loss`,
    `num_examples`, `num_batches` and the given Keras metrics) keep their states in local variables.
    """

    def __init__(self, keras_model: Any, functional: FunctionalModel):
        self._keras_model = keras_model
        self._functional = functional
        self._specs = functional.metric_specs
        self._metric_variables = collections.OrderedDict(
            (s.name, [tf.Variable(t, trainable=False) for t in s.initial_state()])
            for s in self._specs
        )

    @property
    def keras_model(self) -> Any:
        return self._keras_model

    @property
    def trainable_variables(self) -> list[Any]:
        return list(self._keras_model.trainable_weights)

    @property
    def non_trainable_variables(self) -> list[Any]:
        return list(self._keras_model.non_trainable_weights)

    @property
    def local_variables(self) -> list[Any]:
        return [v for values in self._metric_variables.values() for v in values]

    @property
    def input_spec(self) -> Any:
        return self._functional.input_spec

    def predict_on_batch(self, x: Any, training: bool = True) -> Any:
        return self._keras_model(x, training=training)

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput:
        x, y = split_batch(batch_input)
        predictions = self._keras_model(x, training=training)
        loss = self._functional.loss(output=predictions, label=y)
        regularization = list(self._keras_model.losses)
        if regularization:
            loss = loss + tf.add_n([tf.cast(t, loss.dtype) for t in regularization])
        output = BatchOutput(loss, predictions, None)
        output = output._replace(num_examples=num_examples_of(output))
        for spec in self._specs:
            variables = self._metric_variables[spec.name]
            state = [v.read_value() for v in variables]
            new_state = spec.update(state, y, predictions, loss, output.num_examples)
            for variable, value in zip(variables, new_state):
                variable.assign(value)
        return output

    def report_local_unfinalized_metrics(self) -> collections.OrderedDict[str, list[Any]]:
        return collections.OrderedDict(
            (name, [v.read_value() for v in variables])
            for name, variables in self._metric_variables.items()
        )

    def metric_finalizers(self) -> collections.OrderedDict[str, Callable[[Any], Any]]:
        return collections.OrderedDict((s.name, s.finalize) for s in self._specs)

    def reset_metrics(self) -> None:
        for spec in self._specs:
            for variable, value in zip(self._metric_variables[spec.name], spec.initial_state()):
                variable.assign(value)

    def functional_model(self) -> FunctionalModel:
        """The same model as pure functions of its weights (metrics and loss included)."""
        return self._functional


def _check_input_spec(input_spec: Any) -> None:
    if isinstance(input_spec, Mapping):
        missing = [key for key in ("x", "y") if key not in input_spec]
        if missing:
            raise ValueError(
                f"An input_spec given as a mapping needs the keys 'x' and 'y'; missing {missing}."
            )
    elif not (isinstance(input_spec, Sequence) and len(input_spec) == 2):
        raise ValueError(
            "input_spec must describe a batch as (x, y) or {'x': ..., 'y': ...}, got "
            f"{input_spec!r}."
        )


def from_keras_model(
    keras_model: Any,
    loss: Any,
    input_spec: Any,
    metrics: Sequence[Any] | None = None,
    loss_weights: Sequence[float] | None = None,
) -> KerasVariableModel:
    """Wraps a Keras 3 model with its loss, metrics and the spec of one batch (`(x, y)` or
    `{'x': ..., 'y': ...}` of `tf.TensorSpec`s with a None batch dimension).

    `metrics` are Keras metrics or no-argument functions returning them; `loss`, `num_examples` and
    `num_batches` are added unless a metric has that name. A compiled model (`keras.models.clone_model` keeps
    the compile state) is accepted with a warning: its optimizer, loss and metrics are ignored in favour
    of these arguments. The loss includes the model's regularization losses, as in Keras training.
    """
    import keras

    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            f"Expected a Keras 3 model (keras.Model), got {type(keras_model).__name__}."
        )
    _check_input_spec(input_spec)
    if isinstance(loss, (list, tuple)) and len(loss) != len(keras_model.outputs):
        raise ValueError(
            f"Got {len(loss)} losses for a model with {len(keras_model.outputs)} outputs: give one loss "
            "per output."
        )
    warn_if_compiled(keras_model)
    functional = keras_functional_model(
        keras_model, loss, input_spec, metrics, loss_weights, check_compiled=False
    )
    return KerasVariableModel(keras_model, functional)


def from_compiled_keras_model(compiled_keras_model: Any, sample_batch: Any) -> KerasVariableModel:
    """Wraps a compiled Keras 3 model, taking its loss and metrics from its compile configuration and the
    input spec from `sample_batch` (TFF's older way; `from_keras_model` is preferred)."""
    import keras

    if not getattr(compiled_keras_model, "compiled", False):
        raise ValueError(
            "from_compiled_keras_model needs a compiled Keras model; use from_keras_model otherwise."
        )
    config = compiled_keras_model.get_compile_config()
    loss = config.get("loss")
    if loss is None:
        raise ValueError("The compiled Keras model has no loss.")
    losses = (
        [keras.losses.get(name) for name in loss]
        if isinstance(loss, (list, tuple))
        else keras.losses.get(loss)
    )
    metrics = [keras.metrics.get(m) for m in (config.get("metrics") or [])]
    metrics = [
        m
        if hasattr(m, "stateless_update_state")
        else keras.metrics.MeanMetricWrapper(m, name=getattr(m, "__name__", "metric"))
        for m in metrics
    ]
    input_spec = tf.nest.map_structure(
        lambda t: tf.TensorSpec(
            [None, *tf.convert_to_tensor(t).shape[1:]], tf.convert_to_tensor(t).dtype
        ),
        sample_batch,
    )
    functional = keras_functional_model(
        compiled_keras_model,
        losses,
        input_spec,
        metrics,
        config.get("loss_weights"),
        check_compiled=False,
    )
    return KerasVariableModel(compiled_keras_model, functional)
