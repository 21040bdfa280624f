"""The flow of TFF's tutorial "Loading Remote Data", with `import fed as tff`: a DataBackend (async, as
TFF's are) materializes each client's data from a URI, the executor stack is assembled from TFF's
names, and FedAvg trains on data descriptors. EMNIST is the canned set's offline synthetic stand-in."""

import collections

import numpy as np
import tensorflow as tf

import fed as tff
from fed_core.execution import get_context, set_local_execution_context

NUM_EPOCHS = 1
SHUFFLE_BUFFER = 100
NUM_CLIENTS = 3


def test_the_tutorial_trains_on_data_that_a_data_backend_materializes():
    emnist_train = tff.simulation.datasets.emnist.get_synthetic()

    def preprocess(dataset):
        def map_fn(element):
            return collections.OrderedDict(
                x=tf.reshape(element["pixels"], [-1, 784]),
                y=tf.reshape(element["label"], [-1, 1]),
            )

        return dataset.repeat(NUM_EPOCHS).shuffle(SHUFFLE_BUFFER, seed=1).map(map_fn)

    example_dataset = emnist_train.create_tf_dataset_for_client(emnist_train.client_ids[0])
    preprocessed_example_dataset = preprocess(example_dataset)
    materialized = []

    class MyDataBackend(tff.framework.DataBackend):
        async def materialize(self, data, type_spec):
            client_id = int(data.uri[-1])
            materialized.append(data.uri)
            client_dataset = emnist_train.create_tf_dataset_for_client(
                emnist_train.client_ids[client_id % len(emnist_train.client_ids)]
            )
            return preprocess(client_dataset)

    def ex_fn(device: tf.config.LogicalDevice) -> tff.framework.DataExecutor:
        return tff.framework.DataExecutor(
            tff.framework.EagerTFExecutor(device), data_backend=MyDataBackend()
        )

    factory = tff.framework.local_executor_factory(leaf_executor_fn=ex_fn)
    ctx = tff.framework.ExecutionContext(executor_fn=factory)
    tff.framework.set_default_context(ctx)
    try:
        assert get_context() is ctx

        def create_keras_model():
            return tf.keras.models.Sequential(
                [
                    tf.keras.layers.InputLayer(input_shape=(784,)),
                    tf.keras.layers.Dense(10, kernel_initializer="zeros"),
                    tf.keras.layers.Softmax(),
                ]
            )

        def model_fn():
            keras_model = create_keras_model()
            return tff.learning.from_keras_model(
                keras_model,
                input_spec=preprocessed_example_dataset.element_spec,
                loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
            )

        iterative_process = tff.learning.algorithms.build_weighted_fed_avg(
            model_fn,
            client_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=0.02),
            server_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=1.0),
        )
        state = iterative_process.initialize()

        element_type = tff.types.StructWithPythonType(
            preprocessed_example_dataset.element_spec, container_type=collections.OrderedDict
        )
        dataset_type = tff.types.SequenceType(element_type)
        round_data_uris = [f"uri://{i}" for i in range(NUM_CLIENTS)]
        round_train_data = tff.framework.CreateDataDescriptor(
            arg_uris=round_data_uris, arg_type=dataset_type
        )

        losses = []
        for _ in range(3):
            result = iterative_process.next(state, round_train_data)
            state = result.state
            metrics = result.metrics
            losses.append(float(metrics["client_work"]["train"]["loss"]))
        ids = emnist_train.client_ids
        expected_examples = sum(
            len(list(emnist_train.create_tf_dataset_for_client(ids[i % len(ids)])))
            for i in range(NUM_CLIENTS)
        )
        assert metrics["client_work"]["train"]["num_examples"] == expected_examples * NUM_EPOCHS
        assert materialized == round_data_uris * 3
        assert losses[-1] < losses[0]
        assert np.all(np.isfinite(losses))
    finally:
        set_local_execution_context()
