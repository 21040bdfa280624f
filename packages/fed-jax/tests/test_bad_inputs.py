"""What fed-jax's entry points do with the inputs a new user gets wrong: bad types and results, bad call
arguments, bad training settings and edited computation files. Each case names the error type and words
of its message that say what was expected and what was given."""

import base64
import collections
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

import fed_core as fc
import fed_jax
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_jax._payload import JaxPayload
from fed_types import FunctionType, SequenceType, TensorType, at_clients, serialize_type

F32 = TensorType(np.float32)


def check(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@fed_jax.computation(np.float32)
def plus_one(x):
    return x + 1.0


# ---- defining computations

DEFINITIONS = {
    "an int as type": (lambda: fed_jax.computation(5), ["Expected a type spec", "5"]),
    "strings": (
        lambda: fed_jax.computation(np.str_)(lambda x: x),
        ["cannot take str", "JAX has no string tensors"],
    ),
    "64-bit without x64": (
        lambda: fed_jax.computation(np.float64)(lambda x: x),
        ["cannot take float64", "jax_enable_x64"],
    ),
    "a sequence": (
        lambda: fed_jax.computation(SequenceType(np.float32))(lambda x: x),
        ["cannot take float32*", "JAX has no datasets"],
    ),
    "a federated parameter": (
        lambda: fed_jax.computation(at_clients(np.float32))(lambda x: x),
        ["cannot take {float32}@CLIENTS"],
    ),
    "returns None": (
        lambda: fed_jax.computation(np.float32)(lambda x: None),
        ["cannot return what it returns", "returned None"],
    ),
    "returns a string": (
        lambda: fed_jax.computation(np.float32)(lambda x: "a"),
        ["must return arrays or containers of them", "got 'a'"],
    ),
    "shapes that do not broadcast": (
        lambda: fed_jax.computation(TensorType(np.float32, [2]), TensorType(np.float32, [3]))(
            lambda x, y: x + y
        ),
        ["Tracing the JAX computation", "<x=float32[2],y=float32[3]>", "(2,), (3,)"],
    ),
}


@pytest.mark.parametrize(("call", "words"), DEFINITIONS.values(), ids=DEFINITIONS.keys())
def test_a_bad_definition_raises_a_clear_error(call, words):
    check(call, TypeError, words)


# ---- calls

CALLS = {
    "a string": (lambda: plus_one("a"), ["expected float32", "given str"]),
    "None": (lambda: plus_one(None), ["expected float32", "NoneType"]),
    "a vector": (lambda: plus_one(np.ones(2, np.float32)), ["expected float32", "float32[2]"]),
    "another keyword": (
        lambda: plus_one(y=1.0),
        ["takes one argument (float32), given by position or as x=...", "['y']"],
    ),
    "two arguments": (lambda: plus_one(1.0, 2.0), ["takes one argument", "2 positional"]),
}


@pytest.mark.parametrize(("call", "words"), CALLS.values(), ids=CALLS.keys())
def test_a_computation_called_with_bad_arguments_says_what_it_takes(call, words):
    check(call, TypeError, words)


def test_keyword_calls_nan_and_mixed_python_scalars_work():
    assert plus_one(x=1.0) == pytest.approx(2.0)
    assert math.isnan(plus_one(math.nan))

    @fed_jax.computation
    def add(x, y):
        return x + y

    assert add(1, 2.0) == pytest.approx(3.0)  # JAX promotes int32 and float32, as numpy does


def test_a_jax_operation_on_a_federated_value_is_refused_by_jax():
    # JAX checks its arguments' classes before any conversion fed could hook into; its message
    # names what it takes and the symbolic value it was given.
    check(
        lambda: fc.federated_computation(lambda v: jnp.add(v, 1.0), at_clients(np.float32)),
        TypeError,
        ["add requires ndarray or scalar arguments", "Value"],
    )


# ---- the canned federated averaging

MODEL = collections.OrderedDict(w=TensorType(np.float32, [2]), b=F32)
BATCH = collections.OrderedDict(
    x=TensorType(np.float32, [None, 2]), y=TensorType(np.float32, [None])
)


def loss(model, batch):
    return jnp.mean((batch["x"] @ model["w"] + model["b"] - batch["y"]) ** 2)


def build(batch=BATCH, model=MODEL, loss_fn=loss, step_size=0.1):
    return fed_jax.build_jax_federated_averaging_process(batch, model, loss_fn, step_size)


BUILDS = {
    "model an int": (lambda: build(model=5), TypeError, ["Expected a type spec", "5"]),
    "model a sequence": (
        lambda: build(model=SequenceType(np.float32)),
        TypeError,
        ["model_type must be a tensor type or a struct of them", "float32*"],
    ),
    "loss not a function": (
        lambda: build(loss_fn=5),
        TypeError,
        ["loss_fn must be a function of (model, batch)", "got 5"],
    ),
    "step size infinite": (
        lambda: build(step_size=math.inf),
        ValueError,
        ["positive finite number", "inf"],
    ),
    "step size NaN": (lambda: build(step_size=math.nan), ValueError, ["positive finite", "nan"]),
    "step size negative": (lambda: build(step_size=-0.1), ValueError, ["positive", "-0.1"]),
}


@pytest.mark.parametrize(("call", "error", "words"), BUILDS.values(), ids=BUILDS.keys())
def test_bad_training_settings_are_refused_when_the_process_is_built(call, error, words):
    check(call, error, words)


def test_a_failed_next_leaves_the_previous_state_usable():
    process = build()
    state = process.initialize()
    good = [[{"x": np.ones((4, 2), np.float32), "y": np.ones(4, np.float32)}]]
    bad_data = {
        "a batch of another shape": (
            [[{"x": np.ones((4, 3), np.float32), "y": np.ones(4, np.float32)}]],
            ["expected float32[?,2] at .federated_data[client 0][0].x", "float32[4,3]"],
        ),
        "a batch without labels": (
            [[{"x": np.ones((4, 2), np.float32)}]],
            ["expected <x=float32[?,2],y=float32[?]>", "given <x=float32[4,2]>"],
        ),
        "no list of clients": ({"x": 1}, ["a list with one member per client"]),
    }
    for data, words in bad_data.values():
        check(lambda data=data: process.next(state, data), TypeError, words)
    check(lambda: process.next(state, []), ValueError, ["at least one client"])
    np.testing.assert_allclose(process.next(state, good)["w"], [0.2, 0.2], rtol=1e-6)


# ---- computation files whose JAX leaf was edited


def with_payload(change):
    doc = json.loads(serialize_computation(plus_one))
    (leaf,) = [b for b in doc["blocks"] if b["kind"] == "compiled"]
    leaf["payload"] = base64.b64encode(change(base64.b64decode(leaf["payload"]))).decode()
    return json.dumps(doc).encode()


def with_type(t):
    doc = json.loads(serialize_computation(plus_one))
    (leaf,) = [b for b in doc["blocks"] if b["kind"] == "compiled"]
    doc["types"].append(serialize_type(t))
    leaf["type"] = len(doc["types"]) - 1
    return json.dumps(doc).encode()


def cut_module(data):
    payload = JaxPayload.decode(data)
    return JaxPayload(payload.single[:100], payload.batched).encode()


FILES = {
    "payload cut short": (
        lambda: with_payload(lambda data: data[: len(data) // 2]),
        ["payload is not JSON"],
    ),
    "module cut short": (lambda: with_payload(cut_module), ["holds no readable exported module"]),
    "a type of another dtype": (
        lambda: with_type(FunctionType(np.int32, np.int32)),
        ["takes [ShapedArray(float32[])]", "not what its type (int32 -> int32) says"],
    ),
    "a type of another shape": (
        lambda: with_type(FunctionType(TensorType(np.float32, [2]), F32)),
        ["takes [ShapedArray(float32[])]", "(float32[2] -> float32)"],
    ),
}


@pytest.mark.parametrize(("data", "words"), FILES.values(), ids=FILES.keys())
def test_an_edited_jax_leaf_is_refused_when_the_file_is_loaded(data, words):
    check(
        lambda: deserialize_computation(data()),
        ValueError,
        ["Malformed serialized computation at blocks[", "the compiled leaf 'plus_one' cannot run"]
        + words,
    )


def test_an_unedited_file_loads_and_runs():
    assert deserialize_computation(serialize_computation(plus_one))(1.0) == pytest.approx(2.0)
