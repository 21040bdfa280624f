"""Keras metrics as metric finalizers, and as the pure functions a functional model takes."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf


def _keras_metric(metric: Any, what: str) -> keras.metrics.Metric:
    """A fresh Keras metric from an instance (copied through its config) or a no-argument constructor."""
    if isinstance(metric, keras.metrics.Metric):
        try:
            return type(metric).from_config(metric.get_config())
        except TypeError as error:
            raise TypeError(
                f"{what}: the metric {type(metric).__name__} cannot be rebuilt from its get_config() "
                f"({error}); pass its constructor instead (a no-argument function returning it)."
            ) from error
    if callable(metric):
        built = metric()
        if isinstance(built, keras.metrics.Metric):
            return built
        raise TypeError(
            f"{what}: expected a Keras metric or a no-argument function returning one; the function "
            f"returned {type(built).__name__}."
        )
    raise TypeError(
        f"{what}: expected a Keras metric or a no-argument function returning one, got "
        f"{type(metric).__name__}."
    )


def _variable_types(metric: keras.metrics.Metric) -> str:
    return "[" + ", ".join(f"{v.dtype}{list(v.shape)}" for v in metric.variables) + "]"


def create_keras_metric_finalizer(metric: Any) -> Callable[[list[Any]], Any]:
    """The finalizer of a Keras metric (an instance, or a no-argument function returning one): a function
    from the values of the metric's variables (a list of tensors, summed over clients) to its result.

    Raises TypeError for anything but a Keras metric or its constructor; the finalizer raises ValueError
    for values that are not one tensor per variable, of the variable's shape and dtype."""
    keras_metric = _keras_metric(metric, "create_keras_metric_finalizer")

    def finalizer(unfinalized_metric_values: list[Any]) -> Any:
        if not isinstance(unfinalized_metric_values, (list, tuple)):
            raise TypeError(
                f"The finalizer of {keras_metric.name} takes a list of tensors (the values of the "
                f"metric's variables, {_variable_types(keras_metric)}), got "
                f"{type(unfinalized_metric_values).__name__}."
            )
        values = [tf.convert_to_tensor(v) for v in unfinalized_metric_values]
        given = "[" + ", ".join(f"{v.dtype.name}{v.shape.as_list()}" for v in values) + "]"
        fits = len(values) == len(keras_metric.variables) and all(
            v.shape == tuple(var.shape) and v.dtype.name == var.dtype
            for v, var in zip(values, keras_metric.variables)
        )
        if not fits:
            raise ValueError(
                f"The finalizer of {keras_metric.name} takes the values of its variables, "
                f"{_variable_types(keras_metric)}; got {given}."
            )
        return keras_metric.stateless_result(values)

    return finalizer


def create_functional_metric_fns(
    metrics_constructor: Any,
) -> tuple[Callable[[], Any], Callable[..., Any], Callable[[Any], Any]]:
    """Keras metrics as three pure functions `(initialize, update, finalize)`, for
    `fed.learning.models.FunctionalModel(..., metrics_fns=...)`.

    `metrics_constructor` is a no-argument function returning a Keras metric (such as the metric's class),
    an OrderedDict of names to such functions, or a no-argument function returning an OrderedDict of names
    to Keras metrics. `initialize()` returns the metrics' states (tuples of tensors: one for a single
    metric, an OrderedDict of them by name otherwise), `update(state, labels, batch_output,
    sample_weight=None)` adds a batch (`batch_output.predictions`) and `finalize(state)` returns the
    values. A FunctionalModel takes the OrderedDict form. The states are sums over examples, so summing
    them over clients and finalizing gives the metric over all the clients' examples.
    """
    if isinstance(metrics_constructor, Mapping):
        constructors = metrics_constructor
        metrics_constructor = lambda: collections.OrderedDict(  # noqa: E731
            (name, make()) for name, make in constructors.items()
        )
    if not callable(metrics_constructor):
        raise TypeError(
            "metrics_constructor must be a no-argument function returning a Keras metric or an "
            f"OrderedDict of them, or an OrderedDict of such functions; got {metrics_constructor!r}."
        )
    built = metrics_constructor()
    if isinstance(built, Mapping):
        bad_names = [name for name in built if not isinstance(name, str)]
        if bad_names:
            raise TypeError(
                f"metrics_constructor's metrics must be keyed by str names, got the keys {bad_names}."
            )
        metrics: Any = collections.OrderedDict(built)
    else:
        metrics = built
    for metric in tf.nest.flatten(metrics):
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                "metrics_constructor must return a Keras metric or an OrderedDict of names to Keras "
                f"metrics; it returned {type(metric).__name__} {metric!r}."
            )

    def each(fn: Callable[..., Any], *states: Any) -> Any:
        if isinstance(metrics, Mapping):
            return collections.OrderedDict(
                (name, fn(metric, *(s[name] for s in states))) for name, metric in metrics.items()
            )
        return fn(metrics, *states)

    def initialize() -> Any:
        return each(lambda m: tuple(tf.convert_to_tensor(v) for v in m.stateless_reset_state()))

    def update(state: Any, labels: Any, batch_output: Any, sample_weight: Any = None) -> Any:
        predictions = getattr(batch_output, "predictions", batch_output)
        return each(
            lambda m, s: tuple(
                m.stateless_update_state(list(s), labels, predictions, sample_weight=sample_weight)
            ),
            state,
        )

    def finalize(state: Any) -> Any:
        return each(lambda m, s: m.stateless_result(list(s)), state)

    return initialize, update, finalize
