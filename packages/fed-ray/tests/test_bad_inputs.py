"""What fed-ray's public entry points do with the inputs a new user gets wrong: executor options of the
wrong type or out of range (refused before any cluster is joined or actor started), pools the cluster
cannot hold, options for a cluster that is already running, calls on a closed executor, and the
cluster's own set-up and shutdown. Each case names the error type and words of its message that say
what was expected and what was given. One local cluster serves the module."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import fed_core as fc
from fed_core.execution import ExecutionContext, context_scope, create_context
from fed_types import at_clients

ray = pytest.importorskip("ray")
import fed_ray  # noqa: E402

CPUS = 4


def check(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return raised.value


@fc.federated_computation(at_clients(np.float32))
def mean(values):
    return fc.federated_mean(values)


# ---- options checked before Ray is touched

OPTIONS = {
    "no actors": ({"num_actors": 0}, ValueError, ["num_actors must be an int >= 1, got 0."]),
    "negative actors": (
        {"num_actors": -2},
        ValueError,
        ["num_actors must be an int >= 1, got -2."],
    ),
    "a fraction of an actor": (
        {"num_actors": 1.5},
        TypeError,
        ["num_actors must be an int >= 1, got 1.5 of type float."],
    ),
    "actors as a string": (
        {"num_actors": "2"},
        TypeError,
        ["num_actors must be an int >= 1, got '2' of type str."],
    ),
    "actors True": (
        {"num_actors": True},
        TypeError,
        ["num_actors must be an int", "True of type bool"],
    ),
    "negative CPUs": (
        {"num_cpus_per_actor": -1},
        ValueError,
        ["num_cpus_per_actor must be a finite number >= 0, got -1."],
    ),
    "CPUs as a string": (
        {"num_cpus_per_actor": "1"},
        TypeError,
        ["num_cpus_per_actor must be a finite number >= 0, got '1' of type str."],
    ),
    "NaN CPUs": (
        {"num_cpus_per_actor": math.nan},
        ValueError,
        ["num_cpus_per_actor must be a finite number >= 0, got nan."],
    ),
    "infinite CPUs": (
        {"num_cpus_per_actor": math.inf},
        ValueError,
        ["num_cpus_per_actor must be a finite number >= 0, got inf."],
    ),
    "NaN GPUs": (
        {"num_gpus_per_actor": math.nan},
        ValueError,
        ["num_gpus_per_actor must be a finite number >= 0, got nan."],
    ),
    "negative restarts": (
        {"max_restarts": -1},
        ValueError,
        ["max_restarts must be an int >= 0, got -1."],
    ),
    "restarts as a float": (
        {"max_restarts": 1.0},
        TypeError,
        ["max_restarts must be an int >= 0, got 1.0 of type float."],
    ),
    "no threads": (
        {"max_concurrency": 0},
        ValueError,
        ["max_concurrency must be an int >= 1, got 0."],
    ),
    "threads as a string": (
        {"max_concurrency": "x"},
        TypeError,
        ["max_concurrency must be an int >= 1, got 'x' of type str."],
    ),
    "a negative start-up timeout": (
        {"startup_timeout": -1},
        ValueError,
        ["startup_timeout must be a finite number >= 0, got -1."],
    ),
    "a NaN start-up timeout": (
        {"startup_timeout": math.nan},
        ValueError,
        ["startup_timeout must be a finite number >= 0, got nan."],
    ),
    "a start-up timeout as a string": (
        {"startup_timeout": "5"},
        TypeError,
        ["startup_timeout must be a finite number >= 0, got '5' of type str."],
    ),
    "an address that is a port number": (
        {"address": 6379},
        TypeError,
        ["address must be the address of a Ray cluster (a str such as 'auto'", "got 6379."],
    ),
    "actor options as a string": (
        {"actor_options": "num_cpus=1"},
        TypeError,
        ["actor_options must be a dict of options or None, got 'num_cpus=1'."],
    ),
    "init options as a list": (
        {"init_options": [("num_cpus", 2)]},
        TypeError,
        ["init_options must be a dict of options or None, got [('num_cpus', 2)]."],
    ),
    "a data backend without materialize": (
        {"data_backend": 5},
        TypeError,
        [
            "data_backend must be a fed_core.execution.DataBackend (with a materialize method), got 5."
        ],
    ),
    "an event hook that is not callable": (
        {"on_event": "print"},
        TypeError,
        ["on_event must be callable, got 'print'."],
    ),
}


@pytest.mark.parametrize(("options", "error", "words"), OPTIONS.values(), ids=OPTIONS.keys())
def test_a_bad_option_is_refused_before_ray_is_touched(options, error, words):
    was_initialized = ray.is_initialized()
    check(lambda: fed_ray.RayExecutor(**options), error, words)
    check(lambda: create_context("ray", **options), error, words)  # the plugin's way
    assert ray.is_initialized() == was_initialized  # no cluster was started or joined


def test_an_option_the_executor_does_not_take_is_named():
    check(
        lambda: create_context("ray", num_actor=2, cpus=1),
        TypeError,
        [
            "The Ray executor does not take the options ['cpus', 'num_actor']",
            "it takes address, num_actors",
        ],
    )


def test_the_cluster_helpers_before_a_cluster_exists():
    if ray.is_initialized():
        pytest.skip("another module's cluster is running")
    check(
        fed_ray.free_cpus,
        RuntimeError,
        ["free_cpus needs a Ray cluster", "call fed_ray.init() first"],
    )
    check(
        lambda: fed_ray.init(address=6379),
        TypeError,
        ["address must be the address of a Ray cluster", "got 6379."],
    )
    fed_ray.shutdown()  # nothing to stop: no error
    assert not ray.is_initialized()


# ---- with a cluster


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    assert fed_ray.init(num_cpus=CPUS) is True
    yield
    ray.shutdown()


def _wait_for_free_cpus(expected: float, seconds: float = 30.0) -> float:
    """The cluster's free CPUs once they reach `expected` (Ray frees a killed actor's asynchronously)."""
    deadline = time.monotonic() + seconds
    while fed_ray.free_cpus() < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return fed_ray.free_cpus()


def test_init_again_keeps_the_running_cluster(cluster):
    assert fed_ray.init(num_cpus=1) is False
    assert ray.cluster_resources()["CPU"] == CPUS


POOLS = {
    "more actors than CPUs": (
        {"num_actors": CPUS * 2},
        [
            "8 actors of 1 CPUs need 8 CPUs; the Ray cluster has 4",
            "Ask for fewer actors or smaller ones",
        ],
    ),
    "a billion actors": ({"num_actors": 10**9}, ["1000000000 actors of 1 CPUs need 1e+09 CPUs"]),
    "actors larger than the cluster": (
        {"num_actors": 1, "num_cpus_per_actor": CPUS + 0.5},
        ["1 actors of 4.5 CPUs need 4.5 CPUs; the Ray cluster has 4"],
    ),
    "GPUs on a cluster without any": (
        {"num_actors": 1, "num_gpus_per_actor": 0.5},
        ["1 actors of 0.5 GPUs need 0.5 GPUs; the Ray cluster has 0"],
    ),
}


@pytest.mark.parametrize(("options", "words"), POOLS.values(), ids=POOLS.keys())
def test_a_pool_the_cluster_cannot_hold_is_refused_before_any_actor_starts(cluster, options, words):
    check(lambda: fed_ray.RayExecutor(**options), ValueError, words)
    assert fed_ray.free_cpus() == CPUS


JOINS = {
    "an address": {"address": "127.0.0.1:1"},
    "an address of a running cluster": {"address": "auto"},
    "init options": {"init_options": {"num_cpus": 2}},
}


@pytest.mark.parametrize("options", JOINS.values(), ids=JOINS.keys())
def test_another_cluster_is_refused_while_one_runs(cluster, options):
    check(
        lambda: fed_ray.RayExecutor(num_actors=1, **options),
        RuntimeError,
        [
            "Ray is initialized already",
            "pass neither address nor init_options, or call ray.shutdown() first",
        ],
    )
    assert fed_ray.free_cpus() == CPUS


def test_an_unknown_actor_option_is_refused_before_any_actor_starts(cluster):
    check(
        lambda: fed_ray.RayExecutor(num_actors=2, actor_options={"num_cpu": 1}),
        ValueError,
        ["Invalid option keyword num_cpu for actors", "num_cpus"],
    )
    assert fed_ray.free_cpus() == CPUS


def test_actors_that_cannot_start_in_time_fail_and_are_let_go(cluster):
    """An actor asking for a resource no node has waits for it; after `startup_timeout` the executor
    fails, naming what the cluster has free, and its pending actors are killed."""
    check(
        lambda: fed_ray.RayExecutor(
            num_actors=1, startup_timeout=1, actor_options={"resources": {"TPU": 1}}
        ),
        RuntimeError,
        ["did not start 1 actors of 1 CPUs and 0 GPUs within 1 s; its free resources are {"],
    )
    assert _wait_for_free_cpus(CPUS) == CPUS


def test_a_context_that_refuses_its_options_lets_its_actors_go(cluster):
    error = check(
        lambda: create_context("ray", num_actors=1, default_num_clients=-1),
        ValueError,
        ["default_num_clients must be an int >= 0, got -1."],
    )
    # Closed, not merely unreferenced: the error (kept, as a notebook keeps the last one) holds the
    # frames that built the executor.
    assert error.__traceback__ is not None
    assert _wait_for_free_cpus(CPUS) == CPUS


def test_a_closed_executor_refuses_calls_and_closes_again_quietly(cluster):
    executor = fed_ray.RayExecutor(num_actors=1)
    context = ExecutionContext(executor)
    with context_scope(context):
        assert mean([1.0, 2.0, 6.0]) == pytest.approx(3.0)
        check(
            lambda: mean(["a"]),
            TypeError,
            ["Calling computation mean of type ({float32}@CLIENTS -> float32@SERVER)", "given str"],
        )
        assert mean([4.0]) == pytest.approx(4.0)  # the refused call left the executor usable
        context.close()
        check(
            lambda: mean([1.0]),
            RuntimeError,
            ["This Ray executor is closed: create a new Ray context to run computations."],
        )
    context.close()
    executor.close()
    assert _wait_for_free_cpus(CPUS) == CPUS


def test_shutdown_twice_and_the_helpers_after_it(cluster):
    fed_ray.shutdown()
    fed_ray.shutdown()
    assert not ray.is_initialized()
    check(
        fed_ray.free_cpus,
        RuntimeError,
        ["free_cpus needs a Ray cluster", "call fed_ray.init() first"],
    )


def test_init_without_an_address_starts_a_cluster_despite_a_stale_address_file():
    # A cluster that died without cleaning up leaves Ray's address file behind; Ray's own default
    # would try to join it (and refuse the options of a new cluster).
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    import textwrap

    root = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        os.makedirs(os.path.join(root, "ray"))
        with open(os.path.join(root, "ray", "ray_current_cluster"), "w") as stale:
            stale.write("127.0.0.1:9")  # nothing listens there
        script = textwrap.dedent(
            """
            import ray
            import fed_ray
            assert fed_ray.init(num_cpus=1) is True
            print("cpus", int(ray.cluster_resources()["CPU"]))
            fed_ray.shutdown()
            """
        )
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = root
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "cpus 1" in result.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
