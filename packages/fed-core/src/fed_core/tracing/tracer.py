"""Tracing: turning a Python function on symbolic values into the IR of a federated computation."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from fed_core._errors import FederatedTypeError
from fed_core.execution.context import context_scope, get_context
from fed_core.execution.values import NO_ARGUMENT
from fed_core.intrinsics import definitions
from fed_core.ir import build
from fed_core.ir import building_blocks as bb
from fed_core.ir.build import fresh_name
from fed_core.tracing._misuse import operation_error
from fed_core.tracing.computation import Computation, PolymorphicComputation, pack_arguments
from fed_types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    Placement,
    StructType,
    TensorType,
    Type,
    container_items,
    infer_type,
    to_type,
)


class TracingContext:
    """The context while a federated computation is traced: calls become IR, bound as block locals so that
    each call runs once however often its result is used."""

    def __init__(self) -> None:
        self.locals: list[tuple[str, bb.ComputationBuildingBlock]] = []

    def bind(self, block: bb.ComputationBuildingBlock) -> Value:
        name = fresh_name("v")
        self.locals.append((name, block))
        return Value(bb.Reference(name, block.type_signature))

    def invoke(self, computation: Computation, argument: Any) -> Value:
        fn_type = computation.type_signature
        if argument is NO_ARGUMENT:
            return self.bind(bb.Call(computation.building_block))
        argument_block = to_building_block(argument, fn_type.parameter)
        return self.bind(
            build.call(
                computation.building_block,
                argument_block,
                f"calling {computation.name or 'a computation'} of type {fn_type}",
            )
        )


def current_tracing_context(operator: str) -> TracingContext:
    context = get_context()
    if not isinstance(context, TracingContext):
        raise RuntimeError(
            f"{operator} can only be used inside a federated computation, while it is being traced "
            f"(decorate the function with @federated_computation)."
        )
    return context


class Value:
    """A symbolic value while a federated computation is traced.

    Structs support `v[0]`, `v['name']`, `v.name`, `len(v)` and unpacking; a struct placed at CLIENTS or
    SERVER supports the same selections, applied member-wise; function values can be called.
    """

    __slots__ = ("_block",)
    _block: bb.ComputationBuildingBlock

    def __init__(self, block: bb.ComputationBuildingBlock):
        object.__setattr__(self, "_block", block)

    @property
    def type_signature(self) -> Type:
        return self._block.type_signature

    @property
    def building_block(self) -> bb.ComputationBuildingBlock:
        return self._block

    def _select(self, key: int | str) -> Value:
        t = self._block.type_signature
        if isinstance(t, StructType):
            return Value(_selection(self._block, key))
        if isinstance(t, FederatedType) and isinstance(t.member, StructType):
            member = t.member
            parameter = fresh_name("x")
            selector = bb.Lambda(
                parameter, member, _selection(bb.Reference(parameter, member), key)
            )
            return map_block(selector, self, "selection")
        raise AttributeError(f"Cannot select {key!r} from a value of type {t}: it is not a struct.")

    def __getattr__(self, name: str) -> Value:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._select(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Symbolic values are immutable.")

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        if isinstance(key, int) and key < 0:
            key += len(self)
        return self._select(key)

    def __len__(self) -> int:
        t = self._block.type_signature
        if isinstance(t, FederatedType):
            t = t.member
        if not isinstance(t, StructType):
            raise TypeError(f"len() needs a struct, got a value of type {self.type_signature}.")
        return len(t)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __call__(self, *args: Any, **kwargs: Any) -> Value:
        t = self._block.type_signature
        if not isinstance(t, FunctionType):
            raise TypeError(f"Only functions can be called; this value has type {t}.")
        argument = pack_arguments(t, args, kwargs)
        context = current_tracing_context("Calling a function value")
        if argument is NO_ARGUMENT:
            return context.bind(bb.Call(self._block))
        argument_block = to_building_block(argument, t.parameter)
        return context.bind(
            build.call(self._block, argument_block, f"calling a function of type {t}")
        )

    def __bool__(self) -> bool:
        raise TypeError(
            f"A symbolic value of type {self.type_signature} has no truth value while tracing: Python control "
            f"flow cannot depend on it. Express the choice inside a frontend computation instead."
        )

    def __repr__(self) -> str:
        return f"<Value {self.type_signature}: {self._block}>"

    # Arithmetic, comparisons and tensor conversions are the work of frontends' computations: each
    # raises an error that says so (see `_misuse`). Identity still makes values usable as dict keys.
    __hash__ = object.__hash__

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        # numpy and TensorFlow (whose tensor conversion tries this first) ask for an array.
        raise operation_error(self.type_signature)

    def __array_ufunc__(self, ufunc: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        raise operation_error(self.type_signature, f"np.{ufunc.__name__}")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise operation_error(self.type_signature, f"np.{func.__name__}")


def _refuse(symbol: str) -> Callable[..., Any]:
    def refuse(self: Value, *args: Any) -> Any:
        raise operation_error(self.type_signature, symbol)

    return refuse


for _names, _symbol in [
    (("__add__", "__radd__"), "+"),
    (("__sub__", "__rsub__"), "-"),
    (("__mul__", "__rmul__"), "*"),
    (("__truediv__", "__rtruediv__"), "/"),
    (("__floordiv__", "__rfloordiv__"), "//"),
    (("__mod__", "__rmod__"), "%"),
    (("__divmod__", "__rdivmod__"), "divmod()"),
    (("__pow__", "__rpow__"), "**"),
    (("__matmul__", "__rmatmul__"), "@"),
    (("__and__", "__rand__"), "&"),
    (("__or__", "__ror__"), "|"),
    (("__xor__", "__rxor__"), "^"),
    (("__lshift__", "__rlshift__"), "<<"),
    (("__rshift__", "__rrshift__"), ">>"),
    (("__lt__",), "<"),
    (("__le__",), "<="),
    (("__gt__",), ">"),
    (("__ge__",), ">="),
    (("__eq__",), "=="),
    (("__ne__",), "!="),
    (("__neg__",), "unary -"),
    (("__pos__",), "unary +"),
    (("__invert__",), "~"),
    (("__abs__",), "abs()"),
    (("__round__",), "round()"),
    (("__float__",), "float()"),
    (("__int__",), "int()"),
    (("__complex__",), "complex()"),
    (("__index__",), "operator.index()"),
]:
    for _name in _names:
        setattr(Value, _name, _refuse(_symbol))
del _names, _symbol, _name


def _selection(block: bb.ComputationBuildingBlock, key: int | str) -> bb.Selection:
    struct = block.type_signature
    assert isinstance(struct, StructType)
    if isinstance(key, str):
        if key not in struct.names():
            raise AttributeError(f"The struct {struct} has no element named {key!r}.")
        return bb.Selection(block, name=key)
    if not 0 <= key < len(struct):
        raise IndexError(
            f"Index {key} is out of range for the struct {struct} of {len(struct)} elements."
        )
    return bb.Selection(block, index=key)


def to_building_block(value: Any, expected: Type | None = None) -> bb.ComputationBuildingBlock:
    """Converts what a traced function returns or passes on (symbolic values, computations, Python
    containers of them, constants, placements) to a building block; `expected` guides constants and plain
    Python functions."""
    if isinstance(value, Value):
        return value.building_block
    if isinstance(value, Computation):
        return value.building_block
    if isinstance(value, PolymorphicComputation):
        if not isinstance(expected, FunctionType):
            raise TypeError(
                f"A computation without declared types ({value.__name__}) can only be passed where a function "
                f"of known type is expected; expected here: {expected}."
            )
        return value.concrete(expected.parameter).building_block
    if isinstance(value, Placement):
        return bb.Placement(value)
    if isinstance(value, bb.ComputationBuildingBlock):
        return value
    items = container_items(value)
    if items is not None:
        pairs, container = items
        expected_elements: list[Type | None] = [None] * len(pairs)
        if isinstance(expected, StructType) and len(expected) == len(pairs):
            expected_elements = list(expected)
        elements = [
            (name, to_building_block(v, t)) for (name, v), t in zip(pairs, expected_elements)
        ]
        return bb.Struct(elements, None if container is type(None) else container)
    if callable(value) and (inspect.isfunction(value) or isinstance(value, functools.partial)):
        if not isinstance(expected, FunctionType):
            raise TypeError(
                f"A Python function ({getattr(value, '__name__', value)}) can only be used where a function of "
                f"known type is expected; expected here: {expected}."
            )
        return trace(value, expected.parameter, spread=False).building_block
    return literal(value, expected)


def literal(value: Any, expected: Type | None = None) -> bb.Literal:
    """A constant tensor block; Python scalars take the dtype of `expected` when it is a tensor type."""
    if isinstance(expected, TensorType) and isinstance(value, (bool, int, float, str, list)):
        array = np.asarray(value, dtype=expected.dtype)
        if isinstance(value, float) and expected.dtype.kind in "iub":
            raise TypeError(f"Cannot use the float {value!r} where {expected} is expected.")
        return bb.Literal(array, TensorType(array.dtype, array.shape))
    try:
        value_type = infer_type(value)
    except TypeError:
        raise TypeError(
            f"Cannot use {value!r} (of Python type {type(value).__name__}) in a federated computation: expected a "
            f"symbolic value, a computation, a placement, a constant or a container of these."
        ) from None
    if not isinstance(value_type, TensorType):
        raise TypeError(f"Expected a tensor constant, got {value!r} of type {value_type}.")
    array = np.asarray(value, dtype=value_type.dtype)
    return bb.Literal(array, value_type)


def trace(fn: Callable[..., Any], parameter_type: Type | None, spread: bool) -> Computation:
    """Traces `fn` on a symbolic parameter of `parameter_type` (None for no parameter); with `spread`, the
    struct parameter's elements are passed as separate arguments."""
    context = TracingContext()
    parameter_name = fresh_name("arg") if parameter_type is not None else None
    with context_scope(context):
        if parameter_type is None:
            result = fn()
        else:
            parameter = Value(bb.Reference(parameter_name, parameter_type))  # type: ignore[arg-type]
            if spread:
                result = fn(*[parameter[i] for i in range(len(parameter_type))])  # type: ignore[arg-type]
            else:
                result = fn(parameter)
        if result is None:
            raise TypeError(
                f"The federated computation {getattr(fn, '__name__', fn)} returned None: a computation must "
                f"return a value."
            )
        result_block = to_building_block(result)
    body = build.let(context.locals, result_block)
    return Computation(bb.Lambda(parameter_name, parameter_type, body), getattr(fn, "__name__", ""))


def _parameter_type(
    fn: Callable[..., Any], type_specs: tuple[Any, ...]
) -> tuple[Type | None, bool]:
    """The parameter type of `fn` given the decorator's type specs, and whether to spread a struct."""
    names = list(inspect.signature(fn).parameters)
    if not names:
        if type_specs:
            raise TypeError(
                f"{fn.__name__} takes no parameters, but types were given: {type_specs!r}."
            )
        return None, False
    if len(type_specs) == 1:
        single = to_type(type_specs[0])
        if len(names) == 1:
            return single, False
        if isinstance(single, StructType) and len(single) == len(names):
            if all(n is not None for n in single.names()):
                return single, True
            return StructType(list(zip(names, single)), single.python_container), True
        raise TypeError(
            f"{fn.__name__} has {len(names)} parameters ({', '.join(names)}), but the type {single} does not "
            f"have that many elements."
        )
    if len(type_specs) != len(names):
        raise TypeError(
            f"{fn.__name__} has {len(names)} parameters ({', '.join(names)}), but {len(type_specs)} types were given."
        )
    return StructType([(n, to_type(s)) for n, s in zip(names, type_specs)]), True


def is_function(value: Any) -> bool:
    return (
        inspect.isfunction(value) or inspect.ismethod(value) or isinstance(value, functools.partial)
    )


def make_decorator(
    build: Callable[[Callable[..., Any], Type | None, bool], Computation],
) -> Callable[..., Any]:
    """A decorator with TFF's three forms (`@d`, `@d(type, ...)`, `d(fn, type, ...)`) around `build`."""

    def wrap(fn: Callable[..., Any], type_specs: tuple[Any, ...]) -> Any:
        if not type_specs and inspect.signature(fn).parameters:
            num = len(inspect.signature(fn).parameters)
            return functools.update_wrapper(
                PolymorphicComputation(
                    fn, lambda t: build(fn, t, num > 1 and isinstance(t, StructType))
                ),
                fn,
                updated=(),
            )
        parameter_type, spread = _parameter_type(fn, type_specs)
        computation = build(fn, parameter_type, spread)
        # Kept so that a one-parameter computation can be called by keyword, as the function could.
        if type(computation) is not Computation:
            return computation
        names = list(inspect.signature(fn).parameters)
        return Computation(computation.building_block, computation.name, names)

    def decorator(*args: Any) -> Any:
        if args and is_function(args[0]):
            return wrap(args[0], args[1:])
        for spec in args:
            to_type(spec)  # a bad type spec is reported where it is written, not when applied
        return lambda fn: wrap(fn, args)

    return decorator


federated_computation = make_decorator(trace)
federated_computation.__doc__ = """Defines a federated computation from a Python function.

    `@federated_computation` (polymorphic: traced at first call for each argument type),
    `@federated_computation(type_spec, ...)` (one type per parameter, traced now), or
    `federated_computation(fn, type_spec, ...)`. The function is called once on symbolic values and its
    federated operators are recorded as IR; type errors are raised then, naming your source line.
    """


# ---- intrinsic calls: the helpers every operator uses, and the operator of a plugin's intrinsic


def operand(value: Any, operator: str, expected: Type | None = None) -> bb.ComputationBuildingBlock:
    """The block of an operator's operand; FederatedTypeError when it cannot be one."""
    current_tracing_context(operator)
    try:
        return to_building_block(value, expected)
    except (TypeError, ValueError) as e:
        raise FederatedTypeError(
            operator, f"a value{f' of type {expected}' if expected else ''}", f"{value!r} ({e})"
        ) from None


def federated_operand(
    block: bb.ComputationBuildingBlock, operator: str, placement: Placement | None, what: str
) -> FederatedType:
    """The type of a federated operand (at `placement`, when given); FederatedTypeError otherwise."""
    t = block.type_signature
    if not isinstance(t, FederatedType) or (placement is not None and t.placement != placement):
        where = f"@{placement}" if placement is not None else "@CLIENTS or @SERVER"
        raise FederatedTypeError(operator, f"{what} placed {where}", f"a value of type {t}")
    return t


def placements_of_federated_struct(t: Type) -> set[Placement] | None:
    """The placements of a non-empty (nested) struct whose leaves are all federated values, or None
    for any other type."""
    if not isinstance(t, StructType) or len(t) == 0:
        return None
    placements: set[Placement] = set()
    for element in t:
        found = (
            {element.placement}
            if isinstance(element, FederatedType)
            else placements_of_federated_struct(element)
        )
        if found is None:
            return None
        placements |= found
    return placements


def zip_block(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """The `federated_zip` of a (nested) struct of federated values at one placement, nested
    structs first: `<a={A}@CLIENTS,b=<{B}@CLIENTS>>` becomes `{<a=A,b=<B>>}@CLIENTS`."""
    t = block.type_signature
    assert isinstance(t, StructType)
    if not all(isinstance(element, FederatedType) for element in t):
        if isinstance(block, bb.Struct):
            parts = list(block.elements)
        else:
            parts = [(name, bb.Selection(block, index=k)) for k, (name, _) in enumerate(t.items())]
        zipped = [
            (name, zip_block(part) if isinstance(part.type_signature, StructType) else part)
            for name, part in parts
        ]
        block = bb.Struct(zipped, t.python_container)
        t = block.type_signature
    (placement,) = {element.placement for element in t}  # type: ignore[attr-defined]
    at_clients = placement == CLIENTS
    uri = (
        definitions.FEDERATED_ZIP_AT_CLIENTS if at_clients else definitions.FEDERATED_ZIP_AT_SERVER
    )
    result_rule = definitions.BUILTINS[uri].result_rule  # the zip's result type, defined once
    assert result_rule is not None
    return call_intrinsic(uri, t, result_rule(t), block).building_block


def zipped_if_federated(block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
    """`block`, zipped if it is a struct of federated values at one placement.

    As in TFF, such a struct (a Python tuple, list or dict of federated values, or a traced
    struct, nested or not) stands for the federated struct `federated_zip` makes of it wherever a
    federated value is expected: every operator reads its federated operands through this.
    """
    placements = placements_of_federated_struct(block.type_signature)
    if placements is None or len(placements) != 1:
        return block
    return zip_block(block)


def call_intrinsic(
    uri: str,
    parameter_type: Type | None,
    result_type: Type,
    argument: bb.ComputationBuildingBlock | None,
) -> Value:
    """Records a call of the intrinsic `uri` at a concrete type, checked against its definition."""
    context = current_tracing_context(uri)
    definitions.lookup(uri).check(FunctionType(parameter_type, result_type))
    return context.bind(build.intrinsic_call(uri, parameter_type, result_type, argument))


def map_block(
    fn_block: bb.ComputationBuildingBlock, value: Any, operator: str = "federated_map"
) -> Value:
    """`federated_map` of an already-built function block (used for member-wise selections and sequences)."""
    value_block = operand(value, operator)
    t = federated_operand(value_block, operator, None, "a value")
    fn_type = fn_block.type_signature
    assert isinstance(fn_type, FunctionType)
    if fn_type.parameter is None or not fn_type.parameter.is_assignable_from(t.member):
        raise FederatedTypeError(
            operator,
            f"a function accepting the member type {t.member}",
            f"a function of type {fn_type}",
        )
    argument = build.operands(fn_block, value_block)
    if t.placement == SERVER:
        result = FederatedType(fn_type.result, SERVER)
        return call_intrinsic(
            definitions.FEDERATED_APPLY, argument.type_signature, result, argument
        )
    if t.all_equal:
        result = FederatedType(fn_type.result, CLIENTS, all_equal=True)
        return call_intrinsic(
            definitions.FEDERATED_MAP_ALL_EQUAL, argument.type_signature, result, argument
        )
    result = FederatedType(fn_type.result, CLIENTS)
    return call_intrinsic(definitions.FEDERATED_MAP, argument.type_signature, result, argument)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def intrinsic_operator(uri: str) -> Callable[..., Value]:
    """The Python function users call, inside a federated computation, to use the intrinsic `uri`.

    It takes one operand per element of the intrinsic's parameter struct (or one operand), converts them
    (Python functions and polymorphic computations are traced for the parameter type the other operands
    imply), checks them against the definition's type signature and records the call. This is how a
    plugin's intrinsic is called: `allreduce = fed_core.framework.intrinsic_operator("my.allreduce")`.
    """
    definition = definitions.lookup(uri)  # fails early for an unknown intrinsic
    pattern = definition.type_signature.parameter
    arity = len(pattern) if isinstance(pattern, StructType) else (0 if pattern is None else 1)
    operator = definition.operator

    def call(*values: Any) -> Value:
        current_tracing_context(operator)
        if len(values) != arity:
            wanted = "no operands" if arity == 0 else f"{arity} operand(s) of types {pattern}"
            raise FederatedTypeError(operator, wanted, f"{len(values)} operand(s)")
        patterns = list(pattern.items()) if isinstance(pattern, StructType) else [(None, pattern)]
        blocks: list[bb.ComputationBuildingBlock | None] = [None] * arity
        deferred = []
        for k, (value, (_, p)) in enumerate(zip(values, patterns)):
            traced = is_function(value) or isinstance(value, PolymorphicComputation)
            if traced and not isinstance(p, FunctionType):
                raise FederatedTypeError(
                    operator, f"operand {k} of type {p}", f"the function {_name_of(value)}"
                )
            if traced:
                deferred.append(k)
                continue
            concrete = None if p is None or definitions.abstract_labels(p) else p
            blocks[k] = operand(value, operator, concrete)
            if isinstance(p, FederatedType):
                blocks[k] = zipped_if_federated(blocks[k])  # type: ignore[arg-type]
        known = [b.type_signature if b is not None else p for b, (_, p) in zip(blocks, patterns)]
        bindings = definition.bindings_for(
            StructType(known) if isinstance(pattern, StructType) else (known[0] if known else None)
        )
        for k in deferred:
            p = patterns[k][1]
            assert isinstance(p, FunctionType)
            parameter = (
                None if p.parameter is None else definitions.substitute_known(p.parameter, bindings)
            )
            if parameter is not None and definitions.abstract_labels(parameter):
                raise FederatedTypeError(
                    operator,
                    f"operand {k} a function of known parameter type ({p})",
                    "a Python function whose parameter type the other operands do not determine; pass a "
                    "computation with declared types",
                )
            try:
                blocks[k] = to_building_block(values[k], FunctionType(parameter, p.result))
            except TypeError as error:
                raise FederatedTypeError(
                    operator,
                    f"operand {k} a function accepting {parameter}",
                    f"the function {_name_of(values[k])}, which fails on it ({error})",
                ) from None
        argument: bb.ComputationBuildingBlock | None
        if pattern is None:
            argument = None
            parameter_type = None
        elif isinstance(pattern, StructType):
            # The operands keep the names the signature gives them, so implementations can select by name.
            argument = bb.Struct([(name, block) for (name, _), block in zip(patterns, blocks)])  # type: ignore[misc]
            parameter_type = argument.type_signature
        else:
            argument = blocks[0]
            parameter_type = argument.type_signature  # type: ignore[union-attr]
        result = definition.result_type(parameter_type)
        return current_tracing_context(operator).bind(
            build.intrinsic_call(uri, parameter_type, result, argument)
        )

    call.__name__ = call.__qualname__ = (definition.name or uri).replace(".", "_")
    call.__doc__ = definition.doc or f"The intrinsic {uri}: {definition.type_signature}."
    return call
