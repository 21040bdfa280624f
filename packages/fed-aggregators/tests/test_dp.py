"""Differential privacy: DifferentiallyPrivateFactory on tensorflow-privacy's queries (clipping, the noise's
scale checked statistically with fixed seeds, seeds in the state, the adaptive split, DP events) and the
accounting in fed_aggregators.dp, checked against dp-accounting directly."""

import collections
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow_privacy") is None:
    pytest.skip(
        "the dp extra's tensorflow-privacy installs on Python < 3.12 only", allow_module_level=True
    )
dp_accounting = pytest.importorskip("dp_accounting")

from fed_aggregators import (  # noqa: E402
    DifferentiallyPrivateFactory,
    SumFactory,
    dp,
    extract_dp_event_from_state,
    factory_from_config,
)
from fed_aggregators._dp import adaptive_clip_noise_params, import_dp_query  # noqa: E402
from fed_types import StructType, TensorType  # noqa: E402

MIXED = StructType(
    [("a", TensorType(np.float32, [3])), ("b", TensorType(np.float32))], collections.OrderedDict
)


def _value(a, b):
    return collections.OrderedDict(a=np.array(a, np.float32), b=np.float32(b))


def test_gaussian_fixed_without_noise_clips_by_global_norm_and_divides_by_clients_per_round():
    process = DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier=0.0, clients_per_round=4, clip=1.0
    ).create(MIXED)
    output = process.next(process.initialize(), [_value([3, 0, 0], 4), _value([0.1, 0, 0], 0)])
    # (0.6, 0, 0, 0.8) + (0.1, 0, 0, 0) over 4 clients per round, not the 2 that came.
    np.testing.assert_allclose(output.result["a"], [0.7 / 4, 0, 0], rtol=1e-6)
    assert output.result["b"] == pytest.approx(0.8 / 4)
    assert output.measurements == collections.OrderedDict(
        dp_query_metrics=collections.OrderedDict(), dp=()
    )


def test_gaussian_noise_has_the_promised_scale():
    size, noise_multiplier, clip, clients_per_round = 20000, 2.0, 0.5, 10
    process = DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier, clients_per_round, clip, noise_seed=7
    ).create(TensorType(np.float32, [size]))
    output = process.next(process.initialize(), [np.zeros(size, np.float32)])
    noise = output.result * clients_per_round
    expected = noise_multiplier * clip
    # The sample stddev of 20,000 draws is within 3% of the true one far beyond 5 sigma.
    assert np.std(noise) == pytest.approx(expected, rel=0.03)
    assert abs(np.mean(noise)) < 5 * expected / math.sqrt(size)


def test_noise_is_reproducible_with_a_seed_and_fresh_without():
    def run(seed):
        process = DifferentiallyPrivateFactory.gaussian_fixed(1.0, 2, 1.0, noise_seed=seed).create(
            TensorType(np.float32, [8])
        )
        state = process.initialize()
        first = process.next(state, [np.ones(8, np.float32)])
        second = process.next(first.state, [np.ones(8, np.float32)])
        return first.result, second.result

    a1, a2 = run(3)
    b1, b2 = run(3)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(a1, a2)  # the seed advances every round
    c1, _ = run(4)
    assert not np.allclose(a1, c1)
    d1, _ = run(None)
    e1, _ = run(None)
    assert not np.allclose(d1, e1)


def test_gaussian_adaptive_splits_the_noise_and_carries_the_event():
    noise_multiplier, clients_per_round = 0.5, 20.0
    value_nm, count_stddev = adaptive_clip_noise_params(noise_multiplier, clients_per_round, None)
    assert count_stddev == pytest.approx(0.05 * clients_per_round)
    # The two mechanisms compose to the total noise multiplier.
    assert value_nm**-2 + (2 * count_stddev) ** -2 == pytest.approx(noise_multiplier**-2)
    factory = DifferentiallyPrivateFactory.gaussian_adaptive(noise_multiplier, clients_per_round)
    process = factory.create(TensorType(np.float32, [2]))
    state = process.initialize()
    with pytest.raises(dp.ExtractingDpEventFromInitialStateError, match="placeholder"):
        extract_dp_event_from_state(state)
    output = process.next(state, [np.ones(2, np.float32)] * 3)
    event = extract_dp_event_from_state(output.state)
    assert isinstance(event, dp_accounting.ComposedDpEvent)
    value_event, count_event = event.events
    assert value_event.noise_multiplier == pytest.approx(value_nm, rel=1e-5)
    assert count_event.noise_multiplier == pytest.approx(2 * count_stddev, rel=1e-5)
    assert "clip" in output.measurements["dp_query_metrics"]


def test_gaussian_adaptive_clip_grows_toward_the_quantile_without_noise():
    process = DifferentiallyPrivateFactory.gaussian_adaptive(
        noise_multiplier=0.0, clients_per_round=4, initial_l2_norm_clip=0.1
    ).create(TensorType(np.float32, [2]))
    state = process.initialize()
    clips = []
    for _ in range(3):
        output = process.next(state, [np.array([3.0, 4.0], np.float32)] * 4)
        state = output.state
        clips.append(float(output.measurements["dp_query_metrics"]["clip"]))
        # Every value has norm 5 > the clip in force: the mean is the clip along (0.6, 0.8).
    # No value is below the clip: it grows by exp(0.2 * 0.5) each round.
    np.testing.assert_allclose(clips, [0.1 * math.exp(0.1 * k) for k in (1, 2, 3)], rtol=1e-5)


def test_gaussian_adaptive_refuses_what_tff_refuses():
    too_low = r"clipped_count_stddev = 0.5 \(0.05 \* clients_per_round unless given\) is too low"
    with pytest.raises(ValueError, match=too_low):
        DifferentiallyPrivateFactory.gaussian_adaptive(noise_multiplier=1.0, clients_per_round=10)
    with pytest.raises(ValueError, match="clients_per_round must be positive, got 0.0"):
        DifferentiallyPrivateFactory.gaussian_fixed(1.0, 0, 1.0)
    with pytest.raises(ValueError, match=r"target_unclipped_quantile must be in \[0.0, 1.0\]"):
        DifferentiallyPrivateFactory.gaussian_adaptive(0.1, 10, target_unclipped_quantile=2.0)
    with pytest.raises(TypeError, match="expected a tensorflow-privacy SumAggregationDPQuery"):
        DifferentiallyPrivateFactory("gaussian")
    with pytest.raises(TypeError, match="expected a numeric tensor or a struct of them, got str"):
        DifferentiallyPrivateFactory.gaussian_fixed(1.0, 2, 1.0).create(TensorType(np.str_))


def test_any_dp_query_and_record_aggregation_factory():
    gaussian = import_dp_query("gaussian_query")
    query = gaussian.GaussianSumQuery(l2_norm_clip=2.0, stddev=0.0)
    process = DifferentiallyPrivateFactory(query, SumFactory()).create(TensorType(np.float32, [2]))
    output = process.next(process.initialize(), [np.array([6.0, 8.0], np.float32)] * 2)
    np.testing.assert_allclose(output.result, [2.4, 3.2], rtol=1e-6)
    assert type(query).__name__ == "GaussianSumQuery"  # the user's query is not changed


def test_tree_aggregation_residuals_and_seeds():
    import tensorflow as tf

    specs = tf.TensorSpec([4], tf.float32)

    def run():
        factory = DifferentiallyPrivateFactory.tree_aggregation(
            noise_multiplier=1.0,
            clients_per_round=1,
            l2_norm_clip=1.0,
            record_specs=specs,
            noise_seed=1,
        )
        process = factory.create(TensorType(np.float32, [4]))
        state, results = process.initialize(), []
        for _ in range(3):
            output = process.next(state, [np.zeros(4, np.float32)])
            state, results = output.state, results + [output.result]
        return results

    first, second = run(), run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert np.std(np.concatenate(first)) > 0.1  # noisy
    with pytest.raises(NotImplementedError, match="QAdaClipTreeResSumQuery"):
        DifferentiallyPrivateFactory.tree_adaptive(1.0, 10, specs)
    mismatched = DifferentiallyPrivateFactory.tree_aggregation(1.0, 1, 1.0, [specs])
    with pytest.raises(
        TypeError, match=r"record_specs .* do not match the value type float32\[4\]"
    ):
        mismatched.create(TensorType(np.float32, [4]))


def test_dp_pipeline_from_config():
    factory = factory_from_config(
        "zeroing(zeroing_norm=10.0) -> dp_gaussian_fixed(noise_multiplier=0.0, clients_per_round=2, clip=1.0)"
    )
    process = factory.create(TensorType(np.float32, [2]))
    output = process.next(
        process.initialize(), [np.array([30.0, 0.0], np.float32), np.array([3.0, 4.0], np.float32)]
    )
    np.testing.assert_allclose(output.result, [0.3, 0.4], rtol=1e-6)
    assert output.measurements["zeroed_count"] == 1


def test_a_round_run_twice_from_one_state_gets_independent_noise_unless_seeded():
    value_type = TensorType(np.float32, [64])
    values = [np.zeros(64, np.float32)]
    fresh = DifferentiallyPrivateFactory.gaussian_fixed(1.0, 1, 1.0).create(value_type)
    state = fresh.initialize()
    first, again = fresh.next(state, values).result, fresh.next(state, values).result
    # Equal noise would let the difference of two releases cancel it.
    assert not np.allclose(first, again)
    seeded = DifferentiallyPrivateFactory.gaussian_fixed(1.0, 1, 1.0, noise_seed=2).create(
        value_type
    )
    state = seeded.initialize()
    np.testing.assert_array_equal(
        seeded.next(state, values).result, seeded.next(state, values).result
    )


def test_gaussians_nested_in_a_nested_query_draw_seeded_noise():
    gaussian = import_dp_query("gaussian_query")
    nested = import_dp_query("nested_query")
    query = nested.NestedSumQuery(
        [gaussian.GaussianSumQuery(1.0, 1.0), gaussian.GaussianSumQuery(1.0, 2.0)]
    )
    value_type = StructType([TensorType(np.float32, [2000]), TensorType(np.float32, [2000])])
    factory = DifferentiallyPrivateFactory(query, noise_seed=1)
    assert all(type(q).__name__ == "SeededGaussianSumQuery" for q in factory.query._queries)
    process = factory.create(value_type)
    zeros = (np.zeros(2000, np.float32), np.zeros(2000, np.float32))
    result = process.next(process.initialize(), [zeros]).result
    assert np.std(result[0]) == pytest.approx(1.0, rel=0.1)
    assert np.std(result[1]) == pytest.approx(2.0, rel=0.1)
    np.testing.assert_array_equal(result[0], process.next(process.initialize(), [zeros]).result[0])


def test_a_tree_range_query_gives_its_ragged_result_as_flat_values_and_row_splits():
    tree_range = import_dp_query("tree_range_query")
    query = tree_range.TreeRangeSumQuery.build_central_gaussian_query(100.0, 0.0)
    process = DifferentiallyPrivateFactory(query).create(TensorType(np.float32, [4]))
    output = process.next(
        process.initialize(),
        [np.array([1, 2, 3, 4], np.float32), np.array([0, 1, 0, 1], np.float32)],
    )
    # The binary tree over 4 leaves: the total, the two halves, the leaves.
    np.testing.assert_allclose(output.result["flat_values"], [12, 4, 8, 1, 3, 3, 5], rtol=1e-6)
    np.testing.assert_array_equal(output.result["nested_row_splits"][0], [0, 1, 3, 7])


def test_integer_values_with_a_no_privacy_query():
    no_privacy = import_dp_query("no_privacy_query")
    process = DifferentiallyPrivateFactory(no_privacy.NoPrivacySumQuery()).create(
        TensorType(np.int32, [2])
    )
    output = process.next(process.initialize(), [np.array([1, 2], np.int32)] * 3)
    np.testing.assert_array_equal(output.result, [3, 6])
