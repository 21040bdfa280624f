"""An executor of fed's IR built only on fed-core's public execution interface: every client's work
runs in order on the calling thread, intrinsics come from their definitions, compiled leaves from the
registered backends, `Data` blocks from the data backends registered for their URI schemes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fed_core import framework as fw
from fed_core.plugins import get_registry
from fed_types import Struct


class _State(fw.ExecutionState):
    def __init__(self, num_clients: int) -> None:
        self.num_clients = num_clients

    @property
    def pool(self) -> None:
        return None

    def pool_for_client_work(self) -> None:
        return None

    @contextlib.contextmanager
    def in_client_work(self) -> Iterator[None]:
        yield


class SequentialExecutor(fw.Executor):
    """Evaluates computations one step at a time; counts its executions and the leaves it loaded."""

    def __init__(self, trace: bool = False) -> None:
        self.trace = trace
        self.executions = 0
        self.visited: list[str] = []
        self._leaves = fw.LeafCache(self._load)

    def _load(self, leaf: fw.CompiledComputation) -> fw.LoadedComputation:
        return get_registry("backends").build(leaf.frontend).load(leaf)

    def execute(
        self, computation: fw.ComputationBuildingBlock, argument: Any, cardinality: int
    ) -> Any:
        self.executions += 1
        state = _State(cardinality)
        fn = self._evaluate(computation, {}, state)
        if argument is fw.NO_ARGUMENT:
            return fn()
        return fn(fw.map_argument_blocks(argument, lambda block: self._evaluate(block, {}, state)))

    def _evaluate(
        self, block: fw.ComputationBuildingBlock, env: dict[str, Any], state: _State
    ) -> Any:
        if self.trace:
            self.visited.append(type(block).__name__)
        if isinstance(block, fw.Reference):
            return env[block.name]
        if isinstance(block, fw.Call):
            fn = self._evaluate(block.function, env, state)
            return (
                fn() if block.argument is None else fn(self._evaluate(block.argument, env, state))
            )
        if isinstance(block, fw.Selection):
            return self._evaluate(block.source, env, state)[block.index]
        if isinstance(block, fw.Struct):
            return Struct((name, self._evaluate(e, env, state)) for name, e in block.elements)
        if isinstance(block, fw.Block):
            inner = dict(env)
            for name, value in block.locals:
                inner[name] = self._evaluate(value, inner, state)
            return self._evaluate(block.result, inner, state)
        if isinstance(block, fw.Lambda):
            name = block.parameter_name

            def call(argument: Any = None) -> Any:
                inner = env if name is None else {**env, name: argument}
                return self._evaluate(block.result, inner, state)

            return fw.FunctionValue(block.type_signature, call)
        if isinstance(block, fw.Literal):
            return block.value
        if isinstance(block, fw.Placement):
            return block.placement
        if isinstance(block, fw.Intrinsic):
            definition = fw.lookup_intrinsic(block.uri)
            fn_type = block.type_signature
            return fw.FunctionValue(
                fn_type, lambda arg: definition.implementation(state, fn_type, arg)
            )
        if isinstance(block, fw.CompiledComputation):
            loaded = self._leaves.get(block)
            return fw.FunctionValue(block.type_signature, loaded, loaded)
        if isinstance(block, fw.Data):
            backend = get_registry("data_backends").build(fw.uri_scheme(block.uri))
            return fw.run_materialize(backend, block, block.type_signature)
        raise TypeError(f"Unknown building block {type(block).__name__}.")
