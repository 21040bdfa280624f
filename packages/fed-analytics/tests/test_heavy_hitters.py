"""IBLT sketches and the heavy-hitters computation, checked against counts made by hand in Python."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed as tff
from fed_analytics.heavy_hitters import iblt

# Ten clients' words (each client's list), as in TFF's tests of the computation.
DATA = [
    ["hello", "hey", "hi", "hi", "hi", "泡"],
    ["hello", "pumpkin", "pumpkin"],
    ["hello", "I am on my way"],
    ["hi", "pumpkin"],
    ["hello", "I am on my way"],
    ["hello", "I am on my way"],
    ["hi", "pumpkin"],
    ["hello", "I am on my way"],
    ["hi", "way"],
    ["hello", "pumpkin"],
]


def client_datasets(data=DATA, batch_size=1):
    return [tf.data.Dataset.from_tensor_slices(words).batch(batch_size) for words in data]


def as_dict(output):
    return {
        word.decode("utf-8", "ignore"): (int(unique), int(count))
        for word, unique, count in zip(
            output.heavy_hitters, output.heavy_hitters_unique_counts, output.heavy_hitters_counts
        )
    }


# -- the sketch ---------------------------------------------------------------------------------------


def _decode(strings, values, capacity, string_max_bytes=10, repetitions=3):
    sketch, table = iblt.encode(
        tf.constant(strings),
        tf.constant(values, tf.int64),
        capacity=capacity,
        string_max_bytes=string_max_bytes,
        repetitions=repetitions,
    )
    return iblt.decode(
        sketch, table, capacity=capacity, string_max_bytes=string_max_bytes, repetitions=repetitions
    )


@pytest.mark.parametrize("repetitions", [3, 4, 6])
def test_a_population_within_capacity_decodes_exactly(repetitions):
    rng = np.random.default_rng(repetitions)
    population = [f"word{i}" for i in range(200)]
    values = rng.integers(1, 50, size=200)
    strings, unique, counts, not_decoded = _decode(population, values, 200, repetitions=repetitions)
    decoded = {s.decode(): (int(u), int(c)) for s, u, c in zip(strings.numpy(), unique, counts)}
    assert decoded == {w: (1, int(v)) for w, v in zip(population, values)}
    assert int(not_decoded) == 0


def test_an_overfull_sketch_decodes_only_true_strings_and_reports_the_rest():
    population = [f"w{i}" for i in range(400)]
    strings, unique, counts, not_decoded = _decode(population, [1] * 400, capacity=100)
    decoded = [s.decode() for s in strings.numpy()]
    assert set(decoded) <= set(population)  # never a string that was not added
    assert len(decoded) < 400
    assert (
        len(decoded) + int(not_decoded) == 400
    )  # every addition is decoded or counted as left over


def test_sketches_add_modulo_the_field_and_decode_to_the_totals():
    clients = [["a", "b"], ["b", "c"], ["b"], ["ccc", "a"]]
    total_sketch, total_table = 0, 0
    for words in clients:
        sketch, table = iblt.encode(
            tf.constant(words),
            tf.constant([2] * len(words), tf.int64),
            capacity=10,
            string_max_bytes=4,
        )
        total_sketch = tf.math.floormod(total_sketch + sketch, iblt.FIELD_SIZE)
        total_table = total_table + table
    strings, unique, counts, not_decoded = iblt.decode(
        total_sketch, total_table, capacity=10, string_max_bytes=4
    )
    expected = collections.Counter(w for words in clients for w in words)
    decoded = {s.decode(): (int(u), int(c)) for s, u, c in zip(strings.numpy(), unique, counts)}
    assert decoded == {w: (n, 2 * n) for w, n in expected.items()}


def test_strings_are_cut_to_string_max_bytes_bytes_and_may_split_a_character():
    strings, _, _, _ = _decode(["七八九", "abcdef"], [1, 1], capacity=5, string_max_bytes=4)
    assert sorted(strings.numpy().tolist()) == sorted(["七八九".encode()[:4], b"abcd"])


def test_table_size_grows_with_capacity():
    assert iblt.table_size(100) == 54
    assert iblt.table_size(1000) == 458
    assert iblt.table_size(1000, repetitions=6) > iblt.table_size(100, repetitions=6)


# -- the computation ----------------------------------------------------------------------------------


def test_the_computation_finds_the_heavy_hitters_with_their_counts():
    computation = iblt.build_iblt_computation(
        capacity=100, string_max_bytes=30, max_words_per_user=10, max_heavy_hitters=4
    )
    assert str(computation.type_signature) == (
        "({str[?]*}@CLIENTS -> <clients=int32,heavy_hitters=str[?],heavy_hitters_unique_counts=int64[?],"
        "heavy_hitters_counts=int64[?],num_not_decoded=int64,round_timestamp=int64>@SERVER)"
    )
    output = computation(client_datasets())
    assert isinstance(output, iblt.ServerOutput)
    assert output.clients == 10
    assert as_dict(output) == {
        "hello": (7, 7),
        "pumpkin": (4, 5),
        "hi": (4, 6),
        "I am on my way": (4, 4),
    }
    assert list(output.heavy_hitters_counts) == sorted(output.heavy_hitters_counts, reverse=True)
    assert output.num_not_decoded == 0
    assert output.round_timestamp > 1_700_000_000


def test_k_anonymity_drops_strings_that_too_few_clients_hold():
    computation = iblt.build_iblt_computation(capacity=100, string_max_bytes=30, k_anonymity=4)
    assert set(as_dict(computation(client_datasets()))) == {
        "hello",
        "pumpkin",
        "hi",
        "I am on my way",
    }


def test_without_multi_contribution_each_client_counts_once_and_keeps_its_top_words():
    computation = iblt.build_iblt_computation(
        capacity=100, string_max_bytes=30, max_words_per_user=1, multi_contribution=False
    )
    # Each client keeps its most frequent word (the first of equals): hi, pumpkin, hello, hi, hello, ...
    expected = collections.Counter()
    for words in DATA:
        counts = collections.Counter(words)
        expected[max(counts, key=lambda w: (counts[w], -words.index(w)))] += 1
    assert as_dict(computation(client_datasets())) == {w: (n, n) for w, n in expected.items()}


def test_with_multi_contribution_a_client_reads_whole_batches_up_to_its_cap():
    computation = iblt.build_iblt_computation(
        capacity=100, string_max_bytes=30, max_words_per_user=2, batch_size=2
    )
    # One batch of two words per client: its first two words.
    expected = collections.Counter(w for words in DATA for w in words[:2])
    unique = collections.Counter(w for words in DATA for w in set(words[:2]))
    got = as_dict(computation(client_datasets(batch_size=2)))
    assert got == {w: (unique[w], n) for w, n in expected.items()}


def test_secure_sums_give_the_same_heavy_hitters():
    plain = iblt.build_iblt_computation(capacity=100, string_max_bytes=30)
    secure = iblt.build_iblt_computation(capacity=100, string_max_bytes=30, secure_sum_bitwidth=32)
    assert as_dict(secure(client_datasets())) == as_dict(plain(client_datasets()))


def test_heavy_hitters_come_back_as_bytes_even_when_cut_inside_a_character():
    computation = iblt.build_iblt_computation(capacity=10, string_max_bytes=2)
    output = computation(client_datasets([["泡", "泡"], ["泡"]]))
    assert output.heavy_hitters.tolist() == ["泡".encode()[:2]]
    assert output.heavy_hitters_counts.tolist() == [3]


def test_a_string_postprocessor_runs_on_the_server():
    computation = iblt.build_iblt_computation(
        capacity=100,
        string_max_bytes=30,
        string_postprocessor=tf.strings.upper,
        max_heavy_hitters=1,
    )
    assert computation(client_datasets()).heavy_hitters.tolist() == [b"HELLO"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"string_max_bytes": 0}, "string_max_bytes must be an int >= 1, got 0"),
        ({"repetitions": 2}, "repetitions must be an int >= 3, got 2"),
        ({"capacity": 0}, "capacity must be an int >= 1, got 0"),
        ({"max_words_per_user": 0}, "max_words_per_user must be an int >= 1 or None, got 0"),
        ({"max_heavy_hitters": -1}, "max_heavy_hitters must be an int >= 1 or None, got -1"),
        ({"k_anonymity": 0}, "k_anonymity must be an int >= 1 or None, got 0"),
        (
            {"secure_sum_bitwidth": 63},
            r"secure_sum_bitwidth must be an int in \[1, 62\] or None, got 63",
        ),
        ({"batch_size": 0}, "batch_size must be an int >= 1 or None, got 0"),
    ],
)
def test_bad_parameters_are_refused_naming_what_was_given(options, message):
    with pytest.raises(ValueError, match=message):
        iblt.build_iblt_computation(**options)


# -- the tutorial -------------------------------------------------------------------------------------


def test_the_private_heavy_hitters_tutorial_flow():
    """TFF's "private heavy hitters" tutorial on a Shakespeare stand-in: twelve speakers, each with lines
    drawn (with a fixed seed) from the canned set's synthetic lines, in Shakespeare's element structure.
    The tutorial tokenizes with tensorflow-text (whitespace tokens, case folded, punctuation dropped),
    which has no release for TensorFlow 2.21; the same steps are written here with tf.strings."""
    np.random.seed(0)
    synthetic = tff.simulation.datasets.shakespeare.get_synthetic()
    lines = [
        line["snippets"].numpy().decode()
        for client_id in synthetic.client_ids
        for line in synthetic.create_tf_dataset_for_client(client_id)
    ]
    rng = np.random.default_rng(7)
    source = tff.simulation.datasets.TestClientData(
        {
            f"SPEAKER_{k}": {
                "snippets": [lines[i] for i in rng.choice(len(lines), 4, replace=False)]
            }
            for k in range(12)
        }
    )

    def tokenize(ds):
        ds = ds.map(lambda x: tf.strings.split(tf.strings.lower(x["snippets"])))
        ds = ds.flat_map(tf.data.Dataset.from_tensor_slices)
        return ds.filter(lambda w: tf.strings.regex_full_match(w, ".*[a-z0-9].*"))

    batch_size = 5

    def client_data(n):
        return tokenize(source.create_tf_dataset_for_client(source.client_ids[n])).batch(batch_size)

    dataset = [client_data(n) for n in range(10)]

    max_words_per_user = 8
    iblt_computation = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=100,
        string_max_bytes=20,
        max_words_per_user=max_words_per_user,
        max_heavy_hitters=10,
        secure_sum_bitwidth=32,
        multi_contribution=False,
        batch_size=batch_size,
    )

    def run_simulation(one_round_computation, dataset):
        output = one_round_computation(dataset)
        heavy_hitters = output.heavy_hitters
        heavy_hitters_counts = output.heavy_hitters_counts
        heavy_hitters = [word.decode("utf-8", "ignore") for word in heavy_hitters]
        results = {}
        for index in range(len(heavy_hitters)):
            results[heavy_hitters[index]] = heavy_hitters_counts[index]
        return output.clients, dict(results)

    clients, result = run_simulation(iblt_computation, dataset)
    assert clients == 10

    # The same count by hand: each client's 8 most frequent words (the first of equals), once each.
    expected = collections.Counter()
    for client in dataset:
        words = [w.decode()[:20] for batch in client for w in batch.numpy()]
        counts = collections.Counter(words)
        order = sorted(counts, key=lambda w: (-counts[w], words.index(w)))
        expected.update(order[:max_words_per_user])
    assert max(expected.values()) >= 3  # words that several speakers use: something to find
    assert len(result) == 10
    assert all(result[word] == expected[word] for word in result)
    top = sorted(expected.values(), reverse=True)[: len(result)]
    assert sorted((int(c) for c in result.values()), reverse=True) == top

    # The tutorial's central DP as post-processing: Laplace noise on the counts, then a threshold.
    iblt_computation = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=100,
        string_max_bytes=20,
        max_words_per_user=max_words_per_user,
        secure_sum_bitwidth=32,
        multi_contribution=False,
        batch_size=batch_size,
    )
    output = iblt_computation(dataset)
    result = {w.decode(): int(n) for w, n in zip(output.heavy_hitters, output.heavy_hitters_counts)}
    assert result == dict(expected)
    eps, delta = 20, 0.01
    private = tff.analytics.heavy_hitters.private_heavy_hitters(
        output, max_words_per_user=max_words_per_user, epsilon=eps, delta=delta, seed=5
    )
    # The tutorial's own loop, with the same random draws, keeps the same words.
    scale = max_words_per_user / eps
    tau = 1 + (max_words_per_user / eps) * np.log(max_words_per_user / (2 * delta))
    rng = np.random.default_rng(5)
    noisy = {}
    for word, count in zip(output.heavy_hitters, output.heavy_hitters_counts):
        noised = count + rng.laplace(scale=scale)
        if noised >= tau:
            noisy[word.decode("utf-8", "ignore")] = round(noised)
    result_with_dp = {
        word.decode("utf-8", "ignore"): int(count)
        for word, count in zip(private.heavy_hitters, private.heavy_hitters_counts)
    }
    assert result_with_dp == noisy and noisy
    assert set(noisy) <= set(result)
    assert all(expected[w] >= 2 for w in noisy)  # words held by one client are (almost surely) gone
