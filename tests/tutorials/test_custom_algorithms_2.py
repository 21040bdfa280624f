"""The flows of TFF's tutorial "Custom Federated Algorithms, Part 2: Implementing Federated
Averaging", on small MNIST-shaped data made here: batch loss and batch training as TensorFlow
computations, local training with sequence_reduce, federated evaluation and federated training by
broadcast, map and mean."""

import collections
import itertools

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType

NUM_CLIENTS, BATCHES_PER_CLIENT, BATCH_SIZE = 3, 2, 10

BATCH_SPEC = collections.OrderedDict(
    x=tf.TensorSpec(shape=[None, 784], dtype=tf.float32),
    y=tf.TensorSpec(shape=[None], dtype=tf.int32),
)
BATCH_TYPE = ftf.to_type(BATCH_SPEC)
MODEL_SPEC = collections.OrderedDict(
    weights=tf.TensorSpec(shape=[784, 10], dtype=tf.float32),
    bias=tf.TensorSpec(shape=[10], dtype=tf.float32),
)
MODEL_TYPE = ftf.to_type(MODEL_SPEC)
LOCAL_DATA_TYPE = SequenceType(BATCH_TYPE)
SERVER_MODEL_TYPE = FederatedType(MODEL_TYPE, SERVER)
SERVER_FLOAT_TYPE = FederatedType(np.float32, SERVER)
CLIENT_DATA_TYPE = FederatedType(LOCAL_DATA_TYPE, CLIENTS)


def make_federated_data():
    """Each client's digits are noisy copies of one sparse template per label (like MNIST digits,
    most pixels are dark), so a linear model can learn them."""
    rng = np.random.default_rng(1)
    templates = (rng.uniform(size=(10, 784)) < 0.1) * 0.5
    clients = []
    for _ in range(NUM_CLIENTS):
        batches = []
        for _ in range(BATCHES_PER_CLIENT):
            y = rng.integers(0, 10, size=BATCH_SIZE).astype(np.int32)
            x = (templates[y] + rng.normal(0.0, 0.05, size=(BATCH_SIZE, 784))).astype(np.float32)
            batches.append(collections.OrderedDict(x=x, y=y))
        clients.append(batches)
    return clients


FEDERATED_TRAIN_DATA = make_federated_data()
INITIAL_MODEL = collections.OrderedDict(
    weights=np.zeros([784, 10], np.float32), bias=np.zeros([10], np.float32)
)


@tf.function
def forward_pass(model, batch):
    predicted_y = tf.nn.softmax(tf.matmul(batch["x"], model["weights"]) + model["bias"])
    return -tf.reduce_mean(
        tf.reduce_sum(tf.one_hot(batch["y"], 10) * tf.math.log(predicted_y), axis=[1])
    )


@ftf.computation(MODEL_TYPE, BATCH_TYPE)
def batch_loss(model, batch):
    return forward_pass(model, batch)


@ftf.computation(MODEL_TYPE, BATCH_TYPE, np.float32)
def batch_train(initial_model, batch, learning_rate):
    # Variables made from the parameters live for this call only.
    model_vars = collections.OrderedDict(
        (name, tf.Variable(value)) for name, value in initial_model.items()
    )
    with tf.GradientTape() as tape:
        loss = forward_pass(model_vars, batch)
    grads = tape.gradient(loss, model_vars)
    for name, var in model_vars.items():
        var.assign_sub(learning_rate * grads[name])
    return collections.OrderedDict((name, var.read_value()) for name, var in model_vars.items())


@fc.federated_computation(MODEL_TYPE, np.float32, LOCAL_DATA_TYPE)
def local_train(initial_model, learning_rate, all_batches):
    @fc.federated_computation(MODEL_TYPE, BATCH_TYPE)
    def batch_fn(model, batch):
        return batch_train(model, batch, learning_rate)

    return fc.sequence_reduce(all_batches, initial_model, batch_fn)


@fc.federated_computation(MODEL_TYPE, LOCAL_DATA_TYPE)
def local_eval(model, all_batches):
    return fc.sequence_sum(
        fc.sequence_map(
            fc.federated_computation(lambda b: batch_loss(model, b), BATCH_TYPE), all_batches
        )
    )


@fc.federated_computation(SERVER_MODEL_TYPE, CLIENT_DATA_TYPE)
def federated_eval(model, data):
    pairs = fc.federated_zip([fc.federated_broadcast(model), data])
    return fc.federated_mean(fc.federated_map(local_eval, pairs))


@fc.federated_computation(SERVER_MODEL_TYPE, SERVER_FLOAT_TYPE, CLIENT_DATA_TYPE)
def federated_train(model, learning_rate, data):
    arguments = fc.federated_zip(
        [fc.federated_broadcast(model), fc.federated_broadcast(learning_rate), data]
    )
    return fc.federated_mean(fc.federated_map(local_train, arguments))


def test_batch_loss_and_batch_train():
    sample_batch = FEDERATED_TRAIN_DATA[0][0]
    assert str(batch_loss.type_signature) == (
        "(<model=<weights=float32[784,10],bias=float32[10]>,"
        "batch=<x=float32[?,784],y=int32[?]>> -> float32)"
    )
    assert batch_loss(INITIAL_MODEL, sample_batch) == pytest.approx(-np.log(0.1), rel=1e-5)
    model, losses = INITIAL_MODEL, []
    for _ in range(5):
        model = batch_train(model, sample_batch, 0.1)
        losses.append(batch_loss(model, sample_batch))
    assert isinstance(model, collections.OrderedDict) and model["weights"].shape == (784, 10)
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))


def test_local_training_and_evaluation_on_one_client():
    client = FEDERATED_TRAIN_DATA[1]
    assert str(local_train.type_signature) == (
        "(<initial_model=<weights=float32[784,10],bias=float32[10]>,learning_rate=float32,"
        "all_batches=<x=float32[?,784],y=int32[?]>*> -> <weights=float32[784,10],bias=float32[10]>)"
    )
    trained = local_train(INITIAL_MODEL, 0.1, client)
    assert local_eval(trained, client) < local_eval(INITIAL_MODEL, client)
    as_dataset = tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(
            x=np.concatenate([b["x"] for b in client]), y=np.concatenate([b["y"] for b in client])
        )
    ).batch(BATCH_SIZE)
    np.testing.assert_allclose(
        local_train(INITIAL_MODEL, 0.1, as_dataset)["bias"], trained["bias"], rtol=1e-5
    )


def test_federated_training_lowers_the_federated_loss():
    assert str(federated_eval.type_signature) == (
        "(<model=<weights=float32[784,10],bias=float32[10]>@SERVER,"
        "data={<x=float32[?,784],y=int32[?]>*}@CLIENTS> -> float32@SERVER)"
    )
    model, learning_rate = INITIAL_MODEL, 0.1
    losses = [federated_eval(model, FEDERATED_TRAIN_DATA)]
    for _ in range(4):
        model = federated_train(model, learning_rate, FEDERATED_TRAIN_DATA)
        learning_rate *= 0.9
        losses.append(federated_eval(model, FEDERATED_TRAIN_DATA))
    assert losses[0] == pytest.approx(BATCHES_PER_CLIENT * -np.log(0.1), rel=1e-5)
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))
    assert losses[-1] < 0.6 * losses[0]
