"""fed-aggregators' plugin: its factories, registered by name (imported on first use, so that loading the
plugin does not import TensorFlow), and the intrinsic that robust aggregation needs."""

from __future__ import annotations

from fed_core.plugins import Registry, deferred, hookimpl

_FACTORIES = {
    "sum": "_sum:SumFactory",
    "mean": "_mean:MeanFactory",
    "unweighted_mean": "_mean:UnweightedMeanFactory",
    # Clipping and zeroing (an adaptive norm is configured as {"quantile": {...}}).
    "clipping": "_clipping:clipping_factory",
    "zeroing": "_clipping:zeroing_factory",
    # Differential privacy (the `dp` extra).
    "dp_gaussian_fixed": "_dp:DifferentiallyPrivateFactory.gaussian_fixed",
    "dp_gaussian_adaptive": "_dp:DifferentiallyPrivateFactory.gaussian_adaptive",
    "dp_tree_aggregation": "_dp:DifferentiallyPrivateFactory.tree_aggregation",
    "dp_tree_adaptive": "_dp:DifferentiallyPrivateFactory.tree_adaptive",
    # Robust aggregation.
    "coordinate_median": "_robust:CoordinateMedianFactory",
    "trimmed_mean": "_robust:TrimmedMeanFactory",
    "krum": "_robust:KrumFactory",
    "multi_krum": "_robust:MultiKrumFactory",
    "bulyan": "_robust:BulyanFactory",
    "norm_bounded_mean": "_robust:NormBoundedMeanFactory",
    # Compression.
    "quantize_above_threshold": "_compression:EncodedSumFactory.quantize_above_threshold",
    "hadamard": "_rotation:HadamardTransformFactory",
    "dft": "_rotation:DiscreteFourierTransformFactory",
    "top_k": "_compression:TopKSparsificationFactory",
    "random_k": "_compression:RandomKSparsificationFactory",
    # Secure aggregation.
    "secure_sum": "_secure:SecureSumFactory",
    "secure_modular_sum": "_secure:SecureModularSumFactory",
}


@hookimpl
def fed_register_aggregators(register: Registry) -> None:
    for name, target in _FACTORIES.items():
        register.add(name, deferred(f"fed_aggregators.{target}"))


@hookimpl
def fed_register_intrinsics(register: Registry) -> None:
    register.add(
        "fed_aggregators.federated_gather",
        deferred("fed_aggregators._gather:gather_definition"),
    )
