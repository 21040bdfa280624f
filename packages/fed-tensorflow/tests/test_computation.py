"""Tracing TensorFlow computations: parameter and result kinds, containers, polymorphism, errors."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_tensorflow._backend import LoadedTensorFlowComputation
from fed_types import CLIENTS, FederatedType, SequenceType, Struct, StructType, TensorType

Point = collections.namedtuple("Point", ["y", "x"])
F32 = TensorType(np.float32)


def test_tensor_parameter_and_result():
    @ftf.computation(TensorType(np.float32, [3]))
    def total(x):
        return tf.reduce_sum(x)

    assert str(total.type_signature) == "(float32[3] -> float32)"
    assert total(np.array([1.0, 2.0, 3.5], np.float32)) == 6.5
    assert total(tf.constant([1.0, 1.0, 1.0])) == 3.0


def test_no_parameter():
    @ftf.computation
    def answer():
        return tf.constant(42)

    assert str(answer.type_signature) == "( -> int32)"
    assert answer() == 42


def test_several_parameters_form_one_struct_parameter():
    @ftf.computation(np.int32, np.float32)
    def scale(n, x):
        return tf.cast(n, tf.float32) * x

    assert str(scale.type_signature) == "(<n=int32,x=float32> -> float32)"
    assert scale(3, 0.5) == 1.5
    assert scale(n=2, x=0.25) == 0.5


def test_struct_parameters_arrive_in_their_containers():
    @ftf.computation(Point(np.float32, np.float32))
    def swap(p):
        assert isinstance(p, Point)
        return Point(p.x, p.y)

    @ftf.computation([("a", np.int32), ("b", np.int32)])
    def combine(s):
        # A struct type without a container arrives as an OrderedDict, which tf.nest understands.
        assert isinstance(s, collections.OrderedDict)
        assert tf.nest.flatten(s) == [s["a"], s["b"]]
        return s["a"] * 100 + s["b"] * 10

    @ftf.computation(StructType([np.int32, np.int32]))
    def pair(s):
        assert type(s) is tuple
        return s[0] - s[1]

    @ftf.computation(StructType([("a", np.int32), np.int32]))
    def mixed(s):
        assert isinstance(s, Struct)
        return s.a - s[1]

    assert swap(Point(1.0, 2.0)) == Point(2.0, 1.0)
    assert swap.type_signature.result.python_container is Point
    assert combine(Struct.named(a=1, b=2)) == 120
    assert pair((5, 2)) == 3
    assert mixed(Struct([("a", 7), (None, 3)])) == 4


def test_result_containers_are_kept():
    @ftf.computation(np.float32)
    def stats(x):
        return collections.OrderedDict(double=x * 2, parts=(x, Point(y=x + 1, x=x - 1)))

    result = stats(np.float32(3.0))
    assert (
        str(stats.type_signature)
        == "(float32 -> <double=float32,parts=<float32,<y=float32,x=float32>>>)"
    )
    assert isinstance(result, collections.OrderedDict)
    assert isinstance(result["parts"], tuple) and isinstance(result["parts"][1], Point)
    assert result["parts"][1] == Point(4.0, 2.0)


def test_python_values_and_strings_in_results():
    @ftf.computation(TensorType(np.str_, [2]))
    def shout(words):
        return tf.strings.upper(words), 7, 0.5

    words, seven, half = shout(np.array(["ab", "cd"]))
    assert str(shout.type_signature) == "(str[2] -> <str[2],int32,float32>)"
    assert words.tolist() == [b"AB", b"CD"] and seven == 7 and half == 0.5  # bytes, as in TFF


def test_sequence_parameter_from_a_list_or_a_dataset():
    @ftf.computation(SequenceType(np.float32))
    def total(values):
        return values.reduce(np.float32(0), lambda acc, x: acc + x)

    assert str(total.type_signature) == "(float32* -> float32)"
    assert total([1.0, 2.0, 3.5]) == 6.5
    assert total([]) == 0.0
    assert total(tf.data.Dataset.range(4).map(lambda i: tf.cast(i, tf.float32))) == 6.0


def test_sequences_of_structs_in_any_container_order():
    element = collections.OrderedDict(
        y=tf.TensorSpec([None], tf.int32), x=tf.TensorSpec([None, 2], tf.float32)
    )

    @ftf.computation(tf.data.DatasetSpec(element))
    def weighted(batches):
        assert isinstance(batches.element_spec, collections.OrderedDict)
        return batches.reduce(
            np.float32(0),
            lambda acc, b: acc + tf.reduce_sum(tf.cast(b["y"], tf.float32)[:, None] * b["x"]),
        )

    batch = collections.OrderedDict(y=np.array([1, 2], np.int32), x=np.ones((2, 2), np.float32))
    small = collections.OrderedDict(y=np.array([3], np.int32), x=np.full((1, 2), 0.5, np.float32))
    assert weighted([batch, small]) == 9.0
    # tf.nest orders dict keys, fed orders them as inserted: both orders reach the graph correctly.
    data = tf.data.Dataset.from_tensors(
        dict(y=np.array([1, 2], np.int32), x=np.ones((2, 2), np.float32))
    )
    assert weighted(data) == 6.0
    as_points = tf.data.Dataset.from_tensors(
        Point(y=np.array([1], np.int32), x=np.ones((1, 2), np.float32))
    )
    assert weighted(as_points) == 2.0


def test_sequence_results_and_chained_computations():
    @ftf.computation(np.int64)
    def count_up(n):
        return tf.data.Dataset.range(n).map(lambda i: Point(y=i, x=tf.cast(i, tf.float32) / 2))

    @ftf.computation(count_up.type_signature.result)
    def total(points):
        return points.reduce(np.float32(0), lambda acc, p: acc + p.x + tf.cast(p.y, tf.float32))

    @fc.federated_computation(np.int64)
    def chained(n):
        return total(count_up(n))

    assert str(count_up.type_signature) == "(int64 -> <y=int64,x=float32>*)"
    assert count_up(np.int64(2)) == [Point(0, 0.0), Point(1, 0.5)]
    assert total(count_up(np.int64(3))) == 4.5
    assert chained(np.int64(3)) == 4.5


def test_polymorphic_computations_are_traced_once_per_argument_type():
    traces = []

    @ftf.computation
    def double(x):
        traces.append(x.dtype)
        return x * 2

    assert double(np.int32(3)) == 6
    assert double(np.float32(1.5)) == 3.0
    assert double(np.int32(4)) == 8
    assert traces == [tf.int32, tf.float32]
    assert double.concrete(TensorType(np.int32)) is double.concrete(TensorType(np.int32))


def test_tf_functions_are_accepted():
    @ftf.computation(np.float32)
    @tf.function
    def square(x):
        return x * x

    assert square(np.float32(3.0)) == 9.0


def test_captured_tensors_and_variables_are_frozen_at_tracing():
    offset = tf.Variable(1.0)
    weights = keras.Variable(np.array([2.0, 3.0], np.float32))

    @ftf.computation(np.float32)
    def affine(x):
        return x * weights + offset

    offset.assign(100.0)
    np.testing.assert_allclose(affine(np.float32(2.0)), [5.0, 7.0])


def test_calls_to_tensorflow_computations_are_inlined():
    @ftf.computation(np.float32, np.float32)
    def add(a, b):
        return a + b

    @ftf.computation(np.float32)
    def quadruple(x):
        twice = add(x, x)
        return add(twice, twice)

    assert quadruple(np.float32(1.5)) == 6.0
    [leaf] = [b for b in fc.framework.walk(quadruple.building_block)]
    assert leaf.frontend == "tensorflow"


def test_wrong_argument_fails_before_tensorflow_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(
        LoadedTensorFlowComputation, "__call__", lambda self, arg=None: calls.append(arg)
    )

    @ftf.computation(TensorType(np.float32, [3]))
    def total(x):
        return tf.reduce_sum(x)

    with pytest.raises(
        TypeError, match=r"(?i)calling .*total.*expected float32\[3\], given int32\[3\]"
    ):
        total(np.array([1, 2, 3], np.int32))
    with pytest.raises(TypeError, match=r"expected float32\[3\], given float32\[2\]"):
        total(np.zeros(2, np.float32))
    assert calls == []


def test_wrong_argument_in_a_federated_computation_names_both_types_and_the_line():
    @ftf.computation(np.float32)
    def half(x):
        return x / 2

    with pytest.raises(
        TypeError,
        match=r"calling half .*expected float32, given int32.*\n  at .*test_computation.py",
    ):

        @fc.federated_computation(np.int32)
        def halves(value):
            return half(value)


def test_wrong_argument_in_an_inlined_call_names_both_types():
    @ftf.computation(TensorType(np.float32, [2]))
    def first(x):
        return x[0]

    with pytest.raises(TypeError, match=r"calling first .*expected float32\[2\], given int32\[2\]"):

        @ftf.computation(TensorType(np.int32, [2]))
        def caller(x):
            return first(x)


def test_federated_computations_cannot_be_called_inside():
    @fc.federated_computation(np.float32)
    def identity(x):
        return x

    with pytest.raises(TypeError, match="Only TensorFlow computations"):

        @ftf.computation(np.float32)
        def caller(x):
            return identity(x)


def test_parameter_types_must_be_tensors_sequences_or_structs():
    with pytest.raises(TypeError, match=r"parameter .*\{float32\}@CLIENTS"):

        @ftf.computation(FederatedType(np.float32, CLIENTS))
        def federated(x):
            return x


def test_results_must_be_tensors_datasets_or_containers():
    with pytest.raises(TypeError, match="returned None"):

        @ftf.computation(np.float32)
        def nothing(x):
            tf.print(x)

    with pytest.raises(TypeError, match="expected tensors, datasets, or containers"):

        @ftf.computation(np.float32)
        def function(x):
            return print


def test_changing_a_variable_created_outside_is_refused():
    counter = tf.Variable(0.0)

    with pytest.raises(ValueError, match=r"changes the variable .*AssignAddVariableOp"):

        @ftf.computation(np.float32)
        def count(x):
            counter.assign_add(x)
            return x


def test_a_model_and_an_optimizer_created_inside_live_for_one_call():
    """TFF's semantics: variables created in a computation are initialized from their initializers on
    every call; a Keras optimizer's step counter starts from zero each time."""

    @ftf.computation(TensorType(np.float32, [4, 2]), TensorType(np.float32, [4, 1]))
    def fit(x, y):
        model = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")]
        )
        optimizer = keras.optimizers.SGD(0.1)
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x) - y) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.convert_to_tensor(model.trainable_variables[0]), optimizer.iterations

    x = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    y = np.array([[1], [2], [3], [0]], np.float32)
    first, second = fit(x, y), fit(x, y)
    np.testing.assert_array_equal(first[0], second[0])  # fresh zeros, not the last call's weights
    assert first[1] == second[1] == 3
    # Three steps of gradient descent from zeros, computed by hand in numpy.
    w = np.zeros((2, 1), np.float32)
    b = np.zeros((1,), np.float32)
    for _ in range(3):
        error = x @ w + b - y
        w, b = w - 0.1 * 2 * x.T @ error / 4, b - 0.1 * 2 * error.mean(axis=0)
    np.testing.assert_allclose(first[0], w, rtol=1e-5)


def test_state_created_inside_serializes_and_clients_get_their_own():
    @ftf.computation(np.float32)
    def count_up(x):
        counter = tf.Variable(0.0)
        for _ in range(3):
            counter.assign_add(x)
        return counter.read_value()

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def on_clients(values):
        return fc.federated_map(count_up, values)

    values = [float(v) for v in range(20)]
    assert on_clients(values) == [3 * v for v in values]
    restored = deserialize_computation(serialize_computation(count_up))
    assert restored(np.float32(2.0)) == 6.0 == restored(np.float32(2.0))


def test_variables_made_from_parameters_live_for_one_call():
    @ftf.computation(TensorType(np.float32, [2]), TensorType(np.float32, [2]))
    def fit(weights, target):
        w = tf.Variable(weights)
        for _ in range(2):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((w - target) ** 2)
            w.assign_sub(0.25 * tape.gradient(loss, w))
        return w.read_value()

    zeros, ones = np.zeros(2, np.float32), np.ones(2, np.float32)
    np.testing.assert_allclose(fit(zeros, ones), [0.75, 0.75])
    np.testing.assert_allclose(fit(zeros, ones), [0.75, 0.75])  # a fresh variable each call


def test_struct_types_without_names_or_containers():
    @ftf.computation(StructType([F32, F32]))
    def ratio(pair):
        return pair[0] / pair[1]

    assert ratio((1.0, 4.0)) == 0.25


def test_a_private_function_becomes_a_computation_that_runs():
    def _add_one(x):
        return x + 1.0

    computation = ftf.computation(_add_one, np.float32)
    assert computation(np.float32(1.0)) == 2.0


def test_a_computation_may_return_nothing():
    @ftf.computation(np.float32)
    def nothing(x):
        return ()

    assert str(nothing.type_signature) == "(float32 -> <>)"
    assert nothing(np.float32(1.0)) == ()


def test_strings_come_back_as_bytes_as_in_tff():
    hello = ftf.computation(lambda: "Hello, World!")
    assert hello() == b"Hello, World!"

    @ftf.computation(TensorType(np.str_))
    def length(text):
        return tf.strings.length(text, unit="UTF8_CHAR")

    assert length("泡泡") == 2
    assert length("泡泡".encode()) == 2


def test_no_table_initializer_warnings_after_a_lookup_table_was_made(caplog):
    tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(["a"]), tf.constant([1])), -1
    )

    @ftf.computation(np.float32)
    def add_one(x):
        return x + 1

    with caplog.at_level("WARNING", logger="tensorflow"):
        assert add_one(np.float32(1.0)) == 2.0
    assert "table_initializer" not in caplog.text


def test_a_lookup_table_made_inside_lives_for_one_call_also_in_a_nested_function():
    keys = tf.constant([1, 2, 3], tf.int64)
    values = tf.constant([10, 20, 30], tf.int64)

    @ftf.computation(TensorType(np.int64, [3]))
    def direct(x):
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)
        return table.lookup(x)

    @ftf.computation(TensorType(np.int64, [3]))
    def nested(x):
        @tf.function
        def look(x):
            initializer = tf.lookup.KeyValueTensorInitializer(x, 2 * x)
            return tf.lookup.StaticHashTable(initializer, -1).lookup(
                tf.constant([1, 3, 5], tf.int64)
            )

        return look(x)

    np.testing.assert_array_equal(direct(np.array([1, 3, 5])), [10, 30, -1])
    # Each call builds its table from that call's argument.
    np.testing.assert_array_equal(nested(np.array([1, 3, 4])), [2, 6, -1])
    np.testing.assert_array_equal(nested(np.array([5, 7, 9])), [-1, -1, 10])


def test_a_lookup_table_made_inside_serves_a_dataset_map_on_every_client():
    @ftf.computation(SequenceType(TensorType(np.int64)))
    def total(dataset):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([1, 2, 3], tf.int64), tf.constant([10, 20, 30], tf.int64)
            ),
            -1,
        )
        return dataset.map(table.lookup).reduce(tf.constant(0, tf.int64), lambda a, b: a + b)

    @fc.federated_computation(FederatedType(SequenceType(TensorType(np.int64)), CLIENTS))
    def on_clients(datasets):
        return fc.federated_map(total, datasets)

    assert on_clients([[1, 2], [3], [5, 5]]) == [30, 30, -2]


def test_a_nested_function_reduces_a_dataset_that_reads_state_made_inside():
    # Freezing inlines `scaled_total`, passing the variable and the table into it through an
    # `Identity` each, which the dataset captures: loading such a graph must finish (TensorFlow's
    # automatic control dependencies looped forever on those aliases).
    @ftf.computation(SequenceType(TensorType(np.int64)), np.float32)
    def total(dataset, scale):
        weight = tf.Variable(scale)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([1, 2], tf.int64), tf.constant([10.0, 20.0])
            ),
            -1.0,
        )

        @tf.function
        def scaled_total(dataset):
            weight.assign_add(1.0)
            scaled = dataset.map(lambda x: weight * table.lookup(x))
            return scaled.reduce(tf.constant(0.0), lambda a, b: a + b)

        return scaled_total(dataset)

    @fc.federated_computation(
        FederatedType(SequenceType(TensorType(np.int64)), CLIENTS),
        FederatedType(np.float32, CLIENTS),
    )
    def on_clients(datasets, scales):
        return fc.federated_map(total, (datasets, scales))

    assert total([1, 2, 3], np.float32(1.0)) == 2.0 * (10.0 + 20.0 - 1.0)
    assert on_clients([[1], [2, 2]], [0.0, 2.0]) == [10.0, 3.0 * 40.0]
