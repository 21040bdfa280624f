"""State inside TensorFlow computations: variables that live for one call, as in TensorFlow Federated.

A computation may create variables (a Keras model built by `model_fn()`, a Keras optimizer, a
`tf.random.Generator`, a `tf.Variable`), use them and return tensors. Each call creates fresh variables
and initializes them from their initializers, in the graph: concurrent calls, and the clients of a
`federated_map`, share nothing, and nothing outlives the call. Variables created outside the computation
may be read (their values are frozen into the graph) but not changed.

Random initial values are drawn afresh on every call unless seeded. Keras 3 gives an unseeded
initializer or seed generator a Python-side seed when it is constructed, which would make every call of a
computation that builds a model draw the same "random" weights; while a computation is traced, such
unseeded Keras randomness (initializers, and the seed generators of Dropout or recurrent layers) is drawn
from an in-graph seed instead, new on every call.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.ops import gen_resource_variable_ops, resource_variable_ops


@contextlib.contextmanager
@tf.autograph.experimental.do_not_convert
def call_local_variables() -> Iterator[None]:
    """Within the block (while a computation's graph is traced), every variable created is call-local:
    each execution of the graph creates and initializes its own, freed when the call ends."""

    def create(next_creator: Any, **kwargs: Any) -> tf.Variable:
        initial = kwargs.get("initial_value")
        if callable(initial):
            initial = initial()
        initial = _fresh_if_default_seed_state(
            tf.convert_to_tensor(initial, dtype=kwargs.get("dtype"))
        )
        name = kwargs.get("name") or "Variable"
        shape = initial.shape if kwargs.get("shape") is None else tf.TensorShape(kwargs["shape"])
        # The anonymous shared name makes each execution of the op create its own, reference-counted
        # variable, freed when the call ends.
        handle = gen_resource_variable_ops.var_handle_op(
            dtype=initial.dtype, shape=shape, shared_name=context.anonymous_name(), name="variable"
        )
        initializer = gen_resource_variable_ops.assign_variable_op(handle, initial)
        return resource_variable_ops.BaseResourceVariable(
            trainable=kwargs.get("trainable", True),
            shape=shape,
            dtype=initial.dtype,
            handle=handle,
            unique_id=handle.name,
            handle_name=name,
            initial_value=initial,
            initializer_op=initializer,
            in_graph_mode=True,
            graph_element=None,
        )

    with tf.variable_creator_scope(create), _fresh_keras_seeds(), _call_local_tables():
        yield


class _TraceSeed(int):
    """A seed Keras chose for unseeded randomness while a computation was traced: drawn in the graph
    instead, afresh on every call."""


_patch_lock = threading.Lock()
_patch_depth = 0
_originals: dict[str, Any] = {}
_issued: set[int] = set()


def _fresh_if_default_seed_state(initial: tf.Tensor) -> tf.Tensor:
    """A Keras SeedGenerator's state variable (Dropout's, a GRU's) starts from `[seed, 0]`: where the seed
    is one Keras chose for an unseeded generator while tracing, start it from an in-graph random seed."""
    if not _issued or initial.dtype not in (tf.int32, tf.int64) or initial.shape != (2,):
        return initial
    value = tf.get_static_value(initial)
    if value is None or int(value[1]) != 0 or int(value[0]) not in _issued:
        return initial
    fresh = tf.random.uniform([], 1, int(1e9), dtype=tf.int64)
    return tf.cast(tf.stack([fresh, tf.constant(0, tf.int64)]), initial.dtype)


@contextlib.contextmanager
def _fresh_keras_seeds() -> Iterator[None]:
    """Keras's default seeds become `_TraceSeed`s, which its TensorFlow backend's `draw_seed` turns into
    an in-graph random seed. Nothing is patched if Keras's internals are not as expected."""
    global _patch_depth
    try:
        from keras.src.backend.tensorflow import random as keras_tf_random
        from keras.src.random import seed_generator
    except ImportError:
        yield
        return
    if not all(
        callable(getattr(module, name, None))
        for module, name in (
            (keras_tf_random, "draw_seed"),
            (keras_tf_random, "make_default_seed"),
            (seed_generator, "make_default_seed"),
        )
    ):
        yield
        return
    with _patch_lock:
        if _patch_depth == 0:
            _originals["draw_seed"] = keras_tf_random.draw_seed
            _originals["make_default_seed"] = seed_generator.make_default_seed
            draw_seed = _originals["draw_seed"]

            def make_default_seed() -> int:
                seed = _TraceSeed(random.randint(1, int(1e9)))
                _issued.add(int(seed))
                return seed

            def fresh_draw_seed(seed: Any) -> Any:
                if isinstance(seed, _TraceSeed) and tf.inside_function():
                    return tf.random.uniform([2], 0, tf.int32.max - 1, dtype=tf.int32)
                return draw_seed(seed)

            keras_tf_random.draw_seed = fresh_draw_seed
            keras_tf_random.make_default_seed = make_default_seed
            seed_generator.make_default_seed = make_default_seed
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                keras_tf_random.draw_seed = _originals["draw_seed"]
                keras_tf_random.make_default_seed = _originals["make_default_seed"]
                seed_generator.make_default_seed = _originals["make_default_seed"]
                _issued.clear()


@contextlib.contextmanager
def _call_local_tables() -> Iterator[None]:
    """Lookup tables initialized from values (`tf.lookup.StaticHashTable`, and the tables built on it)
    created while a computation is traced live for one call, as variables do: TensorFlow would create
    their resource outside the graph being traced (under `init_scope`) and keep it across calls; here it
    is an anonymous table made in the graph, freed when the call ends."""
    from tensorflow.python.ops import lookup_ops
    from tensorflow.python.trackable import base as trackable_base

    base = lookup_ops.InitializableLookupTableBase
    original = base.__init__

    def local_init(self: Any, default_value: Any, initializer: Any) -> None:
        lookup_ops.LookupInterface.__init__(self, initializer.key_dtype, initializer.value_dtype)
        self._default_value = tf.convert_to_tensor(default_value, dtype=self._value_dtype)
        self._default_value.get_shape().merge_with(tf.TensorShape([]))
        if isinstance(initializer, trackable_base.Trackable):
            self._initializer = self._track_trackable(initializer, "_initializer")
        if hasattr(self, "_is_anonymous"):
            self._is_anonymous = True
        self._resource_handle = self._create_resource()
        self._init_op = self._initialize()

    with _patch_lock:
        base.__init__ = local_init
    try:
        yield
    finally:
        with _patch_lock:
            base.__init__ = original
