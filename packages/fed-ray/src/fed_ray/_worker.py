"""The worker: a long-lived Ray actor that runs its share of the clients' work.

It holds a `LocalExecutor` (so TensorFlow, the loaded compiled leaves and their compiled functions stay
warm between rounds), the clients' datasets by digest, and the values its clients computed, until the
driver releases them. Only what the driver asks for returns: an acknowledgement after a map, partial
aggregates after a reduction, members when the driver needs them.
"""

from __future__ import annotations

import collections
import os
import platform
from importlib import metadata
from typing import Any

import numpy as np

from fed_core.execution import data as data_module
from fed_core.execution.local import LocalExecutor
from fed_core.execution.values import NO_ARGUMENT, ClientValues, map_structure
from fed_core.ir import building_blocks as bb
from fed_ray import _transport
from fed_ray._columns import row
from fed_types import CLIENTS, FederatedType, FunctionType, Struct, StructType

MAX_DATASETS = 4096
"""How many clients' datasets a worker keeps (the most recently used)."""

MAX_FUNCTIONS = 256
"""How many shipped functions a worker keeps (the most recently used)."""


class _LRU(collections.OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def versions() -> dict[str, str]:
    """What must match between the driver and its workers."""
    import ray

    from fed_core.__about__ import __version__ as fed_core_version

    found = {
        "ray": ray.__version__,
        "python": platform.python_version_tuple()[0] + "." + platform.python_version_tuple()[1],
        "fed-core": fed_core_version,
    }
    for distribution in ("fed-ray", "fed-tensorflow", "tensorflow"):
        try:
            found[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[distribution] = "not installed"
    return found


class Worker:
    """One slot of the pool (made a Ray actor by the executor)."""

    def __init__(self, config: dict[str, Any]):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        threads = str(max(1, int(config.get("num_cpus", 1))))
        os.environ["TF_NUM_INTRAOP_THREADS"] = threads
        os.environ["TF_NUM_INTEROP_THREADS"] = threads
        if not config.get("num_gpus"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU slot sees no GPU
        else:
            import tensorflow as tf

            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
        self.data_backend = config.get("data_backend")
        self.executor = LocalExecutor(config.get("max_concurrency") or int(threads) + 1)
        self.functions: _LRU = _LRU(MAX_FUNCTIONS)
        self.datasets: _LRU = _LRU(MAX_DATASETS)
        self.data: _LRU = _LRU(MAX_DATASETS)
        # value id -> (the global indices of this worker's clients, their values in that order)
        self.values: dict[str, tuple[list[int], ClientValues]] = {}

    def ping(self) -> dict[str, Any]:
        import ray

        return {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "host": platform.node(),
            "versions": versions(),
        }

    # -- storing and fetching -------------------------------------------------------------------------

    def release(self, ids: list[str]) -> None:
        for value_id in ids:
            self.values.pop(value_id, None)

    def holds(self) -> int:
        """How many values this worker holds (for tests of the release protocol)."""
        return len(self.values)

    def fetch(self, value_id: str, clients: list[int]) -> tuple[str, Any]:
        try:
            members = self._members_of(value_id, clients)
        except _REFUSALS as e:
            return _refusal(e)
        return ("ok", [_transport.pack(m, _PACKER) for m in members])

    def _members_of(self, value_id: str, clients: list[int]) -> list[Any]:
        held = self.values.get(value_id)
        if held is None:  # this incarnation never computed it: the worker was restarted
            raise _Lost(value_id)
        order, values = held
        if order == clients:
            return values.members()
        members = values.members()
        position = {k: i for i, k in enumerate(order)}
        return [members[position[k]] for k in clients]

    # -- client work ----------------------------------------------------------------------------------

    def run(
        self,
        mode: str,
        key: str,
        block: bb.ComputationBuildingBlock | None,
        spec: Any,
        clients: list[int],
        out_id: str,
    ) -> tuple[str, Any]:
        """Runs a shipped function on this worker's `clients` (mode "map": on their members, built from
        `spec`; mode "eval": with no argument) and stores the results as `out_id`. Returns ("ok", count),
        ("need_function", None) when `block` is needed, or ("missing", digests) when datasets are."""
        if block is not None:
            self.functions[key] = self._entry(mode, block)  # keys name the block and the mode
        entry = self.functions.get(key)
        if entry is None:
            return ("need_function", None)
        if mode == "eval":
            result = self.executor.execute(entry, NO_ARGUMENT, len(clients))
        else:
            try:
                argument = self._assemble(spec, clients)
            except _REFUSALS as e:
                return _refusal(e)
            result = self.executor.execute(entry, argument, len(clients))
        self.values[out_id] = (list(clients), result)
        return ("ok", len(clients))

    def _entry(self, mode: str, block: bb.ComputationBuildingBlock) -> bb.ComputationBuildingBlock:
        """The computation this worker runs for a shipped function: a map or an eval over its clients."""
        fn_type = block.type_signature
        assert isinstance(fn_type, FunctionType)
        result = FederatedType(fn_type.result, CLIENTS)
        if mode == "eval":
            call = bb.Call(
                bb.Intrinsic("federated_eval_at_clients", FunctionType(fn_type, result)), block
            )
            return bb.Lambda(None, None, call)
        parameter = FederatedType(fn_type.parameter, CLIENTS)
        intrinsic = bb.Intrinsic(
            "federated_map", FunctionType(StructType([fn_type, parameter]), result)
        )
        call = bb.Call(intrinsic, bb.Struct([block, bb.Reference("clients", parameter)]))
        return bb.Lambda("clients", parameter, call)

    def _assemble(self, spec: Any, clients: list[int]) -> ClientValues:
        """This worker's clients' members, from the shipped columns and the values it holds."""
        if isinstance(spec, tuple) and spec[0] == "remote":
            held = self.values.get(spec[1])
            if held is not None and held[0] == clients:
                return held[1]  # kept as computed (stacked, when its backend stacked it)
        size = len(clients)
        missing: list[str] = []

        def expand(column: tuple[str, Any]) -> list[Any]:
            kind, payload = column
            if kind == "shared":
                return [_transport.unpack(_resolve(payload), self.datasets)] * size
            if kind == "remote":
                return self._members_of(payload, clients)
            try:
                items = _transport.unpack(payload, self.datasets)
            except _transport.MissingDatasets as e:
                missing.extend(e.digests)
                return [None] * size
            return [self._materialize(item) for item in items]

        expanded = map_structure(expand, spec)
        if missing:
            raise _transport.MissingDatasets(missing)
        return ClientValues([row(expanded, k) for k in range(size)])

    def _materialize(self, item: Any) -> Any:
        """Data blocks among a member's leaves, made values here (once per URI: they are cached)."""
        return map_structure(self._materialize_leaf, item)

    def _materialize_leaf(self, leaf: Any) -> Any:
        if not isinstance(leaf, bb.Data):
            return leaf
        cache_key = (leaf.uri, str(leaf.type_signature))
        value = self.data.get(cache_key)
        if value is None:
            value = data_module.materialize(
                leaf,
                self.data_backend,
                where=" on this Ray worker",
                advice="register one for the scheme {scheme!r} in a package installed on every "
                "worker, or give the executor a data_backend",
            )
            self.data[cache_key] = value
        return value

    # -- aggregation ----------------------------------------------------------------------------------

    def reduce(self, kind: str, spec: Any, clients: list[int], extra: Any = None) -> Any:
        """A partial aggregate of this worker's clients' members (see `combine` for how they merge)."""
        try:
            values = self._assemble(spec, clients)
        except _REFUSALS as e:
            return _refusal(e)
        if kind == "aggregate":
            key, block, zero = extra
            if block is not None:
                self.functions[key] = block
            accumulate = self.functions.get(key)
            if accumulate is None:
                return ("need_function", None)
            accumulator = zero
            for member in values.members():
                accumulator = self.executor.execute(
                    accumulate, Struct([(None, accumulator), (None, member)]), 1
                )
            return ("ok", accumulator)
        if kind == "weighted_mean":
            stacked = values.stacked()
            weights = np.asarray(stacked[1], dtype=np.float64)

            def weighted(leaf: Any) -> np.ndarray | np.float64:
                array = np.asarray(leaf)
                scale = weights.reshape((-1,) + (1,) * (array.ndim - 1))
                return np.sum(array * scale, axis=0, dtype=np.float64)

            return ("ok", (map_structure(weighted, stacked[0]), float(weights.sum())))
        stacked = values.stacked()
        reducers = {
            "sum": lambda a: np.sum(a, axis=0, dtype=a.dtype),
            "mean": lambda a: np.sum(a, axis=0, dtype=np.float64),
            "min": lambda a: np.min(a, axis=0),
            "max": lambda a: np.max(a, axis=0),
        }
        reducer = reducers[kind]
        return ("ok", (map_structure(lambda leaf: reducer(np.asarray(leaf)), stacked), len(values)))


_PACKER = _transport.DatasetPacker()


class _Lost(Exception):
    """A value the driver expects this worker to hold is not here (the worker was restarted)."""

    def __init__(self, value_id: str):
        super().__init__(value_id)
        self.value_id = value_id


_REFUSALS = (_Lost, _transport.MissingDatasets)


def _refusal(error: Exception) -> tuple[str, list[str]]:
    """The reply that tells the driver what this worker lacks: values it lost, or datasets."""
    if isinstance(error, _Lost):
        return ("lost", [error.value_id])
    assert isinstance(error, _transport.MissingDatasets)
    return ("missing", error.digests)


def _resolve(payload: Any) -> Any:
    import ray

    return ray.get(payload) if isinstance(payload, ray.ObjectRef) else payload
