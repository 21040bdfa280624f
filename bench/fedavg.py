"""Seconds per round of weighted FedAvg in fed, against a hand-written TensorFlow FedAvg loop in the same run.

Configurations (data and models from ../shared/bench/workload.py beside the repository; ~120 examples
per client, batches
of 20, one local epoch of SGD with learning rate 0.1, server learning rate 1.0):

    linear-10, linear-100, linear-1000   a 784 -> 10 linear model, 10 / 100 / 1,000 clients per round
    cnn-10                               two conv layers on 28x28x1 inputs, 10 clients per round

Each configuration runs, on the same client datasets and from the same initial weights:

    fed           fed.learning's build_weighted_fed_avg, one `process.next` per round
    hand-written  a tf.function that trains one client for one epoch (`for x, y in dataset:`, SGD on
                  batches of 20) and returns its model delta and example count, called once per client;
                  the example-weighted mean of the deltas is then applied to the server weights
    hand, iter()  the same loop written `for x, y in iter(dataset):`, which TensorFlow runs as a while
                  loop over an iterator instead of a `Dataset.reduce` (see the note printed below the table)

The first round of each loop (tracing and loading) is untimed; after it the script prints how far fed's
new server weights are from the hand-written loop's, then alternates timed rounds of the loops and
reports medians. TFF 0.87's figures, measured on a 2-core machine of this kind, are printed for
reference (not run here).

Run: .venv/bin/python bench/fedavg.py                    # every configuration (~6 minutes on 2 cores)
     .venv/bin/python bench/fedavg.py --only linear-10,cnn-10 --rounds 3
     .venv/bin/python bench/fedavg.py --only= --profile  # only the profile of fed's linear-100 round
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import workload as load_workload  # noqa: E402

workload = load_workload("workload", "bench/fedavg.py")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed_core as fc  # noqa: E402
import fed_learning as fl  # noqa: E402

BATCH_SIZE = 20
CLIENT_LEARNING_RATE = 0.1
SEED = 0
INPUT_SPEC = (tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int32))


class Config(NamedTuple):
    model: str
    clients: int
    rounds: int  # timed rounds by default
    tff_seconds: tuple[float, float]  # TFF 0.87 on a 2-core machine: (low, high) seconds per round


CONFIGS = {
    "linear-10": Config("linear", 10, 7, (0.29, 0.29)),
    "linear-100": Config("linear", 100, 5, (1.8, 1.8)),
    "linear-1000": Config("linear", 1000, 3, (23.0, 23.0)),
    "cnn-10": Config("cnn", 10, 5, (1.6, 2.2)),
}
PROFILED = "linear-100"


def client_datasets(num_clients: int) -> list[tf.data.Dataset]:
    return [
        tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)
        for x, y in workload.client_arrays(num_clients, SEED)
    ]


def build_fed_process(kind: str) -> Any:
    def model_fn() -> Any:
        keras.utils.set_random_seed(SEED)
        return fl.models.from_keras_model(
            workload.keras_model(keras, kind),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec=INPUT_SPEC,
            metrics=[keras.metrics.SparseCategoricalAccuracy()],
        )

    return fl.algorithms.build_weighted_fed_avg(
        model_fn, fl.optimizers.build_sgdm(CLIENT_LEARNING_RATE)
    )


class HandWrittenFedAvg:
    """FedAvg as a researcher writes it in plain TensorFlow: a Keras model's variables are set to the server
    weights, trained over one client's dataset with SGD, and the delta is returned; the server applies the
    example-weighted mean of the clients' deltas. With `use_iterator` the loop runs over `iter(dataset)`."""

    def __init__(self, kind: str, use_iterator: bool = False):
        model = workload.keras_model(keras, kind)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        variables = model.trainable_variables

        @tf.function
        def client_update(server_weights: list[tf.Tensor], dataset: tf.data.Dataset) -> Any:
            for variable, weight in zip(variables, server_weights):
                variable.assign(weight)
            num_examples = tf.constant(0)
            for x, y in iter(dataset) if use_iterator else dataset:
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                gradients = tape.gradient(loss, variables)
                for variable, gradient in zip(variables, gradients):
                    variable.assign_sub(CLIENT_LEARNING_RATE * gradient)
                num_examples += tf.shape(y)[0]
            return [
                weight - variable for variable, weight in zip(variables, server_weights)
            ], num_examples

        self._client_update = client_update

    def round(
        self, server_weights: list[np.ndarray], datasets: list[tf.data.Dataset]
    ) -> list[np.ndarray]:
        delta_sum = [np.zeros_like(w) for w in server_weights]
        total_examples = 0
        for dataset in datasets:
            delta, num_examples = self._client_update(server_weights, dataset)
            n = int(num_examples)
            for accumulated, d in zip(delta_sum, delta):
                accumulated += n * d.numpy()
            total_examples += n
        return [w - s / total_examples for w, s in zip(server_weights, delta_sum)]


def max_abs_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True)
    )


class Row(NamedTuple):
    name: str
    clients: int
    examples: int
    rounds: int
    fed: float
    hand: float
    hand_iter: float
    tff_seconds: tuple[float, float]


def run_config(name: str, config: Config, timed_rounds: int) -> Row:
    datasets = client_datasets(config.clients)
    process = build_fed_process(config.model)
    state = process.initialize()
    initial = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    loops = {
        "hand": HandWrittenFedAvg(config.model),
        "hand_iter": HandWrittenFedAvg(config.model, use_iterator=True),
    }

    # The first round of every loop traces and loads; it is untimed and checks that the loops agree.
    output = process.next(state, datasets)
    state = output.state
    fed_weights = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    examples = int(output.metrics["client_work"]["train"]["num_examples"])
    server = {key: loop.round(initial, datasets) for key, loop in loops.items()}
    differences = {key: max_abs_difference(fed_weights, weights) for key, weights in server.items()}
    moved = max_abs_difference(fed_weights, initial)
    disagree = "  <- the loops disagree" if max(differences.values()) > 1e-4 * moved else ""
    print(
        f"{name}: {config.clients} clients, {examples} examples per round; after one round from the same "
        f"weights (which moved by up to {moved:.2e}), max |fed - hand-written| = {differences['hand']:.2e}, "
        f"max |fed - hand, iter()| = {differences['hand_iter']:.2e}{disagree}; timing {timed_rounds} rounds",
        flush=True,
    )

    def fed_round() -> None:
        nonlocal state
        state = process.next(state, datasets).state

    def hand_round(key: str) -> Callable[[], None]:
        def run() -> None:
            server[key] = loops[key].round(server[key], datasets)

        return run

    steps = {"fed": fed_round, "hand": hand_round("hand"), "hand_iter": hand_round("hand_iter")}
    times: dict[str, list[float]] = {key: [] for key in steps}
    # Rounds alternate between the loops so that load from other processes falls on all of them alike.
    for _ in range(timed_rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(values) for key, values in times.items()}
    return Row(
        name,
        config.clients,
        examples,
        timed_rounds,
        medians["fed"],
        medians["hand"],
        medians["hand_iter"],
        config.tff_seconds,
    )


def tff_text(seconds: tuple[float, float]) -> str:
    low, high = seconds
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'config':<12} {'clients':>7} {'examples':>8} {'rounds':>6} | {'fed s/rnd':>9} {'rnd/s':>6} | "
        f"{'hand s/rnd':>10} {'fed/hand':>8} | {'iter() s/rnd':>12} {'fed/iter()':>10} | "
        f"{'TFF s/rnd':>9} {'fed vs TFF':>10}"
    )
    print()
    print("Weighted FedAvg, seconds per round (median of the timed rounds)")
    print(header)
    print("-" * len(header))
    for r in rows:
        low, high = r.tff_seconds
        speedup = f"{low / r.fed:.2f}x" if low == high else f"{low / r.fed:.2f}-{high / r.fed:.2f}x"
        print(
            f"{r.name:<12} {r.clients:>7} {r.examples:>8} {r.rounds:>6} | {r.fed:>9.3f} {1 / r.fed:>6.2f} | "
            f"{r.hand:>10.3f} {r.fed / r.hand:>8.2f} | {r.hand_iter:>12.3f} {r.fed / r.hand_iter:>10.2f} | "
            f"{tff_text(r.tff_seconds):>9} {speedup:>10}"
        )
    print(
        "fed/hand > 1: fed is slower than the hand-written loop. 'fed vs TFF' is TFF 0.87's seconds per round "
        "(measured on a 2-core machine of this kind, not run here) over fed's: > 1 means fed is faster.\n"
        "The hand-written loop's `for x, y in dataset:` becomes a Dataset.reduce, which TensorFlow sets up "
        "anew on every call (a fixed cost growing with the loop body); iter() runs the same loop over an "
        "iterator."
    )


def profile_fed_round(top: int) -> None:
    """cProfile of fed's linear-100 round. The default context runs client work on a thread pool, which
    cProfile (main thread only) does not see, so the profiled rounds run in a one-thread local context."""
    config = CONFIGS[PROFILED]
    datasets = client_datasets(config.clients)
    process = build_fed_process(config.model)
    state = process.initialize()
    one_thread = fc.execution.create_context("local", max_concurrency=1)
    with fc.execution.context_scope(one_thread):
        state = process.next(state, datasets).state  # loads the computations in this context
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        state = process.next(state, datasets).state
        profiler.disable()
        seconds = time.perf_counter() - start
    print()
    print(
        f"Profile of one fed round, {PROFILED}, client work on the main thread: {seconds:.3f} s (profiled)"
    )
    stats = pstats.Stats(profiler, stream=sys.stdout)
    in_tensorflow = sum(
        entry[3]
        for (_, _, function), entry in stats.stats.items()
        if "TFE_Py_Execute" in function  # type: ignore[attr-defined]
    )
    print(
        f"TensorFlow running the graphs (TFE_Py_Execute): {in_tensorflow:.3f} s "
        f"({in_tensorflow / seconds:.0%}, {in_tensorflow / config.clients * 1e3:.2f} ms per client); "
        f"the rest, {seconds - in_tensorflow:.3f} s ({(seconds - in_tensorflow) / config.clients * 1e3:.2f} ms "
        f"per client), is Python: fed's executor and backend, and TensorFlow's function-call wrappers"
    )
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(CONFIGS),
        help=f"comma-separated configurations to run, of {', '.join(CONFIGS)} (default: all; empty: none)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="timed rounds per loop (default: 7, 5, 3 and 5 as listed)",
    )
    parser.add_argument(
        "--profile", action="store_true", help=f"also profile fed's {PROFILED} round with cProfile"
    )
    parser.add_argument(
        "--profile-lines", type=int, default=25, help="lines of the profile to print (default 25)"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {list(CONFIGS)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")

    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, fed-learning {fl.__version__}, {os.cpu_count()} CPUs"
    )
    rows = []
    for name in names:
        config = CONFIGS[name]
        rows.append(run_config(name, config, args.rounds or config.rounds))
    if rows:
        print_table(rows)
    if args.profile:
        profile_fed_round(args.profile_lines)


if __name__ == "__main__":
    main()
