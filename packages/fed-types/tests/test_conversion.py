import collections
import dataclasses
from typing import Any, NamedTuple

import numpy as np
import pytest

from fed_types import (
    CLIENTS,
    UNKNOWN_RANK,
    AbstractType,
    FederatedType,
    FunctionType,
    SequenceType,
    Struct,
    StructType,
    StructWithPythonType,
    TensorType,
    at_clients,
    at_server,
    from_python_container,
    infer_type,
    parse_type,
    to_python_container,
    to_type,
    type_to_py_container,
)


class Point(NamedTuple):
    x: Any
    y: Any


@dataclasses.dataclass
class Batch:
    features: Any
    label: Any


class FakeTensorSpec:
    """Stands for a framework's tensor spec: only `dtype` and `shape`."""

    def __init__(self, dtype, shape):
        self.dtype = dtype
        self.shape = shape


class FakeDatasetSpec:
    def __init__(self, element_spec):
        self.element_spec = element_spec


class TestToType:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            (np.int32, "int32"),
            (np.dtype("float64"), "float64"),
            (np.bool_, "bool"),
            (np.str_, "str"),
            (int, "int32"),
            (float, "float32"),
            (bool, "bool"),
            (str, "str"),
            ("uint8", "uint8"),
            ("string", "str"),
            ((np.float32, [10]), "float32[10]"),
            ((np.float32, [None]), "float32[?]"),
            ((np.float32, (10, None)), "float32[10,?]"),
            ((np.int64, 3), "int64[3]"),
            ((np.int64, []), "int64"),
            ((np.float32, UNKNOWN_RANK), "float32[*]"),
            ((int, [2]), "int32[2]"),
            (FakeTensorSpec(np.float32, (None, 28, 28)), "float32[?,28,28]"),
            (FakeDatasetSpec(FakeTensorSpec(np.int32, ())), "int32*"),
            (FakeDatasetSpec({"x": FakeTensorSpec(np.float32, [None])}), "<x=float32[?]>*"),
            ([np.int32, np.bool_], "<int32,bool>"),
            ((np.int32, np.bool_), "<int32,bool>"),
            ([("a", np.int32), ("b", np.bool_)], "<a=int32,b=bool>"),
            (("a", np.int32), "<a=int32>"),
            ([("a", np.int32), np.bool_], "<a=int32,bool>"),
            ((np.int32, (np.float32, np.bool_)), "<int32,<float32,bool>>"),
            ((np.int32, (("x", np.float32), np.bool_)), "<int32,<x=float32,bool>>"),
            (
                ((np.int32, [1]), (("x", (np.float32, [2])), (np.bool_, [3]))),
                "<int32[1],<x=float32[2],bool[3]>>",
            ),
            (("float32", "int32"), "<float32,int32>"),
            (("float32", [2]), "float32[2]"),
            ([("float32", [2]), ("b", "bool")], "<float32[2],b=bool>"),
            ({"b": np.int32, "a": [np.float32]}, "<b=int32,a=<float32>>"),
            (collections.OrderedDict([("a", np.int32), ("b", np.bool_)]), "<a=int32,b=bool>"),
            (Point(np.int32, (np.float32, [2])), "<x=int32,y=float32[2]>"),
            (
                Batch(features=(np.float32, [None, 3]), label=np.int64),
                "<features=float32[?,3],label=int64>",
            ),
            (Struct([("a", np.int32), (None, np.bool_)]), "<a=int32,bool>"),
            ([], "<>"),
            ({}, "<>"),
            (at_clients(np.int32), "{int32}@CLIENTS"),
            (
                [at_server(np.int32), FunctionType(None, AbstractType("T"))],
                "<int32@SERVER,( -> T)>",
            ),
        ],
    )
    def test_spec_forms(self, spec, expected):
        assert str(to_type(spec)) == expected
        assert to_type(spec) == parse_type(expected)

    def test_a_type_is_returned_as_is(self):
        t = StructWithPythonType([np.int32], list)
        assert to_type(t) is t

    @pytest.mark.parametrize(
        ("spec", "container"),
        [
            ([np.int32], list),
            ((np.int32,), tuple),
            ({"a": np.int32}, dict),
            (collections.OrderedDict(a=np.int32), collections.OrderedDict),
            (Point(np.int32, np.int32), Point),
            (Batch(np.int32, np.int32), Batch),
            ([("a", np.int32)], None),
            (("a", np.int32), None),
            (Struct([("a", np.int32)]), None),
        ],
    )
    def test_containers_are_kept(self, spec, container):
        assert to_type(spec).python_container is container

    def test_nested_containers_are_kept(self):
        t = to_type({"a": [np.int32, (np.float32, np.bool_)], "b": Point(np.int32, np.int32)})
        assert t.python_container is dict
        assert t.a.python_container is list
        assert t.a[1].python_container is tuple
        assert t.b.python_container is Point

    def test_a_pair_of_dtype_and_non_shape_is_a_struct(self):
        assert to_type((np.float32, np.int32)) == StructType([np.float32, np.int32])
        assert to_type((np.float32, [np.int32])) == StructType([np.float32, StructType([np.int32])])

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            (None, "got None"),
            (3, "Expected a type spec .* got 3 of Python type int"),
            ("hello", "'hello', which is not a dtype name"),
            (np.zeros(3), "got the value .* infer_type gives a value's type"),
            (np.float32(1.0), "infer_type"),
            ({1: np.int32}, "Expected the keys of a dict to be element names"),
            ([np.int32, "nope"], "'nope', which is not a dtype name"),
            (Batch, "got the class Batch: pass an instance"),
            ([("a", np.int32), ("a", np.int32)], "Duplicate element name 'a'"),
            (object(), "Expected a type spec"),
            (np.object_, "Unsupported dtype object"),
        ],
    )
    def test_errors(self, spec, message):
        with pytest.raises((TypeError, ValueError), match=message):
            to_type(spec)

    def test_sparse_and_ragged_specs_are_structs_of_their_components(self):
        class SparseSpec(FakeTensorSpec):
            value_type = type("SparseTensor", (), {})

        class RaggedSpec(FakeTensorSpec):
            value_type = type("RaggedTensor", (), {})
            ragged_rank = 1
            row_splits_dtype = np.int64

        sparse = to_type(SparseSpec(np.float32, [None, 5]))
        assert str(sparse) == "<indices=int64[?,2],values=float32[?],dense_shape=int64[2]>"
        assert sparse.python_container is SparseSpec.value_type
        ragged = to_type(RaggedSpec(np.int32, [None, None, 3]))
        assert str(ragged) == "<flat_values=int32[?,3],nested_row_splits=<int64[?]>>"
        assert ragged.python_container is RaggedSpec.value_type

    def test_other_non_dense_specs_are_refused(self):
        class IndexedSlicesSpec(FakeTensorSpec):
            value_type = type("IndexedSlices", (), {})

        with pytest.raises(TypeError, match="Expected a dense, sparse or ragged tensor spec"):
            to_type(IndexedSlicesSpec(np.int32, [None, None]))

    def test_attrs_instances(self):
        attrs = pytest.importorskip("attrs")

        @attrs.define
        class Example:
            pixels: Any
            _label: Any

        t = to_type(Example((np.float32, [28, 28]), np.int32))
        assert str(t) == "<pixels=float32[28,28],_label=int32>"
        assert t.python_container is Example
        with pytest.raises(TypeError, match="got the class .*Example: pass an instance"):
            to_type(Example)


class TestInferType:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, "bool"),
            (np.bool_(False), "bool"),
            (1, "int32"),
            (-(2**31), "int32"),
            (2**31 - 1, "int32"),
            (2**31, "int64"),
            (-(2**31) - 1, "int64"),
            (2**63 - 1, "int64"),
            (1.5, "float32"),
            ("text", "str"),
            (b"bytes", "str"),
            (np.str_("x"), "str"),
            (np.float64(1.0), "float64"),
            (np.int8(3), "int8"),
            (np.uint64(3), "uint64"),
            (np.complex64(1j), "complex64"),
            (np.float16(0.5), "float16"),
            (np.zeros((2, 3), np.float32), "float32[2,3]"),
            (np.array([1, 2, 3], np.int64), "int64[3]"),
            (np.array(["a", "bc"]), "str[2]"),
            (np.array(True), "bool"),
            (np.zeros((0, 4), np.uint8), "uint8[0,4]"),
            ([1, 2.0], "<int32,float32>"),
            ((1, "a"), "<int32,str>"),
            ([], "<>"),
            ({"b": 1, "a": 2.0}, "<b=int32,a=float32>"),
            (collections.OrderedDict(x=[True]), "<x=<bool>>"),
            (Point(1, np.zeros(2)), "<x=int32,y=float64[2]>"),
            (
                Batch(features=np.zeros((4, 2), np.float32), label=np.arange(4)),
                "<features=float32[4,2],label=int64[4]>",
            ),
            ([("a", 1), ("b", 2.0)], "<a=int32,b=float32>"),
            ((("a", 1),), "<a=int32>"),
            ([("a", 1), 2], "<<str,int32>,int32>"),
            ([("not an identifier", 1)], "<<str,int32>>"),
            (Struct([("a", 1), (None, [2])]), "<a=int32,<int32>>"),
            (
                {"a": {"b": [np.zeros(3, np.float32), (1, True)]}},
                "<a=<b=<float32[3],<int32,bool>>>>",
            ),
        ],
    )
    def test_value_forms(self, value, expected):
        t = infer_type(value)
        assert str(t) == expected
        assert to_type(t) == t

    @pytest.mark.parametrize(
        ("value", "container"),
        [
            ([1], list),
            ((1,), tuple),
            ({"a": 1}, dict),
            (collections.OrderedDict(a=1), collections.OrderedDict),
            (Point(1, 2), Point),
            (Batch(1, 2), Batch),
            ([("a", 1)], None),
            (Struct([("a", 1)]), None),
        ],
    )
    def test_containers_are_kept(self, value, container):
        assert infer_type(value).python_container is container

    def test_typed_values_give_their_type_signature(self):
        class Typed:
            type_signature = at_clients(np.float32)

        assert infer_type(Typed()) == at_clients(np.float32)

    def test_tensor_and_dataset_like_values(self):
        class FakeDtype:
            name = "float32"
            as_numpy_dtype = np.float32
            is_floating = True

        class FakeTensor:
            dtype = FakeDtype()
            shape = (2, None)

        class FakeDataset:
            element_spec = (FakeTensorSpec(np.int32, [None]), FakeTensorSpec(np.str_, []))

            def __iter__(self):
                return iter(())

        assert infer_type(FakeTensor()) == TensorType(np.float32, [2, None])
        assert infer_type(FakeDataset()) == SequenceType(StructType([(np.int32, [None]), np.str_]))

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (None, "None"),
            (2**63, "does not fit in int64"),
            (-(2**63) - 1, "does not fit in int64"),
            (object(), "Cannot infer the fed type of <object object"),
            ({1, 2}, "of Python type set"),
            (1j, "of Python type complex"),
            (np.array([object()]), "Unsupported dtype object"),
            ({3: 1}, "Expected the keys of a dict to be element names"),
            ([1, None], "None"),
            (TensorType(np.int32), "got the type int32: to_type converts type specs"),
        ],
    )
    def test_errors(self, value, message):
        with pytest.raises(TypeError, match=message):
            infer_type(value)

    def test_attrs_instances(self):
        attrs = pytest.importorskip("attrs")

        @attrs.frozen
        class Metrics:
            loss: Any
            accuracy: Any

        t = infer_type(Metrics(loss=np.float32(0.5), accuracy=1.0))
        assert str(t) == "<loss=float32,accuracy=float32>"
        assert t.python_container is Metrics


class TestContainers:
    def test_from_python_container(self):
        value = {"a": [1, (2.0, np.zeros(2))], "b": Point(x="s", y=Batch(1, 2))}
        s = from_python_container(value)
        assert isinstance(s, Struct)
        assert s.names() == ("a", "b")
        assert isinstance(s.a, Struct) and s.a.names() == (None, None)
        assert s.a[0] == 1
        assert s.a[1][0] == 2.0
        assert np.array_equal(s.a[1][1], np.zeros(2))
        assert s.b.x == "s"
        assert s.b.y.names() == ("features", "label")
        assert s.b.y.label == 2

    def test_from_python_container_of_pairs_and_structs(self):
        assert from_python_container([("a", 1), ("b", 2)]) == Struct([("a", 1), ("b", 2)])
        assert from_python_container(Struct([("a", {"x": 1})])) == Struct(
            [("a", Struct([("x", 1)]))]
        )

    @pytest.mark.parametrize("leaf", [1, "text", np.zeros(3), None])
    def test_from_python_container_needs_a_container(self, leaf):
        with pytest.raises(TypeError, match="Expected a Python container"):
            from_python_container(leaf)

    @pytest.mark.parametrize(
        "value",
        [
            [1, 2.0],
            (1, [True, "x"]),
            {"a": 1, "b": {"c": (2, 3)}},
            collections.OrderedDict(b=1, a=2),
            Point(1, Point(2, 3)),
            Batch(features=[1, 2], label={"y": 3}),
            [],
            (),
            {},
        ],
    )
    def test_round_trip_restores_the_containers(self, value):
        back = to_python_container(from_python_container(value), infer_type(value))
        assert back == value
        assert type(back) is type(value)
        assert infer_type(back).is_identical_to(infer_type(value))

    def test_round_trip_of_attrs_instances(self):
        attrs = pytest.importorskip("attrs")

        @attrs.define
        class Private:
            _hidden: Any
            shown: Any

        value = Private(hidden=[1], shown={"a": 2})
        back = to_python_container(from_python_container(value), infer_type(value))
        assert back == value and isinstance(back, Private)

    def test_structs_without_container(self):
        assert to_python_container(
            Struct([("a", 1), ("b", 2)]), parse_type("<a=int32,b=int32>")
        ) == (collections.OrderedDict(a=1, b=2))
        unnamed = to_python_container(Struct.unnamed(1, 2), parse_type("<int32,int32>"))
        assert unnamed == (1, 2) and type(unnamed) is tuple
        assert to_python_container(Struct([]), parse_type("<>")) == ()
        mixed = to_python_container(Struct([("a", 1), (None, 2)]), parse_type("<a=int32,int32>"))
        assert mixed == Struct([("a", 1), (None, 2)])

    def test_unnamed_value_takes_the_names_of_the_type(self):
        t = to_type(collections.OrderedDict(a=np.int32, b=np.int32))
        assert to_python_container(Struct.unnamed(1, 2), t) == collections.OrderedDict(a=1, b=2)
        assert to_python_container(
            Struct.unnamed(1, 2), to_type(Point(np.int32, np.int32))
        ) == Point(1, 2)

    def test_leaves_and_converted_values_are_left_alone(self):
        array = np.ones(2)
        assert to_python_container(array, parse_type("float64[2]")) is array
        already = {"a": 1}
        assert to_python_container(already, to_type({"a": np.int32})) is already
        assert to_python_container(5, parse_type("T")) == 5

    def test_federated_and_sequence_values(self):
        member = to_type(Point(np.int32, np.int32))
        clients = [Struct.unnamed(1, 2), Struct.unnamed(3, 4)]
        assert to_python_container(clients, at_clients(member)) == [Point(1, 2), Point(3, 4)]
        assert to_python_container(Struct.unnamed(1, 2), at_server(member)) == Point(1, 2)
        assert to_python_container(
            Struct.unnamed(1, 2), FederatedType(member, CLIENTS, True)
        ) == Point(1, 2)
        assert to_python_container(clients, SequenceType(member)) == [Point(1, 2), Point(3, 4)]
        dataset = object()
        assert to_python_container(dataset, SequenceType(member)) is dataset
        with pytest.raises(
            TypeError,
            match=r"one member per client for a value of type {<x=int32,y=int32>}@CLIENTS",
        ):
            to_python_container(Struct.unnamed(1, 2), at_clients(member))

    def test_type_specs_are_converted(self):
        assert to_python_container(Struct.unnamed(1, 2), [np.int32, np.int32]) == [1, 2]

    @pytest.mark.parametrize(
        ("value", "type_spec", "error", "message"),
        [
            (
                Struct([("b", 1)]),
                {"a": np.int32},
                ValueError,
                "named 'b' but type <a=int32> names it 'a'",
            ),
            (
                Struct.unnamed(1),
                [np.int32, np.int32],
                ValueError,
                "1 elements does not fit type <int32,int32>",
            ),
            (
                Struct([("a", 1)]),
                StructWithPythonType([("a", np.int32)], list),
                ValueError,
                "it has named elements, and a list has no names",
            ),
            (
                Struct.unnamed(1),
                StructWithPythonType([np.int32], dict),
                ValueError,
                "every element needs a name",
            ),
            (
                Struct([("a", 1), ("z", 2)]),
                StructWithPythonType([("a", np.int32), ("z", np.int32)], Batch),
                TypeError,
                "Cannot build a Batch for type <a=int32,z=int32>",
            ),
        ],
    )
    def test_errors(self, value, type_spec, error, message):
        with pytest.raises(error, match=message):
            to_python_container(value, type_spec)

    def test_struct_as_container(self):
        t = StructWithPythonType([("a", np.int32), np.int32], Struct)
        assert to_python_container(Struct([("a", 1), (None, 2)]), t) == Struct(
            [("a", 1), (None, 2)]
        )

    def test_tff_name(self):
        assert type_to_py_container is to_python_container
