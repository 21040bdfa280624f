"""fed-jax: computations written in JAX, traced with `jax.jit` and exported to StableHLO, run by a JAX
backend inside fed's federated computations, beside TensorFlow ones.

`computation(*type_specs)` wraps a JAX function as a compiled leaf of fed's IR (also TFF's
`jax_computation`); `build_jax_federated_averaging_process` is TFF's canned FedAvg for a JAX loss.
JAX is imported on first use of these names, not when fed loads its plugins.
"""

from fed_core.framework import lazy_exports
from fed_jax.__about__ import __version__

__all__ = ["__version__", "build_jax_federated_averaging_process", "computation", "jax_computation"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "computation": "_frontend",
        "jax_computation": "_frontend:computation",
        "build_jax_federated_averaging_process": "_learning",
    },
)
