"""fed-analytics: federated analytics on fed (TFF's `tff.analytics`).

- `heavy_hitters.iblt.build_iblt_computation` finds the strings that many clients hold (words, URLs)
  from IBLT sketches the clients send, without any client sending its data;
  `heavy_hitters.private_heavy_hitters` releases them with differential privacy.
- `build_hierarchical_histogram_process` (and `hierarchical_histogram`) counts the clients' numbers in
  a tree of bins, with secure sums and optional DP noise; `HierarchicalHistogramDecoder` answers
  range and quantile queries on it.
- `differential_privacy.analytic_gauss_stddev` calibrates Gaussian noise.

Differential privacy needs the `dp` extra (tensorflow-privacy for the hierarchical histogram's noise,
dp-accounting for the accounting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fed_analytics.__about__ import __version__
from fed_core.framework import lazy_exports

if TYPE_CHECKING:
    from fed_analytics import differential_privacy, heavy_hitters, hierarchical_histogram
    from fed_analytics.hierarchical_histogram import (
        HierarchicalHistogramDecoder,
        build_hierarchical_histogram_process,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HierarchicalHistogramDecoder": "hierarchical_histogram",
        "build_hierarchical_histogram_process": "hierarchical_histogram",
        "differential_privacy": "differential_privacy",
        "heavy_hitters": "heavy_hitters",
        "hierarchical_histogram": "hierarchical_histogram",
    },
)

__all__ = [
    "HierarchicalHistogramDecoder",
    "__version__",
    "build_hierarchical_histogram_process",
    "differential_privacy",
    "heavy_hitters",
    "hierarchical_histogram",
]
