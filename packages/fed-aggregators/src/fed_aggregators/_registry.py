"""Building aggregation factories by name, so that an aggregation pipeline can be written as configuration.

A configuration is one of:

- a factory name: `"mean"`;
- a dict with a `"name"` key and the factory's keyword arguments; an argument that is itself such a dict
  is built first, so pipelines nest: `{"name": "mean", "value_sum_factory": {"name": "sum"}}`;
- a chain, outermost first, as a list of those or as a string whose steps are `name` or
  `name(keyword=literal, ...)` joined by `->`:
  `"zeroing(zeroing_norm=10.0) -> clipping(clipping_norm=1.0) -> dp_gaussian_fixed(noise_multiplier=0.5,
  clients_per_round=10, clip=1.0)"`. Each step gets the next one as its inner factory (its
  `inner_agg_factory`, `value_sum_factory` or `record_aggregation_factory` argument).

An adaptive norm (a clipping or zeroing norm, a secure-sum bound) is written
`{"quantile": {"initial_estimate": 1.0, "target_quantile": 0.8, "learning_rate": 0.2}}`: a
`PrivateQuantileEstimationProcess.no_noise` with those arguments. Literals in strings are read with
`ast.literal_eval`, so a configuration never runs code.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from fed_aggregators._factory import AggregationFactory
from fed_core._lazy import import_attribute
from fed_core.plugins import PluginInterfaceError, get_registry

# The parameters through which a factory takes the factory it wraps, in order of preference.
_INNER_PARAMETERS = (
    "inner_agg_factory",
    "value_sum_factory",
    "record_aggregation_factory",
    "inner_factory",
)


def factory_from_config(config: str | Mapping[str, Any] | Sequence[Any]) -> AggregationFactory:
    """The aggregation factory a configuration describes (see the module's documentation), using the
    factories registered through the `fed_register_aggregators` hook (`python -m fed_core plugins
    --kind aggregators` lists them)."""
    if isinstance(config, str):
        steps: list[Any] = _parse_chain(config)
    elif isinstance(config, Mapping):
        steps = [config]
    elif isinstance(config, Sequence) and config:
        steps = list(config)
    else:
        raise TypeError(
            "Expected an aggregator configuration: a registered name, a dict with a 'name' key, a "
            f"chain 'a -> b(...)' or a list of steps, got {config!r}."
        )
    factory: Any = None
    for step in reversed(steps):
        factory = _build(_as_step(step), inner=factory)
    if not isinstance(factory, AggregationFactory):
        raise TypeError(
            f"The aggregator configuration {config!r} built {factory!r}, which is not an "
            "AggregationFactory."
        )
    return factory


def _as_step(step: Any) -> Mapping[str, Any]:
    if isinstance(step, str):
        parsed = _parse_chain(step)
        if len(parsed) != 1:
            raise ValueError(f"A step of a chain is one factory, got {step!r}.")
        return parsed[0]
    if isinstance(step, Mapping) and isinstance(step.get("name"), str):
        return step
    raise TypeError(
        "Expected an aggregator configuration: a registered name or a dict with a 'name' key, "
        f"got {step!r}."
    )


def _value(value: Any) -> Any:
    if isinstance(value, Mapping) and "name" in value:
        return _build(value, inner=None)
    if isinstance(value, Mapping) and set(value) == {"quantile"}:
        from fed_aggregators._quantile import PrivateQuantileEstimationProcess

        options = value["quantile"]
        if not isinstance(options, Mapping):
            raise TypeError(
                "An adaptive norm is written {'quantile': {keyword arguments of "
                f"PrivateQuantileEstimationProcess.no_noise}}, got {value!r}."
            )
        return PrivateQuantileEstimationProcess.no_noise(**options)
    return value


def _inner_parameter(factory: Any, name: str) -> str:
    target = getattr(factory, "fed_target", None)
    signature = inspect.signature(import_attribute(target) if target else factory)
    for parameter in _INNER_PARAMETERS:
        if parameter in signature.parameters:
            return parameter
    raise TypeError(
        f"The aggregator {name!r} takes no inner factory (none of {list(_INNER_PARAMETERS)}), so "
        "nothing can follow it in a chain."
    )


def _build(config: Mapping[str, Any], inner: Any) -> Any:
    name = config["name"]
    registry = get_registry("aggregators")
    factory = registry.get(name)  # an unknown name: the registry's error, listing the known ones
    options = {key: _value(value) for key, value in config.items() if key != "name"}
    if inner is not None:
        parameter = _inner_parameter(factory, name)
        if parameter in options:
            raise ValueError(
                f"The aggregator {name!r} is given its {parameter} twice: in its options and as the "
                "next step of the chain."
            )
        options[parameter] = inner
    try:
        return registry.build(name, **options)
    except PluginInterfaceError:
        raise
    except TypeError as error:
        raise TypeError(
            f"Cannot build the aggregator {name!r} with options {sorted(options)}: {error}"
        ) from None


def _parse_chain(text: str) -> list[dict[str, Any]]:
    if "->" not in text and "(" not in text:
        return [{"name": text.strip()}]  # a plain name, looked up as it is
    steps = [part.strip() for part in text.split("->")]
    if any(not step for step in steps):
        raise ValueError(f"An empty step in the aggregator chain {text!r}.")
    return [_parse_step(step, text) for step in steps]


def _parse_step(step: str, text: str) -> dict[str, Any]:
    try:
        node = ast.parse(step, mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Name):
        return {"name": node.id}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and not node.args
        and all(keyword.arg is not None for keyword in node.keywords)
    ):
        config: dict[str, Any] = {"name": node.func.id}
        for keyword in node.keywords:
            try:
                config[keyword.arg] = ast.literal_eval(keyword.value)  # type: ignore[index]
            except ValueError:
                raise ValueError(
                    f"In the aggregator chain {text!r}: the value of {keyword.arg} in {step!r} must be "
                    "a literal (a number, string, list or dict)."
                ) from None
        return config
    raise ValueError(
        f"In the aggregator chain {text!r}: expected a step 'name' or 'name(keyword=literal, ...)', "
        f"got {step!r}."
    )
