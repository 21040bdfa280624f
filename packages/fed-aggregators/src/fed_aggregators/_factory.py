"""The aggregation factory interfaces: a factory, given the type of the values (and weights) to aggregate,
creates an `AggregationProcess` for them."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

import fed_types
from fed_core.templates import AggregationProcess
from fed_types import Type, to_type


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
