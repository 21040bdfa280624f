"""Seeds for the randomness of aggregation processes: kept in the process state as `int64[2]`, split
every round, given by the user for a reproducible run or drawn afresh by `initialize`."""

from __future__ import annotations

import functools
import numbers
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_types import TensorType

SEED_TYPE = TensorType(np.int64, [2])


def check_seed(seed: Any, owner: str) -> int | None:
    """`seed` as an int (or None); a TypeError or ValueError naming `owner` if it is not an int64."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{owner}: seed must be an int or None, got {seed!r}.")
    if not np.iinfo(np.int64).min <= int(seed) <= np.iinfo(np.int64).max:
        raise ValueError(f"{owner}: seed must fit in int64, got {seed}.")
    return int(seed)


def seed_initializer(seed: int | None) -> fc.Computation:
    """The computation that makes the first seed of a process's state: from `seed`, or drawn afresh
    each time it runs when `seed` is None."""

    @ftf.computation
    def initial_seed():
        if seed is None:
            return tf.random.uniform([2], minval=tf.int64.min, maxval=tf.int64.max, dtype=tf.int64)
        return tf.constant([seed, 0], tf.int64)

    return initial_seed


@functools.cache
def split_seed() -> fc.Computation:
    """The computation `<next_state_seed, round_seed>` of a seed: the seed to keep in the state, and
    the one to use this round. Traced on first use, not on import: tracing starts TensorFlow's
    runtime, after which a user can no longer configure its devices or threads."""

    @ftf.computation(SEED_TYPE)
    def split(seed):
        seeds = tf.random.split(seed, 2)
        return seeds[0], seeds[1]

    return split
