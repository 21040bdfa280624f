"""TFF's tutorial "Working with tff's ClientData", run with `import fed as tff`.

The tutorial imports `federated_language` beside `tensorflow_federated`; fed has those names at its top
level, so `import fed as federated_language` stands in for it. What changed:
- EMNIST is offline: `tff.simulation.datasets.emnist.get_synthetic()` (two clients of ten examples, in
  federated EMNIST's element structure) replaces `emnist.load_data()`, so the ten selected clients
  shrink to the two there are;
- in "manually composing preprocessing logic" the notebook decorates `new_next` with
  `@federated_language(...)`, calling the module itself (a typo that fails under TFF too); here it is
  `@federated_language.federated_computation(...)`, which the surrounding prose describes.
Each test checks what the tutorial prints: element specs, the dataset computations' type signatures,
the losses falling, and the two composed processes' `next` signatures.
"""

import collections
import time

import pytest
import tensorflow as tf

import fed as federated_language
import fed as tff

NUM_SELECTED_CLIENTS = 2  # the notebook's 10; the synthetic set has 2 clients

client_data = tff.simulation.datasets.emnist.get_synthetic()
first_client_id = client_data.client_ids[0]

# The state type both composed processes print, as the notebook shows it.
STATE_TYPE = (
    "<global_model_weights=<trainable=<float32[784,10],float32[10]>,non_trainable=<>>,"
    "distributor=<>,client_work=<>,aggregator=<value_sum_process=<>,weight_sum_process=<>>,"
    "finalizer=<learning_rate=float32>>"
)


def preprocess_dataset(dataset):
    """Create batches of 5 examples, and limit to 3 batches."""

    def map_fn(input):
        return collections.OrderedDict(
            x=tf.reshape(input["pixels"], shape=(-1, 784)),
            y=tf.cast(tf.reshape(input["label"], shape=(-1, 1)), tf.int64),
        )

    return dataset.batch(5).map(map_fn, num_parallel_calls=tf.data.experimental.AUTOTUNE).take(5)


def preprocess_and_shuffle(dataset):
    """Applies `preprocess_dataset` above and shuffles the result."""
    preprocessed = preprocess_dataset(dataset)
    return preprocessed.shuffle(buffer_size=5)


preprocessed_and_shuffled = client_data.preprocess(preprocess_and_shuffle)


def build_trainer():
    keras_model = tf.keras.models.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=(784,)),
            tf.keras.layers.Dense(10, kernel_initializer="zeros"),
        ]
    )
    tff_model = tff.learning.models.functional_model_from_keras(
        keras_model,
        loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Note: input spec is the _batched_ shape, and includes the
        # label tensor which will be passed to the loss function. This model is
        # therefore configured to accept data _after_ it has been preprocessed.
        input_spec=collections.OrderedDict(
            x=tf.TensorSpec(shape=[None, 784], dtype=tf.float32),
            y=tf.TensorSpec(shape=[None, 1], dtype=tf.int64),
        ),
        metrics_constructor=collections.OrderedDict(
            loss=lambda: tf.keras.metrics.SparseCategoricalCrossentropy(from_logits=True),
            accuracy=tf.keras.metrics.SparseCategoricalAccuracy,
        ),
    )

    trainer = tff.learning.algorithms.build_weighted_fed_avg(
        tff_model,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.01),
    )
    return trainer


@pytest.fixture(scope="module")
def trainer():
    return build_trainer()


def test_manipulating_a_client_data_object():
    first_client_dataset = client_data.create_tf_dataset_for_client(first_client_id)
    print(first_client_dataset.element_spec)
    # This information is also available as a `ClientData` property:
    assert client_data.element_type_structure == first_client_dataset.element_spec
    assert first_client_dataset.element_spec == collections.OrderedDict(
        label=tf.TensorSpec(shape=(), dtype=tf.int32),
        pixels=tf.TensorSpec(shape=(28, 28), dtype=tf.float32),
    )

    preprocessed_client_data = client_data.preprocess(preprocess_dataset)

    # Notice that we have both reshaped and renamed the elements of the ordered dict.
    first_client_dataset = preprocessed_client_data.create_tf_dataset_for_client(first_client_id)
    print(first_client_dataset.element_spec)
    expected_spec = collections.OrderedDict(
        x=tf.TensorSpec(shape=(None, 784), dtype=tf.float32),
        y=tf.TensorSpec(shape=(None, 1), dtype=tf.int64),
    )
    assert first_client_dataset.element_spec == expected_spec
    batches = list(first_client_dataset)
    assert [batch["x"].shape.as_list() for batch in batches] == [[5, 784], [5, 784]]
    assert [batch["y"].numpy().ravel().tolist() for batch in batches] == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
    ]

    # The type signature will remain the same, but the batches will be shuffled.
    first_client_dataset = preprocessed_and_shuffled.create_tf_dataset_for_client(first_client_id)
    print(first_client_dataset.element_spec)
    assert first_client_dataset.element_spec == expected_spec
    # Each pass draws a fresh order of the two batches; twenty passes all in one order has
    # probability 2 / 2**20.
    orders = {tuple(int(batch["y"][0, 0]) for batch in first_client_dataset) for _ in range(20)}
    assert orders == {(0, 5), (5, 0)}


def test_dataset_computations(capsys):
    print("dataset computation without preprocessing:")
    print(client_data.dataset_computation.type_signature)
    print("\n")
    print("dataset computation with preprocessing:")
    print(preprocessed_and_shuffled.dataset_computation.type_signature)

    assert capsys.readouterr().out == (
        "dataset computation without preprocessing:\n"
        "(str -> <label=int32,pixels=float32[28,28]>*)\n"
        "\n\n"
        "dataset computation with preprocessing:\n"
        "(str -> <x=float32[?,784],y=int64[?,1]>*)\n"
    )


def _printed_losses(capsys):
    """The losses the notebook's training loop printed since the last read, one per round."""
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(line.startswith("loss ") for line in lines), lines
    return [float(line.split()[1].rstrip(",")) for line in lines]


def test_passing_datasets_then_client_ids(trainer, capsys):
    # Passing `tf.data.Datasets` directly to TFF.
    selected_client_ids = preprocessed_and_shuffled.client_ids[:10]

    preprocessed_data_for_clients = [
        preprocessed_and_shuffled.create_tf_dataset_for_client(selected_client_ids[i])
        for i in range(NUM_SELECTED_CLIENTS)
    ]

    state = trainer.initialize()
    for _ in range(5):
        t1 = time.time()
        result = trainer.next(state, preprocessed_data_for_clients)
        state = result.state
        train_metrics = result.metrics["client_work"]["train"]
        t2 = time.time()
        print(f"loss {train_metrics['loss']:.2f}, round time {t2 - t1:.2f} seconds")
    losses = _printed_losses(capsys)
    assert losses[-1] < losses[0]

    # Mapping construction and preprocessing over the clients.
    trainer_accepting_ids = tff.simulation.compose_dataset_computation_with_iterative_process(
        preprocessed_and_shuffled.dataset_computation, trainer
    )

    # `state` passes between the two processes: training goes on from where it stopped.
    for _ in range(5):
        t1 = time.time()
        result = trainer_accepting_ids.next(state, selected_client_ids)
        state = result.state
        train_metrics = result.metrics["client_work"]["train"]
        t2 = time.time()
        print(f"loss {train_metrics['loss']:.2f}, round time {t2 - t1:.2f} seconds")
    losses_by_id = _printed_losses(capsys)
    assert losses_by_id[-1] < losses_by_id[0]
    assert losses_by_id[-1] < losses[-1]


def _manual_trainer_with_preprocessing(trainer):
    selected_clients_type = federated_language.FederatedType(
        preprocessed_and_shuffled.dataset_computation.type_signature.parameter,
        federated_language.CLIENTS,
    )

    @federated_language.federated_computation(
        trainer.next.type_signature.parameter[0], selected_clients_type
    )
    def new_next(server_state, selected_clients):
        preprocessed_data = federated_language.federated_map(
            preprocessed_and_shuffled.dataset_computation, selected_clients
        )
        return trainer.next(server_state, preprocessed_data)

    manual_trainer_with_preprocessing = tff.templates.IterativeProcess(
        initialize_fn=trainer.initialize, next_fn=new_next
    )
    return manual_trainer_with_preprocessing


def test_manually_composing_preprocessing_logic(trainer):
    trainer_accepting_ids = tff.simulation.compose_dataset_computation_with_iterative_process(
        preprocessed_and_shuffled.dataset_computation, trainer
    )
    manual_trainer_with_preprocessing = _manual_trainer_with_preprocessing(trainer)
    print(trainer_accepting_ids.next.type_signature)
    print(manual_trainer_with_preprocessing.next.type_signature)

    composed = trainer_accepting_ids.next.type_signature
    manual = manual_trainer_with_preprocessing.next.type_signature
    # The two differ only in their parameter names, as the notebook prints them.
    assert str(composed.parameter) == f"<state={STATE_TYPE}@SERVER,client_data={{str}}@CLIENTS>"
    assert str(manual.parameter) == (
        f"<server_state={STATE_TYPE}@SERVER,selected_clients={{str}}@CLIENTS>"
    )
    assert str(composed.result) == str(manual.result)
    assert str(composed.result.state) == f"{STATE_TYPE}@SERVER"
    metrics = composed.result.metrics.member
    assert str(metrics.distributor) == "<>"
    assert str(metrics.aggregator) == "<mean_value=<>,mean_weight=<>>"
    assert str(metrics.client_work.train.loss) == "float32"
    assert str(metrics.client_work.train.accuracy) == "float32"
    assert str(metrics.finalizer) == "<update_non_finite=int32,model_non_finite=int32>"

    # Both run: a round of each from the same state gives the same kind of output.
    state = trainer.initialize()
    for process in (trainer_accepting_ids, manual_trainer_with_preprocessing):
        result = process.next(state, preprocessed_and_shuffled.client_ids)
        train_metrics = result.metrics["client_work"]["train"]
        assert 0.0 <= train_metrics["accuracy"] <= 1.0
        assert train_metrics["loss"] > 0.0


def test_next_type_signature_is_the_notebooks(trainer):
    trainer_accepting_ids = tff.simulation.compose_dataset_computation_with_iterative_process(
        preprocessed_and_shuffled.dataset_computation, trainer
    )
    assert str(trainer_accepting_ids.next.type_signature) == (
        f"(<state={STATE_TYPE}@SERVER,client_data={{str}}@CLIENTS> -> <state={STATE_TYPE}@SERVER,"
        "metrics=<distributor=<>,client_work=<train=<loss=float32,accuracy=float32,"
        "num_non_finite_clients=int32,num_empty_clients=int32,num_failed_clients=int32>>,"
        "aggregator=<mean_value=<>,mean_weight=<>>,"
        "finalizer=<update_non_finite=int32,model_non_finite=int32>>@SERVER>)"
    )
