"""Compression factories: quantization, sparsification (with and without error feedback) and random
rotations, checked against hand computations and numpy, with fixed seeds."""

import collections
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import fed_core as fc
from fed_aggregators import (
    DiscreteFourierTransformFactory,
    EncodedSumFactory,
    HadamardTransformFactory,
    MeanFactory,
    RandomKSparsificationFactory,
    TopKSparsificationFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    factory_from_config,
)
from fed_aggregators._compression import TensorEncoder
from fed_core.templates import AggregationProcess, MeasuredProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType

F32 = np.float32
# w (12 elements) is above the quantization threshold used below, b (3 elements) is not.
MODEL = StructType(
    [("w", TensorType(F32, [3, 4])), ("b", TensorType(F32, [3]))], collections.OrderedDict
)


def _model(w, b):
    return collections.OrderedDict(w=np.asarray(w, F32).reshape(3, 4), b=np.asarray(b, F32))


def _clients(seed, n=2):
    rng = np.random.default_rng(seed)
    return [_model(rng.normal(size=12) * (i + 1), rng.normal(size=3)) for i in range(n)]


def _run(process, values, rounds):
    state, outputs = process.initialize(), []
    for _ in range(rounds):
        output = process.next(state, values)
        state = output.state
        outputs.append(output)
    return outputs


# Quantization ---------------------------------------------------------------------------------------


def test_quantization_is_unbiased_bounded_and_exact_below_the_threshold():
    bits, rounds = 2, 300
    process = EncodedSumFactory.quantize_above_threshold(
        quantization_bits=bits, threshold=3, seed=7
    ).create(MODEL)
    assert isinstance(process, AggregationProcess)
    values = _clients(0)
    true_w = sum(v["w"] for v in values)
    # One element's error is at most the client's quantization step: its range over 2**bits - 1.
    steps = [(v["w"].max() - v["w"].min()) / (2**bits - 1) for v in values]
    results = []
    for output in _run(process, values, rounds):
        np.testing.assert_array_equal(output.result["b"], values[0]["b"] + values[1]["b"])
        assert np.all(np.abs(output.result["w"] - true_w) <= sum(steps) * (1 + 1e-5))
        results.append(output.result["w"])
    results = np.array(results)
    assert len({r.tobytes() for r in results}) > rounds // 2  # fresh randomness every round
    # Stochastic rounding to a grid of step s has variance at most s**2 / 4 per element and client;
    # the clients round independently. Tolerance: 5 standard errors of the mean over the rounds.
    standard_error = math.sqrt(sum(s**2 / 4 for s in steps) / rounds)
    np.testing.assert_allclose(results.mean(axis=0), true_w, atol=5 * standard_error)
    # ...and the rounding is really random: the spread is not negligible.
    assert results.std(axis=0).max() > 0.1 * steps[0]


def test_quantization_counts_bits_and_reaches_sixteen_bits():
    value_type = StructType(
        [
            ("big", TensorType(np.float64, [5, 4])),  # 20 elements > 3: quantized
            ("small", TensorType(F32, [3])),  # 3 elements, not more than 3: sent as is
            ("constant", TensorType(F32, [4])),  # quantized, but all elements equal
        ],
        collections.OrderedDict,
    )
    process = EncodedSumFactory.quantize_above_threshold(16, threshold=3, seed=1).create(value_type)
    rng = np.random.default_rng(3)
    values = [
        collections.OrderedDict(
            big=rng.uniform(-1, 1, size=(5, 4)),
            small=np.array([1, 2, 3], F32) * i,
            constant=np.full([4], 0.3 * i, F32),
        )
        for i in (1, 2)
    ]
    output = process.next(process.initialize(), values)
    big_steps = sum((v["big"].max() - v["big"].min()) / 65535 for v in values)
    assert np.all(np.abs(output.result["big"] - values[0]["big"] - values[1]["big"]) <= big_steps)
    np.testing.assert_array_equal(output.result["small"], [3, 6, 9])
    np.testing.assert_array_equal(output.result["constant"], np.full([4], F32(0.3) + F32(0.6)))
    # Before: 20 float64 + 7 float32. After: 20 codes of 16 bits with a float64 min and max, 3
    # float32 as they are, 4 codes of 16 bits with a float32 min and max.
    assert output.measurements == collections.OrderedDict(
        bytes_before=20 * 8 + 7 * 4, bytes_after=(40 + 16) + 12 + (8 + 8)
    )
    one_bit = EncodedSumFactory.quantize_above_threshold(1, threshold=0).create(
        TensorType(F32, [17])
    )
    measurements = one_bit.next(one_bit.initialize(), [np.zeros(17, F32)]).measurements
    assert measurements == collections.OrderedDict(bytes_before=68, bytes_after=3 + 8)


def test_quantization_with_fixed_seeds_is_reproducible_and_fresh_without():
    values = _clients(1)

    def first_result(factory):
        process = factory.create(MODEL)
        return process.next(process.initialize(), values).result["w"]

    seeded = EncodedSumFactory.quantize_above_threshold(2, threshold=3, seed=11)
    np.testing.assert_array_equal(first_result(seeded), first_result(seeded))
    unseeded = EncodedSumFactory.quantize_above_threshold(2, threshold=3)
    process = unseeded.create(MODEL)
    first, second = process.initialize(), process.initialize()
    assert not np.array_equal(first, second)
    assert not np.array_equal(
        process.next(first, values).result["w"], process.next(second, values).result["w"]
    )


def test_quantized_sum_inside_a_weighted_mean():
    factory = MeanFactory(EncodedSumFactory.quantize_above_threshold(8, threshold=3, seed=2))
    process = factory.create(MODEL, TensorType(F32))
    values, weights = _clients(2), [1.0, 3.0]
    output = process.next(process.initialize(), values, weights)
    expected_w = (values[0]["w"] + 3 * values[1]["w"]) / 4
    # Each client quantizes its weighted value, whose range is its weight times the value's.
    bound = sum(w * (v["w"].max() - v["w"].min()) / 255 for v, w in zip(values, weights)) / 4
    assert np.all(np.abs(output.result["w"] - expected_w) <= bound * (1 + 1e-5))
    np.testing.assert_allclose(
        output.result["b"], (values[0]["b"] + 3 * values[1]["b"]) / 4, rtol=1e-6
    )
    assert output.measurements["mean_value"] == collections.OrderedDict(
        bytes_before=60, bytes_after=(12 + 8) + 12
    )


class _Negating(TensorEncoder):
    """Sends the negated value; decodes by negating back."""

    def encode(self, value, seed):
        return -value

    def decode(self, message):
        return -message

    @property
    def message_bytes(self):
        return 1


def test_encoded_sum_with_a_custom_encoder():
    process = EncodedSumFactory(lambda tensor_type: _Negating()).create(MODEL)
    values = _clients(4)
    output = process.next(process.initialize(), values)
    np.testing.assert_allclose(output.result["w"], values[0]["w"] + values[1]["w"], rtol=1e-6)
    assert output.measurements["bytes_after"] == 2


def test_quantization_refuses_bad_arguments():
    quantize = EncodedSumFactory.quantize_above_threshold
    with pytest.raises(ValueError, match=r"quantization_bits must be in \[1, 16\], got 0"):
        quantize(0)
    with pytest.raises(ValueError, match=r"quantization_bits must be in \[1, 16\], got 17"):
        quantize(17)
    with pytest.raises(TypeError, match="quantization_bits must be an int, got 8.0"):
        quantize(8.0)
    with pytest.raises(ValueError, match="threshold must be >= 0, got -1"):
        quantize(8, threshold=-1)
    with pytest.raises(TypeError, match="seed must be an int or None, got 'x'"):
        quantize(8, seed="x")
    with pytest.raises(
        TypeError, match="EncodedSumFactory.create: expected a floating-point tensor .*got int32"
    ):
        quantize().create(TensorType(np.int32, [3]))
    with pytest.raises(TypeError, match=r"fully known shapes, got float32\[\?\]"):
        quantize().create(TensorType(F32, [None]))
    with pytest.raises(TypeError, match="encoder_fn must be a callable"):
        EncodedSumFactory("quantize")
    with pytest.raises(TypeError, match="encoder_fn must return a TensorEncoder, got 'oops'"):
        EncodedSumFactory(lambda t: "oops").create(MODEL)


# Sparsification -------------------------------------------------------------------------------------

VECTOR = TensorType(F32, [4])


def test_top_k_sends_the_largest_magnitudes():
    process = TopKSparsificationFactory(k=2).create(VECTOR)
    values = [np.array([3, -5, 1, 4], F32), np.array([0, 2, -6, 1], F32)]
    output = process.next(process.initialize(), values)
    # Client 1 sends -5 and 4 (indices 1 and 3), client 2 sends -6 and 2 (indices 2 and 1).
    np.testing.assert_array_equal(output.result, [0, -3, -6, 4])
    assert output.state == ()
    # Two float32 values and two int32 indices instead of four float32: no gain at this size.
    assert output.measurements == collections.OrderedDict(bytes_before=16, bytes_after=16)
    # Ties go to the lower index.
    tie = process.next((), [np.array([1, -2, 2, -2], F32)]).result
    np.testing.assert_array_equal(tie, [0, -2, 2, 0])


def test_top_k_by_fraction_per_tensor():
    factory = TopKSparsificationFactory(fraction=0.25)
    process = factory.create(MODEL)
    value = _model(np.arange(12) - 5.5, [0.5, -2, 1])
    output = process.next(process.initialize(), [value])
    # A quarter of 12 is 3: -5.5, 5.5, and -4.5, which ties with 4.5 and comes first. A quarter of
    # 3 is 0.75, which rounds to 1.
    expected_w = np.zeros(12, F32)
    expected_w[[0, 1, 11]] = [-5.5, -4.5, 5.5]
    np.testing.assert_array_equal(output.result["w"], expected_w.reshape(3, 4))
    np.testing.assert_array_equal(output.result["b"], [0, -2, 0])
    assert output.measurements == collections.OrderedDict(bytes_before=60, bytes_after=4 * 8)
    assert factory.kept(10) == 3 and factory.kept(2) == 1  # 2.5 rounds half up, 0.5 to at least 1


def test_random_k_is_unbiased_with_scaled_coordinates():
    rounds = 300
    process = RandomKSparsificationFactory(k=1, seed=3).create(VECTOR)
    values = [np.array([1, -2, 3, 0.5], F32), np.array([2, 1, -1, 4], F32)]
    results = np.array([o.result for o in _run(process, values, rounds)])
    for result in results:
        # Each client sends one coordinate, scaled by d / k = 4.
        first, second = 4 * values[0], 4 * values[1]
        assert np.count_nonzero(result) <= 2
        for j in np.flatnonzero(result):
            assert result[j] in {first[j], second[j], first[j] + second[j]}
    # Each client's coordinate j is 4 x_j with probability 1/4, else 0: variance 3 x_j**2.
    standard_error = np.sqrt(3 * (values[0] ** 2 + values[1] ** 2) / rounds)
    np.testing.assert_array_less(
        np.abs(results.mean(axis=0) - (values[0] + values[1])), 5 * standard_error
    )
    # The two clients choose independently: sometimes the same coordinate, sometimes not.
    nonzeros = {np.count_nonzero(r) for r in results}
    assert nonzeros == {1, 2}


def test_random_k_with_fixed_seeds_is_reproducible_and_fresh_without():
    values = [np.array([1, -2, 3, 0.5], F32)]
    seeded = RandomKSparsificationFactory(fraction=0.5, seed=5).create(VECTOR)
    first = [o.result for o in _run(seeded, values, 6)]
    second = [o.result for o in _run(seeded, values, 6)]
    np.testing.assert_array_equal(first, second)
    assert len({r.tobytes() for r in first}) > 1  # different coordinates across rounds
    unseeded = RandomKSparsificationFactory(fraction=0.5).create(VECTOR)
    a = [o.result for o in _run(unseeded, values, 6)]
    b = [o.result for o in _run(unseeded, values, 6)]
    assert not np.array_equal(a, b)


def _error_feedback_rounds(process, values, rounds):
    """The running sum of what the server received, and the clients' residuals, after `rounds`."""
    state, residuals = process.initialize(), [np.zeros_like(v) for v in values]
    total_sent = np.zeros_like(values[0])
    for _ in range(rounds):
        output = process.next(state, values, residuals)
        state, residuals = output.state, output.result["residual"]
        total_sent = total_sent + output.result["sum"]
    return total_sent, residuals


EF_VALUES = [np.array([4, 3, 2, 1], F32), np.array([1, -2, 3, 0.5], F32)]


def _relative_gap(total, true_total):
    return np.linalg.norm(true_total - total) / np.linalg.norm(true_total)


def test_top_k_error_feedback_converges_where_plain_top_k_stays_biased():
    rounds = 40
    true_total = rounds * (EF_VALUES[0] + EF_VALUES[1])
    factory = TopKSparsificationFactory(k=1)
    process = factory.create_with_error_feedback(VECTOR)
    assert isinstance(process, MeasuredProcess)
    assert str(process.next.type_signature.parameter) == (
        "<state=<>@SERVER,value={float32[4]}@CLIENTS,residual={float32[4]}@CLIENTS>"
    )
    total_sent, residuals = _error_feedback_rounds(process, EF_VALUES, rounds)
    # What has not arrived yet is exactly what the clients hold back.
    np.testing.assert_allclose(true_total - total_sent, residuals[0] + residuals[1], atol=1e-4)
    assert _relative_gap(total_sent, true_total) < 0.05
    # Without feedback client 1 always sends its 4 (index 0) and client 2 its 3 (index 2).
    without = sum(o.result for o in _run(factory.create(VECTOR), EF_VALUES, rounds))
    np.testing.assert_array_equal(without, rounds * np.array([4, 0, 3, 0], F32))
    assert _relative_gap(without, true_total) > 0.35


def test_random_k_error_feedback_sends_unscaled_coordinates_and_converges():
    rounds = 40
    true_total = rounds * (EF_VALUES[0] + EF_VALUES[1])
    process = RandomKSparsificationFactory(k=1, seed=9).create_with_error_feedback(VECTOR)
    first = process.next(process.initialize(), EF_VALUES[:1], [np.zeros(4, F32)]).result
    # One coordinate of [4, 3, 2, 1] is sent as it is (not scaled by 4); the rest stays behind.
    (sent_index,) = np.flatnonzero(first["sum"])
    assert first["sum"][sent_index] == EF_VALUES[0][sent_index]
    np.testing.assert_array_equal(first["sum"] + first["residual"][0], EF_VALUES[0])
    total_sent, residuals = _error_feedback_rounds(process, EF_VALUES, rounds)
    np.testing.assert_allclose(true_total - total_sent, residuals[0] + residuals[1], atol=1e-3)
    assert _relative_gap(total_sent, true_total) < 0.25


def test_error_feedback_first_round_by_hand():
    process = TopKSparsificationFactory(k=1).create_with_error_feedback(VECTOR)
    values = [np.array([4, 3, 2, 1], F32)]
    output = process.next((), values, [np.array([0, 0, 0, 5], F32)])
    # value + residual = [4, 3, 2, 6]: it sends the 6 and keeps [4, 3, 2, 0].
    np.testing.assert_array_equal(output.result["sum"], [0, 0, 0, 6])
    np.testing.assert_array_equal(output.result["residual"][0], [4, 3, 2, 0])
    assert output.measurements == collections.OrderedDict(bytes_before=16, bytes_after=8)


def test_sparsification_refuses_bad_arguments():
    with pytest.raises(
        ValueError, match="exactly one of k and fraction, got k=None, fraction=None"
    ):
        TopKSparsificationFactory()
    with pytest.raises(ValueError, match="exactly one of k and fraction, got k=2, fraction=0.5"):
        RandomKSparsificationFactory(k=2, fraction=0.5)
    with pytest.raises(ValueError, match="TopKSparsificationFactory: k must be >= 1, got 0"):
        TopKSparsificationFactory(k=0)
    with pytest.raises(TypeError, match="k must be an int, got 1.5"):
        TopKSparsificationFactory(k=1.5)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 1.5"):
        RandomKSparsificationFactory(fraction=1.5)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 0"):
        RandomKSparsificationFactory(fraction=0)
    with pytest.raises(TypeError, match="seed must be an int or None, got 1.0"):
        RandomKSparsificationFactory(k=1, seed=1.0)
    with pytest.raises(TypeError, match="expected a floating-point tensor .*got int32"):
        TopKSparsificationFactory(k=1).create(TensorType(np.int32, [4]))
    with pytest.raises(TypeError, match="expected a floating-point tensor .*got int32"):
        TopKSparsificationFactory(k=1).create_with_error_feedback(TensorType(np.int32, [4]))


# Rotation -------------------------------------------------------------------------------------------

ODD = StructType(
    [
        ("w", TensorType(F32, [3, 5])),
        ("b", TensorType(np.float64, [3])),
        ("n", TensorType(np.int32, [1])),
    ],
    collections.OrderedDict,
)


def _odd_clients(seed):
    rng = np.random.default_rng(seed)
    return [
        collections.OrderedDict(
            w=rng.normal(size=(3, 5)).astype(F32), b=rng.normal(size=3), n=np.array([i], np.int32)
        )
        for i in range(3)
    ]


class _RecordingSumFactory(UnweightedAggregationFactory):
    """A sum that also reports the sum as its measurements: shows what the inner factory receives."""

    def create(self, value_type):
        @fc.federated_computation
        def initialize():
            return fc.federated_value((), SERVER)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            total = fc.federated_sum(value)
            return MeasuredProcessOutput(state, total, total)

        return AggregationProcess(initialize, next_fn)


@pytest.mark.parametrize(
    ("factory_class", "key", "padded_n"),
    [(HadamardTransformFactory, "hd", 1), (DiscreteFourierTransformFactory, "dft", 2)],
)
def test_rotation_round_trips_sums_and_means(factory_class, key, padded_n):
    values = _odd_clients(5)
    true_sum = {name: sum(v[name] for v in values) for name in ("w", "b", "n")}
    summed = factory_class(num_repeats=2, seed=1).create(ODD)
    output = summed.next(summed.initialize(), values)
    np.testing.assert_allclose(output.result["w"], true_sum["w"], atol=1e-5)
    np.testing.assert_allclose(output.result["b"], true_sum["b"], atol=1e-12)
    np.testing.assert_array_equal(output.result["n"], [3])
    assert output.result["n"].dtype == np.int32
    # Before: 15 float32, 3 float64, 1 int32. After, padded: w to 16 float32, b to 4 float64, n to
    # 1 float32 (a power of 2) or 2 (an even length).
    assert output.measurements == collections.OrderedDict(
        [
            (key, ()),
            ("bytes_before", 15 * 4 + 3 * 8 + 4),
            ("bytes_after", 16 * 4 + 4 * 8 + padded_n * 4),
        ]
    )
    averaged = factory_class(UnweightedMeanFactory()).create(ODD)
    output = averaged.next(averaged.initialize(), values)
    np.testing.assert_allclose(output.result["w"], true_sum["w"] / 3, atol=1e-5)
    np.testing.assert_allclose(output.result["b"], true_sum["b"] / 3, atol=1e-12)
    np.testing.assert_array_equal(output.result["n"], [1])
    assert output.measurements[key] == collections.OrderedDict(mean_value=(), mean_count=())
    weighted = MeanFactory(factory_class()).create(MODEL, TensorType(F32))
    model_values = _clients(6)
    output = weighted.next(weighted.initialize(), model_values, [1.0, 3.0])
    np.testing.assert_allclose(
        output.result["w"], (model_values[0]["w"] + 3 * model_values[1]["w"]) / 4, atol=1e-5
    )


@pytest.mark.parametrize(
    "factory_class", [HadamardTransformFactory, DiscreteFourierTransformFactory]
)
def test_rotation_is_orthogonal_spreads_mass_and_is_fresh_each_round(factory_class):
    key = "hd" if factory_class is HadamardTransformFactory else "dft"
    process = factory_class(_RecordingSumFactory(), seed=4).create(TensorType(F32, [8]))
    one_hot = np.array([0, 0, 5, 0, 0, 0, 0, 0], F32)
    output = process.next(process.initialize(), [one_hot])
    rotated = output.measurements[key]  # what the inner factory summed
    np.testing.assert_allclose(output.result, one_hot, atol=1e-6)
    if factory_class is HadamardTransformFactory:
        # A normalized Hadamard matrix has entries +-1/sqrt(8): every coordinate carries 5/sqrt(8).
        np.testing.assert_allclose(np.abs(rotated), np.full(8, 5 / math.sqrt(8)), rtol=1e-6)
    else:
        # The unit-modulus phases and the FFT give every complex coordinate the modulus 5/sqrt(4).
        moduli = np.hypot(rotated[:4], rotated[4:])
        np.testing.assert_allclose(moduli, np.full(4, 5 / 2), rtol=1e-6)
    ramp = [np.arange(1, 9, dtype=F32)]
    rotations = [o.measurements[key] for o in _run(process, ramp, 3)]
    for r in rotations:
        np.testing.assert_allclose(np.linalg.norm(r), np.linalg.norm(ramp[0]), rtol=1e-6)
    assert not np.allclose(rotations[0], rotations[1])  # a new rotation each round
    again = _run(process, ramp, 1)[0].measurements[key]
    np.testing.assert_array_equal(again, rotations[0])  # the same seed, the same rotations
    unseeded = factory_class(_RecordingSumFactory()).create(TensorType(F32, [8]))
    first = _run(unseeded, ramp, 1)[0].measurements[key]
    second = _run(unseeded, ramp, 1)[0].measurements[key]
    assert not np.allclose(first, second)


def test_rotation_around_quantization_built_by_name():
    factory = factory_from_config(
        {
            "name": "hadamard",
            "inner_agg_factory": {
                "name": "quantize_above_threshold",
                "quantization_bits": 8,
                "threshold": 0,
                "seed": 3,
            },
            "seed": 2,
        }
    )
    assert isinstance(factory, HadamardTransformFactory)
    process = factory.create(MODEL)
    values = _clients(7)
    output = process.next(process.initialize(), values)
    for name in ("w", "b"):
        true_sum = values[0][name] + values[1][name]
        # Each client's rotated vector spans at most twice its norm; 8 bits leave steps of span/255.
        bound = sum(2 * np.linalg.norm(v[name]) / 255 for v in values) * math.sqrt(16)
        assert np.linalg.norm(output.result[name] - true_sum) <= bound
    assert output.measurements["hd"] == collections.OrderedDict(
        bytes_before=(16 + 4) * 4, bytes_after=(16 + 8) + (4 + 8)
    )
    for name, factory_class in [
        ("dft", DiscreteFourierTransformFactory),
        ("top_k", TopKSparsificationFactory),
        ("random_k", RandomKSparsificationFactory),
    ]:
        options = {} if name == "dft" else {"k": 2}
        assert isinstance(factory_from_config({"name": name, **options}), factory_class)


def test_rotation_refuses_bad_arguments():
    with pytest.raises(
        ValueError, match="HadamardTransformFactory: num_repeats must be >= 1, got 0"
    ):
        HadamardTransformFactory(num_repeats=0)
    with pytest.raises(TypeError, match="num_repeats must be an int, got 1.0"):
        DiscreteFourierTransformFactory(num_repeats=1.0)
    with pytest.raises(
        TypeError,
        match="inner_agg_factory must be an UnweightedAggregationFactory, got MeanFactory",
    ):
        DiscreteFourierTransformFactory(MeanFactory())
    with pytest.raises(TypeError, match="expected a numeric tensor or a struct of them, got str"):
        HadamardTransformFactory().create(TensorType(np.str_))
    with pytest.raises(TypeError, match=r"fully known shapes, got float32\[2,\?\]"):
        HadamardTransformFactory().create(TensorType(F32, [2, None]))
