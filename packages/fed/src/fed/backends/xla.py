"""`fed.backends.xla`: TFF's XLA runtime for JAX computations. In fed, the local context runs JAX leaves
through fed-jax's backend beside TensorFlow ones, so these set up a local context."""

from __future__ import annotations

from fed.backends.native import set_sync_local_execution_context
from fed_core.execution import ExecutionContext


def set_local_python_execution_context(
    default_num_clients: int | None = None, max_concurrency: int | None = None
) -> ExecutionContext:
    """Makes a new local context the default (TFF's name for its XLA context)."""
    return set_sync_local_execution_context(
        max_concurrency=max_concurrency, default_num_clients=default_num_clients
    )


set_local_execution_context = set_local_python_execution_context

__all__ = ["set_local_execution_context", "set_local_python_execution_context"]
