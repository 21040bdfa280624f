"""Hierarchical histograms of the clients' numbers: `build_hierarchical_histogram_computation` (one
round) and `build_hierarchical_histogram_process` (TensorFlow Federated's names and parameters).

Inside computations the histogram is TensorFlow Federated's struct of a ragged tensor,
`<flat_values=T[nodes],nested_row_splits=<int64[depth + 1]>>` (fed's types have no ragged tensors).
Called from Python, the computation and the process give it as a `tf.RaggedTensor` with one row per
layer of the tree (the input of `HierarchicalHistogramDecoder`), and the process's `next` takes such a
state back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators.dp import DPAggregatorState
from fed_analytics._data import all_elements
from fed_analytics.hierarchical_histogram import _factory, _tree
from fed_analytics.hierarchical_histogram._clipping import HistogramClippingState
from fed_core.templates import IterativeProcess
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, TensorType

_SEED_TYPE = TensorType(np.int64, [2])


class ServerOutput(NamedTuple):
    """What a round of the hierarchical histogram returns.

    `aggregated_hierarchical_histogram`: the summed (and noised) tree, a `tf.RaggedTensor` whose row
    `i` is layer `i` of the tree (row 0 the total, the last row the bins padded to a power of `arity`);
    inside a computation, its struct `<flat_values, nested_row_splits>`. `round_timestamp`: the start
    of the round in seconds since the epoch (int64).
    """

    aggregated_hierarchical_histogram: Any
    round_timestamp: Any


def _check_bounds(owner: str, lower_bound: Any, upper_bound: Any) -> tuple[float, float]:
    for name, value in (("lower_bound", lower_bound), ("upper_bound", upper_bound)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value)
        ):
            raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}.")
    if not upper_bound > lower_bound:
        # Equal bounds give bins of width zero, into which no record falls.
        raise ValueError(
            f"{owner}: upper_bound must be larger than lower_bound (records are counted in bins of "
            f"[lower_bound, upper_bound)), got upper_bound={upper_bound} and "
            f"lower_bound={lower_bound}."
        )
    return float(lower_bound), float(upper_bound)


def _client_histogram(lower_bound: float, upper_bound: float, num_bins: int) -> fc.Computation:
    """`(float32* -> int32[num_bins])`: a client's records counted in `num_bins` equal bins of
    `[lower_bound, upper_bound)`; records outside are dropped."""
    width = (upper_bound - lower_bound) / num_bins

    @ftf.computation(SequenceType(TensorType(np.float32)))
    def client_histogram(records):
        # In float64, so that float32 records near a bin's edge fall where numpy puts them.
        values = tf.cast(all_elements(records, tf.float32), tf.float64)
        inside = (values >= lower_bound) & (values < upper_bound)
        bins = tf.cast(tf.floor((tf.boolean_mask(values, inside) - lower_bound) / width), tf.int32)
        bins = tf.minimum(bins, num_bins - 1)  # a record just below upper_bound may round up
        counts = tf.math.bincount(bins, minlength=num_bins, maxlength=num_bins, dtype=tf.int32)
        return tf.reshape(counts, [num_bins])

    return client_histogram


@functools.cache
def _now() -> fc.Computation:
    """The computation of the current time in whole seconds, traced on first use (not on import,
    which would start TensorFlow's runtime)."""

    @ftf.computation
    def now():
        return tf.cast(tf.timestamp(), tf.int64)

    return now


def _build(
    owner: str,
    lower_bound: Any,
    upper_bound: Any,
    num_bins: Any,
    arity: Any,
    clip_mechanism: Any,
    max_records_per_user: Any,
    dp_mechanism: Any,
    noise_multiplier: Any,
    expected_clients_per_round: Any,
    bits: Any,
    enable_secure_sum: Any,
    seed: Any,
) -> tuple[Any, Any, Any]:
    """The checked parameters' client work, aggregation process and a function of one round."""
    lower_bound, upper_bound = _check_bounds(owner, lower_bound, upper_bound)
    _factory.check_hierarchical_histogram_parameters(
        owner,
        num_bins,
        arity,
        clip_mechanism,
        max_records_per_user,
        dp_mechanism,
        noise_multiplier,
        expected_clients_per_round,
        bits,
        enable_secure_sum,
    )
    if bits < np.log2(expected_clients_per_round):
        raise ValueError(
            f"{owner}: bits must be at least log2(expected_clients_per_round) = "
            f"{np.log2(expected_clients_per_round):.2f}, got {bits}."
        )
    client_histogram = _client_histogram(lower_bound, upper_bound, num_bins)
    factory = _factory.create_hierarchical_histogram_aggregation_factory(
        num_bins=num_bins,
        arity=arity,
        clip_mechanism=clip_mechanism,
        max_records_per_user=max_records_per_user,
        dp_mechanism=dp_mechanism,
        noise_multiplier=noise_multiplier,
        expected_clients_per_round=expected_clients_per_round,
        bits=bits,
        enable_secure_sum=enable_secure_sum,
        seed=seed,
    )
    process = factory.create(client_histogram.type_signature.result)

    def one_round(client_data: Any, aggregation_state: Any) -> Any:
        timestamp = fc.federated_eval(_now(), SERVER)
        histograms = fc.federated_map(client_histogram, client_data)
        output = process.next(aggregation_state, histograms)
        return fc.federated_zip(ServerOutput(output.result, timestamp))

    return client_histogram, process, one_round


def build_hierarchical_histogram_computation(
    lower_bound: float,
    upper_bound: float,
    num_bins: int,
    arity: int = 2,
    clip_mechanism: str = "sub-sampling",
    max_records_per_user: int = 10,
    dp_mechanism: str = "no-noise",
    noise_multiplier: float = 0.0,
    expected_clients_per_round: int = 10,
    bits: int = 22,
    enable_secure_sum: bool = True,
    *,
    seed: int | None = None,
) -> Any:
    """A federated computation `({float32*}@CLIENTS -> ServerOutput@SERVER)`: one round of the
    hierarchical histogram of the clients' records (datasets of float32 scalars).

    Each client counts its records in `num_bins` equal bins of `[lower_bound, upper_bound)` (records
    outside are dropped), clips its histogram with `clip_mechanism` to `max_records_per_user` records
    ('sub-sampling': a uniform sample of its records; 'distinct': a uniform sample of the bins it has
    records in, each counted once), and builds the `arity`-ary tree over it. The server sums the trees
    (with secure sums when `enable_secure_sum`). With `dp_mechanism='central-gaussian'` the server
    adds Gaussian noise of standard deviation `noise_multiplier` times the tree's L2 sensitivity to
    every node; with 'distributed-discrete-gaussian' each client adds integer noise to its tree
    before a secure modular sum of `bits` bits, so that the server sees only the noised sum (noise
    of the same standard deviation in all, when `expected_clients_per_round` clients take part). Both
    need the `dp` extra; see `create_hierarchical_histogram_aggregation_factory` for the mechanisms,
    `expected_clients_per_round` and `bits`.

    Called from Python it returns a `ServerOutput` whose histogram is a `tf.RaggedTensor` (one row per
    layer, root first); decode it with `HierarchicalHistogramDecoder`. `seed` (a fed addition) fixes
    the sampling and the central noise: the same seed gives the same noise at every call, so use it
    for tests and reproducible experiments, never for releases about the same people. The distributed
    discrete Gaussian noise is fresh at every call whatever `seed` says.
    """
    _, process, one_round = _build(
        "build_hierarchical_histogram_computation",
        lower_bound,
        upper_bound,
        num_bins,
        arity,
        clip_mechanism,
        max_records_per_user,
        dp_mechanism,
        noise_multiplier,
        expected_clients_per_round,
        bits,
        enable_secure_sum,
        seed,
    )
    client_data_type = FederatedType(SequenceType(TensorType(np.float32)), CLIENTS)

    @fc.federated_computation(client_data_type)
    def hierarchical_histogram_computation(client_data):
        return one_round(client_data, process.initialize())

    return _RaggedAtPython(hierarchical_histogram_computation)


def build_hierarchical_histogram_process(
    lower_bound: float,
    upper_bound: float,
    num_bins: int,
    arity: int = 2,
    clip_mechanism: str = "sub-sampling",
    max_records_per_user: int = 10,
    dp_mechanism: str = "no-noise",
    noise_multiplier: float = 0.0,
    expected_clients_per_round: int = 10,
    bits: int = 22,
    enable_secure_sum: bool = True,
    *,
    seed: int | None = None,
) -> IterativeProcess:
    """The hierarchical histogram as an `IterativeProcess`, as TensorFlow Federated builds it: its state
    is the last round's `ServerOutput` (`initialize` returns an all-zero histogram with timestamp 0)
    and `next(state, client_data)` returns `(ServerOutput, ())`, a fresh histogram of `client_data`
    each round (see `build_hierarchical_histogram_computation` for the parameters).

    From Python, histograms come and go as `tf.RaggedTensor`s. Each round's sampling and noise seeds
    are drawn afresh, or, with `seed`, derived from `seed` and the histogram in the state: a run is
    reproducible, and rounds do not repeat their noise. (With 'distributed-discrete-gaussian' only the
    sampling is: that noise is drawn afresh at every call.)
    """
    _, process, one_round = _build(
        "build_hierarchical_histogram_process",
        lower_bound,
        upper_bound,
        num_bins,
        arity,
        clip_mechanism,
        max_records_per_user,
        dp_mechanism,
        noise_multiplier,
        expected_clients_per_round,
        bits,
        enable_secure_sum,
        seed,
    )
    depth = _tree.tree_depth(num_bins, arity)
    size = _tree.tree_size(depth, arity)
    dtype = np.float32 if dp_mechanism in _factory.CENTRAL_DP_MECHANISMS else np.int32

    @ftf.computation
    def initial_output():
        return ServerOutput(
            _factory.tree_as_struct(tf.zeros([size], dtype), depth, arity),
            tf.constant(0, tf.int64),
        )

    @fc.federated_computation
    def init_fn():
        return fc.federated_eval(initial_output, SERVER)

    histogram_type = init_fn.type_signature.result.member.aggregated_hierarchical_histogram

    @ftf.computation(histogram_type.flat_values, _SEED_TYPE)
    def fold_in(flat_values, seed):
        digest = tf.strings.to_hash_bucket_fast(tf.io.serialize_tensor(flat_values), 2**62)
        return tf.random.experimental.stateless_fold_in(seed, digest)

    def reseeded(state: Any, previous: Any) -> Any:
        """The aggregation's initial state with its seeds folded with the previous histogram, so that
        a given `seed` does not repeat a round's randomness."""

        def fold(seed: Any) -> Any:
            return fc.federated_map(fold_in, fc.federated_zip((previous, seed)))

        inner = state.inner_state
        # The distributed discrete Gaussian query draws its noise without the state's seed.
        if dp_mechanism in _factory.CENTRAL_DP_MECHANISMS:
            inner = fc.federated_zip(
                DPAggregatorState(
                    inner.query_state,
                    inner.agg_state,
                    inner.dp_event,
                    inner.is_init_state,
                    fold(inner.noise_seed),
                )
            )
        return fc.federated_zip(HistogramClippingState(inner, fold(state.sampling_seed)))

    client_data_type = FederatedType(SequenceType(TensorType(np.float32)), CLIENTS)

    @fc.federated_computation(init_fn.type_signature.result, client_data_type)
    def next_fn(state, client_data):
        previous = state.aggregated_hierarchical_histogram.flat_values
        output = one_round(client_data, reseeded(process.initialize(), previous))
        return output, fc.federated_value((), SERVER)

    return _RaggedHistogramProcess(init_fn, next_fn)


# -- the Python boundary ------------------------------------------------------------------------------


def _to_ragged(value: Any) -> Any:
    """A computation's result with each `ServerOutput`'s histogram struct made a `tf.RaggedTensor`."""
    if isinstance(value, ServerOutput):
        histogram = value.aggregated_hierarchical_histogram
        if isinstance(histogram, Mapping):
            histogram = tf.RaggedTensor.from_nested_row_splits(
                histogram["flat_values"], tuple(histogram["nested_row_splits"])
            )
        return value._replace(aggregated_hierarchical_histogram=histogram)
    if type(value) in (tuple, list):
        return type(value)(_to_ragged(v) for v in value)
    return value


def _from_ragged(value: Any) -> Any:
    """An argument with each `ServerOutput`'s `tf.RaggedTensor` made the struct a computation takes."""
    if isinstance(value, ServerOutput):
        histogram = value.aggregated_hierarchical_histogram
        if isinstance(histogram, tf.RaggedTensor):
            histogram = {
                "flat_values": histogram.flat_values.numpy(),
                "nested_row_splits": tuple(s.numpy() for s in histogram.nested_row_splits),
            }
        return value._replace(aggregated_hierarchical_histogram=histogram)
    return value


class _RaggedAtPython:
    """A computation whose `ServerOutput`s are given and taken from Python with the histogram as a
    `tf.RaggedTensor`. Everything else (its type signature, its use inside other computations) is the
    computation's own."""

    def __init__(self, computation: Any):
        self._computation = computation
        functools.update_wrapper(self, computation, assigned=("__doc__",), updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_from_ragged(a) for a in args)
        kwargs = {k: _from_ragged(v) for k, v in kwargs.items()}
        return _to_ragged(self._computation(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._computation, name)

    def __repr__(self) -> str:
        return repr(self._computation)


class _RaggedHistogramProcess(IterativeProcess):
    """The process, with `initialize` and `next` taking and giving `tf.RaggedTensor` histograms from
    Python."""

    @property
    def initialize(self) -> Any:
        return _RaggedAtPython(super().initialize)

    @property
    def next(self) -> Any:
        return _RaggedAtPython(super().next)
