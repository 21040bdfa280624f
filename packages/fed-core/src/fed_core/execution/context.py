"""Execution contexts: where a call to a computation goes.

While a federated computation is being traced, calls build IR (the tracing context). Otherwise they go to the
current execution context, which by default is one on the "local" executor plugin, made on first
use. Contexts can be set
globally or for a `with` block, and nest.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from fed_core.execution.interface import create_context


@runtime_checkable
class Context(Protocol):
    """Anything a call of a computation can go to: an execution context (which runs it on concrete Python
    values) or, while tracing, the tracing context (which records it)."""

    def invoke(self, computation: Any, argument: Any) -> Any:
        """Runs `computation` (a `Computation`) on `argument` (None if it takes none) and returns the result
        as Python values in the containers its type declares."""


class _ContextStack(threading.local):
    def __init__(self) -> None:
        self.stack: list[Any] = []


_stack = _ContextStack()
_default_lock = threading.Lock()
_default_context: Any = None


def get_context() -> Any:
    """The innermost context: a tracing context while tracing, else the current execution context."""
    if _stack.stack:
        return _stack.stack[-1]
    return _get_default()


def _get_default() -> Any:
    global _default_context
    with _default_lock:
        if _default_context is None:
            _default_context = create_context("local")
        return _default_context


def set_default_context(context: Any) -> None:
    """Makes `context` the execution context used outside any `with context_scope(...)` block."""
    global _default_context
    if not isinstance(context, Context):
        raise TypeError(f"Expected an execution context (with an invoke method), got {context!r}.")
    with _default_lock:
        _default_context = context


@contextlib.contextmanager
def context_scope(context: Any) -> Iterator[Any]:
    """Uses `context` for calls made inside the `with` block (on this thread)."""
    _stack.stack.append(context)
    try:
        yield context
    finally:
        _stack.stack.pop()
