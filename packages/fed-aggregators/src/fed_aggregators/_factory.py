"""The aggregation factory interfaces: a factory, given the type of the values (and weights) to aggregate,
creates an `AggregationProcess` for them."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import fed_types
from fed_core import Computation
from fed_core.templates import AggregationProcess, EstimationProcess
from fed_types import CLIENTS, SERVER, FederatedType, StructType, Type, to_type


class AggregationFactory(abc.ABC):  # noqa: B024 (a common base; each kind declares its own create)
    """Base of all aggregation factories."""


class UnweightedAggregationFactory(AggregationFactory):
    """Creates processes whose `next` takes `<state@SERVER, value@CLIENTS>`."""

    @abc.abstractmethod
    def create(self, value_type: Any) -> AggregationProcess:
        """An AggregationProcess that aggregates client values of `value_type`."""


class WeightedAggregationFactory(AggregationFactory):
    """Creates processes whose `next` takes `<state@SERVER, value@CLIENTS, weight@CLIENTS>`."""

    @abc.abstractmethod
    def create(self, value_type: Any, weight_type: Any) -> AggregationProcess:
        """An AggregationProcess that aggregates client values of `value_type` weighted by `weight_type`."""


def is_structure_of(t: Type, kinds: str) -> bool:
    """True if `t` is a tensor or a (nested) struct of tensors whose dtype kinds are all in `kinds`
    (numpy kind letters: 'f' floats, 'i' signed, 'u' unsigned integers)."""
    return fed_types.is_structure_of(t, lambda tensor: tensor.dtype.kind in kinds)


def check_value_type(value_type: Any, factory: str, kinds: str, description: str) -> Type:
    """Converts `value_type` to a fed type and checks it is a structure of tensors of `kinds`."""
    t = to_type(value_type)
    if not is_structure_of(t, kinds):
        raise TypeError(
            f"{factory}.create: expected a {description} tensor or a struct of them, got {t}."
        )
    return t


def check_float(
    value: Any, name: str, owner: str, *, low: float, low_open: bool, high=None
) -> float:
    """`value` as a float, or a ValueError/TypeError naming `owner`, the argument and the range."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}.")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = high is not None and value > high
    if too_low or too_high or np.isnan(value):
        bound = (
            f"in [{low}, {high}]"
            if high is not None
            else ("positive" if low_open else "non-negative")
        )
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}.")
    if math.isinf(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value}.")
    return value


def check_int(value: Any, name: str, owner: str, minimum: int | None = None) -> int:
    """`value` as an int (at least `minimum`, if given), or a TypeError/ValueError naming `owner` and
    the argument `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be at least {minimum}, got {value}.")
    return int(value)


def check_scalar_estimation(
    process: EstimationProcess, owner: str, role: str, what: str
) -> EstimationProcess:
    """Checks that an EstimationProcess takes one float32 per client (`what`: its meaning, for the
    message), returns its state alone, and reports a float32 at SERVER (a norm, a bound)."""
    parameter = process.next.type_signature.parameter
    at_clients = FederatedType(np.float32, CLIENTS)
    if not (
        isinstance(parameter, StructType)
        and len(parameter) == 2
        and parameter[1].is_assignable_from(at_clients)
    ):
        raise TypeError(
            f"{owner}: {role}.next must take <state,{at_clients}> ({what}); it takes {parameter}."
        )
    result = process.next.type_signature.result
    if not process.state_type.is_assignable_from(result):
        raise TypeError(
            f"{owner}: {role}.next must return its state alone, {process.state_type}; it returns "
            f"{result}."
        )
    report = process.report.type_signature.result
    if not FederatedType(np.float32, SERVER).is_assignable_from(report):
        raise TypeError(
            f"{owner}: {role}.report must return {FederatedType(np.float32, SERVER)}; it returns "
            f"{report}."
        )
    return process


ClientCheck = Callable[[Sequence[Any], Sequence[Any] | None], None]
"""`check(values, weights)`: raises if the clients' values (and weights, None when unweighted), given
from Python one per client, cannot be aggregated."""


class _CheckedNext(Computation):
    """The `next` of an aggregation process that checks the clients' values it is called with from
    Python before anything runs. Inside another computation (where the values are not known yet) it is
    the computation it wraps, whose own TensorFlow checks still apply when it runs."""

    def __init__(self, computation: Computation, check: ClientCheck):
        super().__init__(computation.building_block, computation.name)
        self._check = check
        parameter = computation.type_signature.parameter
        assert isinstance(parameter, StructType)
        self._names = [name for name, _ in parameter.items()]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        given = dict(zip(self._names, args))
        given.update((name, kwargs[name]) for name in self._names if name in kwargs)
        values = given.get(self._names[1])
        weights = given.get(self._names[2]) if len(self._names) > 2 else None
        if isinstance(values, list | tuple) and (
            weights is None or isinstance(weights, list | tuple)
        ):
            self._check(values, weights)
        return super().__call__(*args, **kwargs)


def with_client_check(process: AggregationProcess, check: ClientCheck) -> AggregationProcess:
    """`process`, whose `next` first runs `check(values, weights)` when it is called from Python with
    the clients' values (and weights) as lists: a check that needs to know the clients (how many, their
    weights) then fails before any TensorFlow runs, with a plain Python error."""
    return AggregationProcess(process.initialize, _CheckedNext(process.next, check))


def weight_numbers(weights: Sequence[Any]) -> np.ndarray | None:
    """The clients' weights as float64 numbers, or None if some weight is not a number (the call's own
    type checks then say so)."""
    try:
        numbers = np.asarray([np.asarray(w, dtype=np.float64) for w in weights], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if numbers.ndim == 1 else None


def check_weights_non_negative(owner: str, weights: np.ndarray) -> None:
    """A ValueError naming `owner` and the first client whose weight is negative or not finite."""
    bad = np.flatnonzero(~(np.isfinite(weights) & (weights >= 0)))
    if bad.size:
        raise ValueError(
            f"{owner}: client weights must be finite non-negative numbers; client {int(bad[0])} has "
            f"weight {weights[bad[0]]:g}."
        )
