"""clipping_factory and zeroing_factory: bound the clients' values before an inner aggregation.

Clipping projects each client's value onto an L2 ball; zeroing replaces a value whose norm is too
large by zeros (its weight, in a weighted aggregation, is kept, as TensorFlow Federated does). The norm
is fixed or follows an `EstimationProcess` over the clients' norms (say, a quantile of them, from
`PrivateQuantileEstimationProcess`).
"""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._factory import (
    AggregationFactory,
    UnweightedAggregationFactory,
    WeightedAggregationFactory,
    check_scalar_estimation,
    check_value_type,
)
from fed_aggregators._sum import SumFactory
from fed_core.templates import AggregationProcess, EstimationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, TensorType

NORM_DTYPE = np.float32
COUNT_DTYPE = np.int32


def constant_estimate(value: float) -> EstimationProcess:
    """An EstimationProcess whose estimate is always `value` (a fixed norm)."""

    @fc.federated_computation
    def initialize():
        return fc.federated_value((), SERVER)

    @fc.federated_computation(initialize.type_signature.result, FederatedType(NORM_DTYPE, CLIENTS))
    def next_fn(state, value):
        return state

    @fc.federated_computation(initialize.type_signature.result)
    def report(state):
        return fc.federated_value(np.float32(value), SERVER)

    return EstimationProcess(initialize, next_fn, report)


def norm_process(norm: Any, name: str, owner: str) -> EstimationProcess:
    """`norm` as an EstimationProcess over the clients' float32 norms: a positive number becomes a
    constant one; a process is checked to take `{float32}@CLIENTS` and report `float32@SERVER`."""
    if isinstance(norm, EstimationProcess):
        return check_scalar_estimation(norm, owner, name, "the clients' norms")
    if isinstance(norm, bool) or not isinstance(norm, int | float | np.floating | np.integer):
        raise TypeError(
            f"{owner}: {name} must be a positive number or an EstimationProcess, got {norm!r}."
        )
    if not norm > 0:
        raise ValueError(f"{owner}: {name} must be positive, got {norm}.")
    return constant_estimate(float(norm))


def _global_norm(value: Any, order: float) -> tf.Tensor:
    leaves = [tf.cast(tf.reshape(x, [-1]), tf.float32) for x in tf.nest.flatten(value)]
    if not leaves:
        return tf.constant(0.0)
    flat = tf.concat(leaves, axis=0)
    if order == 1.0:
        return tf.reduce_sum(tf.abs(flat))
    if order == 2.0:
        return tf.norm(flat)
    return tf.reduce_max(tf.abs(flat)) if flat.shape[0] != 0 else tf.constant(0.0)


def _clip_computation(value_type: Any) -> Callable:
    @ftf.computation(value_type, NORM_DTYPE)
    def clip(value, clipping_norm):
        norm = _global_norm(value, 2.0)
        # Scaling by min(1, bound / norm) is tf.clip_by_global_norm's projection, applied in each
        # leaf's own dtype so that mixed float widths stay as they are.
        scale = tf.minimum(1.0, tf.math.divide_no_nan(clipping_norm, norm))
        clipped = tf.nest.map_structure(lambda x: x * tf.cast(scale, x.dtype), value)
        return clipped, norm, tf.cast(norm > clipping_norm, COUNT_DTYPE)

    return clip


def _zero_computation(value_type: Any, order: float) -> Callable:
    @ftf.computation(value_type, NORM_DTYPE)
    def zero(value, zeroing_norm):
        norm = _global_norm(value, order)
        too_large = norm > zeroing_norm
        zeroed = tf.nest.map_structure(lambda x: tf.where(too_large, tf.zeros_like(x), x), value)
        return zeroed, norm, tf.cast(too_large, COUNT_DTYPE)

    return zero


class _BoundedFactory:
    """Applies a bounding computation (clip or zero) with a norm from an estimation process, then the
    inner aggregation. State and measurements are named with `prefix` ("clipp" or "zero"), as
    TensorFlow Federated names them: `clipping_norm`, `clipped_count`, `clipping`."""

    def __init__(
        self,
        norm: EstimationProcess,
        inner: AggregationFactory,
        count_sum_factory: UnweightedAggregationFactory,
        make_bound: Callable[[Any], Callable],
        prefix: str,
        owner: str,
    ):
        self._norm = norm
        self._inner = inner
        self._count_sum_factory = count_sum_factory
        self._make_bound = make_bound
        self._prefix = prefix
        self._owner = owner

    def _create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
        value_type = check_value_type(value_type, self._owner, "f", "floating-point")
        weighted = weight_type is not None
        inner = (
            cast(WeightedAggregationFactory, self._inner).create(value_type, weight_type)
            if weighted
            else cast(UnweightedAggregationFactory, self._inner).create(value_type)
        )
        norm, bound = self._norm, self._make_bound(value_type)
        count = self._count_sum_factory.create(TensorType(COUNT_DTYPE))
        p = self._prefix

        @fc.federated_computation
        def initialize():
            return fc.federated_zip(
                collections.OrderedDict(
                    [
                        (p + "ing_norm", norm.initialize()),
                        ("inner_agg", inner.initialize()),
                        (p + "ed_count_agg", count.initialize()),
                    ]
                )
            )

        def step(state, value, weight=None):
            current_norm = norm.report(state[0])
            bounded, norms, counted = fc.federated_map(
                bound, fc.federated_zip((value, fc.federated_broadcast(current_norm)))
            )
            new_norm_state = norm.next(state[0], norms)
            if weight is None:
                inner_output = inner.next(state[1], bounded)
            else:
                inner_output = inner.next(state[1], bounded, weight)
            count_output = count.next(state[2], counted)
            new_state = collections.OrderedDict(
                [
                    (p + "ing_norm", new_norm_state),
                    ("inner_agg", inner_output.state),
                    (p + "ed_count_agg", count_output.state),
                ]
            )
            measurements = collections.OrderedDict(
                [
                    (p + "ing", inner_output.measurements),
                    (p + "ing_norm", current_norm),
                    (p + "ed_count", count_output.result),
                ]
            )
            return MeasuredProcessOutput(
                fc.federated_zip(new_state), inner_output.result, fc.federated_zip(measurements)
            )

        state_type = initialize.type_signature.result
        if weighted:
            next_fn = fc.federated_computation(
                step,
                state_type,
                FederatedType(value_type, CLIENTS),
                FederatedType(weight_type, CLIENTS),
            )
        else:
            next_fn = fc.federated_computation(
                lambda state, value: step(state, value),
                state_type,
                FederatedType(value_type, CLIENTS),
            )
        return AggregationProcess(initialize, next_fn)

    def __repr__(self) -> str:
        return f"{self._owner}(inner_agg_factory={self._inner!r})"


class _WeightedBounded(_BoundedFactory, WeightedAggregationFactory):
    def create(self, value_type: Any, weight_type: Any) -> AggregationProcess:
        return self._create(value_type, weight_type)


class _UnweightedBounded(_BoundedFactory, UnweightedAggregationFactory):
    def create(self, value_type: Any) -> AggregationProcess:
        return self._create(value_type)


class _EitherBounded(_BoundedFactory, UnweightedAggregationFactory, WeightedAggregationFactory):
    def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
        return self._create(value_type, weight_type)


def _wrap(
    norm: Any,
    name: str,
    inner: Any,
    count_sum_factory: Any,
    make_bound: Callable[[Any], Callable],
    prefix: str,
    owner: str,
) -> AggregationFactory:
    if not isinstance(inner, AggregationFactory):
        raise TypeError(
            f"{owner}: inner_agg_factory must be an aggregation factory, got {inner!r}."
        )
    if count_sum_factory is None:
        count_sum_factory = SumFactory()
    elif not isinstance(count_sum_factory, UnweightedAggregationFactory):
        raise TypeError(
            f"{owner}: the count's sum factory must be an UnweightedAggregationFactory, got "
            f"{count_sum_factory!r}."
        )
    weighted = isinstance(inner, WeightedAggregationFactory)
    unweighted = isinstance(inner, UnweightedAggregationFactory)
    # The wrapper is weighted, unweighted or either, as its inner factory is.
    cls = (
        _EitherBounded
        if weighted and unweighted
        else _WeightedBounded
        if weighted
        else _UnweightedBounded
    )
    return cls(norm_process(norm, name, owner), inner, count_sum_factory, make_bound, prefix, owner)


def clipping_factory(
    clipping_norm: float | EstimationProcess,
    inner_agg_factory: AggregationFactory,
    clipped_count_sum_factory: UnweightedAggregationFactory | None = None,
) -> AggregationFactory:
    """Projects each client's value onto the L2 ball of radius `clipping_norm` (the global norm over the
    whole structure) before `inner_agg_factory` aggregates it.

    `clipping_norm` is a positive number or an `EstimationProcess` that takes the clients' norms
    (`{float32}@CLIENTS`) and reports the norm (`float32@SERVER`), such as
    `PrivateQuantileEstimationProcess.no_noise(...)`. Measurements: `clipping` (the inner
    aggregation's), `clipping_norm`, `clipped_count`. Weighted or unweighted as `inner_agg_factory` is.
    """
    return _wrap(
        clipping_norm,
        "clipping_norm",
        inner_agg_factory,
        clipped_count_sum_factory,
        _clip_computation,
        "clipp",
        "clipping_factory",
    )


def zeroing_factory(
    zeroing_norm: float | EstimationProcess,
    inner_agg_factory: AggregationFactory,
    norm_order: float = math.inf,
    zeroed_count_sum_factory: UnweightedAggregationFactory | None = None,
) -> AggregationFactory:
    """Replaces by zeros each client's value whose norm (of order `norm_order`: 1, 2 or infinity, over
    the whole structure) exceeds `zeroing_norm`, before `inner_agg_factory` aggregates it. A zeroed
    value keeps its weight.

    `zeroing_norm` is a positive number or an `EstimationProcess` over the clients' norms.
    Measurements: `zeroing` (the inner aggregation's), `zeroing_norm`, `zeroed_count`. An infinite
    order of either sign is the max norm, as TensorFlow Federated takes it.
    """
    if isinstance(norm_order, bool) or not isinstance(norm_order, numbers.Real):
        raise TypeError(f"zeroing_factory: norm_order must be 1.0, 2.0 or inf, got {norm_order!r}.")
    if not (norm_order in (1.0, 2.0) or math.isinf(norm_order)):
        raise ValueError(f"zeroing_factory: norm_order must be 1.0, 2.0 or inf, got {norm_order}.")
    order = float(norm_order)
    return _wrap(
        zeroing_norm,
        "zeroing_norm",
        inner_agg_factory,
        zeroed_count_sum_factory,
        lambda value_type: _zero_computation(value_type, order),
        "zero",
        "zeroing_factory",
    )
