"""`fed.backends.native`: local execution contexts (TFF's names kept as aliases)."""

from __future__ import annotations

from typing import Any

from fed_core.execution import ExecutionContext, create_context, set_context


def _local_options(
    max_concurrency: int | None, default_num_clients: int | None, devices: Any
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_concurrency": max_concurrency,
        "default_num_clients": default_num_clients,
    }
    if devices is not None:
        options["devices"] = devices
    return options


def create_sync_local_execution_context(
    max_concurrency: int | None = None, default_num_clients: int | None = None, devices: Any = None
) -> ExecutionContext:
    """A local context: client work on `max_concurrency` threads, `default_num_clients` clients where no
    argument says how many, and this context's TensorFlow client work spread over `devices` (for example
    `["/GPU:0", "/GPU:1"]`) when given; other contexts keep their own devices."""
    return create_context("local", **_local_options(max_concurrency, default_num_clients, devices))


def set_sync_local_execution_context(
    max_concurrency: int | None = None, default_num_clients: int | None = None, devices: Any = None
) -> ExecutionContext:
    """Makes a new local context the default (see `create_sync_local_execution_context`)."""
    return set_context("local", **_local_options(max_concurrency, default_num_clients, devices))


def set_sync_local_cpp_execution_context(
    default_num_clients: int | None = None, max_concurrent_computation_calls: int | None = None
) -> ExecutionContext:
    """TFF's name for the local context; `max_concurrent_computation_calls` maps to `max_concurrency`
    (TFF's -1, no limit, to the default; a whole-number float, such as TFF's tutorial's `16 / 2`, to
    that number)."""
    if max_concurrent_computation_calls == -1:
        max_concurrent_computation_calls = None
    if (
        isinstance(max_concurrent_computation_calls, float)
        and max_concurrent_computation_calls.is_integer()
    ):
        max_concurrent_computation_calls = int(max_concurrent_computation_calls)
    return set_sync_local_execution_context(
        max_concurrency=max_concurrent_computation_calls, default_num_clients=default_num_clients
    )


def set_remote_python_execution_context(
    channels: Any,
    thread_pool_executor: Any = None,
    dispose_batch_size: int = 20,
    max_fanout: int = 100,
    default_num_clients: int = 0,
) -> ExecutionContext:
    """TFF's context on remote workers (its Kubernetes tutorial), on fed's Ray executor.

    TFF's `channels` lead to its gRPC worker services; fed's workers are Ray actors, so the channels set
    how many there are (one per channel, sharing the cluster's free CPUs when there are more channels
    than free CPUs), and the cluster is the one this process joined, else the one `RAY_ADDRESS` names, else a new
    local one. `thread_pool_executor`, `dispose_batch_size` and `max_fanout` tune TFF's remote stack and
    have no counterpart here. Needs fed-ray (`pip install 'fed-framework[ray]'`).
    """
    from fed.backends import ray as ray_backend

    ray_backend._check_installed()
    try:
        if isinstance(channels, str | bytes):
            raise TypeError
        count = len(channels)
    except TypeError:
        raise TypeError(
            f"channels must be a list of channels (one per remote worker), got {channels!r}."
        ) from None
    if count < 1:
        raise ValueError("set_remote_python_execution_context needs at least one channel.")
    import fed_ray

    fed_ray.init()
    cpus = fed_ray.free_cpus()
    options: dict[str, Any] = {
        "num_actors": count,
        "num_cpus_per_actor": min(1.0, cpus / count) if cpus else 1.0,
    }
    if default_num_clients:
        options["default_num_clients"] = default_num_clients
    return set_context("ray", **options)


set_local_python_execution_context = set_sync_local_execution_context

__all__ = [
    "create_sync_local_execution_context",
    "set_local_python_execution_context",
    "set_remote_python_execution_context",
    "set_sync_local_cpp_execution_context",
    "set_sync_local_execution_context",
]
