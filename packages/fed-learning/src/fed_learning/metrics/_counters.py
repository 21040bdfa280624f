"""Keras metrics that count the examples and the batches a model sees."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf


class NumExamplesCounter(keras.metrics.Sum):
    """Counts examples: the size of the first dimension of the labels (of the first label, for a model
    with several), whatever the sample weights. Labels must be tensors or numpy arrays."""

    def __init__(self, name: str = "num_examples", dtype: Any = "int64"):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any = None, sample_weight: Any = None) -> Any:
        del y_pred, sample_weight
        labels = tf.nest.flatten(y_true)
        if not labels or not all(tf.is_tensor(t) or isinstance(t, np.ndarray) for t in labels):
            raise TypeError(
                "NumExamplesCounter counts the first dimension of the labels, which must be tensors "
                f"or numpy arrays; got {[type(t).__name__ for t in labels]}."
            )
        return super().update_state(tf.shape(labels[0], out_type=tf.int64)[0])


class NumBatchesCounter(keras.metrics.Sum):
    """Counts batches: one per update, whatever the batch holds."""

    def __init__(self, name: str = "num_batches", dtype: Any = "int64"):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any = None, sample_weight: Any = None) -> Any:
        del y_true, y_pred, sample_weight
        return super().update_state(tf.constant(1, tf.int64))
