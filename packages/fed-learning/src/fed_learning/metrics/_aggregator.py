"""Metric aggregators: from the clients' unfinalized metrics to the round's metric values at the server."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import SecureSumFactory
from fed_types import CLIENTS, FederatedType, StructType, TensorType, Type, to_type

DEFAULT_SECURE_LOWER_BOUND = 0
DEFAULT_SECURE_UPPER_BOUND = 2**20 - 1


def _check_finalizers(metric_finalizers: Any) -> None:
    if callable(metric_finalizers) and not isinstance(metric_finalizers, Mapping):
        return
    if isinstance(metric_finalizers, Mapping):
        for name, finalizer in metric_finalizers.items():
            if not isinstance(name, str) or not callable(finalizer):
                raise TypeError(
                    "metric_finalizers must map metric names (str) to functions, got the entry "
                    f"{name!r}: {finalizer!r}."
                )
        return
    raise TypeError(
        "metric_finalizers must be a VariableModel's metric_finalizers() (an OrderedDict of metric "
        "names to functions) or a FunctionalModel's finalize_metrics (a function), got "
        f"{metric_finalizers!r}."
    )


def _metrics_type(value_type: Any, metric_finalizers: Any) -> StructType:
    """The type of one client's unfinalized metrics, checked: a struct of named metric states with
    numeric tensors, whose names are those of `metric_finalizers` where it is a mapping."""
    if not (
        isinstance(value_type, StructType)
        and all(name is not None for name in value_type.names())
        and _numeric(value_type)
    ):
        raise TypeError(
            "Expected the clients' unfinalized metrics to be a struct of named metric states of "
            f"numeric tensors, such as {{<accuracy=<float32,float32>>}}@CLIENTS; got {value_type}."
        )
    if isinstance(metric_finalizers, Mapping) and set(metric_finalizers) != set(value_type.names()):
        raise ValueError(
            f"metric_finalizers has the metrics {list(metric_finalizers)}, but the clients "
            f"report {list(value_type.names())}; they must be the same."
        )
    return value_type


def _numeric(t: Type) -> bool:
    if isinstance(t, TensorType):
        return bool(np.issubdtype(t.dtype, np.number))
    return isinstance(t, StructType) and all(_numeric(element) for element in t)


def _finalize(metric_finalizers: Any, metrics_type: StructType) -> Callable[[Any], Any]:
    """The function from summed metric states to metric values (by name, in the clients' order), to run
    inside a TensorFlow computation."""
    if not isinstance(metric_finalizers, Mapping):
        return metric_finalizers

    def finalize(state: Any) -> collections.OrderedDict[str, Any]:
        return collections.OrderedDict(
            (name, metric_finalizers[name](state[name])) for name in _names(metrics_type)
        )

    return finalize


def _names(t: StructType) -> list[str]:
    """The names of a struct whose elements all have names."""
    return [name for name in t.names() if name is not None]


def _clients_member(values: Any, what: str) -> Type:
    value_type = values.type_signature
    if not (isinstance(value_type, FederatedType) and value_type.placement == CLIENTS):
        raise TypeError(
            f"{what} aggregates the clients' unfinalized metrics, a value placed at CLIENTS "
            f"({{T}}@CLIENTS); got {value_type}."
        )
    return value_type.member


def _aggregator(
    metrics_type: Any, aggregate: Callable[[Any], Any], what: str
) -> fc.Computation | fc.PolymorphicComputation:
    """A federated computation of `aggregate`: typed `{metrics_type}@CLIENTS` when the type is given,
    otherwise traced for the type of its first argument."""
    if metrics_type is None:
        return fc.federated_computation(aggregate)
    try:
        member = to_type(metrics_type)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{what}: local_unfinalized_metrics_type must be a fed type (or what converts to one), "
            f"got {metrics_type!r}."
        ) from error
    return fc.federated_computation(FederatedType(member, CLIENTS))(aggregate)


def sum_then_finalize(
    metric_finalizers: Any, local_unfinalized_metrics_type: Any = None
) -> fc.Computation | fc.PolymorphicComputation:
    """A federated computation that sums the clients' unfinalized metrics and finalizes the sum at the
    server: `{T}@CLIENTS -> <metric values>@SERVER`.

    `metric_finalizers` is a VariableModel's `metric_finalizers()` (metric names to functions from a
    metric's summed state to its value) or a FunctionalModel's `finalize_metrics` (a function of all the
    states). A metric whose state is a total and a count (a mean, an accuracy) is thus the total over all
    the clients' examples divided by their count, not a mean of the clients' values. This is the default
    aggregator of fed's learning builders.

    With `local_unfinalized_metrics_type` (the type `T` of one client's metrics) the computation has that
    type; without it, it is traced for the type of the value it is called with, as TFF's is. The names of
    `T` must be those of `metric_finalizers` (ValueError otherwise)."""
    _check_finalizers(metric_finalizers)

    def aggregate(values):
        metrics_type = _metrics_type(
            _clients_member(values, "sum_then_finalize"), metric_finalizers
        )
        finalize = ftf.computation(metrics_type)(_finalize(metric_finalizers, metrics_type))
        return fc.federated_map(finalize, fc.federated_sum(values))

    return _aggregator(local_unfinalized_metrics_type, aggregate, "sum_then_finalize")


def _default_range(t: TensorType) -> tuple[Any, Any]:
    if np.issubdtype(t.dtype, np.floating):
        return float(DEFAULT_SECURE_LOWER_BOUND), float(DEFAULT_SECURE_UPPER_BOUND)
    if np.issubdtype(t.dtype, np.integer):
        return DEFAULT_SECURE_LOWER_BOUND, DEFAULT_SECURE_UPPER_BOUND
    raise TypeError(f"secure_sum_then_finalize sums integer and float metric states, got {t}.")


def _ranges(t: Type, given: Any, path: str) -> list[tuple[Any, Any]]:
    """The `(lower, upper)` range of each tensor of `t` (flattened in order): `given` where it says,
    the default range where it is None."""
    if isinstance(t, TensorType):
        if given is None:
            return [_default_range(t)]
        if not (isinstance(given, Sequence) and len(given) == 2 and not isinstance(given, str)):
            raise TypeError(
                f"metric_value_ranges{path} must be a pair (lower, upper) for the {t} it bounds, "
                f"got {given!r}."
            )
        lower, upper = given
        if np.issubdtype(t.dtype, np.integer):
            if not all(isinstance(b, (int, np.integer)) for b in (lower, upper)):
                raise TypeError(
                    f"metric_value_ranges{path} bounds a {t} and must be a pair of ints, got {given!r}."
                )
            lower, upper = int(lower), int(upper)
        else:
            lower, upper = float(lower), float(upper)
        if not lower < upper:
            raise ValueError(f"metric_value_ranges{path} must have lower < upper, got {given!r}.")
        return [(lower, upper)]
    assert isinstance(t, StructType)
    names = t.names()
    if _is_range(given):  # one range for every tensor of the metric
        return [r for leaf in _leaves(t) for r in _ranges(leaf, given, path)]
    if given is None:
        given_elements: list[Any] = [None] * len(t)
    elif isinstance(given, Mapping):
        unknown = set(given) - {n for n in names if n is not None}
        if unknown:
            raise ValueError(
                f"metric_value_ranges{path} names {sorted(unknown)}, which the metrics do not have "
                f"(they have {[n for n in names if n is not None]})."
            )
        given_elements = [given.get(name) for name in names]
    elif isinstance(given, Sequence) and not isinstance(given, str) and len(given) == len(t):
        given_elements = list(given)
    else:
        raise TypeError(
            f"metric_value_ranges{path} must match the structure of {t}, got {given!r}."
        )
    ranges = []
    for i, (element, sub) in enumerate(zip(t, given_elements)):
        key = f"[{names[i]!r}]" if names[i] is not None else f"[{i}]"
        ranges += _ranges(element, sub, path + key)
    return ranges


def _bound_name(bound: float) -> str:
    """A bound as part of a struct name: `0`, `1048575`, `0p5` (0.5), `m1` (-1)."""
    text = str(int(bound)) if float(bound).is_integer() else repr(float(bound))
    return text.replace("-", "m").replace(".", "p").replace("+", "")


def _is_range(given: Any) -> bool:
    return (
        isinstance(given, tuple)
        and len(given) == 2
        and all(isinstance(b, (int, float, np.integer, np.floating)) for b in given)
    )


def _leaves(t: Type) -> list[TensorType]:
    if isinstance(t, TensorType):
        return [t]
    assert isinstance(t, StructType)
    return [leaf for element in t for leaf in _leaves(element)]


def _flatten(t: Type, value: Any) -> list[Any]:
    """The tensors of `value` (a value of type `t` inside a TensorFlow computation), in `_leaves` order."""
    if isinstance(t, TensorType):
        return [value]
    assert isinstance(t, StructType)
    return [
        leaf
        for i, (name, element) in enumerate(zip(t.names(), t))
        for leaf in _flatten(element, value[name] if name is not None else value[i])
    ]


def _pack(t: Type, flat: list[Any]) -> Any:
    """`flat` (in `_leaves` order) as a value of type `t`: OrderedDicts where `t` has names, lists
    otherwise, as TensorFlow computations receive them."""
    remaining = iter(flat)

    def pack(t: Type) -> Any:
        if isinstance(t, TensorType):
            return next(remaining)
        assert isinstance(t, StructType)
        names = t.names()
        elements = [pack(element) for element in t]
        if names and all(name is not None for name in names):
            return collections.OrderedDict(zip(names, elements))
        return elements

    return pack(t)


def _selection(metrics_type: StructType, indices: list[int]) -> Callable[[Any], list[Any]]:
    def select(state: Any) -> list[Any]:
        flat = _flatten(metrics_type, state)
        return [flat[i] for i in indices]

    return select


def secure_sum_then_finalize(
    metric_finalizers: Any,
    local_unfinalized_metrics_type: Any = None,
    metric_value_ranges: Any = None,
) -> fc.Computation | fc.PolymorphicComputation:
    """As `sum_then_finalize`, with the sum done by secure aggregation
    (`fed.aggregators.SecureSumFactory`): each client's metric states are clipped to a range and summed
    securely, then finalized at the server.

    `metric_value_ranges` gives the `(lower, upper)` range of metric states, as a (possibly partial) tree
    shaped like the metrics: `{"accuracy": (0.0, 100.0)}`, `{"loss": [None, (0, 50)]}`. Where it gives
    none, the range is `[0, 2**20 - 1]`. Tensors of the same dtype and range are summed together; the
    result adds `secure_sum_measurements` to the metric values: the measurements of each such group
    (how many clients were clipped, and the bounds), keyed `<dtype>_<lower>_<upper>` (such as
    `float32_0_1048575`; a bound's `.` is written `p` and its `-` `m`, struct names being Python
    identifiers: TFF's keys are `<lower>/<upper>/<dtype>`). Float states are quantized, so their sums
    are exact to within `(upper - lower) / (2**32 - 1)` per client."""
    _check_finalizers(metric_finalizers)
    if metric_value_ranges is not None and not isinstance(metric_value_ranges, (Mapping, Sequence)):
        raise TypeError(
            "metric_value_ranges must be a mapping of metric names to ranges (a partial tree shaped "
            f"like the metrics), got {metric_value_ranges!r}."
        )

    def aggregate(values):
        metrics_type = _metrics_type(
            _clients_member(values, "secure_sum_then_finalize"), metric_finalizers
        )
        leaves = _leaves(metrics_type)
        ranges = _ranges(metrics_type, metric_value_ranges, "")
        groups: dict[str, list[int]] = {}
        for i, (leaf, (lower, upper)) in enumerate(zip(leaves, ranges)):
            key = f"{np.dtype(leaf.dtype).name}_{_bound_name(lower)}_{_bound_name(upper)}"
            groups.setdefault(key, []).append(i)
        sums, measurements = [], collections.OrderedDict()
        for key, indices in groups.items():
            lower, upper = ranges[indices[0]]
            select = ftf.computation(metrics_type)(_selection(metrics_type, indices))
            process = SecureSumFactory(upper, lower).create(select.type_signature.result)
            output = process.next(process.initialize(), fc.federated_map(select, values))
            sums.append(output.result)
            measurements[key] = output.measurements
        order = [i for indices in groups.values() for i in indices]
        finalize_metrics = _finalize(metric_finalizers, metrics_type)
        zipped_measurements = fc.federated_zip(measurements)
        sums_type = tuple(s.type_signature.member for s in sums)
        measurements_type = cast(FederatedType, zipped_measurements.type_signature).member

        @ftf.computation(sums_type, measurements_type)
        def finalize(group_sums, group_measurements):
            flat: list[Any] = [None] * len(order)
            for position, value in zip(order, [v for group in group_sums for v in group]):
                flat[position] = value
            state = _pack(metrics_type, flat)
            result = collections.OrderedDict(secure_sum_measurements=group_measurements)
            result.update(finalize_metrics(state))
            return result

        return fc.federated_map(finalize, fc.federated_zip((tuple(sums), zipped_measurements)))

    return _aggregator(local_unfinalized_metrics_type, aggregate, "secure_sum_then_finalize")
