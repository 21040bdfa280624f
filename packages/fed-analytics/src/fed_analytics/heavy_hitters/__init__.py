"""Federated heavy hitters: the strings many clients hold, found without collecting any client's data
(`iblt`), and released with differential privacy (`private_heavy_hitters`)."""

from fed_analytics.heavy_hitters import iblt
from fed_analytics.heavy_hitters._private import (
    HeavyHittersNoise,
    PrivateHeavyHitters,
    calibrate_private_heavy_hitters,
    private_heavy_hitters,
)

__all__ = [
    "HeavyHittersNoise",
    "PrivateHeavyHitters",
    "calibrate_private_heavy_hitters",
    "iblt",
    "private_heavy_hitters",
]
