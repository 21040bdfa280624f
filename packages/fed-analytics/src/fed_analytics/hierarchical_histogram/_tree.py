"""The shape of a hierarchical histogram: a complete `arity`-ary tree over the histogram's bins.

Layer 0 is the root (the total); layer `depth - 1` holds the leaves, the bins padded with zeros to
`arity ** (depth - 1)`. Flattened layer after layer, a tree has `(arity ** depth - 1) // (arity - 1)`
nodes, and the row splits `[0, 1, 1 + arity, ...]` mark where each layer starts, as a
`tf.RaggedTensor` of one row per layer would.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def tree_depth(num_leaves: int, arity: int) -> int:
    """The number of layers of the tree over `num_leaves` bins: one more than the smallest `d` with
    `arity ** d >= num_leaves`. Counted in integers, because `log(num_leaves, arity)` in floating point
    overshoots some exact powers (`log(125, 5)`)."""
    depth, leaves = 1, 1
    while leaves < num_leaves:
        leaves *= arity
        depth += 1
    return depth


def layer_sizes(depth: int, arity: int) -> list[int]:
    return [arity**layer for layer in range(depth)]


def row_splits(depth: int, arity: int) -> np.ndarray:
    """int64 `[depth + 1]`: where each layer of the flattened tree starts, and its end."""
    return np.cumsum([0, *layer_sizes(depth, arity)], dtype=np.int64)


def tree_size(depth: int, arity: int) -> int:
    return sum(layer_sizes(depth, arity))


def build_tree(leaves: tf.Tensor, arity: int, depth: int) -> tf.Tensor:
    """The flattened tree over `leaves` (a rank-1 tensor of at most `arity ** (depth - 1)` bins): every
    node is the sum of the leaves below it."""
    padded = tf.pad(leaves, [[0, arity ** (depth - 1) - leaves.shape[0]]])
    return tf.concat(
        [
            tf.reduce_sum(tf.reshape(padded, [size, -1]), axis=1)
            for size in layer_sizes(depth, arity)
        ],
        axis=0,
    )


def build_tree_numpy(leaves: np.ndarray, arity: int) -> list[list[float]]:
    """The hierarchical histogram over `leaves` as a list of layers (root first), in numpy."""
    leaves = np.asarray(leaves)
    depth = tree_depth(len(leaves), arity)
    padded = np.pad(leaves, (0, arity ** (depth - 1) - len(leaves)))
    return [padded.reshape(size, -1).sum(axis=1).tolist() for size in layer_sizes(depth, arity)]
