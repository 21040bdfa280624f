"""A small frontend of plain Python/numpy functions, for testing fed-core and executor plugins without
TensorFlow.

`@python_computation(parameter_types..., result_type=T)` makes a `Computation` whose compiled leaf holds the
function's source code, so it serializes and runs in another process. The function must be self-contained:
its body may use `np` (numpy) and `Struct`, and nothing else from its module.

Its backend runs the source text stored in a leaf, so it is for tests only: it is never registered by an
installed entry point. A test registers it with `register_python_frontend()` (or the `fed_python_frontend`
fixture), and only then do computation files with "python" leaves load and run in that process.
"""

from __future__ import annotations

import inspect
import json
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from fed_core import plugins
from fed_core.execution.backends import Backend, LoadedComputation
from fed_core.execution.values import ClientValues, to_executor_form
from fed_core.ir import building_blocks as bb
from fed_core.plugins import Registry, hookimpl
from fed_core.tracing.computation import Computation
from fed_types import (
    FunctionType,
    SequenceType,
    Struct,
    StructType,
    TensorType,
    Type,
    to_type,
)

FRONTEND = "python"


def _source_without_decorators(fn: Callable[..., Any]) -> str:
    try:
        lines = textwrap.dedent(inspect.getsource(fn)).splitlines()
    except (OSError, TypeError):
        lines = []
    start = next(
        (k for k, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def "))),
        None,
    )
    if start is None or getattr(fn, "__name__", "<lambda>") == "<lambda>":
        raise TypeError(
            f"python_computation needs a function defined with def, whose source it stores; got "
            f"{fn!r}."
        )
    return "\n".join(lines[start:]) + "\n"


def python_computation(
    *parameter_types: Any, result_type: Any
) -> Callable[[Callable[..., Any]], Computation]:
    """Wraps a Python/numpy function as a compiled leaf of the "python" frontend.

    One type per parameter (several become one struct parameter, passed spread), and the result type.
    """

    def wrap(fn: Callable[..., Any]) -> Computation:
        names = list(inspect.signature(fn).parameters)
        if len(parameter_types) != len(names):
            raise TypeError(
                f"{fn.__name__} has {len(names)} parameters but {len(parameter_types)} types were given."
            )
        if not names:
            parameter: Type | None = None
        elif len(names) == 1:
            parameter = to_type(parameter_types[0])
        else:
            parameter = StructType([(n, to_type(t)) for n, t in zip(names, parameter_types)])
        payload = json.dumps(
            {
                "source": _source_without_decorators(fn),
                "name": fn.__name__,
                "spread": len(names) > 1,
            }
        ).encode()
        leaf = bb.CompiledComputation(
            FRONTEND, payload, FunctionType(parameter, to_type(result_type)), fn.__name__
        )
        return Computation(leaf, fn.__name__)

    return wrap


def _to_executor_form(value: Any, t: Type) -> Any:
    if isinstance(t, TensorType):
        # Strings stay as given (text or bytes): a cast to numpy's str would spell bytes' repr.
        return np.asarray(value) if t.dtype.kind == "U" else np.asarray(value, dtype=t.dtype)
    if isinstance(t, StructType):
        struct = to_executor_form(value)
        return Struct((name, _to_executor_form(v, et)) for (name, et), v in zip(t.items(), struct))
    if isinstance(t, SequenceType):
        return [_to_executor_form(e, t.element) for e in value]
    return value


class _LoadedPythonComputation(LoadedComputation):
    def __init__(
        self,
        fn: Callable[..., Any],
        type_signature: FunctionType,
        spread: bool,
        backend: PythonBackend,
    ):
        self._fn = fn
        self._type = type_signature
        self._spread = spread
        self._backend = backend

    def __call__(self, argument: Any = None) -> Any:
        if self._type.parameter is None:
            result = self._fn()
        elif self._spread:
            result = self._fn(*argument)
        else:
            result = self._fn(argument)
        return _to_executor_form(result, self._type.result)

    def map(self, clients: ClientValues, pool: Executor | None) -> ClientValues:
        self._backend.record_map(len(clients))
        return super().map(clients, pool)


class PythonBackend(Backend):
    """Runs "python" leaves by compiling their source once. Counts the batched map calls it receives, so
    tests can check that an executor hands a whole `federated_map` over in one call."""

    def __init__(self, devices: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self.map_calls: list[int] = []
        self.devices = devices

    def record_map(self, num_clients: int) -> None:
        with self._lock:
            self.map_calls.append(num_clients)

    def check(self, computation: bb.CompiledComputation) -> None:
        try:
            spec = json.loads(computation.payload)
            compile(spec["source"], f"<python computation {spec['name']}>", "exec")
        except (ValueError, KeyError, TypeError, SyntaxError) as error:
            raise ValueError(f"The payload is not a python computation's: {error!r}.") from None

    def load(self, computation: bb.CompiledComputation) -> LoadedComputation:
        spec = json.loads(computation.payload)
        fn_type = computation.type_signature
        if not isinstance(fn_type, FunctionType):
            raise TypeError(f"A python computation has a function type, got {fn_type}.")
        namespace: dict[str, Any] = {"np": np, "Struct": Struct}
        exec(compile(spec["source"], f"<python computation {spec['name']}>", "exec"), namespace)  # noqa: S102
        return _LoadedPythonComputation(namespace[spec["name"]], fn_type, spec["spread"], self)


_backend = PythonBackend()


def python_backend(devices: list[str] | None = None) -> PythonBackend:
    """The backend instance the "python" frontend registers (one per process), or a new one for a context
    given `devices` (which it only records)."""
    return _backend if devices is None else PythonBackend(list(devices))


@hookimpl
def fed_register_backends(register: Registry) -> None:
    register.add(FRONTEND, python_backend)


PLUGIN_NAME = "fed-core-python-frontend"


def register_python_frontend(system: plugins.PluginSystem | None = None) -> None:
    """Registers the "python" frontend's backend into `system` (default: fed's default plugin system), if
    it is not there yet. For tests and benchmarks only: its backend runs code stored in computations."""
    import sys

    registry = (
        system.registry("backends") if system is not None else plugins.get_registry("backends")
    )
    if FRONTEND in registry:
        return
    module = sys.modules[__name__]
    if system is None:
        plugins.register_plugin(module, PLUGIN_NAME)
    else:
        system.register(module, PLUGIN_NAME)
