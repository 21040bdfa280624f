"""One definition per intrinsic: the single source that tracing, type checking, compiler passes,
serialization and executors read.

An `IntrinsicDefinition` holds an intrinsic's URI (its stable name in the IR and in serialized
computations), the Python name users call it by, its type signature with abstract types (`T`, `U`),
its kind (where its operands and result live, which the compiler's MapReduce split reads), and its
local implementation. fed's own intrinsics are in `BUILTINS`; a plugin adds its own through the
`fed_register_intrinsics` hook, and `lookup` finds both.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any

from fed_core import plugins
from fed_core._errors import FederatedTypeError
from fed_core.intrinsics import local
from fed_types import (
    CLIENTS,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    is_structure_of,
    parse_type,
)

# URIs of fed's intrinsics: stable names used in the IR, in serialized computations and by executors.
FEDERATED_AGGREGATE = "federated_aggregate"
FEDERATED_APPLY = "federated_apply"
FEDERATED_BROADCAST = "federated_broadcast"
FEDERATED_EVAL_AT_CLIENTS = "federated_eval_at_clients"
FEDERATED_EVAL_AT_SERVER = "federated_eval_at_server"
FEDERATED_MAP = "federated_map"
FEDERATED_MAP_ALL_EQUAL = "federated_map_all_equal"
FEDERATED_MEAN = "federated_mean"
FEDERATED_WEIGHTED_MEAN = "federated_weighted_mean"
FEDERATED_MIN = "federated_min"
FEDERATED_MAX = "federated_max"
FEDERATED_SUM = "federated_sum"
FEDERATED_VALUE_AT_CLIENTS = "federated_value_at_clients"
FEDERATED_VALUE_AT_SERVER = "federated_value_at_server"
FEDERATED_ZIP_AT_CLIENTS = "federated_zip_at_clients"
FEDERATED_ZIP_AT_SERVER = "federated_zip_at_server"
FEDERATED_SELECT = "federated_select"
FEDERATED_SECURE_SUM = "federated_secure_sum"
FEDERATED_SECURE_SUM_BITWIDTH = "federated_secure_sum_bitwidth"
FEDERATED_SECURE_MODULAR_SUM = "federated_secure_modular_sum"
SEQUENCE_MAP = "sequence_map"
SEQUENCE_REDUCE = "sequence_reduce"
SEQUENCE_SUM = "sequence_sum"


class IntrinsicKind(enum.Enum):
    """Where an intrinsic's work happens, as the compiler's MapReduce split sees it."""

    AGGREGATION = "aggregation"
    """Takes values at CLIENTS, returns one value at SERVER (`federated_sum`, `federated_aggregate`)."""
    BROADCAST = "broadcast"
    """Takes a value at SERVER, returns it at CLIENTS."""
    CLIENTS = "clients"
    """Works on or produces values at CLIENTS, one client at a time (`federated_map`)."""
    SERVER = "server"
    """Works on or produces values at SERVER (`federated_apply`)."""
    UNPLACED = "unplaced"
    """Works on values that are not federated (`sequence_sum`), wherever they are."""


Implementation = Callable[[Any, FunctionType, Any], Any]
"""`implementation(state, fn_type, argument)`: runs the intrinsic on the local executor. `state` is the
execution's `fed_core.execution.ExecutionState`, `fn_type` the concrete type the intrinsic is called at,
and `argument` its operand in executor form (a `fed_types.Struct` of operands where there are several)."""


@dataclasses.dataclass(frozen=True)
class IntrinsicDefinition:
    """An intrinsic: its URI, type signature (abstract types such as `T` stand for any type, the same
    one wherever they occur), kind and local implementation.

    `name` is the Python name users call it by (None for variants that only the built-in operators
    produce, such as `federated_map_all_equal`). `constraint(fn_type)` returns what is wrong with a
    concrete type that matches the signature but is still not allowed (say, a sum of strings), or None.
    """

    uri: str
    type_signature: FunctionType
    kind: IntrinsicKind
    implementation: Implementation
    name: str | None = None
    constraint: Callable[[FunctionType], str | None] | None = None
    doc: str = ""
    result_rule: Callable[[Type | None], Type] | None = None
    """The result type for a concrete parameter type, where the signature cannot say it (`federated_zip`)."""

    def __post_init__(self) -> None:
        if isinstance(self.type_signature, str):
            object.__setattr__(self, "type_signature", parse_type(self.type_signature))
        if not isinstance(self.uri, str) or not self.uri:
            raise TypeError(f"An intrinsic's uri must be a non-empty str, got {self.uri!r}.")
        if not isinstance(self.type_signature, FunctionType):
            raise TypeError(
                f"The intrinsic {self.uri} needs a function type signature, got {self.type_signature}."
            )
        if not isinstance(self.kind, IntrinsicKind):
            raise TypeError(
                f"The intrinsic {self.uri} needs a kind among {[k.name for k in IntrinsicKind]}, "
                f"got {self.kind!r}."
            )
        if not callable(self.implementation):
            raise TypeError(
                f"The implementation of the intrinsic {self.uri} must be callable, got "
                f"{self.implementation!r}."
            )
        parameter_labels = _labels(self.type_signature.parameter)
        unbound = _labels(self.type_signature.result) - parameter_labels
        if unbound and self.result_rule is None:
            raise TypeError(
                f"The result type of the intrinsic {self.uri} uses {sorted(unbound)}, which its parameter "
                f"type {self.type_signature.parameter} does not: the result could not be inferred."
            )

    @property
    def operator(self) -> str:
        """The name errors show: the Python name, else the URI."""
        return self.name or self.uri

    def check(self, fn_type: FunctionType) -> None:
        """Raises FederatedTypeError unless `fn_type` is a concrete type this intrinsic may be called at."""
        bindings: dict[str, Type] = {}
        pattern = self.type_signature
        problem = _unify(pattern.parameter, fn_type.parameter, bindings, "the operands") or _unify(
            pattern.result, fn_type.result, bindings, "the result"
        )
        if problem is None and self.constraint is not None:
            problem = self.constraint(fn_type)
        if problem is not None:
            raise FederatedTypeError(
                self.operator,
                f"operands of type {pattern.parameter}",
                f"{fn_type.parameter} ({problem})",
            )

    def result_type(self, parameter_type: Type | None) -> Type:
        """The result type of a call on operands of `parameter_type`; FederatedTypeError if they do not fit."""
        bindings: dict[str, Type] = {}
        problem = _unify(self.type_signature.parameter, parameter_type, bindings, "the operands")
        if problem is not None:
            raise FederatedTypeError(
                self.operator,
                f"operands of type {self.type_signature.parameter}",
                f"{parameter_type} ({problem})",
            )
        if self.result_rule is not None:
            result = self.result_rule(parameter_type)
        else:
            result = _substitute(self.type_signature.result, bindings)
        self.check(FunctionType(parameter_type, result))
        return result

    def bindings_for(self, parameter_type: Type | None) -> dict[str, Type]:
        """The abstract types bound by matching as much of `parameter_type` as is known (no error)."""
        bindings: dict[str, Type] = {}
        _unify(self.type_signature.parameter, parameter_type, bindings, "the operands")
        return bindings


def abstract_labels(t: Type | None) -> set[str]:
    """The labels of the abstract types in `t`."""
    return _labels(t)


def _labels(t: Type | None) -> set[str]:
    if t is None:
        return set()
    if isinstance(t, AbstractType):
        return {t.label}
    out: set[str] = set()
    for child in t.children():
        out |= _labels(child)
    return out


def _unify(
    pattern: Type | None, given: Type | None, bindings: dict[str, Type], where: str
) -> str | None:
    """Matches `given` against `pattern`, binding abstract types; returns what does not fit, or None."""
    if pattern is None or given is None:
        return (
            None
            if pattern is None and given is None
            else f"{where}: expected {pattern}, given {given}"
        )
    if isinstance(given, AbstractType):
        return None  # a part not known yet (an operand whose type comes from another one)
    if isinstance(pattern, AbstractType):
        bound = bindings.get(pattern.label)
        if bound is None:
            bindings[pattern.label] = given
            return None
        if bound.is_assignable_from(given) or given.is_assignable_from(bound):
            return None
        return f"{where}: {pattern.label} is {bound} in one place and {given} in another"
    mismatch = f"{where}: expected {pattern}, given {given}"
    if isinstance(pattern, TensorType):
        return (
            None
            if isinstance(given, TensorType) and pattern.is_assignable_from(given)
            else mismatch
        )
    if isinstance(pattern, PlacementType):
        return None if isinstance(given, PlacementType) else mismatch
    if isinstance(pattern, StructType):
        if not isinstance(given, StructType) or len(given) != len(pattern):
            return mismatch
        for k, (p, g) in enumerate(zip(pattern, given)):
            problem = _unify(p, g, bindings, f"{where}[{k}]")
            if problem is not None:
                return problem
        return None
    if isinstance(pattern, SequenceType):
        if not isinstance(given, SequenceType):
            return mismatch
        return _unify(pattern.element, given.element, bindings, f"{where} (elements)")
    if isinstance(pattern, FunctionType):
        if not isinstance(given, FunctionType):
            return mismatch
        return _unify(
            pattern.parameter, given.parameter, bindings, f"{where} (parameter)"
        ) or _unify(pattern.result, given.result, bindings, f"{where} (result)")
    if isinstance(pattern, FederatedType):
        if not isinstance(given, FederatedType) or given.placement != pattern.placement:
            return mismatch
        if pattern.all_equal and not given.all_equal:
            return f"{where}: expected a value equal at all clients ({pattern}), given {given}"
        return _unify(pattern.member, given.member, bindings, f"{where} (member)")
    return None if pattern == given else mismatch


def _substitute(t: Type, bindings: Mapping[str, Type]) -> Type:
    if isinstance(t, AbstractType):
        return bindings[t.label]
    if isinstance(t, StructType):
        return StructType([(n, _substitute(e, bindings)) for n, e in t.items()], t.python_container)
    if isinstance(t, SequenceType):
        return SequenceType(_substitute(t.element, bindings))
    if isinstance(t, FunctionType):
        parameter = None if t.parameter is None else _substitute(t.parameter, bindings)
        return FunctionType(parameter, _substitute(t.result, bindings))
    if isinstance(t, FederatedType):
        return FederatedType(_substitute(t.member, bindings), t.placement, t.all_equal)
    return t


def substitute_known(t: Type, bindings: Mapping[str, Type]) -> Type:
    """`t` with the abstract types that `bindings` knows replaced, the others left abstract."""
    known = {label: bindings.get(label, AbstractType(label)) for label in _labels(t)}
    return _substitute(t, known)


# ---- constraints of fed's own intrinsics


def is_float(t: TensorType) -> bool:
    return t.dtype.kind in "fc"


def is_numeric(t: TensorType) -> bool:
    return t.dtype.kind in "iufc"


def is_integer(t: TensorType) -> bool:
    return t.dtype.kind in "iu"


def _member(t: Type) -> Type:
    return t.member if isinstance(t, FederatedType) else t


def _first_operand(fn_type: FunctionType) -> Type:
    parameter = fn_type.parameter
    assert parameter is not None
    return parameter[0] if isinstance(parameter, StructType) else parameter  # type: ignore[return-value]


def _values_are(
    predicate: Callable[[TensorType], bool], what: str
) -> Callable[[FunctionType], str | None]:
    def constraint(fn_type: FunctionType) -> str | None:
        value = _member(_first_operand(fn_type))
        if isinstance(value, SequenceType):
            value = value.element
        if is_structure_of(value, predicate):
            return None
        return f"the values must be {what} tensors or structs of them"

    return constraint


def _zip_constraint(fn_type: FunctionType) -> str | None:
    parameter = fn_type.parameter
    if not isinstance(parameter, StructType) or not len(parameter):
        return "a non-empty struct of federated values is expected"
    result = fn_type.result
    assert isinstance(result, FederatedType)
    for element in parameter:
        if not isinstance(element, FederatedType) or element.placement != result.placement:
            return f"every element must be placed at {result.placement}"
    return None


def _zip_result(placement: Any) -> Callable[[Type | None], Type]:
    def rule(parameter: Type | None) -> Type:
        assert isinstance(parameter, StructType)
        members = StructType(
            [(n, e.member) for n, e in parameter.items()],  # type: ignore[union-attr]
            parameter.python_container,
        )
        return FederatedType(members, placement, all(e.all_equal for e in parameter))  # type: ignore[union-attr]

    return rule


def _secure_constraint(fn_type: FunctionType) -> str | None:
    return _values_are(is_integer, "integer")(fn_type)


BUILTINS: Mapping[str, IntrinsicDefinition] = {
    d.uri: d
    for d in [
        IntrinsicDefinition(
            FEDERATED_AGGREGATE,
            parse_type("(<{T}@CLIENTS,U,(<U,T> -> U),(<U,U> -> U),(U -> R)> -> R@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_aggregate,
            "federated_aggregate",
        ),
        IntrinsicDefinition(
            FEDERATED_APPLY,
            parse_type("(<(T -> U),T@SERVER> -> U@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_apply,
            "federated_apply",
        ),
        IntrinsicDefinition(
            FEDERATED_BROADCAST,
            parse_type("(T@SERVER -> T@CLIENTS)"),
            IntrinsicKind.BROADCAST,
            local.federated_broadcast,
            "federated_broadcast",
        ),
        IntrinsicDefinition(
            FEDERATED_EVAL_AT_CLIENTS,
            parse_type("(( -> T) -> {T}@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_eval_at_clients,
        ),
        IntrinsicDefinition(
            FEDERATED_EVAL_AT_SERVER,
            parse_type("(( -> T) -> T@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_eval_at_server,
        ),
        IntrinsicDefinition(
            FEDERATED_MAP,
            parse_type("(<(T -> U),{T}@CLIENTS> -> {U}@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_map,
            "federated_map",
        ),
        IntrinsicDefinition(
            FEDERATED_MAP_ALL_EQUAL,
            parse_type("(<(T -> U),T@CLIENTS> -> U@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_map,
        ),
        IntrinsicDefinition(
            FEDERATED_MEAN,
            parse_type("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_mean,
            "federated_mean",
            _values_are(is_float, "floating-point"),
        ),
        IntrinsicDefinition(
            FEDERATED_WEIGHTED_MEAN,
            parse_type("(<{T}@CLIENTS,{W}@CLIENTS> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_weighted_mean,
            constraint=_values_are(is_float, "floating-point"),
        ),
        IntrinsicDefinition(
            FEDERATED_MIN,
            parse_type("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_min,
            "federated_min",
            _values_are(is_numeric, "numeric"),
        ),
        IntrinsicDefinition(
            FEDERATED_MAX,
            parse_type("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_max,
            "federated_max",
            _values_are(is_numeric, "numeric"),
        ),
        IntrinsicDefinition(
            FEDERATED_SUM,
            parse_type("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_sum,
            "federated_sum",
            _values_are(is_numeric, "numeric"),
        ),
        IntrinsicDefinition(
            FEDERATED_VALUE_AT_CLIENTS,
            parse_type("(T -> T@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_value_at_clients,
        ),
        IntrinsicDefinition(
            FEDERATED_VALUE_AT_SERVER,
            parse_type("(T -> T@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_value_at_server,
        ),
        IntrinsicDefinition(
            FEDERATED_ZIP_AT_CLIENTS,
            parse_type("(T -> {U}@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_zip_at_clients,
            constraint=_zip_constraint,
            result_rule=_zip_result(CLIENTS),
        ),
        IntrinsicDefinition(
            FEDERATED_ZIP_AT_SERVER,
            parse_type("(T -> U@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_zip_at_server,
            constraint=_zip_constraint,
            result_rule=_zip_result(SERVER),
        ),
        IntrinsicDefinition(
            FEDERATED_SELECT,
            parse_type(
                "(<{int32[?]}@CLIENTS,int32@SERVER,T@SERVER,(<T,int32> -> U)> -> {U*}@CLIENTS)"
            ),
            IntrinsicKind.CLIENTS,
            local.federated_select,
            "federated_select",
        ),
        IntrinsicDefinition(
            FEDERATED_SECURE_SUM,
            parse_type("(<{T}@CLIENTS,B> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_secure_sum,
            "federated_secure_sum",
            _secure_constraint,
        ),
        IntrinsicDefinition(
            FEDERATED_SECURE_SUM_BITWIDTH,
            parse_type("(<{T}@CLIENTS,B> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_secure_sum_bitwidth,
            "federated_secure_sum_bitwidth",
            _secure_constraint,
        ),
        IntrinsicDefinition(
            FEDERATED_SECURE_MODULAR_SUM,
            parse_type("(<{T}@CLIENTS,B> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_secure_modular_sum,
            "federated_secure_modular_sum",
            _secure_constraint,
        ),
        IntrinsicDefinition(
            SEQUENCE_MAP,
            parse_type("(<(T -> U),T*> -> U*)"),
            IntrinsicKind.UNPLACED,
            local.sequence_map,
            "sequence_map",
        ),
        IntrinsicDefinition(
            SEQUENCE_REDUCE,
            parse_type("(<T*,U,(<U,T> -> U)> -> U)"),
            IntrinsicKind.UNPLACED,
            local.sequence_reduce,
            "sequence_reduce",
        ),
        IntrinsicDefinition(
            SEQUENCE_SUM,
            parse_type("(T* -> T)"),
            IntrinsicKind.UNPLACED,
            local.sequence_sum,
            "sequence_sum",
            _values_are(is_numeric, "numeric"),
        ),
    ]
}
"""fed's own intrinsics, by URI."""

SECURE_AGGREGATIONS = frozenset(
    {FEDERATED_SECURE_SUM, FEDERATED_SECURE_SUM_BITWIDTH, FEDERATED_SECURE_MODULAR_SUM}
)
"""The aggregations whose second operand is a bound (a secure aggregation protocol's parameter)."""


def lookup(uri: str) -> IntrinsicDefinition:
    """The definition of the intrinsic `uri`: fed's own, else one a plugin registered.

    Raises LookupError naming the registered intrinsics when there is none, and TypeError naming the
    plugin's distribution when a plugin's entry does not build an `IntrinsicDefinition` for that URI.
    """
    builtin = BUILTINS.get(uri)
    if builtin is not None:
        return builtin
    registry = plugins.get_registry("intrinsics")
    if uri not in registry:
        raise LookupError(
            f"Unknown intrinsic {uri!r}: neither fed's own nor registered by an installed plugin "
            f"(registered by plugins: {[n for n in registry.names() if n not in BUILTINS]})."
        )
    definition = registry.build(uri)
    if not isinstance(definition, IntrinsicDefinition) or definition.uri != uri:
        entry = registry.entry(uri)
        raise TypeError(
            f"The intrinsic {uri!r} registered by {entry.distribution} ({entry.plugin}) must build a "
            f"fed_core.framework.IntrinsicDefinition with uri {uri!r}, got {definition!r}."
        )
    return definition


def definitions() -> dict[str, IntrinsicDefinition]:
    """Every known intrinsic by URI: fed's own and the plugins'."""
    out = dict(BUILTINS)
    for name in plugins.get_registry("intrinsics").names():
        if name not in out:
            out[name] = lookup(name)
    return out


def uris_of_kind(kind: IntrinsicKind) -> frozenset[str]:
    """The URIs of every known intrinsic of `kind`."""
    return frozenset(uri for uri, d in definitions().items() if d.kind is kind)
