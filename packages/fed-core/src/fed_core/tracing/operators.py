"""The federated operators (intrinsics) as users call them while tracing.

Each function checks its operands' types at trace time (raising `FederatedTypeError` with the expected
and given types in compact notation and the user's source line), then records a call of the intrinsic,
with its concrete type signature, in the traced computation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fed_core._errors import FederatedTypeError, user_location
from fed_core.execution.context import context_scope
from fed_core.intrinsics.definitions import (
    FEDERATED_AGGREGATE,
    FEDERATED_BROADCAST,
    FEDERATED_EVAL_AT_CLIENTS,
    FEDERATED_EVAL_AT_SERVER,
    FEDERATED_MAX,
    FEDERATED_MEAN,
    FEDERATED_MIN,
    FEDERATED_SECURE_MODULAR_SUM,
    FEDERATED_SECURE_SUM,
    FEDERATED_SECURE_SUM_BITWIDTH,
    FEDERATED_SELECT,
    FEDERATED_SUM,
    FEDERATED_VALUE_AT_CLIENTS,
    FEDERATED_VALUE_AT_SERVER,
    FEDERATED_WEIGHTED_MEAN,
    SEQUENCE_MAP,
    SEQUENCE_REDUCE,
    SEQUENCE_SUM,
    is_float,
    is_integer,
    is_numeric,
)
from fed_core.intrinsics.secure_bounds import bounds_problem
from fed_core.ir import building_blocks as bb
from fed_core.ir.build import fresh_name, let, operands
from fed_core.tracing.computation import PolymorphicComputation
from fed_core.tracing.tracer import (
    TracingContext,
    Value,
    call_intrinsic,
    current_tracing_context,
    federated_operand,
    is_function,
    map_block,
    operand,
    placements_of_federated_struct,
    trace,
    zip_block,
    zipped_if_federated,
)
from fed_types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    Placement,
    SequenceType,
    StructType,
    TensorType,
    Type,
    is_structure_of,
)


def _unplaced(block: bb.ComputationBuildingBlock, operator: str, what: str) -> Type:
    t = block.type_signature
    if isinstance(t, FederatedType):
        raise FederatedTypeError(operator, f"{what} that is not federated", f"a value of type {t}")
    return t


def _function(
    value: Any, operator: str, what: str, parameter: Type | None, result: Type | None = None
) -> bb.ComputationBuildingBlock:
    """The block of a function operand that accepts `parameter` (and returns something assignable to
    `result`); computations without declared types and plain Python functions are traced for `parameter`."""
    if isinstance(value, PolymorphicComputation):
        block = value.concrete(parameter).building_block
    elif is_function(value):
        block = trace(value, parameter, spread=False).building_block
    else:
        block = operand(value, operator)
    t = block.type_signature
    wanted = (
        f"{what} accepting {parameter}" if parameter is not None else f"{what} taking no argument"
    )
    if result is not None:
        wanted += f" and returning {result}"
    if not isinstance(t, FunctionType):
        raise FederatedTypeError(operator, wanted, f"a value of type {t}")
    if (t.parameter is None) != (parameter is None) or (
        parameter is not None
        and t.parameter is not None
        and not t.parameter.is_assignable_from(parameter)
    ):
        raise FederatedTypeError(operator, wanted, f"a function of type {t}")
    if result is not None and not result.is_assignable_from(t.result):
        raise FederatedTypeError(operator, wanted, f"a function of type {t}")
    return block


def _result(function_block: bb.ComputationBuildingBlock) -> Type:
    """The result type of a block that `_function` checked is a function."""
    t = function_block.type_signature
    assert isinstance(t, FunctionType)
    return t.result


def _federated(
    value: Any, operator: str, placement: Placement | None, what: str
) -> tuple[bb.ComputationBuildingBlock, FederatedType]:
    """The block and the type of an operand that is a federated value (at `placement`, when given);
    a struct of federated values at one placement is zipped first (see `zipped_if_federated`)."""
    block = zipped_if_federated(operand(value, operator))
    return block, federated_operand(block, operator, placement, what)


# ---- federated operators


def federated_broadcast(value: Any) -> Value:
    """Broadcasts a server value to all clients: `T@SERVER -> T@CLIENTS` (all clients hold the same value)."""
    operator = "federated_broadcast"
    block, t = _federated(value, operator, SERVER, "a value")
    return call_intrinsic(
        FEDERATED_BROADCAST, t, FederatedType(t.member, CLIENTS, all_equal=True), block
    )


def federated_value(value: Any, placement: Placement) -> Value:
    """Places a non-federated value at `placement`: `T -> T@placement` (the same value everywhere)."""
    operator = "federated_value"
    if placement not in (CLIENTS, SERVER):
        raise FederatedTypeError(operator, "a placement (CLIENTS or SERVER)", repr(placement))
    block = operand(value, operator)
    t = _unplaced(block, operator, "a value")
    uri = FEDERATED_VALUE_AT_CLIENTS if placement == CLIENTS else FEDERATED_VALUE_AT_SERVER
    return call_intrinsic(uri, t, FederatedType(t, placement, all_equal=True), block)


def federated_eval(fn: Any, placement: Placement) -> Value:
    """Runs a no-argument function at `placement`: `( -> T) -> {T}@CLIENTS` (each client runs it) or `T@SERVER`."""
    operator = "federated_eval"
    if placement not in (CLIENTS, SERVER):
        raise FederatedTypeError(operator, "a placement (CLIENTS or SERVER)", repr(placement))
    block = _function(fn, operator, "a function", None)
    result = _result(block)
    if placement == CLIENTS:
        return call_intrinsic(
            FEDERATED_EVAL_AT_CLIENTS, block.type_signature, FederatedType(result, CLIENTS), block
        )
    return call_intrinsic(
        FEDERATED_EVAL_AT_SERVER, block.type_signature, FederatedType(result, SERVER), block
    )


def federated_map(fn: Any, arg: Any) -> Value:
    """Applies `fn` to each member of a federated value: `(<(T -> U), {T}@CLIENTS> -> {U}@CLIENTS)`;
    also for all-equal values at CLIENTS (`U@CLIENTS`) and values at SERVER (`U@SERVER`)."""
    operator = "federated_map"
    value_block, t = _federated(arg, operator, None, "a value")
    fn_block = _function(fn, operator, "a function", t.member)
    return map_block(fn_block, Value(value_block), operator)


def federated_apply(fn: Any, arg: Any) -> Value:
    """Applies `fn` to a server value: `(<(T -> U), T@SERVER> -> U@SERVER)` (TFF's older name)."""
    operator = "federated_apply"
    value_block, t = _federated(arg, operator, SERVER, "a value")
    return map_block(_function(fn, operator, "a function", t.member), Value(value_block), operator)


def _client_aggregate(
    uri: str, operator: str, value: Any, predicate: Callable[[TensorType], bool], kind: str
) -> Value:
    block, t = _federated(value, operator, CLIENTS, f"a {kind} value")
    if not is_structure_of(t.member, predicate):
        raise FederatedTypeError(
            operator, f"{{T}}@CLIENTS with T a {kind} tensor or a struct of them", f"{t}"
        )
    return call_intrinsic(uri, t, FederatedType(t.member, SERVER), block)


def federated_sum(value: Any) -> Value:
    """Sums client values at the server: `{T}@CLIENTS -> T@SERVER`, T numeric."""
    return _client_aggregate(FEDERATED_SUM, "federated_sum", value, is_numeric, "numeric")


def federated_min(value: Any) -> Value:
    """Element-wise minimum of client values at the server: `{T}@CLIENTS -> T@SERVER`, T numeric."""
    return _client_aggregate(FEDERATED_MIN, "federated_min", value, is_numeric, "numeric")


def federated_max(value: Any) -> Value:
    """Element-wise maximum of client values at the server: `{T}@CLIENTS -> T@SERVER`, T numeric."""
    return _client_aggregate(FEDERATED_MAX, "federated_max", value, is_numeric, "numeric")


def federated_mean(value: Any, weight: Any = None) -> Value:
    """The (weighted) mean of client values at the server: `{T}@CLIENTS -> T@SERVER`, T of floats; the
    optional weight is a numeric scalar at CLIENTS."""
    operator = "federated_mean"
    if weight is None:
        return _client_aggregate(FEDERATED_MEAN, operator, value, is_float, "floating-point")
    value_block, t = _federated(value, operator, CLIENTS, "a floating-point value")
    if not is_structure_of(t.member, is_float):
        raise FederatedTypeError(
            operator, "{T}@CLIENTS with T a floating-point tensor or a struct of them", f"{t}"
        )
    weight_block, w = _federated(weight, operator, CLIENTS, "a weight")
    if not (isinstance(w.member, TensorType) and w.member.rank == 0 and is_numeric(w.member)):
        raise FederatedTypeError(
            operator, "a weight of type {float32}@CLIENTS (a numeric scalar)", f"{w}"
        )
    argument = operands(value_block, weight_block)
    return call_intrinsic(
        FEDERATED_WEIGHTED_MEAN, argument.type_signature, FederatedType(t.member, SERVER), argument
    )


def federated_zip(value: Any) -> Value:
    """Turns a struct of federated values at one placement into a federated struct:
    `<a={int32}@CLIENTS,b={float32}@CLIENTS> -> {<a=int32,b=float32>}@CLIENTS` (names kept); nested
    structs of federated values are zipped too: `<{A}@CLIENTS,<{B}@CLIENTS>> -> {<A,<B>>}@CLIENTS`."""
    operator = "federated_zip"
    block = operand(value, operator)
    t = block.type_signature
    placements = placements_of_federated_struct(t)
    if placements is None:
        raise FederatedTypeError(
            operator, "a non-empty struct of federated values (or of structs of them)", f"{t}"
        )
    if len(placements) != 1:
        raise FederatedTypeError(
            operator, "a struct of federated values all at the same placement", f"{t}"
        )
    return Value(zip_block(block))


def federated_aggregate(value: Any, zero: Any, accumulate: Any, merge: Any, report: Any) -> Value:
    """Aggregates client values with a custom reduction: members are folded into accumulators starting
    from `zero` (`accumulate: <U,T> -> U`), accumulators are merged (`merge: <U,U> -> U`), and `report:
    U -> R` gives the server's result `R@SERVER`."""
    operator = "federated_aggregate"
    value_block, t = _federated(value, operator, CLIENTS, "a value")
    zero_block = operand(zero, operator)
    u = _unplaced(zero_block, operator, "a zero")
    accumulate_block = _function(
        accumulate, operator, "an accumulate function", StructType([u, t.member])
    )
    u_result = _result(accumulate_block)
    if not u.is_assignable_from(u_result) and not u_result.is_assignable_from(u):
        raise FederatedTypeError(
            operator,
            f"an accumulate function returning the zero's type {u}",
            f"{accumulate_block.type_signature}",
        )
    merge_block = _function(merge, operator, "a merge function", StructType([u, u]))
    report_block = _function(report, operator, "a report function", u)
    result = _result(report_block)
    argument = operands(value_block, zero_block, accumulate_block, merge_block, report_block)
    return call_intrinsic(
        FEDERATED_AGGREGATE, argument.type_signature, FederatedType(result, SERVER), argument
    )


def federated_select(client_keys: Any, max_key: Any, server_val: Any, select_fn: Any) -> Value:
    """Sends each client the server-side values it asks for: client `i` with keys `k_1..k_n` receives the
    sequence `select_fn(server_val, k_j)` for its keys, in order: `{U*}@CLIENTS`. Keys must be in
    `[0, max_key)`."""
    operator = "federated_select"
    keys_block, keys = _federated(client_keys, operator, CLIENTS, "client keys")
    if not (
        isinstance(keys.member, TensorType)
        and keys.member.dtype == np.int32
        and keys.member.rank == 1
    ):
        raise FederatedTypeError(operator, "client keys of type {int32[n]}@CLIENTS", f"{keys}")
    max_block, max_type = _federated(max_key, operator, SERVER, "a max_key")
    if max_type.member != TensorType(np.int32):
        raise FederatedTypeError(operator, "a max_key of type int32@SERVER", f"{max_type}")
    server_block, s = _federated(server_val, operator, SERVER, "a server value")
    fn_block = _function(
        select_fn, operator, "a select function", StructType([s.member, TensorType(np.int32)])
    )
    element = _result(fn_block)
    argument = operands(keys_block, max_block, server_block, fn_block)
    result = FederatedType(SequenceType(element), CLIENTS)
    return call_intrinsic(FEDERATED_SELECT, argument.type_signature, result, argument)


def _secure(uri: str, operator: str, value: Any, bound: Any, bound_name: str) -> Value:
    value_block, t = _federated(value, operator, CLIENTS, "an integer value")
    if not is_structure_of(t.member, is_integer):
        raise FederatedTypeError(
            operator, "{T}@CLIENTS with T an integer tensor or a struct of them", f"{t}"
        )
    bound_block = operand(bound, operator)
    b = _unplaced(bound_block, operator, f"a {bound_name}")
    scalar_ok = isinstance(b, TensorType) and b.rank == 0 and is_integer(b)
    if not scalar_ok and not (
        isinstance(b, StructType)
        and isinstance(t.member, StructType)
        and len(b) == len(t.member)
        and is_structure_of(b, is_integer)
    ):
        raise FederatedTypeError(
            operator,
            f"a {bound_name} that is an integer scalar or a struct matching {t.member}",
            f"{b}",
        )
    constants = _constant_leaves(bound_block)
    if constants is not None:
        dtypes = [leaf.dtype for leaf in _tensor_leaves(t.member)]
        problem = bounds_problem(
            bound_name, constants * len(dtypes) if scalar_ok else constants, dtypes
        )
        if problem is not None:
            location = user_location()
            raise ValueError(f"{operator}: {problem}." + (f"\n  at {location}" if location else ""))
    argument = operands(value_block, bound_block)
    return call_intrinsic(uri, argument.type_signature, FederatedType(t.member, SERVER), argument)


def _constant_leaves(block: bb.ComputationBuildingBlock) -> list[int] | None:
    """The integers of a constant bound (a literal, or a struct of them), or None if it is computed."""
    if isinstance(block, bb.Literal):
        return [int(block.value)]
    if isinstance(block, bb.Struct):
        leaves: list[int] = []
        for _, element in block.elements:
            found = _constant_leaves(element)
            if found is None:
                return None
            leaves += found
        return leaves
    return None


def _tensor_leaves(t: Type) -> list[TensorType]:
    if isinstance(t, StructType):
        return [leaf for element in t for leaf in _tensor_leaves(element)]
    assert isinstance(t, TensorType)
    return [t]


def federated_secure_sum(value: Any, max_input: Any) -> Value:
    """Sums integer client values as a secure aggregation protocol would; every member must lie in
    `[0, max_input]` (an out-of-range value is refused with an error naming the client)."""
    return _secure(FEDERATED_SECURE_SUM, "federated_secure_sum", value, max_input, "max_input")


def federated_secure_sum_bitwidth(value: Any, bitwidth: Any) -> Value:
    """Sums integer client values, each in `[0, 2**bitwidth)`; the sum is taken modulo `2**bitwidth`, as
    the fixed-width secure protocol computes it."""
    return _secure(
        FEDERATED_SECURE_SUM_BITWIDTH, "federated_secure_sum_bitwidth", value, bitwidth, "bitwidth"
    )


def federated_secure_modular_sum(value: Any, modulus: Any) -> Value:
    """Sums integer client values modulo `modulus`: each member is reduced into `[0, modulus)` and the sum
    wraps."""
    return _secure(
        FEDERATED_SECURE_MODULAR_SUM, "federated_secure_modular_sum", value, modulus, "modulus"
    )


# ---- sequences


def _sequence_operand(
    value: Any, operator: str
) -> tuple[bb.ComputationBuildingBlock, SequenceType, FederatedType | None]:
    block = operand(value, operator)
    t = block.type_signature
    federated = t if isinstance(t, FederatedType) else None
    sequence = federated.member if federated is not None else t
    if not isinstance(sequence, SequenceType):
        raise FederatedTypeError(
            operator, "a sequence (T*), or a federated sequence ({T*}@CLIENTS)", f"{t}"
        )
    return block, sequence, federated


def _member_wise(
    operator: str,
    block: bb.ComputationBuildingBlock,
    sequence: SequenceType,
    apply: Callable[[bb.ComputationBuildingBlock], Value],
) -> Value:
    """Applies a sequence operator to each member of a federated sequence (a federated_map of a lambda)."""
    parameter = fresh_name("seq")
    current_tracing_context(operator)
    inner = TracingContext()
    with context_scope(inner):
        result = apply(bb.Reference(parameter, sequence))
    body = let(inner.locals, result.building_block)
    return map_block(bb.Lambda(parameter, sequence, body), Value(block), operator)


def sequence_map(fn: Any, arg: Any) -> Value:
    """Applies `fn` to each element of a sequence: `(<(T -> U), T*> -> U*)`; member-wise on a federated sequence."""
    operator = "sequence_map"
    block, sequence, federated = _sequence_operand(arg, operator)
    fn_block = _function(fn, operator, "a function", sequence.element)
    element = _result(fn_block)

    def apply(seq: bb.ComputationBuildingBlock) -> Value:
        argument = operands(fn_block, seq)
        return call_intrinsic(
            SEQUENCE_MAP, argument.type_signature, SequenceType(element), argument
        )

    if federated is not None:
        return _member_wise(operator, block, sequence, apply)
    return apply(block)


def sequence_reduce(value: Any, zero: Any, op: Any) -> Value:
    """Folds a sequence: starting from `zero` (`U`), `op: <U,T> -> U` takes each element in order;
    member-wise on a federated sequence."""
    operator = "sequence_reduce"
    block, sequence, federated = _sequence_operand(value, operator)
    zero_block = operand(zero, operator)
    z = zero_block.type_signature
    if isinstance(z, FederatedType):
        if federated is None or z.placement != federated.placement:
            raise FederatedTypeError(
                operator, "a zero that is not federated (or at the sequence's placement)", f"{z}"
            )
        z = z.member
    op_block = _function(op, operator, "an op", StructType([z, sequence.element]))
    result = _result(op_block)

    def apply(seq: bb.ComputationBuildingBlock) -> Value:
        argument = operands(seq, zero_block, op_block)
        return call_intrinsic(SEQUENCE_REDUCE, argument.type_signature, result, argument)

    if federated is not None:
        if isinstance(zero_block.type_signature, FederatedType):
            raise FederatedTypeError(
                operator, "a zero that is not federated", f"{zero_block.type_signature}"
            )
        return _member_wise(operator, block, sequence, apply)
    return apply(block)


def sequence_sum(value: Any) -> Value:
    """Sums the elements of a sequence: `T* -> T`, T numeric; member-wise on a federated sequence."""
    operator = "sequence_sum"
    block, sequence, federated = _sequence_operand(value, operator)
    if not is_structure_of(sequence.element, is_numeric):
        raise FederatedTypeError(
            operator, "a sequence of numeric tensors or structs of them", f"{block.type_signature}"
        )

    def apply(seq: bb.ComputationBuildingBlock) -> Value:
        return call_intrinsic(SEQUENCE_SUM, sequence, sequence.element, seq)

    if federated is not None:
        return _member_wise(operator, block, sequence, apply)
    return apply(block)
