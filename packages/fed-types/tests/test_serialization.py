import collections
import json
import subprocess
import sys

import numpy as np
import pytest

from fed_types import (
    UNKNOWN_RANK,
    StructType,
    StructWithPythonType,
    TensorType,
    deserialize_type,
    parse_type,
    serialize_type,
    to_type,
)
from fed_types.testing import Pair, Point


def round_trip(t):
    return deserialize_type(json.loads(json.dumps(serialize_type(t))))


def test_tensor_form():
    assert serialize_type(TensorType(np.float32, [10, None])) == {
        "version": 1,
        "type": {"kind": "tensor", "dtype": "float32", "shape": [10, None]},
    }
    assert serialize_type(TensorType(np.str_))["type"] == {
        "kind": "tensor",
        "dtype": "str",
        "shape": [],
    }
    assert serialize_type(TensorType(np.int8, UNKNOWN_RANK))["type"]["shape"] is None


def test_every_kind_of_node():
    t = parse_type(
        "<a={<int32,x=float64[?]>*}@CLIENTS,b=(T -> U@SERVER),c=( -> placement),d=bool@CLIENTS>"
    )
    assert serialize_type(t) == {
        "version": 1,
        "type": {
            "kind": "struct",
            "elements": [
                {
                    "name": "a",
                    "type": {
                        "kind": "federated",
                        "member": {
                            "kind": "sequence",
                            "element": {
                                "kind": "struct",
                                "elements": [
                                    {
                                        "name": None,
                                        "type": {"kind": "tensor", "dtype": "int32", "shape": []},
                                    },
                                    {
                                        "name": "x",
                                        "type": {
                                            "kind": "tensor",
                                            "dtype": "float64",
                                            "shape": [None],
                                        },
                                    },
                                ],
                            },
                        },
                        "placement": "clients",
                        "all_equal": False,
                    },
                },
                {
                    "name": "b",
                    "type": {
                        "kind": "function",
                        "parameter": {"kind": "abstract", "label": "T"},
                        "result": {
                            "kind": "federated",
                            "member": {"kind": "abstract", "label": "U"},
                            "placement": "server",
                            "all_equal": True,
                        },
                    },
                },
                {
                    "name": "c",
                    "type": {
                        "kind": "function",
                        "parameter": None,
                        "result": {"kind": "placement"},
                    },
                },
                {
                    "name": "d",
                    "type": {
                        "kind": "federated",
                        "member": {"kind": "tensor", "dtype": "bool", "shape": []},
                        "placement": "clients",
                        "all_equal": True,
                    },
                },
            ],
        },
    }
    assert round_trip(t) == t


@pytest.mark.parametrize(
    ("container", "path"),
    [
        (dict, "builtins:dict"),
        (list, "builtins:list"),
        (tuple, "builtins:tuple"),
        (collections.OrderedDict, "collections:OrderedDict"),
        (Point, "fed_types.testing:Point"),
        (Pair, "fed_types.testing:Pair"),
    ],
)
def test_importable_containers_are_recorded_and_restored(container, path):
    names = [("x", np.int32), ("y", np.int32)] if container is Point else None
    if container is Pair:
        names = [("first", np.int32), ("second", np.int32)]
    elements = names or ([np.int32] if container in (list, tuple) else [("a", np.int32)])
    t = StructWithPythonType(elements, container)
    assert serialize_type(t)["type"]["container"] == path
    assert round_trip(t).python_container is container
    assert round_trip(t).is_identical_to(t)


def test_nested_containers_round_trip():
    t = to_type(
        {
            "a": [np.int32, (np.float32, [2])],
            "b": Point(np.int32, collections.OrderedDict(z=np.bool_)),
        }
    )
    assert round_trip(t).is_identical_to(t)


def test_local_classes_are_not_recorded():
    Local = collections.namedtuple("Local", ["a"])
    t = StructWithPythonType([("a", np.int32)], Local)
    assert "container" not in serialize_type(t)["type"]
    back = round_trip(t)
    assert back == t and back.python_container is None and back.names() == ("a",)


def test_a_container_that_is_not_a_container_class_is_refused():
    data = serialize_type(StructWithPythonType([("args", np.str_)], dict))
    data["type"]["container"] = "subprocess:Popen"
    with pytest.raises(ValueError, match="'subprocess:Popen', which is not a container class"):
        deserialize_type(data)


def test_reading_a_container_never_imports_its_module():
    program = (
        "import sys, numpy as np\n"
        "from fed_types import StructWithPythonType, serialize_type, deserialize_type\n"
        "data = serialize_type(StructWithPythonType([('a', np.int32)], dict))\n"
        "data['type']['container'] = 'this:s'\n"
        "print(deserialize_type(data).python_container, 'this' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None False"


def test_containers_that_cannot_be_imported_are_dropped():
    data = serialize_type(StructType([("a", np.int32)]))
    data["type"]["container"] = "no_such_module_of_fed:Thing"
    assert deserialize_type(data).python_container is None
    data["type"]["container"] = "collections:NoSuchThing"
    back = deserialize_type(data)
    assert back == StructType([("a", np.int32)]) and back.python_container is None


def test_output_is_json_compatible():
    def check(node):
        if isinstance(node, dict):
            assert all(isinstance(k, str) for k in node)
            for v in node.values():
                check(v)
        elif isinstance(node, list):
            for v in node:
                check(v)
        else:
            assert node is None or type(node) in (str, int, bool)

    check(serialize_type(to_type({"a": [(np.float32, [None, 3])], "b": Point(np.str_, np.uint64)})))


def _tensor(**overrides):
    node = {"kind": "tensor", "dtype": "float32", "shape": []}
    node.update(overrides)
    return {"version": 1, "type": node}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], r"Expected a serialized type \(a dict\), got \[\]"),
        ({"type": {}}, "key 'version' is None, expected 1"),
        ({"version": 2, "type": {}}, "key 'version' is 2, expected 1"),
        ({"version": 1, "type": {}, "extra": 1}, r"Expected the keys \['type', 'version'\]"),
        ({"version": 1, "type": []}, "at type: expected a dict, got \\[\\]"),
        (
            {"version": 1, "type": {"kind": "matrix"}},
            "at type: key 'kind' is 'matrix', expected one of",
        ),
        (_tensor(dtype="float"), "at type: key 'dtype' is 'float', expected a dtype name"),
        (_tensor(dtype=5), "key 'dtype' is 5"),
        (_tensor(shape=[-1]), "key 'shape' is \\[-1\\], expected null or a list"),
        (_tensor(shape=[1.0]), "key 'shape' is \\[1.0\\]"),
        (_tensor(shape=[True]), "key 'shape' is \\[True\\]"),
        (_tensor(shape="2"), "key 'shape' is '2'"),
        (
            _tensor(extra=1),
            r"a tensor node has keys \['dtype', 'extra', 'kind', 'shape'\], expected",
        ),
        ({"version": 1, "type": {"kind": "tensor", "dtype": "int32"}}, "a tensor node has keys"),
        (
            {"version": 1, "type": {"kind": "struct", "elements": {}}},
            "key 'elements' is {}, expected a list",
        ),
        (
            {"version": 1, "type": {"kind": "struct", "elements": [{"name": None}]}},
            r"at type.elements\[0\]: expected a dict with keys \['name', 'type'\]",
        ),
        (
            {
                "version": 1,
                "type": {"kind": "struct", "elements": [{"name": 3, "type": _tensor()["type"]}]},
            },
            r"at type.elements\[0\]: key 'name' is 3",
        ),
        (
            {
                "version": 1,
                "type": {
                    "kind": "struct",
                    "elements": [
                        {"name": "a", "type": _tensor()["type"]},
                        {"name": "a", "type": _tensor()["type"]},
                    ],
                },
            },
            "at type: Duplicate element name 'a'",
        ),
        (
            {"version": 1, "type": {"kind": "struct", "elements": [], "container": "dict"}},
            "key 'container' is 'dict', expected 'module:qualname'",
        ),
        (
            {"version": 1, "type": {"kind": "struct", "elements": [], "container": "math:pi"}},
            "key 'container' is 'math:pi', which is not a container class",
        ),
        (
            {"version": 1, "type": {"kind": "sequence", "element": {"kind": "placement"}}},
            "at type: A sequence's elements cannot hold PlacementTypes",
        ),
        (
            {
                "version": 1,
                "type": {
                    "kind": "federated",
                    "member": _tensor()["type"],
                    "placement": "moon",
                    "all_equal": True,
                },
            },
            "key 'placement' is 'moon', expected 'clients' or 'server'",
        ),
        (
            {
                "version": 1,
                "type": {
                    "kind": "federated",
                    "member": _tensor()["type"],
                    "placement": "server",
                    "all_equal": 1,
                },
            },
            "key 'all_equal' is 1, expected true or false",
        ),
        (
            {
                "version": 1,
                "type": {
                    "kind": "function",
                    "parameter": None,
                    "result": {"kind": "abstract", "label": "int32"},
                },
            },
            "at type.result: An abstract type label cannot be a type name",
        ),
        (
            {
                "version": 1,
                "type": {
                    "kind": "sequence",
                    "element": {"kind": "tensor", "dtype": "int32", "shape": None, "x": 0},
                },
            },
            "at type.element: a tensor node has keys",
        ),
    ],
)
def test_malformed_input(data, message):
    with pytest.raises(ValueError, match=message):
        deserialize_type(data)


def test_serialize_needs_a_type():
    with pytest.raises(TypeError, match="Expected a fed Type"):
        serialize_type("int32")
