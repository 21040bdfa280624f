"""Hierarchical histograms: trees and queries checked against numpy, clipping against its bounds, the DP
noise against its standard deviation (fixed seeds, stated tolerances)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import tensorflow as tf

import fed as tff
from fed_analytics import hierarchical_histogram as hh
from fed_analytics.hierarchical_histogram import _clipping, _factory, _tree
from fed_types import TensorType

needs_tensorflow_privacy = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow_privacy") is None,
    reason="needs tensorflow-privacy (the dp extra, Python < 3.12)",
)


def tree_of(histogram, arity):
    return tf.ragged.constant(_tree.build_tree_numpy(np.asarray(histogram), arity))


def datasets(clients):
    return [tf.data.Dataset.from_tensor_slices(np.asarray(c, np.float32)) for c in clients]


# -- the tree -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_bins, arity, depth", [(1, 2, 1), (2, 2, 2), (5, 2, 4), (8, 2, 4), (125, 5, 4), (10, 3, 4)]
)
def test_tree_depth_is_counted_exactly(num_bins, arity, depth):
    assert _tree.tree_depth(num_bins, arity) == depth
    assert _tree.row_splits(depth, arity)[-1] == (arity**depth - 1) // (arity - 1)


def test_the_tensorflow_tree_matches_numpy():
    leaves = np.arange(1, 11, dtype=np.int32)
    depth = _tree.tree_depth(10, 3)
    flat = _tree.build_tree(tf.constant(leaves), 3, depth).numpy()
    expected = _tree.build_tree_numpy(leaves, 3)
    assert flat.tolist() == [v for layer in expected for v in layer]
    assert expected[0] == [55] and expected[1] == [45, 10, 0]


# -- the decoder --------------------------------------------------------------------------------------


@pytest.mark.parametrize("arity, num_bins", [(2, 13), (3, 9), (4, 5)])
def test_node_and_range_queries_match_numpy(arity, num_bins):
    rng = np.random.default_rng(arity)
    histogram = rng.integers(0, 20, size=num_bins)
    padded = np.pad(histogram, (0, arity ** (_tree.tree_depth(num_bins, arity) - 1) - num_bins))
    for use_efficient in (False, True):
        decoder = hh.HierarchicalHistogramDecoder(
            tree_of(histogram, arity), 0.0, 1.0, use_efficient=use_efficient
        )
        for index, count in enumerate(padded):
            assert decoder.node_query(decoder._num_layers - 1, index) == pytest.approx(count)
        for left in range(len(padded)):
            for right in range(left, len(padded)):
                expected = padded[left : right + 1].sum()
                assert decoder.range_query(left, right) == pytest.approx(expected)


def test_the_decoder_takes_the_struct_a_computation_gives_and_lists_of_layers():
    ragged = tree_of([1, 2, 3, 4], 2)
    struct = {"flat_values": ragged.flat_values, "nested_row_splits": ragged.nested_row_splits}
    for given in (ragged, struct, ragged.to_list()):
        assert hh.HierarchicalHistogramDecoder(given, 0, 4).range_query(1, 2) == 5


def test_quantile_queries_match_numpy():
    rng = np.random.default_rng(3)
    histogram = rng.integers(0, 10, size=16)
    decoder = hh.HierarchicalHistogramDecoder(tree_of(histogram, 2), 10.0, 26.0)
    cumulative = np.cumsum(histogram)
    for q in (0.1, 0.25, 0.5, 0.9, 1.0):
        first = int(np.argmax(cumulative >= q * cumulative[-1]))
        assert decoder.quantile_query(q) == pytest.approx((10.0 + first, 11.0 + first))


def test_quantiles_of_padded_bins_use_the_width_of_num_bins():
    histogram = [0, 4, 0, 0, 1]  # 5 bins of [0, 10): width 2, padded to 8 leaves
    decoder = hh.HierarchicalHistogramDecoder(tree_of(histogram, 2), 0.0, 10.0, num_bins=5)
    assert decoder.quantile_query(0.5) == (2.0, 4.0)
    assert decoder.quantile_query(1.0) == (8.0, 10.0)


def test_the_efficient_estimate_has_lower_variance_than_a_noisy_node():
    # Gaussian noise (sigma 1) on every node of a binary tree over 8 bins: the combined estimate of
    # the root and of a middle node is closer to the truth than the node alone (their variance is
    # about 0.5 and 0.6 against 1; over 400 trees, tolerance 0.2).
    rng = np.random.default_rng(0)
    truth = _tree.build_tree_numpy(np.arange(8.0), 2)
    errors = {"plain": [], "efficient": []}
    for _ in range(400):
        noisy = [[v + rng.normal() for v in layer] for layer in truth]
        for kind, efficient in (("plain", False), ("efficient", True)):
            decoder = hh.HierarchicalHistogramDecoder(noisy, 0, 8, use_efficient=efficient)
            errors[kind].append(
                [decoder.node_query(0, 0) - truth[0][0], decoder.node_query(2, 1) - truth[2][1]]
            )
    plain = np.var(errors["plain"], axis=0)
    efficient = np.var(errors["efficient"], axis=0)
    assert plain == pytest.approx([1.0, 1.0], abs=0.2)
    assert np.all(efficient < plain - 0.25)


def test_enforce_consistency_fits_the_leaves_in_least_squares():
    rng = np.random.default_rng(1)
    truth = _tree.build_tree_numpy(np.arange(4.0), 2)
    noisy = [[v + rng.normal() for v in layer] for layer in truth]
    decoder = hh.HierarchicalHistogramDecoder(noisy, 0, 4, use_efficient=True)
    with pytest.raises(ValueError, match="enforce_consistency"):
        decoder.quantile_query(0.5)
    decoder.enforce_consistency()
    matrix = np.array(
        [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1], *np.eye(4)], dtype=float
    )  # which leaves each node sums
    leaves = np.linalg.lstsq(matrix, np.concatenate(noisy), rcond=None)[0]
    assert [decoder.node_query(2, i) for i in range(4)] == pytest.approx(leaves)
    assert decoder.node_query(0, 0) == pytest.approx(leaves.sum())
    decoder.quantile_query(0.5)  # consistent now


@pytest.mark.parametrize(
    "histogram, message",
    [
        ([[1, 2]], r"layers of \[2\] nodes"),
        ([[3], [1, 2], [1, 0, 2]], r"layers of \[1, 2, 3\] nodes"),
        ([], r"layers of \[\] nodes"),
    ],
)
def test_the_decoder_refuses_a_histogram_that_is_not_a_tree(histogram, message):
    with pytest.raises(ValueError, match=message):
        hh.HierarchicalHistogramDecoder(histogram, 0, 1)


def test_queries_outside_the_tree_are_refused():
    decoder = hh.HierarchicalHistogramDecoder(tree_of([1, 2, 3, 4], 2), 0, 4)
    with pytest.raises(ValueError, match=r"Cross-layer index 3 .* \[0, 3\)"):
        decoder.node_query(3, 0)
    with pytest.raises(ValueError, match=r"Inner-layer index 2 .* \[0, 2\)"):
        decoder.node_query(1, 2)
    with pytest.raises(ValueError, match=r"outside the valid range \[0, 4\)"):
        decoder.range_query(0, 4)
    with pytest.raises(ValueError, match="q must be in"):
        decoder.quantile_query(1.5)


# -- clipping -----------------------------------------------------------------------------------------


def clip_with_seeds(clip, histogram, max_records, count):
    """`clip` of `histogram` with `count` different seeds, in one graph."""
    seeds = tf.stack([tf.range(count, dtype=tf.int64), tf.fill([count], np.int64(7))], axis=1)
    clip_all = tf.function(
        lambda: tf.map_fn(
            lambda seed: clip(histogram, max_records, seed), seeds, fn_output_signature=tf.int32
        )
    )
    return clip_all().numpy()


def test_sub_sampling_keeps_at_most_max_records_drawn_uniformly():
    histogram = tf.constant([6, 3, 1, 0], tf.int32)
    samples = clip_with_seeds(_clipping.sub_sample_clip, histogram, 5, 400)
    assert np.all(samples.sum(axis=1) == 5) and np.all(samples <= histogram.numpy())
    # Each of the 10 records is kept with probability 1/2: bin means 3, 1.5, 0.5, 0. The standard
    # deviation of a mean of 400 hypergeometric draws is at most 0.041: tolerance 0.16.
    assert samples.mean(axis=0) == pytest.approx([3.0, 1.5, 0.5, 0.0], abs=0.16)
    small = tf.constant([2, 0, 1, 0], tf.int32)
    assert _clipping.sub_sample_clip(small, 5, tf.constant([0, 0], tf.int64)).numpy().tolist() == [
        2,
        0,
        1,
        0,
    ]


def test_distinct_keeps_at_most_max_records_bins_once_each():
    histogram = tf.constant([6, 0, 1, 2, 0], tf.int32)
    samples = clip_with_seeds(_clipping.distinct_clip, histogram, 2, 300)
    assert np.all(samples.sum(axis=1) == 2) and set(np.unique(samples)) == {0, 1}
    assert np.all(samples[:, [1, 4]] == 0)
    # Each occupied bin is kept with probability 2/3 (standard deviation of the mean 0.028).
    assert samples.mean(axis=0)[[0, 2, 3]] == pytest.approx([2 / 3] * 3, abs=0.11)
    few = _clipping.distinct_clip(histogram, 3, tf.constant([0, 0], tf.int64))
    assert few.numpy().tolist() == [1, 0, 1, 1, 0]


@pytest.mark.parametrize("mechanism", ["sub-sampling", "distinct"])
def test_the_clipping_factory_bounds_each_client_and_sums(mechanism):
    factory = hh.HistogramClippingSumFactory(mechanism, max_records_per_user=3, seed=5)
    process = factory.create(TensorType(np.int32, [4]))
    clients = [np.array(h, np.int32) for h in ([5, 0, 2, 0], [1, 1, 0, 0], [0, 0, 0, 9])]
    state = process.initialize()
    totals = []
    for _ in range(2):
        output = process.next(state, clients)
        state = output.state
        totals.append(output.result)
    for total in totals:
        if mechanism == "sub-sampling":
            # Client 1 keeps 3 of its 7 records, client 2 both, client 3 three of its nines.
            assert total.sum() == 3 + 2 + 3 and total[3] == 3 and total[1] == 1
        else:
            assert total.tolist() == [2, 1, 1, 1]
    assert isinstance(state, hh.HistogramClippingState)


def test_the_clipping_factory_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"clip_mechanism must be one of .* got 'other'"):
        hh.HistogramClippingSumFactory("other")
    with pytest.raises(ValueError, match="max_records_per_user must be a positive int, got 0"):
        hh.HistogramClippingSumFactory(max_records_per_user=0)
    with pytest.raises(TypeError, match=r"rank-1 integer tensor .* got float32\[3\]"):
        hh.HistogramClippingSumFactory().create(TensorType(np.float32, [3]))


# -- the computation and the process ------------------------------------------------------------------

CLIENTS = [
    [0.5, 1.5, 1.7, 9.99, -1.0, 10.0],  # -1 and 10 lie outside [0, 10)
    [3.2, 3.3, 4.0],
    [7.5],
    [],
]


def numpy_histogram(clients, lower, upper, num_bins):
    records = np.concatenate([np.asarray(c, np.float32) for c in clients]).astype(np.float64)
    inside = records[(records >= lower) & (records < upper)]
    return np.histogram(inside, num_bins, (lower, upper))[0]


@pytest.mark.parametrize("enable_secure_sum", [True, False])
def test_without_noise_the_tree_counts_every_record_exactly(enable_secure_sum):
    computation = hh.build_hierarchical_histogram_computation(
        0.0, 10.0, 5, arity=3, max_records_per_user=10, enable_secure_sum=enable_secure_sum
    )
    assert str(computation.type_signature) == (
        "({float32*}@CLIENTS -> <aggregated_hierarchical_histogram=<flat_values=int32[13],"
        "nested_row_splits=<int64[4]>>,round_timestamp=int64>@SERVER)"
    )
    output = computation(datasets(CLIENTS))
    assert isinstance(output, hh.ServerOutput)
    histogram = output.aggregated_hierarchical_histogram
    assert isinstance(histogram, tf.RaggedTensor)
    expected = numpy_histogram(CLIENTS, 0.0, 10.0, 5)
    assert expected.tolist() == [3, 2, 1, 1, 1]
    assert histogram.to_list() == _tree.build_tree_numpy(expected, 3)
    assert output.round_timestamp > 1_700_000_000


def test_range_queries_on_a_known_distribution_match_numpy():
    rng = np.random.default_rng(11)
    clients = [rng.normal(5.0, 2.0, size=8) for _ in range(6)]
    computation = hh.build_hierarchical_histogram_computation(0.0, 10.0, 16, max_records_per_user=8)
    output = computation(datasets(clients))
    decoder = hh.HierarchicalHistogramDecoder(output.aggregated_hierarchical_histogram, 0.0, 10.0)
    expected = numpy_histogram(clients, 0.0, 10.0, 16)
    for left, right in [(0, 15), (3, 9), (7, 7), (0, 4)]:
        assert decoder.range_query(left, right) == expected[left : right + 1].sum()
    first = int(np.argmax(np.cumsum(expected) >= 0.5 * expected.sum()))
    assert decoder.quantile_query(0.5) == pytest.approx((first * 10 / 16, (first + 1) * 10 / 16))


@pytest.mark.parametrize("clip_mechanism", ["sub-sampling", "distinct"])
def test_clipping_bounds_each_client_in_the_computation(clip_mechanism):
    computation = hh.build_hierarchical_histogram_computation(
        0.0, 4.0, 4, clip_mechanism=clip_mechanism, max_records_per_user=2, seed=1
    )
    clients = [[0.5] * 5, [1.5, 2.5, 3.5], [3.1]]
    leaves = computation(datasets(clients)).aggregated_hierarchical_histogram[-1].numpy()
    # Client 1 holds five records in bin 0: two of them, or with 'distinct' the bin once.
    assert leaves[0] == (2 if clip_mechanism == "sub-sampling" else 1)
    assert leaves[1] + leaves[2] + leaves[3] == 3


def test_the_process_returns_a_fresh_histogram_each_round_and_takes_its_state_back():
    process = hh.build_hierarchical_histogram_process(0.0, 10.0, 5, max_records_per_user=10)
    assert isinstance(process, tff.templates.IterativeProcess)
    state = process.initialize()
    assert state.aggregated_hierarchical_histogram.to_list() == [[0], [0, 0], [0] * 4, [0] * 8]
    assert state.round_timestamp == 0
    expected = _tree.build_tree_numpy(numpy_histogram(CLIENTS, 0.0, 10.0, 5), 2)
    for _ in range(2):
        state, metrics = process.next(state, datasets(CLIENTS))
        assert state.aggregated_hierarchical_histogram.to_list() == expected
        assert metrics == ()


@pytest.mark.parametrize(
    "options, error, message",
    [
        (
            {"lower_bound": 2, "upper_bound": 1},
            ValueError,
            "upper_bound must be larger than lower_bound",
        ),
        ({"num_bins": 0}, ValueError, "num_bins must be a positive int, got 0"),
        ({"arity": 1}, ValueError, "arity must be an int >= 2, got 1"),
        ({"clip_mechanism": "invalid"}, ValueError, "clip_mechanism must be one of"),
        ({"max_records_per_user": 0}, ValueError, "max_records_per_user must be a positive int"),
        ({"dp_mechanism": "invalid"}, ValueError, "dp_mechanism must be one of"),
        ({"noise_multiplier": -0.1}, ValueError, "noise_multiplier must be a non-negative number"),
        ({"expected_clients_per_round": 0}, ValueError, "expected_clients_per_round must be"),
        ({"bits": 0}, ValueError, r"bits must be an int in \[1, 22\], got 0"),
        ({"bits": 23}, ValueError, r"bits must be an int in \[1, 22\], got 23"),
        ({"bits": 2, "expected_clients_per_round": 8}, ValueError, r"log2\(expected_clients"),
        (
            {"dp_mechanism": "distributed-discrete-gaussian", "enable_secure_sum": False},
            ValueError,
            "needs enable_secure_sum=True",
        ),
        (
            {"dp_mechanism": "distributed-discrete-gaussian", "bits": 5},
            ValueError,
            "bits=5 is too small",
        ),
        (
            # TensorFlow Federated's case: log2(4 * sqrt(8) * 4 * 1 + 8 * 1 + 1) + 1 = 6.76 bits needed.
            {
                "num_bins": 1,
                "max_records_per_user": 1,
                "dp_mechanism": "distributed-discrete-gaussian",
                "noise_multiplier": 4.0,
                "expected_clients_per_round": 8,
                "bits": 4,
            },
            ValueError,
            r"bits=4 is too small .* at least 6.76 bits",
        ),
    ],
)
@pytest.mark.parametrize(
    "build",
    [hh.build_hierarchical_histogram_computation, hh.build_hierarchical_histogram_process],
)
def test_bad_parameters_are_refused_before_anything_is_traced(build, options, error, message):
    arguments = {"lower_bound": 0.0, "upper_bound": 1.0, "num_bins": 4, **options}
    with pytest.raises(error, match=message):
        build(**arguments)


# -- differential privacy -----------------------------------------------------------------------------


@needs_tensorflow_privacy
def test_central_gaussian_noise_has_the_standard_deviation_it_should():
    num_bins, max_records, noise_multiplier = 128, 4, 0.5
    process = hh.build_hierarchical_histogram_process(
        0.0,
        32.0,
        num_bins,
        max_records_per_user=max_records,
        dp_mechanism="central-gaussian",
        noise_multiplier=noise_multiplier,
        seed=7,
    )
    clients = [[1.5, 2.5, 17.0], [30.5, 30.6], [8.0, 8.5, 9.0, 9.5]]
    exact = np.concatenate(_tree.build_tree_numpy(numpy_histogram(clients, 0, 32, 128), 2))
    state = process.initialize()
    first, _ = process.next(state, datasets(clients))
    noise = []
    for _ in range(3):
        state, _ = process.next(state, datasets(clients))
        noise.append(state.aggregated_hierarchical_histogram.flat_values.numpy() - exact)
    noise = np.concatenate(noise)  # 3 rounds of 255 nodes
    # The sensitivity of a sub-sampled client's tree is max_records * sqrt(depth) (depth 8). The
    # secure sum's quantization adds at most 3 * 8 / 2**32 per node. With 765 draws the sample
    # standard deviation is within 10% with probability above 0.999, and the mean within 4 sigma/sqrt(n).
    sigma = noise_multiplier * max_records * math.sqrt(8)
    assert np.std(noise) == pytest.approx(sigma, rel=0.1)
    assert abs(np.mean(noise)) < 4 * sigma / math.sqrt(noise.size)
    # Reproducible: the same state and seed give the same round; the rounds did not repeat noise.
    again, _ = process.next(process.initialize(), datasets(clients))
    np.testing.assert_array_equal(
        again.aggregated_hierarchical_histogram.flat_values,
        first.aggregated_hierarchical_histogram.flat_values,
    )
    assert len({tuple(n[:5]) for n in noise.reshape(3, -1)}) == 3


@needs_tensorflow_privacy
def test_central_gaussian_without_noise_is_the_exact_tree_in_floats():
    computation = hh.build_hierarchical_histogram_computation(
        0.0, 10.0, 5, dp_mechanism="central-gaussian", noise_multiplier=0.0, enable_secure_sum=False
    )
    assert "flat_values=float32[15]" in str(computation.type_signature)
    histogram = computation(datasets(CLIENTS)).aggregated_hierarchical_histogram
    expected = _tree.build_tree_numpy(numpy_histogram(CLIENTS, 0.0, 10.0, 5), 2)
    assert histogram.flat_values.numpy() == pytest.approx(np.concatenate(expected))


DDG = "distributed-discrete-gaussian"


def ddg_factory(num_bins, **options):
    return hh.create_hierarchical_histogram_aggregation_factory(
        num_bins, dp_mechanism=DDG, **options
    )


@needs_tensorflow_privacy
def test_distributed_discrete_gaussian_has_the_types_tensorflow_federated_gives():
    process = ddg_factory(5, arity=3, noise_multiplier=1.0).create(TensorType(np.int32, [5]))
    query_state = "<arity=int32,inner_query_state=<l2_norm_bound=float32,local_stddev=float32>>"
    signature = str(process.next.type_signature)
    assert f"query_state={query_state}" in signature
    assert "result=<flat_values=int32[13],nested_row_splits=<int64[4]>>@SERVER" in signature
    assert "measurements=<dp_query_metrics=<>,dp=<>>@SERVER" in signature


@needs_tensorflow_privacy
@pytest.mark.parametrize("clip_mechanism", ["sub-sampling", "distinct"])
def test_distributed_discrete_gaussian_without_noise_is_the_exact_integer_tree(clip_mechanism):
    options = dict(
        clip_mechanism=clip_mechanism,
        dp_mechanism=DDG,
        noise_multiplier=0.0,
        max_records_per_user=10,
    )
    computation = hh.build_hierarchical_histogram_computation(0.0, 10.0, 5, **options)
    assert "flat_values=int32[15]" in str(computation.type_signature)
    # No client holds more than 10 records; 'distinct' counts each client's bins once.
    histograms = [numpy_histogram([c], 0.0, 10.0, 5) for c in CLIENTS]
    if clip_mechanism == "distinct":
        histograms = [np.minimum(h, 1) for h in histograms]
    expected = _tree.build_tree_numpy(np.sum(histograms, axis=0), 2)
    histogram = computation(datasets(CLIENTS)).aggregated_hierarchical_histogram
    assert histogram.dtype == tf.int32 and histogram.to_list() == expected
    process = hh.build_hierarchical_histogram_process(0.0, 10.0, 5, **options)
    state = process.initialize()
    assert state.aggregated_hierarchical_histogram.flat_values.dtype == tf.int32
    for _ in range(2):
        state, _ = process.next(state, datasets(CLIENTS))
        assert state.aggregated_hierarchical_histogram.to_list() == expected


@needs_tensorflow_privacy
@pytest.mark.parametrize("num_clients", [9, 1])
def test_distributed_discrete_gaussian_noise_is_the_clients_local_noise_summed(num_clients):
    # 256 bins: depth 9, so a sub-sampled client's tree has L2 norm at most 3 * sqrt(9) = 9. Each
    # client adds discrete Gaussian noise of stddev 1.0 * 9 / sqrt(9) = 3 to each of the 511 nodes;
    # the server's sum carries sqrt(num_clients) * 3 (9 = noise_multiplier * l2_norm_bound when the
    # expected 9 clients take part).
    num_bins, max_records, noise_multiplier, expected_clients = 256, 3, 1.0, 9
    bound = _factory.l2_norm_bound(num_bins, 2, "sub-sampling", max_records)
    local = _factory.local_stddev(noise_multiplier, bound, expected_clients)
    assert (bound, local) == (9.0, 3.0)
    process = hh.build_hierarchical_histogram_process(
        0.0,
        256.0,
        num_bins,
        max_records_per_user=max_records,
        dp_mechanism=DDG,
        noise_multiplier=noise_multiplier,
        expected_clients_per_round=expected_clients,
        seed=3,
    )
    clients = [[7.0 * i, 7.0 * i + 0.5, 200.0 + i] for i in range(num_clients)]
    exact = np.concatenate(_tree.build_tree_numpy(numpy_histogram(clients, 0, 256, num_bins), 2))
    state = process.initialize()
    noise = []
    for _ in range(8):
        state, _ = process.next(state, datasets(clients))
        flat_values = state.aggregated_hierarchical_histogram.flat_values
        assert flat_values.dtype == tf.int32
        noise.append(flat_values.numpy() - exact)
    noise = np.concatenate(noise)  # 8 rounds of 511 nodes
    sigma = math.sqrt(num_clients) * local
    # 4088 draws: the sample standard deviation is within 6% (5.4 of its standard deviations) and
    # the mean within 4 sigma / sqrt(n). Nodes whose count is 0 come out negative too: the secure sum
    # runs over a symmetric range.
    assert np.std(noise) == pytest.approx(sigma, rel=0.06)
    assert abs(np.mean(noise)) < 4 * sigma / math.sqrt(noise.size)
    assert noise.min() < -sigma
    # A seed fixes the clients' sampling, not this noise (tensorflow-privacy draws it afresh).
    first, _ = process.next(process.initialize(), datasets(clients))
    again, _ = process.next(process.initialize(), datasets(clients))
    assert not np.array_equal(
        first.aggregated_hierarchical_histogram.flat_values,
        again.aggregated_hierarchical_histogram.flat_values,
    )


@needs_tensorflow_privacy
def test_the_modular_sum_holds_the_expected_clients_at_their_bound():
    # 3 expected clients of at most 5 records: log2(3 * 5 + 1) + 1 = 5 bits needed, so bits=5 gives
    # the modulus 16 and the symmetric range [-15, 15]. The root of 3 full clients is 15.
    assert _factory.min_bits(0.0, 5.0, 3, 5) == pytest.approx(math.log2(16) + 1)
    # A sum of exactly the modulus would wrap: 4 clients of 4 records need more than 5 bits.
    with pytest.raises(ValueError, match="bits=5 is too small"):
        ddg_factory(1, max_records_per_user=4, expected_clients_per_round=4, bits=5)
    with pytest.raises(ValueError, match="bits=4 is too small"):
        ddg_factory(2, max_records_per_user=5, expected_clients_per_round=3, bits=4)
    factory = ddg_factory(2, max_records_per_user=5, expected_clients_per_round=3, bits=5)
    process = factory.create(TensorType(np.int32, [2]))
    full = [np.array([5, 0], np.int32), np.array([2, 3], np.int32), np.array([0, 9], np.int32)]
    result = process.next(process.initialize(), full).result
    assert result["flat_values"].tolist() == [15, 7, 8]
    # A client more than expected can wrap the sum around (20 is -11 modulo 31), as TensorFlow
    # Federated warns: choose bits for the largest round.
    result = process.next(process.initialize(), [*full, np.array([5, 0], np.int32)]).result
    assert result["flat_values"].tolist() == [20 - 31, 12, 8]


def test_the_distributed_mechanism_is_refused_without_a_secure_sum():
    with pytest.raises(ValueError, match="needs enable_secure_sum=True"):
        ddg_factory(4, enable_secure_sum=False)
    with pytest.raises(ValueError, match=r"bits must be an int in \[1, 22\], got 23"):
        ddg_factory(4, bits=23)


# -- registration -------------------------------------------------------------------------------------


def test_the_factories_are_registered_as_aggregators():
    from fed_aggregators import factory_from_config
    from fed_core.plugins import get_registry

    entry = get_registry("aggregators").entry("hierarchical_histogram")
    assert entry.distribution == "fed-analytics"
    factory = factory_from_config(
        "histogram_clipping_sum(clip_mechanism='distinct', max_records_per_user=1, seed=0) -> sum"
    )
    process = factory.create(TensorType(np.int32, [3]))
    total = process.next(process.initialize(), [np.array([4, 4, 0], np.int32)] * 2).result
    assert total.sum() == 2 and total[2] == 0
    tree = factory_from_config(
        {"name": "hierarchical_histogram", "num_bins": 3, "enable_secure_sum": False}
    ).create(TensorType(np.int32, [3]))
    result = tree.next(tree.initialize(), [np.array([1, 2, 0], np.int32)]).result
    assert result["flat_values"].tolist() == [3, 3, 0, 1, 2, 0, 0]


def test_fed_analytics_reexports_the_hierarchical_histogram():
    assert tff.analytics.build_hierarchical_histogram_process is (
        hh.build_hierarchical_histogram_process
    )
    assert tff.analytics.HierarchicalHistogramDecoder is hh.HierarchicalHistogramDecoder
    assert tff.analytics.hierarchical_histogram is hh
