"""Clients' datasets that one traced pipeline makes from a few tensors of each client, and that the
backend can make for a whole cohort inside its own graph.

A `DatasetSource` is how data held in memory (or read from a database) becomes clients' datasets: for
each client a few tensors (its rows of the data's arrays, or its id), and one pipeline, traced once,
that makes the client's dataset of them (`tf.data.Dataset.from_tensor_slices`, then the data set's
preprocessing). `source.dataset(key)` is a `SourcedDataset`: a `tf.data.Dataset` whose variant
tensor is made only when something reads it. Where every client of a map has one, from the same
source, the backend makes none of them (from the second map with that source on): it hands its looped
graph the cohort's tensors at once (the arrays whole, and each client's row range), and each client's
dataset is made inside that graph (`Cohort`, `DatasetSource.variant_in_graph`). A round of many small
clients then makes no dataset in Python.

That is done only where a dataset made anew gives what the dataset handed out would give, however
often it was read before: for pipelines that draw nothing at random (`DatasetSource.replayable`; a
`shuffle` or a random op draws anew on each reading of one dataset).

For a source whose data does not change (`keep_read`: data in memory, a database that must not
change), the backend goes one step further: reading a small dataset whole, as a computation's
`fold_dataset` does, costs most of a small client's time, and gives the same tensors every time. A
`ReadCache` keeps recurring clients' datasets read whole (all their elements in a few tensors), and
the looped graph hands each client's to the computation (`ReadWholeInputs`), which then reads no
dataset; a map that runs the computation's vectorized form cuts them from the cache's arrays.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.data.ops import dataset_ops
from tensorflow.python.data.ops import options as options_lib
from tensorflow.python.framework import op_def_registry, ops

from fed_tensorflow._payload import all_nodes

# Ops that TensorFlow marks stateful but that give the same elements from the same inputs however often
# a dataset is made: datasets of tensors, of files and of a database query, a cache in memory, reading
# a dataset to its end (the functions they run are checked too), checks and prints.
_REPLAYABLE_STATEFUL_OPS = frozenset(
    {
        "TensorSliceDataset",
        "TensorDataset",
        "FixedLengthRecordDatasetV2",
        "TFRecordDatasetV2",
        "TextLineDatasetV2",
        "SqlDataset",
        "ExperimentalSqlDataset",
        "CacheDatasetV2",
        "DummyMemoryCache",
        "DatasetToSingleElement",
        "ReduceDataset",
        "Assert",
        "CheckNumerics",
        "CheckNumericsV2",
        "PrintV2",
    }
)


class Cohort:
    """What a source gives the backend for a cohort of clients: `per_client` tensors with a leading
    client axis (such as each client's first and last row), and `shared` tensors that every client's
    inputs are cut from (such as the arrays of all clients' rows)."""

    def __init__(self, per_client: Sequence[tf.Tensor], shared: Sequence[tf.Tensor]):
        self.per_client = list(per_client)
        self.shared = list(shared)


class DatasetSource:
    """Clients' datasets made by one pipeline from a few tensors per client.

    `specs` are the `tf.TensorSpec`s of one client's inputs, `client_inputs(key)` gives them for one
    client (arrays or Python values), and `build(*inputs)` (traceable) makes the client's dataset of
    them; it is traced once. Where the source can give a whole cohort at once, `cohort(keys)` gives its
    `Cohort` and `select(per_client, shared)` (traceable) cuts one client's inputs from it, given that
    client's row of each per-client tensor. `keep_read` lets the backend keep recurring clients'
    datasets read whole (see `ReadCache`): for data that does not change while the source is used.
    """

    def __init__(
        self,
        specs: Sequence[tf.TensorSpec],
        client_inputs: Callable[[Any], Sequence[Any]],
        build: Callable[..., tf.data.Dataset],
        *,
        cohort: Callable[[Sequence[Any]], Cohort] | None = None,
        select: Callable[[Sequence[tf.Tensor], Sequence[tf.Tensor]], Sequence[tf.Tensor]]
        | None = None,
        keep_read: bool = False,
    ):
        if (cohort is None) != (select is None):
            raise ValueError("A DatasetSource takes both cohort and select, or neither.")
        self._specs = list(specs)
        self._client_inputs = client_inputs
        self._build = build
        self._cohort = cohort
        self._select = select
        self.keep_read = keep_read
        self._read_caches: dict[Any, ReadCache] = {}
        self._function: Any = None
        self._element_spec: Any = None
        self._replayable: bool | None = None
        self._checked = False  # whether a dataset of this source was made
        self._lock = threading.Lock()

    @property
    def function(self) -> Any:
        """The pipeline as a concrete function from one client's inputs to its dataset's variant
        tensor; traced on first use (a pipeline that cannot be traced raises here)."""
        with self._lock:
            if self._function is None:

                def variant(*inputs: tf.Tensor) -> tf.Tensor:
                    dataset = self._build(*inputs)
                    if not isinstance(dataset, tf.data.Dataset):
                        raise TypeError(
                            f"A DatasetSource's build must return a tf.data.Dataset, got "
                            f"{type(dataset).__name__} {dataset!r:.80}."
                        )
                    self._element_spec = dataset.element_spec
                    return tf.data.experimental.to_variant(dataset)

                self._function = tf.function(
                    variant, input_signature=self._specs
                ).get_concrete_function()
            return self._function

    @property
    def replayable(self) -> bool:
        """Whether a client's dataset made anew gives the elements that reading an existing one gives,
        however often it was read: the pipeline holds no state (a `shuffle`, a random op) that draws
        anew on each reading."""
        if self._replayable is None:
            nodes = all_nodes(self.function.graph.as_graph_def())
            self._replayable = not any(
                node.op not in _REPLAYABLE_STATEFUL_OPS
                and (op := op_def_registry.get(node.op)) is not None
                and op.is_stateful
                for node in nodes
            )
        return self._replayable

    @property
    def element_spec(self) -> Any:
        """The element spec of every client's dataset."""
        self.function  # noqa: B018 (traced, which records it)
        return self._element_spec

    def preprocessed(
        self, preprocess: Callable[[tf.data.Dataset], tf.data.Dataset]
    ) -> DatasetSource:
        """A source of the same clients whose datasets are `preprocess(dataset)`, traced with the
        pipeline."""
        build = self._build

        def build_and_preprocess(*inputs: tf.Tensor) -> tf.data.Dataset:
            return preprocess(build(*inputs))

        return DatasetSource(
            self._specs,
            self._client_inputs,
            build_and_preprocess,
            cohort=self._cohort,
            select=self._select,
            keep_read=self.keep_read,
        )

    def read_cache(self, element: Any) -> ReadCache | None:
        """The clients' datasets read whole, as a computation's dataset parameter of element type
        `element` reads them (made empty on first use); None where the source does not keep them
        (not `keep_read`, or it does not make cohorts)."""
        if not (self.keep_read and self.makes_cohorts):
            return None
        with self._lock:
            cache = self._read_caches.get(element)
            if cache is None:
                cache = self._read_caches[element] = ReadCache()
            return cache

    @property
    def makes_cohorts(self) -> bool:
        """Whether the backend can make a cohort's datasets inside its graph: where the source gives
        cohorts and its pipeline is `replayable`."""
        return self._cohort is not None and self.replayable

    def dataset(self, key: Any) -> tf.data.Dataset:
        """The dataset of the client `key`: made when it is first read, where this runs eagerly (a
        `SourcedDataset`); at once inside a graph being traced.

        Errors come as early as they can: a pipeline that cannot be traced fails here, and so does
        one that cannot be made (the first dataset a source gives is made at once), and a client whose
        inputs cannot be had (a database removed); an error that depends on one client's data comes
        when its dataset is read, as it would from `tf.data`.
        """
        function = self.function
        inputs = self._client_inputs(key)
        if not tf.executing_eagerly():
            return tf.data.experimental.from_variant(function(*inputs), self._element_spec)
        dataset = SourcedDataset(self, key, inputs)
        if not self._checked:
            dataset._variant_tensor  # noqa: B018 (made)
            self._checked = True
        return dataset

    def cohort(self, keys: Sequence[Any]) -> Cohort:
        """The tensors of the clients `keys`, in that order, for `variant_in_graph`."""
        if self._cohort is None:
            raise NotImplementedError(f"{self!r} cannot make a cohort's datasets at once.")
        return self._cohort(keys)

    def variant_in_graph(self, per_client: Sequence[tf.Tensor], shared: Sequence[tf.Tensor]) -> Any:
        """Inside a graph being traced: the variant tensor of one client's dataset, from that client's
        row of the cohort's per-client tensors and the cohort's shared tensors."""
        assert self._select is not None
        return self.function(*self._select(per_client, shared))


class ReadCache:
    """A source's clients' datasets read whole (as `read_if_readable` reads a computation's dataset
    parameter), kept so that later rounds read none: for the clients in `index`, per-client tensors
    (`rows`: each client's element count, -1 where its dataset is not read whole, and where its
    elements start in `shared`; per element leaf, where its values start and its largest element's
    shape) and `shared` tensors (per leaf, all the clients' element shapes, and all their padded
    values, flat).

    Before a cohort runs, the backend reads the clients it lacks that are `due` (`extend`). Keeping a
    client costs more than reading its dataset in one round (the reading, and copying its elements
    into memory the process has to be given), and pays only where the client comes again: a client
    is due in the round where the rounds it was read in would, had it been kept, have paid for
    keeping it (its second, until a first reading measures the two costs). A client in a single round
    is never kept. Clients are read a chunk at a time into
    arrays that the tensors share, whose capacity doubles as they grow, so that reading takes little
    more memory than what is kept and what is kept is copied a number of times that grows with the
    log of the clients'. It holds at most `READ_CACHE_BYTES`; past that it stops growing, and clients
    it lacks are read each round (`rows` gives them a count of -1).
    """

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.rounds: dict[Any, int] = {}  # clients it lacked: in how many rounds
        # Rounds a client is read in before it is kept: its cost of keeping over its cost of reading.
        self.rounds_to_keep = 2
        self.measured = False
        self.shared: list[tf.Tensor] = []
        self.full = False
        self.lock = threading.Lock()
        self.reader: Any = None  # the backend's function that reads a cohort for it
        self._per_client: list[_Rows] = []
        self._shared: list[_Rows] = []

    @property
    def nbytes(self) -> int:
        return sum(rows.nbytes for rows in self._shared)

    def due(self, lacking: Sequence[Any]) -> list[Any]:
        """Of the clients `lacking` (not held) in a round, those to read and keep now: each counts
        the round, and is due on its `rounds_to_keep`th (none, once the cache is full)."""
        due = []
        for key in lacking:
            rounds = self.rounds[key] = self.rounds.get(key, 0) + 1
            if rounds >= self.rounds_to_keep:
                due.append(key)
        if self.full:
            return []
        for key in due:
            del self.rounds[key]
        return due

    def prepare(self, specs: Sequence[tf.TensorSpec]) -> None:
        """Makes the (empty) arrays for datasets whose element leaves are `specs`."""
        if self._per_client:
            return
        ranks = [spec.shape.rank for spec in specs]
        self._per_client = [_Rows(np.int64, ()), _Rows(np.int64, ())]
        for rank in ranks:
            self._per_client += [_Rows(np.int64, ()), _Rows(np.int64, (rank,))]
        self._shared = [_Rows(np.int64, (rank,)) for rank in ranks] + [
            _Rows(object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype, ())
            for spec in specs
        ]
        self.shared = [rows.tensor() for rows in self._shared]

    def rows(self, keys: Sequence[Any]) -> list[tf.Tensor]:
        """The per-client tensors for the clients `keys`, in that order; those not in `index` have a
        count of -1 (not read) and zeros."""
        return [tf.constant(picked) for picked in self.row_arrays(keys)]

    def row_arrays(self, keys: Sequence[Any]) -> list[np.ndarray]:
        """`rows(keys)` as arrays."""
        positions = np.fromiter((self.index.get(k, -1) for k in keys), np.int64, len(keys))
        held = positions >= 0
        result = []
        for k, rows in enumerate(self._per_client):
            picked = np.full((len(keys), *rows.row_shape), -1 if k == 0 else 0, np.int64)
            picked[held] = rows.array[: rows.size][positions[held]]
            result.append(picked)
        return result

    def arrays(self) -> list[np.ndarray]:
        """The `shared` tensors' values as arrays (views of what is kept, not copies)."""
        return [rows.array[: rows.size] for rows in self._shared]

    def extend(
        self,
        keys: Sequence[Any],
        read: Callable[[Cohort], tuple[tf.Tensor, list[tf.Tensor], list[tf.Tensor], list[Any]]],
        cohort: Callable[[Sequence[Any]], Cohort],
    ) -> None:
        """Reads the clients `keys` (`cohort(keys)` gives their tensors) with `read`, which gives
        their counts, and per element leaf their elements' shapes, their padded values flat and
        their largest shapes. Stops (and the cache grows no more) where it would hold more than
        `READ_CACHE_BYTES`; an error reading a client leaves the cache as it was."""
        assert self._per_client, "prepare first"
        sizes = [rows.size for rows in self._per_client + self._shared]
        added: list[Any] = []
        began, reading = time.perf_counter(), 0.0
        try:
            chunk = 64
            done = 0
            while done < len(keys):
                part = keys[done : done + chunk]
                before = [rows.size for rows in self._shared]
                start = time.perf_counter()
                read_part = read(cohort(part))
                reading += time.perf_counter() - start
                self._append(*read_part)
                added.extend(part)
                done += len(part)
                if self.nbytes > READ_CACHE_BYTES:
                    self.full = True
                    raise _Full
                if len(added) == len(part):
                    # Room for the rest as the first chunk's clients take it, and a quarter more
                    # for clients read later, so that the arrays seldom grow (growing copies them;
                    # room not written to takes no memory).
                    for rows, size in zip(self._shared, before, strict=True):
                        needed = rows.size + (rows.size - size) * (len(keys) - done) // len(part)
                        if needed > len(rows.array):
                            rows.reserve(needed + needed // 4)
                # Chunks of about `_READ_CHUNK_BYTES`, from what this chunk's clients hold.
                added_bytes = sum(
                    (rows.size - size) * rows.row_nbytes
                    for rows, size in zip(self._shared, before, strict=True)
                )
                chunk = max(1, _READ_CHUNK_BYTES // max(1, added_bytes // len(part)))
        except BaseException as error:
            for rows, size in zip(self._per_client + self._shared, sizes, strict=True):
                rows.size = size
            if isinstance(error, _Full):
                return
            raise
        else:
            for key in added:
                self.index[key] = len(self.index)
            self.shared = [rows.tensor() for rows in self._shared]
            # Reading a client here costs about what reading it in a round does; keeping it costs
            # the whole. Measured once, on the first read of enough clients (on a few the ratio is
            # too noisy to go by; later reads may grow the arrays, a cost spread over all clients).
            if not self.measured and len(added) >= _CLIENTS_TO_MEASURE and reading > 0:
                ratio = (time.perf_counter() - began) / reading
                self.rounds_to_keep = max(2, min(_MOST_ROUNDS_TO_KEEP, math.ceil(ratio)))
                self.measured = True

    def _append(
        self,
        counts: tf.Tensor,
        shapes: list[tf.Tensor],
        values: list[tf.Tensor],
        largest: list[Any],
    ) -> None:
        counts_np = counts.numpy().astype(np.int64)
        num_leaves = len(shapes)
        num_rows = np.maximum(counts_np, 0)
        starts = self._shared[0].size + _exclusive_cumsum(num_rows)
        per_client = [counts_np, starts]
        for leaf in range(num_leaves):
            largest_np = np.asarray(largest[leaf]).astype(np.int64)
            size = np.prod(largest_np, axis=1).astype(np.int64) * num_rows
            per_client.append(self._shared[num_leaves + leaf].size + _exclusive_cumsum(size))
            per_client.append(largest_np)
        for rows, array in zip(self._per_client, per_client, strict=True):
            rows.append(array)
        for rows, tensor in zip(self._shared, [*shapes, *values], strict=True):
            rows.append(np.asarray(tensor))


class _Full(Exception):
    """A `ReadCache` reached `READ_CACHE_BYTES`."""


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    return (np.cumsum(values) - values).astype(np.int64)


_ALIGNMENT = 128


class _Rows:
    """Rows appended to one array in memory (its capacity doubling as it grows, with a quarter more
    room than the rows need at least), which a tensor shares (`tensor`, no copy, for numbers) where
    its memory is aligned."""

    def __init__(self, dtype: Any, row_shape: tuple[int, ...]):
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.size = 0
        self.array = self._empty(0)

    @property
    def row_nbytes(self) -> int:
        return math.prod(self.row_shape) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.row_nbytes

    def _empty(self, capacity: int) -> np.ndarray:
        return aligned_empty((capacity, *self.row_shape), self.dtype)

    def reserve(self, capacity: int) -> None:
        """Room for `capacity` rows."""
        if capacity > len(self.array):
            grown = self._empty(capacity)
            grown[: self.size] = self.array[: self.size]
            self.array = grown

    def append(self, rows: np.ndarray) -> None:
        end = self.size + len(rows)
        if end > len(self.array):
            self.reserve(max(end + end // 4, 2 * len(self.array)))
        self.array[self.size : end] = rows
        self.size = end

    def tensor(self) -> tf.Tensor:
        """The rows as a host tensor; later appends leave it as it is (they write past it)."""
        return host_tensor(self.array[: self.size])


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized array whose memory is aligned as TensorFlow's, so that `host_tensor` can share
    it (an array of Python objects, such as strings, is not aligned)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "O":
        return np.empty(shape, dtype)
    size = math.prod(shape) * dtype.itemsize
    buffer = np.empty(size + _ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % _ALIGNMENT
    return buffer[start : start + size].view(dtype).reshape(shape)


def host_tensor(array: np.ndarray) -> tf.Tensor:
    """`array` as a host tensor: sharing its memory where it is aligned and of a dtype DLPack takes
    (`tf.convert_to_tensor` copies a NumPy array), else a copy."""
    if array.dtype.kind != "O" and array.ctypes.data % _ALIGNMENT == 0:
        try:
            tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (TypeError, ValueError, BufferError, tf.errors.OpError):
            pass  # a dtype that DLPack or TensorFlow does not take
        else:
            if tensor.shape == array.shape and tensor.dtype.as_numpy_dtype == array.dtype:
                return tensor
    with tf.device("/CPU:0"):
        return tf.convert_to_tensor(array, dtype=tf.string if array.dtype.kind == "O" else None)


# A `ReadCache` measures its costs on reads of at least this many clients, and keeps a client after at
# most this many rounds.
_CLIENTS_TO_MEASURE = 8
_MOST_ROUNDS_TO_KEEP = 16

_READ_CHUNK_BYTES = 32 << 20
"""About how many bytes of clients' datasets one call that reads them for a `ReadCache` reads."""

READ_CACHE_BYTES = 2 << 30
"""The most bytes of clients' datasets read whole that one `ReadCache` holds."""


_DEFAULT_OPTIONS = options_lib.Options()
_DEFAULT_OPTIONS._set_mutable(False)


class SourcedDataset(dataset_ops.DatasetV2):
    """A client's dataset from a `DatasetSource`: a `tf.data.Dataset` like any other, whose variant
    tensor is made when it is first read (iterated, transformed, passed to a graph). Until then it holds
    its client's inputs (for data in memory, views of the data set's arrays, which stay alive with
    it)."""

    _making = threading.Lock()  # a dataset read by two threads at once is made once

    def __init__(self, source: DatasetSource, key: Any, inputs: Sequence[Any]):
        # DatasetV2's constructor takes the variant tensor, which is made later; it sets only what
        # is set here (a source dataset has no inputs whose options to merge).
        self.key = key
        self._source = weakref.ref(source)
        # What the variant tensor is made of; made, it keeps neither its source nor its inputs alive.
        self._pending: tuple[DatasetSource, Sequence[Any]] | None = (source, inputs)
        self._element_spec = source.element_spec
        self._made: tf.Tensor | None = None
        self._graph_attr = ops.get_default_graph()
        self._options_attr = _DEFAULT_OPTIONS

    @property
    def source(self) -> DatasetSource | None:
        """The source of this dataset (None once it is made and its source is gone)."""
        return self._source()

    @property
    def _variant_tensor(self) -> tf.Tensor:
        made = self._made
        if made is None:
            with SourcedDataset._making:
                if self._made is None:
                    assert self._pending is not None
                    source, inputs = self._pending
                    with tf.init_scope():  # made eagerly, and captured by a graph that reads it
                        self._made = source.function(*inputs)
                    self._pending = None
                made = self._made
        return made

    @_variant_tensor.setter
    def _variant_tensor(self, _: Any) -> None:
        raise ValueError("The `_variant_tensor` property cannot be modified.")

    def _inputs(self) -> list[Any]:
        return []

    @property
    def element_spec(self) -> Any:
        return self._element_spec


def cohort_source(datasets: Sequence[Any]) -> DatasetSource | None:
    """The source of `datasets` where each is a `SourcedDataset`, all from one source that makes
    cohorts (made or not: a replayable pipeline's dataset made anew is the same); else None."""
    first = datasets[0] if datasets else None
    source = first.source if type(first) is SourcedDataset else None
    if source is None:
        return None
    for dataset in datasets:
        if type(dataset) is not SourcedDataset or dataset.source is not source:
            return None
    return source if source.makes_cohorts else None
