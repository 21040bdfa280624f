"""What fed-types' public entry points do with the inputs a new user gets wrong: each case names the
error type and words of its message that say what was expected and what was given."""

import collections
import dataclasses
import math

import numpy as np
import pytest

import fed_types
from fed_types import (
    CLIENTS,
    MAX_NESTING,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    Placement,
    SequenceType,
    Struct,
    StructType,
    StructWithPythonType,
    TensorType,
    TypeNotationError,
    at_clients,
    deserialize_type,
    from_python_container,
    infer_type,
    parse_type,
    placement_from_name,
    placement_from_uri,
    serialize_type,
    structure,
    to_dtype,
    to_python_container,
    to_type,
    types,
)


@dataclasses.dataclass
class Point:
    x: object
    y: object


def nested_struct(depth):
    """A serialized struct type nested `depth` levels deep around a float32."""
    node = {"kind": "tensor", "dtype": "float32", "shape": []}
    for _ in range(depth):
        node = {"kind": "struct", "elements": [{"name": None, "type": node}]}
    return {"version": 1, "type": node}


TENSOR = {"kind": "tensor", "dtype": "int32", "shape": []}

CASES = {
    # dtypes and shapes
    "dtype None": (lambda: to_dtype(None), TypeError, ["Expected a dtype", "None"]),
    "dtype numpy abbreviation": (lambda: to_dtype("f4"), TypeError, ["'f4'", "float32"]),
    "dtype object": (lambda: TensorType(object), TypeError, ["Unsupported dtype object", "int32"]),
    "dtype datetime": (lambda: TensorType(np.datetime64), TypeError, ["datetime64", "float32"]),
    "dtype an int": (lambda: to_dtype(5), TypeError, ["Expected a dtype", "5 of type int"]),
    "shape negative": (
        lambda: TensorType(np.float32, [-2]),
        TypeError,
        ["int in [0, 2**63 - 1] or None", "-2"],
    ),
    "shape float dim": (lambda: TensorType(np.float32, [2.0]), TypeError, ["int in", "2.0"]),
    "shape bool dim": (lambda: TensorType(np.float32, [True]), TypeError, ["int in", "True"]),
    "shape NaN dim": (lambda: TensorType(np.float32, [math.nan]), TypeError, ["int in", "nan"]),
    "shape beyond int64": (lambda: TensorType(np.float32, [2**70]), TypeError, ["2**63 - 1", "2"]),
    "shape a string": (lambda: TensorType(np.float32, "abc"), TypeError, ["a shape", "'abc'"]),
    "shape a dict": (lambda: TensorType(np.float32, {1: 2}), TypeError, ["a shape", "{1: 2}"]),
    "shape a set": (lambda: TensorType(np.float32, {3}), TypeError, ["a shape", "{3}"]),
    "shape a float": (lambda: TensorType(np.float32, 3.5), TypeError, ["a shape", "3.5"]),
    # type constructors
    "struct of an int": (lambda: StructType(5), TypeError, ["elements of a struct", "got 5"]),
    "struct element not a spec": (lambda: StructType([1]), TypeError, ["a type spec", "got 1"]),
    "struct duplicate names": (
        lambda: StructType([("a", np.int32), ("a", np.int32)]),
        ValueError,
        ["Duplicate element name 'a'"],
    ),
    "struct name not identifier": (
        lambda: StructType([("1a", np.int32)]),
        ValueError,
        ["Python identifiers", "'1a'"],
    ),
    "struct container a string": (
        lambda: StructType([np.int32], "dict"),
        TypeError,
        ["a class (such as dict", "'dict' of Python type str"],
    ),
    "struct container an int": (
        lambda: StructType([np.int32], 5),
        TypeError,
        ["a class", "5 of Python type int"],
    ),
    "struct with python type not a class": (
        lambda: StructWithPythonType([np.int32], "x"),
        TypeError,
        ["Python container type", "'x'"],
    ),
    "sequence of None": (lambda: SequenceType(None), TypeError, ["a type spec", "None"]),
    "sequence of federated": (
        lambda: SequenceType(at_clients(np.int32)),
        TypeError,
        ["cannot hold FederatedTypes", "{int32}@CLIENTS"],
    ),
    "function result None": (
        lambda: FunctionType(np.int32, None),
        TypeError,
        ["a type spec", "None"],
    ),
    "federated placement a string": (
        lambda: FederatedType(np.int32, "CLIENTS"),
        TypeError,
        ["a placement (CLIENTS or SERVER)", "'CLIENTS'"],
    ),
    "federated all_equal a string": (
        lambda: FederatedType(np.int32, CLIENTS, "no"),
        TypeError,
        ["all_equal to be True, False or None", "'no' of Python type str"],
    ),
    "federated all_equal an int": (
        lambda: FederatedType(np.int32, CLIENTS, 1),
        TypeError,
        ["True, False or None", "1 of Python type int"],
    ),
    "at_clients all_equal a string": (
        lambda: at_clients(np.int32, "yes"),
        TypeError,
        ["True, False or None", "'yes'"],
    ),
    "federated of a function": (
        lambda: FederatedType(FunctionType(None, np.int32), SERVER),
        TypeError,
        ["cannot hold FunctionTypes", "( -> int32)"],
    ),
    "abstract label an int": (lambda: AbstractType(5), TypeError, ["an identifier", "got 5"]),
    "abstract label a dtype": (
        lambda: AbstractType("int32"),
        TypeError,
        ["cannot be a type name", "'int32'"],
    ),
    "placement uri an int": (
        lambda: Placement(5, "FIVE"),
        TypeError,
        ["uri of a placement to be a str", "5 of Python type int"],
    ),
    "placement_from_uri a list": (
        lambda: placement_from_uri([]),
        TypeError,
        ["placement URI ('clients' or 'server')", "[]"],
    ),
    "placement_from_uri unknown": (
        lambda: placement_from_uri("moon"),
        ValueError,
        ["'moon'", "'clients'"],
    ),
    "placement_from_name lower case": (
        lambda: placement_from_name("clients"),
        ValueError,
        ["'clients'", "'CLIENTS'"],
    ),
    # type specs and inference
    "to_type None": (lambda: to_type(None), TypeError, ["Expected a type spec", "None"]),
    "to_type a value": (lambda: to_type(np.float32(1)), TypeError, ["type spec", "infer_type"]),
    "to_type a function": (lambda: to_type(len), TypeError, ["type spec", "builtin_function"]),
    "to_type a dataclass class": (
        lambda: to_type(Point),
        TypeError,
        ["got the class Point", "pass an instance whose fields hold the specs"],
    ),
    "to_type a namedtuple class": (
        lambda: to_type(collections.namedtuple("Pair", "a b")),
        TypeError,
        ["Expected a type spec", "Pair"],
    ),
    "infer_type None": (lambda: infer_type(None), TypeError, ["Cannot infer", "None"]),
    "infer_type int beyond int64": (lambda: infer_type(2**70), TypeError, ["int64", "1180591"]),
    "infer_type a set": (lambda: infer_type({1}), TypeError, ["Cannot infer", "set"]),
    "infer_type complex": (lambda: infer_type(1j), TypeError, ["Cannot infer", "complex"]),
    "infer_type dict with int keys": (
        lambda: infer_type({1: 2}),
        TypeError,
        ["element names (str)", "key 1"],
    ),
    "infer_type object array": (
        lambda: infer_type(np.array([object()])),
        TypeError,
        ["Cannot infer", "object"],
    ),
    "infer_type a type": (
        lambda: infer_type(TensorType(np.int32)),
        TypeError,
        ["Expected a value, got the type int32"],
    ),
    # notation
    "parse_type an int": (lambda: parse_type(5), TypeError, ["compact notation", "got 5"]),
    "parse_type empty": (lambda: parse_type(""), TypeNotationError, ["Expected a type", "end"]),
    "parse_type misspelt dtype": (
        lambda: parse_type("float33"),
        TypeNotationError,
        ["Unknown dtype 'float33'", "float32"],
    ),
    "parse_type int for int32": (
        lambda: parse_type("<a=int,b=float32>"),
        TypeNotationError,
        ["Unknown dtype 'int'", "int32", "position 3"],
    ),
    "parse_type negative dim": (
        lambda: parse_type("int32[-1]"),
        TypeNotationError,
        ["non-negative int or '?'", "'-'"],
    ),
    "parse_type huge dim": (
        lambda: parse_type("int32[99999999999999999999999]"),
        TypeNotationError,
        ["2**63 - 1", "99999999999999999999999"],
    ),
    "parse_type unknown placement": (
        lambda: parse_type("{int32}@MOON"),
        TypeNotationError,
        ["Unknown placement 'MOON'", "CLIENTS or SERVER"],
    ),
    "parse_type absurd nesting": (
        lambda: parse_type("<" * 5000 + "int32" + ">" * 5000),
        TypeNotationError,
        [f"nested more than {MAX_NESTING} deep", "position 100"],
    ),
    # serialized types
    "serialize_type a dtype": (
        lambda: serialize_type(np.int32),
        TypeError,
        ["fed Type to serialize", "int32"],
    ),
    "deserialize_type None": (lambda: deserialize_type(None), ValueError, ["a dict", "None"]),
    "deserialize_type version float": (
        lambda: deserialize_type({"version": 1.0, "type": TENSOR}),
        ValueError,
        ["'version' is 1.0", "expected 1"],
    ),
    "deserialize_type version true": (
        lambda: deserialize_type({"version": True, "type": TENSOR}),
        ValueError,
        ["'version' is True", "expected 1"],
    ),
    "deserialize_type kind a list": (
        lambda: deserialize_type({"version": 1, "type": {"kind": []}}),
        ValueError,
        ["'kind' is []", "'tensor'"],
    ),
    "deserialize_type shape of bools": (
        lambda: deserialize_type(
            {"version": 1, "type": {"kind": "tensor", "dtype": "int32", "shape": [True]}}
        ),
        ValueError,
        ["'shape' is [True]", "non-negative ints"],
    ),
    "deserialize_type dim beyond int64": (
        lambda: deserialize_type(
            {"version": 1, "type": {"kind": "tensor", "dtype": "int32", "shape": [2**64]}}
        ),
        ValueError,
        ["Malformed serialized type at type", "2**63 - 1"],
    ),
    "deserialize_type container not a class": (
        lambda: deserialize_type(
            {"version": 1, "type": {"kind": "struct", "elements": [], "container": "os:system"}}
        ),
        ValueError,
        ["'os:system'", "not a container class"],
    ),
    "deserialize_type absurd nesting": (
        lambda: deserialize_type(nested_struct(5000)),
        ValueError,
        ["Malformed serialized type", f"nested more than {MAX_NESTING} deep"],
    ),
    # structs
    "Struct of an int": (lambda: Struct(5), TypeError, ["(name or None, value) pairs", "got 5"]),
    "Struct element not a pair": (lambda: Struct([5]), TypeError, ["pairs", "5 at position 0"]),
    "Struct name an int": (lambda: Struct([(5, 1)]), TypeError, ["must be strings", "got 5"]),
    "Struct index out of range": (
        lambda: Struct.named(a=1)[5],
        IndexError,
        ["Index 5 out of range", "1 elements"],
    ),
    "Struct index a float": (
        lambda: Struct.named(a=1)[1.5],
        TypeError,
        ["position (an int), name (a str) or slice", "1.5"],
    ),
    "Struct unknown name": (lambda: Struct.named(a=1)["b"], KeyError, ["'b'", "('a',)"]),
    "StructType index a float": (
        lambda: StructType([np.int32])[1.5],
        TypeError,
        ["position (an int)", "got 1.5"],
    ),
    "StructType index out of range": (
        lambda: StructType([np.int32])[5],
        IndexError,
        ["Index 5 out of range", "<int32>"],
    ),
    # conversions
    "from_python_container a scalar": (
        lambda: from_python_container(5),
        TypeError,
        ["Expected a Python container", "5 of Python type int"],
    ),
    "to_python_container clients not a list": (
        lambda: to_python_container(5, at_clients(np.int32)),
        TypeError,
        ["one member per client", "{int32}@CLIENTS", "5 of Python type int"],
    ),
    "to_python_container struct too long": (
        lambda: to_python_container(Struct.unnamed(1, 2), StructType([np.int32])),
        ValueError,
        ["2 elements", "<int32>"],
    ),
    "to_python_container names differ": (
        lambda: to_python_container(Struct.named(b=1), StructType([("a", np.int32)])),
        ValueError,
        ["named 'b'", "'a'"],
    ),
    # fed_types.types and fed_types.structure
    "types.preorder a dtype": (
        lambda: list(types.preorder(np.int32)),
        TypeError,
        ["preorder expects a fed Type", "to_type"],
    ),
    "types.contains an int": (
        lambda: types.contains(5, lambda t: True),
        TypeError,
        ["contains expects a fed Type", "5 of Python type int"],
    ),
    "types.count predicate not callable": (
        lambda: types.count(TensorType(np.int32), 5),
        TypeError,
        ["count expects a predicate", "got 5"],
    ),
    "is_structure_of an int": (
        lambda: fed_types.is_structure_of(5, lambda t: True),
        TypeError,
        ["is_structure_of expects a fed Type", "5"],
    ),
    "is_structure_of_floats a string": (
        lambda: types.is_structure_of_floats("float32"),
        TypeError,
        ["is_structure_of_floats expects a fed Type", "'float32'"],
    ),
    "structure.to_odict a dict": (
        lambda: structure.to_odict({"a": 1}),
        TypeError,
        ["to_odict expects a Struct", "dict"],
    ),
    "structure.to_odict unnamed": (
        lambda: structure.to_odict(Struct.unnamed(1)),
        ValueError,
        ["unnamed elements", "positions [0]"],
    ),
    "structure.pack_sequence_as too few": (
        lambda: structure.pack_sequence_as([1, 2], [1]),
        ValueError,
        ["2 leaves", "holds 1"],
    ),
    "structure.pack_sequence_as not a list": (
        lambda: structure.pack_sequence_as([1], 5),
        TypeError,
        ["flat sequence of leaves as a list", "5 of Python type int"],
    ),
    "structure.map_structure not a function": (
        lambda: structure.map_structure(5, [1]),
        TypeError,
        ["expects a function first", "5 of Python type int"],
    ),
    "structure.map_structure differing": (
        lambda: structure.map_structure(lambda a, b: a, [1], [1, 2]),
        TypeError,
        ["structure 1 differs", "[None, None]"],
    ),
    "structure.update_struct unknown name": (
        lambda: structure.update_struct({"a": 1}, b=2),
        KeyError,
        ["no element named 'b'", "['a']"],
    ),
    "structure.from_container a scalar": (
        lambda: structure.from_container(5),
        TypeError,
        ["expects a Python container", "5 of Python type int"],
    ),
}


@pytest.mark.parametrize(("call", "error", "words"), CASES.values(), ids=CASES.keys())
def test_a_bad_input_raises_a_clear_error(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_all_equal_accepts_bools_of_numpy_too():
    assert FederatedType(np.int32, CLIENTS, np.bool_(True)) == FederatedType(
        np.int32, CLIENTS, True
    )
    assert str(FederatedType(np.int32, CLIENTS, False)) == "{int32}@CLIENTS"


def test_types_nested_up_to_the_limit_parse_and_deserialize():
    # MAX_NESTING types, one inside the other: the structs and the tensor at their heart.
    text = "<" * (MAX_NESTING - 1) + "float32" + ">" * (MAX_NESTING - 1)
    parsed = parse_type(text)
    assert str(parsed) == text
    assert deserialize_type(serialize_type(parsed)) == parsed
    assert deserialize_type(nested_struct(MAX_NESTING - 1)) == parsed
    with pytest.raises(TypeNotationError, match="nested more than"):
        parse_type("<" + text + ">")
    with pytest.raises(ValueError, match="nested more than"):
        deserialize_type(nested_struct(MAX_NESTING))


def test_a_long_notation_error_shows_the_text_around_the_position_only():
    text = "<" + ",".join(["int32"] * 300) + ",float33>"
    with pytest.raises(TypeNotationError) as raised:
        parse_type(text)
    assert raised.value.position == len(text) - len("float33>")
    shown, caret = str(raised.value).splitlines()[-2:]
    assert shown.startswith("  ...int32,") and shown.endswith(",int32,float33>")
    assert caret.index("^") == shown.index("float33")
    assert len(shown) < 140


def test_nan_and_infinity_are_float_values_like_any_other():
    assert infer_type(math.nan) == TensorType(np.float32)
    assert infer_type(np.array([np.inf, -np.inf])) == TensorType(np.float64, [2])
