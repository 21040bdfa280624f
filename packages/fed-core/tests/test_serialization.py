"""Serialization of computations: round trips, the literal encoding, refusals of malformed input,
and a computation shipped to another process."""

from __future__ import annotations

import base64
import collections
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fed_core as fc
from fed_core.ir import building_blocks as bb
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_core.testing._python_frontend import python_computation
from fed_types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    serialize_type,
)

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)


@python_computation(np.float32, result_type=np.float32)
def add_half(x):
    return x + np.float32(0.5)


@python_computation(np.int32, result_type=np.int32)
def add_one(x):
    return x + np.int32(1)


def round_trip(comp: fc.Computation) -> fc.Computation:
    data = serialize_computation(comp)
    restored = deserialize_computation(data)
    # Writing is deterministic and reading keeps the tree's shape, so a second trip gives the same
    # bytes.
    assert serialize_computation(restored) == data
    return restored


def document(comp: fc.Computation) -> dict:
    return json.loads(serialize_computation(comp))


def kinds(comp: fc.Computation) -> list[str]:
    return [block["kind"] for block in document(comp)["blocks"]]


# ---- round trips


def test_every_block_kind_round_trips_and_runs():
    x = bb.Reference("x", F32)
    pair = StructType([("value", F32), ("where", PlacementType())])
    body = bb.Block(
        [
            ("a", bb.Call(add_half.building_block, x)),
            ("b", bb.Struct([("value", bb.Reference("a", F32)), ("where", bb.Placement(SERVER))])),
        ],
        bb.Struct(
            [
                bb.Selection(bb.Reference("b", pair), index=0),
                bb.Literal(np.array([1, 2], np.int64), TensorType(np.int64, [2])),
                bb.Call(bb.Lambda("y", F32, bb.Reference("y", F32)), x),
            ]
        ),
    )
    comp = fc.Computation(bb.Lambda("x", F32, body), "all_kinds")

    restored = round_trip(comp)

    assert set(kinds(comp)) >= {
        "reference",
        "selection",
        "struct",
        "call",
        "lambda",
        "block",
        "placement",
        "literal",
        "compiled",
    }
    assert restored.name == "all_kinds"
    assert restored.type_signature == comp.type_signature
    assert (
        restored.building_block.formatted_representation()
        == comp.building_block.formatted_representation()
    )
    placement = restored.building_block.result.locals[1][1].elements[1][1]  # type: ignore[attr-defined]
    assert isinstance(placement, bb.Placement) and placement.placement == SERVER
    value, literal, same = restored(np.float32(1.0))
    assert value == np.float32(1.5) and same == np.float32(1.0)
    np.testing.assert_array_equal(literal, [1, 2])
    assert literal.dtype == np.int64


def test_intrinsic_and_data_blocks_round_trip():
    client_data = FederatedType(SequenceType(F32), CLIENTS)
    total = bb.Intrinsic(
        "federated_sum", FunctionType(FederatedType(F32, CLIENTS), FederatedType(F32, SERVER))
    )
    reader = bb.Data("fed-test://clients/temperatures", client_data)
    body = bb.Struct([total, reader])
    comp = fc.Computation(bb.Lambda(None, None, body))

    restored = round_trip(comp)

    assert kinds(comp) == ["intrinsic", "data", "struct", "lambda"]
    intrinsic, data = restored.building_block.result.elements  # type: ignore[attr-defined]
    assert isinstance(intrinsic[1], bb.Intrinsic) and intrinsic[1].uri == "federated_sum"
    assert intrinsic[1].type_signature == total.type_signature
    assert isinstance(data[1], bb.Data) and data[1].uri == "fed-test://clients/temperatures"
    assert data[1].type_signature == client_data


def test_traced_computation_with_several_intrinsics_gives_the_same_results():
    @python_computation(StructType([I32, I32]), result_type=np.int32)
    def add(pair):
        return pair[0] + pair[1]

    @fc.federated_computation(
        FederatedType(np.float32, SERVER),
        FederatedType(np.float32, CLIENTS),
        FederatedType(np.int32, CLIENTS),
    )
    def statistics(offset, readings, counts):
        shifted = fc.federated_map(add_half, readings)
        at_clients = fc.federated_broadcast(offset)
        return collections.OrderedDict(
            mean=fc.federated_mean(shifted),
            weighted=fc.federated_mean(readings, readings),
            total=fc.federated_sum(counts),
            largest=fc.federated_max(readings),
            secure=fc.federated_secure_sum(counts, 100),
            folded=fc.federated_aggregate(counts, np.int32(0), add, add, add_one),
            zipped=fc.federated_zip((at_clients, readings)),
            constant=fc.federated_value(np.int32(7), SERVER),
        )

    arguments = (np.float32(1.0), [1.0, 2.0, 6.0], [1, 2, 3])
    restored = round_trip(statistics)

    assert restored.type_signature == statistics.type_signature
    expected, got = statistics(*arguments), restored(*arguments)
    assert list(got) == [
        "mean",
        "weighted",
        "total",
        "largest",
        "secure",
        "folded",
        "zipped",
        "constant",
    ]
    assert got["mean"] == expected["mean"] == pytest.approx(3.5)
    assert got["weighted"] == expected["weighted"] == pytest.approx(41 / 9)
    assert got["total"] == expected["total"] == 6
    assert got["largest"] == expected["largest"] == 6.0
    assert got["secure"] == expected["secure"] == 6
    assert got["folded"] == expected["folded"] == 7
    assert got["zipped"] == expected["zipped"]
    assert got["constant"] == 7


def test_weighted_mean_and_sequence_intrinsics_round_trip():
    @fc.federated_computation(
        FederatedType(SequenceType(np.int32), CLIENTS), FederatedType(np.float32, CLIENTS)
    )
    def per_client(sequences, weights):
        sums = fc.sequence_sum(sequences)
        incremented = fc.sequence_map(add_one, sequences)
        return (
            fc.federated_sum(sums),
            fc.federated_sum(fc.sequence_sum(incremented)),
            fc.federated_mean(weights, weights),
        )

    restored = round_trip(per_client)

    arguments = ([[1, 2], [3]], [1.0, 3.0])
    assert restored(*arguments) == per_client(*arguments)
    total, incremented, weighted = restored(*arguments)
    assert (total, incremented, weighted) == (6, 9, pytest.approx(2.5))


def test_python_computation_leaf_round_trips_with_its_payload():
    restored = round_trip(add_half)

    leaf = restored.building_block
    assert isinstance(leaf, bb.CompiledComputation)
    assert (leaf.frontend, leaf.name, leaf.payload) == (
        "python",
        "add_half",
        add_half.building_block.payload,
    )
    assert restored.type_signature == add_half.type_signature
    assert restored(np.float32(2.0)) == np.float32(2.5)


def test_a_block_met_twice_is_written_once():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def twice(x):
        return fc.federated_map(add_half, fc.federated_map(add_half, x))

    restored = round_trip(twice)

    assert kinds(twice).count("compiled") == 1
    assert restored([1.0, 2.0]) == [2.0, 3.0]


def test_struct_containers_are_kept():
    from fed_core.templates import MeasuredProcessOutput

    @fc.federated_computation(np.int32)
    def outputs(x):
        return MeasuredProcessOutput(x, collections.OrderedDict(a=x), (x, x))

    result = round_trip(outputs)(3)

    assert isinstance(result, MeasuredProcessOutput)
    assert isinstance(result.result, collections.OrderedDict)
    assert result == (3, {"a": 3}, (3, 3))


def test_hello_world_string_literal():
    @fc.federated_computation
    def hello():
        return "Hello, World!"

    assert round_trip(hello)() == b"Hello, World!"


# ---- literals


@pytest.mark.parametrize(
    "dtype",
    [
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
    ],
)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (0,)])
def test_literals_round_trip_exactly(dtype, shape):
    rng = np.random.default_rng(7)
    raw = rng.normal(size=shape) * 100
    value = (raw + 1j * raw if np.dtype(dtype).kind == "c" else raw).astype(dtype)
    comp = fc.Computation(bb.Lambda(None, None, bb.Literal(value, TensorType(dtype, shape))))

    literal = round_trip(comp).building_block.result  # type: ignore[attr-defined]

    assert literal.value.dtype == np.dtype(dtype)
    assert literal.value.shape == shape
    np.testing.assert_array_equal(literal.value, value)
    assert literal.type_signature == TensorType(dtype, shape)


def test_literal_bytes_are_little_endian_whatever_the_array_order():
    value = np.array([1.5, -2.0], dtype=">f8")
    comp = fc.Computation(bb.Lambda(None, None, bb.Literal(value, TensorType(np.float64, [2]))))

    encoded = document(comp)["blocks"][0]["value"]

    assert encoded["dtype"] == "float64"
    assert base64.b64decode(encoded["data"]) == np.array([1.5, -2.0], dtype="<f8").tobytes()
    np.testing.assert_array_equal(round_trip(comp)(), [1.5, -2.0])


def test_string_literals_are_lists_of_str():
    value = np.array([["a", "bé"], ["", "ünïcode"]])
    comp = fc.Computation(bb.Lambda(None, None, bb.Literal(value, TensorType(np.str_, [2, 2]))))

    encoded = document(comp)["blocks"][0]["value"]

    assert encoded == {"dtype": "str", "shape": [2, 2], "strings": ["a", "bé", "", "ünïcode"]}
    # Strings come back to Python as UTF-8 bytes, as TFF returns them.
    assert round_trip(comp)().tolist() == [[b"a", "bé".encode()], [b"", "ünïcode".encode()]]


def test_a_literal_of_an_unsupported_dtype_is_refused():
    comp = fc.Computation(
        bb.Lambda(None, None, bb.Literal(np.array([object()]), TensorType(np.int32, [1])))
    )

    with pytest.raises(
        TypeError, match="Cannot serialize the literal .* expected a numeric, bool or str array"
    ):
        serialize_computation(comp)


# ---- deep trees


def test_a_tree_thousands_of_blocks_deep_round_trips():
    depth = 5000
    node: bb.ComputationBuildingBlock = bb.Reference("x", I32)
    for _ in range(depth):
        node = bb.Call(add_one.building_block, node)
    comp = fc.Computation(bb.Lambda("x", I32, node))

    data = serialize_computation(comp)
    restored = deserialize_computation(data)

    assert serialize_computation(restored) == data
    assert restored.type_signature == FunctionType(I32, I32)
    assert kinds(restored).count("call") == depth


# ---- refusals


def valid_document() -> dict:
    return document(add_half)


def encode(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def test_refuses_what_is_not_a_computation():
    with pytest.raises(TypeError, match="Expected a Computation to serialize, got a str"):
        serialize_computation("add_half")  # type: ignore[arg-type]

    @fc.federated_computation
    def untyped(x):
        return x

    with pytest.raises(TypeError, match="defined without parameter types"):
        serialize_computation(untyped)  # type: ignore[arg-type]


def test_refuses_input_that_is_not_bytes_or_not_json():
    with pytest.raises(
        TypeError, match="Expected the bytes of a serialized computation, got a str"
    ):
        deserialize_computation("{}")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UTF-8 JSON"):
        deserialize_computation(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="a JSON object\\), got a JSON list"):
        deserialize_computation(b"[1, 2]")


def test_refuses_an_unknown_format_or_version():
    doc = valid_document()
    doc["format"] = "tff.computation"
    with pytest.raises(
        ValueError, match="key 'format' is 'tff.computation', expected 'fed.computation'"
    ):
        deserialize_computation(encode(doc))

    doc = valid_document()
    doc["version"] = 2
    with pytest.raises(
        ValueError, match="Unsupported serialized computation version 2: this fed reads version 1"
    ):
        deserialize_computation(encode(doc))


def test_refuses_missing_or_extra_top_level_keys():
    doc = valid_document()
    del doc["types"]
    with pytest.raises(ValueError, match="has the keys .*'types'.*, got"):
        deserialize_computation(encode(doc))


def test_refuses_an_unknown_block_kind():
    doc = valid_document()
    doc["blocks"][0]["kind"] = "tensorflow_graph"
    with pytest.raises(ValueError, match="at blocks\\[0\\]: unknown block kind 'tensorflow_graph'"):
        deserialize_computation(encode(doc))


def test_refuses_a_block_with_missing_fields():
    doc = valid_document()
    del doc["blocks"][0]["payload"]
    with pytest.raises(ValueError, match="at blocks\\[0\\]: a compiled block has the keys"):
        deserialize_computation(encode(doc))


def test_refuses_a_reference_to_a_later_block():
    doc = document(
        fc.Computation(
            bb.Lambda("x", F32, bb.Call(add_half.building_block, bb.Reference("x", F32)))
        )
    )
    call = next(k for k, block in enumerate(doc["blocks"]) if block["kind"] == "call")
    doc["blocks"][call]["function"] = call + 1
    with pytest.raises(
        ValueError,
        match=(
            f"at blocks\\[{call}\\]: key 'function' is {call + 1}, expected the index of an "
            "earlier block"
        ),
    ):
        deserialize_computation(encode(doc))


def test_refuses_an_index_outside_the_type_table():
    doc = valid_document()
    doc["blocks"][0]["type"] = 99
    with pytest.raises(ValueError, match="key 'type' is 99, expected an index into 'types'"):
        deserialize_computation(encode(doc))


def test_types_are_checked_again_when_blocks_are_rebuilt():
    comp = fc.Computation(
        bb.Lambda("x", F32, bb.Call(add_half.building_block, bb.Reference("x", F32)))
    )
    doc = document(comp)
    doc["types"].append(serialize_type(I32))
    reference = next(block for block in doc["blocks"] if block["kind"] == "reference")
    reference["type"] = len(doc["types"]) - 1
    with pytest.raises(
        ValueError, match="the call block is invalid: .*expected a value of type float32, got int32"
    ):
        deserialize_computation(encode(doc))


def test_refuses_a_malformed_type_entry():
    doc = valid_document()
    doc["types"][0]["type"]["kind"] = "matrix"
    with pytest.raises(ValueError, match="at types\\[0\\]: .*'matrix'"):
        deserialize_computation(encode(doc))


def test_refuses_a_payload_that_is_not_base64():
    doc = valid_document()
    doc["blocks"][0]["payload"] = "not base64!"
    with pytest.raises(ValueError, match="key 'payload' is not base64"):
        deserialize_computation(encode(doc))


def test_refuses_literal_data_of_the_wrong_size():
    comp = fc.Computation(
        bb.Lambda(None, None, bb.Literal(np.zeros(3, np.float32), TensorType(np.float32, [3])))
    )
    doc = document(comp)
    doc["blocks"][0]["value"]["shape"] = [4]
    with pytest.raises(
        ValueError, match="holds 12 bytes, but a float32 tensor of shape \\[4\\] needs 16"
    ):
        deserialize_computation(encode(doc))


def test_refuses_a_literal_of_an_unknown_dtype():
    comp = fc.Computation(
        bb.Lambda(None, None, bb.Literal(np.zeros(3, np.float32), TensorType(np.float32, [3])))
    )
    doc = document(comp)
    doc["blocks"][0]["value"]["dtype"] = "float128"
    with pytest.raises(ValueError, match="key 'dtype' is 'float128', expected a dtype name"):
        deserialize_computation(encode(doc))


def test_refuses_a_struct_whose_recorded_type_differs_from_its_elements():
    comp = fc.Computation(bb.Lambda("x", F32, bb.Struct([("a", bb.Reference("x", F32))])))
    doc = document(comp)
    doc["types"].append(serialize_type(StructType([("b", F32)])))
    struct = next(block for block in doc["blocks"] if block["kind"] == "struct")
    struct["type"] = len(doc["types"]) - 1
    with pytest.raises(
        ValueError,
        match="the elements make a struct of type <a=float32>, but 'type' is <b=float32>",
    ):
        deserialize_computation(encode(doc))


def test_refuses_a_root_that_is_not_a_function():
    doc = valid_document()
    doc["types"].append(serialize_type(F32))
    doc["blocks"].append({"kind": "reference", "name": "x", "type": len(doc["types"]) - 1})
    doc["root"] = len(doc["blocks"]) - 1
    with pytest.raises(
        ValueError, match="its root block has type float32, expected a function type"
    ):
        deserialize_computation(encode(doc))


def test_refuses_an_unknown_placement():
    comp = fc.Computation(bb.Lambda(None, None, bb.Placement(CLIENTS)))
    doc = document(comp)
    doc["blocks"][0]["uri"] = "edge"
    with pytest.raises(
        ValueError, match="the placement block is invalid: Unknown placement 'edge'"
    ):
        deserialize_computation(encode(doc))


# ---- another process


def test_a_computation_runs_in_another_process(tmp_path):
    @python_computation(np.float32, np.float32, result_type=np.float32)
    def shift(offset, reading):
        return offset + reading

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def shifted_mean(offset, readings):
        pairs = fc.federated_zip((fc.federated_broadcast(offset), readings))
        return fc.federated_mean(fc.federated_map(shift, pairs))

    path = tmp_path / "shifted_mean.fedc"
    path.write_bytes(serialize_computation(shifted_mean))
    program = textwrap.dedent(
        f"""
        import pathlib
        from fed_core.serialization import deserialize_computation
        from fed_core.testing import register_python_frontend

        register_python_frontend()  # the test frontend's leaves load only where it is registered
        comp = deserialize_computation(pathlib.Path({str(path)!r}).read_bytes())
        print(comp.name, comp.type_signature, comp(1.0, [1.0, 2.0, 6.0]))
        """
    )

    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=120
    )

    assert completed.returncode == 0, completed.stderr
    assert (
        completed.stdout.strip()
        == "shifted_mean (<offset=float32@SERVER,readings={float32}@CLIENTS> -> float32@SERVER) 4.0"
    )
