"""Resident memory while creating datasets for many clients, against a hand-written tf.data loop.

TensorFlow Federated's simulations grew from 1 GB to 50 GB of resident memory over 500 rounds,
partly from per-client dataset creation. This benchmark creates the datasets of 10,000 clients
one after the other, takes one element from each, and prints resident memory before and after,
for fed's `SqlClientData` (on a generated database in TensorFlow Federated's schema) and
`TestClientData`, and for the same work written directly with tf.data. Each case runs in a fresh
process so that one cannot inherit another's memory.

    python bench/client_data_memory.py [--clients 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import rss_mb  # noqa: E402

CASES = ("sql-fed", "sql-baseline", "memory-fed", "memory-baseline")
EXAMPLES_PER_CLIENT = 2
WARMUP_CLIENTS = 100


def _client_ids(num_clients: int) -> list[str]:
    return [f"client_{i:05d}" for i in range(num_clients)]


def _examples(num_clients: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = num_clients * EXAMPLES_PER_CLIENT
    return {
        "label": rng.integers(0, 10, size=n).astype(np.int32),
        "pixels": rng.uniform(size=(n, 8, 8)).astype(np.float32),
    }


def _write_database(path: Path, num_clients: int) -> None:
    import tensorflow as tf

    data = _examples(num_clients)
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
        "serialized_example_proto BLOB NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
        "num_examples INTEGER NOT NULL)"
    )
    connection.execute("CREATE INDEX examples_by_client ON examples (client_id, split_name)")
    for i, client_id in enumerate(_client_ids(num_clients)):
        for row in range(i * EXAMPLES_PER_CLIENT, (i + 1) * EXAMPLES_PER_CLIENT):
            features = {
                "label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[data["label"][row]])
                ),
                "pixels": tf.train.Feature(
                    float_list=tf.train.FloatList(value=data["pixels"][row].ravel())
                ),
            }
            proto = tf.train.Example(features=tf.train.Features(feature=features))
            connection.execute(
                "INSERT INTO examples VALUES (?, ?, ?)",
                ("train", client_id, proto.SerializeToString()),
            )
        connection.execute(
            "INSERT INTO client_metadata VALUES (?, ?, ?)",
            (client_id, "train", EXAMPLES_PER_CLIENT),
        )
    connection.commit()
    connection.close()


def _run_case(case: str, num_clients: int, database: Path) -> dict[str, float]:
    import tensorflow as tf

    import fed_datasets

    ids = _client_ids(num_clients)
    spec = {
        "label": tf.TensorSpec((), tf.int32),
        "pixels": tf.TensorSpec((8, 8), tf.float32),
    }
    features = {
        "label": tf.io.FixedLenFeature((), tf.int64),
        "pixels": tf.io.FixedLenFeature((8, 8), tf.float32),
    }

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_single_example(serialized, features)
        return {"label": tf.cast(parsed["label"], tf.int32), "pixels": parsed["pixels"]}

    if case == "sql-fed":
        client_data = fed_datasets.load_and_parse_sql_client_data(database, spec)
        make = client_data.create_tf_dataset_for_client
    elif case == "sql-baseline":
        uri = f"file:{database}?mode=ro"

        def make(client_id: str) -> tf.data.Dataset:
            query = f"SELECT serialized_example_proto FROM examples WHERE client_id = '{client_id}'"
            return tf.data.experimental.SqlDataset("sqlite", uri, query, tf.string).map(parse)
    elif case == "memory-fed":
        data = _examples(num_clients)
        client_data = fed_datasets.TestClientData(
            {
                client_id: {
                    k: v[i * EXAMPLES_PER_CLIENT : (i + 1) * EXAMPLES_PER_CLIENT]
                    for k, v in data.items()
                }
                for i, client_id in enumerate(ids)
            }
        )
        make = client_data.create_tf_dataset_for_client
    elif case == "memory-baseline":
        data = _examples(num_clients)
        slices = {
            client_id: {
                k: v[i * EXAMPLES_PER_CLIENT : (i + 1) * EXAMPLES_PER_CLIENT]
                for k, v in data.items()
            }
            for i, client_id in enumerate(ids)
        }

        def make(client_id: str) -> tf.data.Dataset:
            return tf.data.Dataset.from_tensor_slices(slices[client_id])
    else:
        raise ValueError(f"unknown case {case!r}; expected one of {CASES}")

    def take_one(client_id: str) -> None:
        element = next(iter(make(client_id)))
        assert element["pixels"].shape == (8, 8)

    for client_id in ids[:WARMUP_CLIENTS]:
        take_one(client_id)
    before = rss_mb()
    start = time.perf_counter()
    half = len(ids) // 2
    for client_id in ids[:half]:
        take_one(client_id)
    middle = rss_mb()
    for client_id in ids[half:]:
        take_one(client_id)
    seconds = time.perf_counter() - start
    after = rss_mb()
    return {
        "before": before,
        "middle": middle,
        "after": after,
        "ms_per_client": 1e3 * seconds / len(ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, args.clients, args.database)))
        return

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "clients.sqlite"
        _write_database(database, args.clients)
        results = {}
        for case in CASES:
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    case,
                    "--clients",
                    str(args.clients),
                    "--database",
                    str(database),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
            results[case] = json.loads(output.strip().splitlines()[-1])

    print(
        f"Resident memory (MB) while creating the datasets of {args.clients} clients and taking "
        "one element from each (after a warm-up of 100 clients):"
    )
    print(
        f"{'case':<18}{'before':>10}{'halfway':>10}{'after':>10}{'growth':>10}{'2nd half':>10}"
        f"{'ms/client':>11}"
    )
    for case, r in results.items():
        growth, second_half = r["after"] - r["before"], r["after"] - r["middle"]
        print(
            f"{case:<18}{r['before']:>10.1f}{r['middle']:>10.1f}{r['after']:>10.1f}"
            f"{growth:>10.1f}{second_half:>10.1f}{r['ms_per_client']:>11.2f}"
        )
    for kind in ("sql", "memory"):
        fed, baseline = results[f"{kind}-fed"], results[f"{kind}-baseline"]
        fed_growth = fed["after"] - fed["before"]
        baseline_growth = baseline["after"] - baseline["before"]
        print(
            f"{kind}: fed/baseline resident memory after = {fed['after'] / baseline['after']:.2f}; "
            f"growth {fed_growth:+.1f} MB vs {baseline_growth:+.1f} MB"
        )


if __name__ == "__main__":
    main()
