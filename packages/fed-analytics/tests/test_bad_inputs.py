"""Every public entry point of fed-analytics, given what a new user might give it by mistake: each call
is refused early with an error that names what was expected and what was given, and a refused round
leaves the process's state as usable as it was."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tensorflow as tf

import fed_analytics
from fed_aggregators import MeanFactory
from fed_analytics import differential_privacy
from fed_analytics import hierarchical_histogram as hh
from fed_analytics.heavy_hitters import (
    calibrate_private_heavy_hitters,
    iblt,
    private_heavy_hitters,
)

needs_dp_accounting = pytest.mark.skipif(
    importlib.util.find_spec("dp_accounting") is None, reason="needs dp-accounting (the dp extra)"
)
process_builders = pytest.mark.parametrize(
    "build",
    [hh.build_hierarchical_histogram_process, hh.build_hierarchical_histogram_computation],
    ids=["process", "computation"],
)
TREE = [[3.0], [1.0, 2.0]]


def _decoder(*args, **kwargs):
    return hh.HierarchicalHistogramDecoder(*args, **kwargs)


def _calibrate(**kwargs):
    return calibrate_private_heavy_hitters(
        **{"max_words_per_user": 2, "delta": 1e-5, "epsilon": 1.0, **kwargs}
    )


CASES = [
    # ---- IBLT heavy hitters
    pytest.param(
        lambda: iblt.build_iblt_computation(capacity=0),
        ValueError,
        "capacity must be an int >= 1, got 0",
        id="iblt/capacity zero",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(capacity=10.0),
        ValueError,
        "capacity must be an int >= 1, got 10.0",
        id="iblt/capacity float",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(string_max_bytes=0),
        ValueError,
        "string_max_bytes must be an int >= 1, got 0",
        id="iblt/string_max_bytes zero",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(repetitions=2),
        ValueError,
        "repetitions must be an int >= 3, got 2",
        id="iblt/two repetitions",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(k_anonymity=0),
        ValueError,
        "k_anonymity must be an int >= 1 or None, got 0",
        id="iblt/k_anonymity zero",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(secure_sum_bitwidth=63),
        ValueError,
        r"secure_sum_bitwidth must be an int in \[1, 62\] or None, got 63",
        id="iblt/bitwidth 63",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(secure_sum_bitwidth=2, max_words_per_user=5),
        ValueError,
        "secure_sum_bitwidth=2 sums counts of at most 3 per client, but with multi_contribution a "
        "client counts a string up to max_words_per_user=5 times; raise secure_sum_bitwidth or "
        "lower max_words_per_user",
        id="iblt/bitwidth below the words per user",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(batch_size=0),
        ValueError,
        "batch_size must be an int >= 1 or None, got 0",
        id="iblt/batch_size zero",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(max_words_per_user=0),
        ValueError,
        "max_words_per_user must be an int >= 1 or None, got 0",
        id="iblt/max_words_per_user zero",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(max_heavy_hitters=-1),
        ValueError,
        "max_heavy_hitters must be an int >= 1 or None, got -1",
        id="iblt/negative max_heavy_hitters",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(seed="1"),
        TypeError,
        "seed must be an int, got '1'",
        id="iblt/seed str",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(multi_contribution="yes"),
        TypeError,
        "multi_contribution must be a bool, got 'yes'",
        id="iblt/multi_contribution str",
    ),
    pytest.param(
        lambda: iblt.build_iblt_computation(string_postprocessor=3),
        TypeError,
        "string_postprocessor must be callable, got 3",
        id="iblt/postprocessor int",
    ),
    pytest.param(
        lambda: iblt.encode(
            tf.constant(["a", "b"]), tf.constant([1], tf.int64), capacity=5, string_max_bytes=5
        ),
        ValueError,
        r"encode: values \(one per string\) must have shape \[2\], got \[1\]",
        id="iblt.encode/one value for two strings",
    ),
    pytest.param(
        lambda: iblt.encode(
            tf.constant([["a"]]), tf.constant([1], tf.int64), capacity=5, string_max_bytes=5
        ),
        ValueError,
        r"encode: strings must have shape \[\?\], got \[1, 1\]",
        id="iblt.encode/strings of rank 2",
    ),
    pytest.param(
        lambda: iblt.decode(
            tf.zeros([3, 5, 4], tf.int64),
            tf.zeros([3, 5, 1], tf.int64),
            capacity=5,
            string_max_bytes=5,
        ),
        ValueError,
        r"decode: iblt \(capacity=5, string_max_bytes=5, repetitions=3\) must have shape "
        r"\[3, 12, 4\], got \[3, 5, 4\]",
        id="iblt.decode/a sketch of other parameters",
    ),
    pytest.param(
        lambda: iblt.table_size(0),
        ValueError,
        "capacity must be an int >= 1, got 0",
        id="iblt.table_size/capacity zero",
    ),
    # ---- private heavy hitters
    pytest.param(
        lambda: _calibrate(max_words_per_user=0),
        ValueError,
        "calibrate_private_heavy_hitters: max_words_per_user must be an int >= 1, got 0",
        id="calibrate/max_words_per_user zero",
    ),
    pytest.param(
        lambda: _calibrate(delta=0),
        ValueError,
        "delta must be a finite positive number, got 0.0",
        id="calibrate/delta zero",
    ),
    pytest.param(
        lambda: _calibrate(delta=1),
        ValueError,
        r"delta must be in \(0, 1\), got 1.0",
        id="calibrate/delta one",
    ),
    pytest.param(
        lambda: _calibrate(delta=float("nan")),
        ValueError,
        "delta must be a finite positive number, got nan",
        id="calibrate/delta nan",
    ),
    pytest.param(
        lambda: _calibrate(epsilon=float("inf")),
        ValueError,
        "epsilon must be a finite positive number, got inf",
        id="calibrate/epsilon inf",
    ),
    pytest.param(
        lambda: _calibrate(epsilon="1"),
        TypeError,
        "epsilon must be a number, got '1'",
        id="calibrate/epsilon str",
    ),
    pytest.param(
        lambda: _calibrate(noise_multiplier=1.0),
        ValueError,
        "give exactly one of epsilon and noise_multiplier, got epsilon=1.0 and noise_multiplier=1.0",
        id="calibrate/both epsilon and noise",
    ),
    pytest.param(
        lambda: _calibrate(mechanism="exponential"),
        ValueError,
        r"mechanism must be one of \['laplace', 'gaussian'\], got 'exponential'",
        id="calibrate/unknown mechanism",
    ),
    pytest.param(
        lambda: _calibrate(multi_contribution="no"),
        TypeError,
        "multi_contribution must be a bool, got 'no'",
        id="calibrate/multi_contribution str",
    ),
    pytest.param(
        lambda: private_heavy_hitters(3, max_words_per_user=2, delta=1e-5, epsilon=1.0),
        TypeError,
        "expected the ServerOutput of an IBLT heavy-hitters computation, got 3",
        id="private_heavy_hitters/not an output",
    ),
    pytest.param(
        lambda: private_heavy_hitters(
            None, max_words_per_user=2, delta=1e-5, epsilon=1.0, max_heavy_hitters=0
        ),
        ValueError,
        "max_heavy_hitters must be an int >= 1 or None, got 0",
        id="private_heavy_hitters/max_heavy_hitters zero",
    ),
    pytest.param(
        lambda: private_heavy_hitters(
            iblt.ServerOutput(0, [], [], [], 0, 0),
            max_words_per_user=2,
            delta=1e-5,
            epsilon=1.0,
            seed="x",
        ),
        TypeError,
        "seed must be None, a non-negative int or a numpy.random.Generator, got 'x'",
        id="private_heavy_hitters/seed str",
    ),
    pytest.param(
        lambda: private_heavy_hitters(
            iblt.ServerOutput(0, [], [], [], 3, 0), max_words_per_user=2, delta=1e-5, epsilon=1.0
        ),
        ValueError,
        "the sketch left 3 contributions undecoded",
        id="private_heavy_hitters/undecoded sketch",
    ),
    # ---- the analytic Gaussian mechanism
    pytest.param(
        lambda: differential_privacy.analytic_gauss_stddev(-1, 1e-5, 1.0),
        ValueError,
        "analytic_gauss_stddev: epsilon must be non-negative, got -1",
        id="analytic_gauss/negative epsilon",
    ),
    pytest.param(
        lambda: differential_privacy.analytic_gauss_stddev(float("nan"), 1e-5, 1.0),
        ValueError,
        "epsilon must be non-negative, got nan",
        id="analytic_gauss/nan epsilon",
    ),
    pytest.param(
        lambda: differential_privacy.analytic_gauss_stddev(1.0, 2.0, 1.0),
        ValueError,
        r"delta must be in \[0, 1\], got 2.0",
        id="analytic_gauss/delta above 1",
    ),
    pytest.param(
        lambda: differential_privacy.analytic_gauss_stddev("1", 1e-5, 1.0),
        TypeError,
        "analytic_gauss_stddev: epsilon must be a number, got '1'",
        id="analytic_gauss/epsilon str",
    ),
    pytest.param(
        lambda: differential_privacy.analytic_gauss_stddev(1.0, 1e-5, float("inf")),
        ValueError,
        "norm_bound must be a non-negative number, got inf",
        id="analytic_gauss/infinite norm",
    ),
    pytest.param(
        lambda: differential_privacy.analytic_gauss_stddev(1.0, 1e-5, 1.0, tol=0),
        ValueError,
        "tol must be a positive number, got 0",
        id="analytic_gauss/zero tolerance",
    ),
    # ---- the hierarchical histogram's factories
    pytest.param(
        lambda: hh.HistogramClippingSumFactory(clip_mechanism="clip"),
        ValueError,
        r"clip_mechanism must be one of \['sub-sampling', 'distinct'\], got 'clip'",
        id="HistogramClippingSumFactory/unknown mechanism",
    ),
    pytest.param(
        lambda: hh.HistogramClippingSumFactory(max_records_per_user=0),
        ValueError,
        "max_records_per_user must be a positive int, got 0",
        id="HistogramClippingSumFactory/no records",
    ),
    pytest.param(
        lambda: hh.HistogramClippingSumFactory(inner_agg_factory=MeanFactory()),
        TypeError,
        "inner_agg_factory must be an UnweightedAggregationFactory, got MeanFactory",
        id="HistogramClippingSumFactory/weighted inner",
    ),
    pytest.param(
        lambda: hh.HistogramClippingSumFactory(cast_to_float="no"),
        TypeError,
        "cast_to_float must be a bool, got 'no'",
        id="HistogramClippingSumFactory/cast_to_float str",
    ),
    pytest.param(
        lambda: hh.HistogramClippingSumFactory(seed=1.5),
        TypeError,
        "seed must be an int or None, got 1.5",
        id="HistogramClippingSumFactory/seed float",
    ),
    pytest.param(
        lambda: hh.HistogramClippingSumFactory().create(np.float32),
        TypeError,
        r"expected a histogram, a rank-1 integer tensor of known size \(such as int32\[10\]\), "
        "got float32",
        id="HistogramClippingSumFactory/float histogram",
    ),
    pytest.param(
        lambda: hh.HistogramClippingSumFactory().create((np.int32, [None])),
        TypeError,
        r"rank-1 integer tensor of known size .* got int32\[\?\]",
        id="HistogramClippingSumFactory/unknown size",
    ),
    pytest.param(
        lambda: hh.create_hierarchical_histogram_aggregation_factory(4).create((np.int32, [5])),
        TypeError,
        r"this factory is for histograms of num_bins=4 bins \(such as int32\[4\]\), got int32\[5\]",
        id="aggregation_factory/other number of bins",
    ),
    pytest.param(
        lambda: hh.create_hierarchical_histogram_aggregation_factory(
            4, dp_mechanism="distributed-discrete-gaussian", noise_multiplier=1.0, bits=3
        ),
        ValueError,
        "bits=3 is too small for expected_clients_per_round=10, max_records_per_user=10 and "
        r"noise_multiplier=1.0: .* \(it needs at least 9.\d\d bits\)",
        id="aggregation_factory/too few bits",
    ),
    # ---- the decoder
    pytest.param(
        lambda: _decoder(None, 0, 1),
        TypeError,
        "expected a hierarchical histogram .* got None",
        id="decoder/None",
    ),
    pytest.param(
        lambda: _decoder([["a"], ["b", "c"]], 0, 1),
        TypeError,
        r"or a list of layers of numbers\), got \[\['a'\], \['b', 'c'\]\]",
        id="decoder/strings",
    ),
    pytest.param(
        lambda: _decoder([], 0, 1),
        ValueError,
        r"a hierarchical histogram has layers of 1, a, a\*\*2, ... nodes .* got layers of \[\] nodes",
        id="decoder/no layers",
    ),
    pytest.param(
        lambda: _decoder([[3.0], [1.0, 2.0], [1.0, 0.0, 2.0]], 0, 1),
        ValueError,
        r"got layers of \[1, 2, 3\] nodes",
        id="decoder/uneven layers",
    ),
    pytest.param(
        lambda: _decoder([[float("nan")], [1.0, 2.0]], 0, 1),
        ValueError,
        r"the histogram's counts must be finite, got \[nan\] in layer 0",
        id="decoder/nan count",
    ),
    pytest.param(
        lambda: _decoder(TREE, 1, 0),
        ValueError,
        "upper_bound must be no smaller than lower_bound, got upper_bound=0.0 and lower_bound=1.0",
        id="decoder/bounds reversed",
    ),
    pytest.param(
        lambda: _decoder(TREE, float("nan"), 1),
        ValueError,
        "lower_bound must be a finite number, got nan",
        id="decoder/nan bound",
    ),
    pytest.param(
        lambda: _decoder(TREE, "0", 1),
        TypeError,
        "lower_bound must be a finite number, got '0'",
        id="decoder/bound str",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1, use_efficient="yes"),
        TypeError,
        "use_efficient must be a bool, got 'yes'",
        id="decoder/use_efficient str",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1, num_bins=0),
        ValueError,
        r"num_bins must be in \(1, 2\] for a last layer of 2 nodes, got 0",
        id="decoder/num_bins zero",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).range_query(0, 5),
        ValueError,
        r"\[0, 5\] is outside the valid range \[0, 2\)",
        id="decoder.range_query/beyond the bins",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).range_query(1, 0),
        ValueError,
        r"left \(1\) must be no larger than right \(0\)",
        id="decoder.range_query/reversed",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).range_query(0.5, 1),
        TypeError,
        "left must be an int, got 0.5",
        id="decoder.range_query/float",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).node_query(1.0, 0),
        TypeError,
        "layer must be an int, got 1.0",
        id="decoder.node_query/float layer",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).node_query(2, 0),
        ValueError,
        r"Cross-layer index 2 is out of range: expected it in \[0, 2\)",
        id="decoder.node_query/no such layer",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).node_query(1, 2),
        ValueError,
        r"Inner-layer index 2 is out of range: expected it in \[0, 2\) for layer 1",
        id="decoder.node_query/no such node",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).quantile_query(1.5),
        ValueError,
        r"q must be in \[0, 1\], got 1.5",
        id="decoder.quantile_query/above 1",
    ),
    pytest.param(
        lambda: _decoder(TREE, 0, 1).quantile_query("0.5"),
        TypeError,
        r"q must be a number in \[0, 1\], got '0.5'",
        id="decoder.quantile_query/str",
    ),
    pytest.param(
        lambda: _decoder([[0.0], [0.0, 0.0]], 0, 1).quantile_query(0.5),
        ValueError,
        "quantile_query needs a histogram that counts some records; its total is 0.0",
        id="decoder.quantile_query/empty histogram",
    ),
    pytest.param(
        lambda: _decoder([[5.0], [1.0, 2.0]], 0, 1).quantile_query(0.5),
        ValueError,
        "quantile_query needs a consistent hierarchical histogram .* enforce_consistency",
        id="decoder.quantile_query/inconsistent",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), CASES)
def test_bad_input_is_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


BUILD_CASES = [
    pytest.param(
        {"lower_bound": 2.0, "upper_bound": 1.0},
        ValueError,
        "upper_bound must be larger than lower_bound .* got upper_bound=1.0 and lower_bound=2.0",
        id="bounds reversed",
    ),
    pytest.param(
        {"lower_bound": 1.0, "upper_bound": 1.0},
        ValueError,
        "upper_bound must be larger than lower_bound",
        id="equal bounds",
    ),
    pytest.param(
        {"lower_bound": float("nan")},
        ValueError,
        "lower_bound must be a finite number, got nan",
        id="nan bound",
    ),
    pytest.param(
        {"upper_bound": "1"},
        ValueError,
        "upper_bound must be a finite number, got '1'",
        id="bound str",
    ),
    pytest.param(
        {"num_bins": 0}, ValueError, "num_bins must be a positive int, got 0", id="no bins"
    ),
    pytest.param(
        {"num_bins": 4.0}, ValueError, "num_bins must be a positive int, got 4.0", id="float bins"
    ),
    pytest.param(
        {"num_bins": 2**40},
        ValueError,
        "num_bins=1099511627776 with arity=2 makes a tree of 2199023255551 nodes, more than the 2147483647",
        id="too many bins",
    ),
    pytest.param({"arity": 1}, ValueError, "arity must be an int >= 2, got 1", id="arity 1"),
    pytest.param(
        {"clip_mechanism": "x"},
        ValueError,
        r"clip_mechanism must be one of \['sub-sampling', 'distinct'\], got 'x'",
        id="unknown clipping",
    ),
    pytest.param(
        {"max_records_per_user": 0},
        ValueError,
        "max_records_per_user must be a positive int, got 0",
        id="no records",
    ),
    pytest.param(
        {"dp_mechanism": "laplace"},
        ValueError,
        "dp_mechanism must be one of .* got 'laplace'",
        id="unknown dp",
    ),
    pytest.param(
        {"noise_multiplier": float("nan")},
        ValueError,
        "noise_multiplier must be a non-negative number, got nan",
        id="nan noise",
    ),
    pytest.param(
        {"noise_multiplier": -1.0},
        ValueError,
        "noise_multiplier must be a non-negative number, got -1.0",
        id="negative noise",
    ),
    pytest.param(
        {"expected_clients_per_round": 0},
        ValueError,
        "expected_clients_per_round must be a positive int, got 0",
        id="no clients per round",
    ),
    pytest.param(
        {"bits": 0}, ValueError, r"bits must be an int in \[1, 22\], got 0", id="zero bits"
    ),
    pytest.param(
        {"bits": 23}, ValueError, r"bits must be an int in \[1, 22\], got 23", id="23 bits"
    ),
    pytest.param(
        {"bits": 2, "expected_clients_per_round": 10},
        ValueError,
        r"bits must be at least log2\(expected_clients_per_round\) = 3.32, got 2",
        id="bits below the clients",
    ),
    pytest.param(
        {"enable_secure_sum": "yes"},
        TypeError,
        "enable_secure_sum must be a bool, got 'yes'",
        id="secure sum str",
    ),
    pytest.param(
        {"dp_mechanism": "distributed-discrete-gaussian", "enable_secure_sum": False},
        ValueError,
        "needs enable_secure_sum=True",
        id="distributed noise without secure sum",
    ),
    pytest.param({"seed": "x"}, TypeError, "seed must be an int or None, got 'x'", id="seed str"),
]


@process_builders
@pytest.mark.parametrize(("options", "error", "message"), BUILD_CASES)
def test_bad_histogram_parameters_are_refused_before_anything_is_built(
    build, options, error, message
):
    arguments = {"lower_bound": 0.0, "upper_bound": 10.0, "num_bins": 4, **options}
    with pytest.raises(error, match=message):
        build(**arguments)


# ---- rounds: the state still serves after a refused one


def _strings(*words):
    return tf.data.Dataset.from_tensor_slices(list(words)).batch(1)


def test_a_refused_heavy_hitters_round_does_not_stop_the_next():
    computation = iblt.build_iblt_computation(
        capacity=10, string_max_bytes=5, secure_sum_bitwidth=2
    )
    with pytest.raises(
        ValueError,
        match=r"federated_secure_sum: client 0 holds \[5, 5, 5\] in tensor 0, outside the allowed "
        r"range \[0, 3\]",
    ):
        computation([_strings(*["a"] * 5), _strings("a")])
    output = computation([_strings("a", "a"), _strings("a", "b")])
    assert dict(zip(output.heavy_hitters.tolist(), output.heavy_hitters_counts.tolist())) == {
        b"a": 3,
        b"b": 1,
    }
    with pytest.raises(TypeError, match=r"expected .*str\[\?\]\*"):
        computation([tf.data.Dataset.from_tensor_slices([1, 2]).batch(1)])


def test_a_refused_histogram_round_leaves_the_state_usable():
    process = hh.build_hierarchical_histogram_process(0.0, 10.0, 4, max_records_per_user=3, seed=1)
    state = process.initialize()
    with pytest.raises(TypeError, match=r"Calling computation next_fn .* float32\*"):
        process.next(state, [tf.data.Dataset.from_tensor_slices(np.array([1.0, 2.0]))])
    records = [np.array([1.0, 2.0], np.float32), np.array([9.0], np.float32)]
    state, _ = process.next(state, [tf.data.Dataset.from_tensor_slices(r) for r in records])
    assert state.aggregated_hierarchical_histogram.to_list() == [[3], [2, 1], [2, 0, 0, 1]]


# ---- numpy scalars are numbers wherever Python numbers are


def test_numpy_scalars_build_what_python_numbers_build():
    with_numpy = iblt.build_iblt_computation(
        capacity=np.int64(10),
        string_max_bytes=np.int32(5),
        repetitions=np.int64(3),
        max_words_per_user=np.int64(3),
        k_anonymity=np.int32(1),
        seed=np.int64(2),
    )
    with_python = iblt.build_iblt_computation(
        capacity=10, string_max_bytes=5, repetitions=3, max_words_per_user=3, seed=2
    )
    assert with_numpy.type_signature == with_python.type_signature
    numpy_process = fed_analytics.build_hierarchical_histogram_process(
        np.float32(0.0),
        np.int64(10),
        np.int64(4),
        arity=np.int32(2),
        max_records_per_user=np.int64(3),
        noise_multiplier=np.float32(0.0),
        expected_clients_per_round=np.int64(5),
        bits=np.int64(20),
        seed=np.int64(1),
    )
    assert numpy_process.next.type_signature == (
        fed_analytics.build_hierarchical_histogram_process(0.0, 10, 4).next.type_signature
    )
    decoder = _decoder(TREE, np.float32(0.0), np.int64(1), np.bool_(True), num_bins=np.int64(2))
    assert decoder.range_query(np.int64(0), np.int32(1)) == pytest.approx(3.0)
    assert decoder.node_query(np.int64(1), np.int64(0)) == pytest.approx(
        _decoder(TREE, 0.0, 1, True).node_query(1, 0)
    )


@needs_dp_accounting
def test_numpy_scalars_in_the_calibrations():
    assert _calibrate(
        max_words_per_user=np.int64(2), delta=np.float32(1e-5), epsilon=np.float64(1.0)
    ).noise_scale == pytest.approx(_calibrate().noise_scale)
    assert differential_privacy.analytic_gauss_stddev(
        np.float32(1.0), np.float64(1e-5), np.int64(1)
    ) == pytest.approx(differential_privacy.analytic_gauss_stddev(1.0, 1e-5, 1.0), rel=1e-6)
