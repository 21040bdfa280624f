"""Building aggregation factories by name, so that an aggregation pipeline can be written as configuration.

A configuration is a factory name (`"mean"`) or a dict with a `"name"` key and the factory's keyword
arguments; an argument that is itself such a dict (with a `"name"`) is built first, so pipelines nest:

    {"name": "mean", "value_sum_factory": {"name": "sum"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fed_aggregators._factory import AggregationFactory
from fed_core.plugins import PluginInterfaceError, get_registry


def factory_from_config(config: str | Mapping[str, Any]) -> AggregationFactory:
    """The aggregation factory a configuration describes, using the factories registered through the
    `fed_register_aggregators` hook (`python -m fed_core plugins --kind aggregators` lists them)."""
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        raise TypeError(
            f"Expected an aggregator configuration: a registered name or a dict with a 'name' key, got {config!r}."
        )
    options = {
        key: factory_from_config(value) if isinstance(value, Mapping) and "name" in value else value
        for key, value in config.items()
        if key != "name"
    }
    registry = get_registry("aggregators")
    registry.get(config["name"])  # an unknown name: the registry's error, listing the known ones
    try:
        factory = registry.build(config["name"], **options)
    except PluginInterfaceError:
        raise
    except TypeError as error:
        raise TypeError(
            f"Cannot build the aggregator {config['name']!r} with options {sorted(options)}: {error}"
        ) from None
    if not isinstance(factory, AggregationFactory):
        raise TypeError(
            f"The aggregator {config['name']!r} built {factory!r}, which is not an AggregationFactory."
        )
    return factory
