"""Per-call overhead of fed-core's local executor, beside the same work done directly with numpy.

    python bench/core_overhead.py [--clients 1000] [--repeats 50]

Prints the time per call of (a) a federated_mean over N client scalars, (b) a federated_map of a trivial
"python" frontend function followed by a federated_sum, and the same work written directly in numpy in the
same run, with the ratio (fed time / direct time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fed_core as fc
from fed_core.testing import python_computation, register_python_frontend
from fed_types import CLIENTS, FederatedType


def _time_per_call(fn, repeats: int) -> float:
    fn()  # warm up: tracing, plugin loading, backend loading
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    register_python_frontend()  # the test frontend runs code stored in its leaves: registered on request

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def mean(values):
        return fc.federated_mean(values)

    @python_computation(np.float32, result_type=np.float32)
    def plus_one(x):
        return x + np.float32(1)

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def map_then_sum(values):
        return fc.federated_sum(fc.federated_map(plus_one, values))

    values = [np.float32(v) for v in np.random.default_rng(0).random(args.clients)]

    rows = [
        ("federated_mean", lambda: mean(values), lambda: np.mean(np.stack(values))),
        (
            "federated_map + federated_sum",
            lambda: map_then_sum(values),
            lambda: np.sum(np.stack([v + np.float32(1) for v in values])),
        ),
    ]
    print(f"fed-core local executor, {args.clients} clients, median of {args.repeats} calls")
    print(
        f"{'computation':32s} {'fed (ms)':>10s} {'direct (ms)':>12s} {'ratio':>8s} {'fed us/client':>14s}"
    )
    for name, fed_call, direct_call in rows:
        fed_time = _time_per_call(fed_call, args.repeats)
        direct_time = _time_per_call(direct_call, args.repeats)
        print(
            f"{name:32s} {fed_time * 1e3:10.3f} {direct_time * 1e3:12.3f} {fed_time / direct_time:8.1f} "
            f"{fed_time / args.clients * 1e6:14.2f}"
        )


if __name__ == "__main__":
    main()
