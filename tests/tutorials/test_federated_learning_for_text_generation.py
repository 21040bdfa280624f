"""TFF's tutorial "Federated Learning for Text Generation", run with `import fed as tff`: a character-level
GRU language model, pre-trained elsewhere, is evaluated with Keras on Shakespeare, wrapped with
`tff.learning.models.from_keras_model`, fine-tuned with `build_weighted_fed_avg` starting from the
pre-trained weights (`set_model_weights`), evaluated again through `get_model_weights(...)
.assign_weights_to(keras_model)`, and used to generate text.

Changed from the notebook:
- `load_model` downloads no file: it builds a Keras model of the downloaded one's structure (an
  `Embedding`, a stateful `GRU` returning sequences, a `Dense` layer of logits over the vocabulary, for a
  fixed batch size) with smaller widths (8 and 32 for 256 and 1024), and gives it weights "pre-trained"
  here by a few epochs of Keras `fit` on the stand-in text;
- federated Shakespeare (a download) is a stand-in `ClientData` with its element structure
  (`snippets`, a scalar string) and the client ids the notebook names, whose lines come from
  `tff.simulation.datasets.shakespeare.get_synthetic()`;
- sizes shrink: `SEQ_LENGTH = 20` (100), 50 generated characters (200), 3 rounds (5);
- two lines the notebook wrote for Keras 2 take their Keras 3 spelling, as TensorFlow 2.21 requires:
  Keras 3 models have no `reset_states()`, so `generate_text` resets each stateful layer's states, and
  `FlattenedCategoricalAccuracy` is registered with `tf.keras.utils.register_keras_serializable()`,
  since Keras 3's `clone_model` of a compiled model (as `create_tff_model` does) rebuilds its metrics
  from their configs.
The notebook's `FlattenedCategoricalAccuracy` reshapes logits to `[-1, len(vocab), 1]`, so Keras takes
its argmax over an axis of size 1 and the "accuracy" counts targets equal to vocabulary index 0; the
checks therefore compare losses. Each test checks what the notebook prints or claims: the data's
element spec, loss on Shakespeare well below loss on random characters, the training metrics' layout, the
pre-trained weights reaching the server state, training loss falling round by round, and generated text
continuing the prompt.
"""

import collections
import functools  # noqa: F401  (imported by the notebook)
import os
import time  # noqa: F401  (imported by the notebook)

import numpy as np
import pytest
import tensorflow as tf

import fed as tff

np.random.seed(0)

# Test that fed is working:
assert tff.tensorflow_computation(lambda: "Hello, World!")() == b"Hello, World!"

# A fixed vocabularly of ASCII chars that occur in the works of Shakespeare and Dickens:
vocab = list(
    "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r"
)

# Creating a mapping from unique characters to indices
char2idx = {u: i for i, u in enumerate(vocab)}
idx2char = np.array(vocab)

# -- offline stand-ins for the notebook's downloads ------------------------------------------------------

CLIENT_IDS = [
    "THE_TRAGEDY_OF_KING_LEAR_KING",
    "ALL_S_WELL_THAT_ENDS_WELL_CELIA",
    "MUCH_ADO_ABOUT_NOTHING_OTHELLO",
]


def _synthetic_lines():
    synthetic = tff.simulation.datasets.shakespeare.get_synthetic()
    return [
        x["snippets"].numpy().decode()
        for client_id in synthetic.client_ids
        for x in synthetic.create_tf_dataset_for_client(client_id)
    ]


def load_shakespeare_stand_in():
    """(train, test) ClientData with federated Shakespeare's element structure and client ids."""
    lines = _synthetic_lines()
    train, test = {}, {}
    for i, client_id in enumerate(CLIENT_IDS):
        # Each character speaks the synthetic lines a few times over, from its own starting line.
        spoken = [lines[(i + j) % len(lines)] for j in range(4 * len(lines))]
        if client_id.endswith("LEAR_KING"):
            spoken = ["", "What?"] + spoken  # the notebook prints these first two snippets
        train[client_id] = collections.OrderedDict(snippets=spoken)
        test[client_id] = collections.OrderedDict(snippets=spoken[::-1])
    client_data = tff.simulation.datasets.TestClientData
    return client_data(train), client_data(test)


def _build_char_rnn(batch_size):
    """The structure of the notebook's downloaded model, with smaller widths."""
    return tf.keras.Sequential(
        [
            tf.keras.Input(batch_shape=(batch_size, None), dtype="int64"),
            tf.keras.layers.Embedding(len(vocab), 8),
            tf.keras.layers.GRU(
                32, return_sequences=True, stateful=True, recurrent_initializer="glorot_uniform"
            ),
            tf.keras.layers.Dense(len(vocab)),
        ]
    )


def _pretrain():
    """Weights for `load_model`: a few epochs of Keras training on the stand-in text."""
    text = "\n".join(_synthetic_lines() * 4)
    ids = np.array([char2idx[c] for c in text], np.int64)
    seq = 21
    n = (len(ids) // seq // 8) * 8
    chunks = ids[: n * seq].reshape(n, seq)
    model = _build_char_rnn(8)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(0.02),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(chunks[:, :-1], chunks[:, 1:], batch_size=8, epochs=15, shuffle=False, verbose=0)
    return [v.numpy() for v in model.weights]


PRE_TRAINED_WEIGHTS = _pretrain()


def load_model(batch_size):
    """Stands for the notebook's download of the pre-trained model for `batch_size`."""
    urls = {
        1: "https://storage.googleapis.com/tff-models-public/dickens_rnn.batch1.kerasmodel",
        8: "https://storage.googleapis.com/tff-models-public/dickens_rnn.batch8.kerasmodel",
    }
    assert batch_size in urls, "batch_size must be in " + str(urls.keys())
    assert os.path.basename(urls[batch_size]).endswith(".kerasmodel")
    model = _build_char_rnn(batch_size)
    model.set_weights(PRE_TRAINED_WEIGHTS)
    return model


# -- the notebook ---------------------------------------------------------------------------------------


def generate_text(model, start_string):
    # From https://www.tensorflow.org/tutorials/sequences/text_generation
    num_generate = 50
    input_eval = [char2idx[s] for s in start_string]
    input_eval = tf.expand_dims(input_eval, 0)
    text_generated = []
    temperature = 1.0

    # Keras 3 spelling of the notebook's `model.reset_states()`.
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()
    for i in range(num_generate):  # noqa: B007
        predictions = model(input_eval)
        predictions = tf.squeeze(predictions, 0)
        predictions = predictions / temperature
        predicted_id = tf.random.categorical(predictions, num_samples=1)[-1, 0].numpy()
        input_eval = tf.expand_dims([predicted_id], 0)
        text_generated.append(idx2char[predicted_id])

    return start_string + "".join(text_generated)


# Text generation requires a batch_size=1 model.
keras_model_batch1 = load_model(batch_size=1)

train_data, test_data = load_shakespeare_stand_in()

# Input pre-processing parameters
SEQ_LENGTH = 20
BATCH_SIZE = 8
BUFFER_SIZE = 100  # For dataset shuffling

# Construct a lookup table to map string chars to indexes,
# using the vocab loaded above:
table = tf.lookup.StaticHashTable(
    tf.lookup.KeyValueTensorInitializer(
        keys=vocab, values=tf.constant(list(range(len(vocab))), dtype=tf.int64)
    ),
    default_value=0,
)


def to_ids(x):
    s = tf.reshape(x["snippets"], shape=[1])
    chars = tf.strings.bytes_split(s).values
    ids = table.lookup(chars)
    return ids


def split_input_target(chunk):
    input_text = tf.map_fn(lambda x: x[:-1], chunk)
    target_text = tf.map_fn(lambda x: x[1:], chunk)
    return (input_text, target_text)


def preprocess(dataset):
    return (
        # Map ASCII chars to int64 indexes using the vocab
        dataset.map(to_ids)
        # Split into individual chars
        .unbatch()
        # Form example sequences of SEQ_LENGTH +1
        .batch(SEQ_LENGTH + 1, drop_remainder=True)
        # Shuffle and form minibatches
        .shuffle(BUFFER_SIZE)
        .batch(BATCH_SIZE, drop_remainder=True)
        # And finally split into (input, target) tuples,
        # each of length SEQ_LENGTH.
        .map(split_input_target)
    )


# Here the play is "The Tragedy of King Lear" and the character is "King".
raw_example_dataset = train_data.create_tf_dataset_for_client("THE_TRAGEDY_OF_KING_LEAR_KING")
example_dataset = preprocess(raw_example_dataset)


# Keras 3 spelling: `clone_model` of a compiled model rebuilds its metrics from their configs, which
# needs the custom metric class registered (Keras 2 cloned without them).
@tf.keras.utils.register_keras_serializable()
class FlattenedCategoricalAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):
    def __init__(self, name="accuracy", dtype=tf.float32):
        super().__init__(name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.reshape(y_true, [-1, 1])
        y_pred = tf.reshape(y_pred, [-1, len(vocab), 1])
        return super().update_state(y_true, y_pred, sample_weight)


BATCH_SIZE = 8  # The training and eval batch size for the rest of this tutorial.
keras_model = load_model(batch_size=BATCH_SIZE)
keras_model.compile(
    loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[FlattenedCategoricalAccuracy()],
)


# Clone the keras_model inside `create_tff_model()`, which TFF will
# call to produce a new copy of the model inside the graph that it will
# serialize. Note: we want to construct all the necessary objects we'll need
# _inside_ this method.
def create_tff_model():
    # TFF uses an `input_spec` so it knows the types and shapes
    # that your model expects.
    input_spec = example_dataset.element_spec
    keras_model_clone = tf.keras.models.clone_model(keras_model)
    return tff.learning.models.from_keras_model(
        keras_model_clone,
        input_spec=input_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[FlattenedCategoricalAccuracy()],
    )


# This command builds all the TensorFlow graphs and serializes them:
fed_avg = tff.learning.algorithms.build_weighted_fed_avg(
    model_fn=create_tff_model,
    client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.5),
)


def test_generate_text_continues_the_prompt():
    prompt = "What of TensorFlow Federated, you ask? "
    text = generate_text(keras_model_batch1, prompt)
    print(text)
    assert text.startswith(prompt)
    assert len(text) == len(prompt) + 50
    assert set(text) <= set(vocab)


def test_the_data_and_its_preprocessing():
    # To allow for future extensions, each entry x
    # is an OrderedDict with a single key 'snippets' which contains the text.
    snippets = [x["snippets"] for x in raw_example_dataset.take(2)]
    assert [s.numpy() for s in snippets] == [b"", b"What?"]
    assert snippets[0].dtype == tf.string and snippets[0].shape == ()

    print(example_dataset.element_spec)
    spec = tf.TensorSpec(shape=(8, SEQ_LENGTH), dtype=tf.int64)
    assert example_dataset.element_spec == (spec, spec)
    inputs, targets = next(iter(example_dataset))
    # The target is the input shifted by one character.
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])


def test_pre_trained_model_beats_random_guessing_on_shakespeare():
    # Confirm that loss is much lower on Shakespeare than on random data
    loss, accuracy = keras_model.evaluate(example_dataset.take(5), verbose=0)
    print("Evaluating on an example Shakespeare character: {a:3f}".format(a=accuracy))  # noqa: UP032

    # As a sanity check, we can construct some completely random data, where we expect
    # the accuracy to be essentially random:
    random_guessed_accuracy = 1.0 / len(vocab)
    print("Expected accuracy for random guessing: {a:.3f}".format(a=random_guessed_accuracy))  # noqa: UP032
    random_indexes = np.random.randint(
        low=0, high=len(vocab), size=1 * BATCH_SIZE * (SEQ_LENGTH + 1)
    )
    data = collections.OrderedDict(
        snippets=tf.constant("".join(np.array(vocab)[random_indexes]), shape=[1, 1])
    )
    random_dataset = preprocess(tf.data.Dataset.from_tensor_slices(data))
    random_loss, random_accuracy = keras_model.evaluate(random_dataset, steps=10, verbose=0)
    print("Evaluating on completely random data: {a:.3f}".format(a=random_accuracy))  # noqa: UP032

    # The metric as the notebook defines it reshapes the logits to [-1, len(vocab), 1], so Keras takes
    # the argmax over an axis of size 1 and counts targets equal to index 0; the loss is what tells
    # Shakespeare from random characters here.
    assert 0.0 <= accuracy <= 1.0 and 0.0 <= random_accuracy <= 1.0
    assert loss < 0.6 * np.log(len(vocab)) < random_loss


def test_one_round_on_one_client():
    state = fed_avg.initialize()
    result = fed_avg.next(state, [example_dataset.take(5)])
    state = result.state
    train_metrics = result.metrics["client_work"]["train"]
    print(
        "loss={l:.3f}, accuracy={a:.3f}".format(
            l=train_metrics["loss"], a=train_metrics["accuracy"]
        )
    )
    assert {"loss", "accuracy"} <= set(train_metrics)
    assert np.isfinite(train_metrics["loss"])
    assert 0.0 <= train_metrics["accuracy"] <= 1.0


def test_fine_tuning_from_the_pre_trained_weights(capsys):
    def data(client, source=train_data):
        return preprocess(source.create_tf_dataset_for_client(client)).take(5)

    clients = [
        "ALL_S_WELL_THAT_ENDS_WELL_CELIA",
        "MUCH_ADO_ABOUT_NOTHING_OTHELLO",
    ]

    train_datasets = [data(client) for client in clients]

    # We concatenate the test datasets for evaluation with Keras by creating a
    # Dataset of Datasets, and then identity flat mapping across all the examples.
    test_dataset = tf.data.Dataset.from_tensor_slices(  # noqa: F841  (unused, as in the notebook)
        [data(client, test_data) for client in clients]
    ).flat_map(lambda x: x)

    NUM_ROUNDS = 3

    # The state of the FL server, containing the model and optimization state.
    state = fed_avg.initialize()

    # Load our pre-trained Keras model weights into the global model state.
    pre_trained_weights = tff.learning.models.ModelWeights(
        trainable=[v.numpy() for v in keras_model.trainable_weights],
        non_trainable=[v.numpy() for v in keras_model.non_trainable_weights],
    )
    state = fed_avg.set_model_weights(state, pre_trained_weights)
    for got, want in zip(fed_avg.get_model_weights(state).trainable, PRE_TRAINED_WEIGHTS):
        np.testing.assert_allclose(got, want)

    def keras_evaluate(state, round_num):
        # Take our global model weights and push them back into a Keras model to
        # use its standard `.evaluate()` method.
        keras_model = load_model(batch_size=BATCH_SIZE)
        keras_model.compile(
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[FlattenedCategoricalAccuracy()],
        )
        model_weights = fed_avg.get_model_weights(state)
        model_weights.assign_weights_to(keras_model)
        loss, accuracy = keras_model.evaluate(example_dataset, steps=2, verbose=0)
        print("\tEval: loss={l:.3f}, accuracy={a:.3f}".format(l=loss, a=accuracy))  # noqa: UP032

    train_losses = []
    for round_num in range(NUM_ROUNDS):
        print("Round {r}".format(r=round_num))  # noqa: UP032
        keras_evaluate(state, round_num)
        result = fed_avg.next(state, train_datasets)
        state = result.state
        train_metrics = result.metrics["client_work"]["train"]
        print(
            "\tTrain: loss={l:.3f}, accuracy={a:.3f}".format(
                l=train_metrics["loss"], a=train_metrics["accuracy"]
            )
        )
        train_losses.append(train_metrics["loss"])

    print("Final evaluation")
    keras_evaluate(state, NUM_ROUNDS + 1)

    printed = capsys.readouterr().out
    assert printed.count("\tEval: loss=") == NUM_ROUNDS + 1
    assert printed.count("\tTrain: loss=") == NUM_ROUNDS
    assert train_losses[-1] < train_losses[0]
    # The first evaluation is of the pre-trained weights, so it matches Keras on the same model.
    first_eval_loss = float(printed.split("\tEval: loss=")[1].split(",")[0])
    assert first_eval_loss == pytest.approx(
        keras_model.evaluate(example_dataset, steps=2, verbose=0)[0], abs=0.3
    )

    # Set our newly trained weights back in the originally created model.
    keras_model_batch1.set_weights([v.numpy() for v in keras_model.weights])
    # Text generation requires batch_size=1
    prompt = "What of TensorFlow Federated, you ask? "
    assert generate_text(keras_model_batch1, prompt).startswith(prompt)
