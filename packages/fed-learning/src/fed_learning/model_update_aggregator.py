"""Recommended aggregators for model updates, composed as TensorFlow Federated composes them: adaptive
zeroing of extreme values outermost, then adaptive L2 clipping (or DP's own clipping), then the mean,
whose sums may be compressed or secure.

Each is a factory for `model_aggregator=` of a learning algorithm.
"""

from __future__ import annotations

import math

from fed_aggregators import (
    AggregationFactory,
    EncodedSumFactory,
    MeanFactory,
    PrivateQuantileEstimationProcess,
    SecureSumFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    WeightedAggregationFactory,
    clipping_factory,
    zeroing_factory,
)

__all__ = ["compression_aggregator", "dp_aggregator", "robust_aggregator", "secure_aggregator"]


def _secure_count() -> SecureSumFactory:
    return SecureSumFactory(upper_bound_threshold=1, lower_bound_threshold=0)


def _zeroing(inner: AggregationFactory, secure_estimation: bool = False) -> AggregationFactory:
    """Zeroes values whose norm exceeds about twice the 98th percentile of the norms, plus one."""
    norm = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=10.0,
        target_quantile=0.98,
        learning_rate=math.log(10.0),
        multiplier=2.0,
        increment=1.0,
        secure_estimation=secure_estimation,
    )
    count = _secure_count() if secure_estimation else None
    return zeroing_factory(norm, inner, zeroed_count_sum_factory=count)


def _clipping(inner: AggregationFactory, secure_estimation: bool = False) -> AggregationFactory:
    """Clips to the L2 norm that follows the 80th percentile of the norms."""
    norm = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0,
        target_quantile=0.8,
        learning_rate=0.2,
        secure_estimation=secure_estimation,
    )
    count = _secure_count() if secure_estimation else None
    return clipping_factory(norm, inner, clipped_count_sum_factory=count)


def _check_flags(preset: str, **flags: object) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{preset}: {name} must be a bool, got {value!r}.")


def _mean(weighted: bool, value_sum_factory=None) -> AggregationFactory:
    if weighted:
        return MeanFactory(value_sum_factory)
    return UnweightedMeanFactory(value_sum_factory)


def _debug(fn, factory: AggregationFactory, weighted: bool, preset: str) -> AggregationFactory:
    """`fn(factory)`, which must keep the factory's weightedness."""
    wrapped = fn(factory)
    expected = WeightedAggregationFactory if weighted else UnweightedAggregationFactory
    if not isinstance(wrapped, expected):
        raise TypeError(
            f"{preset}: debug_measurements_fn must return a {expected.__name__} "
            f"(weighted={weighted}), got {wrapped!r}."
        )
    return wrapped


def robust_aggregator(
    *,
    zeroing: bool = True,
    clipping: bool = True,
    weighted: bool = True,
    debug_measurements_fn=None,
) -> AggregationFactory:
    """The mean, made robust: adaptive zeroing of extreme values (data corruption) and adaptive L2
    clipping (outliers), as in Andrew, Thakkar et al. (2021), without noise.

    `debug_measurements_fn(factory)` may wrap the mean to add measurements; it must keep its
    weightedness.
    """
    _check_flags("robust_aggregator", zeroing=zeroing, clipping=clipping, weighted=weighted)
    factory = _mean(weighted)
    if debug_measurements_fn is not None:
        factory = _debug(debug_measurements_fn, factory, weighted, "robust_aggregator")
    if clipping:
        factory = _clipping(factory)
    if zeroing:
        factory = _zeroing(factory)
    return factory


def dp_aggregator(
    noise_multiplier: float, clients_per_round: float, zeroing: bool = True
) -> UnweightedAggregationFactory:
    """The differentially private mean (DP-FedAvg, McMahan et al. 2017): adaptive clipping and Gaussian
    noise (`DifferentiallyPrivateFactory.gaussian_adaptive`), with adaptive zeroing outside. Needs the
    `dp` extra; account for the privacy it spends with `fed.aggregators.dp`."""
    from fed_aggregators import DifferentiallyPrivateFactory

    _check_flags("dp_aggregator", zeroing=zeroing)
    factory = DifferentiallyPrivateFactory.gaussian_adaptive(noise_multiplier, clients_per_round)
    if not zeroing:
        return factory
    zeroed = _zeroing(factory)
    assert isinstance(
        zeroed, UnweightedAggregationFactory
    )  # zeroing keeps the inner factory's kind
    return zeroed


def compression_aggregator(
    *,
    zeroing: bool = True,
    clipping: bool = True,
    weighted: bool = True,
    debug_measurements_fn=None,
) -> AggregationFactory:
    """The robust mean whose value sum is compressed: tensors with more than 20,000 elements are
    quantized to 8 bits (`EncodedSumFactory.quantize_above_threshold`)."""
    _check_flags("compression_aggregator", zeroing=zeroing, clipping=clipping, weighted=weighted)
    factory = _mean(
        weighted, EncodedSumFactory.quantize_above_threshold(quantization_bits=8, threshold=20000)
    )
    if debug_measurements_fn is not None:
        factory = _debug(debug_measurements_fn, factory, weighted, "compression_aggregator")
    if clipping:
        factory = _clipping(factory)
    if zeroing:
        factory = _zeroing(factory)
    return factory


def secure_aggregator(
    *, zeroing: bool = True, clipping: bool = True, weighted: bool = True
) -> AggregationFactory:
    """The robust mean summed with secure aggregation (Bonawitz et al. 2017), on
    `federated_secure_sum_bitwidth`: values are clipped per coordinate to a bound that follows the 95th
    percentile of the norms (times two), and the norm estimates use secure sums too."""
    _check_flags("secure_aggregator", zeroing=zeroing, clipping=clipping, weighted=weighted)
    bound = PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=50.0,
        target_quantile=0.95,
        learning_rate=1.0,
        multiplier=2.0,
        secure_estimation=True,
    )
    if weighted:
        factory: AggregationFactory = MeanFactory(
            value_sum_factory=SecureSumFactory(bound),
            weight_sum_factory=SecureSumFactory(
                upper_bound_threshold=float(2**20 - 1), lower_bound_threshold=0.0
            ),
        )
    else:
        factory = UnweightedMeanFactory(
            value_sum_factory=SecureSumFactory(bound), count_sum_factory=_secure_count()
        )
    if clipping:
        factory = _clipping(factory, secure_estimation=True)
    if zeroing:
        factory = _zeroing(factory, secure_estimation=True)
    return factory
