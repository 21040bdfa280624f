"""fed-analytics: federated analytics on fed (TFF's `tff.analytics`).

`fed_analytics.heavy_hitters.iblt.build_iblt_computation` finds the strings that many clients hold
(words, URLs) from IBLT sketches the clients send, without any client sending its data.
"""

from fed_analytics.__about__ import __version__
from fed_core._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"heavy_hitters": "heavy_hitters"})

__all__ = ["__version__", "heavy_hitters"]
