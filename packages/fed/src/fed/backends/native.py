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
    (TFF's -1, no limit, to the default)."""
    if max_concurrent_computation_calls == -1:
        max_concurrent_computation_calls = None
    return set_sync_local_execution_context(
        max_concurrency=max_concurrent_computation_calls, default_num_clients=default_num_clients
    )


set_local_python_execution_context = set_sync_local_execution_context

__all__ = [
    "create_sync_local_execution_context",
    "set_local_python_execution_context",
    "set_sync_local_cpp_execution_context",
    "set_sync_local_execution_context",
]
