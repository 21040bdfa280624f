"""The MapReduce form: a round-shaped computation split into the parts a distributed executor runs.

`get_map_reduce_form` splits `(<S@SERVER,{D}@CLIENTS> -> <S'@SERVER,O@SERVER>)` into server prepare,
client work, aggregations and server update (see `MapReduceForm`); `run_map_reduce_form` runs those
parts one after the other in the current execution context, as a distributed executor would run them
on its workers.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import Any

from fed_core.compiler.normalization import normalize
from fed_core.compiler.transformations import (
    _constant,
    _inline_block,
    _reduce_call,
    _renaming,
    _replace,
    _replace_in_scope,
    _simplify_selection,
    _Symbols,
    _Uses,
)
from fed_core.intrinsics import definitions as i
from fed_core.ir import building_blocks as bb
from fed_core.ir.build import fresh_name
from fed_core.tracing import operators as ops
from fed_core.tracing.computation import Computation
from fed_core.tracing.tracer import federated_computation, intrinsic_operator
from fed_types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    StructType,
    Type,
    container_items,
)

# ---- MapReduce form


@dataclasses.dataclass(frozen=True)
class MapReduceAggregation:
    """One aggregation of a round in MapReduce form: the intrinsic (by URI) and what it consumes.

    `value_index` (and `weight_index` for `federated_weighted_mean`) say which element of the client
    work's output C it aggregates. `federated_aggregate` carries `zero: ( -> U)`,
    `accumulate: (<U,T> -> U)`, `merge: (<U,U> -> U)` and `report: (U -> R)`; the secure sums carry
    `bound: ( -> B)`, the max_input, bitwidth or modulus.
    """

    uri: str
    value_index: int
    weight_index: int | None = None
    zero: Computation | None = None
    accumulate: Computation | None = None
    merge: Computation | None = None
    report: Computation | None = None
    bound: Computation | None = None


@dataclasses.dataclass(frozen=True)
class MapReduceForm:
    """A round `(<S@SERVER,{D}@CLIENTS> -> <S'@SERVER,O@SERVER>)` split into non-federated parts.

    - `prepare: (S -> B)`: server work on the state; B has one element per broadcast value.
    - `work: (<D,B> -> C)`: each client's work on its data and the broadcast values; C has one
      element per value the aggregations consume.
    - `aggregations`: how the clients' C values are aggregated, in order; aggregation k gives
      element k of A.
    - `update: (<S,A> -> <S',O>)`: server work on the state and the aggregates, giving the new state
      and the output.

    `type_signature` is the round's. `run_map_reduce_form` runs the parts in this order.
    """

    type_signature: FunctionType
    prepare: Computation
    work: Computation
    aggregations: tuple[MapReduceAggregation, ...]
    update: Computation


class _Phase(enum.Enum):
    UNPLACED = "computed wherever it is needed"
    PREPARE = "at the server, before the aggregations"
    CLIENTS = "at the clients"
    UPDATE = "at the server, after the aggregations"


_AGGREGATION_URIS = frozenset(
    uri for uri, d in i.BUILTINS.items() if d.kind is i.IntrinsicKind.AGGREGATION
)
_SECURE_URIS = i.SECURE_AGGREGATIONS
# The client and server intrinsics this split knows how to run on members rather than federated values.
_CLIENT_URIS = frozenset(
    {
        i.FEDERATED_MAP,
        i.FEDERATED_MAP_ALL_EQUAL,
        i.FEDERATED_ZIP_AT_CLIENTS,
        i.FEDERATED_VALUE_AT_CLIENTS,
        i.FEDERATED_EVAL_AT_CLIENTS,
    }
)
_SERVER_URIS = frozenset(
    {
        i.FEDERATED_APPLY,
        i.FEDERATED_ZIP_AT_SERVER,
        i.FEDERATED_VALUE_AT_SERVER,
        i.FEDERATED_EVAL_AT_SERVER,
    }
)
_ROUND_SHAPE = "(<S@SERVER,{D}@CLIENTS> -> <S'@SERVER,O@SERVER>)"


def _has_federated(t: Type) -> bool:
    return isinstance(t, FederatedType) or any(_has_federated(child) for child in t.children())


def _at(t: Type, placement: Any) -> bool:
    return isinstance(t, FederatedType) and t.placement == placement


def _describe(block: bb.ComputationBuildingBlock) -> str:
    text = str(block)
    return text if len(text) <= 100 else text[:97] + "..."


def get_map_reduce_form(comp: Computation) -> MapReduceForm:
    """Splits a round into server prepare, client work, aggregations and server update (see
    `MapReduceForm`).

    The round has type `(<S@SERVER,{D}@CLIENTS> -> <S'@SERVER,O@SERVER>)`. Server work before the
    aggregations may only lead to broadcasts, client work may only use client data and broadcast
    values, and nothing computed from an aggregate may be broadcast again. Raises ValueError naming
    the step that does not fit.
    """
    if not isinstance(comp, Computation):
        raise TypeError(
            f"get_map_reduce_form takes a Computation, got a {type(comp).__qualname__}."
        )
    fn_type = comp.type_signature
    parameter, result_type = fn_type.parameter, fn_type.result
    if not (
        isinstance(parameter, StructType)
        and len(parameter) == 2
        and _at(parameter[0], SERVER)
        and _at(parameter[1], CLIENTS)
    ):
        raise ValueError(
            f"MapReduce form needs a round of type {_ROUND_SHAPE}; the parameter of this "
            f"computation has type {parameter} (the computation has type {fn_type})."
        )
    if not (
        isinstance(result_type, StructType)
        and len(result_type) == 2
        and all(_at(t, SERVER) for t in result_type)
    ):
        raise ValueError(
            f"MapReduce form needs a round of type {_ROUND_SHAPE}; the result of this computation "
            f"has type {result_type}, not a pair of values at SERVER."
        )
    root = comp.building_block
    if not isinstance(root, bb.Lambda):
        raise ValueError(
            f"MapReduce form splits federated computations; {comp.name or 'this computation'} is a "
            f"compiled leaf of the {getattr(root, 'frontend', '?')!r} frontend."
        )
    state, data = fresh_name("state"), fresh_name("data")
    symbols, result = _round_steps(root, state, data)
    return _split(fn_type, state, data, symbols, result)


def _is_atom(block: bb.ComputationBuildingBlock) -> bool:
    """Blocks that compute nothing: names, constants, functions, structs and selections of these."""
    if isinstance(block, (bb.Struct, bb.Selection)):
        return all(_is_atom(child) for child in block.children())
    return isinstance(
        block,
        (
            bb.Reference,
            bb.Literal,
            bb.Placement,
            bb.Intrinsic,
            bb.CompiledComputation,
            bb.Lambda,
            bb.Data,
        ),
    )


def _atom_policy(
    value: bb.ComputationBuildingBlock, uses: _Uses, holder_depth: Callable[[], int]
) -> bool:
    # Atoms are substituted even where a reference has a wider type than the atom: every use
    # accepts the narrower type, and the split needs each step to see the operations its operands
    # come from.
    return _is_atom(value)


def _round_steps(
    root: bb.Lambda, state: str, data: str
) -> tuple[_Symbols, bb.ComputationBuildingBlock]:
    """The round's body as a flat list of calls whose operands are atoms (with unique names), and
    its result atom. Nested federated computations are inlined; `state` and `data` name the round's
    two parameters."""
    parameter_type = root.parameter_type
    assert isinstance(parameter_type, StructType) and root.parameter_name is not None
    names = parameter_type.names()
    parameter = bb.Struct(
        [
            (names[0], bb.Reference(state, parameter_type[0])),
            (names[1], bb.Reference(data, parameter_type[1])),
        ],
        parameter_type.python_container,
    )
    body = _replace(root.result, {root.parameter_name: _constant(parameter)}, {state, data})
    while True:
        body = _inline_atoms(body)
        symbols: _Symbols = []
        result = _to_atom(body, symbols, {state, data})
        if all(isinstance(value, bb.Call) for _, value in symbols):
            return symbols, result
        body = bb.Block(symbols, result)


def _inline_atoms(body: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    while True:
        previous = body
        body = bb.transform_postorder(body, lambda node: _reduce_call(node, _atom_policy))
        body = bb.transform_postorder(body, lambda node: _inline_block(node, _atom_policy))
        body = bb.transform_postorder(body, _simplify_selection)
        if body is previous:
            return body


def _flatten_scope(
    symbols: Sequence[tuple[str, bb.ComputationBuildingBlock]],
    result: bb.ComputationBuildingBlock,
    out: _Symbols,
    bound: set[str],
) -> bb.ComputationBuildingBlock:
    """Appends a scope's locals to `out` with their nested calls bound first, renaming names already
    in `bound`; returns the scope's result as an atom."""
    pending: _Symbols = list(symbols)
    for index in range(len(pending)):
        name, value = pending[index]
        if name in bound:
            renamed = fresh_name("v")
            tail, result, _ = _replace_in_scope(
                pending[index + 1 :], result, {name: _renaming(renamed)}, {renamed}
            )
            pending[index + 1 :] = tail
            name = renamed
        if isinstance(value, bb.Call):
            value = value.with_children([_to_atom(child, out, bound) for child in value.children()])
        else:
            value = _to_atom(value, out, bound)
        out.append((name, value))
        bound.add(name)
    return _to_atom(result, out, bound)


def _to_atom(
    block: bb.ComputationBuildingBlock, out: _Symbols, bound: set[str]
) -> bb.ComputationBuildingBlock:
    if isinstance(block, bb.Block):
        return _flatten_scope(block.locals, block.result, out, bound)
    if isinstance(block, bb.Call):
        call = block.with_children([_to_atom(child, out, bound) for child in block.children()])
        name = fresh_name("v")
        out.append((name, call))
        bound.add(name)
        return bb.Reference(name, call.type_signature)
    if isinstance(block, (bb.Struct, bb.Selection)):
        return block.with_children([_to_atom(child, out, bound) for child in block.children()])
    return block


def _unplaced_type(t: Type) -> Type:
    if isinstance(t, FederatedType):
        return t.member
    if isinstance(t, StructType) and _has_federated(t):
        return StructType(
            [(name, _unplaced_type(element)) for name, element in t.items()], t.python_container
        )
    return t


def _unplace(atom: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """The atom with its federated values replaced by their members; references keep their names."""
    if isinstance(atom, bb.Reference):
        t = _unplaced_type(atom.type_signature)
        return atom if t is atom.type_signature else bb.Reference(atom.name, t)
    if isinstance(atom, (bb.Struct, bb.Selection)):
        return atom.with_children([_unplace(child) for child in atom.children()])
    if _has_federated(atom.type_signature):
        raise ValueError(
            f"MapReduce form cannot take the placement off {_describe(atom)} of type "
            f"{atom.type_signature}."
        )
    return atom


def _operand(argument: bb.ComputationBuildingBlock, index: int) -> bb.ComputationBuildingBlock:
    if isinstance(argument, bb.Struct):
        return argument.elements[index][1]
    return bb.Selection(argument, index=index)


def _unplaced_step(
    uri: str, argument: bb.ComputationBuildingBlock | None
) -> bb.ComputationBuildingBlock:
    """What a federated operator computes at one place, on members instead of federated values."""
    assert argument is not None
    if uri in (i.FEDERATED_MAP, i.FEDERATED_MAP_ALL_EQUAL, i.FEDERATED_APPLY):
        return bb.Call(_operand(argument, 0), _unplace(_operand(argument, 1)))
    if uri in (i.FEDERATED_ZIP_AT_CLIENTS, i.FEDERATED_ZIP_AT_SERVER):
        return _unplace(argument)
    if uri in (i.FEDERATED_EVAL_AT_CLIENTS, i.FEDERATED_EVAL_AT_SERVER):
        return bb.Call(argument)
    return argument  # federated_value: the value itself


@dataclasses.dataclass
class _Step:
    name: str
    phase: _Phase
    unplaced: (
        bb.ComputationBuildingBlock | None
    )  # None for broadcasts and aggregations: inputs of a part


def _classify(name: str, value: bb.ComputationBuildingBlock, phases: dict[str, _Phase]) -> _Step:
    referenced = bb.free_references(value)
    unknown = referenced - phases.keys()
    if unknown:
        raise ValueError(
            f"MapReduce form: the step {name} = {_describe(value)} refers to {sorted(unknown)}, "
            "which the round does not bind."
        )
    inputs = {phases[n] for n in referenced}
    if isinstance(value, bb.Call) and isinstance(value.function, bb.Intrinsic):
        uri = value.function.uri
        if uri == i.FEDERATED_BROADCAST:
            if _Phase.UPDATE in inputs:
                raise ValueError(
                    f"MapReduce form: the broadcast {name} = {_describe(value)} sends a value "
                    "computed from an aggregate; a round in MapReduce form has one broadcast "
                    "stage, before its aggregations."
                )
            return _Step(name, _Phase.CLIENTS, None)
        if uri in _AGGREGATION_URIS or _is_plugin_aggregation(uri):
            return _Step(name, _Phase.UPDATE, None)
        if uri in _CLIENT_URIS:
            return _Step(name, _Phase.CLIENTS, _unplaced_step(uri, value.argument))
        if uri in _SERVER_URIS:
            phase = _Phase.UPDATE if _Phase.UPDATE in inputs else _Phase.PREPARE
            return _Step(name, phase, _unplaced_step(uri, value.argument))
        if not _has_federated(value.function.type_signature):
            return _Step(name, _Phase.UNPLACED, value)
        raise ValueError(
            f"MapReduce form: the intrinsic {uri} (step {name}) has no place in a round's prepare, "
            "broadcast, client work, aggregation or update steps (a plugin's intrinsic takes part "
            "when it is an aggregation of one operand at CLIENTS)."
        )
    if not _has_federated(value.type_signature) and inputs <= {_Phase.UNPLACED}:
        return _Step(name, _Phase.UNPLACED, value)
    raise ValueError(
        f"MapReduce form: the step {name} = {_describe(value)} of type {value.type_signature} is "
        "neither a federated operator nor a computation on unplaced values."
    )


def _part(
    description: str,
    parameter_name: str | None,
    parameter_type: Type | None,
    inputs: Sequence[tuple[str, bb.ComputationBuildingBlock]],
    candidates: _Symbols,
    result: bb.ComputationBuildingBlock,
) -> Computation:
    """A Lambda computing `result` from its parameter: `inputs` bind names to pieces of the
    parameter, and the candidate steps that `result` needs (transitively) are computed in order."""
    chosen, needed = _needed_steps(result, candidates)
    bindings: _Symbols = [(name, value) for name, value in inputs if name in needed]
    needed -= {name for name, _ in inputs}
    if parameter_name is not None:
        needed.discard(parameter_name)
    if needed:
        raise ValueError(
            f"MapReduce form: the {description} step needs {sorted(needed)}, which are not "
            f"computed {'at the clients' if description == 'work' else 'at the server'} from its "
            "inputs."
        )
    symbols = bindings + chosen
    body = bb.Block(symbols, result) if symbols else result
    return Computation(normalize(bb.Lambda(parameter_name, parameter_type, body)), description)


def _needed_steps(
    result: bb.ComputationBuildingBlock, candidates: _Symbols
) -> tuple[_Symbols, set[str]]:
    """The candidate steps `result` needs (transitively), in order, and the other names they and
    `result` refer to."""
    needed = set(bb.free_references(result))
    chosen: _Symbols = []
    for name, value in reversed(candidates):
        if name in needed:
            chosen.append((name, value))
            needed.discard(name)
            needed |= bb.free_references(value)
    chosen.reverse()
    return chosen, needed


def _closed(
    description: str, atom: bb.ComputationBuildingBlock, candidates: _Symbols
) -> Computation:
    """A computation of the function or value `atom` (a value becomes a no-argument function), with
    the unplaced steps it refers to computed inside."""
    fn_type = atom.type_signature
    if isinstance(fn_type, FunctionType):
        if not bb.free_references(atom):
            return Computation(atom, description)
        if fn_type.parameter is None:
            return _part(description, None, None, [], candidates, bb.Call(atom))
        parameter = fresh_name("x")
        call = bb.Call(atom, bb.Reference(parameter, fn_type.parameter))
        return _part(description, parameter, fn_type.parameter, [], candidates, call)
    return _part(description, None, None, [], candidates, atom)


def _split(
    fn_type: FunctionType,
    state: str,
    data: str,
    symbols: _Symbols,
    result: bb.ComputationBuildingBlock,
) -> MapReduceForm:
    phases = {state: _Phase.PREPARE, data: _Phase.CLIENTS}
    steps: list[_Step] = []
    broadcasts: _Symbols = []
    aggregations: _Symbols = []
    for name, value in symbols:
        step = _classify(name, value, phases)
        phases[name] = step.phase
        steps.append(step)
        if step.unplaced is None:
            (broadcasts if step.phase is _Phase.CLIENTS else aggregations).append((name, value))

    def candidates(*allowed: _Phase) -> _Symbols:
        return [
            (s.name, s.unplaced) for s in steps if s.phase in allowed and s.unplaced is not None
        ]

    # Only the aggregates that the update uses are computed, and only the broadcast values that
    # the clients' work for them uses are sent.
    update_result = _unplace(result)
    update_steps = candidates(_Phase.UNPLACED, _Phase.PREPARE, _Phase.UPDATE)
    _, used_by_update = _needed_steps(update_result, update_steps)
    aggregations = [(name, value) for name, value in aggregations if name in used_by_update]
    if not aggregations:
        raise ValueError(
            "MapReduce form: no aggregation step was found; the round's result must depend on "
            "client values aggregated at the server (federated_sum, federated_mean, "
            "federated_aggregate, a secure sum, ...)."
        )
    unplaced = candidates(_Phase.UNPLACED)
    parameter_type = fn_type.parameter
    assert isinstance(parameter_type, StructType)
    state_type = _unplaced_type(parameter_type[0])
    data_type = _unplaced_type(parameter_type[1])

    client_values: list[bb.ComputationBuildingBlock] = []
    descriptions: list[MapReduceAggregation] = []
    for _, value in aggregations:
        assert (
            isinstance(value, bb.Call)
            and isinstance(value.function, bb.Intrinsic)
            and value.argument is not None
        )
        descriptions.append(
            _describe_aggregation(value.function.uri, value.argument, client_values, unplaced)
        )
    client_steps = candidates(_Phase.UNPLACED, _Phase.CLIENTS)
    _, used_by_work = _needed_steps(bb.Struct(client_values), client_steps)
    broadcasts = [(name, value) for name, value in broadcasts if name in used_by_work]

    broadcast_values = []
    for _, value in broadcasts:
        assert isinstance(value, bb.Call) and value.argument is not None
        broadcast_values.append(_unplace(value.argument))
    prepare = _part(
        "prepare",
        state,
        state_type,
        [],
        candidates(_Phase.UNPLACED, _Phase.PREPARE),
        bb.Struct(broadcast_values),
    )
    broadcast_type = prepare.type_signature.result

    work_parameter = fresh_name("client_input")
    work_parameter_type = StructType([data_type, broadcast_type])
    work_input = bb.Reference(work_parameter, work_parameter_type)
    broadcast_input = bb.Selection(work_input, index=1)
    work = _part(
        "work",
        work_parameter,
        work_parameter_type,
        [(data, bb.Selection(work_input, index=0))]
        + [
            (name, bb.Selection(broadcast_input, index=k)) for k, (name, _) in enumerate(broadcasts)
        ],
        client_steps,
        bb.Struct(client_values),
    )

    aggregate_type = StructType([_unplaced_type(value.type_signature) for _, value in aggregations])
    update_parameter = fresh_name("server_input")
    update_parameter_type = StructType([state_type, aggregate_type])
    update_input = bb.Reference(update_parameter, update_parameter_type)
    aggregate_input = bb.Selection(update_input, index=1)
    update = _part(
        "update",
        update_parameter,
        update_parameter_type,
        [(state, bb.Selection(update_input, index=0))]
        + [
            (name, bb.Selection(aggregate_input, index=k))
            for k, (name, _) in enumerate(aggregations)
        ],
        update_steps,
        update_result,
    )
    return MapReduceForm(fn_type, prepare, work, tuple(descriptions), update)


def _describe_aggregation(
    uri: str,
    argument: bb.ComputationBuildingBlock,
    client_values: list[bb.ComputationBuildingBlock],
    unplaced: _Symbols,
) -> MapReduceAggregation:
    """Describes one aggregation, appending the client values it consumes to `client_values`."""

    def consume(value: bb.ComputationBuildingBlock) -> int:
        unplaced_value = _unplace(value)
        # A client value that several aggregations consume is sent once.
        key = _atom_key(unplaced_value)
        for index, known in enumerate(client_values):
            if key is not None and _atom_key(known) == key:
                return index
        client_values.append(unplaced_value)
        return len(client_values) - 1

    if uri == i.FEDERATED_WEIGHTED_MEAN:
        value_index = consume(_operand(argument, 0))
        return MapReduceAggregation(uri, value_index, weight_index=consume(_operand(argument, 1)))
    if uri == i.FEDERATED_AGGREGATE:
        return MapReduceAggregation(
            uri,
            consume(_operand(argument, 0)),
            zero=_closed(f"{uri}_zero", _operand(argument, 1), unplaced),
            accumulate=_closed(f"{uri}_accumulate", _operand(argument, 2), unplaced),
            merge=_closed(f"{uri}_merge", _operand(argument, 3), unplaced),
            report=_closed(f"{uri}_report", _operand(argument, 4), unplaced),
        )
    if uri in _SECURE_URIS:
        value_index = consume(_operand(argument, 0))
        return MapReduceAggregation(
            uri, value_index, bound=_closed(f"{uri}_bound", _operand(argument, 1), unplaced)
        )
    return MapReduceAggregation(uri, consume(argument))


def _atom_key(atom: bb.ComputationBuildingBlock) -> tuple[Any, ...] | None:
    """An identity for a reference or a chain of selections from one, None for other atoms."""
    path: list[int] = []
    while isinstance(atom, bb.Selection):
        path.append(atom.index)
        atom = atom.source
    return (atom.name, *reversed(path)) if isinstance(atom, bb.Reference) else None


_SIMPLE_AGGREGATIONS: dict[str, Callable[[Any], Any]] = {
    i.FEDERATED_SUM: ops.federated_sum,
    i.FEDERATED_MEAN: ops.federated_mean,
    i.FEDERATED_MIN: ops.federated_min,
    i.FEDERATED_MAX: ops.federated_max,
}
_SECURE_AGGREGATIONS: dict[str, Callable[[Any, Any], Any]] = {
    i.FEDERATED_SECURE_SUM: ops.federated_secure_sum,
    i.FEDERATED_SECURE_SUM_BITWIDTH: ops.federated_secure_sum_bitwidth,
    i.FEDERATED_SECURE_MODULAR_SUM: ops.federated_secure_modular_sum,
}


def _aggregate(aggregation: MapReduceAggregation, client_outputs: Any) -> Any:
    value = client_outputs[aggregation.value_index]
    uri = aggregation.uri
    if uri in _SIMPLE_AGGREGATIONS:
        return _SIMPLE_AGGREGATIONS[uri](value)
    if uri == i.FEDERATED_WEIGHTED_MEAN:
        return ops.federated_mean(value, client_outputs[aggregation.weight_index])
    if uri == i.FEDERATED_AGGREGATE:
        assert aggregation.zero is not None
        return ops.federated_aggregate(
            value, aggregation.zero(), aggregation.accumulate, aggregation.merge, aggregation.report
        )
    if uri in _SECURE_AGGREGATIONS:
        assert aggregation.bound is not None
        return _SECURE_AGGREGATIONS[uri](value, aggregation.bound())
    if _is_plugin_aggregation(uri):
        return intrinsic_operator(uri)(value)
    raise ValueError(f"Unknown aggregation {uri!r}: expected one of {sorted(_AGGREGATION_URIS)}.")


def _is_plugin_aggregation(uri: str) -> bool:
    """A plugin's intrinsic that aggregates one value at CLIENTS into a value at SERVER: the split runs it
    like `federated_sum`, on the clients' outputs."""
    if uri in i.BUILTINS:
        return False
    try:
        definition = i.lookup(uri)
    except LookupError:
        return False
    parameter = definition.type_signature.parameter
    return (
        definition.kind is i.IntrinsicKind.AGGREGATION
        and isinstance(parameter, FederatedType)
        and parameter.placement == CLIENTS
    )


def _aggregation_computation(form: MapReduceForm) -> Computation:
    """`({C}@CLIENTS -> <A_1@SERVER, ...>)`: all of the form's aggregations, as one federated
    computation."""

    def aggregations(client_outputs: Any) -> list[Any]:
        return [_aggregate(aggregation, client_outputs) for aggregation in form.aggregations]

    return federated_computation(
        aggregations, FederatedType(form.work.type_signature.result, CLIENTS)
    )


def run_map_reduce_form(
    form: MapReduceForm, state: Any, client_data: Sequence[Any]
) -> tuple[Any, Any]:
    """Runs a round from its parts, in the current execution context: `prepare` once, `work` once
    per client (in list order), the aggregations, then `update`. Returns `(new_state, output)`."""
    if not isinstance(form, MapReduceForm):
        raise TypeError(
            f"run_map_reduce_form takes a MapReduceForm, got a {type(form).__qualname__}."
        )
    broadcast = form.prepare(state)
    client_outputs = [form.work(data, broadcast) for data in client_data]
    aggregates = _aggregation_computation(form)(client_outputs)
    result = form.update(state, aggregates)
    items = container_items(result)
    assert items is not None, "update returns a struct of two elements"
    (_, new_state), (_, output) = items[0]
    return new_state, output
