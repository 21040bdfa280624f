"""fed's demo: federated averaging of a small Keras model on handwritten digits spread non-IID over clients.

The data is the 1,797 8x8 digit images that ship with fed-datasets, dealt to 20 clients with Dirichlet
label skew. Each round samples 10 clients, trains locally and averages the models, then evaluates on the
clients' held-out test data. The loop is `fed.simulation.run_training_process`: it saves the training state
after every round under `out/checkpoints`, so a run that is stopped resumes where it left off, and running
the demo again trains `--rounds` more rounds (`--fresh` starts over). Metrics go to `out/metrics.csv` (a row
per round) and `out/metrics.png` (with matplotlib).

    python examples/demo.py [--rounds 30] [--clients-per-round 10] [--out out] [--fresh] [--no-progress]
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed  # noqa: E402

NUM_CLIENTS = 20
BATCH_SIZE = 16
INPUT_SPEC = (tf.TensorSpec([None, 8, 8, 1], tf.float32), tf.TensorSpec([None], tf.int32))


def preprocess(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda e: (tf.reshape(e["pixels"], [8, 8, 1]), e["label"])).batch(BATCH_SIZE)


def model_fn() -> fed.learning.models.VariableModel:
    keras_model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    return fed.learning.models.from_keras_model(
        keras_model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=INPUT_SPEC,
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def read_metrics(path: pathlib.Path) -> dict[int, dict[str, float]]:
    """The rounds' metrics from the CSV file, by round: every run's, resumed ones included."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        int(row["key"]): {
            name: float(value) for name, value in row.items() if value and name != "key"
        }
        for row in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Federated averaging on federated handwritten digits."
    )
    parser.add_argument("--rounds", type=int, default=30, help="rounds to train in this run")
    parser.add_argument("--clients-per-round", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"))
    parser.add_argument("--fresh", action="store_true", help="start over, discarding saved state")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)

    train, test = fed.simulation.datasets.digits.load_data(
        num_clients=NUM_CLIENTS, alpha=0.5, seed=0
    )
    train, test = train.preprocess(preprocess), test.preprocess(preprocess)
    test_data = [test.create_tf_dataset_for_client(cid) for cid in test.client_ids]
    print(
        f"fed {fed.__version__}: federated digits, {len(train.client_ids)} clients, "
        f"{args.clients_per_round} per round, {args.rounds} rounds"
    )

    process = fed.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=fed.learning.optimizers.build_sgdm(learning_rate=0.1, momentum=0.9),
        server_optimizer_fn=fed.learning.optimizers.build_sgdm(learning_rate=1.0),
    )
    evaluation = fed.learning.algorithms.build_fed_eval(model_fn)
    sample = fed.simulation.build_uniform_sampling_fn(train.client_ids, random_seed=0)

    def evaluate(state, data):
        eval_state = evaluation.set_model_weights(
            evaluation.initialize(), process.get_model_weights(state)
        )
        return evaluation.next(eval_state, data).metrics["client_work"]["eval"][
            "current_round_metrics"
        ]

    checkpoints, csv_path = args.out / "checkpoints", args.out / "metrics.csv"
    if args.fresh:
        shutil.rmtree(checkpoints, ignore_errors=True)
    state_manager = fed.program.FileProgramStateManager(checkpoints, keep_total=3)
    saved = fed.program.run_sync(state_manager.get_versions()) or []
    done_before = max(saved, default=0)
    total_rounds = done_before + args.rounds
    if done_before:
        print(
            f"resuming after round {done_before} (from {checkpoints}): rounds {done_before + 1}-"
            f"{total_rounds}; --fresh starts over"
        )
    else:
        print("starting fresh")
    csv_mode = fed.program.CSVSaveMode.APPEND if done_before else fed.program.CSVSaveMode.WRITE

    start = time.perf_counter()
    state = fed.simulation.run_training_process(
        process,
        training_selection_fn=lambda round_num: [
            train.create_tf_dataset_for_client(cid)
            for cid in sample(round_num, args.clients_per_round)
        ],
        total_rounds=total_rounds,
        evaluation_fn=evaluate,
        evaluation_selection_fn=lambda round_num: test_data,
        program_state_manager=state_manager,
        metrics_managers=[fed.program.CSVFileReleaseManager(csv_path, save_mode=csv_mode)],
        progress=not args.no_progress,
    )
    elapsed = time.perf_counter() - start
    written = [csv_path]
    try:
        written.append(
            fed.program.plot_metrics(
                read_metrics(csv_path),
                args.out / "metrics.png",
                names=["client_work/train/loss", "evaluation/sparse_categorical_accuracy"],
            )
        )
    except ImportError:
        print("matplotlib is not installed: no plot")
    final = float(evaluate(state, test_data)["sparse_categorical_accuracy"])
    print(f"wrote {' and '.join(str(p) for p in written)}")
    print(
        f"{args.rounds} rounds in {elapsed:.1f} s ({elapsed / args.rounds:.2f} s per round, with evaluation)"
    )
    print(f"final test accuracy over {len(test.client_ids)} clients: {final:.4f} (chance: 0.1000)")


if __name__ == "__main__":
    main()
