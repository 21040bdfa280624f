"""What fed-core's public entry points do with the inputs a new user gets wrong: tracing mistakes,
operands of the wrong type, out-of-range parameters, bad call arguments, malformed computation files and
plugin settings. Each case names the error type and words of its message that say what was expected and
what was given."""

from __future__ import annotations

import base64
import json
import math
import warnings

import numpy as np
import pytest

import fed_core as fc
from fed_core import framework, plugins
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_core.templates import IterativeProcess
from fed_core.testing import python_computation
from fed_types import (
    MAX_NESTING,
    SERVER,
    SequenceType,
    StructType,
    TensorType,
    at_clients,
    at_server,
    serialize_type,
)

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)
CLIENT_F32 = at_clients(np.float32)
CLIENT_I32 = at_clients(np.int32)


@python_computation(np.float32, result_type=np.float32)
def add_half(x):
    return x + np.float32(0.5)


def traced(parameter_type, body):
    """Traces `body` as a federated computation of one parameter."""
    return lambda: fc.federated_computation(body, parameter_type)


def check(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return raised.value


# ---- tracing: Python, numpy and framework operations on symbolic values

ON_FEDERATED = "to a federated value {float32}@CLIENTS: use federated_map with a computation"
ON_UNPLACED = "to the value of type float32 of a federated computation: compute it in a computation"

OPERATIONS = {
    "v + 1.0": (lambda v: v + 1.0, "+"),
    "1.0 + v": (lambda v: 1.0 + v, "+"),
    "v - v": (lambda v: v - v, "-"),
    "v * 2": (lambda v: v * 2, "*"),
    "v / 2": (lambda v: v / 2, "/"),
    "v ** 2": (lambda v: v**2, "**"),
    "v @ v": (lambda v: v @ v, "@"),
    "v < 1": (lambda v: v < 1, "<"),
    "v >= 1": (lambda v: v >= 1, ">="),
    "v == 1": (lambda v: v == 1, "=="),
    "v != 1": (lambda v: v != 1, "!="),
    "1 in [v]... via ==": (lambda v: 1.0 in [v], "=="),
    "-v": (lambda v: -v, "unary -"),
    "abs(v)": (lambda v: abs(v), "abs()"),
    "round(v)": (lambda v: round(v), "round()"),
    "float(v)": (lambda v: float(v), "float()"),
    "int(v)": (lambda v: int(v), "int()"),
    "range(v)": (lambda v: range(v), "operator.index()"),
    "np.add(v, 1)": (lambda v: np.add(v, 1.0), "np.add"),
    "np.sqrt(v)": (lambda v: np.sqrt(v), "np.sqrt"),
    "np.sum(v)": (lambda v: np.sum(v), "np.sum"),
    "np.mean(v)": (lambda v: np.mean(v), "np.mean"),
    "np.asarray(v)": (lambda v: np.asarray(v), "a TensorFlow, JAX or numpy operation"),
}


@pytest.mark.parametrize(("body", "operation"), OPERATIONS.values(), ids=OPERATIONS.keys())
def test_an_operation_on_a_federated_value_says_to_map_a_computation(body, operation):
    error = check(traced(CLIENT_F32, body), TypeError, [f"cannot apply {operation} ", ON_FEDERATED])
    assert f"{__file__}:" in str(error)  # the user's line


@pytest.mark.parametrize(("body", "operation"), OPERATIONS.values(), ids=OPERATIONS.keys())
def test_an_operation_on_an_unplaced_value_says_to_compute_it_in_a_computation(body, operation):
    check(traced(F32, body), TypeError, [f"cannot apply {operation} ", ON_UNPLACED])


def test_symbolic_values_still_hash_by_identity():
    @fc.federated_computation(CLIENT_F32, CLIENT_F32)
    def pick(a, b):
        chosen = {a: "a", b: "b"}
        assert chosen[a] == "a" and len(chosen) == 2
        return fc.federated_mean(b)

    assert pick([1.0], [3.0]) == pytest.approx(3.0)


# ---- tracing: operands of the wrong type, and operators used outside tracing

OPERANDS = {
    "sum at server": (
        traced(at_server(np.int32), fc.federated_sum),
        fc.FederatedTypeError,
        ["federated_sum: expected a numeric value placed @CLIENTS", "int32@SERVER"],
    ),
    "sum of strings": (
        traced(at_clients(np.str_), fc.federated_sum),
        fc.FederatedTypeError,
        ["numeric tensor", "{str}@CLIENTS"],
    ),
    "mean of ints": (
        traced(CLIENT_I32, lambda v: fc.federated_mean(v)),
        fc.FederatedTypeError,
        ["floating-point tensor", "{int32}@CLIENTS"],
    ),
    "mean with an unplaced weight": (
        traced(CLIENT_F32, lambda v: fc.federated_mean(v, 2.0)),
        fc.FederatedTypeError,
        ["a weight placed @CLIENTS", "float32"],
    ),
    "broadcast of a client value": (
        traced(CLIENT_I32, fc.federated_broadcast),
        fc.FederatedTypeError,
        ["placed @SERVER", "{int32}@CLIENTS"],
    ),
    "federated_value with a string placement": (
        traced(I32, lambda v: fc.federated_value(v, "CLIENTS")),
        fc.FederatedTypeError,
        ["a placement (CLIENTS or SERVER)", "'CLIENTS'"],
    ),
    "federated_value of a federated value": (
        traced(CLIENT_I32, lambda v: fc.federated_value(v, SERVER)),
        fc.FederatedTypeError,
        ["not federated", "{int32}@CLIENTS"],
    ),
    "map of a non-function": (
        traced(CLIENT_I32, lambda v: fc.federated_map(5, v)),
        fc.FederatedTypeError,
        ["a function accepting int32", "int32"],
    ),
    "map of a function of another type": (
        traced(CLIENT_I32, lambda v: fc.federated_map(add_half, v)),
        fc.FederatedTypeError,
        ["a function accepting int32", "(float32 -> float32)"],
    ),
    "map over an unplaced value": (
        traced(CLIENT_I32, lambda v: fc.federated_map(add_half, 5)),
        fc.FederatedTypeError,
        ["placed @CLIENTS or @SERVER", "int32"],
    ),
    "zip of one value": (
        traced(CLIENT_I32, fc.federated_zip),
        fc.FederatedTypeError,
        ["a non-empty struct of federated values", "{int32}@CLIENTS"],
    ),
    "zip of mixed placements": (
        traced(
            StructType([CLIENT_I32, at_server(np.int32)]),
            lambda s: fc.federated_zip((s[0], s[1])),
        ),
        fc.FederatedTypeError,
        ["all at the same placement", "<{int32}@CLIENTS,int32@SERVER>"],
    ),
    "select with scalar keys": (
        traced(CLIENT_I32, lambda v: fc.federated_select(v, 5, v, lambda a, b: a)),
        fc.FederatedTypeError,
        ["client keys of type {int32[n]}@CLIENTS", "{int32}@CLIENTS"],
    ),
    "aggregate with a non-function": (
        traced(CLIENT_I32, lambda v: fc.federated_aggregate(v, 0, 5, 5, 5)),
        fc.FederatedTypeError,
        ["an accumulate function accepting <int32,int32>", "int32"],
    ),
    "sequence_sum of a tensor": (
        traced(CLIENT_I32, fc.sequence_sum),
        fc.FederatedTypeError,
        ["a sequence (T*)", "{int32}@CLIENTS"],
    ),
    "sequence_sum of strings": (
        traced(SequenceType(np.str_), fc.sequence_sum),
        fc.FederatedTypeError,
        ["numeric tensors", "str*"],
    ),
    "secure sum with a float bound": (
        traced(CLIENT_I32, lambda v: fc.federated_secure_sum(v, 1.5)),
        fc.FederatedTypeError,
        ["a max_input that is an integer scalar", "float32"],
    ),
    "returns None": (
        traced(CLIENT_I32, lambda v: None),
        TypeError,
        ["returned None", "must return a value"],
    ),
    "returns an object": (
        traced(CLIENT_I32, lambda v: object()),
        TypeError,
        ["Cannot use <object object", "expected a symbolic value"],
    ),
    "if on a value": (
        traced(CLIENT_I32, lambda v: 1 if v else 0),
        TypeError,
        ["{int32}@CLIENTS has no truth value", "Python control flow"],
    ),
    "select from a tensor": (
        traced(CLIENT_I32, lambda v: v.weights),
        AttributeError,
        ["Cannot select 'weights'", "{int32}@CLIENTS: it is not a struct"],
    ),
    "operator outside tracing": (
        lambda: fc.federated_sum([1, 2]),
        RuntimeError,
        ["federated_sum can only be used inside a federated computation", "@federated_computation"],
    ),
    "decorator given a bad type spec": (
        lambda: fc.federated_computation(5),
        TypeError,
        ["Expected a type spec", "5 of Python type int"],
    ),
    "decorator given types for no parameter": (
        lambda: fc.federated_computation(np.int32)(lambda: 1),
        TypeError,
        ["takes no parameters", "types were given"],
    ),
    "decorator given too few types": (
        lambda: fc.federated_computation(np.int32)(lambda a, b: a),
        TypeError,
        ["2 parameters (a, b)", "int32"],
    ),
    "Computation of a non-block": (
        lambda: fc.Computation(5),
        TypeError,
        ["made from a building block", "5 of Python type int"],
    ),
    "python_computation of a lambda": (
        lambda: python_computation(np.int32, result_type=np.int32)(lambda x: x),
        TypeError,
        ["a function defined with def", "<lambda>"],
    ),
    "intrinsic_operator of an unknown URI": (
        lambda: framework.intrinsic_operator("federated_nope"),
        LookupError,
        ["Unknown intrinsic 'federated_nope'", "registered by plugins"],
    ),
}


@pytest.mark.parametrize(("call", "error", "words"), OPERANDS.values(), ids=OPERANDS.keys())
def test_a_wrong_operand_raises_a_clear_error(call, error, words):
    check(call, error, words)


# ---- secure aggregations: parameters out of range, at trace time and when computed


def bitwidth_sum(bound):
    return lambda v: fc.federated_secure_sum_bitwidth(v, bound)


SECURE = {
    "max_input negative": (
        CLIENT_I32,
        lambda v: fc.federated_secure_sum(v, -1),
        ["federated_secure_sum: expected a max_input of at least 0", "given -1"],
    ),
    "bitwidth negative": (
        CLIENT_I32,
        bitwidth_sum(-1),
        ["expected a bitwidth in [1, 31]", "given -1"],
    ),
    "bitwidth zero": (CLIENT_I32, bitwidth_sum(0), ["bitwidth in [1, 31]", "given 0"]),
    "bitwidth huge": (CLIENT_I32, bitwidth_sum(100), ["bitwidth in [1, 31]", "given 100"]),
    "bitwidth wider than int32": (
        CLIENT_I32,
        bitwidth_sum(32),
        ["bitwidth in [1, 31]", "must fit in int32", "given 32"],
    ),
    "bitwidth wider than uint8": (
        at_clients(np.uint8),
        bitwidth_sum(9),
        ["bitwidth in [1, 8]", "given 9"],
    ),
    "bitwidth in a struct": (
        at_clients([np.int32, np.int64]),
        lambda v: fc.federated_secure_sum_bitwidth(v, (np.int32(8), np.int32(64))),
        ["bitwidth in [1, 63]", "int64", "given 64"],
    ),
    "modulus zero": (
        CLIENT_I32,
        lambda v: fc.federated_secure_modular_sum(v, 0),
        ["federated_secure_modular_sum: expected a modulus in [1, 2**31 - 1]", "given 0"],
    ),
    "modulus negative": (
        CLIENT_I32,
        lambda v: fc.federated_secure_modular_sum(v, -5),
        ["modulus in [1, 2**31 - 1]", "given -5"],
    ),
    "modulus beyond the dtype": (
        at_clients(np.int64),
        lambda v: fc.federated_secure_modular_sum(v, np.uint64(2**64 - 1)),
        ["modulus in [1, 2**63 - 1]", "given 18446744073709551615"],
    ),
}


@pytest.mark.parametrize(("value_type", "body", "words"), SECURE.values(), ids=SECURE.keys())
def test_a_secure_sum_parameter_out_of_range_is_refused_while_tracing(value_type, body, words):
    error = check(traced(value_type, body), ValueError, words)
    assert f"{__file__}:" in str(error)


@pytest.mark.parametrize(
    ("operator", "bound", "words"),
    [
        (fc.federated_secure_sum, -1, ["expected a max_input of at least 0", "given -1"]),
        (fc.federated_secure_sum_bitwidth, -1, ["expected a bitwidth in [1, 31]", "given -1"]),
        (fc.federated_secure_sum_bitwidth, 100, ["expected a bitwidth in [1, 31]", "given 100"]),
        (fc.federated_secure_modular_sum, 0, ["expected a modulus in [1, 2**31 - 1]", "given 0"]),
    ],
    ids=["max_input", "bitwidth negative", "bitwidth huge", "modulus"],
)
def test_a_computed_secure_sum_parameter_out_of_range_blames_the_parameter(operator, bound, words):
    @fc.federated_computation(CLIENT_I32, I32)
    def secure(values, parameter):
        return operator(values, parameter)

    # Not the clients' values, which are in range whatever the bound; without clients too.
    for clients in ([1, 2], []):
        error = check(lambda clients=clients: secure(clients, bound), ValueError, words)
        assert "holds" not in str(error)


def test_secure_sums_in_range_still_sum():
    @fc.federated_computation(CLIENT_I32)
    def sums(values):
        return (
            fc.federated_secure_sum(values, 10),
            fc.federated_secure_sum_bitwidth(values, 31),
            fc.federated_secure_modular_sum(values, 2**31 - 1),
            fc.federated_secure_modular_sum(values, 7),
        )

    assert [int(x) for x in sums([3, 5, 6])] == [14, 14, 14, 0]


# ---- calling computations


@fc.federated_computation(CLIENT_F32)
def mean(values):
    return fc.federated_mean(values)


CALLS = {
    "keyword of another name": (
        lambda: mean(weights=[1.0]),
        ["takes one argument ({float32}@CLIENTS)", "as values=...", "['weights']"],
    ),
    "positional and keyword": (
        lambda: mean([1.0], values=[1.0]),
        ["takes one argument", "1 positional arguments and the keyword arguments ['values']"],
    ),
    "two positional": (lambda: mean([1.0], [2.0]), ["takes one argument", "2 positional"]),
    "no argument": (lambda: mean(), ["takes one argument", "got none"]),
    "a scalar for clients": (
        lambda: mean(5.0),
        ["expected {float32}@CLIENTS", "one member per client"],
    ),
    "strings": (lambda: mean(["a"]), ["expected float32 at [client 0]", "given str"]),
    "None": (lambda: mean(None), ["expected {float32}@CLIENTS", "NoneType"]),
    "None as a member": (lambda: mean([1.0, None]), ["float32 at [client 1]", "NoneType"]),
    "beyond float32": (
        lambda: mean([1e40]),
        ["expected float32 at [client 0]", "1e+40 is beyond the range of float32"],
    ),
    "vectors": (lambda: mean([[1.0, 2.0]]), ["float32 at [client 0]", "<float32,float32>"]),
}


@pytest.mark.parametrize(("call", "words"), CALLS.values(), ids=CALLS.keys())
def test_a_computation_called_with_bad_arguments_says_what_it_takes(call, words):
    check(call, TypeError, words)


def test_a_one_parameter_computation_is_called_by_its_parameters_name():
    assert mean(values=[1.0, 2.0]) == pytest.approx(1.5)
    assert mean.parameter_names == ("values",)


def test_nan_and_infinity_are_values_like_any_other():
    assert math.isnan(mean([1.0, math.nan]))
    assert mean([1.0, math.inf]) == math.inf


def test_fed_errors_of_a_polymorphic_computation_reach_the_caller_unchanged():
    @fc.federated_computation
    def zipped(x, y):
        return fc.federated_zip((x, y))

    check(
        lambda: zipped(1, 2.0),
        fc.FederatedTypeError,
        ["federated_zip: expected a non-empty struct of federated values", "<int32,float32>"],
    )


# ---- stateful processes: a failed step loses no state


@fc.federated_computation
def start():
    return fc.federated_value(np.float32(0.0), SERVER)


@fc.federated_computation(at_server(np.float32), CLIENT_F32)
def step(total, values):
    return fc.federated_map(add_half, total), fc.federated_mean(values)


def test_a_failed_next_leaves_the_previous_state_usable():
    process = IterativeProcess(start, step)
    state = process.initialize()
    state, mean_ = process.next(state, [1.0, 2.0])
    assert (state, mean_) == (pytest.approx(0.5), pytest.approx(1.5))
    for bad in (["a"], None, 3.0, [[1.0]]):
        with pytest.raises(TypeError, match="expected"):
            process.next(state, bad)
    state, mean_ = process.next(state, [4.0])
    assert (state, mean_) == (pytest.approx(1.0), pytest.approx(4.0))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: IterativeProcess(5, step), ["initialize_fn must be a Computation", "int"]),
        (lambda: IterativeProcess(start, add_half), ["next_fn must accept the state", "float32"]),
        (lambda: IterativeProcess(step, step), ["initialize_fn must take no argument", "<total"]),
    ],
    ids=["not a computation", "next of another state", "initialize with a parameter"],
)
def test_a_malformed_process_is_refused_naming_the_types(make, words):
    check(make, TypeError, words)


# ---- computation files


def document(comp=mean):
    return json.loads(serialize_computation(comp))


def encode(doc):
    return json.dumps(doc).encode()


def edited(edit, comp=mean):
    doc = document(comp)
    edit(doc)
    return encode(doc)


def blocks_of(doc, kind):
    return [block for block in doc["blocks"] if block["kind"] == kind]


def rename_intrinsic(doc):
    blocks_of(doc, "intrinsic")[0]["uri"] = "federated_nope"


def unbind_the_parameter(doc):
    (lambda_,) = blocks_of(doc, "lambda")
    lambda_["parameter_name"] = "elsewhere"


@fc.federated_computation(F32)
def identity(x):
    return x


def retype_the_reference(doc):
    doc["types"].append({"version": 1, "type": {"kind": "tensor", "dtype": "int32", "shape": []}})
    (reference,) = blocks_of(doc, "reference")
    reference["type"] = len(doc["types"]) - 1


def set_the_parameter_type(t):
    def edit(doc):
        doc["types"].append(serialize_type(t))
        for block in blocks_of(doc, "reference"):
            if block["name"] == blocks_of(doc, "lambda")[0]["parameter_name"]:
                block["type"] = len(doc["types"]) - 1

    return edit


def set_version(value):
    return lambda doc: doc.update(version=value)


def set_type_version(value):
    return lambda doc: doc["types"][0].update(version=value)


def nested(depth):
    node = {"kind": "tensor", "dtype": "float32", "shape": []}
    for _ in range(depth):
        node = {"kind": "struct", "elements": [{"name": None, "type": node}]}
    return node


def add_nested_type(depth):
    return lambda doc: doc["types"].append({"version": 1, "type": nested(depth)})


@python_computation(np.float32, result_type=np.float32)
def scale(x):
    return x * np.float32(3)


def corrupt_the_leaf(doc):
    (leaf,) = blocks_of(doc, "compiled")
    payload = base64.b64decode(leaf["payload"])
    leaf["payload"] = base64.b64encode(payload[: len(payload) // 2]).decode()


def leaf_of_an_unknown_frontend(doc):
    blocks_of(doc, "compiled")[0]["frontend"] = "cobol"


FILES = {
    "unknown intrinsic": (
        lambda: edited(rename_intrinsic),
        ["at blocks[0]: Unknown intrinsic 'federated_nope'", "registered by plugins"],
    ),
    "unbound reference": (
        lambda: edited(unbind_the_parameter),
        ["the reference '_arg", "is bound by no enclosing lambda or block"],
    ),
    "reference of another type than its binding": (
        lambda: edited(retype_the_reference, identity),
        ["has type int32, but the lambda's parameter", "has type float32"],
    ),
    "call of an argument of another type": (
        lambda: edited(set_the_parameter_type(I32)),
        ["the call block is invalid", "expected a value of type {float32}@CLIENTS, got int32"],
    ),
    "version a float": (lambda: edited(set_version(1.0)), ["version 1.0", "reads version 1"]),
    "version true": (lambda: edited(set_version(True)), ["version True", "reads version 1"]),
    "version a string": (lambda: edited(set_version("1")), ["version '1'", "reads version 1"]),
    "type version a float": (
        lambda: edited(set_type_version(1.0)),
        ["at types[0]", "'version' is 1.0, expected 1"],
    ),
    "type nested too deeply": (
        lambda: edited(add_nested_type(MAX_NESTING + 5)),
        ["at types[", f"nested more than {MAX_NESTING} deep"],
    ),
    "JSON nested too deeply": (
        lambda: serialize_computation(mean).replace(b'"name":"mean"', b'"name":' + b"[" * 100_000),
        ["JSON is nested too deeply"],
    ),
    "truncated payload": (
        lambda: edited(corrupt_the_leaf, scale),
        ["the compiled leaf 'scale' cannot run", "not a python computation's"],
    ),
    "leaf of an unknown frontend": (
        lambda: edited(leaf_of_an_unknown_frontend, scale),
        ["frontend 'cobol'", "registered:"],
    ),
    "not JSON": (lambda: b"\x00\x01", ["UTF-8 JSON", "do not parse"]),
    "another format": (lambda: encode({"format": "x"}), ["key 'format' is 'x'", "fed.computation"]),
}


@pytest.mark.parametrize(("data", "words"), FILES.values(), ids=FILES.keys())
def test_a_malformed_computation_file_is_refused_when_loaded(data, words):
    check(lambda: deserialize_computation(data()), ValueError, words)


def test_a_computation_file_of_the_wrong_python_type_is_refused():
    check(
        lambda: deserialize_computation(serialize_computation(mean).decode()),
        TypeError,
        ["Expected the bytes of a serialized computation", "got a str"],
    )


def test_well_formed_files_with_shared_and_nested_bindings_still_load():
    @fc.federated_computation(CLIENT_F32)
    def twice(values):
        first = fc.federated_map(add_half, values)
        return fc.federated_mean(first), fc.federated_mean(fc.federated_map(add_half, first))

    restored = deserialize_computation(serialize_computation(twice))
    assert [float(x) for x in restored([1.0, 2.0])] == [2.0, 2.5]


# ---- plugin settings


def test_disabling_an_unknown_plugin_warns_naming_it_and_the_known_ones():
    with pytest.warns(UserWarning) as warned:
        system = plugins.PluginSystem(autoload=True, disabled=["exampel", "rival"])
        system.entries()
    (warning,) = [w for w in warned if "exampel" in str(w.message)]
    message = str(warning.message)
    assert "FED_DISABLED_PLUGINS (or disabled=) names 'exampel'" in message
    assert "Installed plugins: " in message and "example" in message.split("Installed")[1]
    assert "fed-example-plugin" in message and "'rival'" not in message
    assert "example_sequential" in system.registry("executors")  # the misspelt one stays enabled


def test_disabling_known_plugins_warns_of_nothing(monkeypatch):
    monkeypatch.setenv("FED_DISABLED_PLUGINS", "rival,fed-broken-plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plugins.PluginSystem(autoload=True).entries()
