"""A client's dataset read whole into tensors, and the loop over its elements that client work runs.

`fold_dataset` is the loop: over a dataset, it reads the dataset whole (one dataset call) when that can be done
and loops over tensors, else it iterates. Inside the vectorized form of a computation (see
`_frontend`), a sequence parameter is a `DenseSequence` instead: its elements already read, padded to
the largest, so that the same loop runs for a whole group of clients whose datasets have the same
element shapes, as one batched computation.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tensorflow.python.data.ops import dataset_ops

from fed_tensorflow._payload import all_nodes

MAX_ELEMENTS_READ_WHOLE = 10_000
"""Datasets with more elements are iterated: read whole, they would be in memory all at once."""

# The most elements of a dataset that `Dataset.reduce` on a computation's parameter reads whole: it
# streams any dataset, which may be large (a test set) or of elements of very different sizes (read
# whole, each is padded to the largest), so only a client-sized one is read whole.
_REDUCE_ELEMENTS_READ_WHOLE = 64

# While a computation is traced: how many folds over its datasets it runs (see `count_folds`).
_folds: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("_folds", default=None)


class DenseSequence:
    """A client's dataset read whole: `count` elements; for each leaf of the element structure, the
    elements' shapes (`[count, rank]`, int64) and their values padded to the largest
    (`[count, *largest]`)."""

    def __init__(
        self,
        element_spec: Any,
        count: tf.Tensor,
        shapes: tuple[tf.Tensor, ...],
        padded: tuple[tf.Tensor, ...],
    ):
        self.element_spec = element_spec
        self.count = count
        self.shapes = shapes
        self.padded = padded
        self.folded = False

    def element(self, i: tf.Tensor) -> Any:
        """Element `i`, unpadded, in the element structure."""
        leaves = []
        for spec, shape, padded in zip(
            tf.nest.flatten(self.element_spec), self.shapes, self.padded, strict=True
        ):
            leaf = tf.slice(padded[i], tf.zeros_like(shape[i]), shape[i])
            leaf.set_shape(spec.shape)
            leaves.append(leaf)
        return tf.nest.pack_sequence_as(self.element_spec, leaves)


class ReadWholeInputs:
    """Optional inputs of a traced computation that give one of its dataset parameters already read
    whole, as `read_if_readable` reads it: `count` (-1, the default, where it is not given), and per
    element leaf the elements' shapes and their padded values. Each is a `PlaceholderWithDefault`:
    a caller that gives only the dataset runs the graph unchanged, and one that also has the
    dataset's elements read (the backend, for clients whose data it has read before; see
    `_sources`) maps these inputs to them, and `fold_dataset` over the parameter then reads no
    dataset. The dataset itself is still given and used by everything else."""

    def __init__(self, element_spec: Any, prefix: str):
        leaves = tf.nest.flatten(element_spec)
        self.count = tf.compat.v1.placeholder_with_default(
            tf.constant(-1, tf.int64), [], name=f"{prefix}_count"
        )
        self.shapes = tuple(
            tf.compat.v1.placeholder_with_default(
                tf.zeros([0, leaf.shape.rank], tf.int64),
                [None, leaf.shape.rank],
                name=f"{prefix}_shapes_{k}",
            )
            for k, leaf in enumerate(leaves)
        )
        self.padded = tuple(
            tf.compat.v1.placeholder_with_default(
                tf.zeros([0, *(d or 0 for d in leaf.shape.as_list())], leaf.dtype),
                [None, *leaf.shape.as_list()],
                name=f"{prefix}_padded_{k}",
            )
            for k, leaf in enumerate(leaves)
        )
        self.used = False

    @property
    def tensors(self) -> list[tf.Tensor]:
        return [self.count, *self.shapes, *self.padded]


def readable_whole(element_spec: Any) -> bool:
    """Whether datasets of `element_spec` can be read whole: every leaf a dense tensor of known rank."""
    leaves = tf.nest.flatten(element_spec)
    return bool(leaves) and all(
        isinstance(leaf, tf.TensorSpec) and leaf.shape.rank is not None for leaf in leaves
    )


def read_whole(
    dataset: tf.data.Dataset, count: tf.Tensor
) -> tuple[tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
    """The elements of `dataset`, whose cardinality `count` is known and more than 0, in one dataset
    call: for each element leaf, the elements' shapes and their values padded to the largest."""
    spec = dataset.element_spec

    def with_shapes(*element: Any) -> tuple[tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
        # tf.data passes a plain tuple's items as separate arguments, anything else as one.
        leaves = tf.nest.flatten(element if type(spec) is tuple else element[0])
        return tuple(tf.shape(leaf, out_type=tf.int64) for leaf in leaves), tuple(leaves)

    return _map_inline(dataset, with_shapes).padded_batch(count).get_single_element()


def _map_inline(dataset: tf.data.Dataset, fn: Callable[..., Any]) -> tf.data.Dataset:
    """`dataset.map(fn)`, with `fn` run on the calling thread, not handed to the inter-op thread
    pool: for the small function that records shapes, this halves the cost of reading a small
    dataset whole (it is read by one call, element after element, so nothing runs in parallel)."""
    try:
        from tensorflow.python.data.ops import map_op

        return map_op._MapDataset(dataset, fn, use_inter_op_parallelism=False)
    except (ImportError, AttributeError, TypeError):  # another TensorFlow's internals
        return dataset.map(fn)


def read_if_readable(
    dataset: tf.data.Dataset, limit: int = MAX_ELEMENTS_READ_WHOLE
) -> tuple[tf.Tensor, tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
    """`(count, shapes, padded)`: the dataset read whole (see `read_whole`) where its cardinality is
    known and at most `limit` (MAX_ELEMENTS_READ_WHOLE); else count -1 and no elements read. How
    `fold_dataset` reads a dataset, and how the backend reads clients' datasets for a vectorized
    form."""
    cardinality = dataset.cardinality()
    readable = tf.logical_and(cardinality >= 0, cardinality <= limit)
    count = tf.where(readable, cardinality, tf.constant(-1, tf.int64))
    leaves = tf.nest.flatten(dataset.element_spec)

    def nothing() -> tuple[tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
        # No elements, in the shapes `read_whole` gives: for an empty dataset, and one not read.
        return (
            tuple(tf.zeros([0, leaf.shape.rank], tf.int64) for leaf in leaves),
            tuple(
                tf.zeros([0, *(d or 0 for d in leaf.shape.as_list())], leaf.dtype)
                for leaf in leaves
            ),
        )

    shapes, padded = tf.cond(count > 0, lambda: read_whole(dataset, count), nothing)
    return count, shapes, padded


def fold_dataset(
    dataset: tf.data.Dataset | DenseSequence, initial: Any, step: Callable[[Any, Any], Any]
) -> Any:
    """`step(carry, element)` applied to each element in order, starting from `initial`: what
    `dataset.reduce(initial, step)` computes, inside a TensorFlow computation. The carried structure
    holds tensors in tuples and dicts (not lists), and `step` returns the same structure.

    A computation that reads each of its datasets once, through `fold_dataset`, can carry a vectorized
    form, which trains a group of clients at once (see "Training many clients at once" in the guide to
    computations).

    A dataset of known cardinality of at most MAX_ELEMENTS_READ_WHOLE elements whose elements are
    dense tensors is read whole first, in one dataset call, and the loop slices its elements out of
    those tensors, so that its body holds no dataset ops. Other datasets (unknown or infinite
    cardinality, as after `filter` or `repeat()`; more elements; ragged or sparse elements) are read
    through an iterator. Both give the same elements in the same order. (`Dataset.reduce` sets its loop
    body up again on every call, which costs milliseconds per client.)
    """
    if not isinstance(dataset, (tf.data.Dataset, DenseSequence)):
        raise TypeError(
            f"fold_dataset folds a tf.data.Dataset (a sequence parameter of a TensorFlow "
            f"computation), got {type(dataset).__name__} {dataset!r:.80}."
        )
    step = _checked(step, initial)
    if isinstance(dataset, DenseSequence):
        if dataset.folded:
            # Each fold over a dataset iterates it again, which a dataset that shuffles anew on
            # every iteration answers with another order: a computation that folds a dataset twice
            # has no vectorized form, which reads it once.
            raise ValueError("A dataset read whole for a vectorized form is folded only once.")
        dataset.folded = True
        return _fold_dense(dataset, initial, step)
    folds = _folds.get()
    if folds is not None:
        folds[0] += 1
    return _fold(dataset, initial, step, read=getattr(dataset, "read_whole_inputs", None))


def _fold(
    dataset: tf.data.Dataset,
    initial: Any,
    step: Callable[[Any, Any], Any],
    limit: int = MAX_ELEMENTS_READ_WHOLE,
    read: ReadWholeInputs | None = None,
) -> Any:
    if not readable_whole(dataset.element_spec):
        return _fold_iterating(dataset, initial, step)
    if read is None:
        count, shapes, padded = read_if_readable(dataset, limit)
    else:
        # The dataset's elements where the caller gives them read, else read here. (Given, they may
        # be more than `limit`: they are in memory already.)
        read.used = True
        count, shapes, padded = tf.cond(
            read.count >= 0,
            lambda: (read.count, read.shapes, read.padded),
            lambda: read_if_readable(dataset, limit),
        )
    # The loop over the whole dataset runs no steps where the dataset is iterated instead.
    carry = _fold_dense(
        DenseSequence(dataset.element_spec, tf.maximum(count, 0), shapes, padded), initial, step
    )
    return tf.cond(count >= 0, lambda: carry, lambda: _fold_iterating(dataset, initial, step))


def _checked(step: Callable[[Any, Any], Any], initial: Any) -> Callable[[Any, Any], Any]:
    """`step`, raising a TypeError that names both structures when it returns another structure than
    `initial`'s (TensorFlow's loop would say so deep in its own trace)."""

    @tf.autograph.experimental.do_not_convert
    def checked(carry: Any, element: Any) -> Any:
        result = step(carry, element)
        try:
            tf.nest.assert_same_structure(initial, result)
        except (TypeError, ValueError):
            raise TypeError(
                f"fold_dataset's step must return the structure of its initial value, "
                f"{tf.nest.map_structure(lambda _: '.', initial)!r}; it returned "
                f"{tf.nest.map_structure(lambda _: '.', result)!r}."
            ) from None
        return result

    return checked


def _fold_dense(sequence: DenseSequence, initial: Any, step: Callable[[Any, Any], Any]) -> Any:
    def body(i: tf.Tensor, carry: Any) -> tuple[tf.Tensor, Any]:
        return i + 1, step(carry, sequence.element(i))

    _, carry = tf.while_loop(
        lambda i, carry: i < sequence.count, body, (tf.constant(0, tf.int64), initial)
    )
    return carry


def _fold_iterating(dataset: tf.data.Dataset, initial: Any, step: Callable[[Any, Any], Any]) -> Any:
    iterator = iter(dataset)

    def body(carry: Any, element: Any) -> tuple[Any, Any]:
        return step(carry, element.get_value()), iterator.get_next_as_optional()

    carry, _ = tf.while_loop(
        lambda carry, element: element.has_value(),
        body,
        (initial, iterator.get_next_as_optional()),
    )
    return carry


class ParameterDataset(dataset_ops.UnaryUnchangedStructureDataset):
    """A computation's sequence parameter as its code receives it: the dataset itself (the same
    variant tensor), whose `reduce` runs as a loop in the computation's graph (over the dataset read
    whole, up to 64 elements, else over an iterator) where that computes what `Dataset.reduce`
    computes. `Dataset.reduce` sets its loop body up again on every call, which costs milliseconds
    per client; clients of the computations that TFF's tutorials write, `dataset.reduce(initial,
    step)` on a parameter, no longer pay it."""

    def __init__(self, dataset: tf.data.Dataset, read_whole_inputs: ReadWholeInputs | None = None):
        self._dataset = dataset
        self.read_whole_inputs = read_whole_inputs
        super().__init__(dataset, dataset._variant_tensor)

    def reduce(
        self, initial_state: Any, reduce_func: Callable[[Any, Any], Any], name: Any = None
    ) -> Any:
        folded = _fold_as_reduce(self._dataset, initial_state, reduce_func, self.read_whole_inputs)
        if folded is None:
            return self._dataset.reduce(initial_state, reduce_func, name=name)
        return folded


def _fold_as_reduce(
    dataset: tf.data.Dataset,
    initial_state: Any,
    reduce_func: Callable[[Any, Any], Any],
    read: ReadWholeInputs | None = None,
) -> Any:
    """`dataset.reduce(initial_state, reduce_func)` as a loop in the graph being built, or None where
    the loop would not compute the same: a state other than dense tensors, a `reduce_func` whose
    result has another structure, dtype or shape than the state (`Dataset.reduce` relaxes shapes, or
    raises its own error), or one that draws at random. `reduce_func` is converted by AutoGraph, as
    `Dataset.reduce` converts it, and traced once."""
    from tensorflow.python.autograph.core import ag_ctx
    from tensorflow.python.autograph.impl import api as autograph
    from tensorflow.python.data.util import structure

    try:
        state = structure.normalize_element(initial_state)
        state_spec = structure.type_spec_from_value(state)
    except (TypeError, ValueError):
        return None
    if not all(isinstance(spec, tf.TensorSpec) for spec in tf.nest.flatten(state_spec)):
        return None
    step = autograph.tf_convert(reduce_func, ag_ctx.control_status_ctx())

    def normalized_step(carry: Any, element: Any) -> Any:
        return structure.normalize_element(step(carry, element))

    try:
        traced = tf.function(normalized_step, autograph=False).get_concrete_function(
            state_spec, dataset.element_spec
        )
        result_spec = structure.type_spec_from_value(traced.structured_outputs)
        tf.nest.assert_same_structure(state_spec, result_spec)
    except Exception:  # noqa: BLE001 (Dataset.reduce raises its own error for it)
        return None
    if not all(
        isinstance(got, tf.TensorSpec) and got.dtype == want.dtype and got.shape == want.shape
        for got, want in zip(tf.nest.flatten(result_spec), tf.nest.flatten(state_spec), strict=True)
    ) or _draws_at_random(traced.graph.as_graph_def()):
        return None
    # The traced step is the loop's body (what it made on its first call, such as a layer's
    # variables, stays with it). A dataset of a client's size is read whole; others are iterated, as
    # `Dataset.reduce` streams them.
    return _fold(
        dataset,
        state,
        lambda carry, element: traced(carry, element),
        _REDUCE_ELEMENTS_READ_WHOLE,
        read,
    )


# Stateful ops that draw at random: `Dataset.reduce` sets them up anew on every call, so that a seeded
# one draws the same numbers each time; in a loop they would draw on.
_RANDOM_OPS = frozenset({"Multinomial", "TruncatedNormal", "ParameterizedTruncatedNormal"})


def _draws_at_random(graph_def: Any) -> bool:
    from tensorflow.python.framework import op_def_registry

    for node in all_nodes(graph_def):
        op_def = op_def_registry.get(node.op)
        if op_def is None or not op_def.is_stateful or node.op.startswith("Stateless"):
            continue
        if "Random" in node.op or "Shuffle" in node.op or node.op in _RANDOM_OPS:
            return True
    return False


class count_folds:  # noqa: N801 (used as a context manager, like a function)
    """Counts the folds over datasets that run while the computation is traced (`.count`): a
    computation that reads each of its datasets once, through `fold_dataset`, can have a vectorized
    form."""

    def __enter__(self) -> count_folds:
        self._counter = [0]
        self._token = _folds.set(self._counter)
        return self

    def __exit__(self, *exc: object) -> None:
        _folds.reset(self._token)

    @property
    def count(self) -> int:
        return self._counter[0]


def _register_vectorized_ops() -> None:
    """Gives `tf.vectorized_map` the forms of ops it lacks and that client work uses: `Bitcast` (Keras's
    argmax, in accuracy metrics), elementwise with its leading dimensions kept, so the clients' axis
    stays first."""
    from tensorflow.python.ops.parallel_for import pfor

    if "Bitcast" in pfor._pfor_converter_registry:
        return

    @pfor.RegisterPFor("Bitcast")
    def _bitcast(pfor_input: Any) -> Any:
        value = pfor_input.stacked_input(0)
        return pfor.wrap(tf.bitcast(value, pfor_input.get_attr("type")), True)


_register_vectorized_ops()
