"""`HierarchicalHistogramDecoder`: node, range and quantile queries on a hierarchical histogram."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from fed_analytics.hierarchical_histogram import _tree


def _layers(hierarchical_histogram: Any) -> list[list[float]]:
    """The histogram as a list of layers, from a `tf.RaggedTensor`, its struct
    `{flat_values, nested_row_splits}` (what a computation gives inside fed) or a list of layers."""
    if isinstance(hierarchical_histogram, Mapping):
        hierarchical_histogram = tf.RaggedTensor.from_nested_row_splits(
            hierarchical_histogram["flat_values"],
            tuple(hierarchical_histogram["nested_row_splits"]),
        )
    if isinstance(hierarchical_histogram, tf.RaggedTensor):
        hierarchical_histogram = hierarchical_histogram.to_list()
    try:
        layers = [[float(v) for v in layer] for layer in hierarchical_histogram]
    except (TypeError, ValueError):
        raise TypeError(
            "HierarchicalHistogramDecoder: expected a hierarchical histogram (a tf.RaggedTensor with "
            "one row per layer, its {'flat_values', 'nested_row_splits'} struct, or a list of "
            f"layers of numbers), got {hierarchical_histogram!r}."
        ) from None
    for index, layer in enumerate(layers):
        if not all(math.isfinite(v) for v in layer):
            raise ValueError(
                "HierarchicalHistogramDecoder: the histogram's counts must be finite, got "
                f"{layer} in layer {index}."
            )
    return layers


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"HierarchicalHistogramDecoder: {name} must be a finite number, got {value!r}."
        )
    if not math.isfinite(value):
        raise ValueError(
            f"HierarchicalHistogramDecoder: {name} must be a finite number, got {value!r}."
        )
    return float(value)


def _check_index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"HierarchicalHistogramDecoder: {name} must be an int, got {value!r}.")
    return int(value)


def _arity(layers: list[list[float]]) -> int:
    """The tree's arity, after checking that its layers have 1, a, a**2, ... nodes."""
    sizes = [len(layer) for layer in layers]
    invalid = ValueError(
        "HierarchicalHistogramDecoder: a hierarchical histogram has layers of 1, a, a**2, ... nodes "
        f"(a >= 2, the arity); got layers of {sizes} nodes."
    )
    if not sizes or sizes[0] != 1:
        raise invalid
    if len(sizes) == 1:
        return 2
    arity = sizes[1]
    if arity < 2 or sizes != [arity**layer for layer in range(len(sizes))]:
        raise invalid
    return arity


class HierarchicalHistogramDecoder:
    """Answers queries on a hierarchical histogram, as TensorFlow Federated's decoder of that name.

    `hierarchical_histogram` is a `tf.RaggedTensor` with one row per layer of the tree, root first (what
    `build_hierarchical_histogram_process` gives in its `ServerOutput`), its struct
    `{'flat_values', 'nested_row_splits'}`, or a list of layers. `lower_bound` and `upper_bound` are
    the data's range. With `use_efficient`, node queries combine every node's estimate with those of
    its subtree and of the rest of the tree (Honaker, "Efficient Use of Differentially Private Binary
    Trees"), which lowers the variance of noisy counts.

    `num_bins` (a fed addition) is the number of bins the data was counted in; the last layer pads
    them with zeros to a power of the arity. `quantile_query` divides the range by it; by default it is
    the whole last layer, as TensorFlow Federated does (exact when `num_bins` is a power of the arity).
    """

    def __init__(
        self,
        hierarchical_histogram: Any,
        lower_bound: float,
        upper_bound: float,
        use_efficient: bool = False,
        *,
        num_bins: int | None = None,
    ):
        self._hierarchical_histogram = _layers(hierarchical_histogram)
        self._arity = _arity(self._hierarchical_histogram)
        self._num_layers = len(self._hierarchical_histogram)
        self._size = len(self._hierarchical_histogram[-1])
        lower_bound = _check_number(lower_bound, "lower_bound")
        upper_bound = _check_number(upper_bound, "upper_bound")
        if not isinstance(use_efficient, bool | np.bool_):
            raise TypeError(
                f"HierarchicalHistogramDecoder: use_efficient must be a bool, got {use_efficient!r}."
            )
        if upper_bound < lower_bound:
            raise ValueError(
                "HierarchicalHistogramDecoder: upper_bound must be no smaller than lower_bound, got "
                f"upper_bound={upper_bound} and lower_bound={lower_bound}."
            )
        if num_bins is not None and not (
            isinstance(num_bins, (int, np.integer))
            and self._size // self._arity < num_bins <= self._size
            or (self._num_layers == 1 and num_bins == 1)
        ):
            raise ValueError(
                f"HierarchicalHistogramDecoder: num_bins must be in ({self._size // self._arity}, "
                f"{self._size}] for a last layer of {self._size} nodes, got {num_bins!r}."
            )
        self._lower_bound = lower_bound
        self._upper_bound = upper_bound
        self._num_bins = self._size if num_bins is None else int(num_bins)
        self._use_efficient = bool(use_efficient)
        self._below: dict[tuple[int, int], float] = {}

    # -- the tree's geometry ----------------------------------------------------------------------

    def _leaves(self, layer: int, index: int) -> tuple[int, int]:
        """The first and last leaf below node (layer, index)."""
        span = self._arity ** (self._num_layers - 1 - layer)
        return index * span, (index + 1) * span - 1

    def _children(self, layer: int, index: int) -> range:
        return range(index * self._arity, (index + 1) * self._arity)

    def _check_index(self, layer: int, index: int) -> None:
        if not 0 <= layer < self._num_layers:
            raise ValueError(
                f"Cross-layer index {layer} is out of range: expected it in [0, {self._num_layers})."
            )
        if not 0 <= index < self._arity**layer:
            raise ValueError(
                f"Inner-layer index {index} is out of range: expected it in "
                f"[0, {self._arity**layer}) for layer {layer}."
            )

    # -- node estimates ---------------------------------------------------------------------------

    def _from_below(self, layer: int, index: int) -> float:
        """The node's estimate from itself and its subtree (kept: range queries ask for it often)."""
        known = self._below.get((layer, index))
        if known is not None:
            return known
        value = self._hierarchical_histogram[layer][index]
        if layer < self._num_layers - 1:
            children = sum(
                self._from_below(layer + 1, child) for child in self._children(layer, index)
            )
            weight = self._arity / (self._arity + 1)
            value = weight * value + (1 - weight) * children
        self._below[layer, index] = value
        return value

    def _from_above(self, layer: int, index: int) -> float:
        """The node's estimate from itself and the tree outside its subtree."""
        value = self._hierarchical_histogram[layer][index]
        if layer == 0:
            return value
        above = self._outside(layer, index)
        weight = 1 / (3 - self._arity ** (layer - self._num_layers + 1))
        return weight * value + (1 - weight) * above

    def _outside(self, layer: int, index: int) -> float:
        """The node's estimate from its parent's estimate from above, less its siblings'."""
        parent = index // self._arity
        siblings = sum(
            self._from_below(layer, sibling)
            for sibling in self._children(layer - 1, parent)
            if sibling != index
        )
        return self._from_above(layer - 1, parent) - siblings

    def node_query(self, layer: int, index: int) -> float:
        """The estimate of node `index` of layer `layer` (layer 0 is the root): its value, or with
        `use_efficient`, the inverse-variance weighting of its estimates from below and from above.
        Raises ValueError for a node that does not exist."""
        layer, index = _check_index(layer, "layer"), _check_index(index, "index")
        self._check_index(layer, index)
        if not self._use_efficient:
            return self._hierarchical_histogram[layer][index]
        below = self._from_below(layer, index)
        if layer == 0:
            return below
        above = self._outside(layer, index)
        power = self._arity ** (layer - self._num_layers + 1)
        below_variance = 1 / (2 - power)
        above_variance = 1 / (3 - power)
        weight = (1 / below_variance) / (1 / below_variance + 1 / (below_variance + above_variance))
        return weight * below + (1 - weight) * above

    # -- consistency ------------------------------------------------------------------------------

    def _is_consistent(self) -> bool:
        layers = self._hierarchical_histogram
        return all(
            np.isclose(
                layers[layer][index],
                sum(layers[layer + 1][child] for child in self._children(layer, index)),
            )
            for layer in range(self._num_layers - 1)
            for index in range(self._arity**layer)
        )

    def enforce_consistency(self) -> None:
        """Makes every node the sum of its children, with the leaves that fit the whole noisy tree best
        in least squares (Cormode et al., "Answering Range Queries Under Local Differential Privacy").
        Turns `use_efficient` off: the two together do not improve the estimates further."""
        self._use_efficient = False
        if self._is_consistent():
            return
        rows = []
        for layer in range(self._num_layers):
            for index in range(self._arity**layer):
                row = np.zeros(self._size)
                first, last = self._leaves(layer, index)
                row[first : last + 1] = 1
                rows.append(row)
        observed = np.concatenate([np.asarray(layer) for layer in self._hierarchical_histogram])
        leaves = np.linalg.lstsq(np.stack(rows), observed, rcond=None)[0]
        self._hierarchical_histogram = _tree.build_tree_numpy(leaves, self._arity)
        self._below.clear()

    # -- queries ----------------------------------------------------------------------------------

    def _range_sum(self, left: int, right: int, layer: int, index: int) -> float:
        first, last = self._leaves(layer, index)
        if left > last or right < first or left > right:
            return 0.0
        if left <= first and last <= right:
            return self.node_query(layer, index)
        return sum(
            self._range_sum(left, right, layer + 1, child) for child in self._children(layer, index)
        )

    def range_query(self, left: int, right: int) -> float:
        """The estimated sum of the bins `left` to `right`, both included, from the fewest nodes that
        cover them."""
        left, right = _check_index(left, "left"), _check_index(right, "right")
        if left < 0 or right >= self._size:
            raise ValueError(f"[{left}, {right}] is outside the valid range [0, {self._size}).")
        if left > right:
            raise ValueError(f"left ({left}) must be no larger than right ({right}).")
        return self._range_sum(left, right, 0, 0)

    def quantile_query(self, q: float) -> tuple[float, float]:
        """The bin in which the `q`-quantile of the data lies, as its `(lower, upper)` bounds: the first
        bin at which the bins so far hold at least `q` of the total. Needs a consistent histogram
        (without noise, or after `enforce_consistency`); raises ValueError otherwise.

        Where the bins so far reach exactly `q` of the total at the end of a node, TensorFlow
        Federated answers the node's last bin (possibly an empty or padding bin); fed answers the
        first bin that reaches it, as a cumulative sum would."""
        if not self._is_consistent():
            raise ValueError(
                "quantile_query needs a consistent hierarchical histogram (every node the sum of its "
                "children); call enforce_consistency() first."
            )
        if isinstance(q, bool) or not isinstance(q, numbers.Real):
            raise TypeError(f"q must be a number in [0, 1], got {q!r}.")
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}.")
        total = self.range_query(0, self._size - 1)
        if total <= 0:
            raise ValueError(
                f"quantile_query needs a histogram that counts some records; its total is {total}."
            )
        target = q * total
        layer, index = 0, 0
        while layer < self._num_layers - 1:
            before = 0.0
            children = self._children(layer, index)
            for child in children:
                through = before + self.node_query(layer + 1, child)
                if through >= target or child == children[-1]:
                    layer, index, target = layer + 1, child, target - before
                    break
                before = through
        index = min(index, self._num_bins - 1)  # not in the padding, should rounding end there
        width = (self._upper_bound - self._lower_bound) / self._num_bins
        lower = self._lower_bound + index * width
        return lower, lower + width
