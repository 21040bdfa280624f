"""The aggregation factory interfaces: a factory, given the type of the values (and weights) to aggregate,
creates an `AggregationProcess` for them."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

import fed_types
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
