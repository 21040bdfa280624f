"""The JAX backend: runs the compiled leaves of the "jax" frontend.

A leaf is loaded once: its StableHLO modules are deserialized with `jax.export` and jitted. A
`federated_map` over clients runs as one call of the vectorized module on the clients' stacked inputs,
and returns the stacked results, which fed's aggregations reduce without splitting them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor as PoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from fed_core.framework import Backend, ClientValues, CompiledComputation, LoadedComputation
from fed_jax._payload import JaxPayload
from fed_jax._structure import flatten, leaf_types, pack_struct
from fed_types import FunctionType, TensorType


def _device(name: str) -> Any:
    """A JAX device from a name such as "/GPU:1", "gpu:1" or "/device:CPU:0"."""
    text = name.strip("/").lower().removeprefix("device:")
    platform, _, index = text.partition(":")
    try:
        return jax.devices(platform)[int(index or 0)]
    except (RuntimeError, ValueError, IndexError):
        raise ValueError(
            f"Unknown device {name!r}: JAX's devices are {[str(d) for d in jax.devices()]}."
        ) from None


class JaxBackend(Backend):
    """Runs JAX leaves, on `devices[0]` when given (else JAX's default device)."""

    def __init__(self, devices: Sequence[str] | None = None):
        if devices is not None and (isinstance(devices, str) or not devices):
            raise TypeError(f"devices must be a non-empty list of device names, got {devices!r}.")
        self.devices = None if devices is None else list(devices)
        self.device = None if devices is None else _device(devices[0])
        self.batched_calls = 0
        """How many maps over clients ran as one vectorized call."""
        self.last_batched_clients = 0
        self._lock = threading.Lock()

    def load(self, computation: CompiledComputation) -> LoadedJaxComputation:
        return LoadedJaxComputation(computation, self)

    def check(self, computation: CompiledComputation) -> None:
        _read_modules(computation)

    def record_batched_call(self, num_clients: int) -> None:
        with self._lock:
            self.batched_calls += 1
            self.last_batched_clients = num_clients


def _as_input(value: Any, t: TensorType) -> Any:
    if isinstance(value, jax.Array) and value.dtype == t.dtype:
        return value
    return np.asarray(value, dtype=t.dtype)


def _deserialize(data: bytes, name: str) -> Any:
    try:
        return export.deserialize(bytearray(data))
    except Exception as error:  # noqa: BLE001 (whatever the bytes are, the leaf is refused clearly)
        raise ValueError(
            f"The JAX leaf {name} holds no readable exported module: {error!r}."
        ) from None


def _check_module(
    module: Any,
    inputs: list[TensorType],
    outputs: list[TensorType],
    name: str,
    fn_type: FunctionType,
    batched: bool,
) -> None:
    """Refuses a module whose arrays in or out are not those the leaf's fed type says (a payload edited
    apart from its type), and one that calls back into Python."""

    def fits(avals: Any, types: list[TensorType]) -> bool:
        if len(avals) != len(types):
            return False
        for aval, t in zip(avals, types):
            shape = tuple(aval.shape)[1:] if batched else tuple(aval.shape)
            if np.dtype(aval.dtype) != t.dtype or len(shape) != len(t.shape):  # type: ignore[arg-type]
                return False
            if any(d is not None and d != s for d, s in zip(t.shape, shape)):  # type: ignore[arg-type]
                return False
        return True

    if not fits(module.in_avals, inputs) or not fits(module.out_avals, outputs):
        form = "vectorized " if batched else ""
        raise ValueError(
            f"The {form}module of the JAX leaf {name} takes {list(module.in_avals)} and returns "
            f"{list(module.out_avals)}, which is not what its type {fn_type} says."
        )
    text = module.mlir_module()
    if "callback" in text and "custom_call" in text:
        raise ValueError(
            f"The JAX leaf {name} calls back into Python, which a computation file may not."
        )


def _read_modules(computation: CompiledComputation) -> tuple[Any, Any | None]:
    """The leaf's exported modules (the vectorized one or None), each checked against the leaf's type;
    ValueError if the payload does not parse or does not fit. Deserializing runs nothing."""
    name = computation.name or "computation"
    fn_type = computation.type_signature
    assert isinstance(fn_type, FunctionType)
    inputs, outputs = leaf_types(fn_type.parameter), leaf_types(fn_type.result)
    payload = JaxPayload.decode(computation.payload)
    single = _deserialize(payload.single, name)
    _check_module(single, inputs, outputs, name, fn_type, batched=False)
    if payload.batched is None:
        return single, None
    batched = _deserialize(payload.batched, name)
    _check_module(batched, inputs, outputs, name, fn_type, batched=True)
    return single, batched


class LoadedJaxComputation(LoadedComputation):
    """One JAX leaf, ready to run: called with values in executor form, returns JAX arrays, and structs
    as `fed_types.Struct`s."""

    def __init__(self, computation: CompiledComputation, backend: JaxBackend):
        self._backend = backend
        self._name = computation.name or "computation"
        fn_type = computation.type_signature
        assert isinstance(fn_type, FunctionType)
        self._parameter = fn_type.parameter
        self._result = fn_type.result
        self._inputs = leaf_types(fn_type.parameter)
        single, batched = _read_modules(computation)
        self._single = jax.jit(single.call)
        self._batched: Callable[..., Any] | None = None if batched is None else batched.call
        self._batched_by_sharing: dict[tuple[bool, ...], Any] = {}
        self._lock = threading.Lock()

    def _inputs_of(self, argument: Any) -> list[Any]:
        return [_as_input(v, t) for v, t in zip(flatten(argument, self._parameter), self._inputs)]

    def _place(self, leaves: list[Any]) -> list[Any]:
        device = self._backend.device
        return leaves if device is None else [jax.device_put(x, device) for x in leaves]

    def __call__(self, argument: Any = None) -> Any:
        outputs = self._single(*self._place(self._inputs_of(argument)))
        return pack_struct(list(outputs), self._result)

    def map(self, clients: ClientValues, pool: PoolExecutor | None) -> ClientValues:
        if self._batched is None or len(clients) < 2:
            return super().map(clients, pool)
        if clients.is_stacked:
            leaves, shared = self._inputs_of(clients.stacked()), (False,) * len(self._inputs)
        else:
            gathered = self._gather(clients.members())
            if gathered is None:  # clients whose unknown dimensions differ: one call each
                return super().map(clients, pool)
            leaves, shared = gathered
        if all(shared):  # every client has the same input: one call, its result for each
            return ClientValues([self(clients.members()[0])] * len(clients))
        self._backend.record_batched_call(len(clients))
        outputs = self._batched_with(shared)(*self._place(leaves))
        return ClientValues(stacked=pack_struct(list(outputs), self._result), size=len(clients))

    def _gather(self, members: list[Any]) -> tuple[list[Any], tuple[bool, ...]] | None:
        """Each input leaf: one array when every client has the same one (a broadcast value), else the
        clients' leaves stacked along a new client axis; None if the clients' shapes differ."""
        columns = list(zip(*(flatten(m, self._parameter) for m in members)))
        leaves, shared = [], []
        for column, t in zip(columns, self._inputs):
            first = column[0]
            same = all(x is first for x in column)
            shared.append(same)
            if same:
                leaves.append(_as_input(first, t))
                continue
            arrays = [np.asarray(x, t.dtype) for x in column]
            if len({a.shape for a in arrays}) > 1:
                return None
            leaves.append(np.stack(arrays))
        return leaves, tuple(shared)

    def _batched_with(self, shared: tuple[bool, ...]) -> Any:
        """The vectorized module, taking the shared inputs once: they are broadcast along the client axis
        inside the compiled function, where XLA folds the broadcast into the operations that use it (a
        model shared by every client is multiplied with all their batches in one product)."""
        with self._lock:
            function = self._batched_by_sharing.get(shared)
            if function is None:
                batched = self._batched
                assert batched is not None  # map() calls this only for a batched computation
                size_from = shared.index(False)

                def run(*leaves: Any) -> Any:
                    n = leaves[size_from].shape[0]
                    return batched(
                        *(
                            jnp.broadcast_to(x, (n, *x.shape)) if is_shared else x
                            for x, is_shared in zip(leaves, shared)
                        )
                    )

                function = self._batched_by_sharing[shared] = jax.jit(run)
        return function


_default_backend: JaxBackend | None = None
_device_backends: dict[tuple[str, ...], JaxBackend] = {}
_backends_lock = threading.Lock()


def backend(devices: Sequence[str] | None = None) -> JaxBackend:
    """The backend the "jax" frontend registers: one for the process, and one per list of devices that
    an execution context is given."""
    global _default_backend
    with _backends_lock:
        if devices is None:
            if _default_backend is None:
                _default_backend = JaxBackend()
            return _default_backend
        key = tuple(devices)
        if key not in _device_backends:
            _device_backends[key] = JaxBackend(devices)
        return _device_backends[key]
