"""fed-tensorflow's plugin: registers the backend of the "tensorflow" frontend. TensorFlow is
imported when the backend is first needed, not when plugins load."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fed_core.plugins import Registry, hookimpl

if TYPE_CHECKING:
    from fed_tensorflow._backend import TensorFlowBackend


def _backend(devices: Sequence[str] | None = None) -> TensorFlowBackend:
    from fed_tensorflow._backend import backend

    return backend(devices)


@hookimpl
def fed_register_backends(register: Registry) -> None:
    register.add("tensorflow", _backend)
