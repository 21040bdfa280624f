"""Substitution and inlining: the rewrites every other pass builds on.

`inline_lambdas`, `inline_blocks` and `simplify_selections` rewrite a tree into an equivalent one,
with the same type signature and the same results. No pass duplicates a call, and substitution is
capture-avoiding: a binder that would capture a free name of the substituted value is renamed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from fed_core.ir import building_blocks as bb
from fed_core.ir.build import fresh_name
from fed_core.tracing.computation import Computation, PolymorphicComputation
from fed_types import StructType

_Symbols = list[tuple[str, bb.ComputationBuildingBlock]]
_Uses = list[tuple[bb.Reference, bool]]
"""Free references to one name, each with whether it sits under a Lambda (so may run many times)."""
_Policy = Callable[[bb.ComputationBuildingBlock, _Uses, Callable[[], int]], bool]
"""Whether a value may replace the given references to the name it is bound to; the last argument
computes the depth of the expression that holds the first reference."""

_MAX_INLINED_DEPTH = 32
"""A value moves into its single use only while the expression it lands in stays this shallow."""


def _check_block(block: Any, pass_name: str) -> None:
    if isinstance(block, (Computation, PolymorphicComputation)):
        raise TypeError(
            f"{pass_name} takes a building block, got a {type(block).__name__}: pass its "
            "`building_block`."
        )
    if not isinstance(block, bb.ComputationBuildingBlock):
        raise TypeError(f"{pass_name} takes a building block, got a {type(block).__qualname__}.")


# ---- free uses and capture-avoiding substitution

_Replacement = Callable[[bb.Reference], bb.ComputationBuildingBlock]
_Replacements = Mapping[str, _Replacement]
"""For each name, what replaces a free reference to it (given that reference)."""


def _free_uses(block: bb.ComputationBuildingBlock) -> _Uses:
    """The free references in `block`, each with whether it sits under a Lambda of `block`."""
    found: _Uses = []
    _collect_free_uses(block, frozenset(), False, found)
    return found


def _collect_free_uses(
    node: bb.ComputationBuildingBlock, bound: frozenset[str], under_lambda: bool, found: _Uses
) -> None:
    if isinstance(node, bb.Reference):
        if node.name not in bound:
            found.append((node, under_lambda))
    elif isinstance(node, bb.Lambda):
        parameter = node.parameter_name
        inner = bound if parameter is None else bound | {parameter}
        _collect_free_uses(node.result, inner, True, found)
    elif isinstance(node, bb.Block):
        for name, value in node.locals:
            _collect_free_uses(value, bound, under_lambda, found)
            bound = bound | {name}
        _collect_free_uses(node.result, bound, under_lambda, found)
    else:
        for child in node.children():
            _collect_free_uses(child, bound, under_lambda, found)


def _uses(block: bb.ComputationBuildingBlock, name: str) -> _Uses:
    return [(reference, under) for reference, under in _free_uses(block) if reference.name == name]


def _binding_uses(
    symbols: _Symbols, result: bb.ComputationBuildingBlock
) -> tuple[list[_Uses], list[list[int]]]:
    """For each local of a scope, the references to it (up to a local that rebinds its name), and
    for each reference the position of the local value holding it (`len(symbols)` for the
    result)."""
    uses: list[_Uses] = [[] for _ in symbols]
    holders: list[list[int]] = [[] for _ in symbols]
    binding: dict[str, int] = {}
    for position, value in enumerate([*(value for _, value in symbols), result]):
        for reference, under_lambda in _free_uses(value):
            index = binding.get(reference.name)
            if index is not None:
                uses[index].append((reference, under_lambda))
                holders[index].append(position)
        if position < len(symbols):
            binding[symbols[position][0]] = position
    return uses, holders


def _renaming(new_name: str) -> _Replacement:
    return lambda reference: bb.Reference(new_name, reference.type_signature)


def _constant(value: bb.ComputationBuildingBlock) -> _Replacement:
    return lambda _: value


def _without(replacements: _Replacements, name: str | None) -> _Replacements:
    if name is None or name not in replacements:
        return replacements
    return {key: replacement for key, replacement in replacements.items() if key != name}


def _replace(
    node: bb.ComputationBuildingBlock, replacements: _Replacements, avoid: AbstractSet[str]
) -> bb.ComputationBuildingBlock:
    """`node` with each free reference to a name of `replacements` replaced by what it gives.

    `avoid` holds the free names of the replacements: a binder inside `node` with one of these
    names is renamed first when a replaced reference lies in its scope. Returns `node` itself when
    nothing changes.
    """
    if not replacements:
        return node
    if isinstance(node, bb.Reference):
        replacement = replacements.get(node.name)
        return node if replacement is None else replacement(node)
    if isinstance(node, bb.Lambda):
        parameter = node.parameter_name
        active = _without(replacements, parameter)
        result = node.result
        if (
            parameter is not None
            and parameter in avoid
            and active.keys() & bb.free_references(result)
        ):
            renamed = fresh_name("x")
            result = _replace(result, {parameter: _renaming(renamed)}, {renamed})
            parameter = renamed
        new_result = _replace(result, active, avoid)
        if new_result is node.result:
            return node
        return bb.Lambda(parameter, node.parameter_type, new_result)
    if isinstance(node, bb.Block):
        symbols, result, changed = _replace_in_scope(node.locals, node.result, replacements, avoid)
        return bb.Block(symbols, result) if changed else node
    children = list(node.children())
    if not children:
        return node
    return node.with_children([_replace(child, replacements, avoid) for child in children])


def _replace_in_scope(
    symbols: Sequence[tuple[str, bb.ComputationBuildingBlock]],
    result: bb.ComputationBuildingBlock,
    replacements: _Replacements,
    avoid: AbstractSet[str],
) -> tuple[_Symbols, bb.ComputationBuildingBlock, bool]:
    """`_replace` over a sequential scope; returns the new locals, the new result and whether
    anything changed."""
    symbols = list(symbols)
    changed = False
    active = replacements
    for index in range(len(symbols)):
        if not active:
            return symbols, result, changed
        name, value = symbols[index]
        new_value = _replace(value, active, avoid)
        active = _without(active, name)
        if name in avoid and active.keys() & _scope_free_names(symbols[index + 1 :], result):
            renamed = fresh_name("v")
            tail, result, _ = _replace_in_scope(
                symbols[index + 1 :], result, {name: _renaming(renamed)}, {renamed}
            )
            symbols[index + 1 :] = tail
            name = renamed
        if new_value is not value or name != symbols[index][0]:
            symbols[index] = (name, new_value)
            changed = True
    new_result = _replace(result, active, avoid)
    return symbols, new_result, changed or new_result is not result


def _scope_free_names(symbols: _Symbols, result: bb.ComputationBuildingBlock) -> set[str]:
    return bb.free_references(bb.Block(symbols, result) if symbols else result)


# ---- inlining policies


def _is_cheap(block: bb.ComputationBuildingBlock) -> bool:
    """References, selections from them, literals, placements and structs of these: free to evaluate
    more than once."""
    while isinstance(block, bb.Selection):
        block = block.source
    if isinstance(block, bb.Struct):
        return all(_is_cheap(element) for _, element in block.elements)
    return isinstance(block, (bb.Reference, bb.Literal, bb.Placement))


def _fits_uses(value: bb.ComputationBuildingBlock, uses: _Uses) -> bool:
    # A reference may carry a wider type than the value bound to it (a parameter declared
    # `float32[?]` bound to a `float32[3]`, named elements bound to unnamed ones); replacing it
    # would change the types above it.
    return all(
        reference.type_signature.is_identical_to(value.type_signature) for reference, _ in uses
    )


def _depth(block: bb.ComputationBuildingBlock) -> int:
    return 1 + max((_depth(child) for child in block.children()), default=0)


def _inline_policy(
    value: bb.ComputationBuildingBlock, uses: _Uses, holder_depth: Callable[[], int]
) -> bool:
    if not _fits_uses(value, uses):
        return False
    if _is_cheap(value) or not uses:
        return True
    # A value used once inside a lambda would run each time the lambda runs (once per client in a
    # map).
    if len(uses) > 1 or uses[0][1]:
        return False
    # Inlining a whole chain of calls would turn a flat body into one too deep for the recursive
    # traversals that run and transform it, so chains are nested only so far.
    return _depth(value) + holder_depth() <= _MAX_INLINED_DEPTH


def _let(
    name: str,
    value: bb.ComputationBuildingBlock,
    body: bb.ComputationBuildingBlock,
    policy: _Policy,
) -> bb.ComputationBuildingBlock:
    """`let name=value in body`, or `body` with `value` substituted for `name` where the policy
    allows it."""
    if policy(value, _uses(body, name), functools.partial(_depth, body)):
        return _replace(body, {name: _constant(value)}, bb.free_references(value))
    return bb.Block([(name, value)], body)


# ---- normalization passes


def inline_lambdas(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """Beta-reduces calls of lambdas.

    `(p -> body)(arg)` becomes `body` with `arg` substituted for `p` when `arg` is cheap (a
    reference, a selection from one, a literal or a placement) or `p` is used at most once outside
    nested lambdas; otherwise it becomes `let p=arg in body`, which still evaluates `arg` once.
    `( -> body)()` becomes `body`.
    """
    _check_block(block, "inline_lambdas")
    return bb.transform_postorder(block, lambda node: _reduce_call(node, _inline_policy))


def _reduce_call(node: bb.ComputationBuildingBlock, policy: _Policy) -> bb.ComputationBuildingBlock:
    if not (isinstance(node, bb.Call) and isinstance(node.function, bb.Lambda)):
        return node
    function = node.function
    if function.parameter_name is None:
        return function.result
    assert node.argument is not None
    return _let(function.parameter_name, node.argument, function.result, policy)


def inline_blocks(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """Inlines Block locals that are cheap (references, selections from them, literals, placements)
    or used at most once outside nested lambdas, dropping unused ones; the locals of a Block nested
    as a local's value or as the result join the enclosing Block. A call is never duplicated."""
    _check_block(block, "inline_blocks")
    return bb.transform_postorder(block, lambda node: _inline_block(node, _inline_policy))


def _inline_block(
    node: bb.ComputationBuildingBlock, policy: _Policy
) -> bb.ComputationBuildingBlock:
    if not isinstance(node, bb.Block):
        return node
    symbols, result = _flat_scope(node)
    uses, holders = _binding_uses(symbols, result)
    holder_values = [*(value for _, value in symbols), result]
    # One pass in order: each local is decided once its value has received the values inlined
    # before it; the references to it were counted up front, as inlining never adds any.
    replacements: dict[str, _Replacement] = {}
    avoid: set[str] = set()
    kept: _Symbols = []
    for index, (name, value) in enumerate(symbols):
        value = _replace(value, replacements, avoid)
        replacements.pop(name, None)
        binding_uses = uses[index]
        holder = holder_values[holders[index][0]] if holders[index] else result
        if policy(value, binding_uses, functools.partial(_depth, holder)):
            replacements[name] = _constant(value)
            avoid |= bb.free_references(value)
            continue
        split = _split_struct(value, binding_uses)
        if split is not None:
            element_symbols, replacement = split
            kept.extend(element_symbols)
            replacements[name] = _constant(replacement)
            avoid.update(element_name for element_name, _ in element_symbols)
            continue
        if name in avoid and replacements:
            # A value still to be inlined below refers to an outer `name`, which this local would
            # capture.
            renamed = fresh_name("v")
            replacements[name] = _renaming(renamed)
            avoid.add(renamed)
            name = renamed
        kept.append((name, value))
    result = _replace(result, replacements, avoid)
    if _same_scope(kept, result, node):
        return node
    return bb.Block(kept, result) if kept else result


def _same_scope(symbols: _Symbols, result: bb.ComputationBuildingBlock, node: bb.Block) -> bool:
    """True if the locals and result are those of `node`, the same blocks under the same names."""
    return (
        result is node.result
        and len(symbols) == len(node.locals)
        and all(
            name == old_name and value is old_value
            for (name, value), (old_name, old_value) in zip(symbols, node.locals, strict=True)
        )
    )


def _flat_scope(node: bb.Block) -> tuple[_Symbols, bb.ComputationBuildingBlock]:
    """The locals and result of `node`, with the locals of Blocks nested as local values or as the
    result moved into the sequence (renamed where they would capture a name used after them)."""
    taken = bb.free_references(node)
    flat: _Symbols = []
    pending = list(reversed(node.locals))
    result = node.result
    while True:
        while pending:
            name, value = pending.pop()
            if isinstance(value, bb.Block):
                inner_symbols, inner_result = _renamed_apart(value.locals, value.result, taken)
                pending.append((name, inner_result))
                pending.extend(reversed(inner_symbols))
                continue
            flat.append((name, value))
            taken.add(name)
        if not isinstance(result, bb.Block):
            return flat, result
        pending = list(reversed(result.locals))
        result = result.result


def _renamed_apart(
    symbols: Sequence[tuple[str, bb.ComputationBuildingBlock]],
    result: bb.ComputationBuildingBlock,
    taken: AbstractSet[str],
) -> tuple[_Symbols, bb.ComputationBuildingBlock]:
    """A scope with its locals whose names are in `taken` renamed."""
    symbols = list(symbols)
    for index in range(len(symbols)):
        name, value = symbols[index]
        if name in taken:
            renamed = fresh_name("v")
            tail, result, _ = _replace_in_scope(
                symbols[index + 1 :], result, {name: _renaming(renamed)}, {renamed}
            )
            symbols[index + 1 :] = tail
            symbols[index] = (renamed, value)
    return symbols, result


def _split_struct(
    value: bb.ComputationBuildingBlock, uses: _Uses
) -> tuple[_Symbols, bb.Struct] | None:
    """For a struct that cannot be inlined whole, one local per element and the struct of references
    to them that replaces the struct's name (typed as the references to it were, so it can be
    substituted)."""
    if not isinstance(value, bb.Struct) or not uses:
        return None
    declared = uses[0][0].type_signature
    if not (
        isinstance(declared, StructType)
        and len(declared) == len(value.elements)
        and all(reference.type_signature.is_identical_to(declared) for reference, _ in uses)
    ):
        return None
    names = [fresh_name("v") for _ in value.elements]
    element_symbols = [
        (name, element) for name, (_, element) in zip(names, value.elements, strict=True)
    ]
    replacement = bb.Struct(
        [
            (field, bb.Reference(name, t))
            for name, (field, t) in zip(names, declared.items(), strict=True)
        ],
        declared.python_container,
    )
    return element_symbols, replacement


def simplify_selections(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """Selections from a struct built in place become the selected element: `<a,b>[0]` becomes `a`,
    and `(let x=v in <a,b>)[1]` becomes `(let x=v in b)`."""
    _check_block(block, "simplify_selections")
    return bb.transform_postorder(block, _simplify_selection)


def _simplify_selection(node: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    if isinstance(node, bb.Selection):
        selected = _select_in_place(node.source, node.index)
        if selected is not None:
            return selected
    return node


def _select_in_place(
    source: bb.ComputationBuildingBlock, index: int
) -> bb.ComputationBuildingBlock | None:
    if isinstance(source, bb.Struct):
        return source.elements[index][1]
    if isinstance(source, bb.Block):
        selected = _select_in_place(source.result, index)
        return None if selected is None else bb.Block(source.locals, selected)
    return None
