"""A federated computation with a JAX leaf and a TensorFlow leaf: values flow from one backend to the
other (TensorFlow tensors into JAX, JAX arrays into TensorFlow), on the local executor and after a
round trip through the computation file format."""

import collections

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_jax
import fed_tensorflow as ftf
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_types import CLIENTS, SERVER, FederatedType, TensorType

VECTOR = TensorType(np.float32, (3,))


@ftf.computation(VECTOR, VECTOR)
def tf_scaled_difference(a, b):
    return tf.constant(2.0) * (a - b)


@fed_jax.computation(VECTOR)
def jax_norm_and_mean(v):
    return collections.OrderedDict(norm=jnp.sqrt(jnp.sum(v * v)), mean=jnp.mean(v))


@fc.federated_computation(FederatedType(VECTOR, SERVER), FederatedType(VECTOR, CLIENTS))
def mixed(center, points):
    differences = fc.federated_map(tf_scaled_difference, (points, fc.federated_broadcast(center)))
    summaries = fc.federated_map(jax_norm_and_mean, differences)
    return fc.federated_mean(summaries.norm), fc.federated_sum(summaries.mean)


def _expected(center, points):
    differences = [2 * (np.asarray(p) - center) for p in points]
    return np.mean([np.linalg.norm(d) for d in differences]), np.sum(
        [d.mean() for d in differences]
    )


def test_a_computation_with_jax_and_tensorflow_leaves_runs_and_round_trips():
    center = np.array([1.0, 0.0, -1.0], np.float32)
    points = [np.array(p, np.float32) for p in ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [4.0, -1.0, 2.0])]
    frontends = {
        b.frontend
        for b in fc.framework.walk(mixed.building_block)
        if isinstance(b, fc.framework.CompiledComputation)
    }
    assert frontends == {"tensorflow", "jax"}
    want = _expected(center, points)
    assert mixed(center, points) == pytest.approx(want, rel=1e-5)
    again = deserialize_computation(serialize_computation(mixed))
    assert again(center, points) == pytest.approx(want, rel=1e-5)


def test_jax_results_feed_a_tensorflow_leaf():
    @fc.federated_computation(FederatedType(VECTOR, CLIENTS))
    def jax_then_tf(points):
        summaries = fc.federated_map(jax_norm_and_mean, points)
        return fc.federated_map(
            ftf.computation(lambda n: tf.math.square(n), np.float32), summaries.norm
        )

    got = jax_then_tf(
        [np.array([3.0, 4.0, 0.0], np.float32), np.array([0.0, 0.0, 2.0], np.float32)]
    )
    assert [float(g) for g in got] == pytest.approx([25.0, 4.0])
