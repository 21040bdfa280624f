"""Normalization: merging chained maps, and `normalize`, which runs every rewrite to a fixed point.

Each pass rewrites a tree into an equivalent one, with the same type signature and the same results,
and never duplicates a call.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Set as AbstractSet

from fed_core.compiler.transformations import (
    _binding_uses,
    _check_block,
    _fits_uses,
    _Symbols,
    inline_blocks,
    inline_lambdas,
    simplify_selections,
)
from fed_core.intrinsics import definitions as i
from fed_core.ir import building_blocks as bb
from fed_core.ir.build import fresh_name
from fed_types import FunctionType

_MAP_URIS = frozenset({i.FEDERATED_MAP, i.FEDERATED_MAP_ALL_EQUAL, i.FEDERATED_APPLY})


def _map_operands(
    node: bb.ComputationBuildingBlock,
) -> tuple[str, bb.ComputationBuildingBlock, bb.ComputationBuildingBlock] | None:
    """(uri, function, value) of a call of federated_map, its all-equal form or federated_apply."""
    if (
        isinstance(node, bb.Call)
        and isinstance(node.function, bb.Intrinsic)
        and node.function.uri in _MAP_URIS
        and isinstance(node.argument, bb.Struct)
        and len(node.argument.elements) == 2
    ):
        return node.function.uri, node.argument.elements[0][1], node.argument.elements[1][1]
    return None


def _composable(first: bb.ComputationBuildingBlock, then: bb.ComputationBuildingBlock) -> bool:
    first_type, then_type = first.type_signature, then.type_signature
    return (
        isinstance(first_type, FunctionType)
        and isinstance(then_type, FunctionType)
        and first_type.parameter is not None
        and then_type.parameter is not None
        and then_type.parameter.is_assignable_from(first_type.result)
    )


def merge_chained_maps(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """`federated_map(g, federated_map(f, x))` becomes `federated_map((p -> g(f(p))), x)`, also when
    the inner map is bound to a Block local used only there; likewise for all-equal maps and
    `federated_apply`. The result of the inner map is never computed on its own."""
    _check_block(block, "merge_chained_maps")
    return bb.transform_postorder(block, _merge_maps)


def _merge_maps(node: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    if isinstance(node, bb.Block):
        return _merge_let_bound_maps(node)
    merged = _merge_nested_map(node)
    return node if merged is None else merged


def _merge_nested_map(node: bb.ComputationBuildingBlock) -> bb.Call | None:
    outer = _map_operands(node)
    if outer is None:
        return None
    uri, then, inner_call = outer
    inner = _map_operands(inner_call)
    if inner is None or inner[0] != uri or not _composable(inner[1], then):
        return None
    _, first, value = inner
    argument = bb.Struct([_compose(first, then), value])
    return bb.Call(
        bb.Intrinsic(uri, FunctionType(argument.type_signature, node.type_signature)), argument
    )


def _compose(first: bb.ComputationBuildingBlock, then: bb.ComputationBuildingBlock) -> bb.Lambda:
    """`(p -> let v=first(p) in then(v))`, with the locals of `first`'s body joining the let when
    `first` is a Lambda, so that composing a long chain of maps keeps the tree flat."""
    first_type = first.type_signature
    assert isinstance(first_type, FunctionType) and first_type.parameter is not None
    intermediate = fresh_name("v")
    if isinstance(first, bb.Lambda) and first.parameter_name is not None:
        body = first.result
        symbols: _Symbols = list(body.locals) if isinstance(body, bb.Block) else []
        value = body.result if isinstance(body, bb.Block) else body
        binders = {first.parameter_name, *(name for name, _ in symbols)}
        if not binders & bb.free_references(then):
            return bb.Lambda(
                first.parameter_name,
                first.parameter_type,
                bb.Block(
                    [*symbols, (intermediate, value)],
                    bb.Call(then, bb.Reference(intermediate, value.type_signature)),
                ),
            )
    parameter = fresh_name("x")
    argument = bb.Reference(parameter, first_type.parameter)
    return bb.Lambda(
        parameter,
        first_type.parameter,
        bb.Block(
            [(intermediate, bb.Call(first, argument))],
            bb.Call(then, bb.Reference(intermediate, first_type.result)),
        ),
    )


def _merge_let_bound_maps(node: bb.Block) -> bb.ComputationBuildingBlock:
    """Merges each map bound to a local into the map that consumes it, when that is its only use."""
    symbols: _Symbols = list(node.locals)
    result = node.result
    uses, holders = _binding_uses(symbols, result)
    positions: dict[str, list[int]] = {}
    for index, (name, _) in enumerate(symbols):
        positions.setdefault(name, []).append(index)
    merged_away: set[int] = set()
    # In order, so that a chain collapses in one pass: each map is merged into its consumer after
    # the maps feeding it were merged into it.
    for index, (_, value) in enumerate(symbols):
        if _map_operands(value) is None or len(uses[index]) != 1:
            continue
        reference, under_lambda = uses[index][0]
        holder = holders[index][0]
        if under_lambda or not _fits_uses(value, uses[index]):
            continue
        if _rebound(bb.free_references(value), positions, index, holder):
            continue  # the map would not mean the same where it is consumed
        target = symbols[holder][1] if holder < len(symbols) else result
        merged = bb.transform_postorder(target, functools.partial(_merge_into, reference, value))
        if merged is target:
            continue  # not consumed by a map it composes with
        if holder < len(symbols):
            symbols[holder] = (symbols[holder][0], merged)
        else:
            result = merged
        merged_away.add(index)
    if not merged_away:
        return node
    kept = [symbol for index, symbol in enumerate(symbols) if index not in merged_away]
    return bb.Block(kept, result) if kept else result


def _rebound(
    names: AbstractSet[str], positions: dict[str, list[int]], start: int, end: int
) -> bool:
    """True if one of `names` is bound by a local at a position in `[start, end)`."""
    for name in names:
        bound = positions.get(name, [])
        first_at_or_after = bisect.bisect_left(bound, start)
        if first_at_or_after < len(bound) and bound[first_at_or_after] < end:
            return True
    return False


def _merge_into(
    reference: bb.Reference, inner: bb.ComputationBuildingBlock, node: bb.ComputationBuildingBlock
) -> bb.ComputationBuildingBlock:
    """`node` merged with the map `inner` if `node` is a map whose operand is `reference`."""
    outer = _map_operands(node)
    if outer is None or outer[2] is not reference:
        return node
    assert isinstance(node, bb.Call) and isinstance(node.argument, bb.Struct)
    nested = bb.Call(node.function, node.argument.with_children([outer[1], inner]))
    merged = _merge_nested_map(nested)
    return node if merged is None else merged


def normalize(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """Runs `inline_lambdas`, `inline_blocks`, `simplify_selections` and `merge_chained_maps` until
    the tree no longer changes."""
    _check_block(block, "normalize")
    while True:
        previous = block
        block = merge_chained_maps(simplify_selections(inline_blocks(inline_lambdas(block))))
        if block is previous:
            return block
