"""fed-analytics' plugin: the hierarchical histogram's aggregation factories, registered by name (imported
on first use, so that loading the plugin does not import TensorFlow).

    fed_aggregators.factory_from_config(
        {"name": "hierarchical_histogram", "num_bins": 16, "dp_mechanism": "no-noise"})
    fed_aggregators.factory_from_config(
        "histogram_clipping_sum(clip_mechanism='distinct', max_records_per_user=3) -> sum")
"""

from __future__ import annotations

from fed_core.plugins import Registry, deferred, hookimpl

_FACTORIES = {
    "hierarchical_histogram": "_factory:create_hierarchical_histogram_aggregation_factory",
    "histogram_clipping_sum": "_clipping:HistogramClippingSumFactory",
}


@hookimpl
def fed_register_aggregators(register: Registry) -> None:
    for name, target in _FACTORIES.items():
        register.add(name, deferred(f"fed_analytics.hierarchical_histogram.{target}"))
