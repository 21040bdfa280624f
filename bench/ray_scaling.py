"""Seconds per FedAvg round on the local executor and on the Ray executor with 1 and 2 actors, same run.

Workload: pfl-research's CIFAR-10 setup (../shared/bench/workload_cifar.py beside the repository; 50
images of 32x32x3 per client, one local epoch, batch 10, client SGD, server SGD 1.0):

    linear   Dense(10) on the 3,072 flat pixels, 1,000 clients per round (the round is overhead)
    cnn      pfl-research's CNN, 50 clients per round (the round is compute)

Each configuration trains the same clients from the same initial weights on each executor: a first
round (loading, tracing, and for Ray sending the clients' data to the actors) untimed, then timed
rounds whose median is reported, with the largest difference of the final weights from the local
executor's (the CNN's dropout draws from each process's own random generator, so its runs differ more
than by the order of float additions). The Ray cluster is started here on this machine, with as many logical
CPUs as actors, so on a small machine the actors share its cores with the driver.

From the two Ray timings it fits t(a) = f + c * n / a (f: the per-round fixed cost, c: the cost of one
client, n clients, a actors) and projects a round for 10, 100 and 1,000 workers, adding the driver's
cost per actor per round (measured: what one more actor costs the driver to submit and collect),
s * a. The projection assumes the workers are as fast as this machine's cores and the network as fast
as its loopback.

Run: .venv/bin/python bench/ray_scaling.py                         # both models (~10 minutes on 2 cores)
     .venv/bin/python bench/ray_scaling.py --only linear --rounds 3 --clients 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import workload as load_workload  # noqa: E402

workload = load_workload("workload_cifar", "bench/ray_scaling.py")

import numpy as np  # noqa: E402
import ray  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed as tff  # noqa: E402
import fed_ray  # noqa: E402
from fed_core.execution import context_scope, create_context  # noqa: E402

CONFIGS = {"linear": 1000, "cnn": 50}


def build(kind: str, datasets: list[tf.data.Dataset]):
    spec = datasets[0].element_spec

    def model_fn():
        return tff.learning.models.from_keras_model(
            workload.keras_model(tf.keras, kind),
            input_spec=spec,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
        )

    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(workload.client_lr(kind)),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(workload.SERVER_LR),
    )


def run(process, context, datasets, rounds: int) -> tuple[list[float], float, object]:
    with context_scope(context):
        tf.keras.utils.set_random_seed(workload.MODEL_SEED)
        state = process.initialize()
        times = []
        for _ in range(rounds + 1):
            start = time.perf_counter()
            output = process.next(state, datasets)
            times.append(time.perf_counter() - start)
            state = output.state
    return times[1:], times[0], process.get_model_weights(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="linear,cnn")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per executor")
    parser.add_argument("--clients", type=int, help="clients per round (default: 1000 / 50)")
    args = parser.parse_args()
    fed_ray.init(num_cpus=2, object_store_memory=2 << 30)
    print(f"{os.cpu_count()} cores; TensorFlow {tf.__version__}; Ray {ray.__version__}")
    print(
        f"\n{'model':<7}{'clients':>8}  {'executor':<14}{'first round':>12}{'s/round':>10}"
        f"{'vs local':>10}{'bytes back/round':>18}{'weight gap':>12}"
    )
    fits = {}
    for kind in [k for k in args.only.split(",") if k]:
        n = args.clients or CONFIGS[kind]
        arrays = workload.client_arrays(n, flat=kind == "linear")
        datasets = [
            tf.data.Dataset.from_tensor_slices((x, y)).batch(workload.BATCH_SIZE) for x, y in arrays
        ]
        process = build(kind, datasets)
        results = {}
        contexts = [("local", lambda: create_context("local"))] + [
            (f"ray, {a} actor{'s' * (a > 1)}", lambda a=a: create_context("ray", num_actors=a))
            for a in (1, 2)
        ]
        reference = None
        for name, make in contexts:
            context = make()
            try:
                executor = context.executor
                before = dict(getattr(executor, "stats", {}))
                times, first, weights = run(process, context, datasets, args.rounds)
                stats = getattr(executor, "stats", None)
                back = calls = float("nan")
                if stats is not None:
                    back = (stats["bytes_returned"] - before.get("bytes_returned", 0)) / (
                        args.rounds + 1
                    )
                    calls = (stats["calls"] - before.get("calls", 0)) / (args.rounds + 1)
                    calls_per_actor = calls / executor.num_actors
            finally:
                context.close()
            median = statistics.median(times)
            results[name] = median
            if reference is None:
                reference = weights
            gap = max(
                float(np.max(np.abs(a - b))) for a, b in zip(reference.trainable, weights.trainable)
            )
            print(
                f"{kind:<7}{n:>8}  {name:<14}{first:>11.2f}s{median:>9.3f}s"
                f"{median / results['local']:>9.2f}x{back:>18,.0f}{gap:>12.1e}"
            )
        t1, t2 = results["ray, 1 actor"], results["ray, 2 actors"]
        per_client = 2 * (t1 - t2) / n
        fixed = max(0.0, 2 * t2 - t1)
        fits[kind] = (n, per_client, fixed, calls_per_actor)
    per_actor = driver_cost_per_actor()
    print(
        f"\nDriver cost per actor per round (submit and collect one call, measured): "
        f"{per_actor * 1e3:.2f} ms x calls per round"
    )
    print(
        "\nProjection t(a) = f + c*n/a + s*a (s = calls per actor per round x the driver's cost per call):"
    )
    print(
        f"{'model':<7}{'clients':>8}{'c (s/client)':>14}{'f (s)':>8}{'calls':>7}"
        + "".join(f"{f'{w} workers':>14}" for w in (10, 100, 1000))
    )
    for kind, (n, c, f, calls) in fits.items():
        cells = "".join(f"{f + c * n / w + calls * per_actor * w:>13.3f}s" for w in (10, 100, 1000))
        print(f"{kind:<7}{n:>8}{c:>14.5f}{f:>8.3f}{calls:>7.0f}{cells}")
    fed_ray.shutdown()


def driver_cost_per_actor() -> float:
    """The driver's time to submit one call to an actor and collect its small reply, with 2 actors."""
    import ray

    context = create_context("ray", num_actors=2)
    try:
        actors = context.executor._actors
        ray.get([a.ping.remote() for a in actors])
        start = time.perf_counter()
        for _ in range(100):
            ray.get([a.ping.remote() for a in actors])
        return (time.perf_counter() - start) / 200
    finally:
        context.close()


if __name__ == "__main__":
    main()
