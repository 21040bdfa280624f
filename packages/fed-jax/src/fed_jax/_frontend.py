"""The JAX frontend: `computation` traces a Python function with `jax.jit` and exports it to StableHLO,
the payload of a compiled leaf of fed's IR."""

from __future__ import annotations

import logging
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
from fed_jax._structure import UnsupportedTypeError, leaf_types, pack, result_leaves
from fed_types import FunctionType, StructType, TensorType, Type

register_internal_package(__file__)
_logger = logging.getLogger(__name__)


def _symbolic_specs(
    inputs: Sequence[TensorType], batched: bool, shared_dims: bool
) -> list[jax.ShapeDtypeStruct]:
    """Shape specs of the inputs; unknown dimensions (and the client axis, when `batched`) are symbolic.

    Each unknown dimension has a symbol of its own, or, with `shared_dims`, one symbol per position (every
    unknown first dimension the same size, and so on), which functions that combine their inputs need.
    """
    shapes: list[tuple[int | None, ...]] = []
    for t in inputs:
        if not isinstance(t.shape, tuple):  # UNKNOWN_RANK
            raise UnsupportedTypeError(f"{t} has an unknown rank, which JAX cannot trace")
        shapes.append(t.shape)
    names: list[str] = ["clients"] if batched else []
    dims: list[list[str | int]] = []
    for k, known in enumerate(shapes):
        shape: list[str | int] = []
        for j, d in enumerate(known):
            if d is None:
                symbol = f"d{j}" if shared_dims else f"d{k}_{j}"
                if symbol not in names:
                    names.append(symbol)
                shape.append(symbol)
            else:
                shape.append(d)
        dims.append(shape)
    symbols = dict(zip(names, export.symbolic_shape(",".join(names)))) if names else {}
    batch = (symbols["clients"],) if batched else ()
    return [
        jax.ShapeDtypeStruct(
            batch + tuple(symbols[d] if isinstance(d, str) else d for d in shape), t.dtype
        )
        for shape, t in zip(dims, inputs)
    ]


def _caller(
    fn: Callable[..., Any], parameter_type: Type | None, spread: bool
) -> Callable[..., Any]:
    """`fn` as a function of the parameter's leaves (in the order of its fed type)."""
    if spread:
        assert isinstance(parameter_type, StructType)
        counts = [len(leaf_types(element)) for element in parameter_type]

        def call_user(*leaves: Any) -> Any:
            arguments, start = [], 0
            for element, count in zip(parameter_type, counts):
                arguments.append(pack(leaves[start : start + count], element))
                start += count
            return fn(*arguments)

        return call_user
    if parameter_type is None:
        return lambda *leaves: fn()
    return lambda *leaves: fn(pack(leaves, parameter_type))


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def _export(
    name: str, parameter_type: Type | None, call_user: Callable[..., Any], shared_dims: bool
) -> tuple[bytes, bytes | None, Type]:
    """The function exported once as it is and once vectorized, and its result type.

    The result type comes from what the function returns while it is traced (so a dict keeps the order
    of its keys), and the function is traced twice in all.
    """
    inputs = leaf_types(parameter_type)
    recorded: list[Type] = []

    def flat(*leaves: Any) -> tuple[Any, ...]:
        out = call_user(*leaves)
        if out is None:
            raise UnsupportedTypeError("it returned None: a computation must return a value")
        out_leaves, out_type = result_leaves(out)
        if not recorded:
            recorded.append(out_type)
        return tuple(out_leaves)

    single = export.export(jax.jit(flat))(*_symbolic_specs(inputs, False, shared_dims))
    result = recorded[0]
    leaf_types(result)  # results JAX cannot give fed (64-bit without x64) are refused here
    batched = None
    if inputs:
        try:
            specs = _symbolic_specs(inputs, True, shared_dims)
            batched = bytes(export.export(jax.jit(jax.vmap(flat)))(*specs).serialize())
        except Exception as error:  # noqa: BLE001 (a function JAX cannot batch runs client by client)
            _logger.info(
                "The JAX computation %s has no vectorized form: %s", name, _first_line(error)
            )
    return bytes(single.serialize()), batched, result


def _trace(fn: Callable[..., Any], parameter_type: Type | None, spread: bool) -> Computation:
    name = getattr(fn, "__name__", "computation")
    try:
        leaf_types(parameter_type)
        call_user = _caller(fn, parameter_type, spread)
    except UnsupportedTypeError as error:
        raise TypeError(
            f"The JAX computation {name} cannot take {parameter_type}: {error}."
        ) from None
    try:
        try:
            single, batched, result = _export(name, parameter_type, call_user, shared_dims=False)
        except UnsupportedTypeError:
            raise
        except Exception as independent:
            if not _has_unknown_dims(parameter_type):
                raise
            try:  # unknown dimensions that the function combines: same size at the same position
                single, batched, result = _export(name, parameter_type, call_user, shared_dims=True)
            except Exception:
                raise independent from None
    except UnsupportedTypeError as error:
        raise TypeError(
            f"The JAX computation {name} cannot return what it returns: {error}."
        ) from error
    except Exception as error:
        hint = (
            "; its parameter has unknown dimensions, which JAX traces as symbols: declare the sizes you "
            "know in the type"
            if _has_unknown_dims(parameter_type)
            else ""
        )
        raise TypeError(
            f"Tracing the JAX computation {name} for {parameter_type} failed: {_first_line(error)}{hint}"
        ) from error
    payload = JaxPayload(single, batched)
    leaf = CompiledComputation(
        FRONTEND, payload.encode(), FunctionType(parameter_type, result), name
    )
    return Computation(leaf, name)


def _has_unknown_dims(t: Type | None) -> bool:
    try:
        return any(
            not isinstance(leaf.shape, tuple) or None in leaf.shape for leaf in leaf_types(t)
        )
    except UnsupportedTypeError:
        return False


computation = make_decorator(_trace)
computation.__doc__ = """Defines a fed computation from a Python function written with JAX.

    `@computation(type_spec, ...)` (one type per parameter, traced now), `@computation` (polymorphic:
    traced at first call for each argument type), or `computation(fn, type_spec, ...)`. The function is
    traced with `jax.jit` and exported to StableHLO. It receives arrays, and structs in their Python
    containers (an OrderedDict where the elements are named and no container is declared, else a
    tuple); it may return arrays or containers of them (dicts, lists, tuples, named tuples). Its leaf
    runs wherever fed-jax is installed, inside federated computations, beside TensorFlow leaves; a
    `federated_map` of it over clients runs as one vectorized call. Parameters are tensors and structs
    of them (JAX has no datasets); 64-bit types need `jax_enable_x64`. Unknown dimensions are traced as
    symbols: each its own, or, if the function needs it, one per position.
    """
