"""Heavy hitters with invertible Bloom lookup tables (TFF's `tff.analytics.heavy_hitters.iblt`)."""

from fed_analytics.heavy_hitters.iblt._computation import ServerOutput, build_iblt_computation
from fed_analytics.heavy_hitters.iblt._sketch import (
    DEFAULT_REPETITIONS,
    FIELD_SIZE,
    decode,
    encode,
    table_size,
)

__all__ = [
    "DEFAULT_REPETITIONS",
    "FIELD_SIZE",
    "ServerOutput",
    "build_iblt_computation",
    "decode",
    "encode",
    "table_size",
]
