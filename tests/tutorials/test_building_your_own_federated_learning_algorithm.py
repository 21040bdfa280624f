"""TFF's tutorial "Building Your Own Federated Learning Algorithm", run with `import fed as tff` and, where
the notebook imports `federated_language`, `import fed as federated_language` (fed has those names at its
top level): a Keras model made a `tff.learning.models.FunctionalModel`, client and server updates in plain
TensorFlow, federated types and computations, and FedAvg assembled from broadcast, map and mean into a
`tff.templates.IterativeProcess`, evaluated centrally with Keras before and after 15 rounds.

Changed from the notebook: federated EMNIST (a download) is replaced by a stand-in with its element
structure and conventions (`label` int32, `pixels` float32[28, 28] with 1.0 the background), made from fed's
bundled 8x8 handwritten digits, 24 training and 6 test examples for each of the 10 clients. The tests check
what the notebook prints (types in compact notation, the mean temperature) and that the Keras evaluation's
loss falls after training, and recompute a round of the algorithm by hand.
"""

import collections
import re

import numpy as np
import pytest
import tensorflow as tf

import fed as federated_language
import fed as tff

TRAIN_PER_CLIENT, TEST_PER_CLIENT = 24, 6


def load_emnist_stand_in():
    """(train, test) ClientData of ten writers, with federated EMNIST's element structure."""
    pixels, labels = tff.simulation.datasets.digits.load_arrays()
    images = np.pad(np.kron(pixels, np.ones((1, 3, 3), np.float32)), ((0, 0), (2, 2), (2, 2)))
    images = 1.0 - images  # EMNIST's ink is dark on a white background
    train, test = {}, {}
    per_client = TRAIN_PER_CLIENT + TEST_PER_CLIENT
    for i in range(10):
        rows = np.arange(i * per_client, (i + 1) * per_client)
        client_id = f"f{i:04d}_00"
        train[client_id] = collections.OrderedDict(
            label=labels[rows[:TRAIN_PER_CLIENT]], pixels=images[rows[:TRAIN_PER_CLIENT]]
        )
        test[client_id] = collections.OrderedDict(
            label=labels[rows[TRAIN_PER_CLIENT:]], pixels=images[rows[TRAIN_PER_CLIENT:]]
        )
    client_data = tff.simulation.datasets.TestClientData
    return client_data(train), client_data(test)


emnist_train, emnist_test = load_emnist_stand_in()

NUM_CLIENTS = 10
BATCH_SIZE = 20


def preprocess(dataset):
    def batch_format_fn(element):
        """Flatten a batch of EMNIST data and return a (features, label) tuple."""
        return (
            tf.reshape(element["pixels"], [-1, 784]),
            tf.reshape(element["label"], [-1, 1]),
        )

    return dataset.batch(BATCH_SIZE).map(batch_format_fn)


client_ids = sorted(emnist_train.client_ids)[:NUM_CLIENTS]
federated_train_data = [
    preprocess(emnist_train.create_tf_dataset_for_client(x)) for x in client_ids
]


def create_keras_model():
    initializer = tf.keras.initializers.GlorotNormal(seed=0)
    return tf.keras.models.Sequential(
        [
            tf.keras.layers.Input(shape=(784,)),
            tf.keras.layers.Dense(10, kernel_initializer=initializer),
            tf.keras.layers.Softmax(),
        ]
    )


keras_model = create_keras_model()
tff_model = tff.learning.models.functional_model_from_keras(
    keras_model,
    loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(),
    input_spec=federated_train_data[0].element_spec,
    metrics_constructor=collections.OrderedDict(
        accuracy=tf.keras.metrics.SparseCategoricalAccuracy
    ),
)


@tf.function
def client_update(model, dataset, initial_weights, client_optimizer):
    """Performs training (using the server model weights) on the client's dataset."""
    # Initialize the client model with the current server weights and the optimizer
    # state.
    client_weights = initial_weights.trainable
    optimizer_state = client_optimizer.initialize(
        tf.nest.map_structure(tf.TensorSpec.from_tensor, client_weights)
    )

    # Use the client_optimizer to update the local model.
    for batch in dataset:
        x, y = batch
        with tf.GradientTape() as tape:
            tape.watch(client_weights)
            # Compute a forward pass on the batch of data
            outputs = model.predict_on_batch(model_weights=(client_weights, ()), x=x, training=True)
            loss = model.loss(output=outputs, label=y)

        # Compute the corresponding gradient
        grads = tape.gradient(loss, client_weights)

        # Apply the gradient using a client optimizer.
        optimizer_state, client_weights = client_optimizer.next(
            optimizer_state, weights=client_weights, gradients=grads
        )

    return tff.learning.models.ModelWeights(client_weights, non_trainable=())


@tf.function
def server_update(model, mean_client_weights):
    """Updates the server model weights as the average of the client model weights."""
    del model  # Unused, just take the mean_client_weights.
    return mean_client_weights


def test_the_model_s_initial_weights():
    def initialize_fn():
        trainable_weights, _ = tff_model.initial_weights
        return trainable_weights

    trainable = initialize_fn()
    assert [np.shape(w) for w in trainable] == [(784, 10), (10,)]
    np.testing.assert_array_equal(trainable[1], np.zeros(10))


def test_federated_data_and_computations():
    federated_float_on_clients = federated_language.FederatedType(
        np.float32, federated_language.CLIENTS
    )

    assert str(federated_float_on_clients) == "{float32}@CLIENTS"

    @federated_language.federated_computation(
        federated_language.FederatedType(np.float32, federated_language.CLIENTS)
    )
    def get_average_temperature(client_temperatures):
        return federated_language.federated_mean(client_temperatures)

    assert str(get_average_temperature.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    assert get_average_temperature([68.5, 70.3, 69.8]) == pytest.approx(69.53333)

    @tff.tensorflow.computation(np.float32)
    def add_half(x):
        return tf.add(x, 0.5)

    assert str(add_half.type_signature) == "(float32 -> float32)"

    @federated_language.federated_computation(
        federated_language.FederatedType(np.float32, federated_language.CLIENTS)
    )
    def add_half_on_clients(x):
        return federated_language.federated_map(add_half, x)

    assert str(add_half_on_clients.type_signature) == "({float32}@CLIENTS -> {float32}@CLIENTS)"
    assert add_half_on_clients([1.0, 2.5]) == [1.5, 3.0]


@tff.tensorflow.computation
def server_init():
    return tff.learning.models.ModelWeights(*tff_model.initial_weights)


@federated_language.federated_computation
def initialize_fn():
    return federated_language.federated_eval(server_init, federated_language.SERVER)


tf_dataset_type = federated_language.SequenceType(tff.tensorflow.to_type(tff_model.input_spec))

model_weights_type = server_init.type_signature.result


@tff.tensorflow.computation(tf_dataset_type, model_weights_type)
def client_update_fn(tf_dataset, server_weights):
    client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.01)
    return client_update(tff_model, tf_dataset, server_weights, client_optimizer)


@tff.tensorflow.computation(model_weights_type)
def server_update_fn(mean_client_weights):
    return server_update(tff_model, mean_client_weights)


federated_server_type = federated_language.FederatedType(
    model_weights_type, federated_language.SERVER
)
federated_dataset_type = federated_language.FederatedType(
    tf_dataset_type, federated_language.CLIENTS
)


@federated_language.federated_computation(federated_server_type, federated_dataset_type)
def next_fn(server_weights, federated_dataset):
    # Broadcast the server weights to the clients.
    server_weights_at_client = federated_language.federated_broadcast(server_weights)

    # Each client computes their updated weights.
    client_weights = federated_language.federated_map(
        client_update_fn, (federated_dataset, server_weights_at_client)
    )

    # The server averages these updates.
    mean_client_weights = federated_language.federated_mean(client_weights)

    # The server updates its model.
    server_weights = federated_language.federated_map(server_update_fn, mean_client_weights)

    return server_weights


federated_algorithm = tff.templates.IterativeProcess(initialize_fn=initialize_fn, next_fn=next_fn)

WEIGHTS = "<trainable=<float32[784,10],float32[10]>,non_trainable=<>>"


def test_the_types_of_the_tensorflow_blocks():
    assert str(tf_dataset_type) == "<float32[?,784],int32[?,1]>*"
    assert str(model_weights_type) == WEIGHTS


def test_the_iterative_process_s_type_signatures():
    assert str(federated_algorithm.initialize.type_signature) == f"( -> {WEIGHTS}@SERVER)"
    assert str(federated_algorithm.next.type_signature) == (
        f"(<server_weights={WEIGHTS}@SERVER,federated_dataset="
        f"{{<float32[?,784],int32[?,1]>*}}@CLIENTS> -> {WEIGHTS}@SERVER)"
    )


def test_a_round_is_the_mean_of_the_clients_trained_weights():
    server_state = federated_algorithm.initialize()
    new_state = federated_algorithm.next(server_state, federated_train_data[:3])
    by_hand = [
        client_update(
            tff_model,
            dataset,
            tff.learning.models.ModelWeights(*tff_model.initial_weights),
            tff.learning.optimizers.build_sgdm(learning_rate=0.01),
        ).trainable
        for dataset in federated_train_data[:3]
    ]
    for layer, got in enumerate(new_state.trainable):
        want = np.mean([weights[layer].numpy() for weights in by_hand], axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert new_state.non_trainable == ()


central_emnist_test = emnist_test.create_tf_dataset_from_all_clients()
central_emnist_test = preprocess(central_emnist_test)


def evaluate(model_weights):
    keras_model = create_keras_model()
    keras_model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )
    model_weights.assign_weights_to(keras_model)
    keras_model.evaluate(central_emnist_test)


def _printed_loss(text):
    """The loss in the last update of the progress bar that Keras' `evaluate` prints."""
    losses = re.findall(r"loss: (\d+\.\d+)", text)
    assert losses, f"no loss printed in {text!r}"
    return float(losses[-1])


def test_evaluating_the_algorithm(capsys):
    server_state = federated_algorithm.initialize()
    evaluate(server_state)
    initial_loss = _printed_loss(capsys.readouterr().out)

    for _ in range(15):
        server_state = federated_algorithm.next(server_state, federated_train_data)

    evaluate(server_state)
    trained_loss = _printed_loss(capsys.readouterr().out)

    # "There is a slight decrease in the loss function."
    assert trained_loss < initial_loss
