"""Quantile estimation, clipping and zeroing: the processes' numbers against hand computations, their
measurements' names, weightedness taken from the inner factory, and bad arguments."""

import collections
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from fed_aggregators import (
    MeanFactory,
    PrivateQuantileEstimationProcess,
    SumFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    WeightedAggregationFactory,
    clipping_factory,
    zeroing_factory,
)
from fed_core.templates import EstimationProcess
from fed_types import StructType, TensorType

VECTOR = TensorType(np.float32, [2])
MIXED = StructType(
    [("w", TensorType(np.float32, [2])), ("b", TensorType(np.float64))], collections.OrderedDict
)


def _value(w, b):
    return collections.OrderedDict(w=np.array(w, np.float32), b=np.float64(b))


def test_no_noise_quantile_estimate_moves_geometrically():
    process = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.5, learning_rate=0.2
    )
    assert isinstance(process, EstimationProcess)
    assert str(process.report.type_signature).endswith("-> float32@SERVER)")
    state = process.initialize()
    assert process.report(state) == pytest.approx(1.0)
    # One of four values is at most 1.0: the estimate rises by exp(-0.2 * (0.25 - 0.5)).
    state = process.next(state, [0.5, 2.0, 3.0, 4.0])
    expected = math.exp(0.2 * 0.25)
    assert process.report(state) == pytest.approx(expected, rel=1e-6)
    # All values below: it falls by exp(-0.2 * 0.5).
    state = process.next(state, [0.1, 0.2])
    assert process.report(state) == pytest.approx(expected * math.exp(-0.1), rel=1e-6)
    # A round without clients keeps it.
    before = process.report(state)
    assert process.report(process.next(state, [])) == pytest.approx(before)


def test_no_noise_quantile_converges_to_the_quantile():
    process = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.8, learning_rate=0.2
    )
    values = list(np.linspace(1.0, 100.0, 50, dtype=np.float32))
    state = process.initialize()
    for _ in range(120):
        state = process.next(state, values)
    assert np.quantile(values, 0.75) <= process.report(state) <= np.quantile(values, 0.85)


def test_no_noise_affine_report():
    process = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=10.0,
        target_quantile=0.98,
        learning_rate=math.log(10),
        multiplier=2.0,
        increment=1.0,
    )
    state = process.initialize()
    assert process.report(state) == pytest.approx(21.0)
    state = process.next(state, [100.0])  # nothing below: the estimate grows tenfold ** 0.98
    assert process.report(state) == pytest.approx(2 * 10.0 * 10**0.98 + 1, rel=1e-5)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(initial_estimate=0.0), "initial_estimate must be positive, got 0.0"),
        (dict(target_quantile=1.5), r"target_quantile must be in \[0.0, 1.0\], got 1.5"),
        (dict(learning_rate=-1.0), "learning_rate must be positive"),
        (dict(increment=-0.5), "increment must be non-negative"),
        (dict(initial_estimate="1"), "initial_estimate must be a number, got '1'"),
    ],
)
def test_no_noise_refuses_bad_arguments(arguments, message):
    full = dict(initial_estimate=1.0, target_quantile=0.5, learning_rate=0.2) | arguments
    with pytest.raises((ValueError, TypeError), match=message):
        PrivateQuantileEstimationProcess.no_noise(**full)


def test_clipping_projects_on_the_l2_ball_of_the_whole_structure():
    process = clipping_factory(1.0, SumFactory()).create(MIXED)
    state = process.initialize()
    # Norms: 5 (clipped to 1) and 0.5 (kept).
    output = process.next(state, [_value([3.0, 0.0], 4.0), _value([0.3, 0.0], 0.4)])
    np.testing.assert_allclose(output.result["w"], [0.6 + 0.3, 0.0], rtol=1e-6)
    assert output.result["b"] == pytest.approx(0.8 + 0.4)
    assert output.result["b"].dtype == np.float64  # mixed float widths are kept
    assert list(output.measurements) == ["clipping", "clipping_norm", "clipped_count"]
    assert output.measurements["clipped_count"] == 1
    assert output.measurements["clipping_norm"] == pytest.approx(1.0)


def test_clipping_weighted_from_its_inner_factory():
    factory = clipping_factory(1.0, MeanFactory())
    assert isinstance(factory, WeightedAggregationFactory)
    assert not isinstance(factory, UnweightedAggregationFactory)
    process = factory.create(VECTOR, TensorType(np.float32))
    output = process.next(
        process.initialize(),
        [np.array([3.0, 4.0], np.float32), np.array([0.3, 0.4], np.float32)],
        [1.0, 3.0],
    )
    np.testing.assert_allclose(output.result, (np.array([0.6, 0.8]) + 3 * np.array([0.3, 0.4])) / 4)
    assert isinstance(clipping_factory(1.0, UnweightedMeanFactory()), UnweightedAggregationFactory)


def test_adaptive_clipping_follows_the_estimation_process():
    norm = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.5, learning_rate=0.2
    )
    process = clipping_factory(norm, UnweightedMeanFactory()).create(VECTOR)
    state = process.initialize()
    values = [np.array([10.0, 0.0], np.float32)] * 4
    norms = []
    for _ in range(3):
        output = process.next(state, values)
        state = output.state
        norms.append(float(output.measurements["clipping_norm"]))
        np.testing.assert_allclose(output.result, [norms[-1], 0.0], rtol=1e-6)
    # All norms exceed the clip: it grows by exp(0.2 * 0.5) per round.
    np.testing.assert_allclose(norms, [1.0, math.exp(0.1), math.exp(0.2)], rtol=1e-6)


@pytest.mark.parametrize(
    "order, zeroed",
    [(math.inf, [False, True, False]), (2.0, [False, True, True]), (1.0, [True, True, True])],
)
def test_zeroing_by_norm_order(order, zeroed):
    process = zeroing_factory(3.5, SumFactory(), norm_order=order).create(VECTOR)
    values = [
        np.array([2.5, 2.0], np.float32),  # inf 2.5, l2 3.2, l1 4.5
        np.array([4.0, 0.0], np.float32),  # inf 4, l2 4, l1 4
        np.array([3.0, 2.0], np.float32),  # inf 3, l2 3.6, l1 5
    ]
    output = process.next(process.initialize(), values)
    kept = sum(v for v, z in zip(values, zeroed) if not z)
    np.testing.assert_allclose(output.result, kept if isinstance(kept, np.ndarray) else [0.0, 0.0])
    assert output.measurements["zeroed_count"] == sum(zeroed)
    assert list(output.measurements) == ["zeroing", "zeroing_norm", "zeroed_count"]


def test_zeroed_value_keeps_its_weight():
    process = zeroing_factory(1.0, MeanFactory()).create(VECTOR, TensorType(np.float32))
    output = process.next(
        process.initialize(),
        [np.array([100.0, 0.0], np.float32), np.array([0.5, 0.5], np.float32)],
        [1.0, 1.0],
    )
    np.testing.assert_allclose(output.result, [0.25, 0.25])


def test_tutorial_pipeline_nests_measurements():
    zeroing_norm = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=10.0,
        target_quantile=0.98,
        learning_rate=math.log(10),
        multiplier=2.0,
        increment=1.0,
    )
    clipping_norm = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.8, learning_rate=0.2
    )
    factory = zeroing_factory(zeroing_norm, clipping_factory(clipping_norm, MeanFactory()))
    process = factory.create(VECTOR, TensorType(np.float32))
    output = process.next(process.initialize(), [np.array([0.3, 0.4], np.float32)] * 2, [1.0, 2.0])
    np.testing.assert_allclose(output.result, [0.3, 0.4], rtol=1e-6)
    inner = output.measurements["zeroing"]
    assert set(inner) == {"clipping", "clipping_norm", "clipped_count"}
    assert inner["clipped_count"] == 0


def test_bad_arguments_are_refused_early():
    with pytest.raises(
        ValueError, match="clipping_factory: clipping_norm must be positive, got -1"
    ):
        clipping_factory(-1.0, SumFactory())
    with pytest.raises(TypeError, match="inner_agg_factory must be an aggregation factory"):
        clipping_factory(1.0, "mean")
    with pytest.raises(ValueError, match="norm_order must be 1.0, 2.0 or inf, got 3.0"):
        zeroing_factory(1.0, SumFactory(), norm_order=3.0)
    with pytest.raises(
        TypeError, match="expected a floating-point tensor or a struct of them, got int32"
    ):
        clipping_factory(1.0, SumFactory()).create(TensorType(np.int32))
    wrong_process = PrivateQuantileEstimationProcess.no_noise(1.0, 0.5, 0.2)
    with pytest.raises(TypeError, match="must be a positive number or an EstimationProcess"):
        clipping_factory(wrong_process.initialize, SumFactory())
