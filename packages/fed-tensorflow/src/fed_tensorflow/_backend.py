"""The TensorFlow backend: runs the compiled leaves of TensorFlow computations.

Each leaf is loaded once into a concrete function that imports its frozen graph. A `federated_map`
over clients with tensor inputs runs as one graph call over the stacked inputs (vectorized with
`tf.vectorized_map`, or looped with `tf.map_fn` where an op cannot be vectorized), split over the
backend's devices. Clients with dataset inputs run in one looped call, or one call each, concurrently,
round-robin over the devices, or, where the computation carries a vectorized form (see `_payload`), in
groups of clients whose datasets have the same element shapes, one batched call per group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, Literal, cast, get_args

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context as eager_context

from fed_core.framework import (
    Backend,
    ClientValues,
    CompiledComputation,
    LeafCache,
    LoadedComputation,
    run_per_member,
)
from fed_tensorflow._datasets import (
    as_dataset,
    from_variant,
    parameter_dataset,
    parameter_element_spec,
    to_variant,
)
from fed_tensorflow._dense import read_if_readable
from fed_tensorflow._payload import GraphPayload, all_nodes
from fed_tensorflow._sources import (
    Cohort,
    DatasetSource,
    _exclusive_cumsum,
    aligned_empty,
    cohort_source,
    host_tensor,
)
from fed_tensorflow._structure import Leaf, flatten, flatten_columns, leaf_types, pack
from fed_tensorflow._type_conversions import tensor_spec, to_tf_dtype
from fed_types import FunctionType, SequenceType, TensorType, Type

MapStrategy = Literal["auto", "vectorized", "looped", "per_client"]
_STRATEGIES: tuple[str, ...] = get_args(MapStrategy)
_VARIANT_SPEC = tf.TensorSpec([], tf.variant)
_VARIANTS_SPEC = tf.TensorSpec([None], tf.variant)
_RESOURCE = tf.resource.as_datatype_enum
# How many clients' iterations of a looped map may run at once (TensorFlow's while loop overlaps them).
_PARALLEL_CLIENTS = 16
# How many timed maps of each kind decide how clients with datasets run (see `_map_sequences_by_trial`).
_TRIALS = 2
# The most clients a timed part of a split map gives each way but one (the fastest so far takes the
# rest), so that a map of many clients does not run half of them the slow way while timing.
_TRIAL_CLIENTS = 256
# The most bytes of clients' data one call of a vectorized form takes.
_VECTORIZED_BYTES = 256 << 20
# The most dataset sources whose cohorts a computation's looped call is traced for (see
# `_map_with_sequences`); datasets of further sources go in one by one.
_SOURCED_LOOPS = 4


class _FromThread(logging.Filter):
    """Drops the records logged by one thread (those whose message contains `containing`, if
    given)."""

    def __init__(self, thread: int, containing: str | None):
        super().__init__()
        self._thread = thread
        self._containing = containing

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self._thread:
            return True
        return self._containing is not None and self._containing not in record.getMessage()


@contextlib.contextmanager
def tensorflow_log_silenced(containing: str | None = None) -> Iterator[None]:
    """Silences TensorFlow's Python logger for what this thread logs while the block runs (only
    the messages containing `containing`, if given); other threads log as usual."""
    logger = tf.get_logger()
    this_thread = _FromThread(threading.get_ident(), containing)
    logger.addFilter(this_thread)
    try:
        yield
    finally:
        logger.removeFilter(this_thread)


def _scope_name(name: str) -> str:
    """`name` as a root name scope, which TensorFlow wants to start with a letter, digit or dot: a
    private function's leading underscores are dropped."""
    stripped = name.lstrip("_")
    return stripped if stripped.isidentifier() else "computation"


class TensorFlowBackend(Backend):
    """Runs TensorFlow leaves on `devices` (default: all GPUs, else all logical CPUs), several
    clients per device at once. `map_strategy` chooses how a map over clients with tensor inputs
    runs: "auto" (one vectorized call, else one looped call, else one call per client), or only
    "vectorized", "looped" or "per_client"."""

    def __init__(self, devices: Sequence[str] | None = None, map_strategy: MapStrategy = "auto"):
        self._lock = threading.Lock()
        self._round_robin = itertools.count()
        self._graph_loads = LeafCache(lambda leaf: LoadedTensorFlowComputation(leaf, self))
        self.configure(devices=devices, map_strategy=map_strategy)

    def configure(
        self, devices: Sequence[str] | None = None, map_strategy: MapStrategy = "auto"
    ) -> None:
        """Sets the devices client work is spread over (None: automatic) and the map strategy."""
        if map_strategy not in _STRATEGIES:
            raise ValueError(
                f"map_strategy must be one of {list(_STRATEGIES)}, got {map_strategy!r}."
            )
        if devices is not None:
            if (
                isinstance(devices, str)
                or not all(isinstance(d, str) for d in devices)
                or not devices
            ):
                raise TypeError(
                    f"devices must be a non-empty list of device names such as '/GPU:0', "
                    f"got {devices!r}."
                )
            devices = list(devices)
        with self._lock:
            self._requested_devices = devices
            # Resolved on first use: listing devices initializes TensorFlow's runtime, after which
            # logical devices can no longer be configured.
            self._devices: list[str] | None = None
            self._map_strategy: MapStrategy = map_strategy

    @property
    def map_strategy(self) -> MapStrategy:
        return self._map_strategy

    @property
    def devices(self) -> list[str]:
        """The devices client work runs on, in round-robin order."""
        with self._lock:
            if self._devices is None:
                self._devices = _resolve_devices(self._requested_devices)
            return self._devices

    def next_device(self) -> str:
        devices = self.devices
        return devices[next(self._round_robin) % len(devices)]

    def load(self, computation: CompiledComputation) -> LoadedTensorFlowComputation:
        return LoadedTensorFlowComputation(computation, self)

    def check(self, computation: CompiledComputation) -> None:
        GraphPayload.decode(computation.payload).check(computation.type_signature)  # type: ignore[arg-type]

    def load_for_graph(self, computation: CompiledComputation) -> LoadedTensorFlowComputation:
        """`load`, cached (by leaf, then by payload): for computations called while another one is traced."""
        return self._graph_loads.get(computation)  # type: ignore[return-value]


def _grow_gpu_memory() -> None:
    """Turns on TensorFlow's memory growth on every GPU not yet set up, so that a simulation takes
    the GPU memory it uses rather than all of it (several processes, Ray workers among them, can then
    share a GPU). `TF_FORCE_GPU_ALLOW_GROWTH=false` keeps TensorFlow's default; GPUs already set up
    (TensorFlow ran on them, or the user split them into logical devices) are left as they are."""
    if os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "false":
        return
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # initialized already, or split into logical devices
            pass


# At import, before TensorFlow sets up the GPUs (the first op or model does), when it still can.
_grow_gpu_memory()


def _resolve_devices(requested: list[str] | None) -> list[str]:
    logical = tf.config.list_logical_devices()
    if requested is None:
        gpus = [d.name for d in logical if d.device_type == "GPU"]
        return gpus or [d.name for d in logical if d.device_type == "CPU"]
    known = {(d.device_type, tf.DeviceSpec.from_string(d.name).device_index) for d in logical}
    for name in requested:
        spec = tf.DeviceSpec.from_string(name)
        if (spec.device_type, spec.device_index or 0) not in known:
            names = [d.name for d in logical]
            raise ValueError(
                f"Unknown device {name!r}: the logical devices of this process are {names}."
            )
    return requested


class LoadedTensorFlowComputation(LoadedComputation):
    """One TensorFlow leaf, ready to run: called with values in executor form, returns tensors as
    `tf.Tensor`s, structs as `fed_types.Struct`s and sequences as `tf.data.Dataset`s."""

    def __init__(self, computation: CompiledComputation, backend: TensorFlowBackend):
        self._backend = backend
        self._name = computation.name or "computation"
        fn_type = cast(FunctionType, computation.type_signature)
        self._parameter_type = fn_type.parameter
        self._result_type: Type = fn_type.result
        self._inputs: list[Leaf] = leaf_types(fn_type.parameter)
        self._outputs: list[Leaf] = leaf_types(fn_type.result)
        payload = GraphPayload.decode(computation.payload)
        vectorized = payload.vectorized
        self._graph = dataclasses.replace(
            payload, graph_def=_without_resource_aliases(payload.graph_def), vectorized=None
        )
        # The form that runs a group of clients with datasets at once (see `_map_vectorized`).
        self._vectorized_graph = (
            None
            if vectorized is None
            else dataclasses.replace(
                vectorized, graph_def=_without_resource_aliases(vectorized.graph_def)
            )
        )
        ends = (len(self._graph.inputs), len(self._graph.outputs))
        if ends != (len(self._inputs), len(self._outputs)):
            raise ValueError(
                f"The graph of {self._name} has {ends[0]} inputs and {ends[1]} outputs, but its "
                f"type {fn_type} has {len(self._inputs)} and {len(self._outputs)} leaves."
            )
        # Functions that dataset and control flow ops name must be known to the runtime; their names
        # are unique to the graph (see the frontend), so registering them never clashes.
        for graph in (self._graph, self._vectorized_graph):
            for function in graph.graph_def.library.function if graph is not None else ():
                eager_context.context().add_function_def(function)
        self._input_dtypes = [
            None if isinstance(t, SequenceType) else to_tf_dtype(t.dtype) for t in self._inputs
        ]
        self._has_sequences = any(isinstance(t, SequenceType) for t in self._inputs + self._outputs)
        self._has_sequence_outputs = any(isinstance(t, SequenceType) for t in self._outputs)
        # Clients in a looped call overlap, unless the graph holds state (a variable, a table) that
        # every iteration would share.
        self._parallel_clients = 1 if _holds_state(self._graph.graph_def) else _PARALLEL_CLIENTS
        self._lock = threading.Lock()
        self._single: Any = None
        # Map strategy (or ("sequences", which inputs are shared)) -> its concrete function over
        # stacked inputs, or None if it cannot be built.
        self._batched: dict[Any, Any] = {}
        # Seconds per client of the first maps of clients with datasets, by how they ran.
        self._trials: dict[str, list[float]] = {}
        self._vectorized: Any = None  # the concrete function of the vectorized form, once built
        self._readers: dict[int, Any] = {}  # sequence input -> the function that reads it whole
        self._sourced_loops = 0  # looped calls traced for datasets' sources
        self._builds = 0  # functions traced, so that the trials time no tracing
        self._seen_sources: weakref.WeakSet[DatasetSource] = weakref.WeakSet()
        # Seconds spent reading clients' datasets whole for sources' `ReadCache`s: a one-off cost
        # per client, which the trials of the "auto" strategy do not count (as they count no tracing).
        self._reading_seconds = 0.0

    def import_graph(self, *inputs: tf.Tensor) -> list[tf.Tensor]:
        """Adds the computation's graph to the graph being built, fed with `inputs`; returns its
        outputs. (Traced as it is, with positional inputs only: a concrete function whose structured
        signature does not bind its call formats an error message of its arguments on every call.)"""
        return self.import_graph_reading(inputs, {})

    def import_graph_reading(
        self, inputs: Sequence[tf.Tensor], read_whole: dict[str, tf.Tensor]
    ) -> list[tf.Tensor]:
        """`import_graph`, with `read_whole` feeding its optional inputs that give datasets read
        whole (by name)."""
        input_map = dict(zip(self._graph.inputs, inputs, strict=True))
        input_map.update(read_whole)
        return tf.graph_util.import_graph_def(
            self._graph.graph_def,
            input_map=input_map,
            return_elements=list(self._graph.outputs),
            name=_scope_name(self._name),
        )

    def __call__(self, argument: Any = None) -> Any:
        with tf.device(self._backend.next_device()):
            outputs = self._single_function()(*self._input_tensors(argument))
        return self._result(outputs)

    def call_in_graph(self, argument: Any) -> Any:
        """Runs the computation inside the graph being built (while another computation is traced);
        the elements of its datasets are in the Python containers of its type."""
        return self._result(self.import_graph(*self._input_tensors(argument)), with_containers=True)

    def map(self, clients: ClientValues, pool: Executor | None) -> ClientValues:
        strategy = self._backend.map_strategy
        if len(clients) == 0:
            return ClientValues([])
        if strategy == "per_client" or (len(clients) == 1 and strategy == "auto"):
            return self._map_per_client(clients.members(), pool)
        if self._has_sequences:
            if self._has_sequence_outputs:
                return self._map_per_client(clients.members(), pool)
            if strategy == "vectorized":
                result = self._map_vectorized(clients, pool)
                return self._map_per_client(clients.members(), pool) if result is None else result
            if strategy == "looped":
                return self._map_with_sequences(clients, pool)
            return self._map_sequences_by_trial(clients, pool)
        batched = self._batched_function(strategy)
        if batched is not None:
            try:
                inputs = self._stacked_inputs(clients)
            except ValueError:
                if strategy != "auto":
                    raise
            else:
                try:
                    return self._map_batched(batched, inputs, len(clients), pool)
                except tf.errors.OpError:
                    if strategy != "auto":
                        raise
                    # A client's data may have made the batched call fail: the per-client calls
                    # then raise its error. If they succeed instead, the batched graph is at fault.
                    result = self._map_per_client(clients.members(), pool)
                    with self._lock:
                        self._batched[strategy] = None
                    return result
        return self._map_per_client(clients.members(), pool)

    def _map_sequences_by_trial(self, clients: ClientValues, pool: Executor | None) -> ClientValues:
        """The "auto" strategy for clients with datasets: the first maps split their clients between
        the ways they can run (one looped call; one call per client; and on accelerators the
        vectorized form, where the computation has one) and time each; later maps take the fastest.
        (The looped call wins where clients are many and small; one call per client, concurrently,
        where each client's training is heavy enough to use the cores by itself. All give the same
        results.)"""
        kinds = ["looped", "per_client"]
        if self._vectorized_graph is not None and _tries_vectorized(self._backend.devices):
            kinds.insert(0, "vectorized")
        with self._lock:
            trials = {kind: list(self._trials.get(kind, ())) for kind in kinds}
        if all(len(times) >= _TRIALS for times in trials.values()):
            for kind in sorted(kinds, key=lambda k: min(trials[k])):
                result = self._map_by(kind, clients, pool)
                if result is not None:
                    return result
        n = len(clients)
        done = sum(len(times) for times in trials.values())
        # A map too small to split tries the ways in turn. A larger one is split evenly, or, where
        # that would give each way more than `_TRIAL_CLIENTS` clients, gives each of the others that
        # many and the rest to the fastest way so far (the first way until each is timed).
        parts = kinds if n >= 2 * len(kinds) else [kinds[done % len(kinds)]]
        bounds = np.linspace(0, n, len(parts) + 1).astype(int)
        if len(parts) > 1 and n > len(parts) * _TRIAL_CLIENTS:
            timed = all(trials[kind] for kind in kinds)
            lead = min(kinds, key=lambda k: min(trials[k])) if timed else kinds[0]
            parts = [lead] + [kind for kind in kinds if kind != lead]
            sizes = [n - (len(parts) - 1) * _TRIAL_CLIENTS] + [_TRIAL_CLIENTS] * (len(parts) - 1)
            bounds = np.concatenate([[0], np.cumsum(sizes)])
        members = clients.members()
        results: list[Any] = []
        for kind, start, end in zip(parts, bounds[:-1], bounds[1:], strict=True):
            part = ClientValues(members[start:end])
            began, builds, reading = time.perf_counter(), self._builds, self._reading_seconds
            result = self._map_by(kind, part, pool)
            seconds = time.perf_counter() - began - (self._reading_seconds - reading)
            seconds_per_client = seconds / (end - start)
            if result is None:  # no vectorized form for these clients' data
                result = self._map_with_sequences(part, pool)
                seconds_per_client = float("inf")
            # A part that traced a function (and ran it first, which sets it up) is not timed.
            if self._builds == builds or seconds_per_client == float("inf"):
                with self._lock:
                    self._trials.setdefault(kind, []).append(seconds_per_client)
            if len(parts) == 1:
                return result
            results.extend(result.members())
        return ClientValues(results)

    def _map_by(
        self, kind: str, clients: ClientValues, pool: Executor | None
    ) -> ClientValues | None:
        if kind == "vectorized":
            return self._map_vectorized(clients, pool)
        if kind == "looped":
            return self._map_with_sequences(clients, pool)
        return self._map_per_client(clients.members(), pool)

    def _map_vectorized(self, clients: ClientValues, pool: Executor | None) -> ClientValues | None:
        """Runs clients with datasets with the computation's vectorized form: each client's datasets
        are read whole, the clients are grouped by the shapes of their elements, and each group runs
        as one batched call (split where its data would exceed `_VECTORIZED_BYTES`; all the clients'
        data is read first). None, for the caller to run the clients otherwise, where there is no
        vectorized form (or it does not load), the clients' other inputs differ (it takes them once,
        shared), a dataset cannot be read whole (unknown or large cardinality, ragged elements), or
        the groups' results differ in shape."""
        if self._vectorized_graph is None:
            return None
        members = clients.members()
        n = len(members)
        columns = flatten_columns(members, self._parameter_type)
        # Per input: None for a shared tensor, else per client (count, shapes, padded) as arrays.
        reads: list[list[tuple[int, list[np.ndarray], list[np.ndarray]]] | None] = []
        for position, (t, column) in enumerate(zip(self._inputs, columns, strict=True)):
            if not isinstance(t, SequenceType):
                if not all(v is column[0] for v in column):
                    return None
                reads.append(None)
                continue
            per_client = self._read_clients(position, t, column)
            if per_client is None:
                return None
            reads.append(per_client)
        groups: dict[Any, list[int]] = {}
        for k in range(n):
            key = tuple(
                (r[k][0], tuple((s.shape, s.tobytes()) for s in r[k][1]))
                for r in reads
                if r is not None
            )
            groups.setdefault(key, []).append(k)
        devices = self._backend.devices
        outputs: list[np.ndarray | None] = [None] * len(self._outputs)
        calls = 0
        for indices in groups.values():
            per_client_bytes = sum(
                a.nbytes for r in reads if r is not None for a in r[indices[0]][2]
            )
            size = max(1, _VECTORIZED_BYTES // max(1, per_client_bytes))
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                args: list[Any] = []
                for dtype, column, r in zip(self._input_dtypes, columns, reads, strict=True):
                    if r is None:
                        args.append(tf.convert_to_tensor(column[0], dtype=dtype))
                        continue
                    count, shapes, padded = r[chunk[0]]
                    args.append(np.int64(count))
                    args.extend(shapes)
                    args.extend(
                        _stacked([r[k][2][leaf] for k in chunk]) for leaf in range(len(padded))
                    )
                fn = self._vectorized_function(args)
                if fn is None:
                    return None
                try:
                    with tf.device(devices[calls % len(devices)]):
                        results = fn(*args)
                except tf.errors.OpError:
                    # As in `map`: the per-client calls raise the failing client's error; if they
                    # succeed, the vectorized form is at fault and is not used again.
                    result = self._map_per_client(members, pool)
                    with self._lock:
                        self._vectorized_graph = None
                    return result
                calls += 1
                for position, result in enumerate(results):
                    array = result.numpy()
                    stacked = outputs[position]
                    if stacked is None:
                        stacked = outputs[position] = np.empty((n, *array.shape[1:]), array.dtype)
                    elif stacked.shape[1:] != array.shape[1:]:  # results of varying shapes
                        return None
                    stacked[chunk] = array
        return ClientValues(stacked=pack(self._result_type, iter(outputs)), size=n)

    def _read_clients(
        self, position: int, t: SequenceType, column: Sequence[Any]
    ) -> list[tuple[int, list[np.ndarray], list[np.ndarray]]] | None:
        """Per client, its dataset (input `position`) read whole as `fold_dataset` reads it: `(count,
        shapes, padded)`, one array per element leaf. Clients whose source keeps them read (see
        `ReadCache`) are cut from what it keeps; the others are read in one call (`_reader`). None
        where a dataset cannot be read whole."""
        reads: list[tuple[int, list[np.ndarray], list[np.ndarray]] | None] = [None] * len(column)
        source = cohort_source(column)
        kept = None if source is None else self._cached_reads(source, t, column, arrays=True)
        if kept is not None:
            (counts, starts, *per_leaf), shared = kept
            held = _cut_reads(counts, starts, per_leaf[0::2], per_leaf[1::2], shared)
            # An empty dataset is read again, to give the padded shape reading gives it.
            reads = [read if read[0] > 0 else None for read in held]
        missing = [k for k, read in enumerate(reads) if read is None]
        if missing:
            variants = tf.stack([to_variant(as_dataset(column[k], t.element)) for k in missing])
            read_now = _split_reads(self._reader(position, t)(variants))
            if read_now is None:
                return None
            for k, read in zip(missing, read_now, strict=True):
                reads[k] = read
        return cast(list[tuple[int, list[np.ndarray], list[np.ndarray]]], reads)

    def _reader(self, position: int, t: SequenceType) -> Any:
        """The function that reads clients' datasets (input `position`) whole, as `fold_dataset`
        reads them, in one call for all of them (`_read_each`), from a vector of dataset variants;
        `_split_reads` takes its results apart. (On 2 CPU cores, 50 clients of five 10x3072
        batches took 27 to 31 ms read one call each, 18 to 22 ms in one call, the datasets'
        reading overlapping as in the looped call.)"""
        with self._lock:
            if position not in self._readers:
                specs = tf.nest.flatten(parameter_element_spec(t.element))

                def read(variants: tf.Tensor) -> list[tf.Tensor]:
                    with tf.device("/CPU:0"):  # datasets are read on the host
                        counts, shapes, values, largest = _read_each(
                            tf.shape(variants)[0],
                            lambda i: parameter_dataset(variants[i], t.element),
                            specs,
                        )
                    return [counts, *shapes, *values, *largest]

                self._readers[position] = tf.function(
                    read, input_signature=[_VARIANTS_SPEC], autograph=False
                ).get_concrete_function()
            return self._readers[position]

    def _vectorized_function(self, args: list[Any]) -> Any:
        """The vectorized form as a concrete function, or None (and the form is dropped) if its graph
        does not load (a corrupt payload)."""
        with self._lock:
            if self._vectorized is None:
                if self._vectorized_graph is None:
                    return None
                graph = self._vectorized_graph
                specs = [
                    tf.TensorSpec([None] * np.ndim(a), tf.as_dtype(np.asarray(a).dtype))
                    if not isinstance(a, tf.Tensor)
                    else tf.TensorSpec([None] * a.shape.rank, a.dtype)
                    for a in args
                ]

                def vectorized(*inputs: tf.Tensor) -> Any:
                    return tf.graph_util.import_graph_def(
                        graph.graph_def,
                        input_map=dict(zip(graph.inputs, inputs, strict=True)),
                        return_elements=list(graph.outputs),
                        name=_scope_name(self._name),
                    )

                try:
                    self._builds += 1
                    self._vectorized = tf.function(
                        vectorized, input_signature=specs, autograph=False
                    ).get_concrete_function()
                except (ValueError, TypeError, tf.errors.OpError):
                    self._vectorized_graph = None
                    return None
            return self._vectorized

    def _map_with_sequences(self, clients: ClientValues, pool: Executor | None) -> ClientValues:
        """Runs clients that take datasets in one looped graph call per device: each client's dataset
        goes in as one element of a vector of variants, and inputs that every client shares (the
        broadcast model) go in once. Where a dataset input's datasets all come from one
        `DatasetSource` that makes cohorts (clients' data held in memory), none is made: the cohort's
        tensors go in instead, and each client's dataset is made inside the loop (from the second
        map with that source on: a source used once is not worth tracing a loop for)."""
        members = clients.members()
        columns = flatten_columns(members, self._parameter_type)
        shared = tuple(
            not isinstance(t, SequenceType) and all(v is column[0] for v in column)
            for t, column in zip(self._inputs, columns, strict=True)
        )
        sources = tuple(
            cohort_source(column) if isinstance(t, SequenceType) else None
            for t, column in zip(self._inputs, columns, strict=True)
        )
        with self._lock:
            sources = self._looped_sources(shared, sources)
        cohorts = [
            None if source is None else source.cohort([dataset.key for dataset in column])
            for source, column in zip(sources, columns, strict=True)
        ]
        # Per input: how many per-client and shared tensors its cohort gains for the datasets read
        # whole (appended to its own), where its source keeps them (see `ReadCache`).
        read_counts: list[tuple[int, int] | None] = [None] * len(cohorts)
        if any(cohorts) and self._graph.read_whole is not None:
            for position, (t, source, column) in enumerate(
                zip(self._inputs, sources, columns, strict=True)
            ):
                cohort = cohorts[position]
                if source is None or cohort is None or self._graph.read_whole[position] is None:
                    continue
                rows = self._cached_reads(source, cast(SequenceType, t), column)
                if rows is not None:
                    client_reads, shared_reads = rows
                    cohorts[position] = Cohort(
                        cohort.per_client + client_reads, cohort.shared + shared_reads
                    )
                    read_counts[position] = (len(client_reads), len(shared_reads))
        key = _sequences_key(shared, sources)
        if any(read_counts):  # a loop of its own, taking the datasets read whole too
            key = (*key, tuple(read_counts))
        with self._lock:
            if key not in self._batched:
                self._sourced_loops += any(sources)
                self._builds += 1
                self._batched[key] = self._build_looped_over_sequences(
                    shared, sources, cohorts, read_counts
                )
            fn = self._batched[key]
        if fn is None:
            return self._map_per_client(members, pool)
        inputs: list[tf.Tensor] = []
        per_client: list[bool] = []
        for t, dtype, column, is_shared, cohort in zip(
            self._inputs, self._input_dtypes, columns, shared, cohorts, strict=True
        ):
            if cohort is not None:
                inputs.extend(cohort.per_client)
                inputs.extend(cohort.shared)
                per_client.extend([True] * len(cohort.per_client) + [False] * len(cohort.shared))
                continue
            if isinstance(t, SequenceType):
                inputs.append(tf.stack([to_variant(as_dataset(v, t.element)) for v in column]))
            elif is_shared:
                inputs.append(tf.convert_to_tensor(column[0], dtype=dtype))
            else:
                try:
                    inputs.append(tf.convert_to_tensor(_stack(column), dtype=dtype))
                except ValueError:  # members of different shapes
                    return self._map_per_client(members, pool)
            per_client.append(not is_shared)
        try:
            return self._map_batched(fn, inputs, len(members), pool, per_client=per_client)
        except tf.errors.OpError:
            # As in `map`: the per-client calls raise the failing client's error; if they succeed,
            # the looped graph is at fault and is not used again.
            result = self._map_per_client(members, pool)
            with self._lock:
                self._batched[key] = None
            return result

    def _looped_sources(
        self, shared: tuple[bool, ...], sources: tuple[DatasetSource | None, ...]
    ) -> tuple[DatasetSource | None, ...]:
        """The sources whose cohorts a looped call takes (called with the lock held; the others'
        datasets go in one by one). A source is looped over from its second map on, and only
        `_SOURCED_LOOPS` of them are, so that sources made anew for every map (a data set
        preprocessed anew each round) trace no loop each time. Sources are held weakly: a loop traced
        for a source that is gone is dropped, with its place among the `_SOURCED_LOOPS`, and keeps
        none of its data alive."""
        if not any(sources):
            return sources
        if any(source is not None and source not in self._seen_sources for source in sources):
            self._seen_sources.update(source for source in sources if source is not None)
            return (None,) * len(sources)
        for known in [k for k in self._batched if k[0] == "sequences"]:
            if any(ref is not None and ref() is None for ref in known[2]):
                del self._batched[known]
                self._sourced_loops -= 1
        base = _sequences_key(shared, sources)
        if not any(k[:3] == base for k in self._batched) and (
            self._sourced_loops >= _SOURCED_LOOPS
        ):
            return (None,) * len(sources)
        return sources

    def _cached_reads(
        self, source: DatasetSource, t: SequenceType, column: Sequence[Any], arrays: bool = False
    ) -> tuple[list[Any], list[Any]] | None:
        """For clients whose datasets come from `source`: the per-client and shared tensors of their
        datasets read whole, where the source keeps them (see `ReadCache`), after reading those it
        lacks that are due (`ReadCache.due`); a client it does not hold has a count of -1, and the
        computation reads its dataset. None where a client's data fails its pipeline (the loop then
        raises that client's error). With `arrays`, NumPy arrays instead of tensors (the shared
        ones views of what the source keeps)."""
        cache = source.read_cache(t.element)
        if cache is None:
            return None
        keys = [dataset.key for dataset in column]
        with cache.lock:
            if cache.reader is None:
                cache.reader = _cohort_reader(source, t)
                cache.prepare(cache.reader.specs)
            due = cache.due([k for k in dict.fromkeys(keys) if k not in cache.index])
            if due:
                began = time.perf_counter()
                try:
                    cache.extend(due, cache.reader, source.cohort)
                except tf.errors.OpError:
                    return None
                finally:
                    self._reading_seconds += time.perf_counter() - began
            if arrays:
                return cache.row_arrays(keys), cache.arrays()
            return cache.rows(keys), list(cache.shared)

    def _build_looped_over_sequences(
        self,
        shared: tuple[bool, ...],
        sources: tuple[DatasetSource | None, ...],
        cohorts: list[Cohort | None],
        read_counts: Sequence[tuple[int, int] | None],
    ) -> Any:
        # Per input, the specs of the tensors it goes in as, which of them are per client, and which
        # are a cohort's tensors (read by its source's pipeline, never by the computation's graph).
        specs: list[tf.TensorSpec] = []
        per_client: list[bool] = []
        of_cohort: list[bool] = []
        for t, is_shared, cohort in zip(self._inputs, shared, cohorts, strict=True):
            if cohort is not None:
                for tensors, own in ((cohort.per_client, True), (cohort.shared, False)):
                    specs.extend(tf.TensorSpec([None] * x.shape.rank, x.dtype) for x in tensors)
                    per_client.extend([own] * len(tensors))
                    of_cohort.extend([True] * len(tensors))
                continue
            if isinstance(t, SequenceType):
                specs.append(tf.TensorSpec([None], tf.variant))
                per_client.append(True)
            else:
                specs.append(tensor_spec(t) if is_shared else _stacked_spec(t))
                per_client.append(not is_shared)
            of_cohort.append(False)
        output_specs = [tensor_spec(t) for t in self._outputs]  # type: ignore[arg-type]
        # Per input: None, or how many per-client and shared tensors its cohort has (the cohorts
        # themselves, and the data they hold, are not kept).
        counts = [None if c is None else (len(c.per_client), len(c.shared)) for c in cohorts]
        read_names = self._graph.read_whole or (None,) * len(cohorts)

        def looped(*inputs: tf.Tensor) -> Any:
            own_inputs = [x for x, own in zip(inputs, per_client, strict=True) if own]

            def one_client(xs: Sequence[tf.Tensor]) -> Any:
                own = iter(xs)
                # A shared input is captured into the loop's body (an identity there, which an
                # imported graph's input can be mapped to; a cohort's shared tensors, the whole data
                # set, are read where they are).
                values = iter(
                    [
                        next(own) if is_own else x if cohort_input else tf.identity(x)
                        for x, is_own, cohort_input in zip(
                            inputs, per_client, of_cohort, strict=True
                        )
                    ]
                )
                args = []
                read_whole: dict[str, tf.Tensor] = {}
                for source, count, reads, names in zip(
                    sources, counts, read_counts, read_names, strict=True
                ):
                    if source is None or count is None:
                        args.append(next(values))
                        continue
                    client = [next(values) for _ in range(count[0])]
                    common = [next(values) for _ in range(count[1])]
                    if reads is not None:
                        assert names is not None
                        read = _read_from_cache(
                            client[count[0] - reads[0] :], common[count[1] - reads[1] :]
                        )
                        read_whole.update(zip(names, read, strict=True))
                        client = client[: count[0] - reads[0]]
                        common = common[: count[1] - reads[1]]
                    with tf.device("/CPU:0"):  # datasets are made and read on the host
                        args.append(_client_variant(source, client, common))
                return self.import_graph_reading(args, read_whole)

            return tf.map_fn(
                one_client,
                own_inputs,
                fn_output_signature=output_specs,
                parallel_iterations=self._parallel_clients,
            )

        try:
            return tf.function(
                looped, input_signature=specs, autograph=False
            ).get_concrete_function()
        except Exception:  # a graph that cannot run in a loop: clients run one call each
            return None

    def _single_function(self) -> Any:
        with self._lock:
            if self._single is None:
                specs = [
                    _VARIANT_SPEC if dtype is None else tensor_spec(cast(TensorType, t))
                    for t, dtype in zip(self._inputs, self._input_dtypes, strict=True)
                ]
                self._builds += 1
                self._single = tf.function(
                    self.import_graph, input_signature=specs, autograph=False
                ).get_concrete_function()
            return self._single

    def _batched_function(self, strategy: str) -> Any:
        with self._lock:
            if strategy not in self._batched:
                self._batched[strategy] = self._build_batched(strategy)
            return self._batched[strategy]

    def _build_batched(self, strategy: str) -> Any:
        specs = [_stacked_spec(t) for t in self._inputs]  # type: ignore[arg-type]
        output_specs = [tensor_spec(t) for t in self._outputs]  # type: ignore[arg-type]

        def vectorized(*stacked: tf.Tensor) -> Any:
            return tf.vectorized_map(
                lambda xs: self.import_graph(*xs), stacked, fallback_to_while_loop=False
            )

        def looped(*stacked: tf.Tensor) -> Any:
            return tf.map_fn(
                lambda xs: self.import_graph(*xs),
                stacked,
                fn_output_signature=output_specs,
                parallel_iterations=self._parallel_clients,
            )

        builders = {"vectorized": vectorized, "looped": looped}
        kinds = ["vectorized", "looped"] if strategy == "auto" else [strategy]
        for kind in kinds:
            try:
                # When "auto" tries vectorizing, an op without a vectorized form is expected:
                # TensorFlow's logged errors about it would only alarm, as a loop follows.
                quiet = kind == "vectorized" and strategy == "auto"
                with tensorflow_log_silenced() if quiet else contextlib.nullcontext():
                    return tf.function(
                        builders[kind], input_signature=specs, autograph=False
                    ).get_concrete_function()
            except Exception:  # an op without a vectorized form, outputs of varying shapes, ...
                if strategy != "auto":
                    raise
        return None

    def _input_tensors(self, argument: Any) -> list[tf.Tensor]:
        tensors = []
        values = flatten(argument, self._parameter_type)
        for value, t, dtype in zip(values, self._inputs, self._input_dtypes, strict=True):
            if isinstance(t, SequenceType):
                tensors.append(to_variant(as_dataset(value, t.element)))
            else:
                tensors.append(tf.convert_to_tensor(value, dtype=dtype))
        return tensors

    def _result(self, outputs: Sequence[tf.Tensor], with_containers: bool = False) -> Any:
        values = (
            from_variant(o, t.element, with_containers=with_containers)
            if isinstance(t, SequenceType)
            else o
            for o, t in zip(outputs, self._outputs, strict=True)
        )
        return pack(self._result_type, values)

    def _stacked_inputs(self, clients: ClientValues) -> list[tf.Tensor]:
        """The clients' inputs with a leading client axis; ValueError if they cannot be stacked."""
        stacked = flatten(clients.stacked(), self._parameter_type)
        return [
            tf.convert_to_tensor(s, dtype=dtype)
            for s, dtype in zip(stacked, self._input_dtypes, strict=True)
        ]

    def _map_batched(
        self,
        fn: Any,
        inputs: list[tf.Tensor],
        n: int,
        pool: Executor | None,
        per_client: list[bool] | None = None,
    ) -> ClientValues:
        """Calls `fn` on the stacked `inputs` (those marked False in `per_client` are shared by all
        clients and passed whole), split into one part per device."""
        devices = self._backend.devices
        parts = min(len(devices), n)
        sliced = per_client or [True] * len(inputs)
        if parts == 1:
            with tf.device(devices[0]):
                outputs = fn(*inputs)
        else:
            bounds = np.linspace(0, n, parts + 1).astype(int)

            def run(part: int) -> Any:
                start, end = bounds[part], bounds[part + 1]
                with tf.device(devices[part]):
                    return fn(
                        *[x[start:end] if s else x for x, s in zip(inputs, sliced, strict=True)]
                    )

            results = run_per_member(run, list(range(parts)), pool)
            outputs = [
                tf.concat([r[k] for r in results], axis=0) for k in range(len(self._outputs))
            ]
        # Stacked values are split into members by indexing: a cheap view on numpy arrays, but a
        # TensorFlow op per client on tensors. The arrays are read-only views of the outputs'
        # buffers (`.numpy()` would copy every client's result once more).
        arrays = iter([np.asarray(o) for o in outputs])
        return ClientValues(stacked=pack(self._result_type, arrays), size=n)

    def _map_per_client(self, members: list[Any], pool: Executor | None) -> ClientValues:
        devices = self._backend.devices
        single = self._single_function()

        def run(indexed: tuple[int, Any]) -> Any:
            k, member = indexed
            with tf.device(devices[k % len(devices)]):
                outputs = single(*self._input_tensors(member))
            return self._result(outputs)

        return ClientValues(run_per_member(run, list(enumerate(members)), pool))


def _client_variant(
    source: DatasetSource, own: Sequence[tf.Tensor], common: Sequence[tf.Tensor]
) -> tf.Tensor:
    """Inside a graph being traced: the variant tensor that a computation takes for one client's
    dataset from `source`, made from the client's row of its cohort's tensors (`own`) and the
    cohort's shared ones (`common`)."""
    dataset = tf.data.experimental.from_variant(
        source.variant_in_graph(own, common), source.element_spec
    )
    return to_variant(dataset)


def _stacked(arrays: Sequence[np.ndarray]) -> tf.Tensor:
    """The arrays, of one shape and dtype, stacked into a host tensor with one copy (into memory that
    the tensor shares, see `host_tensor`): a vectorized call's clients' data can be gigabytes."""
    stacked = aligned_empty((len(arrays), *arrays[0].shape), arrays[0].dtype)
    np.stack(arrays, out=stacked)
    return host_tensor(stacked)


def _split_reads(
    outputs: Sequence[tf.Tensor],
) -> list[tuple[int, list[np.ndarray], list[np.ndarray]]] | None:
    """Per client, `(count, shapes, padded)` as arrays (one per element leaf), from what a reader of
    `_read_each`'s results returns for several clients; None where a client's dataset could not be
    read whole."""
    arrays = [x.numpy() for x in outputs]
    counts, rest = arrays[0], arrays[1:]
    if (counts < 0).any():
        return None
    num_leaves = len(rest) // 3
    shapes, values, largest = (rest[k * num_leaves : (k + 1) * num_leaves] for k in range(3))
    rows = np.maximum(counts, 0)
    value_starts = [
        _exclusive_cumsum(rows * np.prod(shape, axis=1, dtype=np.int64)) for shape in largest
    ]
    return _cut_reads(counts, _exclusive_cumsum(rows), value_starts, largest, [*shapes, *values])


def _cut_reads(
    counts: np.ndarray,
    starts: np.ndarray,
    value_starts: Sequence[np.ndarray],
    largest: Sequence[np.ndarray],
    shared: Sequence[np.ndarray],
) -> list[tuple[int, list[np.ndarray], list[np.ndarray]]]:
    """Per client, `(count, shapes, padded)` cut from clients' datasets read whole into shared
    arrays, as `ReadCache` keeps them: per element leaf, all the clients' element shapes (rows), then
    all their padded values (flat); a client's shapes start at row `starts`, its values of each leaf
    at `value_starts`, and are padded to its `largest` shape. A client of count -1 (not read) gets
    no elements."""
    num_leaves = len(shared) // 2
    reads = []
    for k, count in enumerate(counts):
        rows = max(int(count), 0)
        shapes, padded = [], []
        for leaf in range(num_leaves):
            shapes.append(shared[leaf][starts[k] : starts[k] + rows])
            shape = (rows, *largest[leaf][k])
            begin = value_starts[leaf][k]
            padded.append(
                shared[num_leaves + leaf][begin : begin + math.prod(shape)].reshape(shape)
            )
        reads.append((int(count), shapes, padded))
    return reads


def _read_each(
    n: tf.Tensor, dataset: Callable[[tf.Tensor], tf.data.Dataset], specs: Sequence[tf.TensorSpec]
) -> tuple[tf.Tensor, list[tf.Tensor], list[tf.Tensor], list[tf.Tensor]]:
    """Inside a graph: the datasets `dataset(i)` for i < n read whole (`read_if_readable`), several
    at once, as `ReadCache` keeps them: their counts, and per element leaf (of `specs`) all their
    elements' shapes (rows), all their padded values (flat) and each one's largest element shape."""

    def arrays(dtype: tf.DType, *shape: int | None) -> tf.TensorArray:
        return tf.TensorArray(dtype, size=n, infer_shape=False, element_shape=shape or None)

    def body(i: tf.Tensor, counts: Any, shapes: Any, values: Any, largest: Any) -> Any:
        count, own_shapes, padded = read_if_readable(dataset(i))
        return (
            i + 1,
            counts.write(i, count),
            tuple(a.write(i, s) for a, s in zip(shapes, own_shapes, strict=True)),
            tuple(a.write(i, tf.reshape(p, [-1])) for a, p in zip(values, padded, strict=True)),
            tuple(
                a.write(i, tf.shape(p, out_type=tf.int64)[1:])
                for a, p in zip(largest, padded, strict=True)
            ),
        )

    _, counts, shapes, values, largest = tf.while_loop(
        lambda i, *_: i < n,
        body,
        (
            tf.constant(0),
            tf.TensorArray(tf.int64, size=n),
            tuple(arrays(tf.int64, None, s.shape.rank) for s in specs),
            tuple(arrays(s.dtype, None) for s in specs),
            tuple(tf.TensorArray(tf.int64, size=n, element_shape=[s.shape.rank]) for s in specs),
        ),
        parallel_iterations=_PARALLEL_CLIENTS,
    )
    return (
        counts.stack(),
        [a.concat() for a in shapes],
        [a.concat() for a in values],
        [a.stack() for a in largest],
    )


def _read_from_cache(own: Sequence[tf.Tensor], common: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Inside a looped graph: one client's dataset read whole (count, then per leaf the shapes, then
    per leaf the padded values), cut from a `ReadCache`'s tensors, given the client's row of its
    per-client tensors (`own`) and its shared ones (`common`)."""
    count, start, *per_leaf = own
    num_leaves = len(per_leaf) // 2
    rows = tf.maximum(count, 0)
    shapes, padded = [], []
    for leaf in range(num_leaves):
        value_start, largest = per_leaf[2 * leaf], per_leaf[2 * leaf + 1]
        shapes.append(common[leaf][start : start + rows])
        size = rows * tf.reduce_prod(largest)
        values = common[num_leaves + leaf][value_start : value_start + size]
        padded.append(tf.reshape(values, tf.concat([[rows], largest], 0)))
    return [count, *shapes, *padded]


def _cohort_reader(source: DatasetSource, t: SequenceType) -> Any:
    """A function that reads the datasets of a cohort of `source`'s clients whole, as a computation's
    parameter of type `t` reads each (`read_if_readable`), for a `ReadCache`: it gives their counts,
    and per element leaf all their shapes' rows, all their padded values (flat) and each client's
    largest shape. Its `specs` are the `tf.TensorSpec`s of the element leaves."""
    lock = threading.Lock()
    functions: dict[Any, Any] = {}
    # Held weakly: the source keeps its cache, which keeps this function.
    source_ref = weakref.ref(source)
    del source

    def concrete(cohort: Cohort) -> Any:
        tensors = [*cohort.per_client, *cohort.shared]
        specs = tuple(tf.TensorSpec([None] * x.shape.rank, x.dtype) for x in tensors)
        num_own = len(cohort.per_client)
        with lock:
            if specs not in functions:
                functions[specs] = tf.function(
                    lambda *xs: read(xs[:num_own], xs[num_own:]),
                    input_signature=list(specs),
                    autograph=False,
                ).get_concrete_function()
            return functions[specs]

    def parameter(own: Sequence[tf.Tensor], common: Sequence[tf.Tensor]) -> tf.data.Dataset:
        source = source_ref()
        assert source is not None  # traced while the source reads a cohort
        return parameter_dataset(_client_variant(source, own, common), t.element)

    specs = tf.nest.flatten(parameter_element_spec(t.element))

    def read(own: Sequence[tf.Tensor], common: Sequence[tf.Tensor]) -> Any:
        return _read_each(
            tf.shape(own[0])[0], lambda i: parameter([x[i] for x in own], common), specs
        )

    def reader(cohort: Cohort) -> Any:
        with tf.device("/CPU:0"):
            return concrete(cohort)(*cohort.per_client, *cohort.shared)

    reader.specs = specs  # type: ignore[attr-defined]
    return reader


def traces_vectorized_forms() -> bool:
    """Whether TensorFlow computations traced now get a vectorized form (see `_frontend`): where the
    backend may use it, with the map strategy "vectorized", or "auto" on an accelerator."""
    tf_backend = backend()
    strategy = tf_backend.map_strategy
    return strategy == "vectorized" or (
        strategy == "auto" and _tries_vectorized(tf_backend.devices)
    )


def _tries_vectorized(devices: list[str]) -> bool:
    """Whether "auto" times the vectorized form of client work: where it runs on an accelerator. On
    CPUs it is memory-bound (a group's weights, a copy per client, leave the cache that one client's
    fit in): a linear model's round took 1.7 to 2.3 times as long as with the looped call."""
    return any("CPU" not in device.upper() for device in devices)


def _without_resource_aliases(graph_def: Any) -> Any:
    """`graph_def` with each use of an `Identity` of a resource handle reading the handle itself (the
    control inputs of the `Identity` moved onto the user).

    Freezing inlines functions, which leaves an `Identity` for each input of an inlined function. When
    such an alias of a resource (a lookup table, a variable) is captured by a dataset that the graph
    reduces or iterates, the graph cannot be wrapped in a `tf.function`: TensorFlow's automatic control
    dependencies add the captured alias, resolve it to its input and add it again, forever.
    """
    aliases: dict[str, tuple[str, list[str]]] = {}
    for node in graph_def.node:
        if node.op == "Identity" and node.attr["T"].type == _RESOURCE:
            data = [name for name in node.input if not name.startswith("^")]
            controls = [name for name in node.input if name.startswith("^")]
            aliases[node.name] = (data[0], controls)
    if not aliases:
        return graph_def

    def resolve(name: str, controls: list[str]) -> str:
        node, _, port = name.partition(":")
        while node in aliases and port in ("", "0"):
            name, more = aliases[node]
            controls.extend(more)
            node, _, port = name.partition(":")
        return name

    result = tf.compat.v1.GraphDef()
    result.CopyFrom(graph_def)
    for node in result.node:
        controls = [name for name in node.input if name.startswith("^")]
        data = [resolve(name, controls) for name in node.input if not name.startswith("^")]
        # Control inputs follow data inputs in a NodeDef.
        del node.input[:]
        node.input.extend(data + list(dict.fromkeys(controls)))
    return result


def _sequences_key(
    shared: tuple[bool, ...], sources: tuple[DatasetSource | None, ...]
) -> tuple[Any, ...]:
    """The key of a looped call over clients with datasets: which inputs are shared, and the sources
    whose cohorts it takes, held weakly."""
    return ("sequences", shared, tuple(None if s is None else weakref.ref(s) for s in sources))


def _holds_state(graph_def: Any) -> bool:
    """Whether the graph (or a function of its library) makes a variable or a table."""
    return any(
        node.op == "VarHandleOp" or "Variable" in node.op or "HashTable" in node.op
        for node in all_nodes(graph_def)
    )


def _stack(column: Sequence[Any]) -> Any:
    if all(isinstance(v, tf.Tensor) for v in column):
        return tf.stack(list(column))
    return np.stack([np.asarray(v) for v in column])


def _stacked_spec(t: TensorType) -> tf.TensorSpec:
    spec = tensor_spec(t)
    shape = (
        tf.TensorShape(None)
        if spec.shape.rank is None
        else tf.TensorShape([None]).concatenate(spec.shape)
    )
    return tf.TensorSpec(shape, spec.dtype)


_default_backend = TensorFlowBackend()


_context_backends: dict[tuple[str, ...], TensorFlowBackend] = {}
_context_backends_lock = threading.Lock()


def backend(devices: Sequence[str] | None = None) -> TensorFlowBackend:
    """The backend that the "tensorflow" frontend registers: the process's default one (see `configure`),
    or, for an execution context given its own `devices`, one backend per list of devices."""
    if devices is None:
        return _default_backend
    key = tuple(devices)
    with _context_backends_lock:
        found = _context_backends.get(key)
        if found is None:
            found = _context_backends[key] = TensorFlowBackend(
                devices=list(devices), map_strategy=_default_backend.map_strategy
            )
        return found


def configure(devices: Sequence[str] | None = None, map_strategy: MapStrategy = "auto") -> None:
    """Configures how fed runs TensorFlow computations in this process.

    `devices`: the TensorFlow devices client work is spread over, round-robin (such as
    `["/GPU:0", "/GPU:1"]`); None (the default) uses all GPUs, or all logical CPUs if there is no
    GPU. `map_strategy`: how a `federated_map` of a computation over clients with tensor inputs
    runs: "auto" (the default: one vectorized graph call for all clients, else one looped call,
    else one call per client), or only "vectorized", "looped" or "per_client".
    """
    _default_backend.configure(devices=devices, map_strategy=map_strategy)
