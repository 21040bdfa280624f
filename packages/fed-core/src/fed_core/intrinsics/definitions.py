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
        """Raises FederatedTypeError unless `fn_type` is a concrete type this intrinsic may be called at:
        its operands match the signature, functions among them accept what they will be given, and the
        result claims no more than the operands guarantee."""
        problem = self._problem(fn_type)
        if problem is not None:
            raise FederatedTypeError(
                self.operator, f"a call of type {self.type_signature}", f"{fn_type} ({problem})"
            )

    def result_type(self, parameter_type: Type | None) -> Type:
        """The result type of a call on operands of `parameter_type`; FederatedTypeError if they do not fit."""
        bindings: dict[str, Type] = {}
        problem = _operand_problem(self.type_signature.parameter, parameter_type, bindings)
        result: Type | None = None
        if problem is None:
            result, problem = self._expected_result(parameter_type, bindings)
        if problem is None:
            assert result is not None
            problem = self._problem(FunctionType(parameter_type, result))
        if problem is not None:
            raise FederatedTypeError(
                self.operator,
                f"operands of type {self.type_signature.parameter}",
                f"{parameter_type} ({problem})",
            )
        assert result is not None
        return result

    def bindings_for(self, parameter_type: Type | None) -> dict[str, Type]:
        """The abstract types bound by matching as much of `parameter_type` as is known (no error)."""
        bindings: dict[str, Type] = {}
        _Matcher(bindings, binding=True).match(
            self.type_signature.parameter, parameter_type, "the operands", covariant=True
        )
        return bindings

    def _expected_result(
        self, parameter_type: Type | None, bindings: dict[str, Type]
    ) -> tuple[Type | None, str | None]:
        try:
            if self.result_rule is not None:
                return self.result_rule(parameter_type), None
            return _substitute(self.type_signature.result, bindings), None
        except (TypeError, ValueError, KeyError) as error:
            return None, f"no result type follows from the operands: {error}"

    def _problem(self, fn_type: FunctionType) -> str | None:
        abstract = _labels(fn_type.parameter) | _labels(fn_type.result)
        if abstract:
            return f"a concrete type is needed, and {sorted(abstract)} are abstract"
        bindings: dict[str, Type] = {}
        problem = _operand_problem(self.type_signature.parameter, fn_type.parameter, bindings)
        if problem is not None:
            return problem
        expected, problem = self._expected_result(fn_type.parameter, bindings)
        if problem is not None:
            return problem
        assert expected is not None
        if not fn_type.result.is_assignable_from(expected):
            return f"the result is {fn_type.result}, but operands of these types give {expected}"
        return None if self.constraint is None else self.constraint(fn_type)


def _operand_problem(
    pattern: Type | None, given: Type | None, bindings: dict[str, Type]
) -> str | None:
    """Matches operand types against the signature's parameter: binds abstract types from the values
    (the most general type where a label occurs several times), then checks that functions among the
    operands accept what the bindings say they will be given."""
    return _Matcher(bindings, binding=True).match(
        pattern, given, "the operands", covariant=True
    ) or _Matcher(bindings, binding=False).match(pattern, given, "the operands", covariant=True)


class _Matcher:
    """One pass over a signature's pattern and a concrete type, walked in step.

    In the binding pass, abstract types in covariant positions (values, and results of functions) are
    bound to the given types; in the checking pass, those in contravariant positions (parameters of
    functions) must accept what is bound. Struct names in the pattern must match.
    """

    def __init__(self, bindings: dict[str, Type], binding: bool):
        self.bindings = bindings
        self.binding = binding

    def match(
        self, pattern: Type | None, given: Type | None, where: str, covariant: bool
    ) -> str | None:
        if pattern is None or given is None:
            if pattern is None and given is None:
                return None
            return (
                f"{where}: expected {pattern if pattern is not None else 'nothing'}, given {given}"
            )
        if isinstance(pattern, AbstractType):
            return self._abstract(pattern.label, given, where, covariant)
        mismatch = f"{where}: expected {pattern}, given {given}"
        if isinstance(pattern, TensorType):
            if not isinstance(given, TensorType):
                return mismatch
            fits = (
                pattern.is_assignable_from(given)
                if covariant
                else given.is_assignable_from(pattern)
            )
            return None if fits else mismatch
        if isinstance(pattern, PlacementType):
            return None if isinstance(given, PlacementType) else mismatch
        if isinstance(pattern, StructType):
            if not isinstance(given, StructType) or len(given) != len(pattern):
                return mismatch
            for k, ((name, p), (given_name, g)) in enumerate(zip(pattern.items(), given.items())):
                if name is not None and given_name != name:
                    return f"{where}: element {k} must be named {name!r}, given {given}"
                step = f"{where}.{name}" if name is not None else f"{where}[{k}]"
                problem = self.match(p, g, step, covariant)
                if problem is not None:
                    return problem
            return None
        if isinstance(pattern, SequenceType):
            if not isinstance(given, SequenceType):
                return mismatch
            return self.match(pattern.element, given.element, f"{where} (elements)", covariant)
        if isinstance(pattern, FunctionType):
            if not isinstance(given, FunctionType):
                return mismatch
            return self.match(
                pattern.parameter, given.parameter, f"{where} (parameter)", not covariant
            ) or self.match(pattern.result, given.result, f"{where} (result)", covariant)
        if isinstance(pattern, FederatedType):
            if not isinstance(given, FederatedType) or given.placement != pattern.placement:
                return mismatch
            needs_equal = pattern.all_equal if covariant else given.all_equal
            has_equal = given.all_equal if covariant else pattern.all_equal
            if pattern.placement == CLIENTS and needs_equal and not has_equal:
                return f"{where}: expected a value equal at all clients, given {given}"
            return self.match(pattern.member, given.member, f"{where} (member)", covariant)
        return None if pattern == given else mismatch

    def _abstract(self, label: str, given: Type, where: str, covariant: bool) -> str | None:
        bound = self.bindings.get(label)
        if self.binding:
            if not covariant:
                return None
            if bound is None or given.is_assignable_from(bound):
                self.bindings[label] = given  # the most general of the values
                return None
            if bound.is_assignable_from(given):
                return None
            return f"{where}: {label} is {bound} in one place and {given} in another"
        if covariant:
            return None
        if bound is None:
            self.bindings[label] = given
            return None
        if given.is_assignable_from(bound):
            return None
        return f"{where}: a function here must accept {bound} ({label}), but it takes {given}"


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
    return parameter[0] if isinstance(parameter, StructType) else parameter


def _values_are(
    predicate: Callable[[TensorType], bool], what: str, elements: bool = False
) -> Callable[[FunctionType], str | None]:
    """The first operand's members (or, with `elements`, its sequence's elements) are tensors, or structs
    of tensors, all satisfying `predicate`."""

    def constraint(fn_type: FunctionType) -> str | None:
        value: Type | None = _member(_first_operand(fn_type))
        if elements:
            value = value.element if isinstance(value, SequenceType) else None
        if value is not None and is_structure_of(value, predicate):
            return None
        return (
            f"the {'elements' if elements else 'values'} must be {what} tensors or structs of them"
        )

    return constraint


def _weighted_mean_constraint(fn_type: FunctionType) -> str | None:
    problem = _values_are(is_float, "floating-point")(fn_type)
    if problem is not None:
        return problem
    assert isinstance(fn_type.parameter, StructType)
    weight = _member(fn_type.parameter[1])
    if isinstance(weight, TensorType) and weight.rank == 0 and is_numeric(weight):
        return None
    return f"the weight must be a numeric scalar at CLIENTS, given {fn_type.parameter[1]}"


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


def _signature(notation: str) -> FunctionType:
    """The function type written in compact notation."""
    parsed = parse_type(notation)
    assert isinstance(parsed, FunctionType), notation
    return parsed


def _zip_result(placement: Any) -> Callable[[Type | None], Type]:
    def rule(parameter: Type | None) -> Type:
        assert isinstance(parameter, StructType)
        elements = [(n, e) for n, e in parameter.items() if isinstance(e, FederatedType)]
        assert len(elements) == len(parameter)
        members = StructType([(n, e.member) for n, e in elements], parameter.python_container)
        return FederatedType(members, placement, all(e.all_equal for _, e in elements))

    return rule


def _secure_constraint(fn_type: FunctionType) -> str | None:
    problem = _values_are(is_integer, "integer")(fn_type)
    if problem is not None:
        return problem
    assert isinstance(fn_type.parameter, StructType)
    value, bound = _member(fn_type.parameter[0]), fn_type.parameter[1]
    if isinstance(bound, TensorType) and bound.rank == 0 and is_integer(bound):
        return None
    if (
        isinstance(bound, StructType)
        and isinstance(value, StructType)
        and len(bound) == len(value)
        and is_structure_of(bound, is_integer)
    ):
        return None
    return f"the bound must be an integer scalar or a struct matching {value}, given {bound}"


BUILTINS: Mapping[str, IntrinsicDefinition] = {
    d.uri: d
    for d in [
        IntrinsicDefinition(
            FEDERATED_AGGREGATE,
            _signature("(<{T}@CLIENTS,U,(<U,T> -> U),(<U,U> -> U),(U -> R)> -> R@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_aggregate,
            "federated_aggregate",
        ),
        IntrinsicDefinition(
            FEDERATED_APPLY,
            _signature("(<(T -> U),T@SERVER> -> U@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_apply,
            "federated_apply",
        ),
        IntrinsicDefinition(
            FEDERATED_BROADCAST,
            _signature("(T@SERVER -> T@CLIENTS)"),
            IntrinsicKind.BROADCAST,
            local.federated_broadcast,
            "federated_broadcast",
        ),
        IntrinsicDefinition(
            FEDERATED_EVAL_AT_CLIENTS,
            _signature("(( -> T) -> {T}@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_eval_at_clients,
        ),
        IntrinsicDefinition(
            FEDERATED_EVAL_AT_SERVER,
            _signature("(( -> T) -> T@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_eval_at_server,
        ),
        IntrinsicDefinition(
            FEDERATED_MAP,
            _signature("(<(T -> U),{T}@CLIENTS> -> {U}@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_map,
            "federated_map",
        ),
        IntrinsicDefinition(
            FEDERATED_MAP_ALL_EQUAL,
            _signature("(<(T -> U),T@CLIENTS> -> U@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_map,
        ),
        IntrinsicDefinition(
            FEDERATED_MEAN,
            _signature("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_mean,
            "federated_mean",
            _values_are(is_float, "floating-point"),
        ),
        IntrinsicDefinition(
            FEDERATED_WEIGHTED_MEAN,
            _signature("(<{T}@CLIENTS,{W}@CLIENTS> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_weighted_mean,
            constraint=_weighted_mean_constraint,
        ),
        IntrinsicDefinition(
            FEDERATED_MIN,
            _signature("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_min,
            "federated_min",
            _values_are(is_numeric, "numeric"),
        ),
        IntrinsicDefinition(
            FEDERATED_MAX,
            _signature("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_max,
            "federated_max",
            _values_are(is_numeric, "numeric"),
        ),
        IntrinsicDefinition(
            FEDERATED_SUM,
            _signature("({T}@CLIENTS -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_sum,
            "federated_sum",
            _values_are(is_numeric, "numeric"),
        ),
        IntrinsicDefinition(
            FEDERATED_VALUE_AT_CLIENTS,
            _signature("(T -> T@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_value_at_clients,
        ),
        IntrinsicDefinition(
            FEDERATED_VALUE_AT_SERVER,
            _signature("(T -> T@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_value_at_server,
        ),
        IntrinsicDefinition(
            FEDERATED_ZIP_AT_CLIENTS,
            _signature("(T -> {U}@CLIENTS)"),
            IntrinsicKind.CLIENTS,
            local.federated_zip_at_clients,
            constraint=_zip_constraint,
            result_rule=_zip_result(CLIENTS),
        ),
        IntrinsicDefinition(
            FEDERATED_ZIP_AT_SERVER,
            _signature("(T -> U@SERVER)"),
            IntrinsicKind.SERVER,
            local.federated_zip_at_server,
            constraint=_zip_constraint,
            result_rule=_zip_result(SERVER),
        ),
        IntrinsicDefinition(
            FEDERATED_SELECT,
            _signature(
                "(<{int32[?]}@CLIENTS,int32@SERVER,T@SERVER,(<T,int32> -> U)> -> {U*}@CLIENTS)"
            ),
            IntrinsicKind.CLIENTS,
            local.federated_select,
            "federated_select",
        ),
        IntrinsicDefinition(
            FEDERATED_SECURE_SUM,
            _signature("(<{T}@CLIENTS,B> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_secure_sum,
            "federated_secure_sum",
            _secure_constraint,
        ),
        IntrinsicDefinition(
            FEDERATED_SECURE_SUM_BITWIDTH,
            _signature("(<{T}@CLIENTS,B> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_secure_sum_bitwidth,
            "federated_secure_sum_bitwidth",
            _secure_constraint,
        ),
        IntrinsicDefinition(
            FEDERATED_SECURE_MODULAR_SUM,
            _signature("(<{T}@CLIENTS,B> -> T@SERVER)"),
            IntrinsicKind.AGGREGATION,
            local.federated_secure_modular_sum,
            "federated_secure_modular_sum",
            _secure_constraint,
        ),
        IntrinsicDefinition(
            SEQUENCE_MAP,
            _signature("(<(T -> U),T*> -> U*)"),
            IntrinsicKind.UNPLACED,
            local.sequence_map,
            "sequence_map",
        ),
        IntrinsicDefinition(
            SEQUENCE_REDUCE,
            _signature("(<T*,U,(<U,T> -> U)> -> U)"),
            IntrinsicKind.UNPLACED,
            local.sequence_reduce,
            "sequence_reduce",
        ),
        IntrinsicDefinition(
            SEQUENCE_SUM,
            _signature("(T* -> T)"),
            IntrinsicKind.UNPLACED,
            local.sequence_sum,
            "sequence_sum",
            _values_are(is_numeric, "numeric", elements=True),
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
