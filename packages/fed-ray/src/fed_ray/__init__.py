"""fed-ray: fed's computations on a Ray cluster.

`fed_core.execution.set_context("ray", num_actors=4)` (or `fed.backends.ray.set_sync_ray_execution_context`)
runs every computation on a pool of Ray actors: client work where the actors are, data loaded and cached
there, only partial aggregates back to the driver. See docs/distributed.md.
"""

from fed_core._lazy import lazy_exports
from fed_ray.__about__ import __version__

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "RayExecutor": "_executor",
        "init": "_cluster",
        "free_cpus": "_cluster",
        "shutdown": "_cluster",
        "DEFAULT_OBJECT_STORE_BYTES": "_cluster",
        "UnshippableDatasetError": "_transport",
    },
)

__all__ = [
    "DEFAULT_OBJECT_STORE_BYTES",
    "RayExecutor",
    "UnshippableDatasetError",
    "__version__",
    "free_cpus",
    "init",
    "shutdown",
]
