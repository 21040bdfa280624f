"""Secure sums: results against numpy, clipping and its measurements, float quantization error, bounds
that follow estimation processes, modular sums, refused overflows and refused arguments."""

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import factory_from_config
from fed_aggregators._secure import SecureModularSumFactory, SecureSumFactory
from fed_core.framework import get_map_reduce_form, run_map_reduce_form
from fed_core.templates import EstimationProcess
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType

QUANTIZATION_LEVELS = 2**32 - 1


def _struct(dtype):
    return StructType(
        [("w", TensorType(dtype, [3])), ("b", TensorType(dtype))], collections.OrderedDict
    )


def _struct_values(dtype, rows):
    return [
        collections.OrderedDict(w=np.array(w, dtype), b=np.asarray(b, dtype=dtype)) for w, b in rows
    ]


def _counts(measurements):
    return (
        int(measurements["secure_upper_clipped_count"]),
        int(measurements["secure_lower_clipped_count"]),
    )


def _thresholds(measurements):
    return (
        measurements["secure_upper_threshold"].item(),
        measurements["secure_lower_threshold"].item(),
    )


def _estimation_process(initial, update):
    """A float32 estimate at SERVER: doubled every round ("double"), or replaced by the largest
    ("max") or smallest ("min") of the values the clients send."""

    @ftf.computation
    def start():
        return tf.constant(initial, tf.float32)

    @ftf.computation(np.float32)
    def double(estimate):
        return 2.0 * estimate

    @fc.federated_computation
    def initialize():
        return fc.federated_eval(start, SERVER)

    @fc.federated_computation(initialize.type_signature.result, FederatedType(np.float32, CLIENTS))
    def next_fn(state, value):
        if update == "double":
            return fc.federated_map(double, state)
        return fc.federated_max(value) if update == "max" else fc.federated_min(value)

    @fc.federated_computation(initialize.type_signature.result)
    def report(state):
        return state

    return EstimationProcess(initialize, next_fn, report)


# ---- integer values


def test_integer_sum_equals_the_plain_sum_within_the_bounds():
    process = SecureSumFactory(100).create(TensorType(np.int32, [3]))
    assert str(process.next.type_signature) == (
        "(<state=<>@SERVER,value={int32[3]}@CLIENTS> -> <state=<>@SERVER,result=int32[3]@SERVER,"
        "measurements=<secure_upper_clipped_count=int32,secure_lower_clipped_count=int32,"
        "secure_upper_threshold=int32,secure_lower_threshold=int32>@SERVER>)"
    )
    values = [np.array(v, np.int32) for v in ([100, -100, 7], [-3, 99, 0], [55, 1, -100])]
    output = process.next(process.initialize(), values)
    assert output.result.dtype == np.int32
    np.testing.assert_array_equal(output.result, [152, 0, -93])
    assert _counts(output.measurements) == (0, 0)
    assert _thresholds(output.measurements) == (100, -100)
    assert output.state == ()


def test_integer_struct_is_clipped_to_asymmetric_bounds_and_clipped_clients_counted():
    process = SecureSumFactory(np.int64(10), np.int64(-2)).create(_struct(np.int64))
    values = _struct_values(
        np.int64,
        [
            ([1, 2, 3], 4),  # within the bounds
            ([11, -5, 0], 10),  # above and below
            ([-2, 0, 30], -1),  # above
            ([0, 0, -7], 0),  # below
        ],
    )
    output = process.next(process.initialize(), values)
    np.testing.assert_array_equal(
        output.result["w"],
        np.sum([np.clip(v["w"], -2, 10) for v in values], axis=0),
    )
    assert output.result["w"].tolist() == [1 + 10 - 2 + 0, 2 - 2 + 0 + 0, 3 + 0 + 10 - 2]
    assert output.result["b"] == 4 + 10 - 1 + 0
    # A client counts once for each bound it crossed, in any of its tensors.
    assert _counts(output.measurements) == (2, 2)
    assert _thresholds(output.measurements) == (10, -2)


def test_unsigned_values_with_a_nonnegative_range():
    process = SecureSumFactory(200, 5).create(TensorType(np.uint8, [2]))
    output = process.next(process.initialize(), [np.array([3, 200], np.uint8)])
    assert output.result.dtype == np.uint8
    np.testing.assert_array_equal(output.result, [5, 200])
    assert _counts(output.measurements) == (0, 1)


# ---- float values


def test_float_struct_sum_is_within_one_quantization_step_per_client():
    rng = np.random.default_rng(0)
    upper, lower = 2.0, -1.0
    process = SecureSumFactory(upper, lower).create(_struct(np.float32))
    rows = [(rng.uniform(lower, upper, 3), rng.uniform(lower, upper)) for _ in range(4)]
    values = _struct_values(np.float32, rows)
    output = process.next(process.initialize(), values)
    step = (upper - lower) / QUANTIZATION_LEVELS
    for key in ("w", "b"):
        expected = np.sum([v[key].astype(np.float64) for v in values], axis=0)
        assert output.result[key].dtype == np.float32
        # Each client's code is within half a step; the float32 result rounds once more.
        np.testing.assert_allclose(output.result[key], expected, rtol=2**-23, atol=4 * step / 2)
    assert _counts(output.measurements) == (0, 0)
    assert _thresholds(output.measurements) == (2.0, -1.0)


def test_float64_quantization_error_is_visible_and_at_most_half_a_step():
    bound = 1.0e6
    step = 2 * bound / QUANTIZATION_LEVELS  # about 4.7e-4
    process = SecureSumFactory(bound).create(TensorType(np.float64, [4]))
    value = np.array([0.1234567, -98765.4321, 3.3e-5, 999999.99], np.float64)
    result = process.next(process.initialize(), [value]).result
    error = np.abs(result - value)
    assert np.all(error <= step / 2 + 1e-9)
    assert np.any(error > step / 100)  # the values really went through 32-bit codes
    # Zeros come back exactly, whatever the bounds.
    zeros = process.next(process.initialize(), [np.zeros(4), np.zeros(4), np.zeros(4)]).result
    np.testing.assert_array_equal(zeros, np.zeros(4))


def test_float_values_are_clipped_and_counted():
    process = SecureSumFactory(1.5).create(TensorType(np.float32, [2]))
    values = [np.array(v, np.float32) for v in ([4.0, 0.5], [-0.25, -9.0], [1.0, 1.0])]
    output = process.next(process.initialize(), values)
    np.testing.assert_allclose(output.result, [1.5 - 0.25 + 1.0, 0.5 - 1.5 + 1.0], atol=1e-6)
    assert _counts(output.measurements) == (1, 1)
    assert _thresholds(output.measurements) == (1.5, -1.5)


# ---- bounds from estimation processes


def test_single_estimation_process_sets_symmetric_bounds_and_follows_the_largest_magnitude():
    process = SecureSumFactory(_estimation_process(1.0, "max")).create(TensorType(np.float32, [2]))
    state = process.initialize()
    assert state == pytest.approx(1.0)
    values = [np.array([3.0, -0.5], np.float32), np.array([0.5, -5.0], np.float32)]
    output = process.next(state, values)
    # Round 1 clips to [-1, 1]; the estimate becomes the largest |value| a client held: 5.
    np.testing.assert_allclose(output.result, [1.0 + 0.5, -0.5 - 1.0], atol=1e-6)
    assert _counts(output.measurements) == (1, 1)
    assert _thresholds(output.measurements) == (1.0, -1.0)
    assert output.state == pytest.approx(5.0)
    output = process.next(output.state, values)
    np.testing.assert_allclose(output.result, [3.5, -5.5], atol=1e-5)
    assert _counts(output.measurements) == (0, 0)
    assert _thresholds(output.measurements) == (5.0, -5.0)


def test_doubling_estimate_widens_the_bounds_every_round():
    process = SecureSumFactory(_estimation_process(0.5, "double")).create(np.float64)
    state = process.initialize()
    values = [np.float64(3.0), np.float64(-1.5)]
    for bound in (0.5, 1.0, 2.0, 4.0):
        output = process.next(state, values)
        assert _thresholds(output.measurements) == (bound, -bound)
        expected = np.clip(3.0, -bound, bound) + np.clip(-1.5, -bound, bound)
        assert output.result == pytest.approx(expected, abs=1e-8)
        assert _counts(output.measurements) == (int(bound < 3.0), int(bound < 1.5))
        state = output.state
    assert state == pytest.approx(8.0)


def test_two_estimation_processes_follow_the_largest_and_smallest_values():
    factory = SecureSumFactory(_estimation_process(1.0, "max"), _estimation_process(-1.0, "min"))
    process = factory.create(TensorType(np.float32, [2]))
    values = [np.array([3.0, -0.5], np.float32), np.array([0.5, -5.0], np.float32)]
    output = process.next(process.initialize(), values)
    np.testing.assert_allclose(output.result, [1.5, -1.5], atol=1e-6)
    assert output.state == (pytest.approx(3.0), pytest.approx(-5.0))
    output = process.next(output.state, values)
    assert _thresholds(output.measurements) == (3.0, -5.0)
    np.testing.assert_allclose(output.result, [3.5, -5.5], atol=1e-5)
    assert _counts(output.measurements) == (0, 0)


def test_estimates_that_cross_are_refused_and_equal_ones_give_the_bound():
    crossed = SecureSumFactory(_estimation_process(-1.0, "max"), _estimation_process(1.0, "min"))
    process = crossed.create(np.float32)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="estimated upper bound -1 is below the lower bound 1"
    ):
        process.next(process.initialize(), [np.float32(0.0)])
    negative = SecureSumFactory(_estimation_process(-2.0, "max")).create(np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="upper bound -2 is below .* 2"):
        negative.next(negative.initialize(), [np.float32(0.0)])
    equal = SecureSumFactory(_estimation_process(0.5, "max"), _estimation_process(0.5, "min"))
    process = equal.create(np.float32)
    output = process.next(process.initialize(), [np.float32(-3.0), np.float32(0.2)])
    assert output.result == pytest.approx(1.0)
    assert _counts(output.measurements) == (0, 2)


def test_rounds_split_into_map_reduce_form_with_the_same_results():
    # Bounds come from the state and the overflow checks run on the server after the sums, so a round
    # keeps the one broadcast, one aggregation shape that MapReduce form needs.
    process = SecureSumFactory(_estimation_process(1.0, "max")).create(TensorType(np.float32, [2]))

    @fc.federated_computation(
        process.state_type, FederatedType(TensorType(np.float32, [2]), CLIENTS)
    )
    def one_round(state, value):
        output = process.next(state, value)
        return output.state, fc.federated_zip((output.result, output.measurements))

    form = get_map_reduce_form(one_round)
    values = [np.array([3.0, -0.5], np.float32), np.array([0.5, -5.0], np.float32)]
    state = process.initialize()
    new_state, (result, measurements) = run_map_reduce_form(form, state, values)
    direct = process.next(state, values)
    assert new_state == pytest.approx(direct.state)
    np.testing.assert_array_equal(result, direct.result)
    assert measurements == direct.measurements


def test_mean_of_secure_sums_with_bounds_from_a_quantile_estimate():
    # The flow of the tuning tutorial: the bound follows twice the 95th percentile of the clients'
    # largest absolute (weighted) values.
    from fed_aggregators import MeanFactory
    from fed_aggregators._quantile import PrivateQuantileEstimationProcess

    bound = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=50.0, target_quantile=0.95, learning_rate=1.0, multiplier=2.0
    )
    process = MeanFactory(SecureSumFactory(bound)).create(_struct(np.float32), np.float32)
    values = _struct_values(
        np.float32, [([1.0, -2.0, 3.0], 0.5), ([4.0, 0.0, -6.0], 2.0), ([-1.0, 8.0, 0.25], -3.0)]
    )
    weights = [1.0, 2.0, 1.0]
    expected = {
        key: np.sum([w * v[key] for v, w in zip(values, weights)], axis=0) / 4.0
        for key in ("w", "b")
    }
    state = process.initialize()
    estimate = 50.0
    for _ in range(2):
        output = process.next(state, values, weights)
        measurements = output.measurements["mean_value"]
        assert _thresholds(measurements) == pytest.approx((2 * estimate, -2 * estimate))
        assert _counts(measurements) == (0, 0)
        for key in ("w", "b"):
            np.testing.assert_allclose(output.result[key], expected[key], atol=1e-6)
        # Every client's largest value is below the estimate: it shrinks by exp(-(1 - 0.95)).
        estimate *= np.exp(-1.0 * (1.0 - 0.95))
        state = output.state


# ---- overflow


def test_bounds_that_do_not_fit_the_dtype_or_the_secure_sum_are_refused_up_front():
    with pytest.raises(ValueError, match=r"upper bound 1099511627776 does not fit .* dtype int32"):
        SecureSumFactory(2**40).create(TensorType(np.int32, [2]))
    with pytest.raises(ValueError, match="lower bound -1 does not fit the values' dtype uint8"):
        SecureSumFactory(1).create(np.uint8)
    with pytest.raises(
        ValueError,
        match=r"range \[-4611686018427387904, 4611686018427387904\] "
        "needs 64 bits per client, more than the 62 bits",
    ):
        SecureSumFactory(2**62)


def test_sums_that_could_overflow_the_dtype_are_refused_naming_the_clients():
    process = SecureSumFactory(2**30).create(np.int32)
    assert process.next(process.initialize(), [np.int32(2**30)]).result == 2**30
    with pytest.raises(
        ValueError,
        match=r"summing the values of 2 clients, int32 clipped to \[-1073741824, 1073741824\], "
        r"can overflow the range of int32; the limit is 1 clients",
    ):
        # Within the bounds, yet 2 * 2**30 does not fit int32: refused rather than wrapped.
        process.next(process.initialize(), [np.int32(1), np.int32(2)])
    process = SecureSumFactory(200, 0).create(np.uint8)
    with pytest.raises(ValueError, match="3 clients, uint8 .* range of uint8"):
        process.next(process.initialize(), [np.uint8(1)] * 3)


def test_float_sums_that_could_overflow_the_dtype_are_refused():
    process = SecureSumFactory(1000.0).create(np.float16)
    assert process.next(process.initialize(), [np.float16(0.5)] * 65).result == 32.5
    with pytest.raises(
        ValueError,
        match=r"66 clients, float16 clipped to \[-1000, 1000\], can overflow the range of float16",
    ):
        process.next(process.initialize(), [np.float16(0.5)] * 66)


def test_sums_that_could_overflow_the_secure_sum_bits_are_refused():
    process = SecureSumFactory(2**61, 0).create(np.int64)
    assert process.next(process.initialize(), [np.int64(2**61 - 5)]).result == 2**61 - 5
    with pytest.raises(
        ValueError,
        match="2 clients, int64 .* can overflow the 62 bits of the secure sum; the limit is 1",
    ):
        process.next(process.initialize(), [np.int64(2**61 - 5), np.int64(0)])


def test_inside_another_computation_an_overflowing_sum_is_refused_when_it_runs():
    process = SecureSumFactory(2**30).create(np.int32)

    @fc.federated_computation(FederatedType(np.int32, CLIENTS))
    def secure_total(values):
        return process.next(process.initialize(), values).result

    assert secure_total([np.int32(2**30)]) == 2**30
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="summing the values of 2 clients, int32 clipped"
    ):
        secure_total([np.int32(1), np.int32(2)])


# ---- modular sums


def test_modular_sum_matches_numpy_and_wraps_out_of_range_values():
    rng = np.random.default_rng(1)
    process = SecureModularSumFactory(7).create(_struct(np.int32))
    assert str(process.next.type_signature.result) == (
        "<state=<>@SERVER,result=<w=int32[3],b=int32>@SERVER,measurements=<>@SERVER>"
    )
    rows = [(rng.integers(-20, 20, 3), rng.integers(-20, 20)) for _ in range(5)]
    values = _struct_values(np.int32, rows)
    output = process.next(process.initialize(), values)
    for key in ("w", "b"):
        stacked = np.stack([v[key] for v in values]).astype(np.int64)
        np.testing.assert_array_equal(output.result[key], np.mod(np.mod(stacked, 7).sum(0), 7))
    # As TensorFlow Federated documents: [1, 3, 6] modulo 4 sum to 2.
    scalar = SecureModularSumFactory(4).create(np.int32)
    assert scalar.next(scalar.initialize(), [np.int32(v) for v in (1, 3, 6)]).result == 2


def test_symmetric_modular_sum_matches_numpy_and_keeps_small_sums_exact():
    modulus = 100
    process = SecureModularSumFactory(modulus, symmetric_range=True).create(
        TensorType(np.int8, [4])
    )
    rng = np.random.default_rng(2)
    values = [rng.integers(-99, 100, 4).astype(np.int8) for _ in range(6)]
    result = process.next(process.initialize(), values).result
    assert result.dtype == np.int8
    total = np.mod(np.sum(values, axis=0, dtype=np.int64), 2 * modulus - 1)
    np.testing.assert_array_equal(
        result, np.where(total >= modulus, total - (2 * modulus - 1), total)
    )
    # Sums within [-99, 99] are exact, although 2 * modulus - 1 does not fit int8.
    small = [np.array(v, np.int8) for v in ([90, -90, 5, -1], [9, -9, -60, 0], [-99, 99, 20, -1])]
    np.testing.assert_array_equal(process.next(process.initialize(), small).result, [0, 0, -35, -2])


# ---- arguments


def test_bad_bounds_are_refused():
    with pytest.raises(TypeError, match="an int, a float or an EstimationProcess, got '5'"):
        SecureSumFactory("5")
    with pytest.raises(TypeError, match="an int, a float or an EstimationProcess, got True"):
        SecureSumFactory(True)
    with pytest.raises(TypeError, match="same kind .* got 5 and -1.0"):
        SecureSumFactory(5, -1.0)
    with pytest.raises(TypeError, match="same kind"):
        SecureSumFactory(_estimation_process(1.0, "max"), -1.0)
    with pytest.raises(ValueError, match="it must be positive .* got -3"):
        SecureSumFactory(-3)
    with pytest.raises(ValueError, match="larger than lower_bound_threshold, got 1.0 and 1.0"):
        SecureSumFactory(1.0, 1.0)
    with pytest.raises(ValueError, match="must be finite"):
        SecureSumFactory(float("inf"))


def test_estimation_processes_of_the_wrong_types_are_refused():
    @fc.federated_computation
    def initialize():
        return fc.federated_value(np.int32(0), SERVER)

    @fc.federated_computation(initialize.type_signature.result, FederatedType(np.int32, CLIENTS))
    def next_fn(state, value):
        return state

    @fc.federated_computation(initialize.type_signature.result)
    def report(state):
        return state

    with pytest.raises(
        TypeError,
        match=r"upper_bound_threshold.next must take <state,\{float32\}@CLIENTS>.*"
        r"it takes <state=int32@SERVER,value=\{int32\}@CLIENTS>",
    ):
        SecureSumFactory(EstimationProcess(initialize, next_fn, report))


def test_value_types_that_do_not_match_the_bounds_are_refused():
    with pytest.raises(TypeError, match=r"bounds are for integer values; .* got float32\[2\]"):
        SecureSumFactory(3).create(TensorType(np.float32, [2]))
    with pytest.raises(TypeError, match="bounds are for floating-point values; .* got int32"):
        SecureSumFactory(3.0).create(np.int32)
    with pytest.raises(TypeError, match="single dtype .* got <a=float32,b=float64>"):
        SecureSumFactory(3.0).create(
            StructType([("a", TensorType(np.float32)), ("b", TensorType(np.float64))])
        )


def test_bad_modular_sum_arguments_are_refused():
    with pytest.raises(ValueError, match="modulus must be positive, got 0"):
        SecureModularSumFactory(0)
    with pytest.raises(TypeError, match="modulus must be an integer, got 4.0"):
        SecureModularSumFactory(4.0)
    with pytest.raises(TypeError, match="symmetric_range must be a bool, got 'yes'"):
        SecureModularSumFactory(4, symmetric_range="yes")
    with pytest.raises(ValueError, match=r"modulo 9223372036854775809, which must fit int64"):
        SecureModularSumFactory(2**62 + 1, symmetric_range=True)
    assert SecureModularSumFactory(2**62, symmetric_range=True)  # 2 * 2**62 - 1 fits int64
    with pytest.raises(TypeError, match="expected an integer tensor .* got float32"):
        SecureModularSumFactory(4).create(np.float32)
    with pytest.raises(ValueError, match="reaches 299, beyond the values' dtype int8"):
        SecureModularSumFactory(300).create(np.int8)
    with pytest.raises(TypeError, match="unsigned values cannot hold; got uint16"):
        SecureModularSumFactory(4, symmetric_range=True).create(np.uint16)


def test_secure_factories_are_built_by_name():
    factory = factory_from_config({"name": "secure_sum", "upper_bound_threshold": 5})
    assert repr(factory) == "SecureSumFactory(upper_bound_threshold=5, lower_bound_threshold=None)"
    factory = factory_from_config(
        {"name": "secure_modular_sum", "modulus": 8, "symmetric_range": True}
    )
    assert repr(factory) == "SecureModularSumFactory(modulus=8, symmetric_range=True)"
