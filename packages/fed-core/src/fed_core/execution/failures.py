"""What happens when one client's work fails.

By default an error raised by one client's run of a mapped computation ends the whole call with that error.
Within `handle_client_failures(computation, fallback)`, an executor built on fed-core's execution interface
(the local executor is) runs each client's call of `computation` in a `federated_map` on its own, lets the
other clients finish, and then either raises a `ClientWorkError` that names the first failing client
(without a fallback), or gives each failing client the fallback as its result and records the failure.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from fed_core.ir import building_blocks as bb


class ClientWorkError(RuntimeError):
    """The work of one client failed. `client_index` is the client's position among the clients of the
    call (counted from 0, in the order they were given), `num_clients` their number and `computation` the
    name of the mapped computation; the original error is the `__cause__`."""

    def __init__(self, computation: str, client_index: int, num_clients: int, error: Exception):
        self.computation = computation
        self.client_index = client_index
        self.num_clients = num_clients
        super().__init__(
            f"The work of client {client_index} (of {num_clients}, counted from 0 in the order the "
            f"clients were given) failed in {computation}: {describe_error(error)}"
        )


class ClientFailure(NamedTuple):
    """A client whose work failed and was given the fallback result."""

    client_index: int
    error: Exception


_HEADER_LINES = ("Detected at node", "<stack traces unavailable>")


def describe_error(error: BaseException) -> str:
    """`Type: the first line of the message that says what happened`, for one line of a report. Header
    lines (ending in ':', as "Graph execution error:") and backends' location lines ("Detected at node
    ...") are skipped."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [
        line for line in lines if not line.endswith(":") and not line.startswith(_HEADER_LINES)
    ]
    first = (telling or lines or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class ClientFailureHandler:
    """How failures of one computation's client work are handled (see `handle_client_failures`)."""

    def __init__(self, block: bb.ComputationBuildingBlock, fallback: Callable[[], Any] | None):
        self.block = block
        self.fallback = fallback
        self.failures: list[ClientFailure] = []

    def handles(self, block: bb.ComputationBuildingBlock | None) -> bool:
        if block is None:
            return False
        if block is self.block:
            return True
        # The same compiled leaf, deserialized or rebuilt: equal by frontend, payload and type.
        return (
            isinstance(block, bb.CompiledComputation)
            and isinstance(self.block, bb.CompiledComputation)
            and block.frontend == self.block.frontend
            and block.type_signature == self.block.type_signature
            and block.payload == self.block.payload
        )

    def name(self) -> str:
        name = getattr(self.block, "name", "")
        return name or "the mapped computation"


_HANDLERS: contextvars.ContextVar[tuple[ClientFailureHandler, ...]] = contextvars.ContextVar(
    "fed_client_failure_handlers", default=()
)


@contextlib.contextmanager
def handle_client_failures(
    computation: Any, fallback: Callable[[], Any] | None = None
) -> Iterator[list[ClientFailure]]:
    """Within the block, a client whose run of `computation` (a Computation, or its building block) in a
    `federated_map` raises an Exception does not end the call with that bare error. Without `fallback`,
    the call raises a `ClientWorkError` naming the first failing client once all clients are done. With
    one, each failing client's result is `fallback()` (a Python value of the computation's result type,
    converted as an argument would be), and the failure is appended to the yielded list.

    The handling follows the current thread and the call it makes: an executor's worker threads do not
    see it, and client work that is mapped inside other client work is not handled.
    """
    block = getattr(computation, "building_block", computation)
    if not isinstance(block, bb.ComputationBuildingBlock):
        raise TypeError(f"Expected a computation, got {computation!r}.")
    if fallback is not None and not callable(fallback):
        raise TypeError(
            f"fallback must be a function returning the fallback result, got {fallback!r}."
        )
    handler = ClientFailureHandler(block, fallback)
    token = _HANDLERS.set((*_HANDLERS.get(), handler))
    try:
        yield handler.failures
    finally:
        _HANDLERS.reset(token)


def handler_for(block: bb.ComputationBuildingBlock | None) -> ClientFailureHandler | None:
    """The innermost handler of failures of `block`'s client work, if any."""
    for handler in reversed(_HANDLERS.get()):
        if handler.handles(block):
            return handler
    return None
