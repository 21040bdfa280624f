"""fed-jax's plugin: the backend of the "jax" frontend. JAX is imported when the backend is first
needed, not when fed loads its plugins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fed_core import hookimpl
from fed_core.plugins import Registry

FRONTEND = "jax"


def create_backend(devices: Sequence[str] | None = None) -> Any:
    from fed_jax._backend import backend

    return backend(devices)


@hookimpl
def fed_register_backends(register: Registry) -> None:
    register.add(FRONTEND, create_backend)
