"""Robust aggregation: the gather intrinsic, and each robust rule against a numpy computation of it."""

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
from fed_aggregators import (
    UnweightedAggregationFactory,
    WeightedAggregationFactory,
    factory_from_config,
)
from fed_aggregators._gather import FEDERATED_GATHER, federated_gather
from fed_aggregators._robust import (
    BulyanFactory,
    CoordinateMedianFactory,
    KrumFactory,
    MultiKrumFactory,
    NormBoundedMeanFactory,
    TrimmedMeanFactory,
)
from fed_core.framework import lookup_intrinsic
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, StructType, TensorType

SCALAR = TensorType(np.float32)
WEIGHT = TensorType(np.float32)
STRUCT = StructType(
    [("w", TensorType(np.float32, [2, 3])), ("b", TensorType(np.float32, [2]))],
    collections.OrderedDict,
)


def _struct_values(rows):
    """Client values of STRUCT from flat rows of 8 numbers (w first, row-major, then b)."""
    return [
        collections.OrderedDict(
            w=np.asarray(r[:6], np.float32).reshape(2, 3), b=np.asarray(r[6:], np.float32)
        )
        for r in rows
    ]


def _flat(result):
    return np.concatenate([np.ravel(result["w"]), np.ravel(result["b"])])


def _random_rows(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def _run(factory, values, weights=None, value_type=STRUCT):
    if weights is None:
        process = factory.create(value_type)
        assert not process.is_weighted
        return process.next(process.initialize(), values)
    process = factory.create(value_type, WEIGHT)
    assert process.is_weighted
    return process.next(process.initialize(), values, [np.float32(w) for w in weights])


# ---- numpy references


def _weighted_median_by_repetition(rows, weights):
    """With integer weights, the weighted median is the median of the values repeated weight times."""
    return np.median(np.repeat(rows, weights, axis=0), axis=0)


def _trimmed_mean(rows, beta):
    k = int(beta * len(rows))
    ordered = np.sort(rows, axis=0)
    return ordered[k : len(rows) - k].mean(axis=0)


def _weighted_trimmed_mean(rows, weights, beta):
    """Per coordinate: drop a value when all its weight lies in the lowest or highest beta share."""
    weights = np.asarray(weights, np.float64)
    out = []
    for column in np.asarray(rows, np.float64).T:
        total, below, kept_sum, kept_weight = weights.sum(), 0.0, 0.0, 0.0
        for i in sorted(range(len(column)), key=lambda i: column[i]):
            low_end, high_start = below + weights[i], total - below
            if low_end > beta * total and high_start > beta * total:
                kept_sum += weights[i] * column[i]
                kept_weight += weights[i]
            below += weights[i]
        out.append(kept_sum / kept_weight)
    return np.array(out)


def _krum_scores(rows, f):
    n = len(rows)
    distances = [[float(np.sum((a - b) ** 2)) for b in rows] for a in rows]
    return [sum(sorted(distances[i][:i] + distances[i][i + 1 :])[: n - f - 2]) for i in range(n)]


def _bulyan(rows, f):
    rows = np.asarray(rows, np.float64)
    n = len(rows)
    remaining, selected = list(range(n)), []
    for _ in range(n - 2 * f):
        r = len(remaining)
        k = min(max(r - f - 2, 1), r - 1)
        scores = [
            sum(sorted(np.sum((rows[i] - rows[j]) ** 2) for j in remaining if j != i)[:k])
            for i in remaining
        ]
        best = remaining[int(np.argmin(scores))]
        selected.append(best)
        remaining.remove(best)
    chosen = rows[sorted(selected)]
    median = np.median(chosen, axis=0)
    order = np.argsort(np.abs(chosen - median), axis=0, kind="stable")[: n - 4 * f]
    return np.take_along_axis(chosen, order, axis=0).mean(axis=0), sorted(selected)


# ---- federated_gather


@fc.federated_computation(FederatedType(STRUCT, CLIENTS))
def _gather_struct(values):
    return federated_gather(values)


def test_gather_stacks_the_clients_values_at_the_server():
    assert str(_gather_struct.type_signature) == (
        "({<w=float32[2,3],b=float32[2]>}@CLIENTS -> <w=float32[?,2,3],b=float32[?,2]>@SERVER)"
    )
    rows = _random_rows(3, seed=0)
    gathered = _gather_struct(_struct_values(rows))
    assert gathered["w"].shape == (3, 2, 3) and gathered["b"].shape == (3, 2)
    np.testing.assert_array_equal(gathered["w"][1], rows[1, :6].reshape(2, 3))
    np.testing.assert_array_equal(gathered["b"][2], rows[2, 6:])


def test_gather_of_zero_clients_is_an_empty_stack():
    gathered = _gather_struct([])
    assert gathered["w"].shape == (0, 2, 3) and gathered["w"].dtype == np.float32
    assert gathered["b"].shape == (0, 2)


def test_gather_is_a_registered_intrinsic_and_checks_its_operand():
    definition = lookup_intrinsic(FEDERATED_GATHER)
    assert definition.name == "federated_gather"
    assert definition.kind.name == "AGGREGATION"
    with pytest.raises(fc.FederatedTypeError, match="tensors or structs of them"):

        @fc.federated_computation(FederatedType(SequenceType(np.float32), CLIENTS))
        def of_sequences(values):
            return federated_gather(values)

    with pytest.raises(fc.FederatedTypeError, match="float32@SERVER"):

        @fc.federated_computation(FederatedType(np.float32, SERVER))
        def at_the_server(value):
            return federated_gather(value)


def test_gather_refuses_values_of_different_shapes_clearly():
    @fc.federated_computation(FederatedType(TensorType(np.float32, [None]), CLIENTS))
    def gather_vectors(values):
        return federated_gather(values)

    assert str(gather_vectors.type_signature) == "({float32[?]}@CLIENTS -> float32[?,?]@SERVER)"
    with pytest.raises(ValueError, match="must have the same shapes to be stacked"):
        gather_vectors([np.zeros(2, np.float32), np.zeros(3, np.float32)])


# ---- the factories' kinds and types


def test_every_factory_is_both_kinds_and_keeps_the_value_type():
    for factory in (
        CoordinateMedianFactory(),
        TrimmedMeanFactory(0.1),
        KrumFactory(1),
        MultiKrumFactory(1, 2),
        BulyanFactory(1),
        NormBoundedMeanFactory(1.0),
    ):
        assert isinstance(factory, UnweightedAggregationFactory)
        assert isinstance(factory, WeightedAggregationFactory)
    process = KrumFactory(1).create(STRUCT, WEIGHT)
    assert str(process.next.type_signature) == (
        "(<state=<>@SERVER,value={<w=float32[2,3],b=float32[2]>}@CLIENTS,weight={float32}@CLIENTS> -> "
        "<state=<>@SERVER,result=<w=float32[2,3],b=float32[2]>@SERVER,"
        "measurements=<num_clients=int32,selected_clients=int32[?]>@SERVER>)"
    )
    assert process.initialize() == ()


def test_factories_are_built_by_name():
    assert isinstance(factory_from_config("coordinate_median"), CoordinateMedianFactory)
    assert repr(factory_from_config({"name": "trimmed_mean", "beta": 0.1})) == (
        "TrimmedMeanFactory(beta=0.1)"
    )
    assert repr(
        factory_from_config({"name": "multi_krum", "num_byzantine": 1, "num_selected": 3})
    ) == ("MultiKrumFactory(num_byzantine=1, num_selected=3)")


# ---- coordinate-wise median


def test_median_of_structs_odd_and_even_counts():
    for n, seed in ((5, 1), (4, 2)):
        rows = _random_rows(n, seed)
        output = _run(CoordinateMedianFactory(), _struct_values(rows))
        np.testing.assert_allclose(_flat(output.result), np.median(rows, axis=0), rtol=1e-6)
        assert output.result["w"].shape == (2, 3)
        assert output.measurements == collections.OrderedDict(num_clients=n)


def test_weighted_median_counts_integer_weights_as_repeated_clients():
    rows = _random_rows(5, seed=3)
    for weights in ([1, 3, 2, 1, 1], [2, 0, 1, 1, 0], [1, 1, 1, 1, 0]):
        output = _run(CoordinateMedianFactory(), _struct_values(rows), weights)
        np.testing.assert_allclose(
            _flat(output.result), _weighted_median_by_repetition(rows, weights), rtol=1e-6
        )
        assert output.measurements["num_clients"] == np.count_nonzero(weights)
    # By hand: 1, 4, 9, 16 weighted 1, 3, 2, 1: half the weight (3.5) is reached at 4.
    hand = _run(
        CoordinateMedianFactory(), [np.float32(v) for v in (9, 1, 16, 4)], [2, 1, 1, 3], SCALAR
    )
    assert hand.result == pytest.approx(4.0)


def test_median_ignores_a_huge_outlier():
    values = [np.float32(v) for v in (1.0, 2.0, 3.0, 1e30)]
    assert _run(CoordinateMedianFactory(), values, value_type=SCALAR).result == pytest.approx(2.5)


# ---- trimmed mean


def test_trimmed_mean_of_structs_matches_sorting_and_slicing():
    for n, beta in ((7, 0.2), (10, 0.3), (4, 0.0)):
        rows = _random_rows(n, seed=n)
        output = _run(TrimmedMeanFactory(beta), _struct_values(rows))
        np.testing.assert_allclose(_flat(output.result), _trimmed_mean(rows, beta), rtol=1e-5)


def test_weighted_trimmed_mean_drops_whole_weights_in_each_tail():
    rows = _random_rows(6, seed=11)
    weights = [1, 3, 2, 0, 1, 2]
    output = _run(TrimmedMeanFactory(0.25), _struct_values(rows), weights)
    np.testing.assert_allclose(
        _flat(output.result), _weighted_trimmed_mean(rows, weights, 0.25), rtol=1e-5
    )
    # Equal weights drop what the unweighted rule drops.
    equal = _run(TrimmedMeanFactory(0.2), _struct_values(rows[:5]), [2, 2, 2, 2, 2])
    np.testing.assert_allclose(_flat(equal.result), _trimmed_mean(rows[:5], 0.2), rtol=1e-5)
    # By hand: 1, 4, 9, 16, 100 weighted 1, 3, 2, 1, 1 (total 8, 1.6 per tail): 1 and 100 go.
    hand = _run(
        TrimmedMeanFactory(0.2),
        [np.float32(v) for v in (1, 4, 9, 16, 100)],
        [1, 3, 2, 1, 1],
        SCALAR,
    )
    assert hand.result == pytest.approx((4 * 3 + 9 * 2 + 16) / 6)


def test_trimmed_mean_drops_an_infinite_value():
    values = [np.float32(v) for v in (1.0, 2.0, 3.0, 4.0, np.inf)]
    assert _run(TrimmedMeanFactory(0.2), values, value_type=SCALAR).result == pytest.approx(3.0)


# ---- Krum and multi-Krum


def test_krum_by_hand():
    values = [np.float32(v) for v in (0.0, 1.0, 2.0, 100.0)]
    # Scores with the 2 nearest others: 0 -> 1 + 4, 1 -> 1 + 1, 2 -> 1 + 4, 100 -> 98**2 + 99**2.
    krum = _run(KrumFactory(0), values, value_type=SCALAR)
    assert krum.result == pytest.approx(1.0)
    np.testing.assert_array_equal(krum.measurements["selected_clients"], [1])
    multi = _run(MultiKrumFactory(0, 2), values, value_type=SCALAR)  # the tie 0 / 2 goes to 0
    assert multi.result == pytest.approx(0.5)
    np.testing.assert_array_equal(multi.measurements["selected_clients"], [0, 1])


def test_krum_and_multi_krum_of_structs_score_whole_values():
    rows = _random_rows(7, seed=21)
    rows[2] += 50.0  # two Byzantine clients
    rows[5] *= -30.0
    scores = _krum_scores(rows.astype(np.float64), f=2)
    order = np.argsort(scores, kind="stable")
    krum = _run(KrumFactory(2), _struct_values(rows))
    np.testing.assert_allclose(_flat(krum.result), rows[order[0]], rtol=1e-6)
    assert list(krum.measurements["selected_clients"]) == [order[0]]
    assert krum.measurements["num_clients"] == 7
    multi = _run(MultiKrumFactory(2, 3), _struct_values(rows))
    chosen = sorted(order[:3])
    assert list(multi.measurements["selected_clients"]) == chosen
    assert not {2, 5} & set(chosen)
    np.testing.assert_allclose(_flat(multi.result), rows[chosen].mean(axis=0), rtol=1e-5)


def test_weighted_multi_krum_averages_with_weights_and_skips_weight_zero():
    rows = _random_rows(6, seed=31)
    weights = [2.0, 1.0, 0.0, 3.0, 1.0, 4.0]
    taking_part = [0, 1, 3, 4, 5]
    scores = _krum_scores(rows[taking_part].astype(np.float64), f=1)
    chosen = sorted(taking_part[i] for i in np.argsort(scores, kind="stable")[:2])
    output = _run(MultiKrumFactory(1, 2), _struct_values(rows), weights)
    assert list(output.measurements["selected_clients"]) == chosen
    assert output.measurements["num_clients"] == 5
    w = np.array([weights[i] for i in chosen])
    np.testing.assert_allclose(
        _flat(output.result), (w[:, None] * rows[chosen]).sum(axis=0) / w.sum(), rtol=1e-5
    )


def test_krum_never_selects_a_value_that_is_not_finite():
    values = [np.float32(v) for v in (np.nan, 1.0, 1.5, 2.0, 9.0)]
    output = _run(KrumFactory(1), values, value_type=SCALAR)
    assert output.result == pytest.approx(1.5)


# ---- Bulyan


def test_bulyan_of_structs_matches_numpy():
    rows = _random_rows(8, seed=41)
    rows[3] = 1000.0
    rows[6] = -rows[6] * 40.0
    expected, selected = _bulyan(rows, f=1)
    output = _run(BulyanFactory(1), _struct_values(rows))
    np.testing.assert_allclose(_flat(output.result), expected, rtol=1e-5)
    assert list(output.measurements["selected_clients"]) == selected
    assert 3 not in selected and len(selected) == 6


def test_weighted_bulyan_with_equal_weights_is_bulyan_and_skips_weight_zero():
    rows = _random_rows(8, seed=43)
    expected, _ = _bulyan(rows[1:], f=1)
    output = _run(BulyanFactory(1), _struct_values(rows), [0, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_allclose(_flat(output.result), expected, rtol=1e-5)
    assert 0 not in output.measurements["selected_clients"]
    # With f = 0 Bulyan averages every value, with their weights.
    values = [np.float32(v) for v in (1.0, 2.0, 4.0)]
    weighted = _run(BulyanFactory(0), values, [1, 2, 1], SCALAR)
    assert weighted.result == pytest.approx((1 + 4 + 4) / 4)


# ---- norm-bounded mean


def test_norm_bounded_mean_clips_global_norms_then_averages():
    values = [
        collections.OrderedDict(
            w=np.full((2, 3), 0.5, np.float32), b=np.array([3.0, 4.0], np.float32)
        ),
        collections.OrderedDict(w=np.zeros((2, 3), np.float32), b=np.array([0.6, 0.8], np.float32)),
    ]
    # Client 0's norm is sqrt(6 * 0.25 + 25) = sqrt(26.5) > 2: scaled by 2 / sqrt(26.5). Client 1's is 1.
    scale = 2.0 / np.sqrt(26.5)
    output = _run(NormBoundedMeanFactory(2.0), values)
    np.testing.assert_allclose(output.result["w"], np.full((2, 3), 0.5 * scale / 2), rtol=1e-6)
    np.testing.assert_allclose(
        output.result["b"], (np.array([3.0, 4.0]) * scale + [0.6, 0.8]) / 2, rtol=1e-6
    )
    assert output.measurements == collections.OrderedDict(clipped_count=1)
    weighted = _run(NormBoundedMeanFactory(2.0), values, [1.0, 3.0])
    np.testing.assert_allclose(
        weighted.result["b"],
        (np.array([3.0, 4.0]) * scale + 3 * np.array([0.6, 0.8])) / 4,
        rtol=1e-6,
    )


def test_norm_bounded_mean_replaces_values_that_are_not_finite():
    values = [np.float32(v) for v in (0.5, np.inf, np.nan, -0.25)]
    output = _run(NormBoundedMeanFactory(1.0), values, value_type=SCALAR)
    assert output.result == pytest.approx(0.25 / 4)
    assert output.measurements["clipped_count"] == 2


# ---- bad arguments


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match=r"beta.*must be in \[0, 0.5\), got 0.5"):
        TrimmedMeanFactory(0.5)
    with pytest.raises(TypeError, match="beta must be a number, got '0.1'"):
        TrimmedMeanFactory("0.1")
    with pytest.raises(ValueError, match="KrumFactory: num_byzantine must be at least 0, got -1"):
        KrumFactory(-1)
    with pytest.raises(TypeError, match="BulyanFactory: num_byzantine must be an int, got 1.5"):
        BulyanFactory(1.5)
    with pytest.raises(ValueError, match="num_selected must be at least 1, got 0"):
        MultiKrumFactory(1, 0)
    with pytest.raises(ValueError, match="norm_bound must be a positive finite number, got 0.0"):
        NormBoundedMeanFactory(0)
    with pytest.raises(ValueError, match="got inf"):
        NormBoundedMeanFactory(float("inf"))


def test_value_and_weight_types_are_checked_at_create():
    with pytest.raises(
        TypeError,
        match=r"CoordinateMedianFactory.create: expected a floating-point tensor or a struct of them, "
        r"got int32\[3\]",
    ):
        CoordinateMedianFactory().create(TensorType(np.int32, [3]))
    with pytest.raises(
        TypeError,
        match=r"KrumFactory.create: expected a numeric scalar weight type, got float32\[2\]",
    ):
        KrumFactory(0).create(STRUCT, TensorType(np.float32, [2]))
    with pytest.raises(TypeError, match="expected at least one tensor to aggregate, got <>"):
        NormBoundedMeanFactory(1.0).create(StructType([]))


def test_too_few_clients_are_refused_before_the_rule_runs():
    values = [np.float32(v) for v in range(5)]
    with pytest.raises(
        ValueError,
        match=r"BulyanFactory needs n >= 4 \* num_byzantine \+ 3 = 7 clients \(num_byzantine = 1\); "
        r"got n = 5",
    ):
        _run(BulyanFactory(1), values, value_type=SCALAR)
    with pytest.raises(
        ValueError,
        match=r"KrumFactory needs n >= 2 \* num_byzantine \+ 3 = 5 clients with a positive weight "
        r"\(num_byzantine = 1\); got n = 4",
    ):
        _run(KrumFactory(1), values, [1, 1, 0, 1, 1], SCALAR)
    with pytest.raises(ValueError, match=r"num_selected \+ num_byzantine\) = 6 clients"):
        _run(MultiKrumFactory(1, 5), values, value_type=SCALAR)
    with pytest.raises(
        ValueError, match="CoordinateMedianFactory needs at least one client; got n = 0"
    ):
        _run(CoordinateMedianFactory(), [], value_type=SCALAR)


def test_inside_another_computation_too_few_clients_are_refused_when_the_rule_runs():
    process = KrumFactory(1).create(SCALAR)

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def krum_of(values):
        return process.next(process.initialize(), values).result

    assert krum_of([np.float32(v) for v in (1, 2, 3, 4, 100)]) == pytest.approx(2.0)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"KrumFactory needs n >= 2 \* num_byzantine \+ 3 = 5 clients \(num_byzantine = 1\); "
        r"got n = 2",
    ):
        krum_of([np.float32(1.0), np.float32(2.0)])


def test_negative_or_infinite_weights_are_refused():
    values = [np.float32(1.0), np.float32(2.0)]
    with pytest.raises(
        ValueError,
        match="TrimmedMeanFactory: client weights must be finite non-negative numbers; client 1 has "
        "weight -1",
    ):
        _run(TrimmedMeanFactory(0.1), values, [1.0, -1.0], SCALAR)
    with pytest.raises(ValueError, match="client 0 has weight inf"):
        _run(CoordinateMedianFactory(), values, [np.inf, 1.0], SCALAR)
    process = TrimmedMeanFactory(0.1).create(SCALAR, WEIGHT)

    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS), FederatedType(np.float32, CLIENTS)
    )
    def trimmed_mean_of(values, weights):
        return process.next(process.initialize(), values, weights).result

    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="TrimmedMeanFactory: client weights must be finite non-negative numbers; got",
    ):
        trimmed_mean_of(values, [np.float32(1.0), np.float32(-1.0)])


def test_a_client_sending_nan_is_treated_as_an_extreme_value():
    values = [np.array([1.0, 5.0], np.float32), np.array([np.nan, np.nan], np.float32)]
    values.append(np.array([2.0, 6.0], np.float32))
    median = CoordinateMedianFactory().create(TensorType(np.float32, [2]))
    np.testing.assert_allclose(median.next(median.initialize(), values).result, [2.0, 6.0])
    more = values + [np.array([3.0, 7.0], np.float32), np.array([4.0, 8.0], np.float32)]
    trimmed = TrimmedMeanFactory(beta=0.2).create(TensorType(np.float32, [2]))
    # Five clients, one trimmed at each end: the NaN client and the lowest.
    np.testing.assert_allclose(trimmed.next(trimmed.initialize(), more).result, [3.0, 7.0])
