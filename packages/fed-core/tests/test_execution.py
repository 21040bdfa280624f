"""Execution: contexts, the local executor's concurrency and batching, argument checking, results."""

import asyncio
import os
import threading
from typing import Any

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


PAIR = StructType([("a", F32), ("b", TensorType(np.int32))])


def test_a_map_of_a_lambda_that_only_selects_runs_once_on_stacked_values():
    from fed_core.execution.interface import FunctionValue
    from fed_core.execution.local import LocalExecutor, _State, _structural
    from fed_types import Struct

    swap = fc.federated_computation(lambda x: (x.b, x[0]), PAIR)
    select = _structural(swap.building_block)
    assert select is not None
    stacked = Struct.named(a=np.arange(3, dtype=np.float32), b=np.arange(3, dtype=np.int32) * 10)
    function = FunctionValue(swap.type_signature, _fail, structural=select)
    state = _State(LocalExecutor(2), 3)
    result = function.map(framework.ClientValues(stacked=stacked, size=3), state)
    assert result.is_stacked
    assert result.stacked()[0] is stacked.b and result.stacked()[1] is stacked.a
    members = [Struct.named(a=np.float32(k), b=np.int32(k)) for k in range(2)]
    assert [m[0] for m in function.map(framework.ClientValues(members), state).members()] == [0, 1]

    # A lambda that computes anything is evaluated client by client, as before.
    summed = fc.federated_computation(lambda x: fc.federated_sum(x), FederatedType(F32, CLIENTS))
    assert _structural(summed.building_block) is None


def _fail(argument):
    raise AssertionError("the lambda was evaluated client by client")


def test_federated_map_of_a_selection_then_sum():
    take_b = fc.federated_computation(lambda x: x.b, PAIR)

    @fc.federated_computation(FederatedType(PAIR, CLIENTS))
    def total_b(values):
        return fc.federated_sum(fc.federated_map(take_b, values))

    assert total_b([(1.0, 2), (3.0, 4), (5.0, 6)]) == 12


def test_aggregations_of_client_values_held_one_by_one_equal_the_stacked_ones():
    from fed_core.execution.local import LocalExecutor, _State
    from fed_core.intrinsics.local import (
        federated_max,
        federated_mean,
        federated_min,
        federated_sum,
        federated_weighted_mean,
    )
    from fed_types import Struct

    rng = np.random.default_rng(0)
    members = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(37)]
    ints = [rng.integers(-50, 50, size=5).astype(np.int32) for _ in range(37)]
    vector = FederatedType(TensorType(np.float32, [4, 3]), CLIENTS)
    fn_type = fc.federated_computation(lambda x: fc.federated_sum(x), vector).type_signature
    int_type = fc.federated_computation(
        lambda x: fc.federated_sum(x), FederatedType(TensorType(np.int32, [5]), CLIENTS)
    ).type_signature
    for reduce_ in (federated_sum, federated_mean, federated_min, federated_max):
        for values, t in ((members, fn_type), (ints, int_type)):
            one_by_one = framework.ClientValues(values)
            stacked = framework.ClientValues(stacked=np.stack(values))
            got = reduce_(None, t, one_by_one)
            np.testing.assert_array_equal(got, reduce_(None, t, stacked))
            assert got.dtype == values[0].dtype
            assert not one_by_one.is_stacked  # no stacked copy of all clients was made
    weights = [np.float32(w) for w in rng.uniform(0.5, 3.0, size=37)]
    pairs = [
        Struct([(None, framework.ClientValues(members)), (None, framework.ClientValues(weights))])
    ]
    stacked_pair = Struct(
        [
            (None, framework.ClientValues(stacked=np.stack(members))),
            (None, framework.ClientValues(weights)),
        ]
    )
    state = _State(LocalExecutor(2), 37)
    np.testing.assert_array_equal(
        federated_weighted_mean(state, fn_type, pairs[0]),
        federated_weighted_mean(state, fn_type, stacked_pair),
    )
    with pytest.raises(ValueError, match=r"float32\[4, 3\] and float32\[2\]"):
        federated_sum(None, fn_type, framework.ClientValues([members[0], np.zeros(2, np.float32)]))


def test_zipping_stacked_client_values_keeps_them_stacked():
    from fed_core.intrinsics.local import federated_zip_at_clients
    from fed_types import Struct

    counts = np.array([3, 0, 7], np.int32)
    deltas = np.arange(6, dtype=np.float32).reshape(3, 2)
    arg = Struct.named(
        delta=framework.ClientValues(stacked=deltas), count=framework.ClientValues(stacked=counts)
    )
    zipped = federated_zip_at_clients(None, None, arg)
    assert zipped.is_stacked and len(zipped) == 3
    one_by_one = federated_zip_at_clients(
        None,
        None,
        Struct.named(
            delta=framework.ClientValues(list(deltas)), count=framework.ClientValues(list(counts))
        ),
    )
    assert not one_by_one.is_stacked
    for got, want in zip(zipped.members(), one_by_one.members(), strict=True):
        assert list(got.names()) == list(want.names()) == ["delta", "count"]
        np.testing.assert_array_equal(got.delta, want.delta)
        assert got.count == want.count
    with pytest.raises(ValueError, match=r"different numbers of clients: \[2, 3\]"):
        federated_zip_at_clients(
            None,
            None,
            Struct.named(
                delta=framework.ClientValues(stacked=deltas),
                count=framework.ClientValues(stacked=counts[:2]),
            ),
        )


def test_a_weighted_mean_of_stacked_values_sums_them_in_blocks(monkeypatch):
    from fed_core.execution.local import LocalExecutor, _State
    from fed_core.intrinsics import local
    from fed_types import Struct

    rng = np.random.default_rng(1)
    members = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(23)]
    weights = framework.ClientValues([np.float32(w) for w in rng.uniform(0.5, 3.0, size=23)])
    fn_type = fc.federated_computation(
        lambda x: fc.federated_sum(x), FederatedType(TensorType(np.float32, [4, 3]), CLIENTS)
    ).type_signature
    executor = LocalExecutor(4)
    state = _State(executor, 23)

    def mean(values: framework.ClientValues, weights: framework.ClientValues = weights) -> Any:
        return local.federated_weighted_mean(
            state, fn_type, Struct([(None, values), (None, weights)])
        )

    one_by_one = mean(framework.ClientValues(members))
    stacked = framework.ClientValues(stacked=np.stack(members))
    # Rows too large for enough of them to fit in a block are summed client by client, as values
    # held one by one are: the same arithmetic, so the same bits.
    monkeypatch.setattr(local, "_WEIGHTED_BLOCK_ELEMENTS", 24)
    np.testing.assert_array_equal(mean(stacked), one_by_one)
    # Split into column ranges summed on the executor's threads (here as many ranges as this
    # machine has cores, up to one per element): each range adds the clients in order, the same bits.
    monkeypatch.setattr(local, "_PARALLEL_SUM_MIN_ELEMENTS", 1)
    threads = set()
    original = executor.pool.submit

    def submit(fn: Any, *args: Any) -> Any:
        def recorded(*given: Any) -> Any:
            threads.add(threading.get_ident())
            return fn(*given)

        return original(recorded, *args)

    monkeypatch.setattr(executor.pool, "submit", submit)
    np.testing.assert_array_equal(mean(stacked), one_by_one)
    np.testing.assert_array_equal(mean(framework.ClientValues(members)), one_by_one)
    assert (len(threads) > 0) == ((os.cpu_count() or 1) > 1)
    # Blocks of two clients' rows (12 elements each) at a time: twelve blocks, the last of one row
    # (the block path does not split columns, whatever the threshold above).
    monkeypatch.setattr(local, "_WEIGHTED_BLOCK_MIN_ROWS", 2)
    got = mean(stacked)
    assert got.dtype == np.float32 and got.shape == (4, 3)
    np.testing.assert_allclose(got, one_by_one, rtol=1e-6)
    expected = np.average(np.stack(members).astype(np.float64), axis=0, weights=weights.stacked())
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isnan(mean(stacked, framework.ClientValues([np.float32(0)] * 23))).all()
    with pytest.raises(ValueError, match="23 clients' values and 2 weights"):
        mean(stacked, framework.ClientValues(stacked=np.ones(2)))
    executor.close()


def test_results_are_arrays_the_caller_may_change():
    from fed_core.execution import to_python

    buffer = np.arange(4, dtype=np.float32)
    view = buffer[:]
    view.flags.writeable = False  # as a backend's tensor buffer reaches Python
    result = to_python(view, TensorType(np.float32, [4]))
    assert result.flags.writeable
    result += 1
    np.testing.assert_array_equal(buffer, [0, 1, 2, 3])
    clients = to_python(
        framework.ClientValues(stacked=view.reshape(2, 2)),
        FederatedType(TensorType(np.float32, [2]), CLIENTS),
    )
    assert all(member.flags.writeable for member in clients)
