import collections
import dataclasses
import types
from typing import Any, NamedTuple

import numpy as np
import pytest

import fed_types
from fed_types import (
    CLIENTS,
    SERVER,
    Struct,
    TensorType,
    container_items,
    from_python_container,
    infer_type,
    to_type,
)


class Point(NamedTuple):
    x: Any
    y: Any


@dataclasses.dataclass
class Batch:
    features: Any
    label: Any


class MyList(list):
    pass


def test_struct_gives_its_items_and_no_container():
    items = container_items(Struct([("a", 1), (None, 2)]))
    assert items == ([("a", 1), (None, 2)], type(None))
    assert container_items(Struct([])) == ([], type(None))


def test_namedtuple():
    assert container_items(Point(1, [2])) == ([("x", 1), ("y", [2])], Point)
    Pair = collections.namedtuple("Pair", ["first", "second"])
    assert container_items(Pair(3, 4)) == ([("first", 3), ("second", 4)], Pair)


@pytest.mark.parametrize(
    ("value", "container"),
    [
        ([1, "a", None], list),
        ((1, "a", None), tuple),
        (MyList([1, "a", None]), MyList),
    ],
)
def test_lists_and_tuples_have_unnamed_elements(value, container):
    assert container_items(value) == ([(None, 1), (None, "a"), (None, None)], container)


def test_empty_lists_and_tuples():
    assert container_items([]) == ([], list)
    assert container_items(()) == ([], tuple)


def test_pairs_in_a_list_stay_elements():
    # Reading a list of (name, value) pairs as a named struct is a rule of fed's conversions.
    assert container_items([("a", 1)]) == ([(None, ("a", 1))], list)
    assert from_python_container([("a", 1)]) == Struct([("a", 1)])


def test_mappings_keep_their_order_and_name_elements_by_str_of_key():
    assert container_items({"b": 1, "a": 2}) == ([("b", 1), ("a", 2)], dict)
    ordered = collections.OrderedDict([("y", 1), ("x", 2)])
    assert container_items(ordered) == ([("y", 1), ("x", 2)], collections.OrderedDict)
    assert container_items({1: "one", "two": 2}) == ([("1", "one"), ("two", 2)], dict)
    proxy = types.MappingProxyType({"k": 0})
    assert container_items(proxy) == ([("k", 0)], types.MappingProxyType)


def test_dataclass_instances():
    assert container_items(Batch(features=[1], label=2)) == (
        [("features", [1]), ("label", 2)],
        Batch,
    )
    assert container_items(Batch) is None


def test_attrs_instances():
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class Metrics:
        loss: Any
        _count: Any

    assert container_items(Metrics(0.5, 3)) == ([("loss", 0.5), ("_count", 3)], Metrics)
    assert container_items(Metrics) is None


def test_elements_are_not_converted():
    inner = {"a": [1, 2]}
    (name, element), *_ = container_items([inner])[0]
    assert name is None and element is inner


@pytest.mark.parametrize(
    "value",
    [
        CLIENTS,
        SERVER,
        np.zeros(3),
        np.zeros(()),
        np.float32(1.0),
        "text",
        b"bytes",
        1,
        2.5,
        True,
        None,
        {1, 2},
        object(),
        TensorType(np.int32),
        Point,
        list,
    ],
)
def test_non_containers(value):
    assert container_items(value) is None


def test_placements_are_leaves_of_conversions():
    assert from_python_container({"p": CLIENTS}) == Struct([("p", CLIENTS)])
    with pytest.raises(TypeError, match="Expected a Python container"):
        from_python_container(SERVER)
    with pytest.raises(TypeError, match="Cannot infer the fed type of CLIENTS"):
        infer_type(CLIENTS)
    with pytest.raises(TypeError, match="Expected a type spec"):
        to_type(CLIENTS)


def test_is_public():
    assert "container_items" in fed_types.__all__
    assert fed_types.container_items is container_items
