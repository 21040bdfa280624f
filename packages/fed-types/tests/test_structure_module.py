"""`fed_types.structure`, TFF's `tff.structure`: functions on Structs and nests of containers."""

import collections
import dataclasses

import attrs
import numpy as np
import pytest

from fed_types import Struct, structure

Point = collections.namedtuple("Point", ["x", "y"])


@attrs.define(frozen=True)
class ServerState:
    trainable_weights: object
    optimizer_state: object
    _round: int = 0


@dataclasses.dataclass
class Pair:
    left: object
    right: object


NESTED = Struct([("a", 1), ("b", Struct([(None, 2), (None, Struct([("c", 3)]))]))])


def test_names_elements_and_fields():
    s = Struct([("a", 1), (None, 2), ("c", 3)])
    assert structure.name_list(s) == ["a", "c"]
    assert structure.name_list_with_nones(s) == ["a", None, "c"]
    assert structure.to_elements(s) == [("a", 1), (None, 2), ("c", 3)]
    assert list(structure.iter_elements(s)) == [("a", 1), (None, 2), ("c", 3)]
    assert structure.name_to_index_map(s) == {"a": 0, "c": 2}
    assert structure.has_field(s, "c") and not structure.has_field(s, "b")
    with pytest.raises(
        TypeError, match="name_list expects a Struct, got \\[1\\] of Python type list"
    ):
        structure.name_list([1])


def test_to_odict_and_to_odict_or_tuple():
    assert structure.to_odict(NESTED) == collections.OrderedDict(a=1, b=NESTED.b)
    assert structure.to_odict_or_tuple(NESTED) == collections.OrderedDict(
        a=1, b=(2, collections.OrderedDict(c=3))
    )
    assert structure.to_odict_or_tuple(Struct([])) == ()
    with pytest.raises(ValueError, match="unnamed elements \\(at positions \\[0, 1\\]\\)"):
        structure.to_odict(NESTED, recursive=True)
    with pytest.raises(ValueError, match="mixes named and unnamed"):
        structure.to_odict_or_tuple(Struct([("a", 1), (None, 2)]))


def test_to_container_recursive_follows_structs_only():
    inner = Struct([("z", 1)])
    s = Struct([("a", inner), ("b", {"k": inner})])
    converted = structure.to_container_recursive(s, lambda elements: dict(elements))
    assert converted == {"a": {"z": 1}, "b": {"k": inner}}


def test_from_container_top_level_or_recursive():
    value = collections.OrderedDict(a=[1, 2], b=Point(3, 4))
    top = structure.from_container(value)
    assert top.names() == ("a", "b") and top.a == [1, 2]
    deep = structure.from_container(value, recursive=True)
    assert deep == Struct([("a", Struct.unnamed(1, 2)), ("b", Struct.named(x=3, y=4))])
    state = structure.from_container(ServerState(1, 2, 3))
    assert state.names() == ("trainable_weights", "optimizer_state", "_round")
    assert structure.from_container(NESTED) is NESTED
    with pytest.raises(TypeError, match="expects a Python container .* got 5 of Python type int"):
        structure.from_container(5)
    with pytest.raises(TypeError, match="names must be strings"):
        structure.from_container({1: "one"})


def test_update_struct_of_every_kind_of_named_structure():
    updated = structure.update_struct(ServerState(1, 2, 3), optimizer_state=20)
    assert updated == ServerState(1, 20, 3)
    assert structure.update_struct(Point(1, 2), y=5) == Point(1, 5)
    assert structure.update_struct(Pair(1, 2), left=0) == Pair(0, 2)
    original = collections.OrderedDict(a=1, b=2)
    copy = structure.update_struct(original, b=3)
    assert copy == collections.OrderedDict(a=1, b=3) and original["b"] == 2
    assert type(copy) is collections.OrderedDict
    assert structure.update_struct(NESTED, a=10) == Struct([("a", 10), ("b", NESTED.b)])
    with pytest.raises(KeyError, match="no element named 'c'; its names are \\['x', 'y'\\]"):
        structure.update_struct(Point(1, 2), c=3)
    with pytest.raises(TypeError, match="structure with named elements .* got \\(1, 2\\)"):
        structure.update_struct((1, 2), a=1)


def test_flatten_and_pack_take_mapping_values_by_sorted_key():
    value = Struct([("a", {"y": 1, "x": 2}), ("b", [3, Point(4, 5)]), ("c", np.arange(2))])
    flat = structure.flatten(value)
    assert flat[:5] == [2, 1, 3, 4, 5]
    assert np.array_equal(flat[5], [0, 1])
    packed = structure.pack_sequence_as(value, ["X", "Y", 30, 40, 50, 60])
    assert packed == Struct([("a", {"y": "Y", "x": "X"}), ("b", [30, Point(40, 50)]), ("c", 60)])
    assert list(packed.a) == ["y", "x"]  # the mapping keeps its own key order
    assert structure.flatten(7) == [7]
    assert structure.pack_sequence_as(7, ["seven"]) == "seven"
    with pytest.raises(ValueError, match="has 6 leaves but the flat sequence holds 2 values"):
        structure.pack_sequence_as(value, [1, 2])


def test_pack_rebuilds_attrs_and_dataclass_instances():
    state = ServerState(Pair(1, 2), 3)
    assert structure.flatten(state) == [1, 2, 3, 0]
    assert structure.pack_sequence_as(state, [5, 6, 7, 8]) == ServerState(Pair(5, 6), 7, 8)


def test_map_structure_over_structs_and_containers():
    assert structure.map_structure(lambda x, y: x + y, NESTED, NESTED) == Struct(
        [("a", 2), ("b", Struct([(None, 4), (None, Struct([("c", 6)]))]))]
    )
    assert structure.map_structure(lambda x: -x, {"b": 1, "a": [2]}) == {"b": -1, "a": [-2]}
    with pytest.raises(ValueError, match="at least one structure"):
        structure.map_structure(abs)
    with pytest.raises(TypeError, match="structure 1 differs from structure 0 at .b\\[1\\]"):
        structure.map_structure(
            lambda x, y: x, NESTED, Struct([("a", 1), ("b", Struct([(None, 2), (None, 3)]))])
        )


def test_is_same_structure_compares_names_and_nesting_not_leaves():
    assert structure.is_same_structure(NESTED, structure.map_structure(str, NESTED))
    assert not structure.is_same_structure(NESTED, Struct([("a", 1), ("x", NESTED.b)]))
    assert not structure.is_same_structure(Struct([("a", [1])]), Struct([("a", (1,))]))
    assert not structure.is_same_structure(Struct([("a", {"k": 1})]), Struct([("a", {"j": 1})]))
    leaf_or_list = Struct([("a", {"k": 1})]), Struct([("a", {"k": [2]})])
    assert not structure.is_same_structure(*leaf_or_list)
