"""Memory of a long training program: resident memory every 100 rounds of `run_training_process` on a
small FedAvg process, saving program state every 10 rounds and releasing metrics to a CSV file.

    .venv/bin/python bench/program_memory.py [--rounds 1000]

Prints the resident set size (RSS) every 100 rounds and its ratio to the RSS after the first 100 rounds,
measured in the same run (flat memory: ratios near 1.0).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed  # noqa: E402

INPUT_SPEC = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def model_fn():
    return fed.learning.models.from_keras_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        INPUT_SPEC,
    )


class RssReleaseManager:
    """Records the RSS every `every` rounds (a release manager, so it sees each round end)."""

    def __init__(self, every: int):
        self.every = every
        self.samples: list[tuple[int, float, float]] = []
        self._start = time.perf_counter()

    def release(self, value, key):
        if key and key % self.every == 0:
            self.samples.append((key, rss_mib(), time.perf_counter() - self._start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    if args.rounds < 200:
        parser.error(
            "--rounds must be at least 200: RSS is sampled every 100 rounds, against round 100"
        )
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    clients = []
    for _ in range(10):
        x = rng.normal(size=(12, 4)).astype(np.float32)
        clients.append(
            tf.data.Dataset.from_tensor_slices((x, np.argmax(x[:, :3], 1).astype(np.int32))).batch(
                4
            )
        )
    process = fed.learning.algorithms.build_weighted_fed_avg(
        model_fn, fed.learning.optimizers.build_sgdm(0.1)
    )
    rss = RssReleaseManager(100)
    with tempfile.TemporaryDirectory() as directory:
        fed.simulation.run_training_process(
            process,
            lambda round_num: [clients[round_num % 10], clients[(round_num + 3) % 10]],
            args.rounds,
            program_state_manager=fed.program.FileProgramStateManager(directory, keep_total=3),
            rounds_per_saving_program_state=10,
            metrics_managers=[
                fed.program.CSVFileReleaseManager(os.path.join(directory, "m.csv")),
                rss,
            ],
        )
    baseline = rss.samples[0][1]
    print(
        f"fed {fed.__version__}: {args.rounds} rounds, state saved every 10 rounds, metrics to CSV"
    )
    print(f"{'round':>6} {'RSS (MiB)':>10} {'vs round 100':>13} {'s/round':>8}")
    previous = (0, 0.0)
    for key, mib, elapsed in rss.samples:
        per_round = (elapsed - previous[1]) / (key - previous[0])
        print(f"{key:>6} {mib:>10.1f} {mib / baseline:>13.3f} {per_round:>8.4f}")
        previous = (key, elapsed)
    growth = (rss.samples[-1][1] - baseline) / max(1, rss.samples[-1][0] - rss.samples[0][0]) * 1024
    print(f"growth after round 100: {growth:.1f} KiB per round")


if __name__ == "__main__":
    main()
