"""The TensorFlow backend: loading leaves, argument forms, the batched map over clients, devices."""

import collections
import json
import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.framework import ClientValues
from fed_tensorflow._backend import LoadedTensorFlowComputation, TensorFlowBackend, backend
from fed_types import CLIENTS, FederatedType, SequenceType, Struct, TensorType

VECTOR = TensorType(np.float32, [3])


@ftf.computation(collections.OrderedDict(x=VECTOR, n=np.int32))
def affine(arg):
    return collections.OrderedDict(
        y=arg["x"] * tf.cast(arg["n"], tf.float32) + 1.0, total=tf.reduce_sum(arg["x"])
    )


def client_inputs(count):
    rng = np.random.default_rng(0)
    return [
        Struct.named(x=rng.normal(size=3).astype(np.float32), n=np.int32(k)) for k in range(count)
    ]


def expected(members):
    return [(m.x * m.n + 1.0, m.x.sum()) for m in members]


@pytest.mark.parametrize("strategy", ["auto", "vectorized", "looped", "per_client"])
def test_batched_map_equals_per_client_results(strategy, map_strategy):
    map_strategy(strategy)
    members = client_inputs(5)
    result = backend().load(affine.building_block).map(ClientValues(members), None)
    assert result.is_stacked == (strategy != "per_client")
    for got, (y, total) in zip(result.members(), expected(members), strict=True):
        np.testing.assert_allclose(got.y, y, rtol=1e-6)
        np.testing.assert_allclose(got.total, total, rtol=1e-6)


def test_federated_map_runs_the_batched_map_through_the_executor():
    @fc.federated_computation(FederatedType(affine.type_signature.parameter, CLIENTS))
    def mapped(values):
        return fc.federated_map(affine, values)

    members = [collections.OrderedDict(x=m.x, n=m.n) for m in client_inputs(4)]
    for got, (y, total) in zip(mapped(members), expected(client_inputs(4)), strict=True):
        assert isinstance(got, collections.OrderedDict)
        np.testing.assert_allclose(got["y"], y, rtol=1e-6)
        np.testing.assert_allclose(got["total"], total, rtol=1e-6)


def test_ops_without_a_vectorized_form_fall_back_to_a_loop(map_strategy):
    @ftf.computation(TensorType(np.float32, [2]))
    def step(w):
        v = tf.Variable(w)  # variable ops have no vectorized form
        v.assign_add(tf.ones([2]))
        return v.read_value()

    members = [np.full(2, k, np.float32) for k in range(3)]
    result = backend().load(step.building_block).map(ClientValues(members), None)
    assert result.is_stacked
    np.testing.assert_allclose(result.stacked(), [[1, 1], [2, 2], [3, 3]])
    map_strategy("vectorized")
    with pytest.raises(ValueError, match="vectoriz"):
        backend().load(step.building_block).map(ClientValues(members), None)


def test_trying_to_vectorize_logs_no_tensorflow_errors(map_strategy, caplog):
    @ftf.computation(TensorType(np.int32, [2]))
    def zeros_of_length(x):
        return tf.reduce_sum(tf.zeros([x[0]]) + 1.0)  # a shape from the data: no vectorized form

    members = [np.array([k, 0], np.int32) for k in range(3)]
    with caplog.at_level("DEBUG", logger="tensorflow"):
        result = backend().load(zeros_of_length.building_block).map(ClientValues(members), None)
    np.testing.assert_allclose(result.stacked(), [0.0, 1.0, 2.0])
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
    # Vectorizing alone fails (TensorFlow's own error report may fail too), and TensorFlow logs
    # why, as usual.
    map_strategy("vectorized")
    with caplog.at_level("DEBUG", logger="tensorflow"), pytest.raises((ValueError, TypeError)):
        backend().load(zeros_of_length.building_block).map(ClientValues(members), None)
    assert any("pfor" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_clients_of_different_shapes_run_one_call_each():
    @ftf.computation(TensorType(np.float32, [None]))
    def total(x):
        return tf.reduce_sum(x)

    result = (
        backend()
        .load(total.building_block)
        .map(ClientValues([np.ones(2, np.float32), np.ones(3, np.float32)]), None)
    )
    assert not result.is_stacked
    assert [float(m) for m in result.members()] == [2.0, 3.0]


@pytest.mark.parametrize("strategy", ["auto", "looped", "per_client"])
def test_clients_with_datasets_give_their_own_results_in_every_strategy(strategy, map_strategy):
    from concurrent.futures import ThreadPoolExecutor

    map_strategy(strategy)

    @ftf.computation(SequenceType(np.int64))
    def total(values):
        return values.reduce(np.int64(0), lambda acc, x: acc + x)

    members = [tf.data.Dataset.range(k) for k in range(6)] + [[1, 2, 3]]
    with ThreadPoolExecutor(3) as pool:
        result = backend().load(total.building_block).map(ClientValues(members), pool)
    # One looped graph call for all clients, or one call per client on the pool ("auto" times both on
    # parts of its first maps).
    if strategy != "auto":
        assert result.is_stacked == (strategy == "looped")
    assert [int(m) for m in result.members()] == [0, 0, 1, 3, 6, 10, 6]


BATCHES = SequenceType(
    collections.OrderedDict(x=TensorType(np.float32, [None, 3]), y=TensorType(np.float32, [None]))
)


@ftf.computation(BATCHES, TensorType(np.float32, [3]))
def train(batches, weights):
    def step(state, batch):
        w, n = state
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = tf.reduce_mean(tf.square(tf.linalg.matvec(batch["x"], w) - batch["y"]))
        return w - 0.1 * tape.gradient(loss, w), n + tf.shape(batch["y"])[0]

    final, count = batches.reduce((weights, np.int32(0)), step)
    return collections.OrderedDict(delta=final - weights, count=count)


def batch_datasets(sizes, seed=0):
    rng = np.random.default_rng(seed)
    datasets = []
    for size in sizes:
        x = rng.normal(size=(size, 3)).astype(np.float32)
        y = rng.normal(size=size).astype(np.float32)
        datasets.append(tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(2))
    return datasets


def test_a_looped_map_takes_the_shared_model_once_and_equals_one_call_per_client(map_strategy):
    weights = np.array([0.5, -1.0, 2.0], np.float32)
    members = [Struct([(None, d), (None, weights)]) for d in batch_datasets([5, 0, 2, 7])]
    map_strategy("looped")
    loaded = backend().load(train.building_block)
    looped = loaded.map(ClientValues(members), None)
    assert looped.is_stacked
    # The model every client shares (the same object, as a broadcast gives it) is passed once.
    assert loaded._batched[("sequences", (False, True), (None, None))] is not None
    map_strategy("per_client")
    one_by_one = loaded.map(ClientValues(members), None)
    np.testing.assert_array_equal(looped.stacked().count, [5, 0, 2, 7])
    for got, want in zip(looped.members(), one_by_one.members(), strict=True):
        np.testing.assert_array_equal(got.delta, want.delta)
        assert int(got.count) == int(want.count)

    # Clients with models of their own each train their own.
    own = [Struct([(None, d), (None, weights * k)]) for k, d in enumerate(batch_datasets([3, 3]))]
    map_strategy("auto")
    looped = loaded.map(ClientValues(own), None)
    map_strategy("per_client")
    for got, want in zip(
        looped.members(), loaded.map(ClientValues(own), None).members(), strict=True
    ):
        np.testing.assert_array_equal(got.delta, want.delta)


def test_a_failing_client_in_a_looped_map_raises_its_own_error_and_the_loop_stays(map_strategy):
    map_strategy("looped")

    @ftf.computation(SequenceType(np.float32))
    def checked_total(values):
        def add(acc, x):
            with tf.control_dependencies([tf.debugging.assert_non_negative(x)]):
                return acc + x

        return values.reduce(np.float32(0), add)

    loaded = backend().load(checked_total.building_block)
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.map(ClientValues([[1.0], [-2.0], [3.0]]), None)
    result = loaded.map(ClientValues([[1.0], [2.0, 5.0]]), None)
    assert result.is_stacked and result.stacked().tolist() == [1.0, 7.0]


def test_arguments_in_every_executor_form():
    loaded = backend().load(affine.building_block)
    for x in (np.ones(3, np.float32), tf.ones([3]), [1.0, 1.0, 1.0]):
        result = loaded(Struct.named(x=x, n=np.int32(2)))
        assert isinstance(result, Struct) and isinstance(result.y, tf.Tensor)
        np.testing.assert_allclose(result.y, [3.0, 3.0, 3.0])
    assert float(loaded(collections.OrderedDict(x=np.ones(3, np.float32), n=2)).total) == 3.0


def test_sequence_results_are_datasets():
    @ftf.computation(np.int64)
    def evens(n):
        return tf.data.Dataset.range(n).map(lambda i: 2 * i)

    result = backend().load(evens.building_block)(np.int64(3))
    assert isinstance(result, tf.data.Dataset)
    assert [int(x) for x in result] == [0, 2, 4]


def test_configure_checks_its_arguments():
    with pytest.raises(ValueError, match="map_strategy must be one of"):
        ftf.configure(map_strategy="fastest")
    with pytest.raises(TypeError, match="list of device names"):
        ftf.configure(devices="/GPU:0")
    unknown = TensorFlowBackend(devices=["/GPU:7"])
    with pytest.raises(ValueError, match=r"Unknown device '/GPU:7'.*CPU:0"):
        unknown.devices  # noqa: B018


def test_default_devices_are_the_cpu_without_gpus():
    assert TensorFlowBackend().devices == [d.name for d in tf.config.list_logical_devices("CPU")]


@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="needs a GPU")
@pytest.mark.parametrize("force", [None, "false"])
def test_importing_fed_tensorflow_turns_on_gpu_memory_growth(force):
    script = textwrap.dedent(
        """
        import json
        import tensorflow as tf
        import fed_tensorflow
        print(json.dumps([tf.config.experimental.get_memory_growth(g)
                          for g in tf.config.list_physical_devices("GPU")]))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    if force is not None:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = force
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    growth = json.loads(out.strip().splitlines()[-1])
    assert growth and all(g is (force is None) for g in growth)


PLACEMENT = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
    tf.debugging.set_log_device_placement(True)

    import fed_tensorflow as ftf
    from fed_core.framework import ClientValues
    from fed_tensorflow._backend import backend
    from fed_types import SequenceType

    ftf.configure(devices=["/CPU:1", "/CPU:2"], map_strategy="per_client")

    @ftf.computation(SequenceType(np.float32))
    def total(values):
        return values.reduce(np.float32(0), lambda acc, x: acc + x)

    per_client = backend().load(total.building_block).map(ClientValues([[1.0], [2.0], [3.0]]), None)
    print("per-client", [m.device[-5:] for m in per_client.members()])

    ftf.configure(devices=["/CPU:1", "/CPU:2"])
    looped = backend().load(total.building_block).map(ClientValues([[1.0], [2.0, 3.0], [], [4.0]]), None)
    print("looped", looped.stacked().tolist(), flush=True)

    @ftf.computation(np.float32)
    def double(x):
        return 2 * x

    members = ClientValues([np.float32(k) for k in range(4)])
    batched = backend().load(double.building_block).map(members, None)
    print("batched", batched.stacked().tolist(), flush=True)
    """
)


def test_client_work_is_spread_over_the_configured_devices():
    done = subprocess.run(
        [sys.executable, "-c", PLACEMENT],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "per-client ['CPU:1', 'CPU:2', 'CPU:1']" in done.stdout
    assert "batched [0.0, 2.0, 4.0, 6.0]" in done.stdout
    # Two vectorized calls, one per device, each over half of the clients.
    devices = re.findall(
        r"Executing op __inference_vectorized\w* in device \S+(CPU:\d)", done.stderr
    )
    assert sorted(devices) == ["CPU:1", "CPU:2"]
    # Clients with datasets: one looped call per device, each over half of the clients.
    assert "looped [1.0, 5.0, 0.0, 4.0]" in done.stdout
    devices = re.findall(r"Executing op __inference_looped\w* in device \S+(CPU:\d)", done.stderr)
    assert sorted(devices) == ["CPU:1", "CPU:2"]


CONTEXT_DEVICES = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
    tf.debugging.set_log_device_placement(True)

    import fed_core as fc
    import fed_tensorflow as ftf
    from fed_core.execution import ClientValues, context_scope, create_context
    from fed_tensorflow._backend import backend
    from fed_types import CLIENTS, FederatedType, SequenceType

    @ftf.computation(SequenceType(np.float32))
    def total(values):
        return values.reduce(np.float32(0), lambda acc, x: acc + x)

    @fc.federated_computation(FederatedType(SequenceType(np.float32), CLIENTS))
    def totals(datasets):
        return fc.federated_map(total, datasets)

    own = create_context("local", devices=["/CPU:2"])
    other = create_context("local")
    with context_scope(own):
        print("own", totals([[1.0], [2.0], [3.0]]), flush=True)
    own_backend = own.executor._backend("tensorflow")
    placed = own_backend.load(total.building_block).map(ClientValues([[1.0]]), None)
    print("own placed", [m.device[-5:] for m in placed.members()], flush=True)
    own_backend.load(total.building_block).map(ClientValues([[1.0], [2.0]]), None)
    print("own devices", own_backend.devices, flush=True)
    print("other devices", other.executor._backend("tensorflow").devices, flush=True)
    print("process devices", backend().devices, flush=True)
    """
)


def test_a_context_given_devices_runs_its_client_work_there_and_leaves_others_alone():
    done = subprocess.run(
        [sys.executable, "-c", CONTEXT_DEVICES],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "own [np.float32(1.0), np.float32(2.0), np.float32(3.0)]" in done.stdout
    assert "own devices ['/CPU:2']" in done.stdout
    everything = "['/device:CPU:0', '/device:CPU:1', '/device:CPU:2']"
    assert f"other devices {everything}" in done.stdout
    assert f"process devices {everything}" in done.stdout
    assert "own placed ['CPU:2']" in done.stdout
    # Clients with datasets run in one looped call per map, on the context's device.
    devices = re.findall(r"Executing op __inference_looped\w* in device \S+(CPU:\d)", done.stderr)
    assert devices == ["CPU:2", "CPU:2"]


def test_a_graph_with_a_variable_runs_its_clients_one_at_a_time_in_a_looped_map(map_strategy):
    map_strategy("looped")

    @ftf.computation(SequenceType(np.float32))
    def total_in_a_variable(values):
        total = tf.Variable(0.0)

        def add(_, x):
            return total.assign_add(x)

        return values.reduce(np.float32(0), add)

    loaded = backend().load(total_in_a_variable.building_block)
    members = [[float(k)] * k for k in range(1, 9)]
    result = loaded.map(ClientValues(members), None)
    assert loaded._parallel_clients == 1  # iterations would share the variable
    assert result.is_stacked
    assert result.stacked().tolist() == [float(k * k) for k in range(1, 9)]
    assert backend().load(train.building_block)._parallel_clients > 1


def test_auto_times_looped_and_per_client_maps_of_datasets_then_keeps_the_faster(map_strategy):
    weights = np.array([0.5, -1.0, 2.0], np.float32)
    members = [Struct([(None, d), (None, weights)]) for d in batch_datasets([4, 6, 2])]
    loaded = LoadedTensorFlowComputation(train.building_block, backend())  # none traced yet
    results = [loaded.map(ClientValues(members), None) for _ in range(8)]
    # Maps too small to split between the two: looped and per client in turn while timing (a map
    # that traced its function is not timed, and that way is tried again), then always the one that
    # was faster.
    assert [r.is_stacked for r in results[:6]] == [True, True, False, False, True, False]
    assert {kind: len(times) for kind, times in loaded._trials.items()} == {
        "looped": 2,
        "per_client": 2,
    }
    looped_faster = min(loaded._trials["looped"]) <= min(loaded._trials["per_client"])
    assert [r.is_stacked for r in results[6:]] == [looped_faster] * 2

    # A larger map is split: its first part looped, the rest one call per client.
    larger = [Struct([(None, d), (None, weights)]) for d in batch_datasets([4, 6, 2, 3, 5, 1])]
    loaded = LoadedTensorFlowComputation(train.building_block, backend())
    loaded.map(ClientValues(larger), None)  # traces both ways: not timed
    assert loaded._trials == {}
    split = loaded.map(ClientValues(larger), None)
    assert {kind: len(times) for kind, times in loaded._trials.items()} == {
        "looped": 1,
        "per_client": 1,
    }
    map_strategy("per_client")
    for got, want in zip(
        split.members(), loaded.map(ClientValues(larger), None).members(), strict=True
    ):
        np.testing.assert_array_equal(got.delta, want.delta)
    for result in results[1:]:
        for got, want in zip(result.members(), results[0].members(), strict=True):
            np.testing.assert_array_equal(got.delta, want.delta)


def test_clients_arguments_flatten_into_one_column_per_leaf():
    from fed_tensorflow._structure import flatten, flatten_columns
    from fed_types import StructType

    model = Struct.named(kernel=np.ones([2, 2], np.float32), bias=np.zeros(2, np.float32))
    t = StructType(
        [
            ("model", StructType([("kernel", TensorType(np.float32, [2, 2])), ("bias", VECTOR)])),
            ("data", SequenceType(np.float32)),
        ]
    )
    members = [Struct.named(model=model, data=[float(k)] * k) for k in range(3)]
    columns = flatten_columns(members, t)
    assert columns == [list(c) for c in zip(*(flatten(m, t) for m in members), strict=True)]
    # The model every client shares is flattened once: its leaves are the same objects.
    assert all(kernel is model.kernel for kernel in columns[0])
    # Members as Python containers, one of the wrong length, and no members.
    as_tuples = [(model, [1.0]), (model, [])]
    assert flatten_columns(as_tuples, t)[2] == [flatten(m, t)[2] for m in as_tuples]
    with pytest.raises(ValueError, match="got one of 1 elements"):
        flatten_columns([Struct.named(model=model, data=[]), (model,)], t)
    assert flatten_columns([], t) == [[], [], []]


def test_a_maps_results_reach_the_caller_as_arrays_of_its_own(map_strategy):
    @ftf.computation(SequenceType(np.float32))
    def total_and_count(values):
        total = values.reduce(np.float32(0), lambda acc, x: acc + x)
        return tf.stack([total, tf.cast(values.reduce(0, lambda n, _: n + 1), tf.float32)])

    @fc.federated_computation(FederatedType(SequenceType(np.float32), CLIENTS))
    def per_client(datasets):
        return fc.federated_map(total_and_count, datasets)

    map_strategy("looped")
    results = per_client([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(np.stack(results), [[3, 2], [3, 1], [15, 3]])
    for result in results:
        assert result.flags.writeable
        result *= 2  # changes the caller's copy only
    np.testing.assert_array_equal(per_client([[1.0, 2.0]])[0], [3, 2])


def test_auto_gives_the_slower_way_few_clients_of_a_large_map_while_timing(monkeypatch):
    from fed_tensorflow import _backend

    monkeypatch.setattr(_backend, "_TRIAL_CLIENTS", 2)
    weights = np.array([0.5, -1.0, 2.0], np.float32)
    members = [Struct([(None, d), (None, weights)]) for d in batch_datasets([4, 6, 2, 3, 5, 1, 2])]
    loaded = LoadedTensorFlowComputation(train.building_block, backend())
    parts: list[tuple[str, int]] = []
    map_by = loaded._map_by

    def recorded(kind: str, clients: ClientValues, pool: Any) -> Any:
        parts.append((kind, len(clients)))
        return map_by(kind, clients, pool)

    monkeypatch.setattr(loaded, "_map_by", recorded)
    results = [loaded.map(ClientValues(members), None) for _ in range(4)]
    # The first map traces both ways (not timed), the second times both; in each the first way
    # (looped) takes all but two clients. The third gives them to the faster in the second map; the
    # fourth, after two timed maps of each way, runs every client the faster way.
    trials = loaded._trials
    assert {kind: len(times) for kind, times in trials.items()} == {"looped": 2, "per_client": 2}
    lead = min(trials, key=lambda kind: trials[kind][0])
    other = "per_client" if lead == "looped" else "looped"
    fastest = min(trials, key=lambda kind: min(trials[kind]))
    assert parts == [
        ("looped", 5),
        ("per_client", 2),
        ("looped", 5),
        ("per_client", 2),
        (lead, 5),
        (other, 2),
        (fastest, 7),
    ]
    for result in results[1:]:
        for got, want in zip(result.members(), results[0].members(), strict=True):
            np.testing.assert_array_equal(got.delta, want.delta)


def test_calls_bind_the_concrete_functions_signature(monkeypatch):
    # A concrete function whose structured signature does not bind a call falls back to its flat
    # one, after formatting an error message of every argument (the model's weights, as text) on
    # each call: the backend's functions take their inputs as they are traced.
    from tensorflow.python.eager.polymorphic_function import concrete_function

    fallbacks = []
    flat = concrete_function.ConcreteFunction._call_with_flat_signature

    def counted(self, args, kwargs):
        fallbacks.append(self.name)
        return flat(self, args, kwargs)

    monkeypatch.setattr(concrete_function.ConcreteFunction, "_call_with_flat_signature", counted)
    loaded = LoadedTensorFlowComputation(affine.building_block, backend())
    members = client_inputs(3)
    got = loaded(members[1])
    np.testing.assert_allclose(got.y, members[1].x * 1 + 1.0)
    for strategy in ("per_client", "looped"):
        ftf.configure(map_strategy=strategy)
        try:
            loaded.map(ClientValues(members), None)
        finally:
            ftf.configure()
    assert fallbacks == []
