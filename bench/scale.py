"""Many clients per round: milliseconds per client of a FedAvg round, and resident memory over rounds.

The workload: a linear model (784 -> 10) trained by weighted FedAvg on clients of 20 examples each
(one batch of 20, client SGD 0.1), the clients' data in a `TestClientData` preprocessed with
`.batch(20)`, and each round's datasets made as TFF's tutorials make them,
`[data.create_tf_dataset_for_client(c) for c in cohort]`.

`rounds` mode (the default) runs rounds of `--clients` clients (10,000) three ways in one process:

    fed            fed as it runs by default: each client's dataset a lazy one, which the looped
                   graph call that trains all clients (split over the devices) makes inside itself
                   from the data set's arrays (none is made in Python), and, the data being in
                   memory and the clients the same every round, whose elements the backend reads
                   whole once and hands the client work (in the warm-up rounds)
    per-client     the same process with the backend's map strategy "per_client" (one graph call per
                   client, on the thread pool), and each dataset built op by op with tf.data
                   (`tf.data.Dataset.from_tensor_slices(arrays).batch(20)`): the baseline
    arithmetic     one vectorized graph call that computes every client's step on stacked arrays:
                   what the round's arithmetic costs on this machine, a floor no dataset-based round
                   reaches

and prints seconds per round, milliseconds per client (data preparation and the round apart), the
ratio of the baseline to fed, and the peak resident memory.

`memory` mode runs `--rounds` rounds (1,000) of `--clients` clients (1,000) and prints resident memory
every `--every` rounds (100), so that growth over a long simulation shows.

    python bench/scale.py                                  # 10,000 clients per round (~3 minutes)
    python bench/scale.py --clients 2000 --rounds 3
    python bench/scale.py --clients 2000 --strategy vectorized   # and fed's vectorized client work
    python bench/scale.py memory --clients 1000 --rounds 1000 --every 100   # ~15 minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _shared import peak_rss_mb, rss_mb  # noqa: E402

import fed_learning as fl  # noqa: E402
import fed_tensorflow  # noqa: E402
from fed_datasets import TestClientData  # noqa: E402

EXAMPLES = 20
BATCH = 20
FEATURES = 784
CLASSES = 10
INPUT_SPEC = (tf.TensorSpec([None, FEATURES], tf.float32), tf.TensorSpec([None], tf.int32))


def client_data(num_clients: int) -> tuple[TestClientData, dict[str, tuple[np.ndarray, ...]]]:
    rng = np.random.default_rng(0)
    arrays = {
        f"client_{k:05d}": (
            rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32),
            rng.integers(0, CLASSES, size=EXAMPLES).astype(np.int32),
        )
        for k in range(num_clients)
    }
    return TestClientData(arrays), arrays


def build_process() -> Any:
    def model_fn() -> Any:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(CLASSES)])
        return fl.models.from_keras_model(
            model,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec=INPUT_SPEC,
        )

    return fl.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=fl.optimizers.build_sgdm(0.1),
        server_optimizer_fn=fl.optimizers.build_sgdm(1.0),
    )


def batched(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.batch(BATCH)


def arithmetic_floor(arrays: dict[str, tuple[np.ndarray, ...]], repeats: int) -> float:
    """Seconds of one vectorized call doing every client's SGD step and delta on stacked arrays."""
    x = tf.constant(np.stack([a[0] for a in arrays.values()]))
    y = tf.constant(np.stack([a[1] for a in arrays.values()]))
    kernel, bias = tf.zeros([FEATURES, CLASSES]), tf.zeros([CLASSES])

    @tf.function
    def step(kernel: tf.Tensor, bias: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> Any:
        def one(client: tuple[tf.Tensor, tf.Tensor]) -> Any:
            features, labels = client
            with tf.GradientTape() as tape:
                tape.watch([kernel, bias])
                logits = features @ kernel + bias
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                )
            grads = tape.gradient(loss, [kernel, bias])
            return [-0.1 * g for g in grads], tf.cast(tf.shape(labels)[0], tf.float32)

        deltas, weights = tf.vectorized_map(one, (x, y))
        total = tf.reduce_sum(weights)
        return [
            tf.reduce_sum(d * tf.reshape(weights, [-1] + [1] * (len(d.shape) - 1)), 0) / total
            for d in deltas
        ]

    step(kernel, bias, x, y)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(kernel, bias, x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_rounds(
    process: Any, make_datasets: Any, rounds: int, warmup: int = 1
) -> tuple[float, float]:
    """Median seconds of making a round's datasets and of running it (after `warmup` untimed
    rounds)."""
    state = process.initialize()
    for _ in range(warmup):
        state = process.next(state, make_datasets()).state
    data_times, round_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        datasets = make_datasets()
        data_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        state = process.next(state, datasets).state
        round_times.append(time.perf_counter() - start)
        del datasets
    return statistics.median(data_times), statistics.median(round_times)


def run_rounds(num_clients: int, rounds: int, strategy: str | None) -> None:
    data, arrays = client_data(num_clients)
    preprocessed = data.preprocess(batched)
    ids = data.client_ids
    process = build_process()

    def fed_datasets() -> list[tf.data.Dataset]:
        return [preprocessed.create_tf_dataset_for_client(c) for c in ids]

    def tf_data_datasets() -> list[tf.data.Dataset]:
        return [batched(tf.data.Dataset.from_tensor_slices(arrays[c])) for c in ids]

    print(
        f"{num_clients} clients per round, {EXAMPLES} examples each (one batch), linear "
        f"{FEATURES} -> {CLASSES}; {rounds} timed rounds, medians; {os.cpu_count()} CPUs"
    )
    rows = []
    fed_tensorflow.configure(map_strategy="auto")
    # "auto" times the ways clients can run on its first maps (past those that trace), then keeps
    # the fastest.
    rows.append(("fed", *timed_rounds(process, fed_datasets, rounds, warmup=5)))
    fed_peak = peak_rss_mb()
    if strategy is not None:
        fed_tensorflow.configure(map_strategy=strategy)
        extra = timed_rounds(build_process(), fed_datasets, rounds)
    fed_tensorflow.configure(map_strategy="per_client")
    rows.append(("per-client", *timed_rounds(process, tf_data_datasets, rounds)))
    fed_tensorflow.configure()
    floor = arithmetic_floor(arrays, rounds)

    print(f"{'':12} {'data s':>8} {'round s':>8} {'data ms/client':>15} {'round ms/client':>16}")
    for name, data_s, round_s in rows:
        print(
            f"{name:12} {data_s:8.3f} {round_s:8.3f} {data_s / num_clients * 1e3:15.4f} "
            f"{round_s / num_clients * 1e3:16.4f}"
        )
    print(f"{'arithmetic':12} {'':8} {floor:8.3f} {'':15} {floor / num_clients * 1e3:16.4f}")
    (_, fed_data, fed_round), (_, base_data, base_round) = rows
    if strategy is not None:
        data_s, round_s = extra
        print(
            f"fed with map_strategy={strategy!r}: data {data_s:.3f} s, round {round_s:.3f} s "
            f"({round_s / num_clients * 1e3:.4f} ms/client; {round_s / fed_round:.2f}x fed's round)"
        )
    print(
        f"per-client / fed: round {base_round / fed_round:.2f}x, data {base_data / fed_data:.2f}x, "
        f"both {(base_data + base_round) / (fed_data + fed_round):.2f}x; fed's round is "
        f"{fed_round / floor:.0f}x its arithmetic"
    )
    print(f"peak resident memory after fed's rounds: {fed_peak:.0f} MB")


def run_memory(num_clients: int, rounds: int, every: int) -> None:
    data, _ = client_data(num_clients)
    preprocessed = data.preprocess(batched)
    ids = data.client_ids
    process = build_process()
    state = process.initialize()
    print(f"{num_clients} clients per round, {rounds} rounds; resident memory every {every} rounds")
    print(f"{'round':>6} {'RSS MB':>8} {'s/round':>8}")
    print(f"{0:6d} {rss_mb():8.0f} {'':>8}")
    start = time.perf_counter()
    samples = []
    for round_num in range(1, rounds + 1):
        datasets = [preprocessed.create_tf_dataset_for_client(c) for c in ids]
        state = process.next(state, datasets).state
        del datasets
        if round_num % every == 0:
            elapsed = (time.perf_counter() - start) / every
            samples.append(rss_mb())
            print(f"{round_num:6d} {samples[-1]:8.0f} {elapsed:8.3f}", flush=True)
            start = time.perf_counter()
    if len(samples) >= 2:
        print(
            f"growth from round {every} to round {rounds}: {samples[-1] - samples[0]:+.0f} MB "
            f"({(samples[-1] - samples[0]) / (rounds - every) * 1e3:+.1f} kB per round)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", choices=["rounds", "memory"], default="rounds")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument(
        "--strategy",
        choices=["vectorized", "looped", "per_client"],
        default=None,
        help="also time fed with this map strategy (rounds mode)",
    )
    args = parser.parse_args()
    if args.mode == "rounds":
        run_rounds(args.clients or 10_000, args.rounds or 3, args.strategy)
    else:
        run_memory(args.clients or 1_000, args.rounds or 1_000, args.every)


if __name__ == "__main__":
    main()
