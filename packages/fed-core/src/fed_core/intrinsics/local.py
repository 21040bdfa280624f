"""The local implementations of fed's own intrinsics: `implementation(state, fn_type, argument)` as
`fed_core.intrinsics.definitions.IntrinsicDefinition` describes it. Any executor built on fed-core's
execution interface can run them on values in executor form."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor as PoolExecutor
from typing import Any

import numpy as np

from fed_core.execution.backends import run_per_member
from fed_core.execution.interface import ExecutionState, FunctionValue
from fed_core.execution.values import ClientValues, leaves, map_structure, to_executor_form
from fed_core.intrinsics.secure_bounds import bounds_problem
from fed_types import FederatedType, FunctionType, Struct, StructType, TensorType, Type

# Clients are folded into accumulators in groups of this size, then the accumulators are merged in order.
# The grouping depends only on the number of clients, never on the concurrency, so results are reproducible.
AGGREGATION_GROUP_SIZE = 16
# How many float64 elements of stacked clients' values a weighted mean converts at a time, and the
# fewest clients' rows in such a block for a product with the weights to pay: with fewer (a model's
# weights per client), a product of one row with its weight is several times slower than multiplying
# the row by it (0.5 s against 0.08 s for 50 clients of 1.6 million floats on 2 cores).
_WEIGHTED_BLOCK_ELEMENTS = 1 << 21
_WEIGHTED_BLOCK_MIN_ROWS = 16
# Large values are summed client by client in column ranges of at least this many elements, up to one
# per core, concurrently on the executor's pool: each range adds the clients in order, so the result
# does not depend on the split (for 50 clients of 1.6 million floats on 2 cores: 0.035-0.042 s instead
# of 0.071-0.078 s; one core's sum is bound by the float64 conversions, not by memory).
_PARALLEL_SUM_MIN_ELEMENTS = 1 << 18


def zeros(t: Type) -> Any:
    """The zero value of a tensor type (or struct of them) with a fully defined shape."""
    if isinstance(t, TensorType):
        if not t.is_fully_defined():
            raise ValueError(f"Cannot make a zero of {t}: its shape is not fully defined.")
        return np.zeros(t.shape, dtype=t.dtype)
    if isinstance(t, StructType):
        return Struct((name, zeros(e)) for name, e in t.items())
    raise TypeError(f"Cannot make a zero of {t}: expected a tensor or a struct of tensors.")


def _result_member(fn_type: FunctionType) -> Type:
    result = fn_type.result
    return result.member if isinstance(result, FederatedType) else result


def _reduce(
    clients: ClientValues,
    fn_type: FunctionType,
    reducer: Callable[[np.ndarray, np.dtype], Any],
    name: str,
    pairwise: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Any:
    """Reduces the clients' values along the client axis: with `reducer` on the stacked form when the
    values are held stacked, else client by client with `pairwise` (so that no stacked copy of all
    clients' values is made), in client order as the stacked reduction adds them."""
    member_type = _result_member(fn_type)
    if len(clients) == 0:
        if name == "sum":
            return zeros(member_type)
        raise ValueError(f"federated_{name} needs at least one client; there are none.")
    if not clients.is_stacked:
        members = clients.members()
        return map_structure(lambda *values: _running(values, pairwise), *members)

    def reduce_leaf(leaf: Any) -> Any:
        array = np.asarray(leaf)
        return reducer(array, array.dtype)

    return map_structure(reduce_leaf, clients.stacked())


def _running(
    values: Sequence[Any], pairwise: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    first = np.asarray(values[0])
    total = np.array(first, copy=True)
    for value in values[1:]:
        array = np.asarray(value)
        if array.shape != first.shape or array.dtype != first.dtype:
            raise ValueError(
                f"Cannot aggregate client values of different shapes or dtypes: "
                f"{first.dtype.name}{list(first.shape)} and {array.dtype.name}{list(array.shape)}."
            )
        # Sequential, as numpy reduces a stacked array along its first axis: the same result.
        total = pairwise(total, array)
    return total


def _mean_of(total: np.ndarray, count: int) -> np.ndarray:
    # np.mean's own arithmetic: a division in floating point, cast back to the values' dtype.
    return np.asarray(np.true_divide(total, count)).astype(total.dtype)


def federated_sum(state: ExecutionState, fn_type: FunctionType, value: ClientValues) -> Any:
    return _reduce(value, fn_type, lambda a, dt: np.sum(a, axis=0, dtype=dt), "sum", np.add)


def federated_mean(state: ExecutionState, fn_type: FunctionType, value: ClientValues) -> Any:
    if value.is_stacked or len(value) == 0:
        return _reduce(value, fn_type, lambda a, dt: np.mean(a, axis=0, dtype=dt), "mean", np.add)
    total = _reduce(value, fn_type, lambda a, dt: a, "mean", np.add)
    return map_structure(lambda leaf: _mean_of(leaf, len(value)), total)


def federated_min(state: ExecutionState, fn_type: FunctionType, value: ClientValues) -> Any:
    return _reduce(value, fn_type, lambda a, dt: np.min(a, axis=0), "min", np.minimum)


def federated_max(state: ExecutionState, fn_type: FunctionType, value: ClientValues) -> Any:
    return _reduce(value, fn_type, lambda a, dt: np.max(a, axis=0), "max", np.maximum)


def federated_weighted_mean(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    value, weight = arg[0], arg[1]
    if len(value) == 0:
        raise ValueError("federated_mean needs at least one client; there are none.")
    weights = np.asarray(weight.stacked(), dtype=np.float64)
    total = weights.sum()
    pool = state.pool_for_client_work()

    def mean_of(accumulated: np.ndarray, dtype: np.dtype) -> np.ndarray:
        # Weights that sum to zero make the mean undefined: NaN, as the division gives in TensorFlow
        # (and in MeanFactory's general path), so that learning rounds can refuse it as non-finite.
        with np.errstate(invalid="ignore", divide="ignore"):
            return (accumulated / total).astype(dtype)

    def weighted(*leaves: Any) -> np.ndarray:
        first = np.asarray(leaves[0])
        for leaf in leaves[1:]:
            if np.shape(leaf) != first.shape:
                raise ValueError(
                    f"Cannot average client values of different shapes: "
                    f"{list(first.shape)} and {list(np.shape(leaf))}."
                )
        accumulated = _weighted_sum_by_client(leaves, weights, first.dtype, pool)
        return mean_of(accumulated.reshape(first.shape), first.dtype)

    def weighted_stacked(leaf: Any) -> np.ndarray:
        array = np.asarray(leaf)
        wide = np.result_type(array.dtype, np.float64)
        rows = array.reshape(len(array), -1)
        block = _WEIGHTED_BLOCK_ELEMENTS // max(1, rows.shape[1])
        if block < _WEIGHTED_BLOCK_MIN_ROWS:
            # Large values (a model's weights): client by client, as for values held one by one.
            accumulated = _weighted_sum_by_client(rows, weights, array.dtype, pool)
        else:
            # Many small values: the rows times their weights, summed by a product with the weights,
            # a block of rows at a time (float64 copies of one block, not of all clients' values).
            accumulated = np.zeros(rows.shape[1], dtype=wide)
            for start in range(0, len(rows), block):
                chunk = rows[start : start + block].astype(wide)
                accumulated += weights[start : start + block] @ chunk
        return mean_of(accumulated, array.dtype).reshape(array.shape[1:])

    if value.is_stacked:
        if len(weights) != len(value):
            raise ValueError(
                f"federated_weighted_mean: {len(value)} clients' values and {len(weights)} weights."
            )
        return map_structure(weighted_stacked, value.stacked())
    return map_structure(weighted, *value.members())


def _weighted_sum_by_client(
    values: Sequence[Any] | np.ndarray,
    weights: np.ndarray,
    dtype: np.dtype,
    pool: PoolExecutor | None = None,
) -> np.ndarray:
    """The sum of the values (arrays of one shape) times their weights, flat, in float64 (or wider,
    for `dtype`), client by client in order: one float64 product at a time, no copy of all of them.
    Large values are split into column ranges summed concurrently on `pool` (see
    `_PARALLEL_SUM_MIN_ELEMENTS`)."""
    wide = np.result_type(dtype, np.float64)
    flat = [np.asarray(value).reshape(-1) for value in values]
    size = flat[0].size

    def columns(bounds: tuple[int, int]) -> np.ndarray:
        start, end = bounds
        accumulated = np.asarray(flat[0][start:end], dtype=wide) * weights[0]
        for value, w in zip(flat[1:], weights[1:], strict=True):
            accumulated += np.asarray(value[start:end], dtype=wide) * w
        return accumulated

    parts = min(os.cpu_count() or 1, size // _PARALLEL_SUM_MIN_ELEMENTS) if pool else 1
    if parts < 2:
        return columns((0, size))
    ends = np.linspace(0, size, parts + 1).astype(int)
    return np.concatenate(run_per_member(columns, list(zip(ends[:-1], ends[1:])), pool))


def federated_broadcast(state: ExecutionState, fn_type: FunctionType, value: Any) -> ClientValues:
    return ClientValues([value] * state.num_clients)


def federated_value_at_clients(
    state: ExecutionState, fn_type: FunctionType, value: Any
) -> ClientValues:
    return ClientValues([value] * state.num_clients)


def federated_value_at_server(state: ExecutionState, fn_type: FunctionType, value: Any) -> Any:
    return value


def federated_eval_at_clients(
    state: ExecutionState, fn_type: FunctionType, fn: FunctionValue
) -> ClientValues:
    pool = state.pool_for_client_work()

    def run(_: Any) -> Any:
        with state.in_client_work():
            return fn()

    return ClientValues(run_per_member(run, list(range(state.num_clients)), pool))


def federated_eval_at_server(
    state: ExecutionState, fn_type: FunctionType, fn: FunctionValue
) -> Any:
    return fn()


def federated_map(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> ClientValues:
    fn, clients = arg[0], arg[1]
    return state.map(fn, clients)


def federated_apply(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    fn, value = arg[0], arg[1]
    return fn(value)


def federated_zip_at_clients(
    state: ExecutionState, fn_type: FunctionType, arg: Struct
) -> ClientValues:
    names = arg.names()
    sizes = {len(c) for c in arg}
    if len(sizes) > 1:
        raise ValueError(
            f"federated_zip: the zipped values have different numbers of clients: {sorted(sizes)}."
        )
    if len(arg) and sizes != {0} and all(c.is_stacked for c in arg):
        # Stacked values (a vectorized or looped map's results) stay stacked: no value per client.
        return ClientValues(
            stacked=Struct(zip(names, (c.stacked() for c in arg))), size=len(arg[0])
        )
    columns = [c.members() for c in arg]
    return ClientValues([Struct(zip(names, row)) for row in zip(*columns)])


def federated_zip_at_server(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Struct:
    return arg


def federated_aggregate(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    clients, zero, accumulate, merge, report = arg
    members = clients.members()
    groups = [
        members[k : k + AGGREGATION_GROUP_SIZE]
        for k in range(0, len(members), AGGREGATION_GROUP_SIZE)
    ]

    def fold(group: list[Any]) -> Any:
        accumulator = zero
        for member in group:
            accumulator = accumulate(Struct([(None, accumulator), (None, member)]))
        return accumulator

    partials = run_per_member(fold, groups, state.pool_for_client_work())
    total = partials[0] if partials else zero
    for partial in partials[1:]:
        total = merge(Struct([(None, total), (None, partial)]))
    return report(total)


def federated_select(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> ClientValues:
    keys, max_key, server_value, select_fn = arg
    limit = int(np.asarray(max_key))
    cache: dict[int, Any] = {}
    out = []
    warned = False
    for client, client_keys in enumerate(keys.members()):
        selected = []
        for key in np.asarray(client_keys).tolist():
            if key < 0:
                raise ValueError(
                    f"federated_select: client {client} asked for key {key}; keys are non-negative."
                )
            if key >= limit and not warned:
                # TFF states that keys lie below max_key but does not check it, and its sparse tutorial
                # passes a smaller max_key: the selection is still what each client asked for.
                warnings.warn(
                    f"federated_select: client {client} asked for key {key}, not below max_key "
                    f"{limit}; each key is still selected as asked (a distributed executor may rely "
                    "on max_key).",
                    stacklevel=2,
                )
                warned = True
            if key not in cache:
                cache[key] = select_fn(Struct([(None, server_value), (None, np.int32(key))]))
            selected.append(cache[key])
        out.append(selected)
    return ClientValues(out)


def _bounds(operator: str, kind: str, bound: Any, value_type: Type) -> list[int]:
    """One integer bound per tensor of `value_type` (a scalar bound applies to every tensor), each
    checked against the values' dtype (see `secure_bounds`)."""
    bound_leaves = [int(np.asarray(b)) for b in leaves(bound)]
    tensors = _tensor_types(value_type)
    bounds = bound_leaves * len(tensors) if len(bound_leaves) == 1 else bound_leaves
    problem = bounds_problem(kind, bounds, [t.dtype for t in tensors])
    if problem is not None:
        raise ValueError(f"{operator}: {problem}.")
    return bounds


def _tensor_types(t: Type) -> list[TensorType]:
    if isinstance(t, StructType):
        return [leaf for element in t for leaf in _tensor_types(element)]
    assert isinstance(t, TensorType)
    return [t]


def _secure_sum(
    name: str,
    clients: ClientValues,
    fn_type: FunctionType,
    bounds: list[int],
    in_range: Callable[[np.ndarray, int], np.ndarray],
    allowed: Callable[[int], str],
    finish: Callable[[np.ndarray, int], np.ndarray],
) -> Any:
    """Checks every client's leaves against their bounds (`in_range` gives an element-wise mask), then sums
    each leaf in int64 and applies `finish` (the protocol's wrap-around) before casting back."""
    for client, member in enumerate(clients.members()):
        for leaf_index, (leaf, bound) in enumerate(zip(leaves(member), bounds)):
            array = np.asarray(leaf)
            mask = in_range(array, bound)
            if not np.all(mask):
                bad = np.asarray(array)[~mask] if array.ndim else array
                raise ValueError(
                    f"{name}: client {client} holds {np.ravel(bad)[:5].tolist()} in tensor {leaf_index}, "
                    f"outside the allowed range {allowed(bound)}."
                )
    if len(clients) == 0:
        return zeros(_result_member(fn_type))
    stacked = clients.stacked()
    sums = iter(
        _fitting(name, finish(_exact_sum(np.asarray(leaf)), bound), np.asarray(leaf).dtype)
        for leaf, bound in zip(leaves(stacked), bounds)
    )
    return map_structure(lambda _: next(sums), stacked)


def _fitting(name: str, total: Any, dtype: np.dtype) -> np.ndarray:
    """`total` (exact, in int64 or Python integers) cast to `dtype`, or an OverflowError: a sum that
    does not fit its dtype is refused rather than wrapped around."""
    info = np.iinfo(dtype)
    exact = np.asarray(total)
    if exact.size and (int(exact.max()) > info.max or int(exact.min()) < info.min):
        largest = int(exact.max()) if int(exact.max()) > info.max else int(exact.min())
        raise OverflowError(
            f"{name}: the sum of the clients' {dtype.name} values is {largest}, which overflows "
            f"{dtype.name} (range [{info.min}, {info.max}]); sum them in a wider dtype (cast to "
            "int64 before the sum), or bound them more tightly so that the sum fits."
        )
    return exact.astype(dtype)


def _exact_sum(stacked: np.ndarray) -> np.ndarray:
    """The sum over the client axis without wrapping: in int64 where it cannot overflow, else in
    Python integers (a large modulus or bitwidth times many clients)."""
    if stacked.size == 0:
        return stacked.astype(np.int64).sum(axis=0)
    largest = max(abs(int(stacked.max())), abs(int(stacked.min())))
    if largest * stacked.shape[0] < 2**63:
        return stacked.astype(np.int64).sum(axis=0)
    return stacked.astype(object).sum(axis=0)


def federated_secure_sum(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    clients, bound = arg[0], arg[1]
    return _secure_sum(
        "federated_secure_sum",
        clients,
        fn_type,
        _bounds("federated_secure_sum", "max_input", bound, _result_member(fn_type)),
        lambda a, b: (a >= 0) & (a <= b),
        lambda b: f"[0, {b}]",
        lambda total, b: total,
    )


def federated_secure_sum_bitwidth(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    clients, bitwidth = arg[0], arg[1]
    return _secure_sum(
        "federated_secure_sum_bitwidth",
        clients,
        fn_type,
        _bounds("federated_secure_sum_bitwidth", "bitwidth", bitwidth, _result_member(fn_type)),
        lambda a, b: (a >= 0) & (a < (1 << b)),
        lambda b: f"[0, 2**{b})",
        lambda total, b: total % (1 << b),
    )


def federated_secure_modular_sum(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    clients, modulus = arg[0], arg[1]
    bounds = _bounds("federated_secure_modular_sum", "modulus", modulus, _result_member(fn_type))
    reduced = ClientValues([_reduce_mod(member, bounds) for member in clients.members()])
    return _secure_sum(
        "federated_secure_modular_sum",
        reduced,
        fn_type,
        bounds,
        lambda a, b: np.ones(a.shape, dtype=bool),
        lambda b: f"[0, {b})",
        lambda total, b: total % b,
    )


def _reduce_mod(member: Any, bounds: list[int]) -> Any:
    it = iter(bounds)
    return map_structure(lambda leaf: np.mod(np.asarray(leaf), next(it)), member)


def _elements(sequence: Any) -> Iterable[Any]:
    """The elements of a sequence in executor form (a native dataset yields Python containers: made Structs)."""
    for element in sequence:
        yield to_executor_form(element)


def sequence_map(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> list[Any]:
    fn, sequence = arg[0], arg[1]
    return [fn(element) for element in _elements(sequence)]


def sequence_reduce(state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
    sequence, zero, op = arg
    accumulator = zero
    for element in _elements(sequence):
        accumulator = op(Struct([(None, accumulator), (None, element)]))
    return accumulator


def sequence_sum(state: ExecutionState, fn_type: FunctionType, sequence: Any) -> Any:
    element_type = fn_type.result
    total = None
    for element in _elements(sequence):
        total = (
            element if total is None else map_structure(lambda a, b: np.add(a, b), total, element)
        )
    if total is None:
        return zeros(element_type)
    return total
