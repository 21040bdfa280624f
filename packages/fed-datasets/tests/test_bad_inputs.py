"""Every public entry point of fed-datasets, given what a new user might give it by mistake: each call
is refused early with an error that names what was expected and what was given."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from fed_datasets import (
    ClientData,
    DatabaseFormatError,
    ElementSpecCompatibilityError,
    FilePerUserClientData,
    SqlClientData,
    TestClientData,
    build_client_selection_fn,
    build_uniform_sampling_fn,
    compose_dataset_computation_with_computation,
    compose_dataset_computation_with_iterative_process,
    digits,
    emnist,
    load_and_parse_sql_client_data,
    partition_by_client_id,
    partition_dirichlet,
    partition_iid,
    partition_shards,
    save_to_sql_client_data,
    stackoverflow,
)

EXAMPLES = {"label": np.arange(10) % 2, "x": np.zeros((10, 2), np.float32)}


def _client_data() -> TestClientData:
    return TestClientData(
        {"a": np.zeros(2, np.float32), "b": np.ones(3, np.float32), "c": np.ones(1, np.float32)}
    )


def _single(client_id: str) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({"x": [1.0, 2.0]})


CASES = [
    # ---- partitioners
    pytest.param(
        lambda: partition_iid(EXAMPLES, "2"),
        TypeError,
        "num_clients must be an int, got '2'",
        id="iid/num_clients str",
    ),
    pytest.param(
        lambda: partition_iid(EXAMPLES, 2.0),
        TypeError,
        "num_clients must be an int, got 2.0",
        id="iid/num_clients float",
    ),
    pytest.param(
        lambda: partition_iid(EXAMPLES, True),
        TypeError,
        "num_clients must be an int, got True",
        id="iid/num_clients bool",
    ),
    pytest.param(
        lambda: partition_iid(EXAMPLES, 0),
        ValueError,
        r"between 1 and the number of examples \(10\), got 0",
        id="iid/num_clients zero",
    ),
    pytest.param(
        lambda: partition_iid(EXAMPLES, 11),
        ValueError,
        r"\(10\), got 11",
        id="iid/more clients than examples",
    ),
    pytest.param(
        lambda: partition_iid(None, 2),
        TypeError,
        "examples must be arrays, lists or numbers .* got None",
        id="iid/examples None",
    ),
    pytest.param(
        lambda: partition_iid(np.float32(3), 1),
        ValueError,
        "needs the same first dimension",
        id="iid/examples scalar",
    ),
    pytest.param(
        lambda: partition_iid({"x": np.zeros((0, 2))}, 1),
        ValueError,
        "holds no example",
        id="iid/no examples",
    ),
    pytest.param(
        lambda: partition_iid([[1, 2], [3]], 1),
        ValueError,
        "cannot convert .* non-rectangular",
        id="iid/ragged list",
    ),
    pytest.param(
        lambda: partition_iid({"a": np.zeros(3), "b": np.zeros(4)}, 2),
        ValueError,
        "same first dimension",
        id="iid/arrays of different lengths",
    ),
    pytest.param(
        lambda: partition_iid({1: np.zeros(3)}, 1),
        TypeError,
        "keys of an examples dict must be str, got 1",
        id="iid/non-str key",
    ),
    pytest.param(
        lambda: partition_iid(EXAMPLES, 2, seed=-1),
        ValueError,
        "seed must be None or a non-negative int, got -1",
        id="iid/negative seed",
    ),
    pytest.param(
        lambda: partition_iid(EXAMPLES, 2, seed=1.5),
        TypeError,
        "seed must be None or a non-negative int, got 1.5",
        id="iid/float seed",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=0),
        ValueError,
        "alpha must be a finite positive number, got 0",
        id="dirichlet/alpha zero",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=-0.5),
        ValueError,
        "alpha must be a finite positive number, got -0.5",
        id="dirichlet/alpha negative",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=np.inf),
        ValueError,
        "alpha must be a finite positive number, got inf",
        id="dirichlet/alpha inf",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=np.float32("nan")),
        ValueError,
        "alpha must be a finite positive number, got .*nan",
        id="dirichlet/alpha nan",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha="1"),
        TypeError,
        "alpha must be a finite positive number, got '1' of type str",
        id="dirichlet/alpha str",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=True),
        TypeError,
        "alpha must be a finite positive number, got True",
        id="dirichlet/alpha bool",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=1, labels="y"),
        KeyError,
        r"labels='y' is not a key of examples; keys are \['label', 'x'\]",
        id="dirichlet/labels not a key",
    ),
    pytest.param(
        lambda: partition_dirichlet((np.zeros(10),), 2, alpha=1),
        KeyError,
        r"labels='label' is not a key of examples; keys are \(not a dict\)",
        id="dirichlet/labels of a tuple",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=1, labels="x"),
        ValueError,
        r"labels must be one value per example \(shape \[10\]\), got shape \[10, 2\]",
        id="dirichlet/labels 2-d",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=1, labels=np.zeros(3)),
        ValueError,
        r"\(shape \[10\]\), got shape \[3\]",
        id="dirichlet/labels wrong length",
    ),
    pytest.param(
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=1, labels=None),
        ValueError,
        r"\(shape \[10\]\), got shape \[\]",
        id="dirichlet/labels None",
    ),
    pytest.param(
        lambda: partition_shards(EXAMPLES, 2, shards_per_client=2.0),
        TypeError,
        "shards_per_client must be an int, got 2.0",
        id="shards/shards_per_client float",
    ),
    pytest.param(
        lambda: partition_shards(EXAMPLES, 2, shards_per_client=0),
        ValueError,
        r"got 2 \* 0 = 0",
        id="shards/zero shards",
    ),
    pytest.param(
        lambda: partition_shards(EXAMPLES, 5, shards_per_client=3),
        ValueError,
        r"number of examples \(10\), got 5 \* 3 = 15",
        id="shards/too many shards",
    ),
    pytest.param(
        lambda: partition_by_client_id(EXAMPLES, "nope"),
        KeyError,
        r"client_ids='nope' is not a key of examples; keys are \['label', 'x'\]",
        id="by_client_id/not a key",
    ),
    pytest.param(
        lambda: partition_by_client_id({"id": np.array([1, 2])}, "id"),
        ValueError,
        "nothing but the client id column 'id'",
        id="by_client_id/only the id column",
    ),
    pytest.param(
        lambda: partition_by_client_id(EXAMPLES, np.arange(3)),
        ValueError,
        r"client_ids must be one value per example \(shape \[10\]\), got shape \[3\]",
        id="by_client_id/wrong length",
    ),
    # ---- TestClientData and ClientData
    pytest.param(
        lambda: TestClientData([1, 2]),
        TypeError,
        "tensor_slices_dict must be a dict of client id -> examples, got list",
        id="TestClientData/a list",
    ),
    pytest.param(
        lambda: TestClientData({}),
        ValueError,
        "must hold at least one client id, got none",
        id="TestClientData/no clients",
    ),
    pytest.param(
        lambda: TestClientData({1: np.zeros(2)}),
        TypeError,
        "must hold str client ids, got 1 of type int",
        id="TestClientData/non-str id",
    ),
    pytest.param(
        lambda: TestClientData({"": np.zeros(2)}),
        ValueError,
        "must be non-empty strings, got ''",
        id="TestClientData/empty id",
    ),
    pytest.param(
        lambda: TestClientData({"a": None}),
        TypeError,
        "client 'a': examples must be arrays, lists or numbers .* got None",
        id="TestClientData/None examples",
    ),
    pytest.param(
        lambda: TestClientData({"a": [[1, 2], [3]]}),
        ValueError,
        r"client 'a': .* cannot convert \[\[1, 2\], \[3\]\]",
        id="TestClientData/ragged list",
    ),
    pytest.param(
        lambda: TestClientData({"a": ["x", 1]}),
        ValueError,
        r"client 'a': .* cannot convert \['x', 1\]: .*mixed types",
        id="TestClientData/mixed list",
    ),
    pytest.param(
        lambda: TestClientData({"a": np.array([object()])}),
        TypeError,
        r"must hold only str or bytes, got \['object'\]",
        id="TestClientData/objects",
    ),
    pytest.param(
        lambda: TestClientData({"a": np.float32(1.0)}),
        ValueError,
        "client 'a' examples is a scalar; it needs a first dimension",
        id="TestClientData/scalar examples",
    ),
    pytest.param(
        lambda: TestClientData({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.int32)}),
        TypeError,
        r"client 'b' examples holds int32\[\] per example, but client 'a' holds float32\[\]",
        id="TestClientData/dtypes differ",
    ),
    pytest.param(
        lambda: TestClientData({"a": {"x": np.zeros(2)}, "b": np.zeros(2)}),
        TypeError,
        "client 'b' has examples structured as",
        id="TestClientData/structures differ",
    ),
    pytest.param(
        lambda: TestClientData({"a": {"x": np.zeros(2), "y": np.zeros(3)}}),
        ValueError,
        "has 3 examples but other arrays of that client have 2",
        id="TestClientData/lengths differ",
    ),
    pytest.param(
        lambda: _client_data().create_tf_dataset_for_client(1),
        TypeError,
        "client_id must be a str, got 1 of type int",
        id="create_tf_dataset_for_client/int id",
    ),
    pytest.param(
        lambda: _client_data().create_tf_dataset_for_client(b"a"),
        TypeError,
        "client_id must be a str, got b'a'",
        id="create_tf_dataset_for_client/bytes id",
    ),
    pytest.param(
        lambda: _client_data().create_tf_dataset_for_client("zz"),
        KeyError,
        r"unknown client id 'zz': this TestClientData has 3 client ids \('a', 'b', 'c'\)",
        id="create_tf_dataset_for_client/unknown id",
    ),
    pytest.param(
        lambda: list(_client_data().datasets(limit_count=-1)),
        ValueError,
        "limit_count must be a non-negative int, got -1",
        id="datasets/negative limit",
    ),
    pytest.param(
        lambda: list(_client_data().datasets(limit_count=1.0)),
        TypeError,
        "limit_count must be an int, got 1.0",
        id="datasets/float limit",
    ),
    pytest.param(
        lambda: list(_client_data().datasets(limit_count=True)),
        TypeError,
        "limit_count must be an int, got True",
        id="datasets/bool limit",
    ),
    pytest.param(
        lambda: list(_client_data().datasets(seed="1")),
        TypeError,
        "seed must be None or a non-negative int, got '1'",
        id="datasets/str seed",
    ),
    pytest.param(
        lambda: ClientData.train_test_client_split(_client_data(), 0),
        ValueError,
        r"num_test_clients must be an int between 1 and 2 \(the data has 3 clients\), got 0",
        id="train_test_client_split/zero",
    ),
    pytest.param(
        lambda: ClientData.train_test_client_split(_client_data(), 3),
        ValueError,
        "between 1 and 2 .* got 3",
        id="train_test_client_split/all",
    ),
    pytest.param(
        lambda: ClientData.train_test_client_split(_client_data(), True),
        TypeError,
        "num_test_clients must be an int, got True",
        id="train_test_client_split/bool",
    ),
    pytest.param(
        lambda: ClientData.train_test_client_split([1], 1),
        TypeError,
        "client_data must be a ClientData, got list",
        id="train_test_client_split/not ClientData",
    ),
    pytest.param(
        lambda: _client_data().preprocess(None),
        TypeError,
        "preprocess_fn must be a callable from tf.data.Dataset to tf.data.Dataset, got NoneType",
        id="preprocess/None",
    ),
    pytest.param(
        lambda: _client_data().preprocess(lambda d: 3).create_tf_dataset_for_client("a"),
        TypeError,
        "must return a tf.data.Dataset, got int",
        id="preprocess/returns int",
    ),
    pytest.param(
        lambda: ClientData.from_clients_and_tf_fn(["a"], 3),
        TypeError,
        "serializable_dataset_fn must be a callable .* got int",
        id="from_clients_and_tf_fn/not callable",
    ),
    pytest.param(
        lambda: ClientData.from_clients_and_tf_fn([], _single),
        ValueError,
        "client_ids must hold at least one client id, got none",
        id="from_clients_and_tf_fn/no ids",
    ),
    pytest.param(
        lambda: ClientData.from_clients_and_tf_fn("ab", _single),
        TypeError,
        "client_ids must be an iterable of str, got a single str",
        id="from_clients_and_tf_fn/one str",
    ),
    pytest.param(
        lambda: ClientData.from_clients_and_tf_fn(["a", "a"], _single),
        ValueError,
        r"client_ids must be unique, got duplicates \['a'\]",
        id="from_clients_and_tf_fn/duplicates",
    ),
    pytest.param(
        lambda: ClientData.from_clients_and_tf_fn(["a"], lambda c: 3).create_tf_dataset_for_client(
            "a"
        ),
        TypeError,
        "serializable_dataset_fn must return a tf.data.Dataset, got int",
        id="from_clients_and_tf_fn/returns int",
    ),
    pytest.param(
        lambda: FilePerUserClientData(["a"], tf.data.TFRecordDataset),
        TypeError,
        "client_ids_to_files must be a dict of client id -> file path, got list",
        id="FilePerUserClientData/a list",
    ),
    pytest.param(
        lambda: FilePerUserClientData.create_from_dir("/nonexistent-fed-dir"),
        NotADirectoryError,
        "'/nonexistent-fed-dir' is not a directory",
        id="FilePerUserClientData/not a directory",
    ),
    pytest.param(
        lambda: FilePerUserClientData({"a": 3}, tf.data.TFRecordDataset),
        TypeError,
        "the file of client 'a' must be a str or path, got 3",
        id="FilePerUserClientData/file not a path",
    ),
    # ---- sampling
    pytest.param(
        lambda: build_uniform_sampling_fn([]),
        ValueError,
        "sample_range must hold at least one item, got none",
        id="uniform_sampling/empty",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn(5),
        TypeError,
        r"sample_range must be a sequence of items \(such as client ids\), got int",
        id="uniform_sampling/an int",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn("abc"),
        TypeError,
        "sample_range must be a sequence of items .* got str",
        id="uniform_sampling/a str",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn([1, 2], replace="no"),
        TypeError,
        "replace must be a bool, got 'no'",
        id="uniform_sampling/replace str",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn([1], random_seed="7"),
        TypeError,
        "random_seed must be None or a non-negative int, got '7'",
        id="uniform_sampling/seed str",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn([1, 2, 3])(1.0, 2),
        TypeError,
        "round_num must be an int, got 1.0",
        id="uniform_sampling/float round",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn([1, 2, 3])(0, -2),
        ValueError,
        "size must be a non-negative int, got -2",
        id="uniform_sampling/negative size",
    ),
    pytest.param(
        lambda: build_uniform_sampling_fn([1, 2, 3])(0, 4),
        ValueError,
        "cannot draw 4 items without replacement from 3; pass replace=True",
        id="uniform_sampling/too many",
    ),
    pytest.param(
        lambda: build_client_selection_fn(_client_data(), 0),
        ValueError,
        "clients_per_round must be a positive int, got 0",
        id="client_selection/zero clients",
    ),
    pytest.param(
        lambda: build_client_selection_fn(_client_data(), 2.5),
        TypeError,
        "clients_per_round must be an int, got 2.5",
        id="client_selection/float clients",
    ),
    pytest.param(
        lambda: build_client_selection_fn(_client_data(), 5)(0),
        ValueError,
        "cannot draw 5 items without replacement from 3",
        id="client_selection/too many clients",
    ),
    pytest.param(
        lambda: build_client_selection_fn([1], 1),
        TypeError,
        "client_data must be a ClientData, got list",
        id="client_selection/not ClientData",
    ),
    # ---- canned data sets (refused before any download)
    pytest.param(
        lambda: digits.load_data(num_clients="3"),
        TypeError,
        "num_clients must be an int, got '3'",
        id="digits/num_clients str",
    ),
    pytest.param(
        lambda: digits.load_data(num_clients=0),
        ValueError,
        "num_clients must be an int between 1 and 1797, got 0",
        id="digits/num_clients zero",
    ),
    pytest.param(
        lambda: digits.load_data(alpha=float("inf")),
        ValueError,
        "alpha must be a finite positive number, got inf",
        id="digits/alpha inf",
    ),
    pytest.param(
        lambda: digits.load_data(test_fraction=float("nan")),
        ValueError,
        r"test_fraction must be in \[0, 1\), got nan",
        id="digits/test_fraction nan",
    ),
    pytest.param(
        lambda: digits.load_data(test_fraction=1),
        ValueError,
        r"test_fraction must be in \[0, 1\), got 1",
        id="digits/test_fraction one",
    ),
    pytest.param(
        lambda: digits.load_data(test_fraction="0.2"),
        TypeError,
        r"test_fraction must be a number in \[0, 1\), got '0.2'",
        id="digits/test_fraction str",
    ),
    pytest.param(
        lambda: digits.load_data(seed=-3),
        ValueError,
        "seed must be None or a non-negative int, got -3",
        id="digits/negative seed",
    ),
    pytest.param(
        lambda: emnist.load_data(only_digits="yes"),
        TypeError,
        "only_digits must be a bool, got 'yes'",
        id="emnist/only_digits str",
    ),
    pytest.param(
        lambda: stackoverflow.load_word_counts(vocab_size=0),
        ValueError,
        "vocab_size must be None or a positive int, got 0",
        id="stackoverflow/vocab_size zero",
    ),
    pytest.param(
        lambda: stackoverflow.load_word_counts(vocab_size=1.5),
        ValueError,
        "vocab_size must be None or a positive int, got 1.5",
        id="stackoverflow/vocab_size float",
    ),
    # ---- SQL
    pytest.param(
        lambda: SqlClientData(None),
        TypeError,
        "database_filepath must be a str or a path, got NoneType",
        id="SqlClientData/None",
    ),
    pytest.param(
        lambda: SqlClientData("/"),
        FileNotFoundError,
        "no SQLite database at '/'",
        id="SqlClientData/a directory",
    ),
    pytest.param(
        lambda: SqlClientData("x.sqlite", split_name=3),
        TypeError,
        "split_name must be None or a str, got int",
        id="SqlClientData/split int",
    ),
    pytest.param(
        lambda: save_to_sql_client_data([1], _single, "x.sqlite"),
        TypeError,
        "client_ids must hold str client ids, got 1",
        id="save_to_sql/non-str ids",
    ),
    pytest.param(
        lambda: save_to_sql_client_data(["a"], None, "x.sqlite"),
        TypeError,
        "dataset_fn must be a callable from client id to tf.data.Dataset, got NoneType",
        id="save_to_sql/dataset_fn None",
    ),
    pytest.param(
        lambda: save_to_sql_client_data(["a"], _single, "x.sqlite", "yes"),
        TypeError,
        "allow_overwrite must be a bool, got 'yes'",
        id="save_to_sql/allow_overwrite str",
    ),
    pytest.param(
        lambda: save_to_sql_client_data(["a"], _single, 3),
        TypeError,
        "database_filepath must be a str or a path, got int",
        id="save_to_sql/path int",
    ),
    pytest.param(
        lambda: load_and_parse_sql_client_data("x.sqlite", None),
        ElementSpecCompatibilityError,
        "element_spec must be a dict of str -> tf.TensorSpec, got None",
        id="load_and_parse/spec None",
    ),
    pytest.param(
        lambda: load_and_parse_sql_client_data("x.sqlite", {"a": {"b": tf.TensorSpec([])}}),
        ElementSpecCompatibilityError,
        r"element_spec\['a'\] must be a tf.TensorSpec",
        id="load_and_parse/nested spec",
    ),
    pytest.param(
        lambda: load_and_parse_sql_client_data("x.sqlite", {"a": tf.TensorSpec([], tf.complex64)}),
        ElementSpecCompatibilityError,
        r"element_spec\['a'\] has dtype complex64",
        id="load_and_parse/complex spec",
    ),
    # ---- composition
    pytest.param(
        lambda: compose_dataset_computation_with_computation(None, None),
        TypeError,
        "Expected dataset_computation to be a fed computation .* got None",
        id="compose/not a computation",
    ),
    pytest.param(
        lambda: compose_dataset_computation_with_iterative_process(lambda x: x, None),
        TypeError,
        "Expected dataset_computation to be a fed computation",
        id="compose_process/not a computation",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), CASES)
def test_bad_input_is_refused_clearly(call, error, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any file a call could reach lies in a fresh directory
    with pytest.raises(error, match=message):
        call()
    assert list(tmp_path.iterdir()) == []  # and nothing was written


def test_sql_files_that_are_not_databases_in_the_schema(tmp_path, write_database):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database")
    with pytest.raises(DatabaseFormatError, match="is not a SQLite database"):
        SqlClientData(text)
    empty = write_database(tmp_path / "empty.sqlite", {})
    with pytest.raises(DatabaseFormatError, match="lists no clients"):
        SqlClientData(empty)
    with pytest.raises(DatabaseFormatError, match="lists no clients for split 'nope'"):
        SqlClientData(write_database(tmp_path / "one.sqlite", {"train": {"a": []}}), "nope")


# ---- numpy scalars are numbers wherever Python numbers are

NUMPY_SCALARS = [
    (
        "dirichlet alpha float32",
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=np.float32(0.5), seed=0),
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=0.5, seed=0),
    ),
    (
        "dirichlet alpha int64",
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=np.int64(1), seed=np.int64(0)),
        lambda: partition_dirichlet(EXAMPLES, 2, alpha=1, seed=0),
    ),
    (
        "iid num_clients int32",
        lambda: partition_iid(EXAMPLES, np.int32(3), seed=np.uint8(1)),
        lambda: partition_iid(EXAMPLES, 3, seed=1),
    ),
    (
        "shards shards_per_client int64",
        lambda: partition_shards(EXAMPLES, np.int64(2), shards_per_client=np.int64(2), seed=0),
        lambda: partition_shards(EXAMPLES, 2, shards_per_client=2, seed=0),
    ),
    (
        "digits every number",
        lambda: digits.load_data(np.int64(3), np.float32(0.5), np.int64(2), np.float64(0.25))[0],
        lambda: digits.load_data(3, 0.5, 2, 0.25)[0],
    ),
    (
        "train_test_client_split",
        lambda: ClientData.train_test_client_split(_client_data(), np.int64(1), np.int32(4))[1],
        lambda: ClientData.train_test_client_split(_client_data(), 1, 4)[1],
    ),
]


def _contents(client_data: ClientData) -> dict:
    return {
        client_id: [
            tf.nest.map_structure(lambda t: t.numpy().tolist(), e)
            for e in client_data.create_tf_dataset_for_client(client_id)
        ]
        for client_id in client_data.client_ids
    }


@pytest.mark.parametrize(
    ("with_numpy", "with_python"),
    [c[1:] for c in NUMPY_SCALARS],
    ids=[c[0] for c in NUMPY_SCALARS],
)
def test_numpy_scalars_are_taken_as_python_numbers(with_numpy, with_python):
    assert _contents(with_numpy()) == _contents(with_python())


def test_numpy_scalars_in_sampling_and_datasets():
    data = _client_data()
    assert len(list(data.datasets(limit_count=np.int64(2), seed=np.int64(0)))) == 2
    sample = build_uniform_sampling_fn(data.client_ids, np.bool_(False), np.int64(5))
    assert sample(np.int64(1), np.int32(2)) == build_uniform_sampling_fn(data.client_ids, False, 5)(
        1, 2
    )
    select = build_client_selection_fn(data, np.int64(2), random_seed=np.int64(5))
    assert len(select(np.int64(1))) == 2


def test_refused_calls_leave_a_client_data_usable():
    data = TestClientData(collections.OrderedDict(a=np.arange(3, dtype=np.int64)))
    with pytest.raises(KeyError):
        data.create_tf_dataset_for_client("b")
    with pytest.raises(ValueError):
        list(data.datasets(limit_count=-1))
    assert [int(x) for x in data.create_tf_dataset_for_client("a")] == [0, 1, 2]
