"""`fed.learning`: federated learning."""

from typing import Any

from fed_learning import *  # noqa: F403
from fed_learning import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    if name == "build_jax_federated_averaging_process":  # TFF's canned FedAvg for JAX (fed-jax)
        try:
            from fed._jax import build_jax_federated_averaging_process
        except ModuleNotFoundError as error:
            raise AttributeError(str(error)) from None
        return build_jax_federated_averaging_process
    raise AttributeError(f"module 'fed.learning' has no attribute {name!r}")
