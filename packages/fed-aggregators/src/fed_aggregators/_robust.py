"""Robust aggregation: rules that keep a few Byzantine (faulty or malicious) clients from steering the
aggregate, as Flower offers them as strategies.

Coordinate-wise median, trimmed mean, Krum, multi-Krum and Bulyan need every client's value at the
server: they gather the values with `fed_aggregators.federated_gather` and compute the rule in one
TensorFlow computation there. The norm-bounded mean needs no gathering: clients bound their own values
and the server takes the mean.

Every factory here is both an `UnweightedAggregationFactory` (`create(value_type)`) and a
`WeightedAggregationFactory` (`create(value_type, weight_type)`), so it fits any learning algorithm's
`model_aggregator`. Given weights, each rule uses its weighted form (see each class); a client of weight
zero takes no part in a gathering rule, just as it adds nothing to a weighted mean (FedAvg gives weight
zero to a client whose update is not finite). Values are floating-point tensors or structs of them;
weights are numeric scalars, finite and not negative.

A rule's needs (how many clients, valid weights) are checked before anything runs when `next` is called
from Python with lists of client values, and raise ValueError; inside another computation they are
checked when the rule runs, and raise `tf.errors.InvalidArgumentError` with the same message.
"""

from __future__ import annotations

import abc
import collections
import math
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
import fed_types
from fed_aggregators._factory import (
    UnweightedAggregationFactory,
    WeightedAggregationFactory,
    check_int,
    check_value_type,
    check_weights_non_negative,
    weight_numbers,
    with_client_check,
)
from fed_aggregators._gather import federated_gather, stacked_type
from fed_aggregators._mean import check_weights_in_graph, checked_weight_computation
from fed_aggregators._sum import empty_at_server
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, FederatedType, TensorType, Type, to_type


def _f64(value: float) -> tf.Tensor:
    """A float64 constant: `tf.where` does not convert a Python float to its other operand's dtype."""
    return tf.constant(value, tf.float64)


def _check_weight_type(weight_type: Any, factory: str) -> Type:
    t = to_type(weight_type)
    if not (isinstance(t, TensorType) and t.rank == 0 and t.dtype.kind in "fiu"):
        raise TypeError(f"{factory}.create: expected a numeric scalar weight type, got {t}.")
    return t


def _check_real(value: Any, name: str, factory: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{factory}: {name} must be a number, got {value!r}.")
    return float(value)


def _require(condition: tf.Tensor, template: str, *values: tf.Tensor) -> tf.Operation:
    """A run-time check whose error message is `template` with `{}` filled in by `values`."""
    return tf.debugging.Assert(condition, [tf.strings.format(template, values)])


class _RobustFactory(UnweightedAggregationFactory, WeightedAggregationFactory):
    """Both kinds of factory: `create(value_type)` and `create(value_type, weight_type)`."""

    def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
        """An AggregationProcess aggregating client values of `value_type` (floating-point tensors or a
        struct of them), weighted by client weights of `weight_type` (a numeric scalar) if given."""
        name = type(self).__name__
        value_type = check_value_type(value_type, name, "f", "floating-point")
        if not fed_types.types.contains(value_type, lambda t: isinstance(t, TensorType)):
            raise TypeError(
                f"{name}.create: expected at least one tensor to aggregate, got {value_type}."
            )
        if weight_type is not None:
            weight_type = _check_weight_type(weight_type, name)
        return self._create(value_type, weight_type)

    @abc.abstractmethod
    def _create(self, value_type: Type, weight_type: Type | None) -> AggregationProcess: ...


# ---- rules over the gathered values


class _GatheringFactory(_RobustFactory):
    """A rule computed at the server, in one TensorFlow computation, over every client's value."""

    @abc.abstractmethod
    def _rule(
        self, rows: list[tf.Tensor], weights: tf.Tensor, num_clients: tf.Tensor
    ) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        """The aggregate of each leaf and the rule's measurements (beside `num_clients`).

        `rows` holds one float64 matrix `[n, d]` per leaf of the value (row `i` is participant `i`'s
        value, flattened), `weights` the participants' weights (float64 `[n]`, all positive; ones when
        unweighted), `num_clients` is `n` (int32, checked to be at least 1). Returns one float64 vector
        `[d]` per leaf and further measurements."""

    def _needed(self, weighted: bool) -> tuple[int, str]:
        """How many participating clients the rule needs, and the message that refuses fewer (with `{}`
        for the number given); a rule needing more than one overrides this."""
        who = "client with a positive weight" if weighted else "client"
        return 1, f"{type(self).__name__} needs at least one {who}; got n = {{}}."

    def _check_clients(self, values: Any, weights: Any) -> None:
        """The checks of a call from Python, before anything runs (the same as `_apply`'s)."""
        if weights is None:
            participants = len(values)
        else:
            numbers = weight_numbers(weights)
            if numbers is None:
                return
            check_weights_non_negative(type(self).__name__, numbers)
            participants = int(np.sum(numbers > 0))
        needed, message = self._needed(weights is not None)
        if participants < needed:
            raise ValueError(message.format(participants))

    def _apply(self, values: Any, weights: tf.Tensor | None) -> Any:
        leaves = tf.nest.flatten(values)
        checks = []
        index = None
        if weights is None:
            num_clients = tf.shape(leaves[0])[0]
        else:
            checks.append(check_weights_in_graph(weights, type(self).__name__))
            weights = tf.cast(weights, tf.float64)
            # A client of weight zero takes no part, as it adds nothing to a weighted mean.
            index = tf.cast(tf.reshape(tf.where(weights > 0), [-1]), tf.int32)
            num_clients = tf.size(index)
        needed, message = self._needed(weights is not None)
        checks.append(_require(num_clients >= needed, message, num_clients))
        with tf.control_dependencies(checks):
            if index is not None:
                leaves_taking_part = [tf.gather(leaf, index) for leaf in leaves]
                weights = tf.gather(weights, index)
            else:
                leaves_taking_part = [tf.identity(leaf) for leaf in leaves]
                weights = tf.ones([num_clients], tf.float64)
        rows = [
            tf.reshape(tf.cast(leaf, tf.float64), [num_clients, -1]) for leaf in leaves_taking_part
        ]
        aggregates, measurements = self._rule(rows, weights, num_clients)
        result = [
            tf.ensure_shape(
                tf.reshape(tf.cast(aggregate, leaf.dtype), tf.shape(leaf)[1:]), leaf.shape[1:]
            )
            for aggregate, leaf in zip(aggregates, leaves, strict=True)
        ]
        if index is not None and "selected_clients" in measurements:
            # Selections are made among the participants; report them in the round's client order.
            measurements["selected_clients"] = tf.gather(index, measurements["selected_clients"])
        return collections.OrderedDict(
            result=tf.nest.pack_sequence_as(values, result),
            measurements=collections.OrderedDict(num_clients=num_clients, **measurements),
        )

    def _create(self, value_type: Type, weight_type: Type | None) -> AggregationProcess:
        @fc.federated_computation
        def initialize():
            return empty_at_server()

        if weight_type is None:

            @ftf.computation(stacked_type(value_type))
            def robust_aggregate(values):
                return self._apply(values, None)

            @fc.federated_computation(
                initialize.type_signature.result, FederatedType(value_type, CLIENTS)
            )
            def next_fn(state, value):
                output = fc.federated_map(robust_aggregate, federated_gather(value))
                return MeasuredProcessOutput(state, output.result, output.measurements)

            return with_client_check(AggregationProcess(initialize, next_fn), self._check_clients)

        @ftf.computation(stacked_type(value_type), stacked_type(weight_type))
        def weighted_robust_aggregate(values, weights):
            return self._apply(values, weights)

        @fc.federated_computation(
            initialize.type_signature.result,
            FederatedType(value_type, CLIENTS),
            FederatedType(weight_type, CLIENTS),
        )
        def weighted_next_fn(state, value, weight):
            gathered = federated_gather(fc.federated_zip((value, weight)))
            output = fc.federated_map(weighted_robust_aggregate, gathered)
            return MeasuredProcessOutput(state, output.result, output.measurements)

        return with_client_check(
            AggregationProcess(initialize, weighted_next_fn), self._check_clients
        )


def _sorted_columns(rows: tf.Tensor, weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each coordinate's values in ascending order with their weights: two `[d, n]` matrices. A NaN
    sorts as +inf (argsort would leave it wherever it stands), so it lands in the tail a rule trims or
    passes over, as any other extreme value does."""
    columns = tf.transpose(rows)
    columns = tf.where(tf.math.is_nan(columns), _f64(np.inf), columns)
    order = tf.argsort(columns, axis=1, stable=True)
    return tf.gather(columns, order, batch_dims=1), tf.gather(weights, order)


def _weighted_median(rows: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """The coordinate-wise weighted median `[d]` of `rows` `[n, d]`: the midpoint of the lowest value
    with at least half the weight at or below it and the highest with at least half at or above it
    (equal weights give the ordinary median, the mean of the middle two for an even count)."""
    values, value_weights = _sorted_columns(rows, weights)
    below_or_at = tf.cumsum(value_weights, axis=1)
    below = tf.cumsum(value_weights, axis=1, exclusive=True)
    half = below_or_at[:, -1:] / 2
    lower = tf.reduce_sum(tf.cast(below_or_at < half, tf.int32), axis=1)
    upper = tf.reduce_sum(tf.cast(below <= half, tf.int32), axis=1) - 1
    return (tf.gather(values, lower, batch_dims=1) + tf.gather(values, upper, batch_dims=1)) / 2


def _weighted_mean_of_rows(rows: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    return tf.linalg.matvec(rows, weights, transpose_a=True) / tf.reduce_sum(weights)


class CoordinateMedianFactory(_GatheringFactory):
    """The coordinate-wise median of the clients' values (Flower's FedMedian; Yin et al., 2018).

    Each coordinate of each tensor is aggregated on its own: the median of the clients' values there
    (the mean of the middle two for an even number of clients). With weights, the weighted median: the
    value where the clients' cumulative weight reaches half the total (the midpoint of two values when
    it reaches exactly half between them); integer weights count as repeated clients.

    Stateless; measurements: `num_clients` (int32), the number of clients aggregated (with weights,
    those of positive weight). Needs at least one such client.
    """

    def _rule(
        self, rows: list[tf.Tensor], weights: tf.Tensor, num_clients: tf.Tensor
    ) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        return [_weighted_median(r, weights) for r in rows], {}

    def __repr__(self) -> str:
        return "CoordinateMedianFactory()"


class TrimmedMeanFactory(_GatheringFactory):
    """The coordinate-wise trimmed mean (Flower's FedTrimmedAvg; Yin et al., 2018).

    For each coordinate, the clients' values are sorted, `floor(beta * n)` of them are dropped from
    each end, and the rest are averaged (scipy's `trim_mean`). With weights, a value is dropped when all
    of its weight lies within the lowest (or highest) `beta` share of the total weight, and the rest are
    averaged with their weights; equal weights drop exactly the values the unweighted rule drops.

    `beta` is in [0, 0.5) (0.2 by default, as Flower's). Stateless; measurements: `num_clients` (int32),
    the number of clients aggregated (with weights, those of positive weight). Needs at least one.
    """

    def __init__(self, beta: float = 0.2):
        beta = _check_real(beta, "beta", "TrimmedMeanFactory")
        if not 0.0 <= beta < 0.5:
            raise ValueError(
                f"TrimmedMeanFactory: beta, the fraction trimmed from each end, must be in [0, 0.5), "
                f"got {beta}."
            )
        self._beta = beta

    def _rule(
        self, rows: list[tf.Tensor], weights: tf.Tensor, num_clients: tf.Tensor
    ) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        return [self._trimmed_mean(r, weights) for r in rows], {}

    def _trimmed_mean(self, rows: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        values, value_weights = _sorted_columns(rows, weights)
        below_or_at = tf.cumsum(value_weights, axis=1)
        total = below_or_at[:, -1:]
        at_or_above = total - tf.cumsum(value_weights, axis=1, exclusive=True)
        cut = self._beta * total
        kept = (below_or_at > cut) & (at_or_above > cut)
        # tf.where, not a product, so that a trimmed infinite value cannot turn the sum into NaN.
        weighted_sum = tf.reduce_sum(tf.where(kept, values * value_weights, _f64(0.0)), axis=1)
        return weighted_sum / tf.reduce_sum(tf.where(kept, value_weights, _f64(0.0)), axis=1)

    def __repr__(self) -> str:
        return f"TrimmedMeanFactory(beta={self._beta})"


def _squared_distances(rows: list[tf.Tensor]) -> tf.Tensor:
    """The squared Euclidean distances `[n, n]` between the clients' whole (flattened) values; a NaN
    distance (from a value that is not finite) counts as infinitely far."""
    distances: Any = 0.0
    for r in rows:
        gram = tf.matmul(r, r, transpose_b=True)
        norms = tf.linalg.diag_part(gram)
        distances += norms[:, None] + norms[None, :] - 2.0 * gram
    distances = tf.where(tf.math.is_nan(distances), _f64(np.inf), distances)
    return tf.maximum(distances, 0.0)  # rounding can leave tiny negatives


def _krum_scores(distances: tf.Tensor, candidates: tf.Tensor, num_byzantine: int) -> tf.Tensor:
    """Krum's score of each candidate: the sum of its squared distances to its `r - f - 2` nearest
    other candidates (`r` candidates; at least 1 and at most `r - 1` neighbours). A candidate's score
    is finite (capped), others' infinite, so the lowest score is always a candidate's."""
    n = tf.shape(distances)[0]
    count = tf.reduce_sum(tf.cast(candidates, tf.int32))
    neighbours = tf.minimum(tf.maximum(count - num_byzantine - 2, 1), count - 1)
    pairs = candidates[:, None] & candidates[None, :] & ~tf.eye(n, dtype=tf.bool)
    nearest_first = tf.sort(tf.where(pairs, distances, _f64(np.inf)), axis=1)
    among_nearest = tf.range(n)[None, :] < neighbours
    scores = tf.reduce_sum(tf.where(among_nearest, nearest_first, _f64(0.0)), axis=1)
    return tf.where(candidates, tf.minimum(scores, np.finfo(np.float64).max), _f64(np.inf))


class _KrumRule(_GatheringFactory):
    """Multi-Krum: averages the `num_selected` values of lowest Krum score."""

    _num_byzantine: int
    _num_selected: int

    def _needed(self, weighted: bool) -> tuple[int, str]:
        f, m = self._num_byzantine, self._num_selected
        who = "clients with a positive weight" if weighted else "clients"
        if m == 1:
            needed, rule, given = 2 * f + 3, "2 * num_byzantine + 3", f"num_byzantine = {f}"
        else:
            needed = max(2 * f + 3, m + f)
            rule = "max(2 * num_byzantine + 3, num_selected + num_byzantine)"
            given = f"num_byzantine = {f}, num_selected = {m}"
        return (
            needed,
            f"{type(self).__name__} needs n >= {rule} = {needed} {who} ({given}); got n = {{}}.",
        )

    def _rule(
        self, rows: list[tf.Tensor], weights: tf.Tensor, num_clients: tf.Tensor
    ) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        distances = _squared_distances(rows)
        scores = _krum_scores(distances, tf.ones([num_clients], tf.bool), self._num_byzantine)
        selected = tf.sort(tf.argsort(scores, stable=True)[: self._num_selected])
        selected_weights = tf.gather(weights, selected)
        aggregates = [
            _weighted_mean_of_rows(tf.gather(r, selected), selected_weights) for r in rows
        ]
        return aggregates, {"selected_clients": selected}


class KrumFactory(_KrumRule):
    """Krum (Blanchard et al., 2017; Flower's Krum): the one client value closest to its neighbours.

    Each client's score is the sum of squared Euclidean distances (over its whole value, every tensor
    flattened together) to its `n - num_byzantine - 2` nearest other clients; the value of lowest score
    is the aggregate (ties go to the earlier client). Tolerates `num_byzantine` Byzantine clients among
    `n >= 2 * num_byzantine + 3`, checked when it runs. With weights, clients of weight zero take no
    part and the others are scored alike (the one selected value does not depend on its weight).

    Stateless; measurements: `num_clients` (int32), the clients scored; `selected_clients` (int32[?]),
    the index of the selected client in the round's client order.
    """

    def __init__(self, num_byzantine: int):
        self._num_byzantine = check_int(num_byzantine, "num_byzantine", "KrumFactory", 0)
        self._num_selected = 1

    def __repr__(self) -> str:
        return f"KrumFactory(num_byzantine={self._num_byzantine})"


class MultiKrumFactory(_KrumRule):
    """Multi-Krum (El Mhamdi et al., 2018; Flower's Krum with `num_clients_to_keep`): the mean of the
    `num_selected` client values of lowest Krum score.

    Scores are Krum's (see `KrumFactory`), computed once; the `num_selected` lowest are averaged (ties
    go to earlier clients). Needs `n >= 2 * num_byzantine + 3` and `num_selected <= n - num_byzantine`,
    checked when it runs. With weights, clients of weight zero take no part and the selected values are
    averaged with their weights.

    Stateless; measurements: `num_clients` (int32), the clients scored; `selected_clients` (int32[?]),
    the indices of the selected clients in the round's client order, ascending.
    """

    def __init__(self, num_byzantine: int, num_selected: int):
        self._num_byzantine = check_int(num_byzantine, "num_byzantine", "MultiKrumFactory", 0)
        self._num_selected = check_int(num_selected, "num_selected", "MultiKrumFactory", 1)

    def __repr__(self) -> str:
        return (
            f"MultiKrumFactory(num_byzantine={self._num_byzantine}, "
            f"num_selected={self._num_selected})"
        )


class BulyanFactory(_GatheringFactory):
    """Bulyan (El Mhamdi et al., 2018; Flower's Bulyan with Krum): Krum selection, then a trimmed
    coordinate-wise aggregate of the selected values.

    With `f = num_byzantine` and `n >= 4f + 3` clients (checked when it runs): Krum picks a value, which
    leaves the candidates, `n - 2f` times (its neighbour count `r - f - 2` shrinking with the `r`
    candidates left, at least 1); then, for each coordinate, the `n - 4f` selected values closest to
    their median are averaged. With weights, clients of weight zero take no part, the median is the
    weighted median and the closest values are averaged with their weights.

    Stateless; measurements: `num_clients` (int32), the clients scored; `selected_clients` (int32[?]),
    the indices of the `n - 2f` clients Krum selected, in the round's client order, ascending.
    """

    def __init__(self, num_byzantine: int):
        self._num_byzantine = check_int(num_byzantine, "num_byzantine", "BulyanFactory", 0)

    def _needed(self, weighted: bool) -> tuple[int, str]:
        f = self._num_byzantine
        who = "clients with a positive weight" if weighted else "clients"
        return (
            4 * f + 3,
            f"BulyanFactory needs n >= 4 * num_byzantine + 3 = {4 * f + 3} {who} "
            f"(num_byzantine = {f}); got n = {{}}.",
        )

    def _rule(
        self, rows: list[tf.Tensor], weights: tf.Tensor, num_clients: tf.Tensor
    ) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        f = self._num_byzantine
        distances = _squared_distances(rows)
        clients = tf.range(num_clients)

        def select_one(step: tf.Tensor, candidates: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            chosen = tf.argmin(_krum_scores(distances, candidates, f), output_type=tf.int32)
            return step + 1, candidates & (clients != chosen)

        _, left = tf.while_loop(
            lambda step, candidates: step < num_clients - 2 * f,
            select_one,
            (tf.constant(0), tf.ones([num_clients], tf.bool)),
        )
        selected = tf.cast(tf.reshape(tf.where(~left), [-1]), tf.int32)
        selected_weights = tf.gather(weights, selected)
        closest = num_clients - 4 * f
        aggregates = []
        for r in rows:
            values = tf.gather(r, selected)
            median = _weighted_median(values, selected_weights)
            columns = tf.transpose(values)
            order = tf.argsort(tf.abs(columns - median[:, None]), axis=1, stable=True)[:, :closest]
            nearest = tf.gather(columns, order, batch_dims=1)
            nearest_weights = tf.gather(selected_weights, order)
            aggregates.append(
                tf.reduce_sum(nearest * nearest_weights, axis=1)
                / tf.reduce_sum(nearest_weights, axis=1)
            )
        return aggregates, {"selected_clients": selected}

    def __repr__(self) -> str:
        return f"BulyanFactory(num_byzantine={self._num_byzantine})"


# ---- bounded at the clients


class NormBoundedMeanFactory(_RobustFactory):
    """The mean of client values bounded in L2 norm (norm bounding, Sun et al., 2019).

    Each client scales its value down to `norm_bound` when its global L2 norm (over the whole value,
    every tensor together) exceeds it, and the server averages the bounded values: plainly, or with
    weights the weighted mean. A value that is not finite (NaN or infinite) is replaced by zeros. No
    single client can move the mean by more than `norm_bound` times its share of the total weight.

    Stateless; measurements: `clipped_count` (int32), the number of clients whose value was scaled down
    or replaced. Needs at least one client; with weights, a zero total weight gives NaN (as a weighted
    mean does).
    """

    def __init__(self, norm_bound: float):
        norm_bound = _check_real(norm_bound, "norm_bound", "NormBoundedMeanFactory")
        if not (norm_bound > 0 and math.isfinite(norm_bound)):
            raise ValueError(
                f"NormBoundedMeanFactory: norm_bound must be a positive finite number, got {norm_bound}."
            )
        self._norm_bound = norm_bound

    def _create(self, value_type: Type, weight_type: Type | None) -> AggregationProcess:
        norm_bound = self._norm_bound

        @ftf.computation(value_type)
        def bound_norm(value):
            leaves = tf.nest.flatten(value)
            norm = tf.sqrt(
                tf.add_n([tf.reduce_sum(tf.square(tf.cast(x, tf.float64))) for x in leaves])
            )
            finite = tf.math.is_finite(norm)
            scale = tf.where(finite, norm_bound / tf.maximum(norm, norm_bound), _f64(0.0))
            bounded = [
                tf.where(finite, x * tf.cast(scale, x.dtype), tf.zeros_like(x)) for x in leaves
            ]
            clipped = tf.cast(tf.logical_not(finite) | (norm > norm_bound), tf.int32)
            return tf.nest.pack_sequence_as(value, bounded), clipped

        @fc.federated_computation
        def initialize():
            return empty_at_server()

        if weight_type is not None:
            checked_weight = checked_weight_computation(weight_type, "NormBoundedMeanFactory")

        def measured(state: Any, bounded: Any, mean: Any) -> MeasuredProcessOutput:
            measurements = fc.federated_zip(
                collections.OrderedDict(clipped_count=fc.federated_sum(bounded[1]))
            )
            return MeasuredProcessOutput(state, mean, measurements)

        if weight_type is None:

            @fc.federated_computation(
                initialize.type_signature.result, FederatedType(value_type, CLIENTS)
            )
            def next_fn(state, value):
                bounded = fc.federated_map(bound_norm, value)
                return measured(state, bounded, fc.federated_mean(bounded[0]))

            return AggregationProcess(initialize, next_fn)

        @fc.federated_computation(
            initialize.type_signature.result,
            FederatedType(value_type, CLIENTS),
            FederatedType(weight_type, CLIENTS),
        )
        def weighted_next_fn(state, value, weight):
            bounded = fc.federated_map(bound_norm, value)
            checked = fc.federated_map(checked_weight, weight)
            return measured(state, bounded, fc.federated_mean(bounded[0], checked))

        def check(values: Any, weights: Any) -> None:
            numbers = weight_numbers(weights)
            if numbers is not None:
                check_weights_non_negative("NormBoundedMeanFactory", numbers)

        return with_client_check(AggregationProcess(initialize, weighted_next_fn), check)

    def __repr__(self) -> str:
        return f"NormBoundedMeanFactory(norm_bound={self._norm_bound})"
