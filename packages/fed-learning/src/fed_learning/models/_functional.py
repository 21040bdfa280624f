"""Models as pure functions of their weights, which is how fed trains them: every function here runs inside
traced, serialized TensorFlow computations, with weights passed in and out as tensors (no variables)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf


class ModelWeights(NamedTuple):
    """The weights of a model: lists of trainable and non-trainable tensors (or arrays), in model order."""

    trainable: Any
    non_trainable: Any

    @classmethod
    def from_model(cls, model: Any) -> ModelWeights:
        """The current weights of a Keras model or VariableModel: numpy arrays, or tensors read from
        its variables when called inside a TensorFlow computation."""
        if tf.inside_function():
            read = tf.convert_to_tensor
        else:

            def read(v: Any) -> np.ndarray:
                return np.asarray(v.numpy() if hasattr(v, "numpy") else v)

        return cls(
            [read(v) for v in model.trainable_variables],
            [read(v) for v in model.non_trainable_variables],
        )

    def assign_weights_to(self, model: Any) -> None:
        """Copies these weights into a Keras model (or anything with matching variable lists)."""
        for target, source in (
            (model.trainable_variables, self.trainable),
            (model.non_trainable_variables, self.non_trainable),
        ):
            if len(target) != len(source):
                raise ValueError(
                    f"The model has {len(target)} variables where these weights have {len(source)}."
                )
            for variable, value in zip(target, source):
                variable.assign(value)


class BatchOutput(NamedTuple):
    """What a forward pass over one batch gives: the loss, the predictions and the number of examples."""

    loss: Any
    predictions: Any
    num_examples: Any


def lists_to_tuples(structure: Any) -> Any:
    """The same structure with every list made a tuple: tf.data treats a list as one tensor to stack, so
    structures that cross `Dataset.reduce` must hold tuples."""
    if isinstance(structure, list):
        return tuple(lists_to_tuples(x) for x in structure)
    if isinstance(structure, collections.OrderedDict):
        return collections.OrderedDict((k, lists_to_tuples(v)) for k, v in structure.items())
    if isinstance(structure, dict):
        return {k: lists_to_tuples(v) for k, v in structure.items()}
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*(lists_to_tuples(x) for x in structure))
    if isinstance(structure, tuple):
        return tuple(lists_to_tuples(x) for x in structure)
    return structure


def split_batch(batch: Any) -> tuple[Any, Any]:
    """The (inputs, labels) of a batch given as a pair or as a mapping with keys `x` and `y`."""
    if isinstance(batch, collections.abc.Mapping):
        if "x" not in batch or "y" not in batch:
            raise ValueError(
                f"A batch given as a mapping must have the keys 'x' and 'y', got {sorted(batch)}."
            )
        return batch["x"], batch["y"]
    if isinstance(batch, Sequence) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        f"A batch must be a pair (x, y) or a mapping with keys 'x' and 'y', got {batch!r}."
    )


class MetricSpec(NamedTuple):
    """A metric of a functional model: a name, the zero of its (summable) state, how a batch updates the state
    and how a state (summed over clients) becomes the reported value."""

    name: str
    initial_state: Callable[[], list[tf.Tensor]]
    update: Callable[[list[tf.Tensor], Any, Any, Any, Any], list[tf.Tensor]]
    finalize: Callable[[list[tf.Tensor]], tf.Tensor]


def _built_in_metrics() -> list[MetricSpec]:
    zero = lambda: [tf.constant(0.0), tf.constant(0.0)]  # noqa: E731
    return [
        MetricSpec(
            "loss",
            zero,
            lambda s, y, p, loss, n: [
                s[0] + loss * tf.cast(n, tf.float32),
                s[1] + tf.cast(n, tf.float32),
            ],
            lambda s: tf.math.divide_no_nan(s[0], s[1]),
        ),
        MetricSpec(
            "num_examples",
            lambda: [tf.constant(0, tf.int64)],
            lambda s, y, p, loss, n: [s[0] + tf.cast(n, tf.int64)],
            lambda s: s[0],
        ),
        MetricSpec(
            "num_batches",
            lambda: [tf.constant(0, tf.int64)],
            lambda s, y, p, loss, n: [s[0] + 1],
            lambda s: s[0],
        ),
    ]


def keras_metric_spec(metric: Any) -> MetricSpec:
    """A Keras 3 metric as a MetricSpec, through its stateless API. Its state variables are sums (totals and
    counts), so summing them over clients and finalizing gives exactly the metric over all their examples."""
    if callable(metric) and not hasattr(metric, "stateless_update_state"):
        metric = metric()
    if not hasattr(metric, "stateless_update_state"):
        raise TypeError(f"Expected a Keras 3 metric (or a function returning one), got {metric!r}.")
    return MetricSpec(
        metric.name,
        lambda: [tf.convert_to_tensor(v) for v in metric.stateless_reset_state()],
        lambda s, y, p, loss, n: list(metric.stateless_update_state(list(s), y, p)),
        lambda s: metric.stateless_result(list(s)),
    )


class FunctionalModel:
    """A model given by pure functions of its weights.

    `predict_on_batch_fn(weights: ModelWeights, x, training) -> predictions`, `loss_fn(y_true, y_pred) ->
    scalar`; `metrics` are Keras 3 metrics (instances or constructors) or MetricSpecs; `loss`,
    `num_examples` and `num_batches` are always reported. Non-trainable weights are inputs only: training
    does not update them (batch-norm statistics stay at their initial values).
    """

    def __init__(
        self,
        initial_weights: ModelWeights | tuple[Sequence[Any], Sequence[Any]],
        predict_on_batch_fn: Callable[[ModelWeights, Any, bool], Any],
        loss_fn: Callable[[Any, Any], Any],
        input_spec: Any,
        metrics: Sequence[Any] = (),
    ):
        trainable, non_trainable = initial_weights
        self.initial_weights = ModelWeights(
            [np.asarray(w) for w in trainable], [np.asarray(w) for w in non_trainable]
        )
        self._predict = predict_on_batch_fn
        self._loss = loss_fn
        self.input_spec = input_spec
        specs = _built_in_metrics() + [
            m if isinstance(m, MetricSpec) else keras_metric_spec(m) for m in metrics
        ]
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Metric names must be unique; repeated: {duplicates}.")
        self.metric_specs = specs

    def predict_on_batch(self, weights: ModelWeights, x: Any, training: bool = True) -> Any:
        return self._predict(weights, x, training)

    def loss(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return self._loss(y_true, y_pred)

    def forward_pass(self, weights: ModelWeights, batch: Any, training: bool = True) -> BatchOutput:
        x, y = split_batch(batch)
        predictions = self._predict(weights, x, training)
        return BatchOutput(self._loss(y, predictions), predictions, tf.shape(y)[0])

    def initialize_metrics_state(self) -> collections.OrderedDict[str, list[tf.Tensor]]:
        return collections.OrderedDict((s.name, s.initial_state()) for s in self.metric_specs)

    def update_metrics_state(
        self, state: Any, y_true: Any, output: BatchOutput
    ) -> collections.OrderedDict[str, list[tf.Tensor]]:
        return collections.OrderedDict(
            (
                s.name,
                s.update(
                    state[s.name], y_true, output.predictions, output.loss, output.num_examples
                ),
            )
            for s in self.metric_specs
        )

    def finalize_metrics(self, state: Any) -> collections.OrderedDict[str, tf.Tensor]:
        return collections.OrderedDict(
            (s.name, s.finalize(state[s.name])) for s in self.metric_specs
        )


def functional_model_from_keras(
    keras_model: Any,
    loss_fn: Any,
    input_spec: Any,
    metrics_constructor: Callable[[], Sequence[Any]] | Sequence[Any] | None = None,
    loss_weights: Sequence[float] | None = None,
) -> FunctionalModel:
    """A FunctionalModel from an uncompiled Keras 3 model, through `keras_model.stateless_call`.

    `loss_fn` is a Keras loss (instance, function or name), or a list of them for a multi-output model,
    combined with `loss_weights`.
    """
    if getattr(keras_model, "compiled", False):
        raise ValueError(
            "The Keras model is compiled; fed takes the loss and metrics itself. Pass an uncompiled model with "
            "loss= and metrics= (or use from_compiled_keras_model(model, sample_batch))."
        )
    return keras_functional_model(
        keras_model, loss_fn, input_spec, metrics_constructor, loss_weights
    )


def keras_functional_model(
    keras_model: Any,
    loss_fn: Any,
    input_spec: Any,
    metrics_constructor: Callable[[], Sequence[Any]] | Sequence[Any] | None = None,
    loss_weights: Sequence[float] | None = None,
) -> FunctionalModel:
    """`functional_model_from_keras` without the check that the model is uncompiled."""
    import keras

    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            f"Expected a Keras 3 model (keras.Model), got {type(keras_model).__name__}."
        )
    losses = loss_fn if isinstance(loss_fn, (list, tuple)) else [loss_fn]
    losses = [keras.losses.get(fn) if isinstance(fn, str) else fn for fn in losses]
    weights = list(loss_weights) if loss_weights is not None else [1.0] * len(losses)
    if len(weights) != len(losses):
        raise ValueError(f"Got {len(losses)} losses but {len(weights)} loss weights.")

    def predict(model_weights: ModelWeights, x: Any, training: bool) -> Any:
        outputs, _ = keras_model.stateless_call(
            list(model_weights.trainable), list(model_weights.non_trainable), x, training=training
        )
        return outputs

    def loss(y_true: Any, y_pred: Any) -> tf.Tensor:
        if len(losses) == 1:
            return tf.reduce_mean(losses[0](y_true, y_pred))
        return tf.add_n(
            [w * tf.reduce_mean(fn(t, p)) for fn, w, t, p in zip(losses, weights, y_true, y_pred)]
        )

    metrics = (
        metrics_constructor() if callable(metrics_constructor) else list(metrics_constructor or [])
    )
    return FunctionalModel(ModelWeights.from_model(keras_model), predict, loss, input_spec, metrics)
