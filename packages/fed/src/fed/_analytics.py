"""`fed.analytics`: federated analytics (TFF's `tff.analytics`), from fed-analytics."""

from fed_analytics import heavy_hitters

__all__ = ["heavy_hitters"]
