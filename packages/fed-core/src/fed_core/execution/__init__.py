"""Choosing where computations run, and the interface executors implement.

A local context exists without any call. Executor plugins register factories of `Executor`s by name through
the `fed_register_executors` hook ("local" is fed-core's own); `create_context("local", max_concurrency=8)`
puts one behind an `ExecutionContext`, `set_context(...)` makes it the default, and `context_scope(ctx)`
uses a context for a `with` block.
"""

from __future__ import annotations

from typing import Any

from fed_core.execution.backends import Backend, LeafCache, LoadedComputation, run_per_member
from fed_core.execution.compat import (
    DataExecutor,
    EagerTFExecutor,
    ExecutorFactory,
    local_cpp_executor_factory,
    local_executor_factory,
)
from fed_core.execution.context import (
    Context,
    context_scope,
    get_context,
    set_default_context,
)
from fed_core.execution.data import (
    CreateDataDescriptor,
    DataBackend,
    DataDescriptor,
    run_materialize,
    uri_scheme,
)
from fed_core.execution.failures import (
    ClientFailure,
    ClientWorkError,
    handle_client_failures,
)
from fed_core.execution.interface import (
    ExecutionContext,
    ExecutionState,
    Executor,
    FunctionValue,
    SyncExecutionContext,
    conform,
    create_context,
    expand_all_equal,
    map_argument_blocks,
    to_python,
)
from fed_core.execution.local import LocalExecutionContext, LocalExecutor
from fed_core.execution.values import NO_ARGUMENT, ClientValues, leaves, map_structure


def set_context(executor: str, **options: Any) -> ExecutionContext:
    """Makes a new context on the executor plugin `executor` the default, and returns it."""
    context = create_context(executor, **options)
    set_default_context(context)
    return context


def set_local_execution_context(
    max_concurrency: int | None = None,
    default_num_clients: int | None = None,
    devices: Any = None,
    data_backend: Any = None,
) -> ExecutionContext:
    """Makes a new local context the default: `max_concurrency` threads for client work (default: the
    machine's cores + 4, at most 32), `default_num_clients` clients where no argument says how many
    (default 1), `devices` for this context's backends, and a `data_backend` for `Data` blocks."""
    options: dict[str, Any] = {}
    if devices is not None:
        options["devices"] = devices
    if data_backend is not None:
        options["data_backend"] = data_backend
    return set_context(
        "local", max_concurrency=max_concurrency, default_num_clients=default_num_clients, **options
    )


__all__ = [
    "NO_ARGUMENT",
    "Backend",
    "ClientFailure",
    "ClientValues",
    "ClientWorkError",
    "Context",
    "CreateDataDescriptor",
    "DataBackend",
    "DataDescriptor",
    "DataExecutor",
    "EagerTFExecutor",
    "ExecutionContext",
    "ExecutionState",
    "Executor",
    "ExecutorFactory",
    "FunctionValue",
    "LeafCache",
    "LoadedComputation",
    "LocalExecutionContext",
    "LocalExecutor",
    "SyncExecutionContext",
    "conform",
    "context_scope",
    "create_context",
    "expand_all_equal",
    "get_context",
    "handle_client_failures",
    "leaves",
    "local_cpp_executor_factory",
    "local_executor_factory",
    "map_argument_blocks",
    "map_structure",
    "run_materialize",
    "run_per_member",
    "set_context",
    "set_default_context",
    "set_local_execution_context",
    "to_python",
    "uri_scheme",
]
