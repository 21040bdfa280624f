"""The flow of TFF's tutorial "TFF for Federated Learning Research: Model and Update Compression", run with
`import fed as tff`: FedAvg on EMNIST-shaped data, then FedAvg whose model updates are quantized to 8 bits
(`tff.aggregators.MeanFactory(tff.aggregators.EncodedSumFactory...)`), reporting the bits a client sends.

The tutorial encodes with tensorflow_model_optimization's encoders and measures bits with a sizing executor;
fed's `EncodedSumFactory.quantize_above_threshold` quantizes the same way (uniform, stochastic, 8 bits above
a size threshold) and reports the bytes in its measurements. Data: a small offline stand-in with EMNIST's
element structure.
"""

import collections

import numpy as np
import tensorflow as tf

import fed as tff

NUM_CLIENTS, ROUNDS = 6, 5


def _emnist_stand_in():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images / 16.0, np.ones((1, 3, 3)))
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32)
    labels = digits.target.astype(np.int32)
    clients = {}
    for i, rows in enumerate(np.array_split(np.arange(NUM_CLIENTS * 40), NUM_CLIENTS)):
        clients[str(i)] = collections.OrderedDict(label=labels[rows], pixels=images[rows])
    return tff.simulation.datasets.TestClientData(clients)


emnist_train = _emnist_stand_in()

MAX_CLIENT_DATASET_SIZE = 418
CLIENT_EPOCHS_PER_ROUND = 1
CLIENT_BATCH_SIZE = 20
TEST_BATCH_SIZE = 500


def reshape_emnist_element(element):
    return (tf.expand_dims(element["pixels"], axis=-1), element["label"])


def preprocess_train_dataset(dataset):
    """Preprocessing function for the EMNIST training dataset."""
    return (
        dataset.shuffle(buffer_size=MAX_CLIENT_DATASET_SIZE)
        .repeat(CLIENT_EPOCHS_PER_ROUND)
        .batch(CLIENT_BATCH_SIZE, drop_remainder=False)
        .map(reshape_emnist_element)
    )


emnist_train = emnist_train.preprocess(preprocess_train_dataset)


def create_original_fedavg_cnn_model(only_digits=True):
    """The tutorial's CNN for federated EMNIST."""
    data_format = "channels_last"
    max_pool = lambda: tf.keras.layers.MaxPooling2D(  # noqa: E731
        pool_size=(2, 2), padding="same", data_format=data_format
    )
    conv2d = lambda **kwargs: tf.keras.layers.Conv2D(  # noqa: E731
        kernel_size=5, padding="same", data_format=data_format, activation=tf.nn.relu, **kwargs
    )
    model = tf.keras.models.Sequential(
        [
            tf.keras.layers.InputLayer(shape=(28, 28, 1)),
            conv2d(filters=8),
            max_pool(),
            conv2d(filters=16),
            max_pool(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(64, activation=tf.nn.relu),
            tf.keras.layers.Dense(10 if only_digits else 62),
            tf.keras.layers.Softmax(),
        ]
    )
    return model


input_spec = emnist_train.create_tf_dataset_for_client(emnist_train.client_ids[0]).element_spec


def tff_model_fn():
    keras_model = create_original_fedavg_cnn_model()
    return tff.learning.models.from_keras_model(
        keras_model=keras_model,
        input_spec=input_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )


def train(federated_averaging_process, num_rounds, num_clients_per_round):
    """The tutorial's loop; the bytes each client sent come from the aggregator's measurements."""
    rng = np.random.default_rng(0)
    state = federated_averaging_process.initialize()
    history = []
    for _ in range(num_rounds):
        sampled_clients = rng.choice(
            emnist_train.client_ids, size=num_clients_per_round, replace=False
        )
        sampled_train_data = [
            emnist_train.create_tf_dataset_for_client(client) for client in sampled_clients
        ]
        result = federated_averaging_process.next(state, sampled_train_data)
        state = result.state
        history.append(result.metrics)
    return history


def test_fedavg_with_and_without_update_compression():
    original = tff.learning.algorithms.build_weighted_fed_avg(
        tff_model_fn,
        client_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=0.02),
        server_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=1.0),
    )
    compressed = tff.learning.algorithms.build_weighted_fed_avg(
        tff_model_fn,
        client_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=0.02),
        server_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=1.0),
        model_aggregator=tff.aggregators.MeanFactory(
            tff.aggregators.EncodedSumFactory.quantize_above_threshold(
                quantization_bits=8, threshold=10000
            )
        ),
    )
    plain_history = train(original, ROUNDS, num_clients_per_round=4)
    compressed_history = train(compressed, ROUNDS, num_clients_per_round=4)

    def losses(history):
        return [float(m["client_work"]["train"]["loss"]) for m in history]

    assert losses(compressed_history)[-1] < losses(compressed_history)[0]
    # 8-bit updates train about as the exact mean does over a few rounds.
    np.testing.assert_allclose(losses(compressed_history), losses(plain_history), rtol=0.05)

    sent = compressed_history[-1]["aggregator"]["mean_value"]
    # Only the 784x64 dense kernel (50,176 floats) has more than 10,000 elements: it goes as 8-bit codes
    # plus its min and max; the other 3,594 parameters go as float32.
    total = 5 * 5 * 8 + 8 + 5 * 5 * 8 * 16 + 16 + 784 * 64 + 64 + 64 * 10 + 10
    assert sent["bytes_before"] == total * 4
    assert sent["bytes_after"] == 784 * 64 + 2 * 4 + (total - 784 * 64) * 4
    print(f"bits sent per client: {8 * sent['bytes_before']} -> {8 * sent['bytes_after']}")
