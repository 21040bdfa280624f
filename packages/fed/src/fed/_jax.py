"""`fed.jax`: computations written in JAX (fed-jax, installed with `pip install fed-framework[jax]`)."""

try:
    from fed_jax import build_jax_federated_averaging_process, computation
except ModuleNotFoundError as error:  # pragma: no cover (fed-jax is an optional part of fed)
    if error.name not in ("fed_jax", "jax", "jaxlib"):
        raise
    raise ModuleNotFoundError(
        "fed.jax needs the fed-jax package (and JAX): pip install 'fed-framework[jax]'",
        name=error.name,
    ) from None

jax_computation = computation

__all__ = ["build_jax_federated_averaging_process", "computation", "jax_computation"]
