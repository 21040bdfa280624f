"""TFF's tutorial "Private Heavy Hitters", run with `import fed as tff`: client text is tokenized with
tensorflow-text, and `tff.analytics.heavy_hitters.iblt.build_iblt_computation` finds the most frequent
words over ten clients, first the top ten, then all of them with central differential privacy (Laplace
noise and a threshold) added on the server.

Changed from the notebook:
- the notebook imports `federated_language` beside `tensorflow_federated`; fed has those names at its
  top level, so `import fed as federated_language` stands in for it;
- federated Shakespeare (a download) is a stand-in `ClientData` of ten speaking characters with its
  element structure (`snippets`, a scalar string), whose lines are made so that every word's count is
  known: each client says a word at most once per line, the eight common words reach 10, 9, ..., 3
  clients, 'tear' 2 and 'sleep' 1, mixed case and punctuation-only tokens test the notebook's
  `tokenize`, and the first client says 'pumpkin' less often than its eight other words, so the
  `max_words_per_user = 8` cap leaves it out.
The `!pip` cell is skipped; the tests are skipped where tensorflow-text is not installed.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed as federated_language
import fed as tff

tf_text = pytest.importorskip("tensorflow_text")

# The words of the stand-in, by the number of clients that say them.
COMMON_WORDS = ["the", "to", "and", "you", "i", "a", "he", "your"]
EXPECTED_COUNTS = {word: 10 - k for k, word in enumerate(COMMON_WORDS)} | {"tear": 2, "sleep": 1}


def load_shakespeare_stand_in():
    """(train, test) ClientData with federated Shakespeare's element structure, ten characters."""
    characters = [
        "THE_TEMPEST_PROSPERO",
        "THE_TEMPEST_MIRANDA",
        "HAMLET_PRINCE_OF_DENMARK_HORATIO",
        "HAMLET_PRINCE_OF_DENMARK_OPHELIA",
        "AS_YOU_LIKE_IT_JAQUES",
        "AS_YOU_LIKE_IT_ROSALIND",
        "THE_TRAGEDY_OF_KING_LEAR_KING",
        "THE_TRAGEDY_OF_KING_LEAR_CORDELIA",
        "MACBETH_MACBETH",
        "MACBETH_LADY_MACBETH",
    ]
    snippets = {}
    for j, character in enumerate(characters):
        # Client j says the common words that reach more than j clients; capitalised on one line, with
        # punctuation-only tokens that the notebook's `tokenize` drops.
        words = [word for k, word in enumerate(COMMON_WORDS) if 10 - k > j]
        lines = [" ".join(words).capitalize() + " --", "! " + " ".join(words).upper()]
        if j == 0:
            lines.append("pumpkin ?")
        if j >= 8:
            lines.append("tear")
        if j == 9:
            lines.append("sleep")
        snippets[character] = collections.OrderedDict(snippets=lines)
    client_data = tff.simulation.datasets.TestClientData
    return client_data(snippets), client_data(
        {c: collections.OrderedDict(snippets=[""]) for c in characters}
    )


@pytest.fixture(scope="module", autouse=True)
def environment_setup():
    # The notebook's setup cell, for this module's tests only.
    np.random.seed(0)
    tff.backends.test.set_sync_test_cpp_execution_context()
    yield
    tff.backends.native.set_sync_local_cpp_execution_context()


def test_environment_setup():
    assert federated_language.federated_computation(lambda: "Hello, World!")() in (
        "Hello, World!",
        b"Hello, World!",
    )


# Load the simulation data.
source, _ = load_shakespeare_stand_in()


# Preprocessing function to tokenize a line into words.
def tokenize(ds):
    """Tokenizes a line into words with alphanum characters."""

    def extract_strings(example):
        return tf.expand_dims(example["snippets"], 0)

    def tokenize_line(line):
        return tf.data.Dataset.from_tensor_slices(tokenizer.tokenize(line)[0])

    def mask_all_symbolic_words(word):
        return tf.math.logical_not(tf_text.wordshape(word, tf_text.WordShape.IS_PUNCT_OR_SYMBOL))

    tokenizer = tf_text.WhitespaceTokenizer()
    ds = ds.map(extract_strings)
    ds = ds.flat_map(tokenize_line)
    ds = ds.map(tf_text.case_fold_utf8)
    ds = ds.filter(mask_all_symbolic_words)
    return ds


batch_size = 5


def client_data(n: int) -> tf.data.Dataset:
    return tokenize(source.create_tf_dataset_for_client(source.client_ids[n])).batch(batch_size)


# Pick a subset of client devices to participate in the computation.
dataset = [client_data(n) for n in range(10)]


def test_load_and_preprocess_the_data():
    assert len(source.client_ids) == 10
    # Lower-cased words, punctuation dropped, in batches of five.
    first = [word.decode() for batch in dataset[0] for word in batch.numpy()]
    assert first == COMMON_WORDS + COMMON_WORDS + ["pumpkin"]
    assert [len(batch) for batch in dataset[0]] == [5, 5, 5, 2]
    last = [word.decode() for batch in dataset[9] for word in batch.numpy()]
    assert last == ["the", "the", "tear", "sleep"]


max_words_per_user = 8


def run_simulation(one_round_computation: federated_language.Computation, dataset):
    output = one_round_computation(dataset)
    heavy_hitters = output.heavy_hitters
    heavy_hitters_counts = output.heavy_hitters_counts
    heavy_hitters = [word.decode("utf-8", "ignore") for word in heavy_hitters]

    results = {}
    for index in range(len(heavy_hitters)):
        results[heavy_hitters[index]] = heavy_hitters_counts[index]
    return output.clients, dict(results)


def test_simulations(capsys):
    iblt_computation = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=100,
        string_max_bytes=20,
        max_words_per_user=max_words_per_user,
        max_heavy_hitters=10,
        secure_sum_bitwidth=32,
        multi_contribution=False,
        batch_size=batch_size,
    )

    clients, result = run_simulation(iblt_computation, dataset)
    print(f"Number of clients participated: {clients}")
    print("Discovered heavy hitters and counts:")
    print(result)

    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == [
        "Number of clients participated: 10",
        "Discovered heavy hitters and counts:",
    ]
    # Each client counts once per word, and the first client's ninth word, 'pumpkin', is cut by the cap.
    assert {word: int(count) for word, count in result.items()} == EXPECTED_COUNTS
    # Heavy hitters come most frequent first.
    assert list(result) == sorted(EXPECTED_COUNTS, key=EXPECTED_COUNTS.get, reverse=True)


def test_private_heavy_hitters_with_differential_privacy(capsys):
    iblt_computation = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=100,
        string_max_bytes=20,
        max_words_per_user=max_words_per_user,
        secure_sum_bitwidth=32,
        multi_contribution=False,
        batch_size=batch_size,
    )

    clients, result = run_simulation(iblt_computation, dataset)
    assert clients == 10
    assert {word: int(count) for word, count in result.items()} == EXPECTED_COUNTS

    # DP parameters
    eps = 20
    delta = 0.01

    # Calculating scale for Laplace noise
    scale = max_words_per_user / eps

    # Calculating the threshold
    tau = 1 + (max_words_per_user / eps) * np.log(max_words_per_user / (2 * delta))

    result_with_dp = {}
    for word in result:
        noised_count = result[word] + np.random.laplace(scale=scale)
        if noised_count >= tau:
            result_with_dp[word] = int(noised_count)
    print("Discovered heavy hitters and counts with central DP:")
    print(result_with_dp)

    assert capsys.readouterr().out.startswith(
        "Discovered heavy hitters and counts with central DP:\n"
    )
    assert tau == pytest.approx(3.3966, abs=1e-4)
    # Noise of scale 0.4 keeps the frequent words (counts 10 to 6) above the threshold of about 3.4 and
    # the rare ones ('tear', 'sleep') below it; the reported counts stay near the true ones.
    assert set(COMMON_WORDS[:5]) <= set(result_with_dp) <= set(COMMON_WORDS)
    for word, count in result_with_dp.items():
        assert count >= int(tau)
        assert abs(count - EXPECTED_COUNTS[word]) <= 3
