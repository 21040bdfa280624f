"""`fed.experimental`: TFF's experimental names, where fed has them."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "jax_computation":
        try:
            from fed._jax import computation
        except ModuleNotFoundError as error:
            raise AttributeError(str(error)) from None
        return computation
    raise AttributeError(f"module 'fed.experimental' has no attribute {name!r}")
