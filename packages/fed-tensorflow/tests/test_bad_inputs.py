"""What fed-tensorflow's entry points do with the inputs a new user gets wrong: TensorFlow operations on
federated values, polymorphic computations called with mixed dtypes, bad types and arguments, and edited
computation files. Each case names the error type and words of its message that say what was expected
and what was given."""

import base64
import json
import math

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_core.templates import IterativeProcess
from fed_tensorflow._payload import MAGIC, GraphPayload
from fed_types import (
    SERVER,
    FunctionType,
    SequenceType,
    TensorType,
    at_clients,
    at_server,
    serialize_type,
)

F32 = TensorType(np.float32)
CLIENT_F32 = at_clients(np.float32)


def check(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@ftf.computation(tf.float32)
def plus_one(x):
    return x + 1.0


@ftf.computation(TensorType(np.float32, [3]))
def total(x):
    return tf.reduce_sum(x)


@ftf.computation
def add(x, y):
    return x + y


# ---- TensorFlow operations on the symbolic values of a federated computation

TF_OPERATIONS = {
    "tf.add": (lambda v: tf.add(v, 1.0), "tf.add"),
    "tf.reduce_sum": (lambda v: tf.reduce_sum(v), "tf.reduce_sum"),
    "tf.math.reduce_mean": (lambda v: tf.math.reduce_mean(v), "tf.reduce_mean"),
    "tf.nn.relu": (lambda v: tf.nn.relu(v), "tf.nn.relu"),
    "tf.cast": (lambda v: tf.cast(v, tf.int32), "tf.cast"),
    "tf.constant": (lambda v: tf.constant(v), "tf.constant"),
    "tensor + value": (lambda v: tf.constant(1.0) + v, "+"),
    "value * tensor": (lambda v: v * tf.constant(2.0), "*"),
}


@pytest.mark.parametrize(("body", "operation"), TF_OPERATIONS.values(), ids=TF_OPERATIONS.keys())
def test_a_tensorflow_operation_on_a_federated_value_says_to_map_a_computation(body, operation):
    message = check(
        lambda: fc.federated_computation(body, CLIENT_F32),
        TypeError,
        [
            f"cannot apply {operation} to a federated value {{float32}}@CLIENTS",
            "use federated_map with a computation (such as a tensorflow.computation)",
            f"{__file__}:",
        ],
    )
    assert "Attempt to convert" not in message and "len()" not in message


def test_the_operation_mapped_with_a_computation_is_the_fix():
    @fc.federated_computation(CLIENT_F32)
    def shifted(values):
        return fc.federated_map(plus_one, values)

    assert shifted([1.0, 2.5]) == [pytest.approx(2.0), pytest.approx(3.5)]


# ---- polymorphic computations called with mixed dtypes, and calls by keyword

MIXED = {
    "int and float": (lambda: add(1, 2.0), "(float32, int32)", "<x=int32,y=float32>"),
    "by keyword": (lambda: add(x=1, y=2.0), "(float32, int32)", "<x=int32,y=float32>"),
    "int64 and int": (lambda: add(np.int64(1), 2), "(int32, int64)", "<x=int64,y=int32>"),
}


@pytest.mark.parametrize(("call", "dtypes", "inferred"), MIXED.values(), ids=MIXED.keys())
def test_a_polymorphic_computation_called_with_mixed_dtypes_says_so(call, dtypes, inferred):
    message = check(
        call,
        TypeError,
        [
            f"add was called with arguments of different dtypes {dtypes}",
            f"{inferred} as inferred from their values",
            "AddV2",
            "declare its parameter types",
        ],
    )
    assert "in user code" not in message


def test_a_polymorphic_computation_of_one_dtype_still_traces_and_runs():
    assert add(1.0, 2.0) == pytest.approx(3.0)
    assert add(x=1, y=2) == 3


def test_a_one_parameter_computation_is_called_by_its_parameters_name():
    assert plus_one(x=1.0) == pytest.approx(2.0)
    check(
        lambda: plus_one(y=1.0),
        TypeError,
        ["takes one argument (float32), given by position or as x=...", "['y']"],
    )


# ---- calls with bad values

CALLS = {
    "a string": (lambda: plus_one("a"), ["expected float32", "given str"]),
    "None": (lambda: plus_one(None), ["expected float32", "NoneType"]),
    "a list": (lambda: plus_one([1.0, 2.0]), ["expected float32", "<float32,float32>"]),
    "float64": (lambda: plus_one(np.float64(1.0)), ["expected float32", "given float64"]),
    "a bool": (lambda: plus_one(True), ["expected float32", "given bool"]),
    "beyond float32": (lambda: plus_one(1e40), ["expected float32", "beyond the range"]),
    "a short vector": (lambda: total([1.0, 2.0]), ["expected float32[3]", "<float32,float32>"]),
    "a matrix": (
        lambda: total(np.zeros((3, 3), np.float32)),
        ["expected float32[3]", "float32[3,3]"],
    ),
    "two arguments": (lambda: plus_one(1.0, 2.0), ["takes one argument", "2 positional"]),
}


@pytest.mark.parametrize(("call", "words"), CALLS.values(), ids=CALLS.keys())
def test_a_computation_called_with_bad_values_says_what_it_takes(call, words):
    check(call, TypeError, words)


def test_nan_and_infinity_pass_through_as_values():
    assert math.isnan(plus_one(math.nan))
    assert plus_one(-math.inf) == -math.inf


# ---- defining computations with bad types or results

DEFINITIONS = {
    "an int as type": (lambda: ftf.computation(5), ["Expected a type spec", "5"]),
    "a misspelt dtype": (
        lambda: ftf.computation("float")(lambda x: x),
        ["Expected a type spec", "'float'"],
    ),
    "a resource dtype": (
        lambda: ftf.computation(tf.resource)(lambda x: x),
        ["Unsupported dtype resource", "no numpy counterpart"],
    ),
    "a federated parameter": (
        lambda: ftf.computation(CLIENT_F32)(lambda x: x),
        ["cannot take a parameter of type {float32}@CLIENTS", "tensors, sequences and structs"],
    ),
    "a function parameter": (
        lambda: ftf.computation(FunctionType(np.int32, np.int32))(lambda x: x),
        ["cannot take a parameter of type (int32 -> int32)", "tensors, sequences"],
    ),
    "returns None": (
        lambda: ftf.computation(tf.float32)(lambda x: None),
        ["returned None", "must return tensors, datasets, or containers of them"],
    ),
    "returns an object": (
        lambda: ftf.computation(tf.float32)(lambda x: object()),
        ["returned <object objec", "expected tensors, datasets, or containers of them"],
    ),
    "types for no parameter": (
        lambda: ftf.computation(tf.float32)(lambda: 1.0),
        ["takes no parameters", "types were given"],
    ),
}


@pytest.mark.parametrize(("call", "words"), DEFINITIONS.values(), ids=DEFINITIONS.keys())
def test_a_bad_definition_raises_a_clear_error_without_tensorflows_trace(call, words):
    message = check(call, TypeError, words)
    assert "in user code" not in message


CONVERSIONS = {
    "to_type of an int": (lambda: ftf.to_type(5), TypeError, ["type spec", "5"]),
    "to_type of a resource": (
        lambda: ftf.to_type(tf.resource),
        TypeError,
        ["numeric, bool or string tensors", "tf.resource"],
    ),
    "to_tf_spec of a federated type": (
        lambda: ftf.to_tf_spec(at_clients(np.int32)),
        TypeError,
        ["tensor, sequence or struct type", "{int32}@CLIENTS"],
    ),
    "to_tf_dtype of a bad name": (
        lambda: ftf.to_tf_dtype("x"),
        TypeError,
        ["Unknown dtype name 'x'", "float32"],
    ),
    "configure an unknown strategy": (
        lambda: ftf.configure(map_strategy="fast"),
        ValueError,
        ["map_strategy must be one of", "'fast'"],
    ),
    "configure devices as a string": (
        lambda: ftf.configure(devices="/GPU:0"),
        TypeError,
        ["non-empty list of device names", "'/GPU:0'"],
    ),
    "configure no devices": (
        lambda: ftf.configure(devices=[]),
        TypeError,
        ["non-empty list of device names", "[]"],
    ),
}


@pytest.mark.parametrize(("call", "error", "words"), CONVERSIONS.values(), ids=CONVERSIONS.keys())
def test_bad_conversions_and_settings_raise_clear_errors(call, error, words):
    try:
        check(call, error, words)
    finally:
        ftf.configure()


# ---- clients' values


@fc.federated_computation(CLIENT_F32)
def shifted(values):
    return fc.federated_map(plus_one, values)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["a"], ["expected float32 at [client 0]", "given str"]),
        ([1.0, [2.0]], ["expected float32 at [client 1]", "<float32>"]),
        (5.0, ["expected {float32}@CLIENTS", "one member per client"]),
    ],
    ids=["a string", "a list member", "a scalar"],
)
def test_bad_client_values_name_the_client(values, words):
    check(lambda: shifted(values), TypeError, words)


def test_no_clients_and_nan_members_are_values_too():
    assert shifted([]) == []
    assert math.isnan(shifted([math.nan])[0])


# ---- a process whose step fails keeps its state


@fc.federated_computation
def start():
    return fc.federated_value(np.float32(1.0), SERVER)


@fc.federated_computation(at_server(np.float32), CLIENT_F32)
def step(state, values):
    return fc.federated_map(plus_one, state), fc.federated_sum(fc.federated_map(plus_one, values))


def test_a_failed_next_leaves_the_previous_state_usable():
    process = IterativeProcess(start, step)
    state, _ = process.next(process.initialize(), [1.0])
    for bad in (["a"], [None], 2.0, [np.ones(2, np.float32)]):
        with pytest.raises(TypeError, match="expected"):
            process.next(state, bad)
    state, summed = process.next(state, [1.0, 2.0])
    assert (state, summed) == (pytest.approx(3.0), pytest.approx(5.0))


# ---- computation files whose TensorFlow leaf was edited


def leaf_document(comp=plus_one):
    return json.loads(serialize_computation(comp))


def with_payload(change, comp=plus_one):
    doc = leaf_document(comp)
    (leaf,) = [b for b in doc["blocks"] if b["kind"] == "compiled"]
    leaf["payload"] = base64.b64encode(change(base64.b64decode(leaf["payload"]))).decode()
    return json.dumps(doc).encode()


def with_type(t, comp=plus_one):
    doc = leaf_document(comp)
    (leaf,) = [b for b in doc["blocks"] if b["kind"] == "compiled"]
    doc["types"].append(serialize_type(t))
    leaf["type"] = len(doc["types"]) - 1
    return json.dumps(doc).encode()


def with_header(**changes):
    def change(data):
        payload = GraphPayload.decode(data)
        header = {"version": 1, "inputs": list(payload.inputs), "outputs": list(payload.outputs)}
        header.update(changes)
        text = json.dumps(header).encode()
        graph = payload.graph_def.SerializeToString()
        return MAGIC + len(text).to_bytes(4, "little") + text + graph

    return change


FILES = {
    "graph cut short": (
        lambda: with_payload(lambda data: data[: len(data) * 2 // 3]),
        ["does not parse", "corrupt or cut short"],
    ),
    "header cut short": (lambda: with_payload(lambda data: data[:20]), ["cut short"]),
    "not a payload": (
        lambda: with_payload(lambda data: b"#!/bin/sh\nrm -rf /"),
        ["Not a fed TensorFlow payload", "b'#!/bin/sh"],
    ),
    "version a float": (
        lambda: with_payload(with_header(version=1.0)),
        ["payload version 1.0", "reads version 1"],
    ),
    "input names not strings": (
        lambda: with_payload(with_header(inputs=[0])),
        ["has inputs [0]", "a list of tensor names"],
    ),
    "a missing input tensor": (
        lambda: with_payload(with_header(inputs=["nowhere:0"])),
        ["The graph has no tensor 'nowhere:0' (inputs 0)"],
    ),
    "a type of another dtype": (
        lambda: with_type(FunctionType(np.int32, np.int32)),
        ["input 0", "is a float32 tensor, but the type (int32 -> int32) says int32"],
    ),
    "a type of another shape": (
        lambda: with_type(FunctionType(F32, TensorType(np.float32, [2]))),
        ["output 0", "is a float32 tensor, but the type (float32 -> float32[2]) says"],
    ),
    "a type of more leaves": (
        lambda: with_type(FunctionType([F32, F32], F32)),
        ["The graph has 1 inputs", "<float32,float32>", "2 leaves"],
    ),
    "a sequence where a tensor is": (
        lambda: with_type(FunctionType(SequenceType(np.float32), F32)),
        ["input 0", "says float32*"],
    ),
}


@pytest.mark.parametrize(("data", "words"), FILES.values(), ids=FILES.keys())
def test_an_edited_tensorflow_leaf_is_refused_when_the_file_is_loaded(data, words):
    check(
        lambda: deserialize_computation(data()),
        ValueError,
        ["Malformed serialized computation at blocks[", "the compiled leaf 'plus_one' cannot run"]
        + words,
    )


def test_an_unedited_file_loads_and_runs():
    restored = deserialize_computation(serialize_computation(plus_one))
    assert restored(2.0) == pytest.approx(3.0)
