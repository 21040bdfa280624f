"""Moving client values between the driver and the workers.

Most values pickle as they are (arrays, `Struct`s, building blocks). A `tf.data.Dataset` does not: it
travels as its serialized graph (`DatasetRecipe`), which a worker turns back into a dataset and caches by
digest, so a client's data is sent to a worker once and found there in later rounds. A `Data` block at
CLIENTS travels as it is and is materialized on the worker by the data backend registered there.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import weakref
from typing import Any

from fed_types import Struct

# Ops that call back into the Python process that built the graph: such a dataset cannot run elsewhere.
_PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


class DatasetRecipe:
    """A `tf.data.Dataset` as its serialized graph: `digest` names it, `graph` (None when the worker is
    known to hold it already) rebuilds it, `element_spec` types it, `size` weighs it for load balancing
    (its number of elements, when TensorFlow knows it; else 1)."""

    __slots__ = ("digest", "graph", "element_spec", "size")

    def __init__(self, digest: str, graph: bytes | None, element_spec: Any, size: float):
        self.digest = digest
        self.graph = graph
        self.element_spec = element_spec
        self.size = size

    def without_graph(self) -> DatasetRecipe:
        return DatasetRecipe(self.digest, None, self.element_spec, self.size)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.digest, self.graph, self.element_spec, self.size)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.digest, self.graph, self.element_spec, self.size = state

    def __repr__(self) -> str:
        return f"DatasetRecipe({self.digest[:12]}, {'graph' if self.graph else 'by digest'})"


class UnshippableDatasetError(TypeError):
    """A client dataset holds Python state (a generator or a py_function) and cannot run on a worker."""


def _is_dataset(value: Any) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(value, tf.data.Dataset)


class DatasetPacker:
    """Turns datasets into recipes, once per dataset object (kept while the dataset lives)."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[weakref.ref[Any], DatasetRecipe]] = {}
        self._lock = threading.Lock()

    def recipe(self, dataset: Any) -> DatasetRecipe:
        with self._lock:
            known = self._known.get(id(dataset))
        if known is not None and known[0]() is dataset:
            return known[1]
        recipe = _serialize(dataset)
        key = id(dataset)

        def forget(_: Any, key: int = key) -> None:
            with self._lock:
                self._known.pop(key, None)

        try:
            ref = weakref.ref(dataset, forget)
        except TypeError:  # not weakly referenceable: serialized at every use
            return recipe
        with self._lock:
            self._known[key] = (ref, recipe)
        return recipe


def _serialize(dataset: Any) -> DatasetRecipe:
    import tensorflow as tf

    policy = tf.data.experimental.ExternalStatePolicy.WARN  # random ops reseed on the worker
    graph = dataset._as_serialized_graph(external_state_policy=policy).numpy()
    graph_def = tf.compat.v1.GraphDef.FromString(graph)
    ops = {node.op for node in _all_nodes(graph_def)}
    python_ops = sorted(ops & _PYTHON_OPS)
    if python_ops:
        raise UnshippableDatasetError(
            f"A client dataset calls back into Python ({', '.join(python_ops)}: from_generator or "
            f"py_function), so it cannot be sent to a Ray worker. Build it from tensors or files "
            f"(from_tensor_slices, a ClientData such as SqlClientData or FilePerUserClientData), or pass "
            f"DataDescriptors that the workers materialize."
        )
    # Each dataset op carries a name with a process-wide counter in its metadata: dropped, so that the same
    # pipeline over the same data, built again (as clients' datasets are, every round), has one digest.
    for node in _all_nodes(graph_def):
        if "metadata" in node.attr:
            del node.attr["metadata"]
    canonical = graph_def.SerializeToString(deterministic=True)
    cardinality = int(dataset.cardinality().numpy())
    size = float(cardinality) if cardinality > 0 else 1.0  # unknown (files, SQL, filters): neutral
    return DatasetRecipe(
        hashlib.sha256(canonical).hexdigest(), canonical, dataset.element_spec, size
    )


def _all_nodes(graph_def: Any) -> list[Any]:
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return nodes


def _map_leaves(fn: Any, value: Any) -> Any:
    """`value` with `fn` applied to each leaf, searching Structs, lists and tuples (not subclasses, such as
    named tuples, which are leaves)."""
    if isinstance(value, Struct):
        return Struct((name, _map_leaves(fn, v)) for name, v in value.items())
    if type(value) in (list, tuple):
        return type(value)(_map_leaves(fn, v) for v in value)
    return fn(value)


def pack(value: Any, packer: DatasetPacker) -> Any:
    """`value` with every dataset among its leaves made a recipe."""
    return _map_leaves(lambda leaf: packer.recipe(leaf) if _is_dataset(leaf) else leaf, value)


def recipes(value: Any) -> list[DatasetRecipe]:
    """The dataset recipes among the leaves of a packed value."""
    found: list[DatasetRecipe] = []
    _map_leaves(lambda leaf: found.append(leaf) if isinstance(leaf, DatasetRecipe) else None, value)
    return found


def strip_graphs(value: Any, known: set[str]) -> Any:
    """A packed value whose recipes drop their graphs where the digest is in `known`."""

    def strip(leaf: Any) -> Any:
        if isinstance(leaf, DatasetRecipe) and leaf.digest in known:
            return leaf.without_graph()
        return leaf

    return _map_leaves(strip, value)


class MissingDatasets(Exception):
    """A worker was sent recipes by digest that it no longer holds."""

    def __init__(self, digests: list[str]):
        super().__init__(f"missing datasets: {digests[:3]}")
        self.digests = digests


def unpack(value: Any, cache: Any) -> Any:
    """The packed `value` with its recipes rebuilt into datasets (found in `cache`, a mapping from digest to
    dataset, or built from their graphs and added to it). Raises `MissingDatasets` naming every recipe
    sent by digest that the cache does not hold."""
    missing: list[str] = []

    def rebuild(leaf: Any) -> Any:
        if not isinstance(leaf, DatasetRecipe):
            return leaf
        dataset = cache.get(leaf.digest)
        if dataset is None:
            if leaf.graph is None:
                missing.append(leaf.digest)
                return None
            dataset = _deserialize(leaf)
            cache[leaf.digest] = dataset
        return dataset

    result = _map_leaves(rebuild, value)
    if missing:
        raise MissingDatasets(missing)
    return result


def _deserialize(recipe: DatasetRecipe) -> Any:
    import tensorflow as tf

    variant = tf.raw_ops.DatasetFromGraph(graph_def=recipe.graph)
    return tf.data.experimental.from_variant(variant, recipe.element_spec)
