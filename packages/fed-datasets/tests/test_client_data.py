import collections

import numpy as np
import pytest
import tensorflow as tf

from fed_datasets import ClientData, TestClientData


def _plain(t: tf.Tensor):
    value = t.numpy()
    return value if isinstance(value, bytes) else value.tolist()


def _values(dataset: tf.data.Dataset) -> list:
    return [tf.nest.map_structure(_plain, e) for e in dataset]


@pytest.fixture
def client_data() -> TestClientData:
    return TestClientData(
        {
            "a": {"x": np.array([1.0, 2.0, 3.0], np.float32), "y": np.array([0, 1, 0], np.int64)},
            "b": {"x": np.array([4.0], np.float32), "y": np.array([1], np.int64)},
            "c": {"x": np.array([5.0, 6.0], np.float32), "y": np.array([1, 1], np.int64)},
        }
    )


def test_dict_examples_give_each_client_its_own_rows(client_data):
    assert client_data.client_ids == ["a", "b", "c"]
    assert client_data.element_type_structure == {
        "x": tf.TensorSpec((), tf.float32),
        "y": tf.TensorSpec((), tf.int64),
    }
    assert _values(client_data.create_tf_dataset_for_client("a")) == [
        {"x": 1.0, "y": 0},
        {"x": 2.0, "y": 1},
        {"x": 3.0, "y": 0},
    ]
    assert _values(client_data.create_tf_dataset_for_client("b")) == [{"x": 4.0, "y": 1}]
    assert client_data.num_examples("c") == 2


def test_tuple_and_array_examples():
    pairs = TestClientData({"p": (np.zeros((2, 3), np.float32), np.array([7, 8], np.int32))})
    assert pairs.element_type_structure == (
        tf.TensorSpec((3,), tf.float32),
        tf.TensorSpec((), tf.int32),
    )
    assert [y for _, y in _values(pairs.create_tf_dataset_for_client("p"))] == [7, 8]

    arrays = TestClientData({"q": np.arange(6, dtype=np.int64).reshape(3, 2)})
    assert arrays.element_type_structure == tf.TensorSpec((2,), tf.int64)
    assert _values(arrays.create_tf_dataset_for_client("q")) == [[0, 1], [2, 3], [4, 5]]


def test_python_lists_convert_as_tensorflow_does():
    data = TestClientData({"a": {"f": [0.5, 1.5], "s": ["hé", "b\x00"], "n": [1, 2]}})
    assert data.element_type_structure == {
        "f": tf.TensorSpec((), tf.float32),
        "s": tf.TensorSpec((), tf.string),
        "n": tf.TensorSpec((), tf.int32),
    }
    # Trailing NUL bytes survive: values are not stored as numpy's fixed-width bytes.
    assert [e["s"] for e in _values(data.create_tf_dataset_for_client("a"))] == [
        "hé".encode(),
        b"b\x00",
    ]


def test_ordered_dict_examples_keep_their_container_type():
    data = TestClientData({"a": collections.OrderedDict(label=[1], pixels=[[0.5]])})
    assert isinstance(data.element_type_structure, collections.OrderedDict)
    assert list(data.element_type_structure) == ["label", "pixels"]


def test_a_client_may_have_no_examples():
    data = TestClientData({"full": np.array([1, 2]), "empty": np.array([], np.int64)})
    assert _values(data.create_tf_dataset_for_client("empty")) == []


def test_unknown_client_id_raises_a_key_error_naming_it(client_data):
    with pytest.raises(KeyError, match="unknown client id 'zz'.*3 client ids"):
        client_data.create_tf_dataset_for_client("zz")
    with pytest.raises(TypeError, match="client_id must be a str, got b'a'"):
        client_data.create_tf_dataset_for_client(b"a")


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        (
            {"a": {"x": np.zeros(2, np.float32)}, "b": {"x": np.zeros(2, np.float64)}},
            r"client 'b' examples\['x'\] holds float64\[\] per example, but client 'a' holds "
            r"float32\[\]",
        ),
        ({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))}, r"holds float64\[4\].*float64\[3\]"),
        ({"a": {"x": [1]}, "b": {"y": [1]}}, "client 'b' has examples structured as"),
        ({"a": {"x": [1, 2], "y": [1]}}, r"examples\['y'\] has 1 examples but other arrays"),
        ({"a": np.float32(1.0)}, "is a scalar; it needs a first dimension"),
        ({1: [1]}, "must hold str client ids, got 1"),
        ({}, "at least one client id"),
    ],
)
def test_inconsistent_examples_are_refused_with_the_client_named(clients, message):
    with pytest.raises((TypeError, ValueError), match=message):
        TestClientData(clients)


def test_preprocess_is_lazy_and_composes_in_order(client_data):
    calls = []

    def double(ds):
        calls.append("double")
        return ds.map(lambda e: {"x": e["x"] * 2, "y": e["y"]})

    def add_one(ds):
        calls.append("add_one")
        return ds.map(lambda e: {"x": e["x"] + 1, "y": e["y"]})

    processed = client_data.preprocess(double).preprocess(add_one)
    assert calls == []
    assert [e["x"] for e in _values(processed.create_tf_dataset_for_client("a"))] == [3, 5, 7]
    assert calls == ["double", "add_one"]
    assert processed.client_ids == client_data.client_ids
    assert processed.element_type_structure == client_data.element_type_structure
    # The base is untouched.
    assert [e["x"] for e in _values(client_data.create_tf_dataset_for_client("a"))] == [1, 2, 3]
    with pytest.raises(KeyError, match="'nope'"):
        processed.create_tf_dataset_for_client("nope")


def test_preprocess_that_changes_the_structure(client_data):
    only_x = client_data.preprocess(lambda ds: ds.map(lambda e: e["x"]).batch(2))
    assert only_x.element_type_structure == tf.TensorSpec((None,), tf.float32)
    assert _values(only_x.create_tf_dataset_for_client("a")) == [[1.0, 2.0], [3.0]]


def test_preprocess_refuses_what_does_not_make_datasets(client_data):
    with pytest.raises(TypeError, match="preprocess_fn must be a callable"):
        client_data.preprocess(3)
    broken = client_data.preprocess(lambda ds: [1, 2])
    with pytest.raises(TypeError, match="must return a tf.data.Dataset, got list"):
        broken.create_tf_dataset_for_client("a")


def test_serializable_dataset_fn_works_inside_tf_function(client_data):
    fn = client_data.preprocess(lambda ds: ds.map(lambda e: e["x"])).serializable_dataset_fn

    @tf.function(input_signature=[tf.TensorSpec((), tf.string)])
    def total(client_id):
        return fn(client_id).reduce(tf.constant(0.0), lambda acc, x: acc + x)

    assert total(tf.constant("a")).numpy() == 6.0
    assert total(tf.constant("c")).numpy() == 11.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown client id"):
        total(tf.constant("zz"))


def test_dataset_from_all_clients_holds_every_example_in_a_seeded_client_order(client_data):
    examples = _values(client_data.create_tf_dataset_from_all_clients(seed=7))
    assert sorted(e["x"] for e in examples) == [1, 2, 3, 4, 5, 6]
    assert examples == _values(client_data.create_tf_dataset_from_all_clients(seed=7))
    orders = {
        tuple(e["x"] for e in _values(client_data.create_tf_dataset_from_all_clients(seed=s)))
        for s in range(10)
    }
    assert len(orders) > 1
    # Each client's examples stay together and in order.
    for order in orders:
        position = order.index(1.0)
        assert order[position : position + 3] == (1.0, 2.0, 3.0)


def test_datasets_yields_shuffled_clients_up_to_a_limit(client_data):
    sizes = [len(_values(ds)) for ds in client_data.datasets(limit_count=2, seed=3)]
    assert len(sizes) == 2 and set(sizes) <= {1, 2, 3}
    assert sorted(len(_values(ds)) for ds in client_data.datasets()) == [1, 2, 3]


def test_from_clients_and_tf_fn():
    data = ClientData.from_clients_and_tf_fn(
        ["3", "5"], lambda cid: tf.data.Dataset.range(tf.strings.to_number(cid, tf.int64))
    )
    assert data.client_ids == ["3", "5"]
    assert data.element_type_structure == tf.TensorSpec((), tf.int64)
    assert _values(data.create_tf_dataset_for_client("3")) == [0, 1, 2]
    assert len(_values(data.create_tf_dataset_from_all_clients())) == 8
    with pytest.raises(ValueError, match="must be unique"):
        ClientData.from_clients_and_tf_fn(["a", "a"], lambda cid: tf.data.Dataset.range(1))


def test_train_test_client_split_is_disjoint_seeded_and_skips_empty_clients():
    data = TestClientData(
        {f"c{i}": np.arange(i % 3, dtype=np.int64) for i in range(12)}  # c0, c3, ... are empty
    )
    train, test = ClientData.train_test_client_split(data, 4, seed=1)
    assert len(test.client_ids) == 4 and len(train.client_ids) == 8
    assert set(train.client_ids) | set(test.client_ids) == set(data.client_ids)
    assert not set(train.client_ids) & set(test.client_ids)
    assert all(int(cid[1:]) % 3 != 0 for cid in test.client_ids)
    assert test.element_type_structure == data.element_type_structure
    again_train, again_test = ClientData.train_test_client_split(data, 4, seed=1)
    assert again_test.client_ids == test.client_ids
    with pytest.raises(KeyError):
        test.create_tf_dataset_for_client(train.client_ids[0])


def test_train_test_client_split_refuses_impossible_requests():
    data = TestClientData(
        {"a": np.arange(2), "b": np.array([], np.int64), "c": np.array([], np.int64)}
    )
    with pytest.raises(ValueError, match="between 1 and 2"):
        ClientData.train_test_client_split(data, 3)
    with pytest.raises(ValueError, match="only 1 clients have at least one example"):
        ClientData.train_test_client_split(data, 2)


def test_dataset_computation_loads_data_where_the_clients_are(client_data):
    import fed_core as fc
    import fed_tensorflow as ftf
    from fed_types import CLIENTS, FederatedType

    computation = client_data.dataset_computation
    assert computation is client_data.dataset_computation
    element = client_data.element_type_structure
    assert str(computation.type_signature) == f"(str -> {ftf.to_type(element)}*)"

    @ftf.computation(computation.type_signature.result)
    def count(dataset):
        return dataset.reduce(np.int64(0), lambda n, _: n + 1)

    @fc.federated_computation(FederatedType(np.str_, CLIENTS))
    def sizes(client_ids):
        return fc.federated_map(count, fc.federated_map(computation, client_ids))

    ids = list(client_data.client_ids)
    expected = [sum(1 for _ in client_data.create_tf_dataset_for_client(i)) for i in ids]
    assert sizes(ids) == expected
    with pytest.raises(Exception, match="nobody"):
        sizes(["nobody"])


def test_preprocessing_is_traced_once_for_all_clients():
    data = TestClientData({f"c{i}": np.arange(i + 1, dtype=np.int64) for i in range(20)})
    traces = []

    def square(ds):
        traces.append(ds.element_spec)
        return ds.map(lambda x: x * x)

    squared = data.preprocess(square)
    totals = [
        sum(int(x) for x in squared.create_tf_dataset_for_client(cid)) for cid in data.client_ids
    ]
    assert totals == [sum(k * k for k in range(i + 1)) for i in range(20)]
    # One trace serves every client (a trace per client grows memory over a long simulation).
    assert len(traces) == 1


def test_in_memory_dataset_from_all_clients_matches_the_generic_one(client_data):
    generic = ClientData.from_clients_and_tf_fn(
        client_data.client_ids, client_data.serializable_dataset_fn
    )
    for seed in range(5):
        assert _values(client_data.create_tf_dataset_from_all_clients(seed)) == _values(
            generic.create_tf_dataset_from_all_clients(seed)
        )


def _elements(dataset):
    return [tf.nest.map_structure(lambda t: t.numpy(), e) for e in dataset]


def _eager(examples):
    return tf.data.Dataset.from_tensor_slices(examples)


@pytest.mark.parametrize(
    "examples",
    [
        {"a": collections.OrderedDict(x=np.arange(12.0).reshape(6, 2), y=np.arange(6))},
        {"a": (np.arange(4, dtype=np.int32), np.array([b"p", b"q", b"r", b"s"]))},
        {"a": np.zeros((0, 3), np.float32), "b": np.ones((2, 3), np.float32)},
    ],
    ids=["dict", "tuple-with-strings", "empty-client"],
)
def test_in_memory_datasets_made_in_one_graph_call_equal_those_tf_data_makes(examples):
    data = TestClientData(examples)
    for client_id, client_examples in examples.items():
        dataset = data.create_tf_dataset_for_client(client_id)
        eager = _eager(client_examples)
        assert dataset.element_spec == eager.element_spec
        got, want = _elements(dataset), _elements(eager)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            tf.nest.map_structure(np.testing.assert_array_equal, g, w)
    assert data._factory._function is not None  # the pipeline was traced once and reused


def test_preprocessing_of_in_memory_data_is_traced_with_it_and_gives_the_same_datasets():
    rng = np.random.default_rng(0)
    examples = {
        f"c{k}": collections.OrderedDict(
            x=rng.normal(size=(5 + k, 3)).astype(np.float32), y=np.arange(5 + k)
        )
        for k in range(4)
    }

    def preprocess(dataset):
        return dataset.map(lambda e: (e["x"] * 2.0, e["y"] + 1)).batch(3)

    data = TestClientData(examples).preprocess(preprocess)
    for client_id, client_examples in examples.items():
        dataset = data.create_tf_dataset_for_client(client_id)
        eager = preprocess(_eager(client_examples))
        assert dataset.element_spec == eager.element_spec
        for g, w in zip(_elements(dataset), _elements(eager), strict=True):
            tf.nest.map_structure(np.testing.assert_array_equal, g, w)
    assert data._factory is not None and data._factory._function is not None


def test_preprocessing_that_cannot_be_traced_on_the_arrays_falls_back_to_the_dataset():
    data = TestClientData({"a": np.arange(3.0, dtype=np.float32)})
    calls = []

    def preprocess(dataset):
        calls.append(1)
        if len(calls) == 1:  # fails only the first time it is traced
            raise RuntimeError("not today")
        return dataset.map(lambda x: x + 1.0)

    preprocessed = data.preprocess(preprocess)
    assert [float(x) for x in preprocessed.create_tf_dataset_for_client("a")] == [1.0, 2.0, 3.0]
    assert preprocessed._factory is None


def _cohort_total(data, client_ids, strategy):
    """Each client's (number of examples, sum of x) from a map over their datasets as given."""
    import fed_tensorflow
    from fed_core.framework import ClientValues
    from fed_tensorflow._backend import LoadedTensorFlowComputation, backend
    from fed_types import SequenceType, TensorType

    element = collections.OrderedDict(
        x=TensorType(np.float32, [None]), y=TensorType(np.int64, [None])
    )

    def total(batches):
        return fed_tensorflow.fold_dataset(
            batches,
            (np.int32(0), np.float32(0)),
            lambda acc, b: (acc[0] + tf.size(b["y"]), acc[1] + tf.reduce_sum(b["x"])),
        )

    computation = fed_tensorflow.computation(total, SequenceType(element))
    fed_tensorflow.configure(map_strategy=strategy)
    try:
        loaded = LoadedTensorFlowComputation(computation.building_block, backend())
        # A round, then another: a data set's clients are looped over from its second round on.
        loaded.map(ClientValues([data.create_tf_dataset_for_client(c) for c in client_ids]), None)
        datasets = [data.create_tf_dataset_for_client(c) for c in client_ids]
        result = loaded.map(ClientValues(datasets), None)
    finally:
        fed_tensorflow.configure()
    return datasets, [(int(n), float(s)) for n, s in result.members()]


def test_a_cohort_of_in_memory_clients_is_made_inside_the_backends_loop(client_data):
    data = client_data.preprocess(lambda d: d.batch(2))
    order = ["c", "a", "b", "a"]
    datasets, looped = _cohort_total(data, order, "looped")
    assert all(d._made is None for d in datasets)  # none made in Python
    _, per_client = _cohort_total(data, order, "per_client")
    assert looped == per_client == [(2, 11.0), (3, 6.0), (1, 4.0), (3, 6.0)]


def test_in_memory_data_pickles_its_examples_once_after_rounds():
    import pickle

    rng = np.random.default_rng(0)
    data = TestClientData(
        {
            c: {"x": rng.normal(size=500).astype(np.float32), "y": np.arange(500)}
            for c in ("a", "b", "c")
        }
    )
    before = len(pickle.dumps(data))  # 18 kB of examples
    _cohort_total(data.preprocess(lambda d: d.batch(100)), ["a", "c"], "looped")
    assert "_column_tensors" in data.__dict__  # made for the rounds
    after = pickle.dumps(data)
    assert len(after) < before + 1000
    copy = pickle.loads(after)
    assert _values(copy.create_tf_dataset_for_client("c")) == _values(
        data.create_tf_dataset_for_client("c")
    )


def test_in_memory_arrays_are_held_once_shared_with_the_tensors_the_backend_reads():
    import pickle

    x = np.arange(12.0, dtype=np.float32).reshape(6, 2)
    data = TestClientData({"a": x[:4], "b": x[4:]})
    concatenated = data._columns[0]
    tensors = data._column_tensors
    # The tensor is made on the concatenated array's memory: no copy of the examples.
    assert data._columns[0] is concatenated
    assert np.shares_memory(concatenated, tensors[0]._numpy())
    assert not data._columns[0].flags.writeable
    np.testing.assert_array_equal(_values(data.create_tf_dataset_for_client("b")), x[4:].tolist())
    # Arrays that come back from a pickle are copied once, then shared; strings are converted.
    mixed = TestClientData(
        {"a": {"x": x[:4], "w": ["p", "q", "r", "s"]}, "b": {"x": x[4:], "w": ["t", "u"]}}
    )
    copy = pickle.loads(pickle.dumps(mixed))
    copy_tensors = copy._column_tensors
    by_dtype = {t.dtype: (t, column) for t, column in zip(copy_tensors, copy._columns, strict=True)}
    floats, float_column = by_dtype[tf.float32]
    assert np.shares_memory(float_column, floats._numpy())
    np.testing.assert_array_equal(floats, x)
    assert by_dtype[tf.string][0].numpy().tolist() == [b"p", b"q", b"r", b"s", b"t", b"u"]
    assert _values(copy.create_tf_dataset_for_client("b")) == _values(
        mixed.create_tf_dataset_for_client("b")
    )
