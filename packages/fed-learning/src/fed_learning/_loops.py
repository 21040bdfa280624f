"""Loops over a client's dataset inside traced computations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

import fed_tensorflow as ftf
from fed_learning.models._functional import lists_to_tuples


def fold_dataset(dataset: tf.data.Dataset, initial: Any, step: Callable[[Any, Any], Any]) -> Any:
    """`step` applied to each element in order, starting from `initial`: what `dataset.reduce` computes,
    as `fed.tensorflow.fold_dataset` runs it (the dataset read whole where it can be, and a computation
    that reads its datasets only this way can train many clients at once). Lists in the carried
    structure are made tuples, as a loop's state must hold them."""
    return ftf.fold_dataset(
        dataset,
        lists_to_tuples(initial),
        lambda carry, element: lists_to_tuples(step(carry, element)),
    )
