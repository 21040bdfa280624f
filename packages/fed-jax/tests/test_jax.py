"""fed-jax: JAX computations as compiled leaves, their types, their backend (one vectorized call for a
map over clients), serialization to another process, and installing without TensorFlow."""

import collections
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fed_core as fc
import fed_jax
from fed_core.execution import ClientValues, context_scope, create_context
from fed_core.plugins import get_registry
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_jax._backend import JaxBackend, backend
from fed_jax._payload import JaxPayload
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, StructType, TensorType


class Point(NamedTuple):
    x: np.ndarray
    y: np.ndarray


@fed_jax.computation(np.float32)
def square(x):
    return x * x


@fc.federated_computation(FederatedType(np.float32, CLIENTS))
def mean_of_squares(values):
    return fc.federated_mean(fc.federated_map(square, values))


def test_a_jax_computation_has_a_type_and_runs():
    @fed_jax.computation(np.int32, np.int32)
    def add_numbers(x, y):
        return jnp.add(x, y)

    assert str(add_numbers.type_signature) == "(<x=int32,y=int32> -> int32)"
    assert add_numbers(2, 3) == 5
    assert add_numbers.building_block.frontend == "jax"


def test_structs_reach_the_function_in_their_containers_and_results_keep_theirs():
    model_type = collections.OrderedDict(w=TensorType(np.float32, (2,)), b=TensorType(np.float32))

    @fed_jax.computation(
        model_type, Point(TensorType(np.float32, (2,)), TensorType(np.float32, (2,)))
    )
    def predict(model, point):
        assert isinstance(model, collections.OrderedDict) and isinstance(point, Point)
        return {"dot": jnp.dot(model["w"], point.x) + model["b"], "pair": (point.y, point.y * 2)}

    assert str(predict.type_signature) == (
        "(<model=<w=float32[2],b=float32>,point=<x=float32[2],y=float32[2]>> -> "
        "<dot=float32,pair=<float32[2],float32[2]>>)"
    )
    result = predict(
        collections.OrderedDict(w=np.array([1.0, 2.0], np.float32), b=np.float32(0.5)),
        Point(np.array([3.0, 4.0], np.float32), np.array([1.0, -1.0], np.float32)),
    )
    assert isinstance(result, dict) and result["dot"] == pytest.approx(11.5)
    np.testing.assert_allclose(result["pair"][1], [2.0, -2.0])


def test_a_polymorphic_jax_computation_is_traced_per_argument_type():
    @fed_jax.computation
    def double(x):
        return x * 2

    assert double(np.float32(1.5)) == pytest.approx(3.0)
    np.testing.assert_array_equal(double(np.array([1, 2], np.int32)), [2, 4])


def test_unknown_dimensions_become_symbolic_and_stay_unknown_in_the_result():
    @fed_jax.computation(TensorType(np.float32, (None, 3)))
    def column_sums(x):
        return x.sum(axis=0), x * 2

    assert str(column_sums.type_signature) == "(float32[?,3] -> <float32[3],float32[?,3]>)"
    sums, doubled = column_sums(np.ones((4, 3), np.float32))
    np.testing.assert_allclose(sums, [4.0, 4.0, 4.0])
    assert doubled.shape == (4, 3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SequenceType(np.float32), "JAX has no datasets"),
        (TensorType(np.str_), "no string tensors"),
        (TensorType(np.float64), "jax_enable_x64"),
        (StructType([("a", np.float32), (None, np.float32)]), "partly named"),
    ],
)
def test_types_jax_cannot_take_are_refused_at_trace_time(spec, message):
    with pytest.raises(TypeError, match=message):

        @fed_jax.computation(spec)
        def identity(x):
            return x


def test_results_jax_cannot_return_are_refused_at_trace_time():
    with pytest.raises(TypeError, match="returned None"):

        @fed_jax.computation(np.float32)
        def nothing(x):
            return None

    with pytest.raises(TypeError, match="must return arrays or containers"):

        @fed_jax.computation(np.float32)
        def text(x):
            return {"x": x, "name": object()}


def test_a_map_over_clients_runs_as_one_vectorized_call():
    jax_backend = backend()
    before = jax_backend.batched_calls
    values = [float(v) for v in range(1, 9)]
    assert mean_of_squares(values) == pytest.approx(np.mean(np.square(values)))
    assert (jax_backend.batched_calls - before, jax_backend.last_batched_clients) == (1, 8)


def test_the_vectorized_map_keeps_results_stacked_and_equal_to_single_calls():
    loaded = backend().load(square.building_block)
    members = [np.float32(v) for v in (1.0, -2.0, 3.0)]
    mapped = loaded.map(ClientValues(members), None)
    assert mapped.is_stacked
    np.testing.assert_allclose(np.asarray(mapped.stacked()), [loaded(m) for m in members])


def test_a_function_without_a_vectorized_form_runs_client_by_client():
    payload = JaxPayload.decode(square.building_block.payload)
    leaf = fc.framework.CompiledComputation(
        "jax", JaxPayload(payload.single, None).encode(), square.type_signature, "square"
    )
    own = JaxBackend()
    mapped = own.load(leaf).map(ClientValues([np.float32(2), np.float32(3)]), None)
    np.testing.assert_allclose([np.asarray(m) for m in mapped.members()], [4.0, 9.0])
    assert own.batched_calls == 0


def test_a_federated_round_with_jax_leaves_trains():
    model_type = collections.OrderedDict(w=TensorType(np.float32, (3,)))
    batch_type = collections.OrderedDict(
        x=TensorType(np.float32, (8, 3)), y=TensorType(np.float32, (8,))
    )

    def loss(model, batch):
        return jnp.mean((batch["x"] @ model["w"] - batch["y"]) ** 2)

    @fed_jax.computation(model_type, batch_type)
    def step(model, batch):
        grads = jax.grad(loss)(model, batch)
        return {"w": model["w"] - 0.1 * grads["w"]}

    @fed_jax.computation(model_type, batch_type)
    def batch_loss(model, batch):
        return loss(model, batch)

    @fc.federated_computation(FederatedType(model_type, SERVER), FederatedType(batch_type, CLIENTS))
    def round_(model, batches):
        new = fc.federated_mean(fc.federated_map(step, (fc.federated_broadcast(model), batches)))
        return new, fc.federated_mean(
            fc.federated_map(batch_loss, (fc.federated_broadcast(new), batches))
        )

    rng = np.random.default_rng(0)
    true_w = np.array([1.0, -2.0, 0.5], np.float32)
    clients = []
    for _ in range(4):
        x = rng.normal(size=(8, 3)).astype(np.float32)
        clients.append({"x": x, "y": x @ true_w})
    model = {"w": np.zeros(3, np.float32)}
    losses = []
    for _ in range(30):
        model, round_loss = round_(model, clients)
        losses.append(float(round_loss))
    assert losses[-1] < 0.05 * losses[0]


def test_a_computation_with_jax_leaves_runs_in_another_process(tmp_path):
    path = tmp_path / "mean_of_squares.fedc"
    path.write_bytes(serialize_computation(mean_of_squares))
    document = json.loads(path.read_bytes())
    assert {b["frontend"] for b in document["blocks"] if b["kind"] == "compiled"} == {"jax"}
    program = textwrap.dedent(
        f"""
        import pathlib, sys
        from fed_core.serialization import deserialize_computation

        comp = deserialize_computation(pathlib.Path({str(path)!r}).read_bytes())
        print(comp.type_signature, comp([1.0, 2.0, 3.0]), "tensorflow" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "({float32}@CLIENTS -> float32@SERVER) 4.6666665 False"
    assert deserialize_computation(path.read_bytes())([2.0]) == pytest.approx(4.0)


def test_fed_jax_is_a_plugin_that_needs_no_tensorflow():
    [entry] = [e for e in get_registry("backends").entries() if e.name == "jax"]
    assert entry.distribution == "fed-jax"
    requirements = importlib.metadata.requires("fed-jax") or []
    assert not any(r.lower().startswith(("tensorflow", "fed-tensorflow")) for r in requirements)
    names = {re.split(r"[<>=!~;\[ ]", r)[0] for r in requirements}
    assert names >= {"fed-core", "jax", "jaxlib"}


def test_a_context_given_devices_runs_jax_leaves_there():
    own = create_context("local", devices=["/CPU:0"])
    with context_scope(own):
        assert mean_of_squares([1.0, 3.0]) == pytest.approx(5.0)
    jax_backend = own.executor._backend("jax")
    assert jax_backend.devices == ["/CPU:0"] and jax_backend.device == jax.devices("cpu")[0]
    with pytest.raises(ValueError, match="Unknown device '/TPU:7'"):
        JaxBackend(["/TPU:7"])


def test_a_malformed_payload_is_refused_when_loaded():
    leaf = fc.framework.CompiledComputation("jax", b"not json", square.type_signature, "bad")
    with pytest.raises(ValueError, match="payload is not JSON"):
        backend().load(leaf)
    wrong = json.dumps({"format": "fed.jax", "version": 9}).encode()
    with pytest.raises(ValueError, match="version 9"):
        backend().load(fc.framework.CompiledComputation("jax", wrong, square.type_signature, "bad"))


# ---- review cases


def test_clients_whose_unknown_dimensions_differ_run_one_by_one():
    @fed_jax.computation(TensorType(np.float32, (None,)))
    def total(x):
        return jnp.sum(x)

    @fc.federated_computation(FederatedType(TensorType(np.float32, (None,)), CLIENTS))
    def sum_all(xs):
        return fc.federated_sum(fc.federated_map(total, xs))

    assert sum_all([np.ones(2, np.float32), np.ones(3, np.float32)]) == pytest.approx(5.0)
    assert sum_all([np.ones(2, np.float32), np.ones(2, np.float32)]) == pytest.approx(4.0)


def test_unknown_dimensions_that_the_function_combines_share_a_symbol():
    @fed_jax.computation(TensorType(np.float32, (None,)), TensorType(np.float32, (None,)))
    def add(x, y):
        return x + y

    np.testing.assert_allclose(add(np.ones(3, np.float32), np.ones(3, np.float32)), [2.0, 2.0, 2.0])
    batch = collections.OrderedDict(
        x=TensorType(np.float32, (None, 2)), y=TensorType(np.float32, (None,))
    )

    @fed_jax.computation(batch)
    def residual(b):
        return b["x"].sum(axis=1) - b["y"]

    assert str(residual.type_signature) == "(<x=float32[?,2],y=float32[?]> -> float32[?])"


def test_a_dict_result_keeps_the_order_of_its_keys_and_feeds_a_leaf_of_that_type():
    @fed_jax.computation(np.float32)
    def pair(x):
        return {"z": x, "a": x * 2}

    assert str(pair.type_signature) == "(float32 -> <z=float32,a=float32>)"

    @fed_jax.computation(StructType([("z", np.float32), ("a", np.float32)]))
    def combine(p):
        return p["z"] - p["a"]

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def chained(xs):
        return fc.federated_map(combine, fc.federated_map(pair, xs))

    assert [float(v) for v in chained([1.0, 2.0])] == [-1.0, -2.0]


def test_containers_jax_cannot_hold_and_wide_types_are_refused_clearly():
    import dataclasses

    @dataclasses.dataclass
    class Model:
        w: np.ndarray

    with pytest.raises(TypeError, match="container Model, which JAX cannot hold"):
        fed_jax.computation(lambda m: m.w, Model(TensorType(np.float32)))
    with pytest.raises(TypeError, match="container Model, which JAX cannot hold"):
        fed_jax.computation(lambda x: Model(x), np.float32)
    assert fed_jax.computation(lambda z: z * 2, np.complex64)(np.complex64(1 + 1j)) == 2 + 2j
    with pytest.raises(TypeError, match="complex128 is 64-bit"):
        fed_jax.computation(lambda z: z, np.complex128)


def test_a_trace_error_keeps_the_users_frame():
    def helper(x, y):
        return x + y

    with pytest.raises(TypeError, match="Tracing the JAX computation bad for .* failed") as raised:

        @fed_jax.computation(TensorType(np.float32, (3,)), TensorType(np.float32, (4,)))
        def bad(x, y):
            return helper(x, y)

    frames = []
    error = raised.value.__cause__
    assert error is not None
    traceback = error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame.f_code.co_name)
        traceback = traceback.tb_next
    assert "helper" in frames


def test_a_payload_whose_modules_disagree_with_the_type_is_refused():
    @fed_jax.computation(np.float32)
    def as_int(x):
        return x.astype(jnp.int32)

    ints = JaxPayload.decode(as_int.building_block.payload)
    t = square.type_signature
    lying = JaxPayload(ints.single, None).encode()
    with pytest.raises(ValueError, match="not what its type"):
        backend().load(fc.framework.CompiledComputation("jax", lying, t, "lying"))
    garbage = JaxPayload(b"garbage", None).encode()
    with pytest.raises(ValueError, match="no readable exported module"):
        backend().load(fc.framework.CompiledComputation("jax", garbage, t, "garbage"))


def test_a_function_jax_cannot_vectorize_is_traced_and_mapped_client_by_client(monkeypatch):
    def no_vmap(fn, *args, **kwargs):
        raise NotImplementedError("no batching rule")

    monkeypatch.setattr(jax, "vmap", no_vmap)

    @fed_jax.computation(np.float32)
    def cube(x):
        return x * x * x

    monkeypatch.undo()
    assert JaxPayload.decode(cube.building_block.payload).batched is None
    own = JaxBackend()
    mapped = own.load(cube.building_block).map(ClientValues([np.float32(2), np.float32(3)]), None)
    np.testing.assert_allclose([np.asarray(m) for m in mapped.members()], [8.0, 27.0])
    assert own.batched_calls == 0


def test_shared_and_per_client_inputs_in_one_vectorized_call():
    @fed_jax.computation(TensorType(np.float32, (2,)), TensorType(np.float32, (2,)))
    def scaled(w, x):
        return w * x

    own = JaxBackend()
    loaded = own.load(scaled.building_block)
    w = np.array([1.0, 10.0], np.float32)
    xs = [np.array([k, k + 1], np.float32) for k in range(4)]
    from fed_types import Struct

    members = [Struct([("w", w), ("x", x)]) for x in xs]
    mapped = loaded.map(ClientValues(members), None)
    np.testing.assert_allclose(
        np.asarray(mapped.stacked()), [np.asarray(loaded(m)) for m in members]
    )
    assert own.batched_calls == 1
    same = [Struct([("w", w), ("x", xs[0])])] * 3
    all_shared = loaded.map(ClientValues(same), None)
    assert len(all_shared) == 3 and own.batched_calls == 1
    np.testing.assert_allclose(np.asarray(all_shared.members()[2]), [0.0, 10.0])
    one = loaded.map(ClientValues(members[:1]), None)
    assert len(one) == 1 and own.batched_calls == 1


def test_the_canned_fed_avg_takes_numpy_step_sizes_and_refuses_bad_ones():
    model = collections.OrderedDict(w=TensorType(np.float32, (2,)))
    batch = collections.OrderedDict(
        x=TensorType(np.float32, (4, 2)), y=TensorType(np.float32, (4,))
    )

    def loss(m, b):
        return jnp.mean((b["x"] @ m["w"] - b["y"]) ** 2)

    process = fed_jax.build_jax_federated_averaging_process(batch, model, loss, np.float32(0.1))
    state = process.initialize()
    data = [[{"x": np.ones((4, 2), np.float32), "y": np.ones(4, np.float32)}]]
    np.testing.assert_allclose(process.next(state, data)["w"], [0.2, 0.2], rtol=1e-6)
    for bad in (0, -1.0, True, "0.1"):
        with pytest.raises(ValueError, match="step_size must be a positive finite number"):
            fed_jax.build_jax_federated_averaging_process(batch, model, loss, bad)


def test_the_umbrella_without_fed_jax_has_no_jax_names():
    program = textwrap.dedent(
        """
        import inspect, sys
        sys.modules["fed_jax"] = None  # as if fed-jax were not installed
        import importlib.util
        importlib.util.find_spec = lambda name, *a, _find=importlib.util.find_spec: (
            None if name == "fed_jax" else _find(name, *a)
        )
        import fed
        inspect.getmembers(fed)
        print(hasattr(fed, "jax"), "jax" in dir(fed), hasattr(fed.experimental, "jax_computation"),
              hasattr(fed.learning, "build_jax_federated_averaging_process"))
        try:
            fed.jax
        except AttributeError as error:
            print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "False False False False"
    assert "pip install 'fed-framework[jax]'" in lines[1]
