"""`fed.experimental`: TFF's experimental names, where fed has them."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "jax_computation":
        from fed._jax import computation

        return computation
    raise AttributeError(f"module 'fed.experimental' has no attribute {name!r}")
