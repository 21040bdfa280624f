"""`HistogramClippingSumFactory`: bounds each client's contribution to a histogram before it is summed.

A client's histogram counts its records per bin. 'sub-sampling' keeps a uniform sample of at most
`max_records_per_user` of its records (without replacement); 'distinct' keeps each bin the client has
records in once, then a uniform sample of at most `max_records_per_user` of those bins. The clipped
histogram goes to the inner factory (a sum, or a DP sum that needs the bound).

The sampling is random: each round's seed comes from the process state (from `seed`, or drawn afresh
by `initialize`), is broadcast, and each client folds in a fingerprint of its own histogram, so that
clients sample independently (two clients with identical histograms sample alike).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import SumFactory, UnweightedAggregationFactory
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, TensorType, to_type

CLIP_MECHANISMS = ["sub-sampling", "distinct"]
"""The clipping mechanisms `HistogramClippingSumFactory` supports."""

_SEED_TYPE = TensorType(np.int64, [2])


class HistogramClippingState(NamedTuple):
    """The state of a `HistogramClippingSumFactory`'s process: the inner process's state and the seed of
    the next round's sampling."""

    inner_state: Any
    sampling_seed: Any


def check_seed(seed: Any, owner: str) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{owner}: seed must be an int or None, got {seed!r}.")
    if not np.iinfo(np.int64).min <= int(seed) <= np.iinfo(np.int64).max:
        raise ValueError(f"{owner}: seed must fit in int64, got {seed}.")
    return int(seed)


def check_positive_int(value: Any, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}.")
    return int(value)


def check_member(value: Any, allowed: list[str], name: str, owner: str) -> str:
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {allowed}, got {value!r}.")
    return value


def _sample_ones(positions: tf.Tensor, k: tf.Tensor, seed: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """A histogram of `size` bins with a 1 at each of `k` positions drawn uniformly without replacement
    from `positions` (a rank-1 int32 tensor of bin indices, repeated as often as the bin is chosen)."""
    scores = tf.random.stateless_uniform(tf.shape(positions), seed)
    _, chosen = tf.math.top_k(scores, k=k, sorted=False)
    return tf.scatter_nd(
        tf.gather(positions, chosen)[:, None], tf.ones_like(chosen), tf.reshape(size, [1])
    )


def sub_sample_clip(histogram: tf.Tensor, max_records: int, seed: tf.Tensor) -> tf.Tensor:
    """At most `max_records` of the histogram's records, drawn uniformly without replacement (the
    histogram itself when it has no more)."""
    counts = tf.cast(histogram, tf.int32)
    size = tf.shape(counts)[0]

    def sample() -> tf.Tensor:
        records = tf.repeat(tf.range(size), counts)
        return _sample_ones(records, max_records, seed, size)

    clipped = tf.cond(tf.reduce_sum(counts) > max_records, sample, lambda: counts)
    return tf.cast(tf.reshape(clipped, histogram.shape), histogram.dtype)


def distinct_clip(histogram: tf.Tensor, max_records: int, seed: tf.Tensor) -> tf.Tensor:
    """A 1 in each of at most `max_records` of the bins that hold records, drawn uniformly without
    replacement (a 1 in every such bin when there are no more)."""
    counts = tf.cast(histogram, tf.int32)
    size = tf.shape(counts)[0]
    occupied = tf.cast(tf.where(counts != 0)[:, 0], tf.int32)

    def sample() -> tf.Tensor:
        return _sample_ones(occupied, max_records, seed, size)

    clipped = tf.cond(
        tf.size(occupied) > max_records, sample, lambda: tf.minimum(tf.abs(counts), 1)
    )
    return tf.cast(tf.reshape(clipped, histogram.shape), histogram.dtype)


_CLIP_FUNCTIONS = {"sub-sampling": sub_sample_clip, "distinct": distinct_clip}


class HistogramClippingSumFactory(UnweightedAggregationFactory):
    """Clips each client's histogram (a rank-1 integer tensor of counts per bin) to bound its
    contribution, then aggregates the clipped histograms with `inner_agg_factory` (`SumFactory` by
    default), as TensorFlow Federated's factory of the same name does.

    - `clip_mechanism='sub-sampling'`: keep a uniform sample of at most `max_records_per_user` of the
      client's records (its L1 norm is then at most `max_records_per_user`).
    - `clip_mechanism='distinct'`: count each bin the client has records in once, and keep a uniform
      sample of at most `max_records_per_user` of those bins (at most that many ones).

    With `cast_to_float`, the clipped histogram is cast to float32 before the inner factory (for a DP
    sum with Gaussian noise). `seed` makes the sampling reproducible; by default `initialize` draws a
    fresh seed. The state is a `HistogramClippingState`; the measurements are the inner process's.
    """

    def __init__(
        self,
        clip_mechanism: str = "sub-sampling",
        max_records_per_user: int = 10,
        inner_agg_factory: UnweightedAggregationFactory | None = None,
        cast_to_float: bool = False,
        *,
        seed: int | None = None,
    ):
        owner = "HistogramClippingSumFactory"
        self._clip_mechanism = check_member(
            clip_mechanism, CLIP_MECHANISMS, "clip_mechanism", owner
        )
        self._max_records_per_user = check_positive_int(
            max_records_per_user, "max_records_per_user", owner
        )
        if inner_agg_factory is None:
            inner_agg_factory = SumFactory()
        elif not isinstance(inner_agg_factory, UnweightedAggregationFactory):
            raise TypeError(
                f"{owner}: inner_agg_factory must be an UnweightedAggregationFactory, got "
                f"{inner_agg_factory!r}."
            )
        if not isinstance(cast_to_float, bool):
            raise TypeError(f"{owner}: cast_to_float must be a bool, got {cast_to_float!r}.")
        self._inner_agg_factory = inner_agg_factory
        self._cast_to_float = cast_to_float
        self._seed = check_seed(seed, owner)

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = to_type(value_type)
        if not (
            isinstance(value_type, TensorType)
            and value_type.dtype.kind in "iu"
            and isinstance(value_type.shape, tuple)  # not UNKNOWN_RANK
            and len(value_type.shape) == 1
            and value_type.shape[0] is not None
        ):
            raise TypeError(
                "HistogramClippingSumFactory.create: expected a histogram, a rank-1 integer tensor "
                f"of known size (such as int32[10]), got {value_type}."
            )
        inner_type = TensorType(np.float32, value_type.shape) if self._cast_to_float else value_type
        inner_process = self._inner_agg_factory.create(inner_type)
        clip = _CLIP_FUNCTIONS[self._clip_mechanism]
        max_records = self._max_records_per_user
        seed = self._seed

        @ftf.computation
        def initial_seed():
            if seed is None:
                return tf.random.uniform(
                    [2], minval=tf.int64.min, maxval=tf.int64.max, dtype=tf.int64
                )
            # Not the [seed, 0] that fed's DP factory starts its noise from: one seed given to
            # both gives them different streams.
            return tf.constant([seed, 1], tf.int64)

        @ftf.computation(_SEED_TYPE)
        def split_seed(state_seed):
            next_seed, round_seed = tf.unstack(
                tf.random.experimental.stateless_split(state_seed, 2)
            )
            return next_seed, round_seed

        @ftf.computation(value_type, _SEED_TYPE)
        def clip_histogram(histogram, round_seed):
            fingerprint = tf.strings.to_hash_bucket_fast(tf.io.serialize_tensor(histogram), 2**62)
            client_seed = tf.random.experimental.stateless_fold_in(round_seed, fingerprint)
            return tf.cast(clip(histogram, max_records, client_seed), inner_type.dtype)

        @fc.federated_computation
        def initialize():
            return fc.federated_zip(
                HistogramClippingState(
                    inner_process.initialize(), fc.federated_eval(initial_seed, SERVER)
                )
            )

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            next_seed, round_seed = fc.federated_map(split_seed, state.sampling_seed)
            clipped = fc.federated_map(
                clip_histogram, fc.federated_zip((value, fc.federated_broadcast(round_seed)))
            )
            inner = inner_process.next(state.inner_state, clipped)
            return MeasuredProcessOutput(
                fc.federated_zip(HistogramClippingState(inner.state, next_seed)),
                inner.result,
                inner.measurements,
            )

        return AggregationProcess(initialize, next_fn)

    def __repr__(self) -> str:
        return (
            f"HistogramClippingSumFactory(clip_mechanism={self._clip_mechanism!r}, "
            f"max_records_per_user={self._max_records_per_user}, "
            f"inner_agg_factory={self._inner_agg_factory!r}, cast_to_float={self._cast_to_float})"
        )
