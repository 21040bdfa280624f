"""The local executor: evaluates the IR of a computation in this process.

Values at CLIENTS are `ClientValues` (one member per client); values at SERVER are plain values. Client work
(`federated_map`, `federated_eval`) runs concurrently on a thread pool, and a whole map is handed to the
function's backend in one call so that it can be vectorized. Results do not depend on the concurrency.

It is fed-core's own executor plugin, registered as "local" through the same hook a third party uses,
and built only on the public execution interface: intrinsics come from the "intrinsics" registry,
compiled leaves from the "backends" registry, `Data` blocks from data backends.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fed_core import plugins
from fed_core.execution.backends import Backend, LeafCache, LoadedComputation
from fed_core.execution.data import materialize
from fed_core.execution.interface import (
    ExecutionContext,
    ExecutionState,
    Executor,
    FunctionValue,
    map_argument_blocks,
)
from fed_core.execution.values import NO_ARGUMENT
from fed_core.ir import building_blocks as bb
from fed_types import FunctionType, Struct


class _Env:
    """A persistent chain of name bindings (one per Lambda parameter or Block local)."""

    __slots__ = ("_name", "_value", "_parent")

    def __init__(self, name: str | None, value: Any, parent: _Env | None):
        self._name = name
        self._value = value
        self._parent = parent

    def bind(self, name: str, value: Any) -> _Env:
        return _Env(name, value, self)

    def lookup(self, name: str) -> Any:
        env: _Env | None = self
        while env is not None:
            if env._name == name:
                return env._value
            env = env._parent
        raise NameError(f"The reference {name!r} is not bound: the computation is malformed.")


_EMPTY = _Env(None, None, None)


class _State(ExecutionState):
    def __init__(self, executor: LocalExecutor, num_clients: int):
        self.executor = executor
        self.num_clients = num_clients
        self._worker = threading.local()

    @property
    def pool(self) -> ThreadPoolExecutor | None:
        return self.executor.pool

    def pool_for_client_work(self) -> ThreadPoolExecutor | None:
        return None if getattr(self._worker, "active", False) else self.executor.pool

    @contextlib.contextmanager
    def in_client_work(self) -> Iterator[None]:
        previous = getattr(self._worker, "active", False)
        self._worker.active = True
        try:
            yield
        finally:
            self._worker.active = previous


_Resolved = Callable[[_State], FunctionValue]


def _leaf_function(node: bb.CompiledComputation, loaded: Any) -> _Resolved:
    """The function value of a compiled leaf, the same in every evaluation."""
    return lambda state: FunctionValue(node.type_signature, loaded, loaded, block=node)


def _structural(block: bb.Lambda) -> Callable[[Any], Any] | None:
    """The lambda as a plain Python function if its result only selects from and regroups its
    parameter (as `x -> <x[1], x.update>` does), else None.

    Such a function does the same on a client's value and on all clients' values stacked, so a
    `federated_map` of it runs once on the stacked form rather than once per client.
    """
    name = block.parameter_name

    def compile_(node: bb.ComputationBuildingBlock) -> Callable[[Any], Any] | None:
        if isinstance(node, bb.Reference):
            return (lambda x: x) if node.name == name else None
        if isinstance(node, bb.Selection):
            source, index = compile_(node.source), node.index
            return None if source is None else (lambda x: source(x)[index])
        if isinstance(node, bb.Struct):
            parts = [(element_name, compile_(e)) for element_name, e in node.elements]
            if any(part is None for _, part in parts):
                return None
            return lambda x: Struct((n, part(x)) for n, part in parts)  # type: ignore[misc]
        return None

    return None if name is None else compile_(block.result)


class _Plan:
    """A computation's intrinsics and leaves, resolved once, which of its lambdas are closed, and
    which of those only select from their parameter (see `_structural`)."""

    __slots__ = ("resolved", "closed", "structural")

    def __init__(
        self,
        resolved: dict[int, _Resolved],
        closed: set[int],
        structural: dict[int, Callable[[Any], Any]],
    ):
        self.resolved = resolved
        self.closed = closed
        self.structural = structural


MAX_PLANS = 1024
"""How many computations' resolved intrinsics and leaves an executor keeps."""


class LocalExecutor(Executor):
    """Evaluates building blocks in this process, with a pool of `max_concurrency` threads for client work.

    `devices` go to the backends that run compiled leaves (for example `["/GPU:0", "/GPU:1"]` for
    TensorFlow), for this executor only; `data_backend` materializes `Data` blocks (else the data backend
    registered under the URI's scheme). `intrinsics` maps URIs to implementations (called as
    `implementation(state, fn_type, argument)`) that replace the registered ones in this executor: how an
    executor built on this one, such as a distributed one, runs some intrinsics its own way.
    """

    def __init__(
        self,
        max_concurrency: int | None = None,
        *,
        devices: Sequence[str] | None = None,
        data_backend: Any = None,
        intrinsics: Mapping[str, Callable[..., Any]] | None = None,
    ):
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be a positive number of threads, got {max_concurrency!r}."
            )
        if devices is not None and (
            isinstance(devices, str)
            or not isinstance(devices, Sequence)
            or not all(isinstance(d, str) for d in devices)
        ):
            raise TypeError(
                f"devices must be a list of device names such as ['/GPU:0'], got {devices!r}."
            )
        if data_backend is not None and not callable(getattr(data_backend, "materialize", None)):
            raise TypeError(
                f"data_backend must be a fed_core.execution.DataBackend (with a materialize method), got "
                f"{data_backend!r}."
            )
        self.max_concurrency = max_concurrency or min(32, (os.cpu_count() or 1) + 4)
        self.pool = (
            ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="fed-client")
            if self.max_concurrency > 1
            else None
        )
        self.devices = None if devices is None else list(devices)
        self.data_backend = data_backend
        self._backends: dict[str, Backend] = {}
        self._leaves = LeafCache(self._load)
        if intrinsics is not None and not all(callable(f) for f in intrinsics.values()):
            raise TypeError("intrinsics must map intrinsic URIs to callable implementations.")
        self._intrinsics: dict[str, Callable[..., Any]] = dict(intrinsics or {})
        # Per computation (by the identity of its root block, kept alive here): its intrinsics and leaves,
        # resolved once rather than at every evaluation. The most recently used plans are kept.
        self._plans: collections.OrderedDict[int, tuple[bb.ComputationBuildingBlock, _Plan]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def execute(
        self, computation: bb.ComputationBuildingBlock, argument: Any, cardinality: int
    ) -> Any:
        state = _State(self, cardinality)
        has_argument = argument is not NO_ARGUMENT
        if has_argument:
            argument = map_argument_blocks(
                argument, lambda block: self._argument_block(block, state)
            )
        fn = self._evaluate_root(computation, state)
        return fn(argument) if has_argument else fn()

    def _argument_block(self, block: bb.ComputationBuildingBlock, state: _State) -> Any:
        """A computation passed as an argument becomes a function value; a `Data` block, its value."""
        if isinstance(block, bb.Data):
            return self._materialize(block)
        return self._evaluate_root(block, state)

    def _evaluate_root(self, block: bb.ComputationBuildingBlock, state: _State) -> Any:
        return self._evaluate(block, _EMPTY, state, self._plan(block))

    def _plan(self, root: bb.ComputationBuildingBlock) -> _Plan:
        with self._lock:
            known = self._plans.get(id(root))
            if known is not None and known[0] is root:
                self._plans.move_to_end(id(root))
                return known[1]
        resolved: dict[int, _Resolved] = {}
        closed: set[int] = set()
        structural: dict[int, Callable[[Any], Any]] = {}
        for node in bb.walk(root):
            if isinstance(node, bb.Intrinsic):
                resolved[id(node)] = self._resolve_intrinsic(node)
            elif isinstance(node, bb.CompiledComputation):
                resolved[id(node)] = _leaf_function(node, self._leaves.get(node))
            elif isinstance(node, bb.Lambda) and not bb.free_references(node):
                closed.add(id(node))
                select = _structural(node)
                if select is not None:
                    structural[id(node)] = select
        plan = _Plan(resolved, closed, structural)
        with self._lock:
            self._plans[id(root)] = (root, plan)
            while len(self._plans) > MAX_PLANS:
                self._plans.popitem(last=False)
        return plan

    def _resolve_intrinsic(self, node: bb.Intrinsic) -> _Resolved:
        implementation = self._intrinsics.get(node.uri)
        if implementation is None:
            definition = plugins.get_registry("intrinsics").build(node.uri)
            if definition.uri != node.uri:
                raise TypeError(
                    f"The intrinsic {node.uri!r} is registered with a definition of {definition.uri!r}."
                )
            implementation = definition.implementation
            with self._lock:
                self._intrinsics[node.uri] = implementation
        fn_type = node.type_signature
        assert isinstance(fn_type, FunctionType)

        def bind(state: _State) -> FunctionValue:
            return FunctionValue(fn_type, lambda arg: implementation(state, fn_type, arg))

        return bind

    def _backend(self, frontend: str) -> Backend:
        with self._lock:
            backend = self._backends.get(frontend)
        if backend is None:
            registry = plugins.get_registry("backends")
            if frontend not in registry:
                raise LookupError(
                    f"No backend is registered for the frontend {frontend!r}: install the package that provides it "
                    f"(registered backends: {sorted(registry.names())})."
                )
            options = {} if self.devices is None else {"devices": self.devices}
            backend = registry.build(frontend, **options)
            with self._lock:
                backend = self._backends.setdefault(frontend, backend)
        return backend

    def _load(self, leaf: bb.CompiledComputation) -> LoadedComputation:
        return self._backend(leaf.frontend).load(leaf)

    def _materialize(self, data: bb.Data) -> Any:
        return materialize(data, self.data_backend)

    def _evaluate(
        self,
        block: bb.ComputationBuildingBlock,
        env: _Env,
        state: _State,
        plan: _Plan,
    ) -> Any:
        if isinstance(block, bb.Reference):
            return env.lookup(block.name)
        if isinstance(block, bb.Call):
            fn = self._evaluate(block.function, env, state, plan)
            if block.argument is None:
                return fn()
            return fn(self._evaluate(block.argument, env, state, plan))
        if isinstance(block, bb.Selection):
            return self._evaluate(block.source, env, state, plan)[block.index]
        if isinstance(block, bb.Struct):
            return Struct((name, self._evaluate(e, env, state, plan)) for name, e in block.elements)
        if isinstance(block, bb.Block):
            for name, value in block.locals:
                env = env.bind(name, self._evaluate(value, env, state, plan))
            return self._evaluate(block.result, env, state, plan)
        if isinstance(block, bb.Lambda):
            return self._closure(block, env, state, plan)
        if isinstance(block, bb.Literal):
            return block.value
        if isinstance(block, bb.Placement):
            return block.placement
        if isinstance(block, (bb.Intrinsic, bb.CompiledComputation)):
            resolved = plan.resolved.get(id(block))
            if resolved is None:  # a node built after planning (never from a traced computation)
                resolved = self._plan(block).resolved[id(block)]
            return resolved(state)
        if isinstance(block, bb.Data):
            return self._materialize(block)
        raise TypeError(f"Unknown building block {type(block).__name__}.")

    def _closure(self, block: bb.Lambda, env: _Env, state: _State, plan: _Plan) -> FunctionValue:
        name = block.parameter_name

        def call(argument: Any = None) -> Any:
            inner = env if name is None else env.bind(name, argument)
            return self._evaluate(block.result, inner, state, plan)

        closed = block if id(block) in plan.closed else None
        return FunctionValue(
            block.type_signature, call, block=closed, structural=plan.structural.get(id(block))
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)


class LocalExecutionContext(ExecutionContext):
    """A context on a new `LocalExecutor` (see there for the options)."""

    def __init__(
        self,
        max_concurrency: int | None = None,
        default_num_clients: int | None = None,
        *,
        devices: Sequence[str] | None = None,
        data_backend: Any = None,
    ):
        super().__init__(
            LocalExecutor(max_concurrency, devices=devices, data_backend=data_backend),
            default_num_clients,
        )


def create_local_executor(
    max_concurrency: int | None = None,
    *,
    devices: Sequence[str] | None = None,
    data_backend: Any = None,
    **unsupported: Any,
) -> LocalExecutor:
    """The factory registered as the "local" executor."""
    if unsupported:
        raise TypeError(
            f"The local executor does not take the options {sorted(unsupported)}; it takes max_concurrency, "
            f"default_num_clients, devices and data_backend."
        )
    return LocalExecutor(max_concurrency, devices=devices, data_backend=data_backend)
