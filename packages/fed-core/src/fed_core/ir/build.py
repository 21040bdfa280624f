"""Typed constructors for the IR nodes that tracing, intrinsics and compiler passes build.

Each helper checks what it is given once, so the trees it returns are well typed by construction.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

from fed_core._errors import user_location
from fed_core.ir import building_blocks as bb
from fed_types import FunctionType, Type, TypeNotAssignableError

_counter = itertools.count()
_counter_lock = threading.Lock()


def fresh_name(prefix: str) -> str:
    """A name unique in this process, so that references never capture each other."""
    with _counter_lock:
        return f"_{prefix}{next(_counter)}"


def check_assignable(expected: Type, given: Type, what: str) -> None:
    """Raises a TypeError naming `what`, both types, where they differ and the user's source line, unless
    `given` fits `expected`."""
    try:
        expected.check_assignable_from(given)
    except TypeNotAssignableError as e:
        location = user_location()
        where = f"\n  at {location}" if location else ""
        raise TypeError(
            f"{what}: expected {expected}, given {given}; {e.difference}.{where}"
        ) from None


def call(
    function: bb.ComputationBuildingBlock, argument: bb.ComputationBuildingBlock | None, what: str
) -> bb.Call:
    """A call of `function`, its argument type-checked once, with an error naming `what` is called."""
    fn_type = function.type_signature
    if isinstance(fn_type, FunctionType) and fn_type.parameter is not None and argument is not None:
        check_assignable(fn_type.parameter, argument.type_signature, what)
        return bb.Call(function, argument, check=False)
    return bb.Call(function, argument)


def intrinsic_call(
    uri: str,
    parameter_type: Type | None,
    result_type: Type,
    argument: bb.ComputationBuildingBlock | None,
) -> bb.Call:
    """A call of the intrinsic `uri` at the concrete type `(parameter_type -> result_type)`."""
    given = None if argument is None else argument.type_signature
    if (parameter_type is None) != (argument is None) or (
        parameter_type is not None
        and given is not None
        and not parameter_type.is_assignable_from(given)
    ):
        raise TypeError(
            f"The intrinsic {uri} at type ({parameter_type} -> {result_type}) cannot take an argument of "
            f"type {given}."
        )
    return bb.Call(
        bb.Intrinsic(uri, FunctionType(parameter_type, result_type)), argument, check=False
    )


def operands(*blocks: bb.ComputationBuildingBlock) -> bb.Struct:
    """The unnamed struct of an intrinsic's operands, in order."""
    return bb.Struct(list(blocks))


def let(
    bindings: Sequence[tuple[str, bb.ComputationBuildingBlock]], result: bb.ComputationBuildingBlock
) -> bb.ComputationBuildingBlock:
    """`result` with `bindings` as block locals, or `result` itself when there are none."""
    return bb.Block(list(bindings), result) if bindings else result
