"""The `fed_aggregators.federated_gather` intrinsic: every client's value, stacked at the server.

A sum or a mean reduces the clients' values as they arrive; robust rules (a median, Krum) need all of
them at once. `federated_gather` brings them to the server as one value of the same structure in which
every tensor has a leading client dimension: `{float32[3]}@CLIENTS` becomes `float32[?,3]@SERVER`, row
`k` holding client `k`'s value, in client order.

With zero clients the result is an empty stack (leading dimension 0; any other unknown dimension is also
0), so the type holds; a rule that needs clients says so when it runs.

This module is loaded with fed's plugins and imports no TensorFlow.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from fed_core.framework import (
    ClientValues,
    ExecutionState,
    IntrinsicDefinition,
    IntrinsicKind,
    intrinsic_operator,
    map_structure,
)
from fed_types import (
    SERVER,
    UNKNOWN_RANK,
    FederatedType,
    FunctionType,
    Struct,
    StructType,
    TensorType,
    Type,
    is_structure_of,
)

FEDERATED_GATHER = "fed_aggregators.federated_gather"


def stacked_type(member: Type) -> Type:
    """`member` with a leading unknown client dimension on every tensor: `float32[3]` -> `float32[?,3]`
    (a tensor of unknown rank stays of unknown rank); struct names and containers are kept."""
    if isinstance(member, TensorType):
        if member.rank is None:
            return TensorType(member.dtype, UNKNOWN_RANK)
        return TensorType(member.dtype, (None, *member.shape))  # type: ignore[misc]
    if isinstance(member, StructType):
        return StructType(
            [(name, stacked_type(element)) for name, element in member.items()],
            member.python_container,
        )
    raise TypeError(f"expected a tensor or a struct of tensors, got {member}")


def _gathered_type(parameter: Type | None) -> Type:
    if not isinstance(parameter, FederatedType):
        raise TypeError(f"expected a value placed at CLIENTS, got {parameter}")
    if not is_structure_of(parameter.member, lambda tensor: True):
        raise TypeError(f"the values must be tensors or structs of them, given {parameter.member}")
    return FederatedType(stacked_type(parameter.member), SERVER)


def _empty_stack(t: Type) -> Any:
    """The gathered value of zero clients for the stacked type `t`: arrays with no rows."""
    if isinstance(t, StructType):
        return Struct((name, _empty_stack(element)) for name, element in t.items())
    assert isinstance(t, TensorType)
    shape = (
        (0,) if not isinstance(t.shape, tuple) else tuple(0 if d is None else d for d in t.shape)
    )
    return np.zeros(shape, dtype=t.dtype)


def _gather(state: ExecutionState, fn_type: FunctionType, clients: ClientValues) -> Any:
    if len(clients) == 0:
        return _empty_stack(cast(FederatedType, fn_type.result).member)
    try:
        stacked = clients.stacked()
    except ValueError as error:
        raise ValueError(
            f"federated_gather: the clients' values must have the same shapes to be stacked, got "
            f"{fn_type.parameter} values that do not ({error})."
        ) from None
    return map_structure(np.asarray, stacked)


def gather_definition() -> IntrinsicDefinition:
    """The definition of `fed_aggregators.federated_gather`, registered through fed-aggregators' plugin."""
    return IntrinsicDefinition(
        uri=FEDERATED_GATHER,
        type_signature="({T}@CLIENTS -> U@SERVER)",  # type: ignore[arg-type]
        kind=IntrinsicKind.AGGREGATION,
        implementation=_gather,
        name="federated_gather",
        doc=(
            "Every client's value at the server, stacked: `{T}@CLIENTS -> T'@SERVER`, where T' is T "
            "with a leading client dimension on every tensor (`float32[3]` -> `float32[?,3]`)."
        ),
        result_rule=_gathered_type,
    )


def federated_gather(value: Any) -> Any:
    """Inside a federated computation: the clients' values (tensors or structs of them) stacked at the
    server, one row per client in client order, `{float32[3]}@CLIENTS -> float32[?,3]@SERVER`.

    Every client's value reaches the server as it is: use it where a rule needs the individual values
    (robust aggregation), not where a sum would do.
    """
    return intrinsic_operator(FEDERATED_GATHER)(value)
