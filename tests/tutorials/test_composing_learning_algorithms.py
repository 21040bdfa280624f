"""TFF's tutorial "Composing Learning Algorithms", run with `import fed as tff` and, where the notebook
imports `federated_language`, `import fed as federated_language` (fed has those names at its top level):
a client work process with gradient clipping written in TensorFlow, composed with TFF's broadcast
distributor, `MeanFactory` aggregator and optimizer finalizer by `tff.learning.templates.compose_learning_process`.

Changed from the notebook: federated EMNIST (a download) is replaced by a stand-in with its element
structure and conventions (`label` int32, `pixels` float32[28, 28] with 1.0 the background), made from fed's
bundled 8x8 handwritten digits, 24 examples for each of the 10 clients. The tests check what the notebook
shows (the parts' states before and after a round, the round's metrics) and recompute the round by hand.
"""

import collections

import numpy as np
import tensorflow as tf

import fed as federated_language
import fed as tff


@tf.function
def client_update(
    model: tff.learning.models.FunctionalModel,
    dataset: tf.data.Dataset,
    initial_weights: tff.learning.models.ModelWeights,
    client_optimizer: tff.learning.optimizers.Optimizer,
):
    """Performs training (using the initial server model weights) on the client's dataset."""
    # Keep track of the number of examples.
    num_examples = 0.0
    # Use the client_optimizer to update the local model.
    trainable_weights, non_trainable_weights = (
        initial_weights.trainable,
        initial_weights.non_trainable,
    )
    optimizer_state = client_optimizer.initialize(
        tf.nest.map_structure(lambda x: tf.TensorSpec, trainable_weights)
    )
    for batch in dataset:
        x, y = batch
        with tf.GradientTape() as tape:
            tape.watch(trainable_weights)
            logits = model.predict_on_batch(
                model_weights=(trainable_weights, non_trainable_weights),
                x=x,
                training=True,
            )
            num_examples += tf.cast(tf.shape(y)[0], tf.float32)
            loss = model.loss(output=logits, label=y)

        # Compute the corresponding gradient
        grads = tape.gradient(loss, trainable_weights)

        # Compute the gradient norm and clip
        gradient_norm = tf.linalg.global_norm(grads)
        if gradient_norm > 1:
            grads = tf.nest.map_structure(lambda x: x / gradient_norm, grads)  # noqa: B023

        # Apply the gradient using a client optimizer.
        optimizer_state, trainable_weights = client_optimizer.next(
            optimizer_state, trainable_weights, grads
        )

    # Compute the difference between the initial weights and the client weights
    client_update = tf.nest.map_structure(tf.subtract, trainable_weights, initial_weights[0])

    return tff.learning.templates.ClientResult(update=client_update, update_weight=num_examples)


def build_gradient_clipping_client_work(
    model: tff.learning.models.FunctionalModel,
    optimizer: tff.learning.optimizers.Optimizer,
) -> tff.learning.templates.ClientWorkProcess:
    """Creates a client work process that uses gradient clipping."""
    data_type = federated_language.SequenceType(tff.tensorflow.to_type(model.input_spec))
    model_weights_type = federated_language.to_type(
        tf.nest.map_structure(
            lambda arr: federated_language.TensorType(shape=arr.shape, dtype=arr.dtype),
            tff.learning.models.ModelWeights(*model.initial_weights),
        )
    )

    @federated_language.federated_computation
    def initialize_fn():
        return federated_language.federated_value((), federated_language.SERVER)

    @tff.tensorflow.computation(model_weights_type, data_type)
    def client_update_computation(model_weights, dataset):
        return client_update(model, dataset, model_weights, optimizer)

    @federated_language.federated_computation(
        initialize_fn.type_signature.result,
        federated_language.FederatedType(model_weights_type, federated_language.CLIENTS),
        federated_language.FederatedType(data_type, federated_language.CLIENTS),
    )
    def next_fn(state, model_weights, client_dataset):
        client_result = federated_language.federated_map(
            client_update_computation, (model_weights, client_dataset)
        )
        # Return empty measurements, though a more complete algorithm might
        # measure something here.
        measurements = federated_language.federated_value((), federated_language.SERVER)
        return tff.templates.MeasuredProcessOutput(state, client_result, measurements)

    return tff.learning.templates.ClientWorkProcess(initialize_fn, next_fn)


def load_emnist_stand_in():
    """(train, test) ClientData of ten writers, with federated EMNIST's element structure."""
    pixels, labels = tff.simulation.datasets.digits.load_arrays()
    images = np.pad(np.kron(pixels, np.ones((1, 3, 3), np.float32)), ((0, 0), (2, 2), (2, 2)))
    images = 1.0 - images  # EMNIST's ink is dark on a white background
    train, test = {}, {}
    for i in range(10):
        rows = np.arange(i * 30, (i + 1) * 30)
        client_id = f"f{i:04d}_00"
        train[client_id] = collections.OrderedDict(
            label=labels[rows[:24]], pixels=images[rows[:24]]
        )
        test[client_id] = collections.OrderedDict(label=labels[rows[24:]], pixels=images[rows[24:]])
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

initializer = tf.keras.initializers.GlorotNormal(seed=0)
keras_model = tf.keras.models.Sequential(
    [
        tf.keras.layers.Input(shape=(784,)),
        tf.keras.layers.Dense(10, kernel_initializer=initializer),
        tf.keras.layers.Softmax(),
    ]
)

tff_model = tff.learning.models.functional_model_from_keras(
    keras_model,
    loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(),
    input_spec=federated_train_data[0].element_spec,
    metrics_constructor=collections.OrderedDict(
        accuracy=tf.keras.metrics.SparseCategoricalAccuracy
    ),
)

client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.01)
server_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=1.0)


@tff.tensorflow.computation
def initial_model_weights_fn():
    return tff.learning.models.ModelWeights(*tff_model.initial_weights)


model_weights_type = initial_model_weights_fn.type_signature.result

distributor = tff.learning.templates.build_broadcast_process(model_weights_type)
client_work = build_gradient_clipping_client_work(tff_model, client_optimizer)

# TFF aggregators use a factory pattern, which create an aggregator
# based on the output type of the client work. This also uses a float (the number
# of examples) to govern the weight in the average being computed.)
aggregator_factory = tff.aggregators.MeanFactory()
aggregator = aggregator_factory.create(
    model_weights_type.trainable, federated_language.TensorType(np.float32)
)
finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
    server_optimizer, model_weights_type
)

fed_avg_with_clipping = tff.learning.templates.compose_learning_process(
    initial_model_weights_fn, distributor, client_work, aggregator, finalizer
)


def test_the_building_blocks_types():
    assert str(model_weights_type) == "<trainable=<float32[784,10],float32[10]>,non_trainable=<>>"
    assert str(client_work.initialize.type_signature) == "( -> <>@SERVER)"
    assert str(finalizer.initialize.type_signature) == "( -> <learning_rate=float32>@SERVER)"


def test_running_the_algorithm():
    state = fed_avg_with_clipping.initialize()

    assert state.client_work == ()
    assert state.finalizer == collections.OrderedDict(learning_rate=1.0)

    learning_process_output = fed_avg_with_clipping.next(state, federated_train_data)

    assert learning_process_output.state.finalizer == collections.OrderedDict(learning_rate=1.0)
    assert learning_process_output.metrics == collections.OrderedDict(
        distributor=(),
        client_work=(),
        aggregator=collections.OrderedDict(mean_value=(), mean_weight=()),
        finalizer=collections.OrderedDict(update_non_finite=0, model_non_finite=0),
    )

    # The round by hand: each client's clipped training from the server's weights, the example-weighted
    # mean of their updates, and one server SGD step of learning rate 1.0 with that mean as the gradient.
    initial = state.global_model_weights
    results = [
        client_update(
            tff_model,
            dataset,
            tff.learning.models.ModelWeights(*tff_model.initial_weights),
            client_optimizer,
        )
        for dataset in federated_train_data
    ]
    assert [float(r.update_weight) for r in results] == [24.0] * NUM_CLIENTS
    new_weights = learning_process_output.state.global_model_weights
    for layer, got in enumerate(new_weights.trainable):
        mean_update = np.mean([r.update[layer].numpy() for r in results], axis=0)
        assert np.abs(mean_update).max() > 0
        np.testing.assert_allclose(
            got, initial.trainable[layer] - 1.0 * mean_update, rtol=1e-5, atol=1e-6
        )
