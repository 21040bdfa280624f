"""fed-ray on a real Ray cluster started on this machine: every test here shares one local cluster with two
workers (each a real process holding TensorFlow), except the last, which starts a two-node cluster."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

import fed as tff
from fed_core.execution import context_scope, create_context

ray = pytest.importorskip("ray")
import fed_ray  # noqa: E402

INPUT_SPEC = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))


def model_fn():
    keras_model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((4,)),
            tf.keras.layers.Dense(8, activation="relu", kernel_initializer="glorot_uniform"),
            tf.keras.layers.Dense(3),
        ]
    )
    return tff.learning.models.from_keras_model(
        keras_model,
        input_spec=INPUT_SPEC,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )


def client_datasets(num_clients: int, seed: int = 0, sizes=None) -> list[tf.data.Dataset]:
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(4, 3)).astype(np.float32)
    datasets = []
    for k in range(num_clients):
        n = 12 if sizes is None else sizes[k]
        x = rng.normal(size=(n, 4)).astype(np.float32)
        y = np.argmax(x @ true, axis=1).astype(np.int32)
        datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    return datasets


def fed_avg():
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.1),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
    )


def assert_same_model(process, expected_state, state):
    """The trainable weights of two states agree to within 1e-6: the Ray executor adds the workers'
    partial sums in another order than the local executor, which may change the last bits of float32."""

    def weights(state):  # TFF's older processes keep the model in `state.model`
        model = getattr(state, "model", None)
        return (model if model is not None else process.get_model_weights(state)).trainable

    for a, b in zip(weights(expected_state), weights(state)):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)


def train(process, context, data, rounds: int, state=None):
    """`rounds` rounds of `process` on `context`; the final state and each round's metrics."""
    with context_scope(context):
        tf.keras.utils.set_random_seed(1)
        state = process.initialize() if state is None else state
        history = []
        for _ in range(rounds):
            output = process.next(state, data)
            # A learning process's output, or (state, metrics) from TFF's older processes.
            state, metrics = (output.state, output.metrics) if hasattr(output, "state") else output
            history.append(metrics)
    return state, history


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    # Four logical CPUs on this machine's two: room for the shared pool and a second one.
    assert fed_ray.init(num_cpus=4) is True
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_context(cluster):
    context = create_context("ray", num_actors=2)
    yield context
    context.close()


@pytest.fixture(scope="module")
def local_context():
    context = create_context("local")
    yield context
    context.close()


# -- the intrinsics -----------------------------------------------------------------------------------


@tff.tensorflow.computation(tf.float32)
def square(x):
    return x * x


@tff.tensorflow.computation(tf.float32, tf.float32)
def scale(x, factor):
    return x * factor


CLIENT_FLOATS = tff.FederatedType(np.float32, tff.CLIENTS)


@tff.federated_computation(CLIENT_FLOATS, tff.FederatedType(np.float32, tff.SERVER))
def every_aggregation(values, factor):
    scaled = tff.federated_map(scale, (values, tff.federated_broadcast(factor)))
    squares = tff.federated_map(square, scaled)
    return (
        tff.federated_sum(squares),
        tff.federated_mean(squares),
        tff.federated_mean(squares, weight=scaled),
        tff.federated_min(squares),
        tff.federated_max(squares),
        squares,
    )


def test_client_work_runs_on_the_workers_and_matches_the_local_executor(ray_context, local_context):
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    with context_scope(local_context):
        expected = every_aggregation(values, 2.0)
    executor = ray_context.executor

    def driver_work():
        return {k: v for k, v in executor.stats.items() if k.startswith("driver:")}

    before, returned = driver_work(), executor.stats["bytes_returned"]
    with context_scope(ray_context):
        got = every_aggregation(values, 2.0)
    for e, g in zip(expected[:5], got[:5]):
        np.testing.assert_allclose(g, e, rtol=1e-6)
    np.testing.assert_allclose(got[5], expected[5], rtol=1e-6)  # members fetched for the result
    # Nothing ran on the driver: the maps and the aggregations all went to the workers.
    assert driver_work() == before
    assert executor.stats["bytes_returned"] > returned


def test_federated_aggregate_accumulates_on_the_workers_and_merges_on_the_driver(ray_context):
    @tff.tensorflow.computation(tf.float32, tf.float32)
    def accumulate(total, x):
        return total + x

    @tff.tensorflow.computation(tf.float32, tf.float32)
    def merge(a, b):
        return a + b

    @tff.tensorflow.computation(tf.float32)
    def report(total):
        return total * 10.0

    @tff.federated_computation(CLIENT_FLOATS)
    def aggregate(values):
        squares = tff.federated_map(square, values)
        return tff.federated_aggregate(squares, np.float32(0.0), accumulate, merge, report)

    @tff.federated_computation(CLIENT_FLOATS)
    def one_function_two_uses(values):
        # `merge` maps over the clients and also accumulates: a worker keeps one form per use.
        doubled = tff.federated_map(merge, tff.federated_zip((values, values)))
        return tff.federated_aggregate(doubled, np.float32(0.0), merge, merge, report)

    with context_scope(ray_context):
        assert aggregate([1.0, 2.0, 3.0]) == pytest.approx(140.0)
        assert one_function_two_uses([1.0, 2.0, 3.0]) == pytest.approx(120.0)


def test_federated_eval_and_a_driver_fallback(ray_context):
    @tff.tensorflow.computation
    def seven():
        return tf.constant(7, tf.int32)

    @tff.federated_computation
    def evaluate():
        return tff.federated_sum(tff.federated_eval(seven, tff.CLIENTS))

    @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
    def secure(values):
        return tff.federated_secure_sum_bitwidth(values, 8)

    ray_context.default_num_clients = 5
    try:
        with context_scope(ray_context):
            assert evaluate() == 35
            # An intrinsic the workers do not run: the driver fetches the members and runs it.
            assert secure([1, 2, 3]) == 6
    finally:
        ray_context.default_num_clients = 1


# -- learning -----------------------------------------------------------------------------------------


def test_fed_avg_on_ray_trains_the_model_the_local_executor_trains(ray_context, local_context):
    process = fed_avg()
    data = client_datasets(6)
    local_state, local_history = train(process, local_context, data, rounds=3)
    ray_state, ray_history = train(process, ray_context, data, rounds=3)
    assert_same_model(process, local_state, ray_state)
    for a, b in zip(local_history, ray_history):
        train_a, train_b = a["client_work"]["train"], b["client_work"]["train"]
        assert train_a["num_examples"] == train_b["num_examples"] == 72
        np.testing.assert_allclose(train_b["loss"], train_a["loss"], rtol=1e-5)
    assert (
        ray_history[-1]["client_work"]["train"]["loss"]
        < ray_history[0]["client_work"]["train"]["loss"]
    )


def test_other_algorithms_and_evaluation_run_unchanged(ray_context, local_context):
    data = client_datasets(4, seed=3)
    processes = [
        tff.learning.algorithms.build_unweighted_fed_avg(
            model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1)
        ),
        tff.learning.algorithms.build_weighted_fed_prox(
            model_fn,
            client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
            proximal_strength=0.5,
        ),
    ]
    for process in processes:
        local_state, _ = train(process, local_context, data, rounds=2)
        ray_state, _ = train(process, ray_context, data, rounds=2)
        assert_same_model(process, local_state, ray_state)
    evaluation = tff.learning.algorithms.build_fed_eval(model_fn)
    results = []
    for context in (local_context, ray_context):
        with context_scope(context):
            state = evaluation.initialize()
            state = evaluation.set_model_weights(state, processes[0].get_model_weights(local_state))
            results.append(evaluation.next(state, data).metrics)
    local_eval = results[0]["client_work"]["eval"]["current_round_metrics"]
    ray_eval = results[1]["client_work"]["eval"]["current_round_metrics"]
    assert local_eval["num_examples"] == ray_eval["num_examples"] == 48
    np.testing.assert_allclose(ray_eval["loss"], local_eval["loss"], rtol=1e-5)


def test_every_learning_algorithm_runs_unchanged(ray_context, local_context):
    data = client_datasets(4, seed=4)
    sgdm = tff.learning.optimizers.build_sgdm
    processes = {
        "fed_sgd": tff.learning.algorithms.build_fed_sgd(model_fn, server_optimizer_fn=sgdm(0.5)),
        "unweighted_fed_prox": tff.learning.algorithms.build_unweighted_fed_prox(
            model_fn, proximal_strength=0.1, client_optimizer_fn=sgdm(0.1)
        ),
        # TFF's older name, with Keras optimizers made inside the computation.
        "federated_averaging_process": tff.learning.build_federated_averaging_process(
            model_fn, client_optimizer_fn=lambda: tf.keras.optimizers.SGD(learning_rate=0.1)
        ),
    }
    for name, process in processes.items():
        local_state, _ = train(process, local_context, data, rounds=2)
        ray_state, _ = train(process, ray_context, data, rounds=2)
        try:
            assert_same_model(process, local_state, ray_state)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "tutorial",
    ["test_custom_algorithms_1.py", "test_custom_algorithms_2.py"],
)
def test_the_custom_algorithm_tutorials_run_unchanged_on_ray(ray_context, tutorial):
    """The tutorials' own tests (the flows as TFF writes them), with the Ray context in force."""
    spec = importlib.util.spec_from_file_location(
        f"ray_{tutorial[:-3]}", ROOT / "tests" / "tutorials" / tutorial
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [f for name, f in vars(module).items() if name.startswith("test_")]
    assert len(tests) >= 3
    executor = ray_context.executor
    before = executor.stats["bytes_returned"]
    with context_scope(ray_context):
        for test in tests:
            test()
    assert executor.stats["bytes_returned"] > before  # their client work ran on the workers


def test_the_loading_remote_data_flow_materializes_on_the_workers(cluster, tmp_path):
    """TFF's "loading remote data" tutorial on Ray: the user's DataBackend is pickled to the workers, and
    each URI is materialized there (once per worker: the dataset it returns is cached)."""
    marks = tmp_path / "materialized"
    marks.mkdir()
    example = client_datasets(1)[0]

    class MyDataBackend(tff.framework.DataBackend):
        async def materialize(self, data, type_spec):
            index = int(data.uri.rsplit("/", 1)[-1])
            (marks / f"{os.getpid()}-{index}").touch()
            return client_datasets(3, seed=20)[index]

    context = create_context(
        "ray", num_actors=2, num_cpus_per_actor=0.5, data_backend=MyDataBackend()
    )
    try:
        process = fed_avg()
        descriptor = tff.framework.CreateDataDescriptor(
            [f"uri://{i}" for i in range(3)], tff.types.SequenceType(example.element_spec)
        )
        _, history = train(process, context, descriptor, rounds=3)
        expected_state, _ = train(process, context, client_datasets(3, seed=20), rounds=3)
        state, _ = train(process, context, descriptor, rounds=3)
        assert_same_model(process, expected_state, state)
        assert history[0]["client_work"]["train"]["num_examples"] == 36
        made = os.listdir(marks)
        pids = {int(name.split("-")[0]) for name in made}
        assert os.getpid() not in pids and pids <= set(context.executor.worker_pids())
        assert sorted({name.split("-")[1] for name in made}) == ["0", "1", "2"]
        assert len(made) == 3  # cached on the workers: not materialized again in later rounds
    finally:
        context.close()


def test_a_training_program_resumes_from_its_checkpoint_on_ray(ray_context, tmp_path):
    process = fed_avg()
    data = client_datasets(4, seed=6)
    manager = tff.program.FileProgramStateManager(tmp_path / "state")
    with context_scope(ray_context):
        tf.keras.utils.set_random_seed(1)
        uninterrupted = tff.simulation.run_training_process(process, lambda _: data, total_rounds=3)

        rounds_run = []

        def stop_after_two(round_num):
            if round_num == 3:
                raise KeyboardInterrupt  # the driver is stopped in the third round
            rounds_run.append(round_num)
            return data

        tf.keras.utils.set_random_seed(1)
        with pytest.raises(KeyboardInterrupt):
            tff.simulation.run_training_process(
                process, stop_after_two, total_rounds=3, program_state_manager=manager
            )
        resumed = tff.simulation.run_training_process(
            process,
            lambda r: rounds_run.append(r) or data,
            total_rounds=3,
            program_state_manager=manager,
        )
    assert rounds_run == [1, 2, 3]  # the resumed run trained only the round that was lost
    assert_same_model(process, uninterrupted, resumed)


def test_the_kubernetes_tutorial_flow_runs_on_ray(ray_context):
    """TFF's "high-performance simulation with Kubernetes": channels to remote workers become Ray actors."""
    import collections
    import time

    import grpc

    from fed_core.execution import set_local_execution_context

    emnist_train = tff.simulation.datasets.emnist.get_synthetic()

    def preprocess(dataset):
        def map_fn(element):
            return collections.OrderedDict(
                x=tf.reshape(element["pixels"], [-1, 784]), y=tf.reshape(element["label"], [-1, 1])
            )

        return dataset.repeat(2).batch(5).map(map_fn)

    train_data = [
        preprocess(emnist_train.create_tf_dataset_for_client(c))
        for c in emnist_train.client_ids[:4]
    ]
    input_spec = train_data[0].element_spec

    def model_fn():
        model = tf.keras.models.Sequential(
            [
                tf.keras.layers.InputLayer(input_shape=(784,)),
                tf.keras.layers.Dense(units=10, kernel_initializer="zeros"),
                tf.keras.layers.Softmax(),
            ]
        )
        return tff.learning.from_keras_model(
            model,
            input_spec=input_spec,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
        )

    trainer = tff.learning.build_federated_averaging_process(
        model_fn, client_optimizer_fn=lambda: tf.keras.optimizers.SGD(0.02)
    )

    ip_address, port = "0.0.0.0", 80
    channels = [grpc.insecure_channel(f"{ip_address}:{port}") for _ in range(2)]
    context = tff.backends.native.set_remote_python_execution_context(channels)
    try:
        assert isinstance(context.executor, fed_ray.RayExecutor)
        assert context.executor.num_actors == 2
        state = trainer.initialize()
        losses = []
        for _ in range(3):
            t1 = time.time()
            state, metrics = trainer.next(state, train_data)
            t2 = time.time()
            losses.append(float(metrics["train"]["loss"]))
            assert t2 > t1
        assert losses[-1] < losses[0]
        assert context.executor.stats["bytes_returned"] > 0
    finally:
        context.close()
        set_local_execution_context()
        for channel in channels:
            channel.close()


def test_heavy_hitters_run_on_ray_as_locally(ray_context, local_context):
    """A computation from another package (fed-analytics), with secure sums (run on the driver) and
    datasets of strings shipped to the workers."""
    words = [["hello", "hi", "hi"], ["hello", "pumpkin"], ["hi", "hello"], ["way"], ["hello"]]
    data = [tf.data.Dataset.from_tensor_slices(w).batch(2) for w in words]
    computation = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=20, string_max_bytes=10, secure_sum_bitwidth=16
    )
    results = []
    returned = ray_context.executor.stats["bytes_returned"]
    for context in (local_context, ray_context):
        with context_scope(context):
            output = computation(data)
        results.append(
            dict(zip(output.heavy_hitters.tolist(), output.heavy_hitters_counts.tolist()))
        )
    assert results[0] == results[1] == {b"hello": 4, b"hi": 3, b"pumpkin": 1, b"way": 1}
    # The secure sums run on the driver: every client's sketch came back to it.
    sketch_bytes = 3 * tff.analytics.heavy_hitters.iblt.table_size(20) * (4 + 2) * 8
    assert ray_context.executor.stats["bytes_returned"] - returned >= len(words) * sketch_bytes


def test_aggregators_run_on_ray_as_locally(ray_context, local_context):
    """Factories built on plugin intrinsics (the robust rules' gather), secure sums and seeded DP noise
    give the local executor's numbers."""
    value_type = tff.TensorType(np.float32, [3])
    values = [np.array([1, 2, 3], np.float32), np.array([2, 3, 4], np.float32)]
    values.append(np.array([100, -100, 5], np.float32))
    factories = [
        tff.aggregators.CoordinateMedianFactory(),
        tff.aggregators.KrumFactory(num_byzantine=0),
        tff.aggregators.SecureSumFactory(10.0),
        tff.learning.robust_aggregator(weighted=False),
    ]
    if importlib.util.find_spec("tensorflow_privacy") is not None:
        factories.append(
            tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(1.0, 3, 1.0, noise_seed=5)
        )
    for factory in factories:
        process = factory.create(value_type)
        outputs = []
        for context in (local_context, ray_context):
            with context_scope(context):
                outputs.append(process.next(process.initialize(), values).result)
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, err_msg=repr(factory))


# -- what moves ---------------------------------------------------------------------------------------


def test_the_bytes_returned_per_round_do_not_grow_with_the_number_of_clients(ray_context):
    process = fed_avg()
    executor = ray_context.executor
    returned = {}
    for num_clients in (4, 32):
        data = client_datasets(num_clients, seed=num_clients)
        state, _ = train(process, ray_context, data, rounds=1)
        before = executor.stats["bytes_returned"]
        train(process, ray_context, data, rounds=1, state=state)
        returned[num_clients] = executor.stats["bytes_returned"] - before
    assert returned[4] > 0
    assert returned[32] == returned[4], returned
    assert executor.held_values() == [0, 0]  # each round released what its clients computed


def test_client_data_is_sent_once_and_clients_stay_on_their_worker(ray_context):
    process = fed_avg()
    executor = ray_context.executor
    data = client_datasets(8, seed=11)
    state, _ = train(process, ray_context, data, rounds=1)
    sent = executor.stats["datasets_sent"]
    # The same clients again, their datasets built anew: found in the workers' caches by digest.
    again = client_datasets(8, seed=11)
    train(process, ray_context, again, rounds=2, state=state)
    assert executor.stats["datasets_sent"] == sent


def test_clients_are_balanced_by_data_size_largest_first(ray_context):
    executor = ray_context.executor
    layout = executor._balance([10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [None] * 7)
    loads = [0.0, 0.0]
    for weight, slot in zip([10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], layout):
        loads[slot] += weight
    # Round-robin would load the slots 13 and 3; largest-first puts the big client alone.
    assert sorted(loads) == [6.0, 10.0]


def test_a_dataset_that_calls_back_into_python_is_refused_clearly(ray_context):
    process = fed_avg()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = np.zeros(8, np.int32)

    def generate():
        yield from zip(x, y)

    python_data = tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec([4], tf.float32), tf.TensorSpec([], tf.int32))
    ).batch(4)
    with pytest.raises(fed_ray.UnshippableDatasetError, match="from_generator or py_function"):
        train(process, ray_context, [python_data], rounds=1)


def test_data_descriptors_are_materialized_on_the_workers(ray_context):
    @tff.tensorflow.computation(tff.SequenceType(np.int64))
    def total(sequence):
        return sequence.reduce(np.int64(0), lambda a, b: a + b)

    @tff.federated_computation(tff.FederatedType(tff.SequenceType(np.int64), tff.CLIENTS))
    def sum_of_totals(sequences):
        return tff.federated_sum(tff.federated_map(total, sequences))

    # The "example" scheme is registered by a plugin installed where the workers run.
    descriptor = tff.framework.CreateDataDescriptor(
        ["example://range/3", "example://range/5"], tff.SequenceType(np.int64)
    )
    with context_scope(ray_context):
        assert sum_of_totals(descriptor) == (0 + 1 + 2) + (0 + 1 + 2 + 3 + 4)


# -- faults -------------------------------------------------------------------------------------------


def _killer(executor, when, wait_for_restart):
    """An event hook that kills the worker process of the first slot submitted `when`, once; with
    `wait_for_restart`, it returns only when Ray has restarted it, so the driver sees no error at all."""
    done = []

    def on_event(name, info):
        if name == "submit" and info["what"] == when and not done:
            done.append(info["slot"])
            os.kill(executor.worker_pids()[info["slot"]], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while wait_for_restart and time.monotonic() < deadline:
                try:
                    ray.get(executor._actors[info["slot"]].ping.remote(), timeout=10)
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    time.sleep(0.2)

    return on_event, done


@pytest.mark.parametrize(
    "when, wait_for_restart",
    [("run", False), ("reduce:weighted_mean", False), ("reduce:weighted_mean", True)],
)
def test_a_worker_killed_mid_round_is_recovered_and_the_round_is_unchanged(
    ray_context, cluster, when, wait_for_restart
):
    process = fed_avg()
    data = client_datasets(6, seed=5)
    expected_state, _ = train(process, ray_context, data, rounds=1)
    context = create_context("ray", num_actors=2, num_cpus_per_actor=0.5, max_restarts=2)
    try:
        executor = context.executor
        executor._on_event, killed = _killer(executor, when, wait_for_restart)
        state, _ = train(process, context, data, rounds=1)
        assert killed, "the hook never fired"
        assert executor.stats["recoveries"] == 1
        if when != "run":  # the dead worker's stored client results were computed again
            assert executor.stats["recomputed"] >= 1
        assert_same_model(process, expected_state, state)
    finally:
        context.close()


# -- set-up and misuse --------------------------------------------------------------------------------


def test_the_executor_is_a_plugin_and_the_umbrella_reaches_it(ray_context):
    from fed_core import plugins

    assert "ray" in plugins.get_registry("executors")
    assert tff.backends.ray.create_sync_ray_execution_context is not None
    with pytest.raises(ValueError, match="num_actors must be an int >= 1, got 0"):
        create_context("ray", num_actors=0)
    with pytest.raises(ValueError, match="8 actors of 1 CPUs need 8 CPUs; the Ray cluster has 4"):
        create_context("ray", num_actors=8)
    with pytest.raises(RuntimeError, match="Ray is initialized already"):
        create_context("ray", address="127.0.0.1:1")


def test_a_worker_with_other_versions_is_refused(cluster, monkeypatch):
    from fed_ray import _worker

    real = _worker.versions()
    monkeypatch.setattr(_worker, "versions", lambda: {**real, "ray": "1.0.0"})
    with pytest.raises(RuntimeError, match=r"ray \('1.0.0', '.*'\)|different versions"):
        fed_ray.RayExecutor(num_actors=1)


def test_two_nodes_run_fed_avg_like_one_machine(ray_context, local_context):
    """A cluster of two nodes on this machine (Ray's own test cluster): the multi-node path."""
    from ray.cluster_utils import Cluster

    ray_context.close()
    ray.shutdown()
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 1 << 28},
    )
    try:
        nodes.add_node(num_cpus=1, object_store_memory=1 << 28)
        nodes.wait_for_nodes()
        fed_ray.init(address=nodes.address)
        context = create_context("ray")  # one actor per CPU: one on each node
        try:
            workers = context.executor.workers()
            assert len({w["node_id"] for w in workers}) == 2  # one actor on each node
            process = fed_avg()
            data = client_datasets(4, seed=9)
            local_state, _ = train(process, local_context, data, rounds=2)
            ray_state, _ = train(process, context, data, rounds=2)
            assert_same_model(process, local_state, ray_state)
        finally:
            context.close()
    finally:
        ray.shutdown()
        nodes.shutdown()
