"""fed-ray's plugin: the "ray" executor. Ray is imported when an executor is built, not when fed loads
its plugins."""

from __future__ import annotations

import inspect
from typing import Any

from fed_core import hookimpl
from fed_core.plugins import Registry


def create_ray_executor(**options: Any) -> Any:
    """The factory registered as the "ray" executor."""
    from fed_ray._executor import RayExecutor

    accepted = list(inspect.signature(RayExecutor).parameters)
    unsupported = sorted(set(options) - set(accepted))
    if unsupported:
        raise TypeError(
            f"The Ray executor does not take the options {unsupported}; it takes "
            f"{', '.join(accepted)} and default_num_clients."
        )
    return RayExecutor(**options)


@hookimpl
def fed_register_executors(register: Registry) -> None:
    register.add("ray", create_ray_executor)
