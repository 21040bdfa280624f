"""TFF's tutorial "Use TFF optimizers in custom iterative process", run with `import fed as tff`.

TFF removed this notebook from its documentation in September 2024 (as a near duplicate of "Building
your own federated learning algorithm"); it is read from TFF's history, and its code is TFF's current
API: `tff.tensorflow.computation`, `tff.learning.optimizers`, `tff.structure.update_struct`,
`tff.types.tensorflow_to_type` and `Type.formatted_representation()`.

What changed: EMNIST is offline (`tff.simulation.datasets.emnist.get_synthetic()`, two clients of ten
examples in federated EMNIST's element structure, replaces `emnist.load_data(only_digits)`); the CNN,
the optimizers, the two sampled clients and the twenty rounds are the notebook's. Each test checks what
the notebook prints (the state, weights, dataset and process types, line for line) and that FedAvg with
the server's momentum optimizer learns: the loss on the central data falls round after round.
"""

import contextlib
import functools
import io
from typing import Any

import attrs
import numpy as np
import pytest
import tensorflow as tf

import fed as tff

only_digits = True

# Load dataset.
emnist_train = tff.simulation.datasets.emnist.get_synthetic()


# Define preprocessing functions.
def preprocess_fn(dataset, batch_size=16):
    def batch_format_fn(element):
        return (tf.expand_dims(element["pixels"], -1), element["label"])

    return dataset.batch(batch_size).map(batch_format_fn)


# Preprocess and sample clients for prototyping.
train_client_ids = sorted(emnist_train.client_ids)
train_data = emnist_train.preprocess(preprocess_fn)
central_test_data = preprocess_fn(emnist_train.create_tf_dataset_for_client(train_client_ids[0]))


# Define model.
def create_keras_model():
    """The CNN model used in https://arxiv.org/abs/1602.05629."""
    data_format = "channels_last"
    input_shape = [28, 28, 1]

    max_pool = functools.partial(
        tf.keras.layers.MaxPooling2D, pool_size=(2, 2), padding="same", data_format=data_format
    )
    conv2d = functools.partial(
        tf.keras.layers.Conv2D,
        kernel_size=5,
        padding="same",
        data_format=data_format,
        activation=tf.nn.relu,
    )

    model = tf.keras.models.Sequential(
        [
            conv2d(filters=32, input_shape=input_shape),
            max_pool(),
            conv2d(filters=64),
            max_pool(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(512, activation=tf.nn.relu),
            tf.keras.layers.Dense(10 if only_digits else 62),
        ]
    )

    return model


# Wrap as `tff.learning.models.VariableModel`.
def model_fn():
    keras_model = create_keras_model()
    return tff.learning.models.from_keras_model(
        keras_model,
        input_spec=central_test_data.element_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


@tf.function
def client_update(model, dataset, server_weights, client_optimizer):
    """Performs local training on the client's dataset."""
    # Initialize the client model with the current server weights.
    client_weights = model.trainable_variables
    # Assign the server weights to the client model.
    tf.nest.map_structure(lambda x, y: x.assign(y), client_weights, server_weights)
    # Initialize the client optimizer.
    trainable_tensor_specs = tf.nest.map_structure(
        lambda v: tf.TensorSpec(v.shape, v.dtype), client_weights
    )
    optimizer_state = client_optimizer.initialize(trainable_tensor_specs)
    # Use the client_optimizer to update the local model.
    for batch in iter(dataset):
        with tf.GradientTape() as tape:
            # Compute a forward pass on the batch of data.
            outputs = model.forward_pass(batch)
        # Compute the corresponding gradient.
        grads = tape.gradient(outputs.loss, client_weights)
        # Apply the gradient using a client optimizer.
        optimizer_state, updated_weights = client_optimizer.next(
            optimizer_state, client_weights, grads
        )
        tf.nest.map_structure(lambda a, b: a.assign(b), client_weights, updated_weights)
    # Return model deltas.
    return tf.nest.map_structure(tf.subtract, client_weights, server_weights)


@attrs.define(eq=False, frozen=True)
class ServerState(object):  # noqa: UP004
    trainable_weights: Any
    optimizer_state: Any


@tf.function
def server_update(server_state, mean_model_delta, server_optimizer):
    """Updates the server model weights."""
    # Use aggregated negative model delta as pseudo gradient.
    negative_weights_delta = tf.nest.map_structure(lambda w: -1.0 * w, mean_model_delta)
    new_optimizer_state, updated_weights = server_optimizer.next(
        server_state.optimizer_state, server_state.trainable_weights, negative_weights_delta
    )
    return tff.structure.update_struct(
        server_state, trainable_weights=updated_weights, optimizer_state=new_optimizer_state
    )


def build_fedavg_process():
    """The notebook's "TFF blocks" cell; returns its names and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        # 1. Server and client optimizer to be used.
        server_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.05, momentum=0.9)
        client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.01)

        # 2. Functions return initial state on server.
        @tff.tensorflow.computation
        def server_init():
            model = model_fn()
            trainable_tensor_specs = tf.nest.map_structure(
                lambda v: tf.TensorSpec(v.shape, v.dtype), model.trainable_variables
            )
            optimizer_state = server_optimizer.initialize(trainable_tensor_specs)
            return ServerState(
                trainable_weights=model.trainable_variables, optimizer_state=optimizer_state
            )

        @tff.federated_computation
        def server_init_tff():
            return tff.federated_value(server_init(), tff.SERVER)

        # 3. One round of computation and communication.
        server_state_type = server_init.type_signature.result
        print("server_state_type:\n", server_state_type.formatted_representation())
        trainable_weights_type = server_state_type.trainable_weights
        print("trainable_weights_type:\n", trainable_weights_type.formatted_representation())

        # 3-1. Wrap server and client TF blocks with `tff.tensorflow.computation`.
        @tff.tensorflow.computation(server_state_type, trainable_weights_type)
        def server_update_fn(server_state, model_delta):
            return server_update(server_state, model_delta, server_optimizer)

        whimsy_model = model_fn()
        tf_dataset_type = tff.SequenceType(tff.types.tensorflow_to_type(whimsy_model.input_spec))
        print("tf_dataset_type:\n", tf_dataset_type.formatted_representation())

        @tff.tensorflow.computation(tf_dataset_type, trainable_weights_type)
        def client_update_fn(dataset, server_weights):
            model = model_fn()
            return client_update(model, dataset, server_weights, client_optimizer)

        # 3-2. Orchestration with `tff.federated_computation`.
        federated_server_type = tff.FederatedType(server_state_type, tff.SERVER)
        federated_dataset_type = tff.FederatedType(tf_dataset_type, tff.CLIENTS)

        @tff.federated_computation(federated_server_type, federated_dataset_type)
        def run_one_round(server_state, federated_dataset):
            # Server-to-client broadcast.
            server_weights_at_client = tff.federated_broadcast(server_state.trainable_weights)
            # Local client update.
            model_deltas = tff.federated_map(
                client_update_fn, (federated_dataset, server_weights_at_client)
            )
            # Client-to-server upload and aggregation.
            mean_model_delta = tff.federated_mean(model_deltas)
            # Server update.
            server_state = tff.federated_map(server_update_fn, (server_state, mean_model_delta))
            return server_state

        # 4. Build the iterative process for FedAvg.
        fedavg_process = tff.templates.IterativeProcess(
            initialize_fn=server_init_tff, next_fn=run_one_round
        )
        print(
            "type signature of `initialize`:\n",
            fedavg_process.initialize.type_signature.formatted_representation(),
        )
        print(
            "type signature of `next`:\n",
            fedavg_process.next.type_signature.formatted_representation(),
        )
    return fedavg_process, printed.getvalue()


@pytest.fixture(scope="module")
def built():
    return build_fedavg_process()


def evaluate(server_state):
    keras_model = create_keras_model()
    tf.nest.map_structure(
        lambda var, t: var.assign(t),
        keras_model.trainable_weights,
        server_state.trainable_weights,
    )
    metric = tf.keras.metrics.SparseCategoricalAccuracy()
    for batch in iter(central_test_data):
        preds = keras_model(batch[0], training=False)
        metric.update_state(y_true=batch[1], y_pred=preds)
    return metric.result().numpy()


def central_loss(server_state):
    """The mean loss on the central data; the notebook reports accuracy only, too coarse on 10 examples."""
    keras_model = create_keras_model()
    tf.nest.map_structure(
        lambda var, t: var.assign(t), keras_model.trainable_weights, server_state.trainable_weights
    )
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(np.mean([loss(y, keras_model(x, training=False)) for x, y in central_test_data]))


def _indent(text, spaces):
    return "\n".join(" " * spaces + line if line else line for line in text.split("\n"))


WEIGHTS = """<
  float32[5,5,1,32],
  float32[32],
  float32[5,5,32,64],
  float32[64],
  float32[3136,512],
  float32[512],
  float32[512,10],
  float32[10]
>"""

SERVER_STATE = f"""<
  trainable_weights={_indent(WEIGHTS, 2).lstrip()},
  optimizer_state=<
    learning_rate=float32,
    momentum=float32,
    accumulator={_indent(WEIGHTS, 4).lstrip()}
  >
>"""

DATASET = """<
  float32[?,28,28,1],
  int32[?]
>*"""


def test_types_printed_as_in_the_notebook(built):
    fedavg_process, printed = built
    expected = (
        f"server_state_type:\n {SERVER_STATE}\n"
        f"trainable_weights_type:\n {WEIGHTS}\n"
        f"tf_dataset_type:\n {DATASET}\n"
        f"type signature of `initialize`:\n ( -> {SERVER_STATE}@SERVER)\n"
        "type signature of `next`:\n (<\n"
        f"  server_state={_indent(SERVER_STATE, 2).lstrip()}@SERVER,\n"
        f"  federated_dataset={{{_indent(DATASET, 2).lstrip()}}}@CLIENTS\n"
        f"> -> {SERVER_STATE}@SERVER)\n"
    )
    assert printed == expected
    # The compact notation says the same in one line.
    assert str(fedavg_process.next.type_signature.parameter.federated_dataset) == (
        "{<float32[?,28,28,1],int32[?]>*}@CLIENTS"
    )


def test_evaluating_the_algorithm(built, capsys):
    fedavg_process, _ = built

    server_state = fedavg_process.initialize()
    acc = evaluate(server_state)
    print("Initial test accuracy", acc)
    initial_state, initial_loss = server_state, central_loss(server_state)

    # Evaluate after a few rounds
    CLIENTS_PER_ROUND = 2
    sampled_clients = train_client_ids[:CLIENTS_PER_ROUND]
    sampled_train_data = [
        train_data.create_tf_dataset_for_client(client) for client in sampled_clients
    ]
    losses = []
    for round in range(20):  # noqa: B007
        server_state = fedavg_process.next(server_state, sampled_train_data)
        losses.append(central_loss(server_state))
    acc = evaluate(server_state)
    print("Test accuracy", acc)

    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in printed] == ["Initial", "Test"]
    assert 0.0 <= float(printed[-1].split()[-1]) <= 1.0

    # The state keeps the notebook's attrs container and the server optimizer's hyperparameters,
    # and momentum has accumulated.
    assert isinstance(server_state, ServerState)
    assert server_state.optimizer_state["learning_rate"] == pytest.approx(0.05)
    assert server_state.optimizer_state["momentum"] == pytest.approx(0.9)
    assert all(np.any(a != 0) for a in server_state.optimizer_state["accumulator"])
    assert not np.allclose(initial_state.trainable_weights[-1], server_state.trainable_weights[-1])
    # The model learns the clients' data: the central loss (the first client's examples) falls
    # from the first round on, and keeps falling.
    assert initial_loss > losses[0] > losses[9] > losses[19]
