"""Serialization of computations to fed's versioned JSON form and back (see docs/serialization.md)."""

from fed_core.serialization.json_format import (
    FORMAT,
    VERSION,
    deserialize_computation,
    serialize_computation,
)

__all__ = ["FORMAT", "VERSION", "deserialize_computation", "serialize_computation"]
