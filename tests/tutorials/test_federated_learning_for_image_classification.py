"""TFF's tutorial "Federated Learning for Image Classification", run with `import fed as tff`: federated
EMNIST explored through `ClientData`, preprocessed into batches, a Keras model wrapped with
`tff.learning.models.from_keras_model` and trained with `build_weighted_fed_avg`, then the same training
with the tutorial's own `tff.learning.models.VariableModel` (`MnistModel`), and federated evaluation with
`build_fed_eval` on training and held-out data.

Changed from the notebook: federated EMNIST (a download) is replaced by a stand-in with its element
structure and conventions (`label` int32, `pixels` float32[28, 28] with 1.0 the background), made from fed's
bundled 8x8 handwritten digits; there are 24 training and 6 test examples per client. The plotting and
TensorBoard cells are skipped. Everything else (10 clients, 5 epochs, 11 rounds, the learning rates) is as
the tutorial has it. The tests check what the tutorial prints: the data's structure, the processes' type
signatures, the metrics' layout, training loss falling, and evaluation numbers, which are recomputed here.
"""

import collections
import re
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf

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


np.random.seed(0)

emnist_train, emnist_test = load_emnist_stand_in()

example_dataset = emnist_train.create_tf_dataset_for_client(emnist_train.client_ids[0])

example_element = next(iter(example_dataset))

NUM_CLIENTS = 10
NUM_EPOCHS = 5
BATCH_SIZE = 20
SHUFFLE_BUFFER = 100
PREFETCH_BUFFER = 10


def preprocess(dataset):
    def batch_format_fn(element):
        """Flatten a batch `pixels` and return the features as an `OrderedDict`."""
        return collections.OrderedDict(
            x=tf.reshape(element["pixels"], [-1, 784]),
            y=tf.reshape(element["label"], [-1, 1]),
        )

    return (
        dataset.repeat(NUM_EPOCHS)
        .shuffle(SHUFFLE_BUFFER, seed=1)
        .batch(BATCH_SIZE)
        .map(batch_format_fn)
        .prefetch(PREFETCH_BUFFER)
    )


preprocessed_example_dataset = preprocess(example_dataset)


def make_federated_data(client_data, client_ids):
    return [preprocess(client_data.create_tf_dataset_for_client(x)) for x in client_ids]


sample_clients = emnist_train.client_ids[0:NUM_CLIENTS]

federated_train_data = make_federated_data(emnist_train, sample_clients)


def create_keras_model():
    return tf.keras.models.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=(784,)),
            tf.keras.layers.Dense(10, kernel_initializer="zeros"),
            tf.keras.layers.Softmax(),
        ]
    )


def model_fn():
    # We _must_ create a new model here, and _not_ capture it from an external
    # scope. TFF will call this within different graph contexts.
    keras_model = create_keras_model()
    return tff.learning.models.from_keras_model(
        keras_model,
        input_spec=preprocessed_example_dataset.element_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )


DATASET_REPR = (
    "<_PrefetchDataset element_spec=OrderedDict([('x', TensorSpec(shape=(None, 784), "
    "dtype=tf.float32, name=None)), ('y', TensorSpec(shape=(None, 1), dtype=tf.int32, name=None))])>"
)

# The counts of clients left out of a round, which follow the model's metrics (TFF reports the first).
CLIENT_COUNTS = ["num_non_finite_clients", "num_empty_clients", "num_failed_clients"]
# What the tutorial prints after each round, up to the metric values.
ROUND_LINE = re.compile(
    r"round +(\d+), metrics=OrderedDict\(\[\('distributor', \(\)\), \('client_work', "
    r"OrderedDict\(\[\('train', OrderedDict\(\[(.*)\]\)\)\]\)\), \('aggregator', OrderedDict\(\["
    r"\('mean_value', \(\)\), \('mean_weight', \(\)\)\]\)\), \('finalizer', OrderedDict\(\["
    r"\('update_non_finite', (?:np\.int32\()?0\)?\), "
    r"\('model_non_finite', (?:np\.int32\()?0\)?\)\]\)\)\]\)$"
)


def _printed_rounds(text):
    """The round numbers and train-metric names the tutorial's print lines show."""
    rounds = []
    for line in text.strip().splitlines():
        match = ROUND_LINE.match(line)
        assert match, f"unexpected line: {line}"
        names = re.findall(r"\('(\w+)', ", match.group(2))
        rounds.append((int(match.group(1)), names))
    return rounds


def test_hello_world():
    assert tff.tensorflow_computation(lambda: "Hello, World!")() == b"Hello, World!"


def test_preparing_the_input_data(capsys):
    assert len(emnist_train.client_ids) == 10
    assert emnist_train.element_type_structure == collections.OrderedDict(
        label=tf.TensorSpec(shape=(), dtype=tf.int32),
        pixels=tf.TensorSpec(shape=(28, 28), dtype=tf.float32),
    )
    assert example_element["label"].numpy() in range(10)

    sample_batch = tf.nest.map_structure(
        lambda x: x.numpy(), next(iter(preprocessed_example_dataset))
    )

    assert list(sample_batch) == ["x", "y"]
    assert sample_batch["x"].shape == (20, 784) and sample_batch["x"].dtype == np.float32
    assert sample_batch["y"].shape == (20, 1) and sample_batch["y"].dtype == np.int32
    # Mostly background, as in the tutorial's printed batch.
    assert np.mean(sample_batch["x"] == 1.0) > 0.5

    print(f"Number of client datasets: {len(federated_train_data)}")
    print(f"First dataset: {federated_train_data[0]}")
    assert capsys.readouterr().out == (
        f"Number of client datasets: 10\nFirst dataset: {DATASET_REPR}\n"
    )


def test_training_the_keras_model_with_federated_averaging(capsys):
    training_process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
    )

    print(training_process.initialize.type_signature.formatted_representation())
    assert capsys.readouterr().out == (
        "( -> <\n"
        "  global_model_weights=<\n"
        "    trainable=<\n"
        "      float32[784,10],\n"
        "      float32[10]\n"
        "    >,\n"
        "    non_trainable=<>\n"
        "  >,\n"
        "  distributor=<>,\n"
        "  client_work=<>,\n"
        "  aggregator=<\n"
        "    value_sum_process=<>,\n"
        "    weight_sum_process=<>\n"
        "  >,\n"
        "  finalizer=<\n"
        "    learning_rate=float32\n"
        "  >\n"
        ">@SERVER)\n"
    )

    train_state = training_process.initialize()

    result = training_process.next(train_state, federated_train_data)
    train_state = result.state
    train_metrics = result.metrics
    print("round  1, metrics={}".format(train_metrics))  # noqa: UP032
    losses = [train_metrics["client_work"]["train"]["loss"]]

    NUM_ROUNDS = 11
    for round_num in range(2, NUM_ROUNDS):
        result = training_process.next(train_state, federated_train_data)
        train_state = result.state
        train_metrics = result.metrics
        print("round {:2d}, metrics={}".format(round_num, train_metrics))  # noqa: UP032
        losses.append(train_metrics["client_work"]["train"]["loss"])

    keras_metric_names = ["sparse_categorical_accuracy", "loss", "num_examples", "num_batches"]
    keras_metric_names += CLIENT_COUNTS
    assert _printed_rounds(capsys.readouterr().out) == [
        (r, keras_metric_names) for r in range(1, 11)
    ]
    train = train_metrics["client_work"]["train"]
    assert train["num_examples"] == NUM_CLIENTS * TRAIN_PER_CLIENT * NUM_EPOCHS
    # Each client's 120 examples make 6 batches of 20.
    assert train["num_batches"] == NUM_CLIENTS * 6
    # "Training loss is decreasing after each round of federated training".
    assert all(b < a * 1.01 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]
    assert train["sparse_categorical_accuracy"] > 0.5


MnistVariables = collections.namedtuple(
    "MnistVariables", "weights bias num_examples loss_sum accuracy_sum"
)


def create_mnist_variables():
    return MnistVariables(
        weights=tf.Variable(
            lambda: tf.zeros(dtype=tf.float32, shape=(784, 10)),
            name="weights",
            trainable=True,
        ),
        bias=tf.Variable(
            lambda: tf.zeros(dtype=tf.float32, shape=(10)),
            name="bias",
            trainable=True,
        ),
        num_examples=tf.Variable(0.0, name="num_examples", trainable=False),
        loss_sum=tf.Variable(0.0, name="loss_sum", trainable=False),
        accuracy_sum=tf.Variable(0.0, name="accuracy_sum", trainable=False),
    )


def predict_on_batch(variables, x):
    return tf.nn.softmax(tf.matmul(x, variables.weights) + variables.bias)


def mnist_forward_pass(variables, batch):
    y = predict_on_batch(variables, batch["x"])
    predictions = tf.cast(tf.argmax(y, 1), tf.int32)

    flat_labels = tf.reshape(batch["y"], [-1])
    loss = -tf.reduce_mean(tf.reduce_sum(tf.one_hot(flat_labels, 10) * tf.math.log(y), axis=[1]))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(predictions, flat_labels), tf.float32))

    num_examples = tf.cast(tf.size(batch["y"]), tf.float32)

    variables.num_examples.assign_add(num_examples)
    variables.loss_sum.assign_add(loss * num_examples)
    variables.accuracy_sum.assign_add(accuracy * num_examples)

    return loss, predictions


def get_local_unfinalized_metrics(variables):
    return collections.OrderedDict(
        num_examples=[variables.num_examples],
        loss=[variables.loss_sum, variables.num_examples],
        accuracy=[variables.accuracy_sum, variables.num_examples],
    )


def get_metric_finalizers():
    return collections.OrderedDict(
        num_examples=tf.function(func=lambda x: x[0]),
        loss=tf.function(func=lambda x: x[0] / x[1]),
        accuracy=tf.function(func=lambda x: x[0] / x[1]),
    )


class MnistModel(tff.learning.models.VariableModel):
    def __init__(self):
        self._variables = create_mnist_variables()

    @property
    def trainable_variables(self):
        return [self._variables.weights, self._variables.bias]

    @property
    def non_trainable_variables(self):
        return []

    @property
    def local_variables(self):
        return [
            self._variables.num_examples,
            self._variables.loss_sum,
            self._variables.accuracy_sum,
        ]

    @property
    def input_spec(self):
        return collections.OrderedDict(
            x=tf.TensorSpec([None, 784], tf.float32),
            y=tf.TensorSpec([None, 1], tf.int32),
        )

    @tf.function
    def predict_on_batch(self, x, training=True):
        del training
        return predict_on_batch(self._variables, x)

    @tf.function
    def forward_pass(self, batch, training=True):
        del training
        loss, predictions = mnist_forward_pass(self._variables, batch)
        num_exmaples = tf.shape(batch["x"])[0]
        return tff.learning.models.BatchOutput(
            loss=loss, predictions=predictions, num_examples=num_exmaples
        )

    @tf.function
    def report_local_unfinalized_metrics(
        self,
    ) -> collections.OrderedDict[str, list[tf.Tensor]]:
        """Creates an `OrderedDict` of metric names to unfinalized values."""
        return get_local_unfinalized_metrics(self._variables)

    def metric_finalizers(
        self,
    ) -> collections.OrderedDict[str, Callable[[list[tf.Tensor]], tf.Tensor]]:
        """Creates an `OrderedDict` of metric names to finalizers."""
        return get_metric_finalizers()

    @tf.function
    def reset_metrics(self):
        """Resets metrics variables to initial value."""
        for var in self.local_variables:
            var.assign(tf.zeros_like(var))


@pytest.fixture(scope="module")
def mnist_training():
    """The tutorial's training with its own MnistModel: the process, the state after ten rounds, what the
    rounds printed and their metrics."""
    import contextlib
    import io

    training_process = tff.learning.algorithms.build_weighted_fed_avg(
        MnistModel,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02),
    )

    train_state = training_process.initialize()

    printed = io.StringIO()
    all_metrics = []
    with contextlib.redirect_stdout(printed):
        result = training_process.next(train_state, federated_train_data)
        train_state = result.state
        metrics = result.metrics
        print("round  1, metrics={}".format(metrics))  # noqa: UP032
        all_metrics.append(metrics)

        for round_num in range(2, 11):
            result = training_process.next(train_state, federated_train_data)
            train_state = result.state
            metrics = result.metrics
            print("round {:2d}, metrics={}".format(round_num, metrics))  # noqa: UP032
            all_metrics.append(metrics)
    return training_process, train_state, printed.getvalue(), all_metrics


def test_training_the_custom_variable_model(mnist_training):
    _, _, printed, all_metrics = mnist_training
    assert _printed_rounds(printed) == [
        (r, ["num_examples", "loss", "accuracy", *CLIENT_COUNTS]) for r in range(1, 11)
    ]
    losses = [m["client_work"]["train"]["loss"] for m in all_metrics]
    assert all(b < a * 1.01 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]
    last = all_metrics[-1]["client_work"]["train"]
    assert last["num_examples"] == NUM_CLIENTS * TRAIN_PER_CLIENT * NUM_EPOCHS
    assert last["accuracy"] > 0.5


def _central_metrics(model_weights, datasets):
    """The MnistModel's metrics over all the examples of `datasets`, computed here with numpy."""
    weights, bias = (np.asarray(w) for w in model_weights.trainable)
    batches = [b for d in datasets for b in d]  # one pass: each pass shuffles anew
    x = np.concatenate([b["x"].numpy() for b in batches])
    y = np.concatenate([b["y"].numpy() for b in batches]).reshape(-1)
    logits = x @ weights + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    # The tutorial's loss is the mean of batch means, weighted by batch size: the mean over examples.
    loss = -np.mean(np.log(probabilities[np.arange(len(y)), y]))
    accuracy = np.mean(np.argmax(logits, axis=1) == y)
    return len(y), loss, accuracy


EVALUATION_NEXT_SIGNATURE = """(<
  state=<
    global_model_weights=<
      trainable=<
        float32[784,10],
        float32[10]
      >,
      non_trainable=<>
    >,
    distributor=<>,
    client_work=<
      <>,
      <
        num_examples=<
          float32
        >,
        loss=<
          float32,
          float32
        >,
        accuracy=<
          float32,
          float32
        >
      >
    >,
    aggregator=<
      value_sum_process=<>,
      weight_sum_process=<>
    >,
    finalizer=<>
  >@SERVER,
  client_data={<
    x=float32[?,784],
    y=int32[?,1]
  >*}@CLIENTS
> -> <
  state=<
    global_model_weights=<
      trainable=<
        float32[784,10],
        float32[10]
      >,
      non_trainable=<>
    >,
    distributor=<>,
    client_work=<
      <>,
      <
        num_examples=<
          float32
        >,
        loss=<
          float32,
          float32
        >,
        accuracy=<
          float32,
          float32
        >
      >
    >,
    aggregator=<
      value_sum_process=<>,
      weight_sum_process=<>
    >,
    finalizer=<>
  >@SERVER,
  metrics=<
    distributor=<>,
    client_work=<
      eval=<
        current_round_metrics=<
          num_examples=float32,
          loss=float32,
          accuracy=float32
        >,
        total_rounds_metrics=<
          num_examples=float32,
          loss=float32,
          accuracy=float32
        >
      >
    >,
    aggregator=<
      mean_value=<>,
      mean_weight=<>
    >,
    finalizer=<>
  >@SERVER
>)
"""


def test_evaluation(mnist_training, capsys):
    training_process, train_state, _, all_metrics = mnist_training

    evaluation_process = tff.learning.algorithms.build_fed_eval(MnistModel)

    print(evaluation_process.next.type_signature.formatted_representation())
    assert capsys.readouterr().out == EVALUATION_NEXT_SIGNATURE

    evaluation_state = evaluation_process.initialize()
    model_weights = training_process.get_model_weights(train_state)
    evaluation_state = evaluation_process.set_model_weights(evaluation_state, model_weights)

    evaluation_output = evaluation_process.next(evaluation_state, federated_train_data)

    printed = str(evaluation_output.metrics)
    assert printed.startswith(
        "OrderedDict([('distributor', ()), ('client_work', OrderedDict([('eval', OrderedDict(["
        "('current_round_metrics', OrderedDict([('num_examples', "
    )
    assert printed.endswith(
        "('aggregator', OrderedDict([('mean_value', ()), ('mean_weight', ())])), ('finalizer', ())])"
    )
    train_eval = evaluation_output.metrics["client_work"]["eval"]["current_round_metrics"]
    num_examples, loss, accuracy = _central_metrics(model_weights, federated_train_data)
    assert train_eval["num_examples"] == num_examples == NUM_CLIENTS * TRAIN_PER_CLIENT * NUM_EPOCHS
    assert train_eval["loss"] == pytest.approx(loss, rel=1e-4)
    assert train_eval["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # "the evaluation metrics will always be one step ahead" of the last round's training metrics.
    assert train_eval["loss"] < all_metrics[-1]["client_work"]["train"]["loss"]

    federated_test_data = make_federated_data(emnist_test, sample_clients)

    assert len(federated_test_data) == 10 and str(federated_test_data[0]) == DATASET_REPR

    evaluation_output = evaluation_process.next(evaluation_state, federated_test_data)

    test_eval = evaluation_output.metrics["client_work"]["eval"]
    num_examples, loss, accuracy = _central_metrics(model_weights, federated_test_data)
    assert test_eval["current_round_metrics"]["num_examples"] == num_examples
    assert num_examples == NUM_CLIENTS * TEST_PER_CLIENT * NUM_EPOCHS
    assert test_eval["current_round_metrics"]["loss"] == pytest.approx(loss, rel=1e-4)
    assert test_eval["current_round_metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # Evaluated from the same state, so the totals are this round's alone.
    assert test_eval["total_rounds_metrics"] == test_eval["current_round_metrics"]
