"""TFF's tutorial "Client-efficient large-model federated learning via `federated_select` and sparse
aggregation", run with `import fed as tff`.

The tutorial builds its own tiny toy dataset in the shape of Stack Overflow examples, so nothing is
downloaded and nothing is shrunk. The only change is that the unused `import itertools` is dropped. Its
building blocks run as written: preprocessing into sparse bag-of-words batches, counting each client's
tokens and choosing the keys to select, mapping global to local token ids, training the on-device
submodel, summing `IndexedSlices` with `tff.federated_aggregate` (its printed type signature), and the
server update, select function and key computation as TensorFlow computations, and the sparse model
update with its training loop. Each test checks the tutorial's own assertions and what it prints; a round
of the sparse update is also checked against the same round computed densely, without `federated_select`.
"""

import collections
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf

import fed as tff

MAX_TOKENS_SELECTED_PER_CLIENT = 6

# There are some constraints on types
# here that will require some explicit type conversions:
#    - `tff.federated_select` requires int32
#    - `tf.SparseTensor` requires int64 indices.
TOKEN_DTYPE = np.int64
SELECT_KEY_DTYPE = np.int32

# Type for counts of token occurences.
TOKEN_COUNT_DTYPE = np.int32

# A sparse feature vector can be thought of as a map
# from TOKEN_DTYPE to FEATURE_DTYPE.
# Our features are {0, 1} indicators, so we could potentially
# use np.int8 as an optimization.
FEATURE_DTYPE = np.int32

# Dataset parsing and pre-processing.

NUM_OOV_BUCKETS = 1

BatchType = collections.namedtuple("BatchType", ["tokens", "tags"])


def build_to_ids_fn(
    word_vocab: list[str], tag_vocab: list[str]
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Constructs a function mapping examples to sequences of token indices."""
    word_table_values = np.arange(len(word_vocab), dtype=np.int64)
    word_table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(word_vocab, word_table_values),
        num_oov_buckets=NUM_OOV_BUCKETS,
    )

    tag_table_values = np.arange(len(tag_vocab), dtype=np.int64)
    tag_table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(tag_vocab, tag_table_values),
        num_oov_buckets=NUM_OOV_BUCKETS,
    )

    def to_ids(example):
        """Converts a Stack Overflow example to a bag-of-words/tags format."""
        sentence = tf.strings.join([example["tokens"], example["title"]], separator=" ")

        # We represent that label (output tags) densely.
        raw_tags = example["tags"]
        tags = tf.strings.split(raw_tags, sep="|")
        tags = tag_table.lookup(tags)
        tags, _ = tf.unique(tags)
        tags = tf.one_hot(tags, len(tag_vocab) + NUM_OOV_BUCKETS)
        tags = tf.reduce_max(tags, axis=0)

        # We represent the features as a SparseTensor of {0, 1}s.
        words = tf.strings.split(sentence)
        tokens = word_table.lookup(words)
        tokens, _ = tf.unique(tokens)
        # Note:  We could choose to use the word counts as the feature vector
        # instead of just {0, 1} values (see tf.unique_with_counts).
        tokens = tf.reshape(tokens, shape=(tf.size(tokens), 1))
        tokens_st = tf.SparseTensor(
            tokens,
            tf.ones(tf.size(tokens), dtype=FEATURE_DTYPE),
            dense_shape=(len(word_vocab) + NUM_OOV_BUCKETS,),
        )
        tokens_st = tf.sparse.reorder(tokens_st)

        return BatchType(tokens_st, tags)

    return to_ids


def build_preprocess_fn(word_vocab, tag_vocab):
    @tf.function
    def preprocess_fn(dataset):
        to_ids = build_to_ids_fn(word_vocab, tag_vocab)
        # We *don't* shuffle in order to make this colab deterministic for
        # easier testing and reproducibility.
        # But real-world training should use `.shuffle()`.
        return dataset.map(to_ids, num_parallel_calls=tf.data.experimental.AUTOTUNE)

    return preprocess_fn


# A tiny toy dataset.

# Features
FRUIT_WORDS = ["apple", "orange", "pear", "kiwi"]
VEGETABLE_WORDS = ["carrot", "broccoli", "arugula", "peas"]
FISH_WORDS = ["trout", "tuna", "cod", "salmon"]
WORD_VOCAB = FRUIT_WORDS + VEGETABLE_WORDS + FISH_WORDS

# Labels
TAG_VOCAB = ["FRUIT", "VEGETABLE", "FISH"]

preprocess_fn = build_preprocess_fn(WORD_VOCAB, TAG_VOCAB)


def make_dataset(raw):
    d = tf.data.Dataset.from_tensor_slices(
        # Matches the StackOverflow formatting
        collections.OrderedDict(
            tokens=tf.constant([t[0] for t in raw]),
            tags=tf.constant([t[1] for t in raw]),
            title=["" for _ in raw],
        )
    )
    d = preprocess_fn(d)
    return d


# 4 distinct tokens
CLIENT1_DATASET = make_dataset(
    [
        ("apple orange apple orange", "FRUIT"),
        ("carrot trout", "VEGETABLE|FISH"),
        ("orange apple", "FRUIT"),
        ("orange", "ORANGE|CITRUS"),  # 2 OOV tag
    ]
)

# 6 distinct tokens
CLIENT2_DATASET = make_dataset(
    [
        ("pear cod", "FRUIT|FISH"),
        ("arugula peas", "VEGETABLE"),
        ("kiwi pear", "FRUIT"),
        ("sturgeon", "FISH"),  # OOV word
        ("sturgeon bass", "FISH"),  # 2 OOV words
    ]
)

# A client with all possible words & tags (13 distinct tokens).
# With MAX_TOKENS_SELECTED_PER_CLIENT = 6, we won't download the model
# slices for all tokens that occur on this client.
CLIENT3_DATASET = make_dataset(
    [
        (" ".join(WORD_VOCAB + ["oovword"]), "|".join(TAG_VOCAB)),
        # Mathe the OOV token and 'salmon' occur in the largest number
        # of examples on this client:
        ("salmon oovword", "FISH|OOVTAG"),
    ]
)

NUM_WORDS = len(WORD_VOCAB)
NUM_TAGS = len(TAG_VOCAB)

WORD_VOCAB_SIZE = NUM_WORDS + NUM_OOV_BUCKETS
TAG_VOCAB_SIZE = NUM_TAGS + NUM_OOV_BUCKETS

batched_dataset1 = CLIENT1_DATASET.batch(2)
batched_dataset2 = CLIENT2_DATASET.batch(3)
batched_dataset3 = CLIENT3_DATASET.batch(2)

batch1 = next(iter(batched_dataset1))
batch2 = next(iter(batched_dataset2))
batch3 = next(iter(batched_dataset3))


def test_a_tiny_toy_dataset(capsys):
    print("Word vocab")
    for i, word in enumerate(WORD_VOCAB):
        print(f"{i:2d} {word}")

    print("\nTag vocab")
    for i, tag in enumerate(TAG_VOCAB):
        print(f"{i:2d} {tag}")

    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == ["Word vocab", " 0 apple", " 1 orange"]
    assert printed[-4:] == ["Tag vocab", " 0 FRUIT", " 1 VEGETABLE", " 2 FISH"]
    # The first batch of client 1: sparse {0, 1} features over the vocabulary plus one OOV bucket, and
    # dense multi-hot tags ('ORANGE|CITRUS' lands in the one OOV tag bucket).
    assert tuple(batch1.tokens.dense_shape.numpy()) == (2, WORD_VOCAB_SIZE)
    np.testing.assert_array_equal(batch1.tokens.indices.numpy(), [[0, 0], [0, 1], [1, 4], [1, 8]])
    np.testing.assert_array_equal(batch1.tags.numpy(), [[1, 0, 0, 0], [0, 1, 1, 0]])
    assert batch2.tags.shape == (3, TAG_VOCAB_SIZE)
    # Client 3's first batch: every word and the OOV token in one example, 'salmon' and the OOV token in
    # the other.
    assert batch3.tokens.indices.shape[0] == WORD_VOCAB_SIZE + 2


def create_logistic_model(word_vocab_size: int, vocab_tags_size: int):
    model = tf.keras.models.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=(word_vocab_size,), sparse=True),
            tf.keras.layers.Dense(
                vocab_tags_size,
                activation="sigmoid",
                kernel_initializer=tf.keras.initializers.zeros,
                # For simplicity, don't use a bias vector; this means the model
                # is a single tensor, and we only need sparse aggregation of
                # the per-token slices of the model. Generalizing to also handle
                # other model weights that are fully updated
                # (non-dense broadcast and aggregate) would be a good exercise.
                use_bias=False,
            ),
        ]
    )

    return model


def test_define_a_model_with_sparse_inputs():
    model = create_logistic_model(WORD_VOCAB_SIZE, TAG_VOCAB_SIZE)
    p = model.predict(batch1.tokens)
    print(p)
    # A zero kernel predicts 0.5 for every tag.
    np.testing.assert_array_equal(p, np.full((2, TAG_VOCAB_SIZE), 0.5, dtype=np.float32))

    model.compile(
        optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.001),
        loss=tf.keras.losses.BinaryCrossentropy(),
    )
    loss = model.train_on_batch(batch1.tokens, batch1.tags)
    assert float(np.ravel(loss)[0]) == pytest.approx(np.log(2.0), abs=1e-3)


# Building blocks for the federated computation.


@tf.function
def token_count_fn(token_counts, batch):
    """Adds counts from `batch` to the running `token_counts` sum."""
    # Sum across the batch dimension.
    flat_tokens = tf.sparse.reduce_sum(batch.tokens, axis=0, output_is_sparse=True)
    flat_tokens = tf.cast(flat_tokens, dtype=TOKEN_COUNT_DTYPE)
    return tf.sparse.add(token_counts, flat_tokens)


@tf.function
def keys_for_client(client_dataset, max_tokens_per_client):
    """Computes a set of max_tokens_per_client keys."""
    initial_token_counts = tf.SparseTensor(
        indices=tf.zeros((0, 1), dtype=TOKEN_DTYPE),
        values=tf.zeros((0,), dtype=TOKEN_COUNT_DTYPE),
        dense_shape=(WORD_VOCAB_SIZE,),
    )
    client_token_counts = client_dataset.reduce(initial_token_counts, token_count_fn)
    # Find the most-frequently occuring tokens
    tokens = tf.reshape(client_token_counts.indices, shape=(-1,))
    counts = client_token_counts.values
    perm = tf.argsort(counts, direction="DESCENDING")
    tokens = tf.gather(tokens, perm)
    counts = tf.gather(counts, perm)
    num_raw_tokens = tf.shape(tokens)[0]
    actual_num_tokens = tf.minimum(max_tokens_per_client, num_raw_tokens)
    selected_tokens = tokens[:actual_num_tokens]
    paddings = [[0, max_tokens_per_client - tf.shape(selected_tokens)[0]]]
    padded_tokens = tf.pad(selected_tokens, paddings=paddings)
    # Make sure the type is statically determined
    padded_tokens = tf.reshape(padded_tokens, shape=(max_tokens_per_client,))

    # We will pass these tokens as keys into `federated_select`, which
    # requires SELECT_KEY_DTYPE=np.int32 keys.
    padded_tokens = tf.cast(padded_tokens, dtype=SELECT_KEY_DTYPE)
    return padded_tokens, actual_num_tokens


def test_count_client_tokens_and_select_keys(capsys):
    # Simple tests
    # Create the initial zero token counts using empty tensors.
    initial_token_counts = tf.SparseTensor(
        indices=tf.zeros(shape=(0, 1), dtype=TOKEN_DTYPE),
        values=tf.zeros(shape=(0,), dtype=TOKEN_COUNT_DTYPE),
        dense_shape=(WORD_VOCAB_SIZE,),
    )

    client_token_counts = batched_dataset1.reduce(initial_token_counts, token_count_fn)
    tokens = tf.reshape(client_token_counts.indices, (-1,)).numpy()
    print("tokens:", tokens)
    np.testing.assert_array_equal(tokens, [0, 1, 4, 8])
    # The count is the number of *examples* in which the token/word
    # occurs, not the total number of occurences, since we still featurize
    # multiple occurences in the same example as a "1".
    counts = client_token_counts.values.numpy()
    print("counts:", counts)
    np.testing.assert_array_equal(counts, [2, 3, 1, 1])
    assert capsys.readouterr().out == "tokens: [0 1 4 8]\ncounts: [2 3 1 1]\n"

    # Simple test

    # Case 1: actual_num_tokens > max_tokens_per_client
    selected_tokens, actual_num_tokens = keys_for_client(batched_dataset1, 3)
    assert tf.size(selected_tokens) == 3
    assert actual_num_tokens == 3

    # Case 2: actual_num_tokens < max_tokens_per_client
    selected_tokens, actual_num_tokens = keys_for_client(batched_dataset1, 10)
    assert tf.size(selected_tokens) == 10
    assert actual_num_tokens == 4


@tf.function
def map_to_local_token_ids(client_data, client_keys):
    global_to_local = tf.lookup.StaticHashTable(
        # Note int32 -> int64 maps are not supported
        tf.lookup.KeyValueTensorInitializer(
            keys=tf.cast(client_keys, dtype=TOKEN_DTYPE),
            # Note we need to use tf.shape, not the static
            # shape client_keys.shape[0]
            values=tf.range(0, limit=tf.shape(client_keys)[0], dtype=TOKEN_DTYPE),
        ),
        # We use -1 for tokens that were not selected, which can occur for clients
        # with more than MAX_TOKENS_SELECTED_PER_CLIENT distinct tokens.
        # We will simply remove these invalid indices from the batch below.
        default_value=-1,
    )

    def to_local_ids(sparse_tokens):
        indices_t = tf.transpose(sparse_tokens.indices)
        batch_indices = indices_t[0]  # First column
        tokens = indices_t[1]  # Second column
        tokens = tf.map_fn(lambda global_token_id: global_to_local.lookup(global_token_id), tokens)
        # Remove tokens that aren't actually available (looked up as -1):
        available_tokens = tokens >= 0
        tokens = tokens[available_tokens]
        batch_indices = batch_indices[available_tokens]

        updated_indices = tf.transpose(tf.concat([[batch_indices], [tokens]], axis=0))
        st = tf.sparse.SparseTensor(
            updated_indices,
            tf.ones(tf.size(tokens), dtype=FEATURE_DTYPE),
            # Each client has at most MAX_TOKENS_SELECTED_PER_CLIENT distinct tokens.
            dense_shape=[sparse_tokens.dense_shape[0], MAX_TOKENS_SELECTED_PER_CLIENT],
        )
        st = tf.sparse.reorder(st)
        return st

    return client_data.map(lambda b: BatchType(to_local_ids(b.tokens), b.tags))


def test_map_global_tokens_to_local_tokens():
    # Simple test
    client_keys, actual_num_tokens = keys_for_client(
        batched_dataset3, MAX_TOKENS_SELECTED_PER_CLIENT
    )
    client_keys = client_keys[:actual_num_tokens]

    d = map_to_local_token_ids(batched_dataset3, client_keys)
    batch = next(iter(d))
    all_tokens = tf.gather(batch.tokens.indices, indices=1, axis=1)
    # Confirm we have local indices in the range [0, MAX):
    assert tf.math.reduce_max(all_tokens) < MAX_TOKENS_SELECTED_PER_CLIENT
    assert tf.math.reduce_max(all_tokens) >= 0


@tf.function
def slices_dataset_to_tensor(slices_dataset):
    """Convert a dataset of slices to a tensor."""
    # Use batching to gather all of the slices into a single tensor.
    d = slices_dataset.batch(MAX_TOKENS_SELECTED_PER_CLIENT, drop_remainder=False)
    iter_d = iter(d)
    tensor = next(iter_d)
    # Make sure we have consumed everything
    opt = iter_d.get_next_as_optional()
    tf.Assert(tf.logical_not(opt.has_value()), data=[""], name="CHECK_EMPTY")
    return tensor


def test_slices_dataset_to_tensor():
    # Simple test
    weights = np.random.random(size=(MAX_TOKENS_SELECTED_PER_CLIENT, TAG_VOCAB_SIZE)).astype(
        np.float32
    )
    model_slices_as_dataset = tf.data.Dataset.from_tensor_slices(weights)
    weights2 = slices_dataset_to_tensor(model_slices_as_dataset)
    np.testing.assert_array_equal(weights, weights2)


@tf.function
def client_train_fn(
    model, client_optimizer, model_slices_as_dataset, client_data, client_keys, actual_num_tokens
):
    initial_model_weights = slices_dataset_to_tensor(model_slices_as_dataset)
    assert len(model.trainable_variables) == 1
    model.trainable_variables[0].assign(initial_model_weights)

    # Only keep the "real" (unpadded) keys.
    client_keys = client_keys[:actual_num_tokens]

    client_data = map_to_local_token_ids(client_data, client_keys)

    loss_fn = tf.keras.losses.BinaryCrossentropy()
    for features, labels in client_data:
        with tf.GradientTape() as tape:
            predictions = model(features)
            loss = loss_fn(labels, predictions)
        grads = tape.gradient(loss, model.trainable_variables)
        client_optimizer.apply_gradients(zip(grads, model.trainable_variables))

    model_weights_delta = model.trainable_weights[0] - initial_model_weights
    model_weights_delta = tf.slice(model_weights_delta, begin=[0, 0], size=[actual_num_tokens, -1])
    return client_keys, model_weights_delta


def test_train_the_local_submodel():
    # Simple test
    # Note if you execute this cell a second time, you need to also re-execute
    # the preceeding cell to avoid "tf.function-decorated function tried to
    # create variables on non-first call" errors.
    on_device_model = create_logistic_model(MAX_TOKENS_SELECTED_PER_CLIENT, TAG_VOCAB_SIZE)
    client_optimizer = tf.keras.optimizers.SGD(learning_rate=0.001)
    client_keys, actual_num_tokens = keys_for_client(
        batched_dataset2, MAX_TOKENS_SELECTED_PER_CLIENT
    )

    model_slices_as_dataset = tf.data.Dataset.from_tensor_slices(
        np.zeros((MAX_TOKENS_SELECTED_PER_CLIENT, TAG_VOCAB_SIZE), dtype=np.float32)
    )

    keys, delta = client_train_fn(
        on_device_model,
        client_optimizer,
        model_slices_as_dataset,
        client_data=batched_dataset3,
        client_keys=client_keys,
        actual_num_tokens=actual_num_tokens,
    )

    print(delta)
    # Client 2 has six distinct tokens, so six keys and a (6, 4) delta, one row per selected slice.
    assert actual_num_tokens == MAX_TOKENS_SELECTED_PER_CLIENT
    np.testing.assert_array_equal(keys, client_keys)
    assert delta.shape == (MAX_TOKENS_SELECTED_PER_CLIENT, TAG_VOCAB_SIZE)
    # One step of SGD from zero weights moves every selected slice.
    assert np.all(np.any(delta.numpy() != 0.0, axis=1))
    assert np.all(np.abs(delta.numpy()) < 1e-3)


def federated_indexed_slices_sum(slice_indices, slice_values, dense_shape):
    """
    Sums IndexedSlices@CLIENTS to a dense @SERVER Tensor.

    Intermediate aggregation is performed by converting to a dense representation,
    which may not be suitable for all applications.

    Args:
      slice_indices: An IndexedSlices.indices tensor @CLIENTS.
      slice_values: An IndexedSlices.values tensor @CLIENTS.
      dense_shape: A statically known dense shape.

    Returns:
      A dense tensor placed @SERVER representing the sum of the client's
      IndexedSclies.
    """
    slices_dtype = slice_values.type_signature.member.dtype
    zero = tff.tensorflow.computation(lambda: tf.zeros(dense_shape, dtype=slices_dtype))()

    @tf.function
    def accumulate_slices(dense, client_value):
        indices, slices = client_value
        # There is no built-in way to add `IndexedSlices`, but
        # tf.convert_to_tensor is a quick way to convert to a dense representation
        # so we can add them.
        return dense + tf.convert_to_tensor(tf.IndexedSlices(slices, indices, dense_shape))

    return tff.federated_aggregate(
        (slice_indices, slice_values),
        zero=zero,
        accumulate=tff.tensorflow.computation(accumulate_slices),
        merge=tff.tensorflow.computation(lambda d1, d2: tf.add(d1, d2, name="merge")),
        report=tff.tensorflow.computation(lambda d: d),
    )


def test_aggregate_indexed_slices(capsys):
    dense_shape = (6, 2)
    indices_type = tff.TensorType(np.int64, (None,))
    values_type = tff.TensorType(np.float32, (None, 2))
    client_slice_type = tff.FederatedType((indices_type, values_type), tff.CLIENTS)

    @tff.federated_computation(client_slice_type)
    def test_sum_indexed_slices(indices_values_at_client):
        indices, values = indices_values_at_client
        return federated_indexed_slices_sum(indices, values, dense_shape)

    print(test_sum_indexed_slices.type_signature)
    assert capsys.readouterr().out == "({<int64[?],float32[?,2]>}@CLIENTS -> float32[6,2]@SERVER)\n"

    x = tf.IndexedSlices(
        values=np.array([[2.0, 2.1], [0.0, 0.1], [1.0, 1.1], [5.0, 5.1]], dtype=np.float32),
        indices=[2, 0, 1, 5],
        dense_shape=dense_shape,
    )
    y = tf.IndexedSlices(
        values=np.array([[0.0, 0.3], [3.1, 3.2]], dtype=np.float32),
        indices=[1, 3],
        dense_shape=dense_shape,
    )

    # Sum one.
    result = test_sum_indexed_slices([(x.indices, x.values)])
    np.testing.assert_array_equal(tf.convert_to_tensor(x), result)

    # Sum two.
    expected = [[0.0, 0.1], [1.0, 1.4], [2.0, 2.1], [3.1, 3.2], [0.0, 0.0], [5.0, 5.1]]
    result = test_sum_indexed_slices([(x.indices, x.values), (y.indices, y.values)])
    np.testing.assert_array_almost_equal(expected, result)


# Putting it all together in a `federated_computation`.

DENSE_MODEL_SHAPE = (WORD_VOCAB_SIZE, TAG_VOCAB_SIZE)
client_data_type = tff.SequenceType(batched_dataset1.element_spec)
model_type = tff.TensorType(np.float32, shape=DENSE_MODEL_SHAPE)


@tff.tensorflow.computation
def server_update(current_model_weights, update_sum, num_clients):
    average_update = update_sum / num_clients
    return current_model_weights + average_update


# Function to select slices from the model weights in federated_select:
select_fn = tff.tensorflow.computation(lambda model_weights, index: tf.gather(model_weights, index))


# We need to wrap `client_train_fn` as a `tff.tensorflow.computation`, making
# sure we do any operations that might construct `tf.Variable`s outside
# of the `tf.function` we are wrapping.
@tff.tensorflow.computation
def client_train_fn_tff(model_slices_as_dataset, client_data, client_keys, actual_num_tokens):
    # Note this is amaller than the global model, using
    # MAX_TOKENS_SELECTED_PER_CLIENT which is much smaller than WORD_VOCAB_SIZE.
    # We would like a model of size `actual_num_tokens`, but we
    # can't build the model dynamically, so we will slice off the padded
    # weights at the end.
    client_model = create_logistic_model(MAX_TOKENS_SELECTED_PER_CLIENT, TAG_VOCAB_SIZE)
    client_optimizer = tf.keras.optimizers.SGD(learning_rate=0.1)
    return client_train_fn(
        client_model,
        client_optimizer,
        model_slices_as_dataset,
        client_data,
        client_keys,
        actual_num_tokens,
    )


@tff.tensorflow.computation
def keys_for_client_tff(client_data):
    return keys_for_client(client_data, MAX_TOKENS_SELECTED_PER_CLIENT)


def test_building_blocks_as_tensorflow_computations():
    assert str(model_type) == "float32[13,4]"
    assert str(client_data_type) == (
        "<tokens=<indices=int64[?,2],values=int32[?],dense_shape=int64[2]>,tags=float32[?,4]>*"
    )

    # The server adds the average of the summed client updates.
    current = np.ones(DENSE_MODEL_SHAPE, dtype=np.float32)
    update_sum = np.full(DENSE_MODEL_SHAPE, 3.0, dtype=np.float32)
    np.testing.assert_allclose(
        server_update(current, update_sum, 2.0), np.full(DENSE_MODEL_SHAPE, 2.5)
    )

    # The select function picks one row (a token's slice) of the model.
    model_weights = np.arange(WORD_VOCAB_SIZE * TAG_VOCAB_SIZE, dtype=np.float32).reshape(
        DENSE_MODEL_SHAPE
    )
    np.testing.assert_array_equal(select_fn(model_weights, np.int32(4)), model_weights[4])

    # As a computation, the key selection gives what the `tf.function` gives: client 1's four tokens,
    # padded with zeros to MAX_TOKENS_SELECTED_PER_CLIENT keys.
    keys, actual_num_tokens = keys_for_client_tff(batched_dataset1)
    assert keys.dtype == np.int32
    np.testing.assert_array_equal(
        keys, keys_for_client(batched_dataset1, MAX_TOKENS_SELECTED_PER_CLIENT)[0]
    )
    assert sorted(keys[:actual_num_tokens].tolist()) == [0, 1, 4, 8]
    assert actual_num_tokens == 4


# The tutorial passes MAX_TOKENS_SELECTED_PER_CLIENT as federated_select's max_key, below some of the
# keys; fed warns about it and selects each key as asked.
select_keys_above_max_key = pytest.mark.filterwarnings(
    "ignore:federated_select.*not below max_key:UserWarning"
)


@tff.federated_computation(
    tff.FederatedType(model_type, tff.SERVER), tff.FederatedType(client_data_type, tff.CLIENTS)
)
def sparse_model_update(server_model, client_data):
    max_tokens = tff.federated_value(MAX_TOKENS_SELECTED_PER_CLIENT, tff.SERVER)
    keys_at_clients, actual_num_tokens = tff.federated_map(keys_for_client_tff, client_data)

    model_slices = tff.federated_select(keys_at_clients, max_tokens, server_model, select_fn)

    update_keys, update_slices = tff.federated_map(
        client_train_fn_tff, (model_slices, client_data, keys_at_clients, actual_num_tokens)
    )

    dense_update_sum = federated_indexed_slices_sum(update_keys, update_slices, DENSE_MODEL_SHAPE)
    num_clients = tff.federated_sum(tff.federated_value(1.0, tff.CLIENTS))

    updated_server_model = tff.federated_map(
        server_update, (server_model, dense_update_sum, num_clients)
    )

    return updated_server_model


@select_keys_above_max_key
def test_lets_train_a_model(capsys):
    print(sparse_model_update.type_signature)
    assert capsys.readouterr().out == (
        "(<server_model=float32[13,4]@SERVER,client_data={<tokens=<indices=int64[?,2],values=int32[?],"
        "dense_shape=int64[2]>,tags=float32[?,4]>*}@CLIENTS> -> float32[13,4]@SERVER)\n"
    )

    server_model = create_logistic_model(WORD_VOCAB_SIZE, TAG_VOCAB_SIZE)
    server_model.compile(  # Compile to make evaluation easy.
        optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.0),  # Unused
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=[
            tf.keras.metrics.Precision(name="precision"),
            tf.keras.metrics.AUC(name="auc"),
            tf.keras.metrics.Recall(top_k=2, name="recall_at_2"),
        ],
    )

    def evaluate(model, dataset, name):
        metrics = model.evaluate(dataset, verbose=0)
        metrics_str = ", ".join(
            [f"{k}={v:.2f}" for k, v in (zip(server_model.metrics_names, metrics))]
        )
        print(f"{name}: {metrics_str}")

    print("Before training")
    evaluate(server_model, batched_dataset1, "Client 1")
    evaluate(server_model, batched_dataset2, "Client 2")
    evaluate(server_model, batched_dataset3, "Client 3")

    model_weights = server_model.trainable_weights[0]

    client_datasets = [batched_dataset1, batched_dataset2, batched_dataset3]
    np.random.seed(0)  # The cohorts drawn below, made repeatable.
    for _ in range(10):  # Run 10 rounds of FedAvg
        # We train on 1, 2, or 3 clients per round, selecting
        # randomly.
        cohort_size = np.random.randint(1, 4)
        clients = np.random.choice([0, 1, 2], cohort_size, replace=False)
        print("Training on clients", clients)
        model_weights = sparse_model_update(model_weights, [client_datasets[i] for i in clients])
    server_model.set_weights([model_weights])

    print("After training")
    evaluate(server_model, batched_dataset1, "Client 1")
    evaluate(server_model, batched_dataset2, "Client 2")
    evaluate(server_model, batched_dataset3, "Client 3")

    printed = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("Training on clients") for line in printed) == 10
    # Every client's loss falls from log(2), where the zero model starts.
    losses = [float(line.split("loss=")[1].split(",")[0]) for line in printed if "loss=" in line]
    assert len(losses) == 6
    assert losses[:3] == [0.69, 0.69, 0.69]
    assert all(after < before for before, after in zip(losses[:3], losses[3:]))


def dense_model_update(server_model, client_datasets):
    """The round of `sparse_model_update` computed densely: each client trains the whole model, with
    SGD at the learning rate of `client_train_fn_tff`, on its data restricted to the tokens it selects;
    the server adds the mean of the clients' updates."""
    loss_fn = tf.keras.losses.BinaryCrossentropy()
    updates = []
    for dataset in client_datasets:
        keys, actual_num_tokens = keys_for_client(dataset, MAX_TOKENS_SELECTED_PER_CLIENT)
        selected = np.zeros(WORD_VOCAB_SIZE, np.float32)
        selected[keys.numpy()[: int(actual_num_tokens)]] = 1.0
        weights = tf.Variable(server_model)
        for batch in dataset:
            features = tf.cast(tf.sparse.to_dense(batch.tokens), tf.float32) * selected
            with tf.GradientTape() as tape:
                loss = loss_fn(batch.tags, tf.sigmoid(features @ weights))
            weights.assign_sub(0.1 * tape.gradient(loss, weights))
        updates.append(weights.numpy() - server_model)
    return server_model + sum(updates) / len(updates)


@select_keys_above_max_key
@pytest.mark.parametrize("clients", [[0], [2], [0, 1, 2]])
def test_the_sparse_update_equals_the_dense_computation(clients):
    rng = np.random.default_rng(len(clients))
    server_model = rng.normal(scale=0.5, size=DENSE_MODEL_SHAPE).astype(np.float32)
    datasets = [[batched_dataset1, batched_dataset2, batched_dataset3][i] for i in clients]

    sparse = sparse_model_update(server_model, datasets)
    dense = dense_model_update(server_model, datasets)

    np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-6)
    # Rows of tokens that no client selects stay as they were.
    touched = np.any(sparse != server_model, axis=1)
    assert 0 < touched.sum() <= MAX_TOKENS_SELECTED_PER_CLIENT * len(clients)
    np.testing.assert_array_equal(sparse[~touched], server_model[~touched])
