"""Federated heavy hitters: the strings many clients hold, found without collecting any client's data."""

from fed_analytics.heavy_hitters import iblt

__all__ = ["iblt"]
