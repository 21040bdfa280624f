"""MeanFactory and UnweightedMeanFactory: means built from inner sum factories, so that the sums can be
replaced (by secure or differentially private ones) without changing the mean."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._factory import (
    UnweightedAggregationFactory,
    WeightedAggregationFactory,
    check_value_type,
    check_weights_non_negative,
    weight_numbers,
    with_client_check,
)
from fed_aggregators._sum import SumFactory, empty_at_server
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, FederatedType, TensorType, Type, to_type


def _check_sum_factory(factory: Any, role: str, owner: str) -> UnweightedAggregationFactory:
    if factory is None:
        return SumFactory()
    if not isinstance(factory, UnweightedAggregationFactory):
        raise TypeError(
            f"{owner}: {role} must be an UnweightedAggregationFactory, got {factory!r}."
        )
    return factory


def _is_plain_sum(factory: UnweightedAggregationFactory) -> bool:
    return type(factory) is SumFactory


def check_weights_in_graph(weights: tf.Tensor, owner: str) -> tf.Operation:
    """A run-time check that client weights (a scalar or a vector of them) are finite and not negative."""
    valid = weights >= 0  # False for NaN too
    if weights.dtype.is_floating:
        valid &= tf.math.is_finite(weights)
    message = tf.strings.format(
        f"{owner}: client weights must be finite non-negative numbers; got {{}}.", weights
    )
    return tf.debugging.Assert(tf.reduce_all(valid), [message])


def checked_weight_computation(weight_type: Type, owner: str) -> fc.Computation:
    """`(w -> w)`, which fails when the weight is negative or not finite (see `check_weights_in_graph`)."""

    @ftf.computation(weight_type)
    def checked_weight(weight):
        with tf.control_dependencies([check_weights_in_graph(weight, owner)]):
            return tf.identity(weight)

    return checked_weight


def _divide_computation(value_type: Type, denominator_type: Type, no_nan: bool) -> fc.Computation:
    @ftf.computation(value_type, denominator_type)
    def divide(total, denominator):
        def one(x):
            d = tf.cast(denominator, x.dtype)
            return tf.math.divide_no_nan(x, d) if no_nan else x / d

        return tf.nest.map_structure(one, total)

    return divide


class MeanFactory(WeightedAggregationFactory):
    """The weighted mean `sum(w_i * v_i) / sum(w_i)` of client values (floats) with scalar weights.

    `value_sum_factory` sums the weighted values and `weight_sum_factory` the weights (both SumFactory by
    default). Weights must be finite and non-negative: another weight is refused when the round runs
    (before anything runs, when `next` is called from Python with lists). A zero total weight gives NaN
    (as in TensorFlow Federated), whatever the sum factories; with `no_nan_division`, zeros instead.
    A call from Python with no clients is refused.
    """

    def __init__(
        self,
        value_sum_factory: UnweightedAggregationFactory | None = None,
        weight_sum_factory: UnweightedAggregationFactory | None = None,
        no_nan_division: bool = False,
    ):
        self._value_sum_factory = _check_sum_factory(
            value_sum_factory, "value_sum_factory", "MeanFactory"
        )
        self._weight_sum_factory = _check_sum_factory(
            weight_sum_factory, "weight_sum_factory", "MeanFactory"
        )
        if not isinstance(no_nan_division, bool | np.bool_):
            raise TypeError(
                f"MeanFactory: no_nan_division must be a bool, got {no_nan_division!r}."
            )
        self._no_nan_division = bool(no_nan_division)

    def create(self, value_type: Any, weight_type: Any) -> AggregationProcess:
        value_type = check_value_type(value_type, "MeanFactory", "f", "floating-point")
        weight_type = to_type(weight_type)
        if not (
            isinstance(weight_type, TensorType)
            and weight_type.rank == 0
            and weight_type.dtype.kind in "fiu"
        ):
            raise TypeError(
                f"MeanFactory.create: expected a numeric scalar weight type, got {weight_type}."
            )
        value_process = self._value_sum_factory.create(value_type)
        weight_process = self._weight_sum_factory.create(weight_type)
        fast = (
            _is_plain_sum(self._value_sum_factory)
            and _is_plain_sum(self._weight_sum_factory)
            and not self._no_nan_division
        )

        @fc.federated_computation
        def initialize():
            return fc.federated_zip(
                collections.OrderedDict(
                    value_sum_process=value_process.initialize(),
                    weight_sum_process=weight_process.initialize(),
                )
            )

        checked_weight = checked_weight_computation(weight_type, "MeanFactory")

        @ftf.computation(value_type, weight_type)
        def multiply(value, weight):
            with tf.control_dependencies([check_weights_in_graph(weight, "MeanFactory")]):
                return tf.nest.map_structure(lambda x: x * tf.cast(weight, x.dtype), value)

        divide = _divide_computation(value_type, weight_type, self._no_nan_division)

        @fc.federated_computation(
            initialize.type_signature.result,
            FederatedType(value_type, CLIENTS),
            FederatedType(weight_type, CLIENTS),
        )
        def next_fn(state, value, weight):
            if fast:
                # Plain sums are stateless and unmeasured: one weighted-mean reduction does the whole job.
                measurements = fc.federated_zip(
                    collections.OrderedDict(
                        mean_value=empty_at_server(), mean_weight=empty_at_server()
                    )
                )
                checked = fc.federated_map(checked_weight, weight)
                return MeasuredProcessOutput(state, fc.federated_mean(value, checked), measurements)
            weighted = fc.federated_map(multiply, fc.federated_zip((value, weight)))
            value_output = value_process.next(state.value_sum_process, weighted)
            weight_output = weight_process.next(state.weight_sum_process, weight)
            mean = fc.federated_map(
                divide, fc.federated_zip((value_output.result, weight_output.result))
            )
            new_state = fc.federated_zip(
                collections.OrderedDict(
                    value_sum_process=value_output.state, weight_sum_process=weight_output.state
                )
            )
            measurements = fc.federated_zip(
                collections.OrderedDict(
                    mean_value=value_output.measurements, mean_weight=weight_output.measurements
                )
            )
            return MeasuredProcessOutput(new_state, mean, measurements)

        def check(values: Any, weights: Any) -> None:
            if not values:
                raise ValueError("MeanFactory needs at least one client; there are none.")
            numbers = weight_numbers(weights)
            if numbers is not None:
                check_weights_non_negative("MeanFactory", numbers)

        return with_client_check(AggregationProcess(initialize, next_fn), check)

    def __repr__(self) -> str:
        return (
            f"MeanFactory(value_sum_factory={self._value_sum_factory!r}, "
            f"weight_sum_factory={self._weight_sum_factory!r}, no_nan_division={self._no_nan_division})"
        )


class UnweightedMeanFactory(UnweightedAggregationFactory):
    """The plain mean `sum(v_i) / n` of client values (floats): `value_sum_factory` sums the values and
    `count_sum_factory` the count of clients (both SumFactory by default). A call from Python with no
    clients is refused."""

    def __init__(
        self,
        value_sum_factory: UnweightedAggregationFactory | None = None,
        count_sum_factory: UnweightedAggregationFactory | None = None,
    ):
        self._value_sum_factory = _check_sum_factory(
            value_sum_factory, "value_sum_factory", "UnweightedMeanFactory"
        )
        self._count_sum_factory = _check_sum_factory(
            count_sum_factory, "count_sum_factory", "UnweightedMeanFactory"
        )

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = check_value_type(value_type, "UnweightedMeanFactory", "f", "floating-point")
        count_type = TensorType(tf.int32.as_numpy_dtype)
        value_process = self._value_sum_factory.create(value_type)
        count_process = self._count_sum_factory.create(count_type)
        fast = _is_plain_sum(self._value_sum_factory) and _is_plain_sum(self._count_sum_factory)

        @fc.federated_computation
        def initialize():
            return fc.federated_zip(
                collections.OrderedDict(
                    value_sum_process=value_process.initialize(),
                    count_sum_process=count_process.initialize(),
                )
            )

        @ftf.computation(value_type)
        def one(value):
            return tf.constant(1, tf.int32)

        divide = _divide_computation(value_type, count_type, no_nan=False)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            if fast:
                measurements = fc.federated_zip(
                    collections.OrderedDict(
                        mean_value=empty_at_server(), mean_count=empty_at_server()
                    )
                )
                return MeasuredProcessOutput(state, fc.federated_mean(value), measurements)
            value_output = value_process.next(state.value_sum_process, value)
            count_output = count_process.next(state.count_sum_process, fc.federated_map(one, value))
            mean = fc.federated_map(
                divide, fc.federated_zip((value_output.result, count_output.result))
            )
            new_state = fc.federated_zip(
                collections.OrderedDict(
                    value_sum_process=value_output.state, count_sum_process=count_output.state
                )
            )
            measurements = fc.federated_zip(
                collections.OrderedDict(
                    mean_value=value_output.measurements, mean_count=count_output.measurements
                )
            )
            return MeasuredProcessOutput(new_state, mean, measurements)

        def check(values: Any, weights: Any) -> None:
            if not values:
                raise ValueError("UnweightedMeanFactory needs at least one client; there are none.")

        return with_client_check(AggregationProcess(initialize, next_fn), check)

    def __repr__(self) -> str:
        return (
            f"UnweightedMeanFactory(value_sum_factory={self._value_sum_factory!r}, "
            f"count_sum_factory={self._count_sum_factory!r})"
        )
