"""`Computation`: a typed, serializable function that can be called from Python or from another computation."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fed_core._errors import FederatedTypeError
from fed_core.execution.context import get_context
from fed_core.execution.values import NO_ARGUMENT
from fed_core.ir import building_blocks as bb
from fed_types import (
    FunctionType,
    Struct,
    StructType,
    TensorType,
    Type,
    TypeNotAssignableError,
    infer_type,
)


class Computation:
    """A computation with a fixed type signature, backed by a building block (a Lambda, or a frontend's
    compiled leaf). Calling it runs it in the current context, or, while tracing another computation, adds
    a call to the traced IR."""

    def __init__(
        self,
        building_block: bb.ComputationBuildingBlock,
        name: str = "",
        parameter_names: Sequence[str] | None = None,
    ):
        if not isinstance(building_block, bb.ComputationBuildingBlock):
            raise TypeError(
                f"A computation is made from a building block, got {building_block!r} of Python "
                f"type {type(building_block).__qualname__}."
            )
        if not isinstance(building_block.type_signature, FunctionType):
            raise TypeError(
                f"A computation must have a function type, got {building_block.type_signature}."
            )
        self._building_block = building_block
        self._name = name
        self._parameter_names = None if parameter_names is None else tuple(parameter_names)

    @property
    def type_signature(self) -> FunctionType:
        return self._building_block.type_signature  # type: ignore[return-value]

    @property
    def building_block(self) -> bb.ComputationBuildingBlock:
        return self._building_block

    @property
    def name(self) -> str:
        return self._name

    @property
    def parameter_names(self) -> tuple[str, ...] | None:
        """The names of the Python function's parameters, when it was traced from one."""
        return self._parameter_names

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argument = pack_arguments(
            self.type_signature, args, kwargs, self._name, self._parameter_names
        )
        return get_context().invoke(self, argument)

    def __repr__(self) -> str:
        name = f" {self._name}" if self._name else ""
        return f"<Computation{name}: {self.type_signature}>"

    def __str__(self) -> str:
        return str(self._building_block)


def pack_arguments(
    fn_type: FunctionType,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str = "",
    parameter_names: Sequence[str] | None = None,
) -> Any:
    """Turns Python call arguments into the single argument a computation of type `fn_type` takes.

    Several positional or keyword arguments fill a struct parameter in order and by name; a single positional
    argument is the whole parameter, and so is a single keyword argument named as the one parameter of the
    Python function (`parameter_names`) the computation was traced from.
    """
    parameter = fn_type.parameter
    label = f"computation {name} of type {fn_type}" if name else f"computation of type {fn_type}"
    if parameter is None:
        if args or kwargs:
            raise TypeError(
                f"The {label} takes no arguments, but {len(args) + len(kwargs)} were given."
            )
        return NO_ARGUMENT
    if len(args) == 1 and not kwargs:
        return args[0]
    single = (
        parameter_names[0] if parameter_names is not None and len(parameter_names) == 1 else None
    )
    if not args and single is not None and list(kwargs) == [single]:
        return kwargs[single]
    if not isinstance(parameter, StructType):
        given = [f"{len(args)} positional arguments"] if args else []
        given += [f"the keyword arguments {sorted(kwargs)}"] if kwargs else []
        how = f"by position or as {single}=..." if single is not None else "by position"
        raise TypeError(
            f"The {label} takes one argument ({parameter}), given {how}; got "
            f"{' and '.join(given) or 'none'}."
        )
    if len(args) + len(kwargs) != len(parameter):
        raise TypeError(
            f"The {label} takes {len(parameter)} arguments ({parameter}), but {len(args) + len(kwargs)} were given."
        )
    names = parameter.names()
    values: list[Any] = list(args)
    for name_ in names[len(args) :]:
        if name_ is None or name_ not in kwargs:
            raise TypeError(
                f"The {label} needs argument {name_!r}; keyword arguments given: {sorted(kwargs)}."
            )
        values.append(kwargs.pop(name_))
    if kwargs:
        raise TypeError(f"The {label} got unexpected keyword arguments {sorted(kwargs)}.")
    return Struct(zip(names, values))


class PolymorphicComputation:
    """A computation defined without parameter types: traced on first call for each argument type, and cached.

    `tracer(parameter_type_or_None)` returns the Computation for that parameter type.
    """

    def __init__(self, fn: Callable[..., Any], tracer: Callable[[Type | None], Computation]):
        self._fn = fn
        self._tracer = tracer
        self._cache: dict[Type | None, Computation] = {}
        self._lock = threading.Lock()
        self._num_parameters = len(inspect.signature(fn).parameters)
        self.__name__ = getattr(fn, "__name__", "computation")
        self.__doc__ = getattr(fn, "__doc__", None)

    def concrete(self, parameter_type: Type | None) -> Computation:
        """The computation traced for `parameter_type` (traced now if it was not already)."""
        with self._lock:
            computation = self._cache.get(parameter_type)
        if computation is None:
            computation = self._tracer(parameter_type)
            with self._lock:
                self._cache.setdefault(parameter_type, computation)
        return computation

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._num_parameters == 0:
            if args or kwargs:
                raise TypeError(
                    f"{self.__name__} takes no arguments, but {len(args) + len(kwargs)} were given."
                )
            return self.concrete(None)()
        values = _bind(self._fn, args, kwargs)
        types = [_type_of(v) for _, v in values]
        if len(values) == 1:
            parameter_type = types[0]
        else:
            parameter_type = StructType([(n, t) for (n, _), t in zip(values, types)])
        try:
            computation = self.concrete(parameter_type)
        except (TypeError, ValueError) as error:
            dtypes = _tensor_dtypes(parameter_type)
            if len(dtypes) < 2 or isinstance(error, (FederatedTypeError, TypeNotAssignableError)):
                raise  # fed's own errors say what is wrong already
            # The types come from the values (a Python int is int32, a float float32): arguments of
            # different dtypes are the likely cause, and the framework's message does not say so.
            raise TypeError(
                f"{self.__name__} was called with arguments of different dtypes "
                f"({', '.join(sorted(dtypes))}), {parameter_type} as inferred from their values, "
                f"and tracing it for that type failed: {_last_line(error)} Pass arguments of the "
                f"dtypes it computes with (1.0, not 1, for a float32), or declare its parameter "
                f"types in the decorator."
            ) from error
        if len(values) == 1:
            return computation(values[0][1])
        return computation(*[v for _, v in values])

    def __repr__(self) -> str:
        return f"<PolymorphicComputation {self.__name__}: traced for {len(self._cache)} parameter types>"


def _tensor_dtypes(t: Type) -> set[str]:
    """The names of the dtypes of the numeric tensors in `t` (looking into structs, sequences and
    federated types)."""
    if isinstance(t, TensorType):
        return {t.dtype.name} if t.dtype.kind in "biufc" else set()
    return set().union(*(_tensor_dtypes(child) for child in t.children()))


def _last_line(error: BaseException) -> str:
    """The last line of an error's message: frameworks put their traceback before it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text if text.endswith(".") else text + "."


def _type_of(value: Any) -> Type:
    """The type of an argument: declared by symbolic values, computations and data descriptors, else
    inferred from the Python value."""
    declared = getattr(value, "type_signature", None)
    return declared if isinstance(declared, Type) else infer_type(value)


def _bind(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[str, Any]]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"Cannot call {getattr(fn, '__name__', fn)}: {e}") from None
    bound.apply_defaults()
    return list(bound.arguments.items())
