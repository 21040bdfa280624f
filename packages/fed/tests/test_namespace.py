"""The umbrella namespace: TFF's names reach fed's packages, and TensorFlow loads only when needed."""

import collections
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fed


def assert_prints_ok(code: str) -> None:
    """Runs `code` in a new Python process and checks that it ends by printing "ok"."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "ok"


def test_import_fed_does_not_import_tensorflow():
    assert_prints_ok(
        "import sys, fed; assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print('ok')"
    )


def test_importing_every_module_leaves_tensorflow_configurable():
    """Importing fed's modules (and reaching every name of the umbrella) traces nothing: tracing
    starts TensorFlow's runtime, after which a program can no longer set its threads or split its
    devices, as TFF's tutorials do after `import tensorflow_federated as tff`."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil
        import tensorflow as tf
        import fed

        packages = ["fed", "fed_core", "fed_tensorflow", "fed_aggregators", "fed_learning",
                    "fed_analytics", "fed_datasets"]
        for package in packages:
            root = importlib.import_module(package)
            for info in pkgutil.walk_packages(root.__path__, package + "."):
                if not info.name.endswith("__main__"):
                    importlib.import_module(info.name)
        for name in ["learning", "aggregators", "analytics", "simulation", "program", "templates"]:
            namespace = getattr(fed, name)
            for attribute in dir(namespace):
                getattr(namespace, attribute)
        tf.config.threading.set_intra_op_parallelism_threads(1)
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        assert len(tf.config.list_logical_devices("CPU")) == 2
        assert tf.config.threading.get_intra_op_parallelism_threads() == 1
        print("ok")
        """
    )
    assert_prints_ok(code)


def test_core_names_and_type_helpers():
    assert str(fed.type_at_clients(np.float32)) == "{float32}@CLIENTS"
    assert str(fed.type_at_server(fed.TensorType(np.int32, [2]))) == "int32[2]@SERVER"
    assert fed.NamedTupleType is fed.StructType

    @fed.federated_computation(fed.type_at_clients(np.float32))
    def get_average_temperature(sensor_readings):
        return fed.federated_mean(sensor_readings)

    assert get_average_temperature([68.5, 70.3, 69.8]) == pytest.approx(69.5333, abs=1e-4)


def test_tensorflow_names_and_legacy_alias():
    import tensorflow as tf

    assert fed.tf_computation is fed.tensorflow.computation

    @fed.tf_computation(fed.SequenceType(np.float32))
    def total(values):
        return values.reduce(np.float32(0), lambda a, b: a + b)

    @fed.federated_computation(fed.type_at_clients(fed.SequenceType(np.float32)))
    def mean_of_totals(data):
        return fed.federated_mean(fed.federated_map(total, data))

    assert mean_of_totals([[1.0, 2.0], [3.0]]) == pytest.approx(3.0)
    assert fed.tensorflow.to_type(tf.TensorSpec([None], tf.int32)) == fed.TensorType(
        np.int32, [None]
    )


def test_templates_learning_aggregators_and_simulation_are_reachable():
    assert fed.utils.IterativeProcess is fed.templates.IterativeProcess
    assert hasattr(fed.templates, "AggregationProcess")
    assert callable(fed.learning.algorithms.build_weighted_fed_avg)
    assert callable(fed.learning.build_federated_averaging_process)
    assert callable(fed.learning.from_keras_model)
    assert callable(fed.learning.optimizers.build_sgdm)
    assert fed.aggregators.MeanFactory.__name__ == "MeanFactory"
    sample = fed.simulation.build_uniform_sampling_fn(["a", "b", "c"], random_seed=1)
    assert sample(3, 2) == sample(3, 2)
    assert hasattr(fed.simulation.datasets, "ClientData")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fed.nope  # noqa: B018


def test_execution_context_setters_with_tff_names():
    fed.backends.native.set_sync_local_cpp_execution_context(
        default_num_clients=3, max_concurrent_computation_calls=-1
    )

    @fed.federated_computation
    def count():
        return fed.federated_sum(fed.federated_value(np.int32(1), fed.CLIENTS))

    try:
        assert count() == 3
        fed.backends.test.set_sync_test_cpp_execution_context(default_num_clients=2)
        assert count() == 2
    finally:
        fed.backends.native.set_sync_local_execution_context()
    assert count() == 1


def test_a_local_context_given_devices_keeps_them_to_itself():
    import fed_tensorflow

    before = fed_tensorflow._backend.backend().devices
    own = fed.backends.native.create_sync_local_execution_context(devices=["/CPU:0"])
    assert own.executor.devices == ["/CPU:0"]
    assert fed.backends.native.create_sync_local_execution_context().executor.devices is None
    assert fed_tensorflow._backend.backend().devices == before


def test_the_framework_names_of_tff_data_loading():
    for name in [
        "DataBackend",
        "CreateDataDescriptor",
        "DataExecutor",
        "EagerTFExecutor",
        "ExecutionContext",
        "local_executor_factory",
        "local_cpp_executor_factory",
        "set_default_context",
    ]:
        assert hasattr(fed.framework, name), name
    with pytest.raises(NotImplementedError, match="server_tf_device"):
        fed.framework.local_executor_factory(server_tf_device="/CPU:0")
    with pytest.raises(TypeError, match="data_backend with a materialize method"):
        fed.framework.DataExecutor(fed.framework.EagerTFExecutor(), data_backend=object())


def test_the_jax_names_when_fed_jax_is_installed():
    import fed_jax

    assert fed.jax.computation is fed_jax.computation
    assert fed.jax_computation is fed_jax.computation
    assert fed.experimental.jax_computation is fed_jax.computation
    assert fed.learning.build_jax_federated_averaging_process is (
        fed_jax.build_jax_federated_averaging_process
    )
    assert "jax" not in fed.__all__  # an optional part: `from fed import *` works without it
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fed.experimental.nope  # noqa: B018


def test_tff_type_and_structure_helpers():
    import attrs
    import tensorflow as tf

    assert fed.types.tensorflow_to_type(
        collections.OrderedDict(x=tf.TensorSpec([None, 784], tf.float32))
    ) == fed.StructType([("x", fed.TensorType(np.float32, [None, 784]))])
    assert "tensorflow_to_type" in fed.types.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fed.types.nope  # noqa: B018
    t = fed.type_at_server(fed.StructType([("w", np.float32), ("b", np.int32)]))
    assert t.formatted_representation() == "<\n  w=float32,\n  b=int32\n>@SERVER"

    @attrs.define(frozen=True)
    class ServerState:
        trainable_weights: object
        optimizer_state: object

    state = fed.structure.update_struct(ServerState(1, 2), optimizer_state=3)
    assert state == ServerState(1, 3)
    assert fed.structure.flatten(fed.structure.from_container([1, {"b": 2, "a": 3}])) == [1, 3, 2]


def test_simulation_composes_dataset_computations_with_learning_processes():
    data = fed.simulation.datasets.TestClientData(
        {"a": np.array([1.0, 2.0], np.float32), "b": np.array([4.0], np.float32)}
    )
    datasets = fed.type_at_clients(fed.SequenceType(np.float32))

    @fed.tensorflow.computation(fed.SequenceType(np.float32))
    def total(dataset):
        return dataset.reduce(np.float32(0), lambda s, x: s + x)

    @fed.federated_computation
    def initialize():
        return fed.federated_value(np.float32(0), fed.SERVER)

    @fed.federated_computation(fed.type_at_server(np.float32), datasets)
    def next_fn(state, client_data):
        return fed.federated_sum(fed.federated_map(total, client_data)), state

    process = fed.learning.templates.LearningProcess(
        initialize, next_fn, lambda state: state * 2, lambda state, weights: weights
    )
    composed = fed.simulation.compose_dataset_computation_with_learning_process(
        data.dataset_computation, process
    )
    assert isinstance(composed, fed.learning.templates.LearningProcess)
    assert str(composed.next.type_signature.parameter) == (
        "<state=float32@SERVER,client_data={str}@CLIENTS>"
    )
    state, _ = composed.next(composed.initialize(), ["a", "b"])
    assert state == pytest.approx(7.0)
    assert composed.get_model_weights(state) == pytest.approx(14.0)
    with pytest.raises(TypeError, match="to be a LearningProcess, got"):
        fed.simulation.compose_dataset_computation_with_learning_process(
            data.dataset_computation, fed.templates.IterativeProcess(initialize, next_fn)
        )
    assert callable(fed.simulation.compose_dataset_computation_with_iterative_process)
    assert callable(fed.simulation.compose_dataset_computation_with_computation)


def test_the_lazy_submodules_import_by_name_as_the_same_modules():
    # TFF's users write `from tensorflow_federated.python... import` rarely, but `import fed.learning` and
    # `from fed.aggregators import dp` are how Python users reach a submodule.
    code = textwrap.dedent(
        """
        import sys
        import fed.learning
        import fed.learning.algorithms as algorithms
        from fed.aggregators import dp
        import fed.simulation.datasets.emnist as emnist
        import fed_aggregators.dp, fed_datasets.emnist, fed_learning.algorithms
        import fed.framework
        import fed_core.framework

        assert fed.framework is fed_core.framework

        assert fed.learning is sys.modules["fed.learning"] is fed.__dict__["learning"]
        assert algorithms is fed_learning.algorithms is fed.learning.algorithms
        assert dp is fed_aggregators.dp
        assert emnist is fed_datasets.emnist  # one module, not a second copy under another name
        for missing in ("fed.nothing", "fed.learning.nothing"):
            try:
                __import__(missing)
            except ModuleNotFoundError as error:
                assert repr(missing) in str(error), error
            else:
                raise AssertionError(missing)
        print("ok")
        """
    )
    assert_prints_ok(code)
