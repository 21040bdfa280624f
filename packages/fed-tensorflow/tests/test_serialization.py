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
