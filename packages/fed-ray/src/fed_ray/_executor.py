"""The Ray executor: fed's computations on a pool of Ray actors.

The driver evaluates a computation's IR as the local executor does (it is one, with some intrinsics
replaced), but client work goes to the workers: a `federated_map` or `federated_eval` at CLIENTS ships
the function (once per worker) and each worker's share of the clients' values, and its results stay on
the workers. Aggregations of those results run on the workers too, and only partial aggregates return.
Intrinsics this executor does not distribute (secure sums, `federated_select`, a function that closes
over driver values) run on the driver on the members it fetches, so every computation runs.
"""

from __future__ import annotations

import collections
import heapq
import math
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from fed_core import plugins
from fed_core.execution.data import materialize
from fed_core.execution.interface import ExecutionState, Executor, FunctionValue
from fed_core.execution.local import LocalExecutor
from fed_core.execution.values import NO_ARGUMENT, ClientValues, map_structure
from fed_core.ir import building_blocks as bb
from fed_ray import _cluster, _transport
from fed_ray._columns import (
    ColumnClientValues,
    Local,
    Remote,
    RemoteValue,
    Shared,
    columns,
    structure_of,
)
from fed_types import FederatedType, FunctionType, Struct, StructType, TensorType, Type

Event = Callable[[str, dict[str, Any]], None]

MAX_HOMES = 1_000_000
"""How many clients' last slots the executor remembers (the most recent)."""

MAX_REPLACEMENTS = 3
"""How many new actors the executor starts for a slot whose worker is out of restarts, per failure."""

MAX_ATTEMPTS = 4
"""How many times a worker's share of one step is submitted before the step fails."""


class RayExecutor(Executor):
    """Runs computations on a pool of Ray actors (see the module's docstring).

    - `address`: a running cluster to join ("auto", "ray://host:10001", ...); without one, an existing
      `ray.init` is used, else a local cluster is started with safe defaults (see `fed_ray.init`).
    - `num_actors`: the pool's size (default: the cluster's CPUs / `num_cpus_per_actor`, or its GPUs /
      `num_gpus_per_actor` when that is fewer).
    - `num_cpus_per_actor`, `num_gpus_per_actor`: each actor's resources; TensorFlow's thread pools match
      the CPUs, an actor without GPUs sees none, and GPU actors (fractions allowed) grow memory as needed.
    - `max_restarts`: how often Ray restarts a dead actor; its clients' work is resubmitted, and values it
      held are computed again from their lineage, so the step's result is the one without the fault.
    - `startup_timeout`: seconds to wait for the actors to start (they wait for free resources) before
      failing with what the cluster has free.
    - `actor_options`: more options for the actors (`resources`, `scheduling_strategy`, `runtime_env`).
    - `init_options`: options for `ray.init` when this executor starts or joins the cluster.
    - `data_backend`: materializes `Data` blocks (a `fed_core.execution.DataBackend`); it is pickled to
      every worker, so data that exists only where the workers are is loaded there. Without one, a
      worker uses the data backend registered for the URI's scheme by a package installed on it.
    - `on_event(name, info)`: called as work is submitted ("submit") and workers recover ("recover").
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        num_actors: int | None = None,
        num_cpus_per_actor: float = 1,
        num_gpus_per_actor: float = 0,
        max_restarts: int = 3,
        max_concurrency: int | None = None,
        startup_timeout: float = 120.0,
        actor_options: dict[str, Any] | None = None,
        init_options: dict[str, Any] | None = None,
        data_backend: Any = None,
        on_event: Event | None = None,
    ):
        # Every option is checked before the cluster is joined or an actor started.
        _check_number("num_cpus_per_actor", num_cpus_per_actor, minimum=0)
        _check_number("num_gpus_per_actor", num_gpus_per_actor, minimum=0)
        if num_actors is not None:
            _check_number("num_actors", num_actors, minimum=1, integer=True)
        _check_number("max_restarts", max_restarts, minimum=0, integer=True)
        if max_concurrency is not None:
            _check_number("max_concurrency", max_concurrency, minimum=1, integer=True)
        _check_number("startup_timeout", startup_timeout, minimum=0)
        _cluster.check_address(address)
        for name, options in (("actor_options", actor_options), ("init_options", init_options)):
            if options is not None and not isinstance(options, dict):
                raise TypeError(f"{name} must be a dict of options or None, got {options!r}.")
        if data_backend is not None and not callable(getattr(data_backend, "materialize", None)):
            raise TypeError(
                f"data_backend must be a fed_core.execution.DataBackend (with a materialize method), got "
                f"{data_backend!r}."
            )
        self.data_backend = data_backend
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable, got {on_event!r}.")
        import ray

        self._ray = ray
        _cluster.connect(address, init_options)
        self.num_cpus_per_actor = num_cpus_per_actor
        self.num_gpus_per_actor = num_gpus_per_actor
        self.max_restarts = max_restarts
        self._actor_options = dict(actor_options or {})
        self._on_event = on_event
        self.num_actors = num_actors or _cluster.default_pool_size(
            num_cpus_per_actor, num_gpus_per_actor
        )
        self.startup_timeout = startup_timeout
        _cluster.check_fits(self.num_actors, num_cpus_per_actor, num_gpus_per_actor)
        self._worker_class = ray.remote(_worker_module().Worker)
        self._actors = [self._new_actor() for _ in range(self.num_actors)]
        try:
            self._infos = self._check_workers(list(range(self.num_actors)))
        except RuntimeError:
            self._kill_all()
            raise
        except ray.exceptions.GetTimeoutError:
            self._kill_all()
            raise RuntimeError(
                f"The Ray cluster did not start {self.num_actors} actors of {num_cpus_per_actor} CPUs and "
                f"{num_gpus_per_actor} GPUs within {startup_timeout} s; its free resources are "
                f"{_cluster.free_resources()} (another executor may hold them: close it)."
            ) from None
        self._epochs = [0] * self.num_actors
        self._known_functions: list[set[str]] = [set() for _ in range(self.num_actors)]
        self._known_datasets: list[set[str]] = [set() for _ in range(self.num_actors)]
        self._function_keys: collections.OrderedDict[int, tuple[Any, str]] = (
            collections.OrderedDict()
        )
        # Where each client's data was sent last (by the digests of its datasets), most recent last.
        self._home: collections.OrderedDict[tuple[str, ...], int] = collections.OrderedDict()
        self._packer = _transport.DatasetPacker()
        self._lock = threading.RLock()
        self._run: _Run | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self._driver = LocalExecutor(
            max_concurrency, data_backend=data_backend, intrinsics=self._intrinsics()
        )
        self._closed = False

    # -- the pool -------------------------------------------------------------------------------------

    def _new_actor(self) -> Any:
        options = {
            "num_cpus": self.num_cpus_per_actor,
            "num_gpus": self.num_gpus_per_actor,
            "max_restarts": self.max_restarts,
            "max_task_retries": 0,
            **self._actor_options,
        }
        config = {
            "num_cpus": self.num_cpus_per_actor,
            "num_gpus": self.num_gpus_per_actor,
            "data_backend": self.data_backend,
        }
        return self._worker_class.options(**options).remote(config)

    def _check_workers(self, slots: list[int]) -> list[dict[str, Any]]:
        infos = self._ray.get(
            [self._actors[s].ping.remote() for s in slots], timeout=self.startup_timeout
        )
        expected = _worker_module().versions()
        for info in infos:
            if info["versions"] != expected:
                differ = {
                    k: (expected[k], info["versions"].get(k))
                    for k in expected
                    if info["versions"].get(k) != expected[k]
                }
                details = ", ".join(f"{k} {d} here, {w} there" for k, (d, w) in differ.items())
                raise RuntimeError(
                    f"A Ray worker on {info['host']} runs different versions than this driver: "
                    f"{details}. Install the same Python, Ray and fed on every node."
                )
        return infos

    def workers(self) -> list[dict[str, Any]]:
        """Each slot's worker: its process id (`pid`), Ray node (`node_id`), `host` and `versions`."""
        return [dict(info) for info in self._infos]

    def held_values(self) -> list[int]:
        """How many client values each slot's worker holds (none between calls: each call releases what
        it stored)."""
        return self._ray.get([actor.holds.remote() for actor in self._actors])

    def worker_pids(self) -> list[int]:
        """The process id of each slot's worker (for monitoring, and for tests that kill one)."""
        return [info["pid"] for info in self._infos]

    def _recover(self, slot: int, error: BaseException) -> None:
        """Waits for a dead slot's worker to be restarted by Ray, or replaces it (up to
        `MAX_REPLACEMENTS` times, within `startup_timeout` each), and forgets what it held."""
        ray = self._ray
        self._emit("recover", {"slot": slot, "error": repr(error)})
        exceptions = ray.exceptions
        failures = (
            exceptions.ActorDiedError,
            exceptions.ActorUnavailableError,
            exceptions.GetTimeoutError,
        )
        replacements = 0
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                self._infos[slot] = self._check_workers_one(slot)
                break
            except failures as e:
                restarting = not isinstance(e, ray.exceptions.ActorDiedError)
                if restarting and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if replacements >= MAX_REPLACEMENTS:
                    raise RuntimeError(
                        f"The Ray worker in slot {slot} died and {replacements} replacements did not "
                        f"start (free resources: {_cluster.free_resources()}): {e}"
                    ) from error
                # Out of restarts (or not back in time): a new actor takes the slot.
                replacements += 1
                ray.kill(self._actors[slot])
                self._actors[slot] = self._new_actor()
                deadline = time.monotonic() + self.startup_timeout
        self._forget(slot)
        self.stats["recoveries"] += 1

    def _forget(self, slot: int) -> None:
        """A new incarnation of the slot's worker holds nothing: values it held are computed again."""
        self._epochs[slot] += 1
        self._known_functions[slot].clear()
        self._known_datasets[slot].clear()

    def _kill_all(self) -> None:
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 (the cluster may already be gone)
                pass

    def _check_workers_one(self, slot: int) -> dict[str, Any]:
        info = self._ray.get(self._actors[slot].ping.remote(), timeout=30)
        if info["versions"] != _worker_module().versions():
            self._check_workers([slot])  # raises, naming the difference
        return info

    def _emit(self, name: str, info: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(name, info)

    # -- execution ------------------------------------------------------------------------------------

    def execute(
        self, computation: bb.ComputationBuildingBlock, argument: Any, cardinality: int
    ) -> Any:
        if self._closed:
            raise RuntimeError(
                "This Ray executor is closed: create a new Ray context to run computations."
            )
        with self._lock:
            self._run = _Run()
            try:
                if argument is not NO_ARGUMENT:
                    argument = self._worker_data(argument)
                result = self._driver.execute(computation, argument, cardinality)
                return self._to_driver(result)
            finally:
                self._release(self._run)
                self._run = None

    def _worker_data(self, value: Any) -> Any:
        """Client values holding `Data` blocks stay blocks, materialized on the workers."""
        if isinstance(value, Struct):
            return Struct((name, self._worker_data(v)) for name, v in value.items())
        if isinstance(value, ClientValues) and not value.is_stacked:
            members = value.members()
            if any(_holds_data(m) for m in members):
                return ColumnClientValues(Local(members), len(members), self)
        return value

    def _to_driver(self, value: Any) -> Any:
        if isinstance(value, ColumnClientValues):
            return ClientValues(value.members())
        if isinstance(value, Struct):
            return Struct((name, self._to_driver(v)) for name, v in value.items())
        return value

    def _release(self, run: _Run) -> None:
        by_slot: dict[int, list[str]] = collections.defaultdict(list)
        for value in run.values:
            for slot in value.slots():
                by_slot[slot].append(value.id)
        for slot, ids in by_slot.items():
            self._actors[slot].release.remote(ids)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._driver.close()
        self._kill_all()

    # -- Source: members for the driver ----------------------------------------------------------------

    def fetch(self, value: RemoteValue) -> list[Any]:
        members: list[Any] = [None] * len(value.layout)
        for slot, packed in self._on_slots(
            "fetch", value.slots(), lambda slot: self._submit_fetch(value, slot)
        ).items():
            for k, member in zip(value.clients_of(slot), packed):
                members[k] = _transport.unpack(member, {})
        self.stats["bytes_returned"] += _nbytes(members)
        return members

    def _submit_fetch(self, value: RemoteValue, slot: int) -> Any:
        self._ensure(value, slot)
        return self._actors[slot].fetch.remote(value.id, value.clients_of(slot))  # ("ok", members)

    def local(self, members: list[Any]) -> list[Any]:
        return [_materialize_here(m, self.data_backend) for m in members]

    # -- intrinsics -----------------------------------------------------------------------------------

    def _intrinsics(self) -> dict[str, Callable[..., Any]]:
        return {
            "federated_broadcast": self._broadcast,
            "federated_value_at_clients": self._broadcast,
            "federated_zip_at_clients": self._zip,
            "federated_map": self._map,
            "federated_eval_at_clients": self._eval,
            "federated_sum": self._reduction("sum"),
            "federated_mean": self._reduction("mean"),
            "federated_min": self._reduction("min"),
            "federated_max": self._reduction("max"),
            "federated_weighted_mean": self._weighted_mean,
            "federated_aggregate": self._aggregate,
        }

    def _on_driver(self, uri: str, state: ExecutionState, fn_type: FunctionType, arg: Any) -> Any:
        self.stats[f"driver:{uri}"] += 1
        implementation = plugins.get_registry("intrinsics").build(uri).implementation
        return implementation(state, fn_type, arg)

    def _broadcast(self, state: ExecutionState, fn_type: FunctionType, value: Any) -> Any:
        return ColumnClientValues(Shared(value), state.num_clients, self)

    def _zip(self, state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
        sizes = {len(c) for c in arg}
        if len(sizes) > 1:
            raise ValueError(
                f"federated_zip: the zipped values have different numbers of clients: {sorted(sizes)}."
            )
        structure = Struct((name, structure_of(c)) for name, c in arg.items())
        return ColumnClientValues(structure, sizes.pop() if sizes else 0, self)

    def _map(self, state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
        fn, clients = arg[0], arg[1]
        if fn.block is None or len(clients) == 0:
            return self._on_driver("federated_map", state, fn_type, arg)
        structure = self._aligned(structure_of(clients))
        layout = self._layout(structure, len(clients))
        return self._distribute("map", fn, structure, layout)

    def _eval(self, state: ExecutionState, fn_type: FunctionType, fn: FunctionValue) -> Any:
        if fn.block is None or state.num_clients == 0:
            return self._on_driver("federated_eval_at_clients", state, fn_type, fn)
        layout = self._balance([1.0] * state.num_clients, [None] * state.num_clients)
        return self._distribute("eval", fn, None, layout)

    def _distribute(self, mode: str, fn: FunctionValue, structure: Any, layout: list[int]) -> Any:
        value = RemoteValue(layout, (mode, fn.block, structure), {})
        assert self._run is not None
        self._run.values.append(value)
        self._on_slots("run", value.slots(), lambda slot: self._submit_run(value, slot))
        return ColumnClientValues(Remote(value), len(layout), self)

    def _submit_run(self, value: RemoteValue, slot: int) -> Any:
        mode, block, structure = value.lineage
        clients = value.clients_of(slot)
        spec, digests = (None, []) if structure is None else self._spec(structure, clients, slot)
        key = f"{self._function_key(block)}:{mode}"  # a worker keeps the block wrapped for its mode
        send = block if key not in self._known_functions[slot] else None
        ref = self._actors[slot].run.remote(mode, key, send, spec, clients, value.id)

        def stored() -> None:
            value.epochs[slot] = self._epochs[slot]
            self._function_held(slot, key)
            self._held(slot, digests)

        return _Pending(ref, stored)

    def _held(self, slot: int, digests: list[str]) -> None:
        """Records that `slot`'s worker holds these datasets. The record is a hint: forgotten when it grows
        past what a worker keeps (the worker is then sent some graphs again), and corrected when a worker
        reports a dataset it no longer has."""
        known = self._known_datasets[slot]
        known.update(digests)
        if len(known) > _worker_module().MAX_DATASETS:
            known.clear()

    def _function_held(self, slot: int, key: str) -> None:
        known = self._known_functions[slot]
        known.add(key)
        if len(known) > _worker_module().MAX_FUNCTIONS:
            known.clear()  # a hint, like the datasets': the worker asks for what it dropped

    def _ensure(self, value: RemoteValue, slot: int) -> None:
        """Computes a value's members on `slot` again (from its lineage) if that slot's worker lost them."""
        if value.epochs.get(slot) == self._epochs[slot]:
            return
        self.stats["recomputed"] += 1
        self._on_slots("rerun", [slot], lambda s: self._submit_run(value, s))

    def _reduction(self, kind: str) -> Callable[..., Any]:
        def reduce(state: ExecutionState, fn_type: FunctionType, clients: ClientValues) -> Any:
            structure = structure_of(clients)
            if not _has_remote(structure) or len(clients) == 0:
                return self._on_driver(f"federated_{kind}", state, fn_type, clients)
            partials = self._partials(kind, self._aligned(structure), len(clients))
            values = [value for value, _ in partials]
            member_type = _result_member(fn_type)
            if kind == "min":
                return _fold(np.minimum, values)
            if kind == "max":
                return _fold(np.maximum, values)
            total = _fold(np.add, values)
            if kind == "sum":
                return total
            count = sum(n for _, n in partials)
            return _cast(map_structure(lambda leaf: leaf / count, total), member_type)

        return reduce

    def _weighted_mean(self, state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
        structure = Struct([(None, structure_of(arg[0])), (None, structure_of(arg[1]))])
        if not _has_remote(structure) or len(arg[0]) == 0:
            return self._on_driver("federated_weighted_mean", state, fn_type, arg)
        partials = self._partials("weighted_mean", self._aligned(structure), len(arg[0]))
        total = sum(weight for _, weight in partials)
        summed = _fold(np.add, [p for p, _ in partials])
        # Weights that sum to zero give NaN, as in the local executor.
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = map_structure(lambda leaf: leaf / total, summed)
        return _cast(mean, _result_member(fn_type))

    def _aggregate(self, state: ExecutionState, fn_type: FunctionType, arg: Struct) -> Any:
        clients, zero, accumulate, merge, report = arg
        structure = structure_of(clients)
        if accumulate.block is None or not _has_remote(structure) or len(clients) == 0:
            return self._on_driver("federated_aggregate", state, fn_type, arg)
        structure = self._aligned(structure)
        key = f"{self._function_key(accumulate.block)}:accumulate"
        partials = self._partials("aggregate", structure, len(clients), (key, accumulate, zero))
        total = partials[0]
        for partial in partials[1:]:
            total = merge(Struct([(None, total), (None, partial)]))
        return report(total)

    def _partials(self, kind: str, structure: Any, size: int, aggregate: Any = None) -> list[Any]:
        layout = self._layout(structure, size)
        slots = sorted(set(layout))
        value = RemoteValue(layout, None, {})

        def submit(slot: int) -> Any:
            clients = value.clients_of(slot)
            spec, digests = self._spec(structure, clients, slot)
            extra = key = None
            if aggregate is not None:
                key, accumulate, zero = aggregate
                send = accumulate.block if key not in self._known_functions[slot] else None
                extra = (key, send, zero)

            def after() -> None:
                self._held(slot, digests)
                if key is not None:
                    self._function_held(slot, key)

            return _Pending(self._actors[slot].reduce.remote(kind, spec, clients, extra), after)

        results = self._on_slots("reduce:" + kind, slots, submit)
        partials = [results[slot] for slot in slots]
        self.stats["bytes_returned"] += _nbytes(partials)
        return partials

    # -- shipping -------------------------------------------------------------------------------------

    def _function_key(self, block: Any) -> str:
        known = self._function_keys.get(id(block))
        if known is not None and known[0] is block:
            self._function_keys.move_to_end(id(block))
            return known[1]
        key = f"f{len(self._function_keys)}-{time.monotonic_ns()}"
        self._function_keys[id(block)] = (block, key)
        while len(self._function_keys) > 1024:
            self._function_keys.popitem(last=False)
        return key

    def _aligned(self, structure: Any) -> Any:
        """The structure with every `Remote` column on one layout: columns on another are fetched."""
        remote = [c for c in columns(structure) if isinstance(c, Remote)]
        if not remote:
            return structure
        layout = remote[0].value.layout

        def align(column: Any) -> Any:
            if isinstance(column, Remote) and column.value.layout != layout:
                self.stats["realigned"] += 1  # through the driver: its bytes count as returned
                return Local(self.fetch(column.value))
            return column

        return map_structure(align, structure)

    def _layout(self, structure: Any, size: int) -> list[int]:
        for column in columns(structure):
            if isinstance(column, Remote):
                return column.value.layout
        weights = [0.0] * size
        keys: list[list[str]] = [[] for _ in range(size)]
        for column in columns(structure):
            if isinstance(column, Local):
                for k, item in enumerate(self._packed(column)):
                    for recipe in _transport.recipes(item):
                        weights[k] += recipe.size
                        keys[k].append(recipe.digest)
        return self._balance([w or 1.0 for w in weights], [tuple(k) if k else None for k in keys])

    def _balance(self, weights: list[float], keys: list[tuple[str, ...] | None]) -> list[int]:
        """Clients to slots: each to the slot it had before (its data is cached there) unless that slot is
        full, the rest largest first to the least-loaded slot."""
        n = self.num_actors
        loads = [0.0] * n
        layout = [-1] * len(weights)
        capacity = sum(weights) / n + max(weights, default=0.0)
        order = sorted(range(len(weights)), key=lambda k: -weights[k])
        for k in order:
            key = keys[k]
            home = self._home.get(key) if key is not None else None
            if home is not None and home < n and loads[home] + weights[k] <= capacity:
                layout[k] = home
                loads[home] += weights[k]
        heap = [(load, slot) for slot, load in enumerate(loads)]
        heapq.heapify(heap)
        for k in order:
            if layout[k] >= 0:
                continue
            load, slot = heapq.heappop(heap)
            layout[k] = slot
            heapq.heappush(heap, (load + weights[k], slot))
        for k, key in enumerate(keys):
            if key is not None:
                self._home[key] = layout[k]
                self._home.move_to_end(key)
        while len(self._home) > MAX_HOMES:
            self._home.popitem(last=False)
        return layout

    def _packed(self, column: Local) -> list[Any]:
        if column.packed is None:
            column.packed = [_transport.pack(m, self._packer) for m in column.members]
        return column.packed

    def _spec(self, structure: Any, clients: list[int], slot: int) -> tuple[Any, list[str]]:
        """What `slot`'s worker needs of the columns for its `clients`, and the digests of the datasets
        among them (graphs are sent only for datasets the worker is not known to hold)."""
        assert self._run is not None
        run = self._run
        digests: list[str] = []

        def spec(column: Any) -> tuple[str, Any]:
            if isinstance(column, Shared):
                return ("shared", run.put(self._ray, column.value, self._packer))
            if isinstance(column, Remote):
                self._ensure(column.value, slot)
                return ("remote", column.value.id)
            packed = self._packed(column)
            known = self._known_datasets[slot]
            items = [_transport.strip_graphs(packed[k], known) for k in clients]
            for item in items:
                for recipe in _transport.recipes(item):
                    digests.append(recipe.digest)
                    if recipe.graph is not None:
                        self.stats["datasets_sent"] += 1
                        self.stats["dataset_bytes_sent"] += len(recipe.graph)
            return ("local", items)

        return map_structure(spec, structure), digests

    def _on_slots(
        self, what: str, slots: list[int], submit: Callable[[int], Any]
    ) -> dict[int, Any]:
        """Submits `submit(slot)` on every slot and waits for all; a slot whose worker died is recovered
        and submitted again, and a worker that lacks a function or datasets is sent them."""
        ray = self._ray
        pending: dict[int, _Pending] = {}
        attempts: collections.Counter[int] = collections.Counter()

        def start(slot: int) -> None:
            attempts[slot] += 1
            self.stats["calls"] += 1
            self._emit("submit", {"what": what, "slot": slot, "attempt": attempts[slot]})
            submitted = submit(slot)
            pending[slot] = (
                submitted if isinstance(submitted, _Pending) else _Pending(submitted, None)
            )

        for slot in slots:
            start(slot)
        results: dict[int, Any] = {}
        while pending:
            slot, job = next(iter(pending.items()))
            del pending[slot]
            try:
                reply = ray.get(job.ref)
            except ray.exceptions.RayActorError as error:
                if attempts[slot] >= MAX_ATTEMPTS:
                    raise RuntimeError(
                        f"The Ray worker in slot {slot} failed {attempts[slot]} times in a row "
                        f"({what}); giving up."
                    ) from error
                self._recover(slot, error)
                start(slot)
                continue
            if (
                isinstance(reply, tuple)
                and reply
                and reply[0] in ("missing", "need_function", "lost")
            ):
                if reply[0] == "missing":  # evicted from the worker's cache: send every graph again
                    self._known_datasets[slot].clear()
                elif reply[0] == "need_function":
                    self._known_functions[slot].clear()
                else:  # restarted without an error reaching us: compute its values again
                    self.stats["recoveries"] += 1
                    self._emit("recover", {"slot": slot, "error": "values lost"})
                    self._infos[slot] = self._check_workers_one(slot)  # its new process
                    self._forget(slot)
                if attempts[slot] >= MAX_ATTEMPTS:
                    wanted = {
                        "missing": "datasets it had dropped",
                        "need_function": "functions it had dropped",
                        "lost": "values it had lost (it keeps restarting)",
                    }[reply[0]]
                    raise RuntimeError(
                        f"The Ray worker in slot {slot} kept asking for {wanted} ({what}); giving up."
                    )
                start(slot)
                continue
            if job.after is not None:
                job.after()
            results[slot] = reply[1] if isinstance(reply, tuple) and reply[:1] == ("ok",) else reply
        return results


class _Pending:
    __slots__ = ("ref", "after")

    def __init__(self, ref: Any, after: Callable[[], None] | None):
        self.ref = ref
        self.after = after


class _Run:
    """What one execution created: values to release at its end, and broadcast values put in the store."""

    def __init__(self) -> None:
        self.values: list[RemoteValue] = []
        self._puts: dict[int, tuple[Any, Any]] = {}

    def put(self, ray: Any, value: Any, packer: _transport.DatasetPacker) -> Any:
        known = self._puts.get(id(value))
        if known is None or known[0] is not value:
            known = (value, ray.put(_transport.pack(value, packer)))
            self._puts[id(value)] = known
        return known[1]


def _worker_module() -> Any:
    from fed_ray import _worker

    return _worker


def _has_remote(structure: Any) -> bool:
    return any(isinstance(c, Remote) for c in columns(structure))


def _holds_data(value: Any) -> bool:
    if isinstance(value, bb.Data):
        return True
    if isinstance(value, Struct):
        return any(_holds_data(v) for v in value)
    return False


def _materialize_here(value: Any, backend: Any) -> Any:
    def leaf(item: Any) -> Any:
        if not isinstance(item, bb.Data):
            return item
        return materialize(
            item,
            backend,
            where=" on the driver",
            advice="give the Ray executor a data_backend, or register one for the scheme {scheme!r}",
        )

    return map_structure(leaf, value)


def _fold(op: Any, values: list[Any]) -> Any:
    """The workers' partial aggregates merged with `op`, in slot order."""
    total = values[0]
    for v in values[1:]:
        total = map_structure(op, total, v)
    return total


def _result_member(fn_type: FunctionType) -> Type:
    result = fn_type.result
    return result.member if isinstance(result, FederatedType) else result


def _cast(value: Any, t: Type) -> Any:
    """`value` with each leaf cast to the dtype `t` gives it."""
    if isinstance(t, StructType):
        return Struct((name, _cast(v, element)) for (name, element), v in zip(t.items(), value))
    return np.asarray(value).astype(cast(TensorType, t).dtype)


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray | np.generic):
        return int(value.nbytes)
    if hasattr(value, "dtype") and hasattr(value, "shape") and hasattr(value, "numpy"):
        return int(np.asarray(value).nbytes)  # a TensorFlow tensor
    if isinstance(value, Struct | list | tuple):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, float | int):
        return 8
    return 0


def _check_number(name: str, value: Any, *, minimum: float, integer: bool = False) -> None:
    """A TypeError unless `value` is an int (or, without `integer`, a float), a ValueError unless it
    is finite and at least `minimum`."""
    kinds = (int,) if integer else (int, float)
    what = "an int" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(
            f"{name} must be {what} >= {minimum}, got {value!r} of type {type(value).__name__}."
        )
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} must be {what} >= {minimum}, got {value!r}.")
