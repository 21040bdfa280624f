import collections

import numpy as np
import pytest

from fed_datasets import (
    partition_by_client_id,
    partition_dirichlet,
    partition_iid,
    partition_shards,
)

NUM_CLASSES = 10


def _examples(n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Balanced labels; `index` tells which example is which."""
    rng = np.random.default_rng(seed)
    return {
        "index": np.arange(n, dtype=np.int64),
        "label": rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int32),
        "x": rng.normal(size=(n, 3)).astype(np.float32),
    }


def _columns(client_data) -> dict[str, dict[str, np.ndarray]]:
    """client id -> {field: array of that client's values}."""
    out = {}
    for cid in client_data.client_ids:
        # One batch holding all of the client's examples: one read per client.
        dataset = client_data.create_tf_dataset_for_client(cid).batch(1 << 20)
        out[cid] = next(dataset.as_numpy_iterator())
    return out


def _assert_exact_partition(columns, examples):
    indices = np.concatenate([c["index"] for c in columns.values()])
    assert sorted(indices.tolist()) == list(range(len(examples["index"])))
    for client in columns.values():
        # Rows stay whole: each example keeps its own label and features.
        np.testing.assert_array_equal(client["label"], examples["label"][client["index"]])
        np.testing.assert_array_equal(client["x"], examples["x"][client["index"]])


def _mean_top_label_share(columns) -> float:
    shares = []
    for client in columns.values():
        counts = np.bincount(client["label"], minlength=NUM_CLASSES)
        shares.append(counts.max() / counts.sum())
    return float(np.mean(shares))


def test_iid_puts_every_example_in_exactly_one_client_with_balanced_sizes():
    examples = _examples(1003)
    columns = _columns(partition_iid(examples, 10, seed=4))
    assert list(columns) == [str(i) for i in range(10)]
    _assert_exact_partition(columns, examples)
    assert sorted(len(c["index"]) for c in columns.values()) == [100] * 7 + [101] * 3
    # Each client's label mix is close to the global one (10% each).
    assert _mean_top_label_share(columns) < 0.2


def test_partitions_are_reproducible_with_a_seed():
    examples = _examples(500)
    for build in (
        lambda seed: partition_iid(examples, 5, seed=seed),
        lambda seed: partition_dirichlet(examples, 5, alpha=0.5, seed=seed),
        lambda seed: partition_shards(examples, 5, seed=seed),
    ):
        first, again, other = _columns(build(1)), _columns(build(1)), _columns(build(2))
        assert all(np.array_equal(first[c]["index"], again[c]["index"]) for c in first)
        assert not all(np.array_equal(first[c]["index"], other[c]["index"]) for c in first)


def test_dirichlet_is_an_exact_partition_of_equal_sizes():
    examples = _examples(2000)
    columns = _columns(partition_dirichlet(examples, 20, alpha=0.1, seed=0))
    _assert_exact_partition(columns, examples)
    assert {len(c["index"]) for c in columns.values()} == {100}


def test_smaller_alpha_gives_more_label_skew():
    examples = _examples(3000)
    skew = {
        alpha: np.mean(
            [
                _mean_top_label_share(
                    _columns(partition_dirichlet(examples, 20, alpha=alpha, seed=seed))
                )
                for seed in range(2)
            ]
        )
        for alpha in (0.05, 0.5, 100.0)
    }
    # alpha=0.05: most clients hold one label; alpha=100: close to IID (top share near 0.1).
    assert skew[0.05] > 0.6
    assert skew[0.05] > skew[0.5] + 0.15
    assert skew[0.5] > skew[100.0] + 0.15
    assert skew[100.0] < 0.2


def test_dirichlet_takes_labels_from_an_array_and_keeps_tuple_examples():
    x = np.arange(100, dtype=np.float32)
    y = np.repeat(np.arange(4), 25)
    data = partition_dirichlet((x, y), 4, alpha=1.0, labels=y, seed=0)
    seen = sorted(
        v
        for cid in data.client_ids
        for v, _ in data.create_tf_dataset_for_client(cid).as_numpy_iterator()
    )
    assert seen == x.tolist()


def test_shards_give_each_client_few_labels():
    examples = _examples(2000)
    columns = _columns(partition_shards(examples, 50, shards_per_client=2, seed=3))
    _assert_exact_partition(columns, examples)
    distinct = [len(np.unique(c["label"])) for c in columns.values()]
    # A shard of 20 sorted examples spans at most two labels (200 examples per label).
    assert max(distinct) <= 4
    assert np.mean(distinct) < 2.5
    assert {len(c["index"]) for c in columns.values()} == {40}


def test_natural_ids_group_examples_by_a_column():
    examples = {
        "user": np.array(["bo", "al", "bo", "cy", "al"]),
        "value": np.array([1, 2, 3, 4, 5], np.int32),
    }
    data = partition_by_client_id(examples, "user")
    assert data.client_ids == ["al", "bo", "cy"]
    assert list(data.element_type_structure) == ["value"]
    values = {
        cid: [e["value"] for e in data.create_tf_dataset_for_client(cid).as_numpy_iterator()]
        for cid in data.client_ids
    }
    assert values == {"al": [2, 5], "bo": [1, 3], "cy": [4]}

    by_array = partition_by_client_id(np.arange(4.0), np.array([7, 7, 8, 7]))
    assert by_array.client_ids == ["7", "8"]
    assert list(by_array.create_tf_dataset_for_client("7").as_numpy_iterator()) == [0.0, 1.0, 3.0]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda e: partition_iid(e, 0), ValueError, "between 1 and the number of examples"),
        (lambda e: partition_iid(e, 11), ValueError, r"\(10\), got 11"),
        (
            lambda e: partition_dirichlet(e, 2, alpha=0),
            ValueError,
            "alpha must be a finite positive number",
        ),
        (lambda e: partition_dirichlet(e, 2, alpha=1, labels="y"), KeyError, "not a key"),
        (
            lambda e: partition_dirichlet(e, 2, alpha=1, labels=np.zeros(3)),
            ValueError,
            r"one value per example \(shape \[10\]\)",
        ),
        (lambda e: partition_shards(e, 5, shards_per_client=3), ValueError, "5 \\* 3 = 15"),
        (
            lambda e: partition_iid({"a": np.zeros(3), "b": np.zeros(4)}, 2),
            ValueError,
            "same first dimension",
        ),
    ],
)
def test_bad_arguments_are_refused(call, error, message):
    examples = {"label": np.arange(10) % 2, "x": np.zeros((10, 2))}
    with pytest.raises(error, match=message):
        call(examples)


def test_counts_per_label_are_preserved_under_every_partitioner():
    examples = _examples(600)
    expected = collections.Counter(examples["label"].tolist())
    for data in (
        partition_iid(examples, 6, seed=0),
        partition_dirichlet(examples, 6, alpha=0.3, seed=0),
        partition_shards(examples, 6, shards_per_client=3, seed=0),
    ):
        got = collections.Counter(
            int(label) for c in _columns(data).values() for label in c["label"]
        )
        assert got == expected
