"""fed-aggregators: aggregation factories for fed (exposed as `fed.aggregators`).

Factories that need TensorFlow load on first use, so that loading fed's plugins does not import it.
Differential privacy (`DifferentiallyPrivateFactory`, the accounting in `fed_aggregators.dp`) needs the
`dp` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fed_aggregators.__about__ import __version__
from fed_aggregators._factory import (
    AggregationFactory,
    UnweightedAggregationFactory,
    WeightedAggregationFactory,
)
from fed_aggregators._registry import factory_from_config
from fed_aggregators._sum import SumFactory
from fed_core.framework import lazy_exports

if TYPE_CHECKING:
    from fed_aggregators import dp
    from fed_aggregators._clipping import clipping_factory, zeroing_factory
    from fed_aggregators._compression import (
        EncodedSumFactory,
        RandomKSparsificationFactory,
        TensorEncoder,
        TopKSparsificationFactory,
    )
    from fed_aggregators._dp import (
        DifferentiallyPrivateFactory,
        DPAggregatorState,
        extract_dp_event_from_state,
    )
    from fed_aggregators._gather import federated_gather
    from fed_aggregators._mean import MeanFactory, UnweightedMeanFactory
    from fed_aggregators._quantile import PrivateQuantileEstimationProcess
    from fed_aggregators._robust import (
        BulyanFactory,
        CoordinateMedianFactory,
        KrumFactory,
        MultiKrumFactory,
        NormBoundedMeanFactory,
        TrimmedMeanFactory,
    )
    from fed_aggregators._rotation import (
        DiscreteFourierTransformFactory,
        HadamardTransformFactory,
    )
    from fed_aggregators._secure import SecureModularSumFactory, SecureSumFactory

_HOMES = {
    "BulyanFactory": "_robust",
    "CoordinateMedianFactory": "_robust",
    "DPAggregatorState": "_dp",
    "DifferentiallyPrivateFactory": "_dp",
    "DiscreteFourierTransformFactory": "_rotation",
    "EncodedSumFactory": "_compression",
    "HadamardTransformFactory": "_rotation",
    "KrumFactory": "_robust",
    "MeanFactory": "_mean",
    "MultiKrumFactory": "_robust",
    "NormBoundedMeanFactory": "_robust",
    "PrivateQuantileEstimationProcess": "_quantile",
    "RandomKSparsificationFactory": "_compression",
    "SecureModularSumFactory": "_secure",
    "SecureSumFactory": "_secure",
    "TensorEncoder": "_compression",
    "TopKSparsificationFactory": "_compression",
    "TrimmedMeanFactory": "_robust",
    "UnweightedMeanFactory": "_mean",
    "clipping_factory": "_clipping",
    "dp": "dp",
    "extract_dp_event_from_state": "_dp",
    "federated_gather": "_gather",
    "zeroing_factory": "_clipping",
}

__all__ = [
    "AggregationFactory",
    "BulyanFactory",
    "CoordinateMedianFactory",
    "DPAggregatorState",
    "DifferentiallyPrivateFactory",
    "DiscreteFourierTransformFactory",
    "EncodedSumFactory",
    "HadamardTransformFactory",
    "KrumFactory",
    "MeanFactory",
    "MultiKrumFactory",
    "NormBoundedMeanFactory",
    "PrivateQuantileEstimationProcess",
    "RandomKSparsificationFactory",
    "SecureModularSumFactory",
    "SecureSumFactory",
    "SumFactory",
    "TensorEncoder",
    "TopKSparsificationFactory",
    "TrimmedMeanFactory",
    "UnweightedAggregationFactory",
    "UnweightedMeanFactory",
    "WeightedAggregationFactory",
    "clipping_factory",
    "dp",
    "extract_dp_event_from_state",
    "factory_from_config",
    "federated_gather",
    "zeroing_factory",
    "__version__",
]

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
