"""Time to accuracy with realistic clients: synchronous FedAvg with over-selection and a deadline against
FedBuff, in simulated time (and wall-clock time), on the digits data that ships with fed-datasets.

The data: 1,797 8x8 digits dealt to 50 clients with Dirichlet(0.5) label skew; each client keeps a fifth
of its images for the test set, and accuracy is measured on all of them. The model: a linear classifier
(64 -> 10), trained by SGD with learning rate 0.1 over batches of 16, one local epoch per client.

The population (fed.simulation.ClientPopulation.sample, seed 0): seconds per example lognormal with
median 0.05 s and sigma 1.0 (a long tail of slow devices), 2 s of network latency, a 10% chance per
training of dropping out; every client online.

    fedavg-sync   fed.learning.algorithms.build_weighted_fed_avg in SynchronousSimulation rounds: a cohort
                  of 10, 30% over-selection (13 selected), a deadline of 5 s; the round closes at the
                  10th report or the deadline
    fedbuff       fed.learning.algorithms.build_fedbuff in BufferedAsynchronousSimulation: 13 clients
                  training at once, a buffer of 10 updates, staleness weighted by 1/sqrt(1 + s)

Both use SGD with learning rate 1.0 on the server. Each runs from the same initial model until the test
accuracy reaches --target (checked after every round or server step), for --seeds simulation seeds;
the table shows, per algorithm, the median over seeds of the simulated and wall-clock seconds to the
target and of the server steps and client updates it took, and the ratio of FedAvg's simulated time to
FedBuff's (above 1: FedBuff gets there sooner).

Run: .venv/bin/python bench/time_to_accuracy.py [--target 0.8] [--seeds 3]   (~1 minute on 2 cores)
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed  # noqa: E402

NUM_CLIENTS = 50
BATCH_SIZE = 16
COHORT = 10
OVER_SELECTION = 0.3
DEADLINE = 5.0
BUFFER = 10
CONCURRENCY = math.ceil(COHORT * (1 + OVER_SELECTION))
MAX_STEPS = 400
INPUT_SPEC = (tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32))


def flat(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda e: (tf.reshape(e["pixels"], [64]), e["label"])).batch(BATCH_SIZE)


def model_fn() -> Any:
    keras.utils.set_random_seed(0)
    return fed.learning.models.from_keras_model(
        keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        INPUT_SPEC,
    )


class Result(NamedTuple):
    reached: bool
    simulated_seconds: float
    wall_seconds: float
    server_steps: int
    client_updates: int
    accuracy: float


def run_to_target(
    step: Callable[[], tuple[dict[str, Any], Any]], accuracy: Callable[[Any], float], target: float
) -> Result:
    """Calls `step()` (one round or server step: its measurements and the new model weights) until the
    accuracy of the weights reaches `target` or MAX_STEPS pass."""
    started = time.perf_counter()
    steps = updates = 0
    value = 0.0
    measurements: dict[str, Any] = {}
    while steps < MAX_STEPS and value < target:
        measurements, weights = step()
        steps += 1
        updates += measurements.get("reported", measurements.get("updates_received", 0))
        value = accuracy(weights)
    return Result(
        value >= target,
        measurements["simulated_seconds"],
        time.perf_counter() - started,
        steps,
        updates,
        value,
    )


def stepper(
    advance: Callable[[Any], tuple[Any, dict[str, Any]]],
    get_model_weights: Callable[[Any], Any],
    state: Any,
) -> Callable[[], tuple[dict[str, Any], Any]]:
    """A `step()` for `run_to_target` that advances `state` by `advance(state) -> (state, metrics)`."""
    current = [state]

    def step() -> tuple[dict[str, Any], Any]:
        current[0], metrics = advance(current[0])
        return metrics, get_model_weights(current[0])

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.8, help="test accuracy to reach")
    parser.add_argument("--seeds", type=int, default=3, help="simulation seeds to run")
    args = parser.parse_args()

    train, test = fed.simulation.datasets.digits.load_data(num_clients=NUM_CLIENTS, seed=0)
    train = train.preprocess(flat)
    x, y = next(iter(flat(test.create_tf_dataset_from_all_clients()).unbatch().batch(10_000)))
    x, y = x.numpy(), y.numpy()

    def accuracy(weights: Any) -> float:
        kernel, bias = (np.asarray(w) for w in weights.trainable)
        return float(np.mean(np.argmax(x @ kernel + bias, axis=1) == y))

    population = fed.simulation.ClientPopulation.sample(
        train.client_ids,
        seed=0,
        speed_mu=math.log(0.05),
        speed_sigma=1.0,
        dropout_probability=0.1,
        network_latency=2.0,
    )
    client_sgd = fed.learning.optimizers.build_sgdm(0.1)
    fed_avg = fed.learning.algorithms.build_weighted_fed_avg(model_fn, client_sgd)
    fedbuff = fed.learning.algorithms.build_fedbuff(
        model_fn, client_sgd, buffer_size=BUFFER, max_concurrency=CONCURRENCY
    )
    print(
        f"digits, {NUM_CLIENTS} clients; target test accuracy {args.target}; "
        f"{args.seeds} seeds; initial accuracy "
        f"{accuracy(fed_avg.get_model_weights(fed_avg.initialize())):.3f}"
    )

    results: dict[str, list[Result]] = {"fedavg-sync": [], "fedbuff": []}
    for seed in range(args.seeds):
        sync = fed.simulation.SynchronousSimulation(
            fed_avg,
            population,
            train,
            cohort_size=COHORT,
            over_selection=OVER_SELECTION,
            deadline=DEADLINE,
            seed=seed,
        )
        sync_step = stepper(sync.next, fed_avg.get_model_weights, fed_avg.initialize())
        results["fedavg-sync"].append(run_to_target(sync_step, accuracy, args.target))

        buffered = fed.simulation.BufferedAsynchronousSimulation(
            fedbuff, population, train, seed=seed
        )
        buff_step = stepper(
            functools.partial(buffered.run, model_updates=1),
            fedbuff.get_model_weights,
            fedbuff.initialize(),
        )
        results["fedbuff"].append(run_to_target(buff_step, accuracy, args.target))

    header = (
        f"{'algorithm':<13} {'reached':>8} {'sim s':>9} {'wall s':>8} {'steps':>6} "
        f"{'updates':>8} {'accuracy':>9}"
    )
    print(header)
    print("-" * len(header))
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(r.simulated_seconds for r in runs)
        print(
            f"{name:<13} {sum(r.reached for r in runs):>5}/{len(runs):<2} "
            f"{medians[name]:>9.1f} "
            f"{statistics.median(r.wall_seconds for r in runs):>8.2f} "
            f"{statistics.median(r.server_steps for r in runs):>6.0f} "
            f"{statistics.median(r.client_updates for r in runs):>8.0f} "
            f"{statistics.median(r.accuracy for r in runs):>9.3f}"
        )
    if all(r.reached for runs in results.values() for r in runs):
        ratio = medians["fedavg-sync"] / medians["fedbuff"]
        print(f"simulated time to {args.target}: FedAvg (sync) / FedBuff = {ratio:.2f}x")
    else:
        print(f"not every run reached {args.target} within {MAX_STEPS} steps: no ratio")


if __name__ == "__main__":
    main()
