"""`fed.analytics`: federated analytics (TFF's `tff.analytics`), from fed-analytics."""

from fed_analytics import differential_privacy, heavy_hitters, hierarchical_histogram
from fed_analytics.hierarchical_histogram import (
    HierarchicalHistogramDecoder,
    build_hierarchical_histogram_process,
)

__all__ = [
    "HierarchicalHistogramDecoder",
    "build_hierarchical_histogram_process",
    "differential_privacy",
    "heavy_hitters",
    "hierarchical_histogram",
]
