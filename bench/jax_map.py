"""Per-client cost of a `federated_map` of a JAX computation, which fed-jax runs as one vectorized call,
against a Python loop of jitted calls of the same function, in the same run.

    .venv/bin/python bench/jax_map.py [--clients 100,1000] [--repeats 20]

The work: one gradient step of a 784 -> 10 softmax model on a batch of 20 examples per client, then the
mean of the clients' models (FedAvg's client work and aggregation). "fed" is a federated computation
(`federated_map` of the JAX step over the clients, `federated_mean`); "loop" calls `jax.jit(step)` once per
client from Python and averages with numpy; "vmap" is JAX alone, `jax.vmap` of the step over arrays
already stacked, with the mean in numpy (no fed, no per-client Python). fed and loop start from the same
Python lists of arrays. The three are timed in turn, round after round, and the medians reported.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import fed_core as fc
import fed_jax
from fed_types import CLIENTS, SERVER, FederatedType, TensorType

MODEL = collections.OrderedDict(
    w=TensorType(np.float32, (784, 10)), b=TensorType(np.float32, (10,))
)
BATCH = collections.OrderedDict(x=TensorType(np.float32, (20, 784)), y=TensorType(np.int32, (20,)))


def loss(model, batch):
    logits = batch["x"] @ model["w"] + model["b"]
    return -jnp.mean(jnp.sum(jax.nn.one_hot(batch["y"], 10) * jax.nn.log_softmax(logits), axis=1))


def step(model, batch):
    grads = jax.grad(loss)(model, batch)
    return {k: model[k] - 0.1 * grads[k] for k in model}


def _median_times(fns, repeats: int) -> list[float]:
    """The median time of each function, timed in turn so that the machine's noise hits them alike."""
    for fn in fns:
        fn()  # warm up: tracing, loading, compiling for this number of clients
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,1000")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    fed_step = fed_jax.computation(step, MODEL, BATCH)

    @fc.federated_computation(FederatedType(MODEL, SERVER), FederatedType(BATCH, CLIENTS))
    def client_round(model, batches):
        return fc.federated_mean(
            fc.federated_map(fed_step, (fc.federated_broadcast(model), batches))
        )

    jitted = jax.jit(step)
    vmapped = jax.jit(jax.vmap(step, in_axes=(None, 0)))
    rng = np.random.default_rng(0)
    model = {"w": np.zeros((784, 10), np.float32), "b": np.zeros(10, np.float32)}
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, fed-jax {fed_jax.__version__}")
    print(
        f"{'clients':>8} {'fed (ms)':>9} {'loop (ms)':>10} {'vmap (ms)':>10} {'fed us/client':>14} "
        f"{'loop us/client':>15} {'loop/fed':>9} {'fed/vmap':>9}"
    )
    for n in [int(c) for c in args.clients.split(",")]:
        _measure(n, rng, model, client_round, jitted, vmapped, args.repeats)


def _measure(n, rng, model, client_round, jitted, vmapped, repeats: int) -> None:
    batches = [
        {
            "x": rng.random((20, 784), dtype=np.float32),
            "y": rng.integers(0, 10, 20).astype(np.int32),
        }
        for _ in range(n)
    ]
    stacked = {k: np.stack([b[k] for b in batches]) for k in ("x", "y")}

    def fed():
        return client_round(model, batches)

    def loop():
        outs = [jitted(model, b) for b in batches]
        return {k: np.mean([np.asarray(o[k]) for o in outs], axis=0) for k in model}

    def vmap_only():
        return {k: np.asarray(v).mean(axis=0) for k, v in vmapped(model, stacked).items()}

    fed_result, loop_result = fed(), loop()
    for k in model:
        np.testing.assert_allclose(fed_result[k], loop_result[k], rtol=1e-4, atol=1e-6)
    fed_s, loop_s, vmap_s = _median_times([fed, loop, vmap_only], repeats)
    print(
        f"{n:>8} {fed_s * 1e3:>9.2f} {loop_s * 1e3:>10.2f} {vmap_s * 1e3:>10.2f} "
        f"{fed_s / n * 1e6:>14.1f} {loop_s / n * 1e6:>15.1f} {loop_s / fed_s:>9.2f} "
        f"{fed_s / vmap_s:>9.2f}"
    )


if __name__ == "__main__":
    main()
