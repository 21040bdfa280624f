"""Execution: contexts, the local executor's concurrency and batching, argument checking, results."""

import asyncio
import threading

import numpy as np
import pytest

import fed_core as fc
from fed_core import framework
from fed_core.execution import (
    context_scope,
    create_context,
    get_context,
    set_local_execution_context,
)
from fed_core.testing import python_backend, python_computation
from fed_types import CLIENTS, FederatedType, SequenceType, StructType, TensorType

F32 = TensorType(np.float32)


@python_computation(np.float32, result_type=np.float32)
def noisy_square(x):
    return x * x


@fc.federated_computation(FederatedType(np.float32, CLIENTS))
def sum_of_squares(values):
    return fc.federated_sum(fc.federated_map(noisy_square, values))


@pytest.fixture(autouse=True)
def fresh_default_context():
    set_local_execution_context()
    yield
    set_local_execution_context()


def test_default_local_context_exists_without_any_call():
    assert sum_of_squares([1.0, 2.0]) == pytest.approx(5.0)
    assert hasattr(get_context(), "invoke")


def test_contexts_nest_and_restore():
    outer = create_context("local", default_num_clients=2)
    inner = create_context("local", default_num_clients=4)

    @python_computation(result_type=np.int32)
    def one():
        return 1

    @fc.federated_computation
    def count_clients():
        return fc.federated_sum(fc.federated_eval(one, CLIENTS))

    with context_scope(outer):
        assert count_clients() == 2
        with context_scope(inner):
            assert count_clients() == 4
        assert count_clients() == 2
    assert count_clients() == 1


def test_unknown_executor_name_lists_the_registered_ones():
    with pytest.raises(KeyError) as info:
        create_context("no-such-executor")
    assert "local" in str(info.value)


def test_local_executor_refuses_unknown_options():
    with pytest.raises(TypeError, match="does not take the options \\['gpus'\\]"):
        create_context("local", gpus=["/CPU:0"])


def test_results_are_deterministic_whatever_the_concurrency():
    values = [float(v) / 7 for v in range(200)]
    results = set()
    for concurrency in (1, 2, 16):
        with context_scope(create_context("local", max_concurrency=concurrency)):
            results.add(float(sum_of_squares(values)))
    assert len(results) == 1


def test_client_work_runs_concurrently_on_the_pool():
    seen_threads = set()
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=10)

    class Recording(framework.LoadedComputation):
        def __call__(self, argument=None):
            with lock:
                seen_threads.add(threading.current_thread().name)
            barrier.wait()  # only returns if 4 clients run at the same time
            return argument

    class RecordingBackend(framework.Backend):
        def load(self, computation):
            return Recording()

    @fc.hookimpl
    def fed_register_backends(register):
        register.add("recording", RecordingBackend)

    from fed_core import plugins

    system = plugins.PluginSystem(autoload=True)
    system.register(
        type(
            "RecordingPlugin", (), {"fed_register_backends": staticmethod(fed_register_backends)}
        )()
    )
    previous = plugins._swap_default(system)
    try:
        leaf = framework.CompiledComputation(
            "recording",
            b"",
            framework.Lambda("x", F32, framework.Reference("x", F32)).type_signature,
        )
        identity = fc.Computation(leaf, "identity")

        @fc.federated_computation(FederatedType(np.float32, CLIENTS))
        def run(values):
            return fc.federated_map(identity, values)

        with context_scope(create_context("local", max_concurrency=4)):
            assert run([1.0, 2.0, 3.0, 4.0]) == [1.0, 2.0, 3.0, 4.0]
    finally:
        plugins._swap_default(previous)
    assert len(seen_threads) == 4
    assert all(name.startswith("fed-client") for name in seen_threads)


def test_a_whole_federated_map_goes_to_the_backend_in_one_call():
    backend = python_backend()
    before = list(backend.map_calls)
    sum_of_squares([float(v) for v in range(100)])
    assert backend.map_calls[len(before) :] == [100]


def test_aggregations_reduce_stacked_client_values_without_splitting_them():
    stacked = framework.ClientValues(stacked=np.arange(12, dtype=np.float32).reshape(4, 3))
    assert len(stacked) == 4 and stacked.is_stacked
    from fed_core.intrinsics.local import federated_mean

    fn_type = fc.federated_computation(
        lambda x: fc.federated_mean(x), FederatedType(TensorType(np.float32, [3]), CLIENTS)
    ).type_signature
    np.testing.assert_allclose(federated_mean(None, fn_type, stacked), [4.5, 5.5, 6.5])
    assert stacked.is_stacked
    assert [list(m) for m in stacked.members()][1] == [3.0, 4.0, 5.0]


def test_calls_work_inside_a_running_event_loop():
    async def notebook_cell():
        return sum_of_squares([3.0, 4.0])

    assert asyncio.run(notebook_cell()) == pytest.approx(25.0)


def test_wrong_argument_types_are_refused_before_running():
    backend = python_backend()
    before = len(backend.map_calls)
    with pytest.raises(TypeError) as info:
        sum_of_squares([1.0, "two"])
    message = str(info.value)
    assert "sum_of_squares of type ({float32}@CLIENTS -> float32@SERVER)" in message
    assert "expected float32 at [client 1], given str" in message
    with pytest.raises(TypeError, match="a list with one member per client"):
        sum_of_squares(np.float32(1.0))
    with pytest.raises(TypeError, match="expected float32 at \\[client 0\\], given float64"):
        sum_of_squares([np.float64(1.0)])
    assert len(backend.map_calls) == before


def test_argument_shapes_and_names_are_checked():
    @fc.federated_computation(StructType([("a", TensorType(np.int32, [2])), ("b", F32)]))
    def f(arg):
        return arg

    assert f({"a": [1, 2], "b": 1.0})["b"] == pytest.approx(1.0)
    with pytest.raises(TypeError, match=r"expected int32\[2\] at .a, given int32\[3\]"):
        f({"a": np.array([1, 2, 3], np.int32), "b": 1.0})
    with pytest.raises(TypeError, match="element 0 is named 'x', not 'a'"):
        f({"x": [1, 2], "b": 1.0})
    with pytest.raises(TypeError, match=r"expected int32\[2\] at .a, given <int32,int64>"):
        f({"a": [1, 2**40], "b": 1.0})


def test_clients_arguments_must_agree_on_the_number_of_clients():
    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS), FederatedType(np.float32, CLIENTS)
    )
    def f(a, b):
        return fc.federated_sum(a), fc.federated_sum(b)

    with pytest.raises(ValueError, match=r"same number of clients, got \[2, 3\]"):
        f([1.0, 2.0], [1.0, 2.0, 3.0])


def test_all_equal_clients_argument_and_result():
    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS, all_equal=True), FederatedType(np.float32, CLIENTS)
    )
    def f(shared, values):
        return shared, fc.federated_sum(fc.federated_map(noisy_square, values))

    assert str(f.type_signature.result) == "<float32@CLIENTS,float32@SERVER>"
    assert f(np.float32(2.0), [1.0, 1.0, 1.0]) == (2.0, 3.0)


def test_sequences_in_and_out():
    @fc.federated_computation(SequenceType(np.int32))
    def f(seq):
        return seq

    assert f([1, 2, 3]) == [1, 2, 3]
    with pytest.raises(TypeError, match="a sequence"):
        f(3)


def test_zero_clients():
    assert sum_of_squares([]) == 0.0

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def mean(values):
        return fc.federated_mean(values)

    with pytest.raises(ValueError, match="at least one client"):
        mean([])


def test_string_tensors_take_text_or_bytes_and_give_bytes():
    from fed_core.testing import python_computation

    @python_computation(TensorType(np.str_, [2]), result_type=TensorType(np.str_, [2]))
    def echo(strings):
        return strings

    cut = "泡".encode()[:2]  # not UTF-8: kept as it is
    assert echo(["泡", "b"]).tolist() == ["泡".encode(), b"b"]
    assert echo([b"a", cut]).tolist() == [b"a", cut]
    assert echo(np.array([b"x", b"y"], dtype=object)).tolist() == [b"x", b"y"]
    assert echo(echo(["a", "b"])).tolist() == [b"a", b"b"]
    with pytest.raises(TypeError, match=r"expected str\[2\], given <int32,int32>"):
        echo([1, 2])
    with pytest.raises(TypeError, match=r"expected str\[2\]"):
        echo(["only one"])
