import hashlib
import os
import sqlite3
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fed_datasets import (
    DatabaseChangedError,
    DatabaseFormatError,
    ElementSpecCompatibilityError,
    SqlClientData,
    TestClientData,
    load_and_parse_sql_client_data,
    save_to_sql_client_data,
)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def splits(proto):
    return {
        "train": {
            "alice": [proto(n=[1]), proto(n=[2])],
            "bob": [proto(n=[3])],
            "o'hara": [proto(n=[4])],
        },
        "test": {"alice": [proto(n=[10])], "carol": [proto(n=[20]), proto(n=[30])]},
    }


def _numbers(dataset: tf.data.Dataset) -> list[int]:
    spec = {"n": tf.io.FixedLenFeature((), tf.int64)}
    return [int(tf.io.parse_single_example(s, spec)["n"]) for s in dataset]


def test_reads_clients_and_examples_per_split(make_database, splits):
    path = make_database(splits)
    train = SqlClientData(path, "train")
    assert train.client_ids == ["alice", "bob", "o'hara"]
    assert train.element_type_structure == tf.TensorSpec((), tf.string)
    assert _numbers(train.create_tf_dataset_for_client("alice")) == [1, 2]
    assert _numbers(train.create_tf_dataset_for_client("o'hara")) == [4]
    assert train.num_examples("alice") == 2

    test = SqlClientData(path, "test")
    assert test.client_ids == ["alice", "carol"]
    assert _numbers(test.create_tf_dataset_for_client("alice")) == [10]

    everything = SqlClientData(path)
    assert everything.client_ids == ["alice", "bob", "carol", "o'hara"]
    assert sorted(_numbers(everything.create_tf_dataset_for_client("alice"))) == [1, 2, 10]
    assert sorted(_numbers(everything.create_tf_dataset_from_all_clients(seed=0))) == [
        1,
        2,
        3,
        4,
        10,
        20,
        30,
    ]


def test_unknown_client_id_names_it(make_database, splits):
    train = SqlClientData(make_database(splits), "train")
    with pytest.raises(KeyError, match="unknown client id 'carol'"):
        train.create_tf_dataset_for_client("carol")


def test_serializable_dataset_fn_runs_inside_tf_function(make_database, splits):
    train = SqlClientData(make_database(splits), "train")
    fn = train.serializable_dataset_fn

    @tf.function(input_signature=[tf.TensorSpec((), tf.string)])
    def count(client_id):
        return fn(client_id).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)

    assert count(tf.constant("alice")).numpy() == 2
    assert count(tf.constant("o'hara")).numpy() == 1
    # A quote in an id cannot reach beyond its own string in the query.
    assert count(tf.constant("x' OR '1'='1")).numpy() == 0


def test_opens_the_database_read_only(make_database, splits, tmp_path):
    path = make_database(splits)
    before = _digest(path)
    os.chmod(path, stat.S_IRUSR)
    os.chmod(tmp_path, stat.S_IRUSR | stat.S_IXUSR)
    try:
        data = SqlClientData(path, "train")
        assert _numbers(data.create_tf_dataset_for_client("bob")) == [3]
        assert data.num_examples("bob") == 1
    finally:
        os.chmod(tmp_path, stat.S_IRWXU)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SQLite database at"):
        SqlClientData(tmp_path / "absent.sqlite")
    assert not (tmp_path / "absent.sqlite").exists()


def test_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("hello")
    with pytest.raises(DatabaseFormatError, match="is not a SQLite database"):
        SqlClientData(path)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            ["CREATE TABLE examples (split_name, client_id, serialized_example_proto)"],
            "has no table 'client_metadata'",
        ),
        (
            [
                "CREATE TABLE examples (split_name, client_id, proto)",
                "CREATE TABLE client_metadata (client_id, split_name, num_examples)",
            ],
            "table 'examples' .* has no column 'serialized_example_proto'",
        ),
        (
            [
                "CREATE TABLE examples (split_name, client_id, serialized_example_proto)",
                "CREATE TABLE client_metadata (client_id, split_name)",
            ],
            "table 'client_metadata' .* has no column 'num_examples'",
        ),
        (
            [
                "CREATE TABLE examples (split_name, client_id, serialized_example_proto)",
                "CREATE TABLE client_metadata (client_id, split_name, num_examples)",
            ],
            "table 'client_metadata' .* lists no clients",
        ),
    ],
)
def test_malformed_databases_name_the_table_or_column(tmp_path, schema, message):
    path = tmp_path / "bad.sqlite"
    connection = sqlite3.connect(path)
    for statement in schema:
        connection.execute(statement)
    connection.commit()
    connection.close()
    with pytest.raises(DatabaseFormatError, match=message):
        SqlClientData(path)


def test_save_and_load_round_trip(tmp_path):
    source = TestClientData(
        {
            "a": {
                "image": np.arange(12, dtype=np.uint8).reshape(2, 2, 3),
                "score": np.array([0.25, -1.5], np.float32),
                "flag": np.array([True, False]),
                "text": [b"x\x00y", b""],
                "count": np.array([-3, 2**40], np.int64),
            },
            "b": {
                "image": np.full((1, 2, 3), 255, np.uint8),
                "score": np.array([9.0], np.float32),
                "flag": np.array([True]),
                "text": [b"only"],
                "count": np.array([7], np.int64),
            },
        }
    )
    path = tmp_path / "saved" / "data.sqlite"
    save_to_sql_client_data(source.client_ids, source.create_tf_dataset_for_client, path)
    loaded = load_and_parse_sql_client_data(path, source.element_type_structure)
    assert loaded.client_ids == ["a", "b"]
    assert loaded.element_type_structure == source.element_type_structure
    for client_id in ["a", "b"]:
        expected = list(source.create_tf_dataset_for_client(client_id))
        actual = list(loaded.create_tf_dataset_for_client(client_id))
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected, strict=True):
            for key in want:
                np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())
                assert got[key].dtype == want[key].dtype
    # Only the database itself is left in the directory: no temporary files.
    assert [p.name for p in path.parent.iterdir()] == ["data.sqlite"]


def test_variable_length_first_dimension_round_trips(tmp_path):
    def tokens(client_id):
        return tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1, 2, 3], [4]])).map(
            lambda t: {"tokens": t}
        )

    path = tmp_path / "tokens.sqlite"
    save_to_sql_client_data(["u"], tokens, path)
    loaded = load_and_parse_sql_client_data(path, {"tokens": tf.TensorSpec([None], tf.int32)})
    assert [e["tokens"].numpy().tolist() for e in loaded.create_tf_dataset_for_client("u")] == [
        [1, 2, 3],
        [4],
    ]


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "data.sqlite"
    path.write_text("precious")
    data = TestClientData({"a": {"x": np.array([1.0], np.float32)}})
    with pytest.raises(FileExistsError, match="allow_overwrite=True"):
        save_to_sql_client_data(data.client_ids, data.create_tf_dataset_for_client, path)
    assert path.read_text() == "precious"
    save_to_sql_client_data(
        data.client_ids, data.create_tf_dataset_for_client, path, allow_overwrite=True
    )
    assert SqlClientData(path).client_ids == ["a"]


def test_save_refuses_inconsistent_or_unsupported_element_specs(tmp_path):
    def mixed(client_id):
        dtype = tf.float32 if client_id == "a" else tf.float64
        return tf.data.Dataset.from_tensor_slices({"x": tf.zeros([1], dtype)})

    with pytest.raises(ElementSpecCompatibilityError, match="client 'b' has element_spec"):
        save_to_sql_client_data(["a", "b"], mixed, tmp_path / "mixed.sqlite")
    with pytest.raises(ElementSpecCompatibilityError, match="must be a dict of str"):
        save_to_sql_client_data(
            ["a"], lambda cid: tf.data.Dataset.range(2), tmp_path / "flat.sqlite"
        )
    with pytest.raises(ElementSpecCompatibilityError, match=r"element_spec\['c'\] has dtype"):
        save_to_sql_client_data(
            ["a"],
            lambda cid: tf.data.Dataset.from_tensor_slices({"c": tf.zeros([1], tf.complex64)}),
            tmp_path / "complex.sqlite",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_parsing_needs_defined_inner_dimensions(make_database, splits):
    with pytest.raises(ElementSpecCompatibilityError, match="only the first dimension may be None"):
        load_and_parse_sql_client_data(
            make_database(splits), {"n": tf.TensorSpec([2, None], tf.int64)}
        )


def test_a_database_removed_after_opening_is_a_clear_error(make_database, splits):
    path = make_database(splits)
    train = SqlClientData(path, "train")
    assert _numbers(train.create_tf_dataset_for_client("bob")) == [3]
    os.remove(path)
    message = "database file .* was removed after"
    with pytest.raises(FileNotFoundError, match=message):
        _ = train.client_ids
    with pytest.raises(FileNotFoundError, match=message):
        train.create_tf_dataset_for_client("bob")
    with pytest.raises(FileNotFoundError, match=message):
        train.num_examples("bob")


def test_iterating_a_dataset_whose_database_was_removed_does_not_crash(make_database, splits):
    # TensorFlow's SqlDataset crashes the interpreter when its file cannot be opened: run it in a
    # process of its own, so that a regression fails this test rather than the test session.
    path = make_database(splits)
    script = f"""
import os
import tensorflow as tf
from fed_datasets import SqlClientData

data = SqlClientData({str(path)!r}, "train")
one = data.create_tf_dataset_for_client("alice")
everyone = data.create_tf_dataset_from_all_clients(seed=0)
os.remove({str(path)!r})
for dataset in (one, everyone):
    try:
        list(dataset)
    except tf.errors.InvalidArgumentError as error:
        print("refused:", "was removed after it was opened" in str(error))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["refused: True", "refused: True"]


def test_a_client_deleted_after_opening_is_not_listed_with_its_old_count(make_database, splits):
    path = make_database(splits)
    train = SqlClientData(path, "train")
    dataset = train.create_tf_dataset_for_client("alice")
    assert train.num_examples("alice") == 2
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM examples WHERE client_id = 'alice'")
    connection.execute("DELETE FROM client_metadata WHERE client_id = 'alice'")
    connection.commit()
    connection.close()
    message = "changed after this SqlClientData opened it .* open a new SqlClientData"
    with pytest.raises(DatabaseChangedError, match=message):
        _ = train.client_ids
    with pytest.raises(DatabaseChangedError, match=message):
        train.num_examples("alice")
    with pytest.raises(DatabaseChangedError, match=message):
        train.create_tf_dataset_for_client("bob")
    # A dataset made before the change refuses to read the changed file rather than come up empty.
    with pytest.raises(tf.errors.InvalidArgumentError, match="changed after it was opened"):
        list(dataset)
    reopened = SqlClientData(path, "train")
    assert reopened.client_ids == ["bob", "o'hara"]
    assert _numbers(reopened.create_tf_dataset_for_client("bob")) == [3]


def test_a_database_replaced_after_opening_is_refused(make_database, write_database, splits, proto):
    path = make_database(splits)
    train = SqlClientData(path, "train")
    replacement = write_database(path.with_name("new.sqlite"), {"train": {"zed": [proto(n=[9])]}})
    os.replace(replacement, path)
    with pytest.raises(DatabaseChangedError, match="was replaced after this SqlClientData"):
        train.create_tf_dataset_for_client("alice")


def test_graph_datasets_check_the_database_of_a_path_with_glob_characters(
    tmp_path, proto, write_database
):
    directory = tmp_path / "data [v2] *?"
    directory.mkdir()
    path = directory / "x.sqlite"
    splits = {"train": {"a": [proto(n=[1])], "b": [proto(n=[2]), proto(n=[3])]}}
    data = SqlClientData(write_database(path, splits), "train")
    assert sorted(_numbers(data.create_tf_dataset_from_all_clients(seed=1))) == [1, 2, 3]


def test_loading_with_an_element_spec_the_examples_do_not_match_is_refused_early(tmp_path):
    path = tmp_path / "data.sqlite"
    data = TestClientData({"a": {"x": np.array([1.0, 2.0], np.float32)}})
    save_to_sql_client_data(data.client_ids, data.create_tf_dataset_for_client, path)
    with pytest.raises(ElementSpecCompatibilityError, match=r"element_spec\['y'\] names a feature"):
        load_and_parse_sql_client_data(path, {"y": tf.TensorSpec([], tf.float32)})
    with pytest.raises(
        ElementSpecCompatibilityError, match=r"has shape \[3\], but .* holds 1 value"
    ):
        load_and_parse_sql_client_data(path, {"x": tf.TensorSpec([3], tf.float32)})
    with pytest.raises(ElementSpecCompatibilityError, match="is string, .* hold 'x' as float_list"):
        load_and_parse_sql_client_data(path, {"x": tf.TensorSpec([], tf.string)})
    loaded = load_and_parse_sql_client_data(path, {"x": tf.TensorSpec([], tf.float32)})
    assert [float(e["x"]) for e in loaded.create_tf_dataset_for_client("a")] == [1.0, 2.0]


def test_a_cohort_of_database_clients_is_read_inside_the_backends_loop(make_database, splits):
    import fed_tensorflow
    from fed_core.framework import ClientValues
    from fed_tensorflow._backend import LoadedTensorFlowComputation, backend
    from fed_types import SequenceType, TensorType

    train = SqlClientData(make_database(splits), "train").preprocess(
        lambda d: d.map(
            lambda s: tf.io.parse_single_example(s, {"n": tf.io.FixedLenFeature((), tf.int64)})["n"]
        )
    )
    total = fed_tensorflow.computation(
        lambda numbers: fed_tensorflow.fold_dataset(numbers, np.int64(0), lambda a, n: a + n),
        SequenceType(TensorType(np.int64)),
    )
    order = ["o'hara", "alice", "bob", "alice"]
    results = {}
    for strategy in ("looped", "per_client"):
        fed_tensorflow.configure(map_strategy=strategy)
        try:
            loaded = LoadedTensorFlowComputation(total.building_block, backend())
            # A round, then another: a data set's clients are looped over from its second on.
            loaded.map(ClientValues([train.create_tf_dataset_for_client(c) for c in order]), None)
            datasets = [train.create_tf_dataset_for_client(c) for c in order]
            results[strategy] = [int(n) for n in loaded.map(ClientValues(datasets), None).members()]
        finally:
            fed_tensorflow.configure()
        if strategy == "looped":
            assert all(d._made is None for d in datasets)  # each client's rows read in the loop
    assert results["looped"] == results["per_client"] == [4, 3, 3, 3]


def test_database_clients_in_many_rounds_are_kept_read_and_a_replaced_file_is_still_refused(
    make_database, write_database, splits, proto
):
    import fed_tensorflow
    from fed_core.framework import ClientValues
    from fed_tensorflow._backend import LoadedTensorFlowComputation, backend
    from fed_types import SequenceType, TensorType

    path = make_database(splits)
    train = SqlClientData(path, "train").preprocess(
        lambda d: d.map(
            lambda s: tf.io.parse_single_example(s, {"n": tf.io.FixedLenFeature((), tf.int64)})["n"]
        ).batch(2)
    )
    element = TensorType(np.int64, [None])
    total = fed_tensorflow.computation(
        lambda batches: fed_tensorflow.fold_dataset(
            batches, np.int64(0), lambda a, b: a + tf.reduce_sum(b)
        ),
        SequenceType(element),
    )
    order = ["o'hara", "alice", "bob", "alice"]
    fed_tensorflow.configure(map_strategy="looped")
    try:
        loaded = LoadedTensorFlowComputation(total.building_block, backend())
        rounds = [
            [
                int(n)
                for n in loaded.map(
                    ClientValues([train.create_tf_dataset_for_client(c) for c in order]), None
                ).members()
            ]
            for _ in range(4)
        ]
        # From the third round on (the second looped one) every client's rows were kept read.
        cache = train._factory.read_cache(element)
        assert sorted(cache.index) == ["alice", "bob", "o'hara"]
        replacement = write_database(
            path.with_name("new.sqlite"), {"train": {"zed": [proto(n=[9])]}}
        )
        os.replace(replacement, path)
        with pytest.raises(DatabaseChangedError, match="was replaced after this SqlClientData"):
            loaded.map(ClientValues([train.create_tf_dataset_for_client(c) for c in order]), None)
    finally:
        fed_tensorflow.configure()
    assert rounds == [[4, 3, 3, 3]] * 4
