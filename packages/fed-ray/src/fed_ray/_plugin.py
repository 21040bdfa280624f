"""fed-ray's plugin: the "ray" executor. Ray is imported when an executor is built, not when fed loads
its plugins."""

from __future__ import annotations

from typing import Any

from fed_core import hookimpl
from fed_core.plugins import Registry


def create_ray_executor(**options: Any) -> Any:
    from fed_ray._executor import RayExecutor

    return RayExecutor(**options)


@hookimpl
def fed_register_executors(register: Registry) -> None:
    register.add("ray", create_ray_executor)
