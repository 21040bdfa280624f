"""The JAX frontend: `computation` traces a Python function with `jax.jit` and exports it to StableHLO,
the payload of a compiled leaf of fed's IR."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax import export

from fed_core.framework import (
    CompiledComputation,
    Computation,
    make_decorator,
    register_internal_package,
)
from fed_jax._payload import JaxPayload
from fed_jax._plugin import FRONTEND
from fed_jax._structure import UnsupportedTypeError, flatten, leaf_types, pack, result_type
from fed_types import FunctionType, StructType, TensorType, Type

register_internal_package(__file__)


def _symbolic_specs(inputs: Sequence[TensorType], batched: bool) -> list[jax.ShapeDtypeStruct]:
    """Shape specs of the inputs; unknown dimensions (and the client axis, when `batched`) are symbolic."""
    names: list[str] = ["clients"] if batched else []
    for k, t in enumerate(inputs):
        if t.shape is None:
            raise UnsupportedTypeError(f"{t} has an unknown rank, which JAX cannot trace")
        names += [f"d{k}_{j}" for j, d in enumerate(t.shape) if d is None]
    symbols = iter(export.symbolic_shape(",".join(names)) if names else ())
    batch = next(symbols) if batched else None
    specs = []
    for t in inputs:
        shape = tuple(next(symbols) if d is None else d for d in t.shape)  # type: ignore[union-attr]
        specs.append(jax.ShapeDtypeStruct(((batch,) if batched else ()) + shape, t.dtype))
    return specs


def _trace(fn: Callable[..., Any], parameter_type: Type | None, spread: bool) -> Computation:
    name = getattr(fn, "__name__", "computation")
    try:
        inputs = leaf_types(parameter_type)
        specs = _symbolic_specs(inputs, batched=False)
    except UnsupportedTypeError as error:
        raise TypeError(
            f"The JAX computation {name} cannot take {parameter_type}: {error}."
        ) from None

    if spread:
        assert isinstance(parameter_type, StructType)
        counts = [len(leaf_types(element)) for element in parameter_type]

        def call_user(*leaves: Any) -> Any:
            arguments, start = [], 0
            for element, count in zip(parameter_type, counts):
                arguments.append(pack(leaves[start : start + count], element))
                start += count
            return fn(*arguments)

    elif parameter_type is None:

        def call_user(*leaves: Any) -> Any:
            return fn()

    else:

        def call_user(*leaves: Any) -> Any:
            return fn(pack(leaves, parameter_type))

    try:
        shapes = jax.eval_shape(call_user, *specs)
    except UnsupportedTypeError as error:
        raise TypeError(
            f"The JAX computation {name} cannot take {parameter_type}: {error}."
        ) from None
    except TypeError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "not a valid JAX type" in first_line:
            raise TypeError(
                f"The JAX computation {name} must return arrays or containers of them (dicts, lists, "
                f"tuples, named tuples, dataclasses): {first_line}"
            ) from None
        raise TypeError(
            f"Tracing the JAX computation {name} for {parameter_type} failed: {first_line}"
        ) from None
    if shapes is None:
        raise TypeError(
            f"The JAX computation {name} returned None: a computation must return a value."
        )
    try:
        result = result_type(shapes)
        leaf_types(result)
    except UnsupportedTypeError as error:
        raise TypeError(
            f"The JAX computation {name} cannot return what it returns: {error}."
        ) from None

    def flat(*leaves: Any) -> tuple[Any, ...]:
        return tuple(flatten(call_user(*leaves), result))

    single = export.export(jax.jit(flat))(*specs).serialize()
    batched = None
    if inputs:
        try:
            batched_specs = _symbolic_specs(inputs, batched=True)
            batched = export.export(jax.jit(jax.vmap(flat)))(*batched_specs).serialize()
        except Exception:  # noqa: BLE001 (a function JAX cannot batch runs client by client)
            batched = None
    payload = JaxPayload(bytes(single), None if batched is None else bytes(batched))
    leaf = CompiledComputation(
        FRONTEND, payload.encode(), FunctionType(parameter_type, result), name
    )
    return Computation(leaf, name)


computation = make_decorator(_trace)
computation.__doc__ = """Defines a fed computation from a Python function written with JAX.

    `@computation(type_spec, ...)` (one type per parameter, traced now), `@computation` (polymorphic:
    traced at first call for each argument type), or `computation(fn, type_spec, ...)`. The function is
    traced with `jax.jit` and exported to StableHLO; it receives arrays, and structs in their Python
    containers (an OrderedDict where the elements are named and no container is declared, else a
    tuple), and may return arrays or containers of them. Its leaf runs wherever fed-jax is installed,
    inside federated computations, beside TensorFlow leaves; a `federated_map` of it over clients runs
    as one vectorized call. Parameters are tensors and structs of them (JAX has no datasets); 64-bit
    types need `jax_enable_x64`.
    """
