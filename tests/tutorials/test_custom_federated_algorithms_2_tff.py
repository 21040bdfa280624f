"""TFF's tutorial "Custom Federated Algorithms, Part 2: Implementing Federated Averaging", its code as the
notebook writes it, run with `import fed as tff` and `import fed as federated_language` (fed has the
federated language's names at its top level).

Changed from the notebook: MNIST (a download) is replaced by an offline stand-in with the same arrays
(`uint8` images of 28x28 with bright ink on a dark background, `uint8` labels), made from fed's bundled 8x8
handwritten digits, and each of the ten clients holds 40 examples in batches of 20 instead of 1000 in
batches of 100; the image is drawn with matplotlib's Agg backend. Every change is marked `# Changed:`.
The tests assert what the notebook shows: the types in compact notation, the loss of the zero model
(ln 10 per batch), that local training lowers the loss on the client's own data and raises it on another
client's, and that federated training lowers the federated loss round after round and on the test data.
"""

import collections
import math

import matplotlib
import numpy as np
import pytest
import tensorflow as tf

import fed as federated_language  # Changed: `import federated_language`.
import fed as tff  # Changed: `import tensorflow_federated as tff`.

matplotlib.use("Agg")  # Changed: no display.


@federated_language.federated_computation
def hello_world():
    return "Hello, World!"


def test_hello_world():
    assert hello_world() == b"Hello, World!"


def load_mnist_stand_in():  # Changed: MNIST's arrays, made offline from 8x8 digits.
    pixels, labels = tff.simulation.datasets.digits.load_arrays()
    images = np.pad(np.kron(pixels, np.ones((1, 3, 3), np.float32)), ((0, 0), (2, 2), (2, 2)))
    images = np.round(images * 255.0).astype(np.uint8)
    labels = labels.astype(np.uint8)
    return (images[:1500], labels[:1500]), (images[1500:], labels[1500:])


mnist_train, mnist_test = load_mnist_stand_in()  # Changed: tf.keras.datasets.mnist.load_data()


def test_the_data_is_numpy_arrays_of_images_and_labels():
    shapes = [(x.dtype, x.shape) for x in mnist_train]
    assert shapes == [(np.dtype("uint8"), (1500, 28, 28)), (np.dtype("uint8"), (1500,))]


NUM_EXAMPLES_PER_USER = 40  # Changed: 1000.
BATCH_SIZE = 20  # Changed: 100.


def get_data_for_digit(source, digit):
    output_sequence = []
    all_samples = [i for i, d in enumerate(source[1]) if d == digit]
    for i in range(0, min(len(all_samples), NUM_EXAMPLES_PER_USER), BATCH_SIZE):
        batch_samples = all_samples[i : i + BATCH_SIZE]
        output_sequence.append(
            {
                "x": np.array(
                    [source[0][i].flatten() / 255.0 for i in batch_samples],
                    dtype=np.float32,
                ),
                "y": np.array([source[1][i] for i in batch_samples], dtype=np.int32),
            }
        )
    return output_sequence


federated_train_data = [get_data_for_digit(mnist_train, d) for d in range(10)]

federated_test_data = [get_data_for_digit(mnist_test, d) for d in range(10)]


def test_each_client_holds_one_digit():
    assert federated_train_data[5][-1]["y"].tolist() == [5] * BATCH_SIZE
    assert [len(batches) for batches in federated_train_data] == [2] * 10


def test_show_an_image():
    from matplotlib import pyplot as plt

    plt.imshow(federated_train_data[5][-1]["x"][-1].reshape(28, 28), cmap="gray")
    plt.grid(False)
    plt.show()
    assert plt.gca().images[0].get_array().shape == (28, 28)
    plt.close("all")


BATCH_SPEC = collections.OrderedDict(
    x=tf.TensorSpec(shape=[None, 784], dtype=tf.float32),
    y=tf.TensorSpec(shape=[None], dtype=tf.int32),
)
BATCH_TYPE = tff.tensorflow.to_type(BATCH_SPEC)


def test_batch_type():
    assert str(BATCH_TYPE) == "<x=float32[?,784],y=int32[?]>"


MODEL_SPEC = collections.OrderedDict(
    weights=tf.TensorSpec(shape=[784, 10], dtype=tf.float32),
    bias=tf.TensorSpec(shape=[10], dtype=tf.float32),
)
MODEL_TYPE = tff.tensorflow.to_type(MODEL_SPEC)


def test_model_type(capsys):
    print(MODEL_TYPE)
    assert capsys.readouterr().out == "<weights=float32[784,10],bias=float32[10]>\n"


# NOTE: `forward_pass` is defined separately from `batch_loss` so that it can
# be later called from within another tf.function. Necessary because a
# @tf.function  decorated method cannot invoke a @tff.tensorflow.computation.


@tf.function
def forward_pass(model, batch):
    predicted_y = tf.nn.softmax(tf.matmul(batch["x"], model["weights"]) + model["bias"])
    return -tf.reduce_mean(
        tf.reduce_sum(tf.one_hot(batch["y"], 10) * tf.math.log(predicted_y), axis=[1])
    )


@tff.tensorflow.computation(MODEL_TYPE, BATCH_TYPE)
def batch_loss(model, batch):
    return forward_pass(model, batch)


initial_model = collections.OrderedDict(
    weights=np.zeros([784, 10], dtype=np.float32),
    bias=np.zeros([10], dtype=np.float32),
)

sample_batch = federated_train_data[5][-1]


def test_batch_loss():
    assert str(batch_loss.type_signature) == (
        "(<model=<weights=float32[784,10],bias=float32[10]>,batch=<x=float32[?,784],y=int32[?]>>"
        " -> float32)"
    )
    # The zero model predicts 1/10 for every digit.
    assert batch_loss(initial_model, sample_batch) == pytest.approx(math.log(10), rel=1e-6)


@tff.tensorflow.computation(MODEL_TYPE, BATCH_TYPE, np.float32)
def batch_train(initial_model, batch, learning_rate):
    # Define a group of model variables and set them to `initial_model`. Must
    # be defined outside the @tf.function.
    model_vars = collections.OrderedDict(
        [
            (name, tf.Variable(name=name, initial_value=value))
            for name, value in initial_model.items()
        ]
    )
    # Changed: Keras 3 takes a tensor learning rate only through a callable.
    optimizer = tf.keras.optimizers.SGD(lambda: learning_rate)

    @tf.function
    def _train_on_batch(model_vars, batch):
        # Perform one step of gradient descent using loss from `batch_loss`.
        with tf.GradientTape() as tape:
            loss = forward_pass(model_vars, batch)
        grads = tape.gradient(loss, model_vars)
        optimizer.apply_gradients(zip(tf.nest.flatten(grads), tf.nest.flatten(model_vars)))
        return model_vars

    return _train_on_batch(model_vars, batch)


def test_batch_train():
    assert str(batch_train.type_signature) == (
        "(<initial_model=<weights=float32[784,10],bias=float32[10]>,"
        "batch=<x=float32[?,784],y=int32[?]>,learning_rate=float32>"
        " -> <weights=float32[784,10],bias=float32[10]>)"
    )
    model = initial_model
    losses = []
    for _ in range(5):
        model = batch_train(model, sample_batch, 0.1)
        losses.append(batch_loss(model, sample_batch))

    assert all(later < earlier for earlier, later in zip([math.log(10)] + losses, losses))
    # One SGD step by hand from the zero model: softmax is uniform, so the gradient of the mean
    # cross-entropy is x^T (1/10 - one_hot(y)) / n.
    x, y = sample_batch["x"], sample_batch["y"]
    grad_logits = (np.full((len(y), 10), 0.1) - np.eye(10)[y]) / len(y)
    one_step = batch_train(initial_model, sample_batch, 0.1)
    np.testing.assert_allclose(one_step["weights"], -0.1 * x.T @ grad_logits, atol=1e-6)
    np.testing.assert_allclose(one_step["bias"], -0.1 * grad_logits.sum(axis=0), atol=1e-6)


LOCAL_DATA_TYPE = federated_language.SequenceType(BATCH_TYPE)


@federated_language.federated_computation(MODEL_TYPE, np.float32, LOCAL_DATA_TYPE)
def local_train(initial_model, learning_rate, all_batches):
    # Reduction function to apply to each batch.
    @federated_language.federated_computation((MODEL_TYPE, np.float32), BATCH_TYPE)
    def batch_fn(model_with_lr, batch):
        model, lr = model_with_lr
        return batch_train(model, batch, lr), lr

    trained_model, _ = federated_language.sequence_reduce(
        all_batches, (initial_model, learning_rate), batch_fn
    )
    return trained_model


def test_local_train_type():
    assert str(local_train.type_signature) == (
        "(<initial_model=<weights=float32[784,10],bias=float32[10]>,learning_rate=float32,"
        "all_batches=<x=float32[?,784],y=int32[?]>*> -> <weights=float32[784,10],bias=float32[10]>)"
    )


@pytest.fixture(scope="module")
def locally_trained_model():
    locally_trained_model = local_train(initial_model, 0.1, federated_train_data[5])
    return locally_trained_model


def test_local_train_is_batch_train_over_the_batches(locally_trained_model):
    model = initial_model
    for batch in federated_train_data[5]:
        model = batch_train(model, batch, 0.1)
    for name in ("weights", "bias"):
        np.testing.assert_allclose(locally_trained_model[name], model[name], atol=1e-6)


@federated_language.federated_computation(MODEL_TYPE, LOCAL_DATA_TYPE)
def local_eval(model, all_batches):
    @tff.tensorflow.computation((MODEL_TYPE, np.float32), BATCH_TYPE)
    def accumulate_evaluation(model_and_accumulator, batch):
        model, accumulator = model_and_accumulator
        return model, accumulator + batch_loss(model, batch)

    _, total_loss = federated_language.sequence_reduce(
        all_batches, (model, 0.0), accumulate_evaluation
    )
    return total_loss


def test_local_eval_type():
    assert str(local_eval.type_signature) == (
        "(<model=<weights=float32[784,10],bias=float32[10]>,"
        "all_batches=<x=float32[?,784],y=int32[?]>*> -> float32)"
    )


def test_local_training_helps_its_own_client(locally_trained_model, capsys):
    print("initial_model loss =", local_eval(initial_model, federated_train_data[5]))
    print(
        "locally_trained_model loss =",
        local_eval(locally_trained_model, federated_train_data[5]),
    )

    initial_line, trained_line = capsys.readouterr().out.splitlines()
    initial_loss = float(initial_line.removeprefix("initial_model loss = "))
    trained_loss = float(trained_line.removeprefix("locally_trained_model loss = "))
    # Summed over the client's two batches, ln 10 each.
    assert initial_loss == pytest.approx(2 * math.log(10), rel=1e-6)
    assert trained_loss < initial_loss / 2


def test_local_training_hurts_another_client(locally_trained_model, capsys):
    print("initial_model loss =", local_eval(initial_model, federated_train_data[0]))
    print(
        "locally_trained_model loss =",
        local_eval(locally_trained_model, federated_train_data[0]),
    )

    initial_line, trained_line = capsys.readouterr().out.splitlines()
    initial_loss = float(initial_line.removeprefix("initial_model loss = "))
    trained_loss = float(trained_line.removeprefix("locally_trained_model loss = "))
    assert initial_loss == pytest.approx(2 * math.log(10), rel=1e-6)
    assert trained_loss > initial_loss


SERVER_MODEL_TYPE = federated_language.FederatedType(MODEL_TYPE, federated_language.SERVER)
CLIENT_DATA_TYPE = federated_language.FederatedType(LOCAL_DATA_TYPE, federated_language.CLIENTS)


@federated_language.federated_computation(SERVER_MODEL_TYPE, CLIENT_DATA_TYPE)
def federated_eval(model, data):
    return federated_language.federated_mean(
        federated_language.federated_map(
            local_eval, [federated_language.federated_broadcast(model), data]
        )
    )


def test_federated_eval(locally_trained_model):
    initial_loss = federated_eval(initial_model, federated_train_data)
    trained_loss = federated_eval(locally_trained_model, federated_train_data)
    assert initial_loss == pytest.approx(2 * math.log(10), rel=1e-6)
    per_client = [local_eval(locally_trained_model, data) for data in federated_train_data]
    assert trained_loss == pytest.approx(np.mean(per_client), rel=1e-5)
    # Trained on fives only, the model is worse for everyone else.
    assert trained_loss > initial_loss


SERVER_FLOAT_TYPE = federated_language.FederatedType(np.float32, federated_language.SERVER)


@federated_language.federated_computation(SERVER_MODEL_TYPE, SERVER_FLOAT_TYPE, CLIENT_DATA_TYPE)
def federated_train(model, learning_rate, data):
    return federated_language.federated_mean(
        federated_language.federated_map(
            local_train,
            [
                federated_language.federated_broadcast(model),
                federated_language.federated_broadcast(learning_rate),
                data,
            ],
        )
    )


def test_federated_training(capsys):
    model = initial_model
    learning_rate = 0.1
    for round_num in range(5):
        model = federated_train(model, learning_rate, federated_train_data)
        learning_rate = learning_rate * 0.9
        loss = federated_eval(model, federated_train_data)
        print("round {}, loss={}".format(round_num, loss))  # noqa: UP032

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"round {i}" for i in range(5)]
    round_losses = [float(line.split("loss=")[1]) for line in lines]
    assert all(
        later < earlier for earlier, later in zip([2 * math.log(10)] + round_losses, round_losses)
    )

    print(
        "initial_model test loss =",
        federated_eval(initial_model, federated_test_data),
    )
    print("trained_model test loss =", federated_eval(model, federated_test_data))

    initial_line, trained_line = capsys.readouterr().out.splitlines()
    initial_test_loss = float(initial_line.removeprefix("initial_model test loss = "))
    trained_test_loss = float(trained_line.removeprefix("trained_model test loss = "))
    expected_initial = np.mean([len(batches) * math.log(10) for batches in federated_test_data])
    assert initial_test_loss == pytest.approx(expected_initial, rel=1e-6)
    assert trained_test_loss < initial_test_loss
