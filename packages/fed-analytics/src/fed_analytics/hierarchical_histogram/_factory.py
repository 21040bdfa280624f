"""The hierarchical histogram's aggregation factory: clip each client's histogram, build the tree over
it, sum the trees (securely, when asked) and add DP noise to every node (when asked).

The factories nest as TensorFlow Federated's do, outermost first: `HistogramClippingSumFactory` (bounds
each client's records), then the tree sum, then the record sum (`SecureSumFactory`,
`SecureModularSumFactory` or `SumFactory`). With a DP mechanism, the tree sum is a
`fed_aggregators.DifferentiallyPrivateFactory` of tensorflow-privacy's `TreeRangeSumQuery` (the `dp`
extra) whose inner query adds the noise: a `GaussianSumQuery` on the server ('central-gaussian') or a
`DistributedDiscreteGaussianSumQuery` on every client ('distributed-discrete-gaussian'); with
'no-noise' it is a plain tree sum that needs no tensorflow-privacy.

The sum comes out as TensorFlow Federated's struct of a ragged tensor,
`<flat_values=T[nodes],nested_row_splits=<int64[depth + 1]>>`: the tree's nodes layer after layer
(root first) and where each layer starts.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import (
    SecureModularSumFactory,
    SecureSumFactory,
    SumFactory,
    UnweightedAggregationFactory,
)
from fed_analytics.hierarchical_histogram import _tree
from fed_analytics.hierarchical_histogram._clipping import (
    CLIP_MECHANISMS,
    HistogramClippingSumFactory,
    check_member,
    check_positive_int,
    check_seed,
)
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, FederatedType, TensorType, to_type

_MAX_TREE_NODES = 2**31 - 1
"""The most nodes of a tree: TensorFlow counts the bins (`tf.math.bincount`) with int32 indices."""

NO_NOISE_MECHANISMS = ["no-noise"]
CENTRAL_DP_MECHANISMS = ["central-gaussian"]
DISTRIBUTED_DP_MECHANISMS = ["distributed-discrete-gaussian"]
DP_MECHANISMS = CENTRAL_DP_MECHANISMS + DISTRIBUTED_DP_MECHANISMS + NO_NOISE_MECHANISMS
"""The DP mechanisms the hierarchical histogram takes (TensorFlow Federated's list)."""


class _HistogramOfBins(HistogramClippingSumFactory):
    """A `HistogramClippingSumFactory` built for histograms of `num_bins` bins (its tree, its noise and
    its bounds are), which refuses others."""

    def __init__(self, num_bins: int, **kwargs: Any):
        super().__init__(**kwargs)
        self._num_bins = num_bins

    def create(self, value_type: Any) -> AggregationProcess:
        t = to_type(value_type)
        if (
            isinstance(t, TensorType)
            and isinstance(t.shape, tuple)  # not UNKNOWN_RANK
            and tuple(t.shape) != (self._num_bins,)
        ):
            raise TypeError(
                "create_hierarchical_histogram_aggregation_factory: this factory is for histograms "
                f"of num_bins={self._num_bins} bins (such as int32[{self._num_bins}]), got {t}."
            )
        return super().create(value_type)


def tree_as_struct(flat_values: tf.Tensor, depth: int, arity: int) -> collections.OrderedDict:
    """The flattened tree as TensorFlow Federated's struct of a ragged tensor, one row per layer."""
    return collections.OrderedDict(
        flat_values=flat_values,
        nested_row_splits=(tf.constant(_tree.row_splits(depth, arity)),),
    )


class _TreeSumFactory(UnweightedAggregationFactory):
    """Each client builds the tree over its histogram; `record_aggregation_factory` sums the trees. The
    result is the tree as a ragged tensor's struct. State and measurements are the record sum's."""

    def __init__(self, arity: int, record_aggregation_factory: UnweightedAggregationFactory):
        self._arity = arity
        self._record_aggregation_factory = record_aggregation_factory

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = to_type(value_type)
        num_bins = value_type.shape[0]
        arity, depth = self._arity, _tree.tree_depth(num_bins, self._arity)
        tree_type = TensorType(value_type.dtype, [_tree.tree_size(depth, arity)])
        record_process = self._record_aggregation_factory.create(tree_type)

        @ftf.computation(value_type)
        def build_tree(histogram):
            return _tree.build_tree(histogram, arity, depth)

        @ftf.computation(tree_type)
        def as_struct(flat_values):
            return tree_as_struct(flat_values, depth, arity)

        @fc.federated_computation(
            record_process.initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            summed = record_process.next(state, fc.federated_map(build_tree, value))
            return MeasuredProcessOutput(
                summed.state, fc.federated_map(as_struct, summed.result), summed.measurements
            )

        return AggregationProcess(record_process.initialize, next_fn)

    def __repr__(self) -> str:
        return f"TreeSumFactory(arity={self._arity}, {self._record_aggregation_factory!r})"


_TREE_QUERY_CLASSES: dict[type, type] = {}


def tree_range_sum_query(inner_query: Any, arity: int, num_bins: int) -> Any:
    """tensorflow-privacy's `TreeRangeSumQuery` over `num_bins` leaves, with the changes that fed's
    `DifferentiallyPrivateFactory` needs (as TensorFlow Federated makes them in its own copy of the
    query): its empty sample is a tree, not a histogram; and its result is the struct of the ragged
    tree, not a `tf.RaggedTensor`, which fed's types do not have. The tree's depth is counted in
    integers (the library's floating-point logarithm adds a layer for some exact powers)."""
    base = _import_dp_query("tree_range_query").TreeRangeSumQuery
    if base not in _TREE_QUERY_CLASSES:

        class FlatTreeRangeSumQuery(base):  # type: ignore[misc, valid-type]
            """A TreeRangeSumQuery whose result is `<flat_values, nested_row_splits>`."""

            def __init__(self, inner_query: Any, arity: int, num_bins: int):
                super().__init__(inner_query=inner_query, arity=arity)
                self._depth = _tree.tree_depth(num_bins, arity)

            def initial_sample_state(self, template: Any = None) -> Any:
                params = self.derive_sample_params(self.initial_global_state())
                return self.preprocess_record(params, super().initial_sample_state(template))

            def preprocess_record(self, params: Any, record: Any) -> Any:
                _, inner_params = params
                tree = _tree.build_tree(record, self._arity, self._depth)
                return self._inner_query.preprocess_record(inner_params, tree)

            def get_noised_result(self, sample_state: Any, global_state: Any) -> Any:
                noised, inner_state, event = self._inner_query.get_noised_result(
                    sample_state, global_state.inner_query_state
                )
                new_state = base.GlobalState(
                    arity=global_state.arity, inner_query_state=inner_state
                )
                # The inner query's event holds for the whole tree: the tree is its record.
                return tree_as_struct(noised, self._depth, self._arity), new_state, event

        _TREE_QUERY_CLASSES[base] = FlatTreeRangeSumQuery
    return _TREE_QUERY_CLASSES[base](inner_query, arity, num_bins)


def _import_dp_query(module: str) -> Any:
    from fed_aggregators._dp import import_dp_query

    return import_dp_query(module)


def l2_norm_bound(
    num_bins: int, arity: int, clip_mechanism: str, max_records_per_user: int
) -> float:
    """The L2 norm of a clipped client's tree at most: each layer sums the same records, so with
    'sub-sampling' a layer's L2 norm is at most its L1 norm, `max_records_per_user`; with 'distinct',
    a layer whose nodes each cover `c` bins has at most `max_records_per_user` ones spread over them,
    `min(max_records_per_user**2, max_records_per_user * c)` in squares (TensorFlow Federated's
    bounds)."""
    depth = _tree.tree_depth(num_bins, arity)
    if clip_mechanism == "sub-sampling":
        return max_records_per_user * math.sqrt(depth)
    squares, covered = 0.0, 1
    for _ in range(depth):
        squares += min(max_records_per_user**2, max_records_per_user * covered)
        covered *= arity
    return math.sqrt(squares)


def check_hierarchical_histogram_parameters(
    owner: str,
    num_bins: Any,
    arity: Any,
    clip_mechanism: Any,
    max_records_per_user: Any,
    dp_mechanism: Any,
    noise_multiplier: Any,
    expected_clients_per_round: Any,
    bits: Any,
    enable_secure_sum: Any,
) -> None:
    """TensorFlow Federated's checks of the parameters, with messages that name what was given."""
    check_positive_int(num_bins, "num_bins", owner)
    if isinstance(arity, bool) or not isinstance(arity, (int, np.integer)) or arity < 2:
        raise ValueError(f"{owner}: arity must be an int >= 2, got {arity!r}.")
    nodes = _tree.tree_size(_tree.tree_depth(int(num_bins), int(arity)), int(arity))
    if nodes > _MAX_TREE_NODES:
        raise ValueError(
            f"{owner}: num_bins={num_bins} with arity={arity} makes a tree of {nodes} nodes, more "
            f"than the {_MAX_TREE_NODES} a tensor of counts can index; use fewer bins."
        )
    check_member(clip_mechanism, CLIP_MECHANISMS, "clip_mechanism", owner)
    check_positive_int(max_records_per_user, "max_records_per_user", owner)
    check_member(dp_mechanism, DP_MECHANISMS, "dp_mechanism", owner)
    if (
        isinstance(noise_multiplier, bool)
        or not isinstance(noise_multiplier, (int, float, np.integer, np.floating))
        or not noise_multiplier >= 0
        or not math.isfinite(noise_multiplier)
    ):
        raise ValueError(
            f"{owner}: noise_multiplier must be a non-negative number, got {noise_multiplier!r}."
        )
    check_positive_int(expected_clients_per_round, "expected_clients_per_round", owner)
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 22:
        raise ValueError(f"{owner}: bits must be an int in [1, 22], got {bits!r}.")
    if not isinstance(enable_secure_sum, bool):
        raise TypeError(f"{owner}: enable_secure_sum must be a bool, got {enable_secure_sum!r}.")
    if dp_mechanism in DISTRIBUTED_DP_MECHANISMS and not enable_secure_sum:
        raise ValueError(
            f"{owner}: dp_mechanism={dp_mechanism!r} needs enable_secure_sum=True: the distributed "
            "noise is private only inside a secure sum."
        )


def local_stddev(
    noise_multiplier: float, l2_norm_bound: float, expected_clients_per_round: int
) -> float:
    """The standard deviation of the discrete Gaussian noise each client adds with
    'distributed-discrete-gaussian', `noise_multiplier * l2_norm_bound /
    sqrt(expected_clients_per_round)`: the noise of `expected_clients_per_round` clients sums to the
    central mechanism's `noise_multiplier * l2_norm_bound` (TensorFlow Federated's split).
    tensorflow-privacy's sampler rounds it up to an integer, so the summed noise of `n` clients has
    standard deviation `sqrt(n) * ceil(local_stddev)`."""
    return noise_multiplier * l2_norm_bound / math.sqrt(expected_clients_per_round)


def min_bits(
    noise_multiplier: float,
    l2_norm_bound: float,
    expected_clients_per_round: int,
    max_records_per_user: int,
) -> float:
    """The fewest `bits` that 'distributed-discrete-gaussian' allows: the modular sum (modulus
    `2 ** (bits - 1)`, results in `[-(modulus - 1), modulus - 1]`) must hold the clipped counts of
    `expected_clients_per_round` clients plus four standard deviations of their summed noise,
    `X = 4 * sqrt(clients) * noise_multiplier * l2_norm_bound + clients * max_records_per_user`:
    `log2(X + 1) + 1`. TensorFlow Federated's bound, `log2(X) + 1`, lets a sum of exactly the modulus
    through, which wraps to a negative count."""
    clients = expected_clients_per_round
    return (
        math.log2(
            4 * math.sqrt(clients) * noise_multiplier * l2_norm_bound
            + clients * max_records_per_user
            + 1
        )
        + 1
    )


def create_hierarchical_histogram_aggregation_factory(
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
) -> HistogramClippingSumFactory:
    """The aggregation factory of hierarchical histograms over client histograms of `num_bins` bins
    (`int32[num_bins]` counts), with TensorFlow Federated's parameters.

    Each client clips its histogram with `clip_mechanism` to `max_records_per_user` records (see
    `HistogramClippingSumFactory`) and builds the `arity`-ary tree over it; the trees are summed with
    a secure sum (`enable_secure_sum`) or a plain sum. The result is the summed tree as
    `<flat_values, nested_row_splits>`: int32 counts, except float32 with 'central-gaussian'.

    `dp_mechanism`:

    - 'no-noise': the exact tree; the secure sum is bounded by `max_records_per_user`.
    - 'central-gaussian': the server adds Gaussian noise of standard deviation
      `noise_multiplier * l2_norm_bound` to every node, where `l2_norm_bound` bounds a clipped
      client's tree (`max_records_per_user * sqrt(depth)` for 'sub-sampling').
    - 'distributed-discrete-gaussian' (Kairouz, Liu and Steinke 2021): every client adds discrete
      Gaussian noise of standard deviation `noise_multiplier * l2_norm_bound /
      sqrt(expected_clients_per_round)` (rounded up to an integer) to its integer tree, and the trees
      are summed with a secure modular sum of modulus `2 ** (bits - 1)` over the symmetric range
      `[-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1]`; the server sees only the noised sum, whose noise
      has standard deviation `noise_multiplier * l2_norm_bound` when `expected_clients_per_round`
      clients take part. Needs `enable_secure_sum=True`, and `bits` at least `log2(4 *
      sqrt(expected_clients_per_round) * noise_multiplier * l2_norm_bound +
      expected_clients_per_round * max_records_per_user) + 1`, so that the sum rarely wraps around;
      more clients than `expected_clients_per_round` may still make it wrap, so choose `bits` for the
      largest round.

    The DP mechanisms need the `dp` extra (tensorflow-privacy).

    `seed` (a fed addition) seeds the clients' sampling and the central noise, for a reproducible
    run; by default each process's `initialize` draws fresh seeds. The distributed discrete Gaussian
    noise is drawn by tensorflow-privacy's samplers from fresh randomness at every call, whatever
    `seed` says: a run with that mechanism is never reproducible.
    """
    owner = "create_hierarchical_histogram_aggregation_factory"
    check_hierarchical_histogram_parameters(
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
    seed = check_seed(seed, owner)
    bound = l2_norm_bound(num_bins, arity, clip_mechanism, max_records_per_user)
    if dp_mechanism in DISTRIBUTED_DP_MECHANISMS:
        needed = min_bits(noise_multiplier, bound, expected_clients_per_round, max_records_per_user)
        if bits < needed:
            raise ValueError(
                f"{owner}: bits={bits} is too small for expected_clients_per_round="
                f"{expected_clients_per_round}, max_records_per_user={max_records_per_user} and "
                f"noise_multiplier={noise_multiplier}: the modular sum would wrap often (it needs "
                f"at least {needed:.2f} bits). Increase bits or lower the others."
            )
    if dp_mechanism == "no-noise":
        record_sum: UnweightedAggregationFactory = (
            SecureSumFactory(max_records_per_user) if enable_secure_sum else SumFactory()
        )
        return _HistogramOfBins(
            int(num_bins),
            clip_mechanism=clip_mechanism,
            max_records_per_user=max_records_per_user,
            inner_agg_factory=_TreeSumFactory(arity, record_sum),
            cast_to_float=False,
            seed=seed,
        )

    from fed_aggregators import DifferentiallyPrivateFactory

    if dp_mechanism == "central-gaussian":
        record_sum = (
            SecureSumFactory(float(max_records_per_user)) if enable_secure_sum else SumFactory()
        )
        inner_query = _import_dp_query("gaussian_query").GaussianSumQuery(
            l2_norm_clip=bound, stddev=noise_multiplier * bound
        )
    else:
        # The clients' noised trees may be negative: the symmetric range sums them modulo
        # 2 ** bits - 1 and maps the sum back into [-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1].
        record_sum = SecureModularSumFactory(modulus=2 ** (bits - 1), symmetric_range=True)
        inner_query = _import_dp_query(
            "distributed_discrete_gaussian_query"
        ).DistributedDiscreteGaussianSumQuery(
            l2_norm_bound=bound,
            local_stddev=local_stddev(noise_multiplier, bound, expected_clients_per_round),
        )
    tree_sum = DifferentiallyPrivateFactory(
        tree_range_sum_query(inner_query, arity, num_bins),
        record_aggregation_factory=record_sum,
        noise_seed=seed,
    )
    return _HistogramOfBins(
        int(num_bins),
        clip_mechanism=clip_mechanism,
        max_records_per_user=max_records_per_user,
        inner_agg_factory=tree_sum,
        # The Gaussian query adds float noise; the discrete one takes and keeps int32 records.
        cast_to_float=dp_mechanism in CENTRAL_DP_MECHANISMS,
        seed=seed,
    )
