"""`fed.backends.ray`: execution contexts on a Ray cluster (fed-ray, installed with `fed-framework[ray]`)."""

from __future__ import annotations

from typing import Any

from fed_core.execution import ExecutionContext, create_context, set_context


def _check_installed() -> None:
    from fed_core import plugins

    if "ray" not in plugins.get_registry("executors"):
        raise ImportError(
            "The Ray executor needs fed-ray: pip install 'fed-framework[ray]' (or fed-ray) on the driver and on "
            "every node of the cluster."
        )


def create_sync_ray_execution_context(**options: Any) -> ExecutionContext:
    """A context on a new `fed_ray.RayExecutor`; `default_num_clients` goes to the context, every other
    option (`address`, `num_actors`, `num_cpus_per_actor`, `num_gpus_per_actor`, ...) to the executor."""
    _check_installed()
    return create_context("ray", **options)


def set_sync_ray_execution_context(**options: Any) -> ExecutionContext:
    """Makes a new Ray context the default (see `create_sync_ray_execution_context`)."""
    _check_installed()
    return set_context("ray", **options)


__all__ = ["create_sync_ray_execution_context", "set_sync_ray_execution_context"]
