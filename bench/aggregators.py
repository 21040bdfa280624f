"""Seconds per round of weighted (or unweighted) FedAvg with each recommended aggregator, against the plain mean
in the same run, and the cost of the aggregation alone on the same model updates.

Workload: ../shared/bench/workload.py's linear model (784 -> 10) and CNN on ~120 examples per client, batches
of 20, one local epoch of SGD; the same client datasets and initial weights for every aggregator.

Aggregators (fed.learning's presets and fed.aggregators' factories):

    mean          MeanFactory (weighted) / UnweightedMeanFactory: the baseline
    robust        robust_aggregator(): adaptive zeroing and adaptive L2 clipping around the mean
    dp            dp_aggregator(noise_multiplier=0.5, clients_per_round=N): adaptive clipping, Gaussian
                  noise, zeroing (unweighted, so its baseline is the unweighted mean)
    compression   compression_aggregator(): 8-bit quantization of tensors above 20,000 elements
                  (the CNN's dense kernel), clipping, zeroing
    secure        secure_aggregator(): clipping and zeroing with secure sums, values quantized for the
                  secure sum
    median        CoordinateMedianFactory() (robust rule on the gathered updates)

For each, after an untimed first round (tracing and loading), the script alternates timed rounds of the
aggregator's process and the baseline's, and reports medians and their ratio. Then `aggregate` times the
aggregation process alone on fixed updates (N clients' model-shaped random values).

Run: .venv/bin/python bench/aggregators.py                   # linear and CNN, 10 clients (~4 min, 2 cores)
     .venv/bin/python bench/aggregators.py --model linear --clients 50 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import workload as load_workload  # noqa: E402

workload = load_workload("workload", "bench/aggregators.py")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed_aggregators as fa  # noqa: E402
import fed_learning as fl  # noqa: E402
from fed_types import StructType, TensorType  # noqa: E402

BATCH_SIZE = 20
SEED = 0
INPUT_SPEC = (tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int32))


def presets(clients: int) -> dict[str, tuple[Any, bool]]:
    """name -> (factory, weighted)."""
    return {
        "robust": (fl.robust_aggregator(), True),
        "dp": (fl.dp_aggregator(noise_multiplier=0.5, clients_per_round=clients), False),
        "compression": (fl.compression_aggregator(), True),
        "secure": (fl.secure_aggregator(), True),
        "median": (fa.CoordinateMedianFactory(), True),
    }


def model_fn_for(kind: str) -> Any:
    def model_fn() -> Any:
        keras.utils.set_random_seed(SEED)
        return fl.models.from_keras_model(
            workload.keras_model(keras, kind),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec=INPUT_SPEC,
        )

    return model_fn


def build(kind: str, factory: Any, weighted: bool) -> Any:
    algorithm = (
        fl.algorithms.build_weighted_fed_avg if weighted else fl.algorithms.build_unweighted_fed_avg
    )
    return algorithm(model_fn_for(kind), fl.optimizers.build_sgdm(0.1), model_aggregator=factory)


class Timed:
    """A process and its state; `round()` runs one round and returns its seconds."""

    def __init__(self, process: Any, data: list[tf.data.Dataset]):
        self.process, self.data = process, data
        self.state = process.initialize()
        self.round()  # tracing and loading, untimed

    def round(self) -> float:
        start = time.perf_counter()
        self.state = self.process.next(self.state, self.data).state
        return time.perf_counter() - start


def compare_rounds(kind: str, clients: int, rounds: int) -> None:
    data = [
        tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)
        for x, y in workload.client_arrays(clients, SEED)
    ]
    baselines = {
        True: Timed(build(kind, fa.MeanFactory(), True), data),
        False: Timed(build(kind, fa.UnweightedMeanFactory(), False), data),
    }
    print(f"\n{kind}, {clients} clients: seconds per FedAvg round (median of {rounds})")
    print(f"{'aggregator':<12} {'seconds':>8} {'baseline':>9} {'ratio':>6}")
    for name, (factory, weighted) in presets(clients).items():
        subject, baseline = Timed(build(kind, factory, weighted), data), baselines[weighted]
        mine, theirs = [], []
        for _ in range(rounds):
            mine.append(subject.round())
            theirs.append(baseline.round())
        a, b = statistics.median(mine), statistics.median(theirs)
        label = "unweighted mean" if not weighted else "mean"
        print(f"{name:<12} {a:8.3f} {b:9.3f} {a / b:6.2f}  (baseline: {label})")


def compare_aggregation(kind: str, clients: int, rounds: int) -> None:
    """The aggregation process alone, on fixed model-shaped updates."""
    model = workload.keras_model(keras, kind)
    shapes = [tuple(w.shape) for w in model.trainable_weights]
    update_type = StructType([(None, TensorType(np.float32, list(s))) for s in shapes])
    rng = np.random.default_rng(SEED)
    updates = [
        tuple(rng.normal(scale=0.01, size=s).astype(np.float32) for s in shapes)
        for _ in range(clients)
    ]
    weights = [np.float32(100.0)] * clients
    weight_type = TensorType(np.float32)

    def run(factory: Any, weighted: bool) -> tuple[Any, Any]:
        process = (
            factory.create(update_type, weight_type) if weighted else factory.create(update_type)
        )
        state = process.initialize()

        def step() -> float:
            nonlocal state
            start = time.perf_counter()
            arguments = (updates, weights) if weighted else (updates,)
            state = process.next(state, *arguments).state
            return time.perf_counter() - start

        step()
        return step, process

    print(f"\n{kind}, {clients} clients: seconds per aggregation alone (median of {rounds})")
    print(f"{'aggregator':<12} {'seconds':>8} {'baseline':>9} {'ratio':>6}")
    baselines = {
        True: run(fa.MeanFactory(), True)[0],
        False: run(fa.UnweightedMeanFactory(), False)[0],
    }
    for name, (factory, weighted) in presets(clients).items():
        step = run(factory, weighted)[0]
        mine, theirs = [], []
        for _ in range(rounds):
            mine.append(step())
            theirs.append(baselines[weighted]())
        a, b = statistics.median(mine), statistics.median(theirs)
        print(f"{name:<12} {a:8.4f} {b:9.4f} {a / b:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["linear", "cnn", "both"], default="both")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    kinds = ["linear", "cnn"] if arguments.model == "both" else [arguments.model]
    for kind in kinds:
        compare_rounds(kind, arguments.clients, arguments.rounds)
        compare_aggregation(kind, arguments.clients, arguments.rounds)


if __name__ == "__main__":
    main()
