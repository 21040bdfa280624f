import collections

import numpy as np
import pytest

import fed_types
from fed_types import Struct, parse_type, types


@pytest.mark.parametrize(
    ("text", "floats", "integers", "tensors"),
    [
        ("float32", True, False, True),
        ("float16[2,?]", True, False, True),
        ("complex64", False, False, True),
        ("int8", False, True, True),
        ("uint64[3]", False, True, True),
        ("bool", False, False, True),
        ("str", False, False, True),
        ("<>", True, True, True),
        ("<a=float32,b=<float64[2]>>", True, False, True),
        ("<int32,<int64>>", False, True, True),
        ("<float32,int32>", False, False, True),
        ("{<float32,x=float64>}@CLIENTS", True, False, False),
        ("int32@SERVER", False, True, False),
        ("float32*", False, False, False),
        ("<float32*>", False, False, False),
        ("(float32 -> float32)", False, False, False),
        ("T", False, False, False),
        ("placement", False, False, False),
    ],
)
def test_structure_predicates(text, floats, integers, tensors):
    t = parse_type(text)
    assert types.is_structure_of_floats(t) is floats
    assert types.is_structure_of_integers(t) is integers
    assert types.is_structure_of_tensors(t) is tensors


def test_traversal_helpers():
    t = parse_type("<a=int32,b=<float32,{int32*}@CLIENTS>>")
    assert [str(x) for x in types.preorder(t)] == [
        "<a=int32,b=<float32,{int32*}@CLIENTS>>",
        "int32",
        "<float32,{int32*}@CLIENTS>",
        "float32",
        "{int32*}@CLIENTS",
        "int32*",
        "int32",
    ]
    is_int32 = lambda x: x == types.TensorType(np.int32)  # noqa: E731
    assert types.count(t, is_int32) == 2
    assert types.contains(t, lambda x: isinstance(x, types.SequenceType))
    assert not types.contains(t, lambda x: isinstance(x, types.FunctionType))
    assert types.contains_only(
        parse_type("<int32,<int32>>"), lambda x: not isinstance(x, types.SequenceType)
    )
    assert not types.contains_only(t, lambda x: isinstance(x, (types.StructType, types.TensorType)))


def test_serialization_and_containers_are_reachable_under_tff_names():
    t = types.to_type(collections.OrderedDict(a=np.int32))
    assert types.deserialize_type(types.serialize_type(t)).is_identical_to(t)
    assert types.type_to_py_container(Struct([("a", 1)]), t) == collections.OrderedDict(a=1)
    assert types.at_clients(np.int32) == parse_type("{int32}@CLIENTS")
    assert types.at_server(np.int32) == parse_type("int32@SERVER")
    assert types.placement_from_uri("clients") is types.CLIENTS
    assert types.infer_type(1.0) == types.TensorType(np.float32)


def test_public_names():
    for module in (fed_types, types):
        for name in module.__all__:
            assert hasattr(module, name), name
    assert fed_types.types is types


def _is_float(t):
    return t.dtype.kind == "f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("float32", True),
        ("float64[2,?]", True),
        ("int32", False),
        ("<>", True),
        ("<<>,<<>>>", True),
        ("<a=float32,b=<float16[3],c=<>>>", True),
        ("<a=float32,b=<float16[3],int32>>", False),
        ("{float32}@CLIENTS", False),
        ("<float32@SERVER>", False),
        ("float32*", False),
        ("<float32*>", False),
        ("(float32 -> float32)", False),
        ("T", False),
        ("placement", False),
    ],
)
def test_is_structure_of(text, expected):
    assert fed_types.is_structure_of(parse_type(text), _is_float) is expected


def test_is_structure_of_gives_the_predicate_each_tensor_type():
    seen = []
    assert fed_types.is_structure_of(
        parse_type("<a=int32,b=<float32[2],str>>"), lambda t: seen.append(t) is None
    )
    assert [str(t) for t in seen] == ["int32", "float32[2]", "str"]
    assert fed_types.is_structure_of(parse_type("<>"), lambda t: False)


def test_is_structure_of_is_public():
    assert fed_types.is_structure_of is types.is_structure_of
    assert "is_structure_of" in fed_types.__all__ and "is_structure_of" in types.__all__


@pytest.mark.parametrize(
    "text", ["<a=float32,b={<int32>}@CLIENTS>", "<{float32}@CLIENTS,float64@SERVER>"]
)
def test_structure_predicates_look_inside_nested_federated_types(text):
    t = parse_type(text)
    assert types.is_structure_of_floats(t) is ("int32" not in text)
    assert not types.is_structure_of_integers(t)
    assert not types.is_structure_of_tensors(t)
