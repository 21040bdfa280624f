"""Models as functions of their weights, which is how fed trains them fastest: every function here runs inside
traced, serialized TensorFlow computations, with weights passed in and out as tensors (no variables; a Keras
model runs in a Keras `StatelessScope`)."""

from __future__ import annotations

import collections
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf


def _is_keras_model(model: Any) -> bool:
    import keras

    return isinstance(model, keras.Model)


def _to_array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


class ModelWeights(NamedTuple):
    """The weights of a model: its trainable and non-trainable tensors (or arrays), in model order.

    A model's weights do not include its local variables (metrics) nor, for a Keras 3 model, the state of
    its random-seed generators (Dropout, GRU dropout): those are not weights in Keras either
    (`keras_model.weights` leaves them out).
    """

    trainable: Any
    non_trainable: Any

    @classmethod
    def from_model(cls, model: Any) -> ModelWeights:
        """The weights of a Keras model (its `trainable_weights` and `non_trainable_weights`) or of a
        VariableModel (its `trainable_variables` and `non_trainable_variables`), in lists.

        A Keras model's weights come as numpy arrays, or as tensors read from its variables inside a
        TensorFlow function. A VariableModel's come as its variables themselves, which can be assigned
        (`tf.nest.map_structure(lambda v, t: v.assign(t), weights, new_weights)`), as in TFF.
        """
        if _is_keras_model(model):
            read = tf.convert_to_tensor if tf.inside_function() else _to_array
            return cls(
                [read(v) for v in model.trainable_weights],
                [read(v) for v in model.non_trainable_weights],
            )
        if hasattr(model, "trainable_variables") and hasattr(model, "non_trainable_variables"):
            return cls(list(model.trainable_variables), list(model.non_trainable_variables))
        raise TypeError(
            f"ModelWeights.from_model needs a Keras model or a VariableModel, got {type(model).__name__}."
        )

    def assign_weights_to(self, model: Any) -> None:
        """Copies these weights into a Keras model's `trainable_weights` and `non_trainable_weights`, or into a
        VariableModel's `trainable_variables` and `non_trainable_variables`."""
        if _is_keras_model(model):
            targets = (list(model.trainable_weights), list(model.non_trainable_weights))
        elif hasattr(model, "trainable_variables") and hasattr(model, "non_trainable_variables"):
            targets = (list(model.trainable_variables), list(model.non_trainable_variables))
        else:
            raise TypeError(
                f"assign_weights_to needs a Keras model or a VariableModel, got {type(model).__name__}."
            )
        sources = (tf.nest.flatten(self.trainable), tf.nest.flatten(self.non_trainable))
        fits = all(
            len(target) == len(source)
            and all(_shape_of(v) == _shape_of(s) for v, s in zip(target, source))
            for target, source in zip(targets, sources)
        )
        if not fits:
            raise ValueError(
                f"These weights do not fit the model: the model has {weights_signature(*targets)}, "
                f"the weights are {weights_signature(*sources)}."
            )
        for target, source in zip(targets, sources):
            for variable, value in zip(target, source):
                variable.assign(value)


def _shape_of(value: Any) -> tuple[int | None, ...]:
    """The shape of a tensor, variable or array (or of what numpy makes of a Python value)."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else np.shape(value)


def weights_signature(trainable: Sequence[Any], non_trainable: Sequence[Any]) -> str:
    """Weights in compact notation: `<trainable=<float32[4,3],float32[3]>,non_trainable=<>>`."""

    def leaf(value: Any) -> str:
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            dtype = np.asarray(value).dtype
        name = tf.as_dtype(dtype).name
        shape = ",".join("?" if d is None else str(d) for d in _shape_of(value))
        return f"{name}[{shape}]" if shape else name

    def part(values: Sequence[Any]) -> str:
        return "<" + ",".join(leaf(v) for v in values) + ">"

    return f"<trainable={part(trainable)},non_trainable={part(non_trainable)}>"


class BatchOutput(NamedTuple):
    """What a forward pass over one batch gives: the loss, the predictions and the number of examples."""

    loss: Any
    predictions: Any
    num_examples: Any = None


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
    if isinstance(batch, Mapping):
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


def num_examples_of(output: BatchOutput) -> tf.Tensor:
    """The batch's number of examples: `output.num_examples`, or the first dimension of the predictions."""
    if output.num_examples is not None:
        return tf.cast(output.num_examples, tf.int64)
    return tf.shape(tf.nest.flatten(output.predictions)[0], out_type=tf.int64)[0]


class MetricSpec(NamedTuple):
    """A metric of a functional model: a name, the zero of its (summable) state, how a batch updates the state
    (`update(state, labels, predictions, loss, num_examples)`) and how a state summed over clients becomes
    the reported value."""

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
                s[0] + tf.cast(loss, tf.float32) * tf.cast(n, tf.float32),
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


BUILT_IN_METRIC_NAMES = ("loss", "num_examples", "num_batches")


def keras_metric_spec(metric: Any, name: str | None = None) -> MetricSpec:
    """A Keras 3 metric (or a no-argument function returning one) as a MetricSpec named `name` (default: the
    metric's own name), through its stateless API. Its state variables are sums (totals and counts), so
    summing them over clients and finalizing gives exactly the metric over all their examples."""
    if isinstance(metric, type) or (
        callable(metric) and not hasattr(metric, "stateless_update_state")
    ):
        if _takes_arguments(metric):
            raise TypeError(
                f"Expected a Keras 3 metric (or a no-argument function returning one), got the function "
                f"{getattr(metric, '__name__', metric)!r}, which takes arguments: wrap a metric function "
                "of (y_true, y_pred) as keras.metrics.MeanMetricWrapper(fn, name=...)."
            )
        metric = metric()
    if not hasattr(metric, "stateless_update_state"):
        raise TypeError(
            f"Expected a Keras 3 metric (or a no-argument function returning one), got {metric!r}."
        )
    return MetricSpec(
        metric.name if name is None else name,
        lambda: [tf.convert_to_tensor(v) for v in metric.stateless_reset_state()],
        lambda s, y, p, loss, n: list(metric.stateless_update_state(list(s), y, p)),
        lambda s: metric.stateless_result(list(s)),
    )


def _takes_arguments(fn: Any) -> bool:
    """Whether calling `fn()` would fail for want of arguments (a metric function, not a constructor)."""
    if isinstance(fn, type):
        return False
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return any(
        p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in signature.parameters.values()
    )


def metric_specs(metrics: Any) -> list[MetricSpec]:
    """MetricSpecs from what TFF and fed accept as metrics: a list of Keras metrics (instances or no-argument
    constructors) or MetricSpecs; a mapping of names to them (the names are the reported ones); or a
    no-argument function returning a metric, a list or a mapping of metrics."""
    if metrics is None:
        return []
    if hasattr(metrics, "stateless_update_state") and not isinstance(metrics, type):
        kind = type(metrics).__name__
        raise TypeError(
            f"Expected a list of Keras metrics (or a function returning them), got a single {kind} "
            f"metric: give it in a list, [{kind}(...)]."
        )
    if isinstance(metrics, MetricSpec):
        return [metrics]
    if isinstance(metrics, Mapping):
        specs = []
        for name, metric in metrics.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"A mapping of metrics must be keyed by str names, got the key {name!r}."
                )
            specs.append(keras_metric_spec(metric, name))
        return specs
    if isinstance(metrics, Sequence) and not isinstance(metrics, str):
        return [m if isinstance(m, MetricSpec) else keras_metric_spec(m) for m in metrics]
    if callable(metrics):
        made = metrics()
        if hasattr(made, "stateless_update_state"):
            return [keras_metric_spec(made)]
        if isinstance(made, (Mapping, Sequence)) and not isinstance(made, str):
            return metric_specs(made)
        raise TypeError(
            f"The metrics constructor returned {made!r}: expected a Keras metric, or a list or mapping of them."
        )
    raise TypeError(
        "Expected metrics as a list of Keras metrics or constructors, a mapping of names to them, or a "
        f"no-argument function returning them; got {metrics!r}."
    )


def _check_metric_names(names: list[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Metric names must be unique; repeated: {duplicates}.")


class FunctionalModel:
    """A model given by pure functions of its weights (TFF's `tff.learning.models.FunctionalModel`).

    Args:
        initial_weights: `(trainable, non_trainable)`, each a sequence of arrays (tuples, as TFF gives them,
            or lists); a ModelWeights is such a pair.
        predict_on_batch_fn: `(model_weights, x, training) -> predictions`, where `model_weights` is a
            `(trainable, non_trainable)` pair shaped as `initial_weights`.
        loss_fn: `(output, label, sample_weight=None) -> scalar loss`.
        input_spec: the spec of one batch, `(x, y)` or `{'x': ..., 'y': ...}` of `tf.TensorSpec`s.
        metrics: fed's way to give metrics: Keras 3 metrics (instances or constructors), MetricSpecs, or a
            mapping of names to Keras metrics.
        metrics_fns: TFF's way: `(initialize, update, finalize)`, where `initialize()` returns a mapping of
            metric names to states, `update(state, labels, batch_output, sample_weight=None)` returns the
            new states and `finalize(state)` the metric values by name. States are summed over clients.

    Besides the given metrics, `loss` (the example-weighted mean), `num_examples` and `num_batches` are
    reported, except where a given metric has that name or `built_in_metrics` is False. Non-trainable
    weights are inputs only, except in a model made from Keras, whose batch-norm statistics change in
    training within a client's pass.
    """

    def __init__(
        self,
        initial_weights: Any,
        predict_on_batch_fn: Callable[[Any, Any, bool], Any],
        loss_fn: Callable[..., Any],
        input_spec: Any,
        metrics: Any = (),
        *,
        metrics_fns: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]
        | None = None,
        built_in_metrics: bool = True,
    ):
        self._initial_weights: ModelWeights | None = _as_model_weights(
            initial_weights, "initial_weights"
        )
        self._read_initial_weights: Callable[[], Any] | None = None
        if not callable(predict_on_batch_fn):
            raise TypeError(f"predict_on_batch_fn must be callable, got {predict_on_batch_fn!r}.")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {loss_fn!r}.")
        self._predict = predict_on_batch_fn
        self._loss = loss_fn
        self._input_spec = input_spec
        self._keras_call: KerasCall | None = None

        user_specs = metric_specs(metrics)
        self._custom = None
        custom_names: list[str] = []
        if metrics_fns is not None:
            if not (isinstance(metrics_fns, Sequence) and len(metrics_fns) == 3):
                raise TypeError(
                    "metrics_fns must be a triple (initialize, update, finalize), got "
                    f"{metrics_fns!r}."
                )
            initial = metrics_fns[0]()
            if not isinstance(initial, Mapping):
                raise TypeError(
                    "metrics_fns' initialize() must return a mapping of metric names to states, got "
                    f"{type(initial).__name__}."
                )
            custom_names = list(initial)
            self._custom = tuple(metrics_fns)
        user_names = [s.name for s in user_specs] + custom_names
        _check_metric_names(user_names)
        # TFF's order, as its Keras models report them: the given metrics, then the built-in ones.
        self._user_specs = user_specs
        self._built_in_specs = (
            [s for s in _built_in_metrics() if s.name not in user_names] if built_in_metrics else []
        )
        self._custom_names = custom_names

    @property
    def initial_weights(self) -> ModelWeights:
        """The initial `(trainable, non_trainable)` weights, as numpy arrays."""
        if self._initial_weights is None:
            assert self._read_initial_weights is not None
            self._initial_weights = _as_model_weights(
                self._read_initial_weights(), "initial_weights"
            )
        return self._initial_weights

    @property
    def input_spec(self) -> Any:
        return self._input_spec

    @property
    def metric_specs(self) -> list[MetricSpec]:
        """The metrics given as MetricSpecs (the Keras ones, then fed's built-in ones), in report order."""
        return self._user_specs + self._built_in_specs

    @property
    def metric_names(self) -> list[str]:
        """The reported metrics' names: the given metrics, those of `metrics_fns`, then `loss`,
        `num_examples` and `num_batches` (unless a given metric has that name)."""
        return (
            [s.name for s in self._user_specs]
            + self._custom_names
            + [s.name for s in self._built_in_specs]
        )

    def _in_report_order(self, values: collections.OrderedDict[str, Any]) -> Any:
        built_in = [s.name for s in self._built_in_specs]
        first = [k for k in values if k not in built_in]
        return collections.OrderedDict((k, values[k]) for k in first + built_in)

    def predict_on_batch(self, model_weights: Any, x: Any, training: bool = True) -> Any:
        """The predictions for inputs `x` with `model_weights`, a `(trainable, non_trainable)` pair."""
        return self._predict(model_weights, x, training)

    def loss(self, output: Any, label: Any, sample_weight: Any = None) -> tf.Tensor:
        """The loss of predictions `output` for labels `label`."""
        if sample_weight is None:
            return self._loss(output, label)
        return self._loss(output, label, sample_weight)

    def forward_pass(
        self, model_weights: Any, batch_input: Any, training: bool = True
    ) -> BatchOutput:
        """Predictions and loss for one batch (`(x, y)` or `{'x': ..., 'y': ...}`); for a model built from
        Keras, the loss includes the model's regularization losses, as Keras training does."""
        if self._keras_call is None:
            x, y = split_batch(batch_input)
            return self._output(self._predict(model_weights, x, training), None, y)
        output, _, _ = self.forward_with_state(
            model_weights, self.initial_local_state(), batch_input, training
        )
        return output

    def initial_local_state(self) -> tuple[tf.Tensor, ...]:
        """The state a client's pass over its data starts from, beside the weights: for a Keras model, its
        random-seed state and the state of its stateful RNN layers; empty otherwise. Call it inside a
        TensorFlow computation: an unseeded seed state is drawn afresh on each call."""
        return () if self._keras_call is None else self._keras_call.initial_local_state()

    def forward_with_state(
        self, model_weights: Any, local_state: Any, batch_input: Any, training: bool = True
    ) -> tuple[BatchOutput, Any, Any]:
        """`forward_pass` that also gives the non-trainable weights and local state after the batch (a Keras
        model's batch-norm statistics, seeds and RNN states change as Keras changes them), so that a
        client's pass can carry them from batch to batch."""
        x, y = split_batch(batch_input)
        if self._keras_call is None:
            output = self._output(self._predict(model_weights, x, training), None, y)
            return output, model_weights[1], local_state
        trainable, non_trainable = model_weights
        predictions, extra_loss, non_trainable, local_state = self._keras_call(
            trainable, non_trainable, local_state, x, training
        )
        return self._output(predictions, extra_loss, y), non_trainable, local_state

    def _output(self, predictions: Any, extra_loss: Any, labels: Any) -> BatchOutput:
        loss = self.loss(output=predictions, label=labels)
        if extra_loss is not None:
            loss = loss + tf.cast(extra_loss, loss.dtype)
        output = BatchOutput(loss, predictions, None)
        return output._replace(num_examples=num_examples_of(output))

    def initialize_metrics_state(self) -> collections.OrderedDict[str, Any]:
        state = collections.OrderedDict((s.name, s.initial_state()) for s in self.metric_specs)
        if self._custom is not None:
            state.update(self._custom[0]())
        return self._in_report_order(state)

    def update_metrics_state(
        self, state: Any, labels: Any, batch_output: BatchOutput, sample_weight: Any = None
    ) -> collections.OrderedDict[str, Any]:
        num_examples = num_examples_of(batch_output)
        new_state = collections.OrderedDict(
            (
                s.name,
                s.update(
                    state[s.name], labels, batch_output.predictions, batch_output.loss, num_examples
                ),
            )
            for s in self.metric_specs
        )
        if self._custom is not None:
            custom = collections.OrderedDict((k, state[k]) for k in self._custom_names)
            if sample_weight is None:
                updated = self._custom[1](custom, labels, batch_output)
            else:
                updated = self._custom[1](custom, labels, batch_output, sample_weight)
            new_state.update((k, updated[k]) for k in self._custom_names)
        return self._in_report_order(new_state)

    def finalize_metrics(self, state: Any) -> collections.OrderedDict[str, Any]:
        values = collections.OrderedDict(
            (s.name, s.finalize(state[s.name])) for s in self.metric_specs
        )
        if self._custom is not None:
            custom = collections.OrderedDict((k, state[k]) for k in self._custom_names)
            values.update(self._custom[2](custom))
        return self._in_report_order(values)


def _as_model_weights(weights: Any, what: str) -> ModelWeights:
    """A `(trainable, non_trainable)` pair as a ModelWeights of numpy arrays, each part keeping its container."""
    if not (isinstance(weights, Sequence) and len(weights) == 2):
        raise TypeError(
            f"{what} must be a pair (trainable, non_trainable) of sequences of arrays, got {weights!r}."
        )
    trainable, non_trainable = weights
    for part, name in ((trainable, "trainable"), (non_trainable, "non_trainable")):
        if not (isinstance(part, (Sequence, Mapping)) and not isinstance(part, str)):
            raise TypeError(
                f"{what}: the {name} weights must be a sequence of arrays, got {part!r}."
            )
    return ModelWeights(
        tf.nest.map_structure(_to_array, trainable), tf.nest.map_structure(_to_array, non_trainable)
    )


class KerasCall:
    """Calls a Keras 3 model as a function of its weights and local state, inside a Keras `StatelessScope`.

    Keras 3 keeps more state in variables than the model's weights: the seed state of random layers
    (Dropout, dropout in RNNs) and the state of stateful RNN layers. Here that is the local state, which
    a client's pass starts afresh (`initial_local_state`) and carries from batch to batch, as a model
    built anew for each client would (TFF's semantics): an unseeded layer draws a new random seed (a seeded
    one starts from its seed), a stateful RNN starts from its zero state.
    """

    def __init__(self, keras_model: Any):
        self.model = keras_model
        self.trainable = list(keras_model.trainable_weights)
        self.non_trainable = list(keras_model.non_trainable_weights)
        weight_ids = {id(v) for v in self.trainable + self.non_trainable}
        generators = {}
        for layer in _layers(keras_model):
            for generator in getattr(layer, "_seed_generators", None) or []:
                generators[id(generator.state)] = generator
        self._seed_states = []
        for v in keras_model.non_trainable_variables:
            if id(v) in weight_ids:
                continue
            generator = generators.get(id(v))
            seed = generator.get_config().get("seed") if generator is not None else None
            self._seed_states.append((v, seed))
        self._rnn_states = [
            state
            for layer in _layers(keras_model)
            if getattr(layer, "stateful", False) and getattr(layer, "states", None) is not None
            for state in tf.nest.flatten(layer.states)
        ]

    @property
    def has_state(self) -> bool:
        """Whether a call changes more than the outputs: non-trainable weights or stateful layers."""
        return bool(self.non_trainable or self._rnn_states)

    def initial_local_state(self) -> tuple[tf.Tensor, ...]:
        seeds = [_fresh_seed_state(variable, seed) for variable, seed in self._seed_states]
        zeros = [tf.zeros(state.shape, state.dtype) for state in self._rnn_states]
        return tuple(seeds + zeros)

    def __call__(
        self,
        trainable: Sequence[Any],
        non_trainable: Sequence[Any],
        local_state: Sequence[Any],
        x: Any,
        training: bool,
    ) -> tuple[Any, Any, tuple[Any, ...], tuple[Any, ...]]:
        """`(outputs, regularization loss or None, non-trainable weights after, local state after)`."""
        import keras

        trainable, non_trainable = list(trainable), list(non_trainable)
        if len(trainable) != len(self.trainable) or len(non_trainable) != len(self.non_trainable):
            raise ValueError(
                f"The weights do not fit the Keras model: it has "
                f"{weights_signature(self.trainable, self.non_trainable)}, the weights are "
                f"{weights_signature(trainable, non_trainable)}."
            )
        local_variables = [v for v, _ in self._seed_states] + self._rnn_states
        mapping = list(
            zip(
                self.trainable + self.non_trainable + local_variables,
                trainable + non_trainable + list(local_state),
                strict=True,
            )
        )
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = self.model(x, training=training)
            losses = list(self.model.losses)

        def after(variables: list[Any], before: list[Any]) -> tuple[Any, ...]:
            values = (scope.get_current_value(v) for v in variables)
            return tuple(
                b if v is None else tf.cast(v, tf.as_dtype(b.dtype)) for v, b in zip(values, before)
            )

        regularization = tf.add_n([tf.cast(t, tf.float32) for t in losses]) if losses else None
        return (
            outputs,
            regularization,
            after(self.non_trainable, non_trainable),
            after(local_variables, list(local_state)),
        )


def _layers(keras_model: Any) -> list[Any]:
    flatten = getattr(keras_model, "_flatten_layers", None)
    if callable(flatten):
        return list(flatten(include_self=True, recursive=True))
    return [keras_model, *getattr(keras_model, "layers", [])]


def _fresh_seed_state(variable: Any, seed: int | None) -> tf.Tensor:
    dtype = tf.as_dtype(variable.dtype)
    if seed is not None:
        return tf.constant([seed, 0], dtype)
    drawn = tf.random.uniform([], 1, 2**31 - 1, dtype=tf.int64)
    return tf.cast(tf.stack([drawn, tf.constant(0, tf.int64)]), dtype)


def keras_loss(loss_fn: Any, loss_weights: Sequence[float] | None) -> Callable[..., tf.Tensor]:
    """`(output, label, sample_weight=None) -> loss` from a Keras loss (instance, function or name) or a list
    of them, one per model output, combined with `loss_weights`."""

    losses = list(loss_fn) if isinstance(loss_fn, (list, tuple)) else [loss_fn]
    losses = [_keras_loss_by_name(fn) if isinstance(fn, str) else fn for fn in losses]
    for fn in losses:
        if not callable(fn):
            raise TypeError(
                "loss must be a Keras loss (an instance such as keras.losses.MeanSquaredError(), a "
                "function of (y_true, y_pred), or a name such as 'mse'), or a list of them, one per "
                f"model output; got {fn!r}."
            )
    if loss_weights is not None and not isinstance(loss_fn, (list, tuple)):
        raise ValueError("loss_weights can only be given with a list of losses.")
    weights = list(loss_weights) if loss_weights is not None else [1.0] * len(losses)
    if len(weights) != len(losses):
        raise ValueError(f"Got {len(losses)} losses but {len(weights)} loss weights.")

    def loss(output: Any, label: Any, sample_weight: Any = None) -> tf.Tensor:
        # Keras loss functions (unlike Loss objects) take no sample_weight.
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        if len(losses) == 1:
            _check_label_shape(losses[0], label, output)
            return tf.reduce_mean(losses[0](label, output, **extra))
        for fn, t, p in zip(losses, label, output):
            _check_label_shape(fn, t, p)
        return tf.add_n(
            [
                w * tf.reduce_mean(fn(t, p, **extra))
                for fn, w, t, p in zip(losses, weights, label, output)
            ]
        )

    return loss


def _keras_loss_by_name(name: str) -> Any:
    import keras

    try:
        return keras.losses.get(name)
    except ValueError:
        raise ValueError(
            f"Unknown Keras loss name {name!r}: give a name keras.losses.get knows (such as 'mse' or "
            "'sparse_categorical_crossentropy'), or a loss instance."
        ) from None


def _is_keras_loss(fn: Any) -> bool:
    """Keras's own losses (Loss objects and the functions of keras.losses) align the ranks of labels and
    predictions that differ by a trailing dimension of 1, as Keras training does."""
    import keras

    return isinstance(fn, keras.losses.Loss) or (getattr(fn, "__module__", "") or "").startswith(
        "keras."
    )


def _shape_text(t: Any) -> str:
    shape = tf.TensorShape(getattr(t, "shape", None))
    if shape.rank is None:
        return f"{tf.as_dtype(t.dtype).name}[...]"
    dims = ",".join("?" if d is None else str(d) for d in shape.as_list())
    return f"{tf.as_dtype(t.dtype).name}[{dims}]"


def _check_label_shape(fn: Any, label: Any, prediction: Any) -> None:
    """Refuses, while the training step is traced, labels and predictions whose shapes differ only by a
    trailing dimension of 1 when the loss is not one of Keras's: an elementwise loss such as
    `tf.square(y_true - y_pred)` would broadcast them against each other (labels [N,1] and predictions
    [N] make an [N,N] difference) and train on a wrong loss without any error."""
    if _is_keras_loss(fn) or not (hasattr(label, "shape") and hasattr(prediction, "shape")):
        return
    a, b = tf.TensorShape(label.shape), tf.TensorShape(prediction.shape)
    if a.rank is None or b.rank is None or abs(a.rank - b.rank) != 1:
        return
    longer, shorter = (a, b) if a.rank > b.rank else (b, a)
    if longer[-1] == 1 and longer[:-1].is_compatible_with(shorter):
        name = getattr(fn, "__name__", type(fn).__name__)
        raise ValueError(
            f"The labels are {_shape_text(label)} and the model's predictions {_shape_text(prediction)}: "
            f"the loss {name} would broadcast them against each other instead of comparing them "
            "example by example. Give labels of the predictions' shape (reshape them in the dataset), "
            "or use a Keras loss, which aligns them as Keras training does."
        )


def _check_input_spec(keras_model: Any, input_spec: Any) -> None:
    """Checks that `input_spec` holds type specs and that its `x` fits the Keras model's inputs (their
    number and shapes, where the model knows them)."""
    for leaf in tf.nest.flatten(input_spec):
        if not isinstance(leaf, tf.TypeSpec):
            raise TypeError(
                "input_spec must hold tf.TensorSpecs (a dataset's element_spec is one), got "
                f"{type(leaf).__name__} {leaf!r}."
            )
    try:
        inputs = list(keras_model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model that has not been called
        return
    if not inputs:
        return
    x_spec = split_batch(input_spec)[0]
    specs = tf.nest.flatten(x_spec)
    expected = "<" + ",".join(_shape_text(t) for t in inputs) + ">"
    given = "<" + ",".join(_shape_text(t) for t in specs) + ">"
    if isinstance(x_spec, Mapping):
        by_name = {getattr(t, "name", None): t for t in inputs}
        if set(x_spec) != set(by_name):
            raise ValueError(
                f"input_spec's x has the inputs {sorted(x_spec)}, but the Keras model takes "
                f"{sorted(n for n in by_name if n is not None)}."
            )
        pairs = [(by_name[name], x_spec[name]) for name in x_spec]
    elif len(specs) != len(inputs):
        raise ValueError(
            f"input_spec's x does not fit the Keras model: the model takes {len(inputs)} input(s), "
            f"{expected}; input_spec gives {len(specs)}, {given}."
        )
    else:
        pairs = list(zip(inputs, specs))
    for model_input, spec in pairs:
        want, got = tf.TensorShape(model_input.shape), tf.TensorShape(getattr(spec, "shape", None))
        if want.rank is None or got.rank is None:
            continue
        if want.rank != got.rank or not want[1:].is_compatible_with(got[1:]):
            raise ValueError(
                f"input_spec's x does not fit the Keras model: the model takes {expected} (the first "
                f"dimension is the batch), input_spec gives {given}."
            )


def functional_model_from_keras(
    keras_model: Any,
    loss_fn: Any,
    input_spec: Any,
    metrics_constructor: Any = None,
    loss_weights: Sequence[float] | None = None,
) -> FunctionalModel:
    """A FunctionalModel from a Keras 3 model (or a no-argument function building one).

    `loss_fn` is a Keras loss (instance, function or name), or a list of them for a multi-output model,
    combined with `loss_weights`. `metrics_constructor` takes what TFF takes: a no-argument function returning
    a Keras metric (such as the metric class), an OrderedDict of names to metric constructors (the names are
    the reported ones), or a function returning such a mapping; fed also takes a list of metrics. A user
    metric named like a built-in one (`loss`, `num_examples`, `num_batches`) replaces it. As in TFF, a
    model given a `metrics_constructor` reports exactly its metrics; without one, fed reports `loss`,
    `num_examples` and `num_batches`.

    The initial weights are tuples, as in TFF. A compiled model is accepted: its optimizer, loss and
    metrics are ignored (with a warning) in favour of the arguments. Random layers draw fresh seeds on
    every call unless seeded; a stateful RNN layer starts from its zero state on every call.
    """
    import keras

    if not isinstance(keras_model, keras.Model) and callable(keras_model):
        keras_model = keras_model()
    return keras_functional_model(
        keras_model,
        loss_fn,
        input_spec,
        metrics_constructor,
        loss_weights,
        container=tuple,
        built_in_metrics=metrics_constructor is None,
    )


def warn_if_compiled(keras_model: Any) -> None:
    if getattr(keras_model, "compiled", False):
        warnings.warn(
            "The Keras model is compiled (keras.models.clone_model keeps the compile state): its optimizer, "
            "loss and metrics are ignored; fed uses the loss and metrics given here.",
            UserWarning,
            stacklevel=3,
        )


def keras_functional_model(
    keras_model: Any,
    loss_fn: Any,
    input_spec: Any,
    metrics: Any = None,
    loss_weights: Sequence[float] | None = None,
    container: type = list,
    check_compiled: bool = True,
    built_in_metrics: bool = True,
) -> FunctionalModel:
    """The FunctionalModel of a Keras 3 model, through `KerasCall`, with its weights in `container`s."""
    import keras

    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            f"Expected a Keras 3 model (keras.Model), got {type(keras_model).__name__}."
        )
    if loss_fn is None:
        raise TypeError(
            "loss is required: a Keras loss (such as keras.losses.MeanSquaredError()), a function of "
            "(y_true, y_pred) or a loss's name; or a list of them, one per model output. Got None."
        )
    _check_input_spec(keras_model, input_spec)
    if check_compiled:
        warn_if_compiled(keras_model)
    call = KerasCall(keras_model)

    def predict(model_weights: Any, x: Any, training: bool = True) -> Any:
        trainable, non_trainable = model_weights
        return call(trainable, non_trainable, call.initial_local_state(), x, training)[0]

    def read_initial_weights() -> ModelWeights:
        weights = ModelWeights.from_model(keras_model)
        return ModelWeights(container(weights.trainable), container(weights.non_trainable))

    # Inside a TensorFlow function (a model function called in a computation) the weights are symbolic:
    # they are read only if asked for, which the algorithms do not do there.
    lazy = tf.inside_function()
    model = FunctionalModel(
        ((), ()) if lazy else read_initial_weights(),
        predict,
        keras_loss(loss_fn, loss_weights),
        input_spec,
        metric_specs(metrics),
        built_in_metrics=built_in_metrics,
    )
    if lazy:
        model._initial_weights, model._read_initial_weights = None, read_initial_weights
    model._keras_call = call
    return model
