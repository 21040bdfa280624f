"""A TensorFlow computation survives serialization and runs in another process, without its Python
source."""

import collections
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.serialization import serialize_computation
from fed_tensorflow._payload import GraphPayload
from fed_types import CLIENTS, FederatedType, SequenceType, TensorType

BATCH = collections.OrderedDict(
    x=tf.TensorSpec([None, 2], tf.float32), y=tf.TensorSpec([None], tf.int32)
)


@ftf.computation(TensorType(np.float32, [2]), tf.data.DatasetSpec(BATCH))
def weighted_sum(weights, batches):
    def add(total, batch):
        return total + tf.reduce_sum(
            tf.linalg.matvec(batch["x"], weights) * tf.cast(batch["y"], tf.float32)
        )

    return batches.reduce(np.float32(0), add)


@ftf.computation(np.int64)
def evens(n):
    return tf.data.Dataset.range(n).map(lambda i: collections.OrderedDict(value=2 * i))


@fc.federated_computation(FederatedType(np.int64, CLIENTS))
def evens_on_clients(counts):
    return fc.federated_map(evens, counts)


RUN = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fed_core.serialization import deserialize_computation
    from fed_tensorflow._backend import TensorFlowBackend

    weighted_sum, evens_on_clients = (deserialize_computation(bytes.fromhex(x)) for x in sys.stdin)
    batches = [{"x": np.ones((2, 2), np.float32), "y": np.array([1, 2], np.int32)}]
    print(weighted_sum(np.array([0.5, 1.0], np.float32), batches))
    clients = evens_on_clients([np.int64(2), np.int64(3)])
    print([[int(e["value"]) for e in client] for client in clients])
    leaf = weighted_sum.building_block
    fresh = TensorFlowBackend().load(leaf)
    print(leaf.frontend, float(fresh((np.array([1.0, 0.0], np.float32), batches))))
    """
)


def test_round_trip_in_another_process():
    data = [serialize_computation(c).hex() for c in (weighted_sum, evens_on_clients)]
    done = subprocess.run(
        [sys.executable, "-c", RUN],
        input="\n".join(data),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:3] == ["4.5", "[[0, 2], [0, 2, 4]]", "tensorflow 3.0"]


def test_payload_is_a_graph_without_python_source():
    payload = weighted_sum.building_block.payload
    assert payload.startswith(b"fed.tensorflow\n")
    assert b"def weighted_sum" not in payload and b"batches.reduce" not in payload
    assert (
        str(weighted_sum.type_signature)
        == "(<weights=float32[2],batches=<x=float32[?,2],y=int32[?]>*> -> float32)"
    )
    assert (
        SequenceType(weighted_sum.type_signature.parameter[1].element)
        == weighted_sum.type_signature.parameter[1]
    )


@ftf.computation(TensorType(np.float32, [4, 2]), TensorType(np.float32, [4]))
def fit_from_zeros(x, y):
    """Builds a model and an optimizer inside: fresh variables on every call."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x)[:, 0] - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return tf.convert_to_tensor(model.trainable_variables[0])[:, 0], optimizer.iterations


RUN_STATEFUL = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fed_core.serialization import deserialize_computation

    fit = deserialize_computation(bytes.fromhex(sys.stdin.read().strip()))
    x = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    y = np.array([1, 2, 3, 0], np.float32)
    for _ in range(2):
        kernel, steps = fit(x, y)
        print([round(float(k), 5) for k in kernel], int(steps))
    """
)


def test_a_computation_that_creates_state_runs_in_another_process_with_fresh_state():
    x = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    y = np.array([1, 2, 3, 0], np.float32)
    kernel, steps = fit_from_zeros(x, y)
    done = subprocess.run(
        [sys.executable, "-c", RUN_STATEFUL],
        input=serialize_computation(fit_from_zeros).hex(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = f"{[round(float(k), 5) for k in kernel]} {int(steps)}"
    assert done.stdout.split("\n")[:2] == [expected, expected]  # the same each call: fresh state
    assert int(steps) == 2


def _control_flow_lowering(graph_def) -> list[bool]:
    nodes = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    return [n.attr["_lower_using_switch_merge"].b for n in nodes if n.op.endswith(("While", "If"))]


def test_frozen_loops_and_conditionals_may_be_lowered_as_traced_ones_are():
    # Freezing marks control flow to stay functional; a loop left so runs with generic kernels. The
    # stored graph lets TensorFlow lower it again, as it lowers a traced function's.
    @ftf.computation(np.float32, np.int32)
    def power(x, n):
        _, y = tf.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, y * x), (0, 1.0))
        return tf.cond(n > 0, lambda: y, lambda: -1.0)

    payload = GraphPayload.decode(power._building_block.payload)
    flags = _control_flow_lowering(payload.graph_def)
    assert len(flags) == 2 and all(flags)
    assert power(np.float32(2.0), np.int32(3)) == 8.0
    assert power(np.float32(2.0), np.int32(0)) == -1.0


def test_nested_loops_and_conditionals_are_lowered_too():
    @ftf.computation(np.float32, np.int32)
    def nested(x, n):
        def body(i, y):
            _, z = tf.while_loop(lambda j, z: j < i, lambda j, z: (j + 1, z + x), (0, y))
            return i + 1, tf.cond(z > 100.0, lambda: z / 2.0, lambda: z)

        return tf.while_loop(lambda i, y: i < n, body, (0, 0.0))[1]

    payload = GraphPayload.decode(nested._building_block.payload)
    flags = _control_flow_lowering(payload.graph_def)
    assert len(flags) == 3 and all(flags)
    assert nested(np.float32(1.0), np.int32(4)) == 6.0  # 0 + 1 + 2 + 3


def test_a_loop_in_a_function_compiled_by_xla_stays_functional_and_runs():
    @tf.function(jit_compile=True)
    def compiled_power(x, n):
        _, y = tf.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, y * x), (0, 1.0))
        return y

    @ftf.computation(np.float32, np.int32)
    def power(x, n):
        _, y = tf.while_loop(
            lambda i, y: i < 1, lambda i, y: (i + 1, compiled_power(x, n)), (0, 0.0)
        )
        return y

    payload = GraphPayload.decode(power._building_block.payload)
    compiled = [
        f
        for f in payload.graph_def.library.function
        if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b
    ]
    assert len(compiled) == 1
    inside = [
        n.attr["_lower_using_switch_merge"].b
        for n in compiled[0].node_def
        if n.op.endswith("While")
    ]
    assert inside == [False]
    # The loop around the call is lowered.
    assert sorted(_control_flow_lowering(payload.graph_def)) == [False, True]
    assert power(np.float32(2.0), np.int32(3)) == 8.0
