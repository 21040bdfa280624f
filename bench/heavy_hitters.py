"""The cost of private heavy hitters: IBLT encode + sum + decode against a plain Python Counter.

Clients hold 10 words each, drawn from a Zipf-like vocabulary of 1,000 words (fixed seed). For 1,000
and 10,000 clients, the same run times:

    counter   collections.Counter over every client's words, then most_common(10): what a server that
              collected everyone's words would do
    fed       fed.analytics.heavy_hitters.iblt.build_iblt_computation (capacity 1,200,
              string_max_bytes 20, max_heavy_hitters 10) on the local executor: each client encodes a
              sketch, the server sums the sketches and decodes them

and prints both, their ratio (the cost of privacy), and whether the top 10 agree (every word found
with its true count, and the same ten counts). The first call of the
computation (tracing and loading) is timed apart.

Run: .venv/bin/python bench/heavy_hitters.py [--clients 1000,10000]
"""

from __future__ import annotations

import argparse
import collections
import os
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed as tff  # noqa: E402

WORDS_PER_CLIENT = 10
VOCABULARY = 1000
CAPACITY = 1200  # above the number of distinct words: an IBLT decodes what it was sized for


def population(num_clients: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCABULARY + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    draws = rng.choice(VOCABULARY, size=(num_clients, WORDS_PER_CLIENT), p=weights)
    return [[f"word{w}" for w in row] for row in draws]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1000,10000")
    args = parser.parse_args()
    computation = tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=CAPACITY, string_max_bytes=20, max_heavy_hitters=10
    )
    warm = [tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(10)]
    start = time.perf_counter()
    computation(warm)
    print(f"first call (tracing, loading): {time.perf_counter() - start:.2f} s\n")
    print(f"{'clients':>8}{'counter':>11}{'fed (IBLT)':>13}{'ratio':>9}  top 10 agree  not decoded")
    for num_clients in [int(n) for n in args.clients.split(",") if n]:
        data = population(num_clients)
        start = time.perf_counter()
        counter = collections.Counter(w for words in data for w in words)
        top = counter.most_common(10)
        counter_time = time.perf_counter() - start
        datasets = [tf.data.Dataset.from_tensor_slices(words).batch(10) for words in data]
        start = time.perf_counter()
        output = computation(datasets)
        fed_time = time.perf_counter() - start
        found = {
            w.decode(): int(c) for w, c in zip(output.heavy_hitters, output.heavy_hitters_counts)
        }
        # Equal counts at the tenth place may pick different words: compare the counts.
        agree = all(counter[w] == c for w, c in found.items()) and sorted(found.values()) == sorted(
            c for _, c in top
        )
        print(
            f"{num_clients:>8}{counter_time:>10.4f}s{fed_time:>12.3f}s{fed_time / counter_time:>8.0f}x"
            f"  {'yes' if agree else 'no':>12}  {int(output.num_not_decoded):>11}"
        )


if __name__ == "__main__":
    main()
