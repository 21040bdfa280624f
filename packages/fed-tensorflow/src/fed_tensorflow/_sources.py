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
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

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
    client's row of each per-client tensor.
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
    ):
        if (cohort is None) != (select is None):
            raise ValueError("A DatasetSource takes both cohort and select, or neither.")
        self._specs = list(specs)
        self._client_inputs = client_inputs
        self._build = build
        self._cohort = cohort
        self._select = select
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
        )

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
