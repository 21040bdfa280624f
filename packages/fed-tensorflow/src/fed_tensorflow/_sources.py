"""Clients' datasets that one traced pipeline makes from a few tensors of each client, and that the
backend can make for a whole cohort inside its own graph.

A `DatasetSource` is how data held in memory (or read from a database) becomes clients' datasets: for
each client a few tensors (its rows of the data's arrays, or its id), and one pipeline, traced once,
that makes the client's dataset of them (`tf.data.Dataset.from_tensor_slices`, then the data set's
preprocessing). `source.dataset(key)` is a `SourcedDataset`: a `tf.data.Dataset` whose variant
tensor is made only when something reads it. Where every client of a map has one, from the same source,
the backend makes none of them: it hands its looped graph the cohort's tensors at once (the arrays
whole, and each client's row range), and each client's dataset is made inside that graph
(`Cohort`, `DatasetSource.variant_in_graph`). A round of many small clients then makes no dataset in
Python.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf
from tensorflow.python.data.ops import dataset_ops
from tensorflow.python.data.ops import options as options_lib
from tensorflow.python.framework import ops


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
        self._lock = threading.Lock()

    @property
    def function(self) -> Any:
        """The pipeline as a concrete function from one client's inputs to its dataset's variant
        tensor; traced on first use (a pipeline that cannot be traced raises here)."""
        with self._lock:
            if self._function is None:

                def variant(*inputs: tf.Tensor) -> tf.Tensor:
                    dataset = self._build(*inputs)
                    self._element_spec = dataset.element_spec
                    return tf.data.experimental.to_variant(dataset)

                self._function = tf.function(
                    variant, input_signature=self._specs, autograph=False
                ).get_concrete_function()
            return self._function

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
        """Whether the backend can make a cohort's datasets inside its graph."""
        return self._cohort is not None

    def dataset(self, key: Any) -> tf.data.Dataset:
        """The dataset of the client `key`: made when it is first read, where this runs eagerly (a
        `SourcedDataset`); at once inside a graph being traced."""
        function = self.function  # a pipeline that cannot be traced fails here, not when read
        # The client's inputs are taken now, so that a client whose data cannot be had (a
        # database removed) is an error here too.
        inputs = self._client_inputs(key)
        if not tf.executing_eagerly():
            return tf.data.experimental.from_variant(function(*inputs), self._element_spec)
        return SourcedDataset(self, key, inputs)

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
    tensor is made when it is first read (iterated, transformed, passed to a graph)."""

    def __init__(self, source: DatasetSource, key: Any, inputs: Sequence[Any]):
        # DatasetV2's constructor takes the variant tensor, which is made later; it sets only what
        # is set here (a source dataset has no inputs whose options to merge).
        self.source = source
        self.key = key
        self._client_inputs = inputs
        self._made: tf.Tensor | None = None
        self._graph_attr = ops.get_default_graph()
        self._options_attr = _DEFAULT_OPTIONS

    @property
    def _variant_tensor(self) -> tf.Tensor:
        if self._made is None:
            with tf.init_scope():  # made eagerly, and captured by a graph that reads it
                self._made = self.source.function(*self._client_inputs)
                self._client_inputs = ()
        return self._made

    @_variant_tensor.setter
    def _variant_tensor(self, _: Any) -> None:
        raise ValueError("The `_variant_tensor` property cannot be modified.")

    def _inputs(self) -> list[Any]:
        return []

    @property
    def element_spec(self) -> Any:
        return self.source.element_spec


def cohort_source(datasets: Sequence[Any]) -> DatasetSource | None:
    """The source of `datasets` where each is a `SourcedDataset` whose variant tensor is not made yet,
    all from one source that makes cohorts; else None."""
    first = datasets[0] if datasets else None
    if type(first) is not SourcedDataset or not first.source.makes_cohorts:
        return None
    source = first.source
    for dataset in datasets:
        # A dataset already made may have been read, and a dataset that shuffles with a seed
        # shuffles anew on each reading: it is read as it is, not made again.
        if (
            type(dataset) is not SourcedDataset
            or dataset.source is not source
            or dataset._made is not None
        ):
            return None
    return source
