"""Hierarchical histograms (TFF's `tff.analytics` hierarchical histogram): the clients' numbers counted in
bins, summed into a tree whose nodes answer range and quantile queries, optionally with differential
privacy."""

from fed_analytics.hierarchical_histogram._clipping import (
    CLIP_MECHANISMS,
    HistogramClippingState,
    HistogramClippingSumFactory,
)
from fed_analytics.hierarchical_histogram._decoder import HierarchicalHistogramDecoder
from fed_analytics.hierarchical_histogram._factory import (
    DP_MECHANISMS,
    create_hierarchical_histogram_aggregation_factory,
)
from fed_analytics.hierarchical_histogram._lib import (
    ServerOutput,
    build_hierarchical_histogram_computation,
    build_hierarchical_histogram_process,
)

__all__ = [
    "CLIP_MECHANISMS",
    "DP_MECHANISMS",
    "HierarchicalHistogramDecoder",
    "HistogramClippingState",
    "HistogramClippingSumFactory",
    "ServerOutput",
    "build_hierarchical_histogram_computation",
    "build_hierarchical_histogram_process",
    "create_hierarchical_histogram_aggregation_factory",
]
