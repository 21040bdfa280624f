"""Seconds per round of FedAvg on pfl-research's CIFAR-10 setup scaled to CPU, against a hand-written
TensorFlow loop in the same run, and how close each comes to the machine's arithmetic peak.

The workload is ../shared/bench/workload_cifar.py beside the repository: 1,000 clients of 50 synthetic
32x32x3 images with learnable labels (fixed seed), 50 clients per round (the same cohorts every run), one
local epoch, batches of 10, client SGD (0.1 for the CNN, 0.001 for the linear model), server SGD 1.0.

    cnn      pfl-research's CNN: conv32-conv64-maxpool-dropout-dense128-dropout-dense10 (logits)
    linear   Dense(10) on the 3,072 flattened features

Each model runs, from the same initial weights on the same cohorts:

    fed           fed.learning's build_weighted_fed_avg, one `process.next` per round (it also computes
                  the training loss and accuracy, as TFF does)
    hand-written  a tf.function that trains one client for one epoch (SGD on batches of 10, no metrics)
                  and returns its delta and example count, called once per client; the server applies the
                  example-weighted mean of the deltas

The machine's peak is measured in the same run: a large batched 3x3 convolution and a large matmul, as
GFLOP/s. A round's arithmetic is counted from the model (a training step costs about three forward
passes), so each loop's achieved GFLOP/s and its fraction of the convolution peak are printed beside its
seconds per round. The first round of each loop (tracing and loading) is untimed; it checks that the
loops agree. Rounds alternate between the loops and medians are reported, as these machines are noisy.

Beside them, the round's convolutions and matmuls alone ("kernels"): each client's steps run every
Conv2D and Dense layer's forward op and its gradients on a batch of the round's size, with nothing
else (no elementwise op, loss, metric or weight update), many clients in flight as in fed's looped
call or one at a time, whichever is faster. That is the floor of a round that runs these kernels on
batches of this size; its fraction of the peak says how much of the gap is the kernels' own (a
convolution on 10 images may run below the peak of one on 256) and how much is the rest of the round.

Run: .venv/bin/python bench/cifar.py                   # both models (~5 minutes on 2 cores)
     .venv/bin/python bench/cifar.py --only linear --rounds 5
     TF_ENABLE_ONEDNN_OPTS=1 .venv/bin/python bench/cifar.py
     .venv/bin/python bench/cifar.py --intra-op-threads 1
     .venv/bin/python bench/cifar.py --data clientdata --rounds 20

`--data clientdata` gives fed's rounds the clients' datasets as TFF's tutorials make them, from a
`TestClientData` of all the clients (`create_tf_dataset_for_client`, preprocessed with `.batch(10)`);
the hand-written loop still gets datasets made by `tf.data`. The data being in memory, fed's backend
keeps the clients that come back round after round read whole, once they have come back often enough
to pay for it (see the data guide): with 50 of 1,000 clients per round, few are kept in the first
tens of rounds. Each model also prints how long making a round's datasets for fed took (before the
round, so not in its time): with tf.data, 0.13 s for the linear model's 50 clients on a 2-core
machine, where the round took 0.054 s; from the `TestClientData`, nothing (its datasets are made
inside the round, which took 0.068 s).

TensorFlow uses oneDNN's CPU kernels by default only on CPUs with AVX-512 VNNI or BF16, or AMX; the
header says whether this run uses them. On a 2-core AVX2 machine, `TF_ENABLE_ONEDNN_OPTS=1` made the
CNN's rounds about 10% faster (and its measured convolution peak about 1.6 times as high).

`--intra-op-threads 1` runs each TensorFlow op on one thread (TensorFlow's own process-wide setting,
`tf.config.threading.set_intra_op_parallelism_threads`). fed's looped call keeps several clients in
flight, which already fills the cores; with ops also split over the cores, an op's share can wait
behind the other client's convolution (in a profile of the CNN's round, dropout's elementwise ops took
3 to 10 times as long as alone). Over eight alternating pairs of runs on a 2-core AVX-512 machine,
fed's CNN rounds took 0.84 to 1.04 times as long with it (median 0.94; the machine's own noise is of
that size), and the hand-written loop, which trains one client at a time, 1.06 to 1.33 times as long.
The setting is the whole process's, so fed leaves it to you. The peak is then measured in a separate
process with TensorFlow's default threads, so that it stays the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import workload as load_workload  # noqa: E402

workload = load_workload("workload_cifar", "bench/cifar.py")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed_learning as fl  # noqa: E402
from fed_datasets import TestClientData  # noqa: E402

# Peer figures, steady seconds per round, measured on another 2-core machine whose TensorFlow reached
# about 72 GFLOP/s on a large convolution and 106 GFLOP/s on a large matmul (not run here): compare them
# with fed's seconds only on a machine of about that peak.
PEER_MACHINE_PEAK = {"conv": 72.0, "matmul": 106.0}
PEERS = {
    "cnn": {"TFF 0.87": 8.83, "pfl-research 0.6": 5.87, "Flower 1.42": 17.0},
    "linear": {"TFF 0.87": 0.81, "pfl-research 0.6": 0.38, "Flower 1.42": 7.09},
}


def forward_flops_per_example(model: keras.Model) -> float:
    """Multiply-adds of one example's forward pass through the model's conv and dense layers, times 2."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w, channels, _ = layer.kernel.shape
            macs += height * width * filters * kernel_h * kernel_w * channels
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.kernel.shape))
    return 2.0 * macs


def training_flops_per_example(model: keras.Model) -> float:
    """A training step costs about three forward passes: the forward pass, and the backward pass's
    gradients with respect to the activations and to the weights."""
    return 3.0 * forward_flops_per_example(model)


ONEDNN_STATES = {True: "on", False: "off", None: "unknown"}


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs oneDNN's CPU kernels (`TF_ENABLE_ONEDNN_OPTS`, read when TensorFlow is
    imported), or None where this TensorFlow does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def timed(fn: Any, repeats: int) -> float:
    fn()  # warm-up: tracing, memory allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_peaks() -> dict[str, float]:
    """The machine's GFLOP/s on a large batched 3x3 convolution and a large float32 matmul."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((256, 30, 30, 32), dtype=np.float32))
    kernel = tf.constant(rng.random((3, 3, 32, 64), dtype=np.float32))
    # The operands are arguments, not captured constants, so that graph optimization cannot fold the
    # operation away.
    conv = tf.function(tf.nn.conv2d)
    conv_flops = 2.0 * 256 * 28 * 28 * 64 * 3 * 3 * 32
    a = tf.constant(rng.random((2048, 2048), dtype=np.float32))
    b = tf.constant(rng.random((2048, 2048), dtype=np.float32))
    matmul = tf.function(tf.matmul)
    matmul_flops = 2.0 * 2048**3
    return {
        "conv": conv_flops / timed(lambda: conv(images, kernel, 1, "VALID").numpy(), 5) / 1e9,
        "matmul": matmul_flops / timed(lambda: matmul(a, b).numpy(), 5) / 1e9,
    }


def layer_kernels(model: keras.Model, batch: int) -> list[tuple[Any, list[tf.Tensor]]]:
    """The convolutions and matmuls of one training step on a batch, layer by layer: each Conv2D's and
    Dense's forward op, its gradient with respect to its weights, and (except for the first layer, whose
    input is data) with respect to its input; as (op, operands) with random operands. Other layers
    (pooling, dropout, activations) run no convolution or matmul."""
    rng = np.random.default_rng(0)

    def operand(*shape: int) -> tf.Tensor:
        return tf.constant(rng.random(shape, dtype=np.float32))

    kernels: list[tuple[Any, list[tf.Tensor]]] = []
    first = True
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            if layer.get_config()["data_format"] != "channels_last" or layer.groups != 1:
                raise NotImplementedError(f"kernel timing of {layer.name}: only plain NHWC Conv2D")
            x_shape = [batch, *layer.input.shape[1:]]
            y_shape = [batch, *layer.output.shape[1:]]
            filter_shape = list(layer.kernel.shape)
            conv_args = {
                "strides": [1, *layer.strides, 1],
                "padding": layer.padding.upper(),
                "dilations": [1, *layer.dilation_rate, 1],
            }
            x, w, dy = operand(*x_shape), operand(*filter_shape), operand(*y_shape)
            kernels.append(
                (lambda x, w, a=conv_args: tf.raw_ops.Conv2D(input=x, filter=w, **a), [x, w])
            )

            def weight_gradient(
                x: tf.Tensor, dy: tf.Tensor, a: Any = conv_args, s: Any = filter_shape
            ) -> Any:
                return tf.raw_ops.Conv2DBackpropFilter(
                    input=x, filter_sizes=s, out_backprop=dy, **a
                )

            def input_gradient(
                w: tf.Tensor, dy: tf.Tensor, a: Any = conv_args, s: Any = x_shape
            ) -> Any:
                return tf.raw_ops.Conv2DBackpropInput(input_sizes=s, filter=w, out_backprop=dy, **a)

            kernels.append((weight_gradient, [x, dy]))
            if not first:
                kernels.append((input_gradient, [w, dy]))
            first = False
        elif isinstance(layer, keras.layers.Dense):
            if len(layer.input.shape) != 2:
                raise NotImplementedError(
                    f"kernel timing of {layer.name}: only Dense on [batch, n]"
                )
            inputs, units = layer.kernel.shape
            x, w, dy = operand(batch, inputs), operand(inputs, units), operand(batch, units)
            kernels.append((tf.matmul, [x, w]))
            kernels.append((lambda x, dy: tf.matmul(x, dy, transpose_a=True), [x, dy]))
            if not first:
                kernels.append((lambda w, dy: tf.matmul(dy, w, transpose_b=True), [w, dy]))
            first = False
    return kernels


def kernels_seconds_per_round(model: keras.Model, clients: int, steps: int, batch: int) -> float:
    """Seconds that a round's convolutions and matmuls alone take: each client's steps run the layers'
    kernels (`layer_kernels`) on a batch, with up to 16 clients in flight as in fed's looped call, or one
    at a time, whichever is faster. No elementwise op, loss, metric or update is run, and the
    operands stay the same (warm in the caches): a round that runs these kernels on batches of this
    size cannot be faster on this machine."""
    kernels = layer_kernels(model, batch)
    operands = [x for _, xs in kernels for x in xs]

    def build(parallel_clients: int) -> Any:
        @tf.function
        def round_of_kernels(*args: tf.Tensor) -> tf.Tensor:
            def step(i: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                # One element of each result is kept, so that no kernel is pruned as unused; the
                # operands are loop inputs, not constants, so none is folded away either, and the
                # steps are a loop's iterations, so none is merged with another as the same work.
                given = iter(args)
                for op, xs in kernels:
                    result = op(*[next(given) for _ in xs])
                    total += tf.reshape(result, [-1])[0]
                return i + 1, total

            def client(_: tf.Tensor) -> tf.Tensor:
                return tf.while_loop(
                    lambda i, _: i < steps, step, (tf.constant(0), tf.constant(0.0))
                )[1]

            return tf.reduce_sum(
                tf.map_fn(
                    client,
                    tf.range(clients),
                    fn_output_signature=tf.float32,
                    parallel_iterations=parallel_clients,
                )
            )

        return round_of_kernels

    times = []
    for parallel_clients in (16, 1):
        round_of_kernels = build(parallel_clients)
        times.append(timed(lambda f=round_of_kernels: f(*operands).numpy(), 3))
    return min(times)


def peaks_in_a_fresh_process() -> dict[str, float]:
    """`measure_peaks` in a new process with TensorFlow's default threads: this process's intra-op
    setting would measure one core's peak instead of the machine's."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
    result = subprocess.run(
        [sys.executable, __file__, "--peaks-only"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def client_datasets(kind: str, client_ids: list[int]) -> list[tf.data.Dataset]:
    datasets = []
    for client_id in client_ids:
        x, y = workload.client_data(client_id, flat=kind == "linear")
        datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(workload.BATCH_SIZE))
    return datasets


def client_data_datasets(kind: str, num_clients: int) -> Any:
    """A function from client ids to fed's datasets for them, from a `TestClientData` of all the
    clients' arrays preprocessed with `.batch(10)`, as TFF's tutorials make rounds' datasets
    (`create_tf_dataset_for_client`)."""
    data = TestClientData(
        {str(k): workload.client_data(k, flat=kind == "linear") for k in range(num_clients)}
    ).preprocess(lambda dataset: dataset.batch(workload.BATCH_SIZE))
    return lambda client_ids: [data.create_tf_dataset_for_client(str(k)) for k in client_ids]


def build_fed_process(kind: str) -> Any:
    input_shape = [None, workload.FLAT_DIM] if kind == "linear" else [None, *workload.IMAGE_SHAPE]
    input_spec = (tf.TensorSpec(input_shape, tf.float32), tf.TensorSpec([None], tf.int32))

    def model_fn() -> Any:
        keras.utils.set_random_seed(workload.MODEL_SEED)
        return fl.models.from_keras_model(
            workload.keras_model(keras, kind),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec=input_spec,
            metrics=[keras.metrics.SparseCategoricalAccuracy()],
        )

    return fl.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=fl.optimizers.build_sgdm(workload.client_lr(kind)),
        server_optimizer_fn=fl.optimizers.build_sgdm(workload.SERVER_LR),
    )


class HandWrittenFedAvg:
    """FedAvg in plain TensorFlow: a Keras model's variables are set to the server weights and trained
    over one client's batches with SGD; the server applies the example-weighted mean of the deltas."""

    def __init__(self, kind: str):
        keras.utils.set_random_seed(workload.MODEL_SEED)
        model = workload.keras_model(keras, kind)
        self.model = model
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        variables = model.trainable_variables
        learning_rate = workload.client_lr(kind)

        @tf.function
        def client_update(server_weights: list[tf.Tensor], dataset: tf.data.Dataset) -> Any:
            for variable, weight in zip(variables, server_weights):
                variable.assign(weight)
            num_examples = tf.constant(0)
            for x, y in iter(dataset):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                gradients = tape.gradient(loss, variables)
                for variable, gradient in zip(variables, gradients):
                    variable.assign_sub(learning_rate * gradient)
                num_examples += tf.shape(y)[0]
            return [weight - v for v, weight in zip(variables, server_weights)], num_examples

        self._client_update = client_update

    def round(
        self, server_weights: list[np.ndarray], datasets: list[tf.data.Dataset]
    ) -> list[np.ndarray]:
        delta_sum = [np.zeros_like(w) for w in server_weights]
        total = 0
        for dataset in datasets:
            delta, num_examples = self._client_update(server_weights, dataset)
            n = int(num_examples)
            for accumulated, d in zip(delta_sum, delta):
                accumulated += n * d.numpy()
            total += n
        return [w - workload.SERVER_LR * s / total for w, s in zip(server_weights, delta_sum)]


def max_abs_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


class Row(NamedTuple):
    model: str
    examples: int
    round_gflop: float
    fed: float
    hand: float
    kernels: float


def run_model(
    kind: str, rounds: int, num_clients: int, clients_per_round: int, data: str = "tf.data"
) -> Row:
    cohorts = workload.cohorts(num_clients, clients_per_round, rounds + 1)
    fed_datasets = (
        client_data_datasets(kind, num_clients)
        if data == "clientdata"
        else lambda client_ids: client_datasets(kind, client_ids)
    )
    process = build_fed_process(kind)
    state = process.initialize()
    initial = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    hand = HandWrittenFedAvg(kind)
    round_gflop = (
        training_flops_per_example(hand.model)
        * clients_per_round
        * workload.EXAMPLES_PER_CLIENT
        * workload.LOCAL_EPOCHS
        / 1e9
    )

    # The first round traces and loads; it is untimed and checks that the loops agree. Dropout draws
    # different masks in the two loops, so the CNN's loops agree only roughly.
    first = client_datasets(kind, cohorts[0])
    output = process.next(state, fed_datasets(cohorts[0]))
    state = output.state
    examples = int(output.metrics["client_work"]["train"]["num_examples"])
    fed_weights = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    server = hand.round(initial, first)
    print(
        f"{kind}: {clients_per_round} clients, {examples} examples per round, "
        f"{round_gflop:.2f} GFLOP per round; after one round from the same weights, "
        f"max |fed - hand-written| = {max_abs_difference(fed_weights, server):.2e} "
        f"(the weights moved by up to {max_abs_difference(fed_weights, initial):.2e}); "
        f"timing {rounds} rounds",
        flush=True,
    )

    times: dict[str, list[float]] = {"fed": [], "hand": [], "data": []}
    for cohort in cohorts[1:]:
        datasets = client_datasets(kind, cohort)
        start = time.perf_counter()
        given = fed_datasets(cohort)
        times["data"].append(time.perf_counter() - start)
        start = time.perf_counter()
        state = process.next(state, given).state
        times["fed"].append(time.perf_counter() - start)
        start = time.perf_counter()
        server = hand.round(server, datasets)
        times["hand"].append(time.perf_counter() - start)
    # Not in the rounds' times: a round's datasets are made before it starts, for both loops.
    print(
        f"{kind}: making a round's datasets for fed ({data}) took {statistics.median(times['data']):.3f} s",
        flush=True,
    )
    kernels = kernels_seconds_per_round(
        hand.model,
        clients_per_round,
        workload.LOCAL_EPOCHS * -(-workload.EXAMPLES_PER_CLIENT // workload.BATCH_SIZE),
        workload.BATCH_SIZE,
    )
    return Row(
        kind,
        examples,
        round_gflop,
        statistics.median(times["fed"]),
        statistics.median(times["hand"]),
        kernels,
    )


def print_table(rows: list[Row], peaks: dict[str, float]) -> None:
    print()
    print(
        f"Machine peak (measured in this run): convolution {peaks['conv']:.1f} GFLOP/s, "
        f"matmul {peaks['matmul']:.1f} GFLOP/s"
    )
    header = (
        f"{'model':<7} {'GFLOP/rnd':>9} {'limit s':>7} | {'fed s/rnd':>9} {'GFLOP/s':>7} {'of peak':>7} | "
        f"{'hand s/rnd':>10} {'GFLOP/s':>7} {'of peak':>7} | {'kernels s':>9} {'of peak':>7} | "
        f"{'fed/hand':>8} | peers (s/rnd, fed's speedup)"
    )
    print("FedAvg on CIFAR-shaped data, seconds per round (median of the timed rounds)")
    print(header)
    print("-" * len(header))
    for r in rows:
        peak = peaks["conv"] if r.model == "cnn" else peaks["matmul"]
        limit = r.round_gflop / peak
        peers = ", ".join(
            f"{name} {seconds:g} ({seconds / r.fed:.2f}x)"
            for name, seconds in PEERS[r.model].items()
        )
        print(
            f"{r.model:<7} {r.round_gflop:>9.2f} {limit:>7.3f} | {r.fed:>9.3f} "
            f"{r.round_gflop / r.fed:>7.1f} {limit / r.fed:>7.0%} | {r.hand:>10.3f} "
            f"{r.round_gflop / r.hand:>7.1f} {limit / r.hand:>7.0%} | {r.kernels:>9.3f} "
            f"{limit / r.kernels:>7.0%} | {r.fed / r.hand:>8.2f} | {peers}"
        )
    print(
        "'limit s' is the round's arithmetic at the measured peak (convolution for the CNN, matmul for the "
        "linear model); 'of peak' is that limit over the loop's time. 'kernels s' is the round's "
        "convolutions and matmuls alone, on batches of the round's size (no elementwise op, loss or "
        "update): a round that runs these kernels cannot be faster. fed/hand > 1: fed is slower than the "
        "hand-written loop. Peer figures were measured on another 2-core machine (convolution peak "
        f"{PEER_MACHINE_PEAK['conv']:g}, matmul {PEER_MACHINE_PEAK['matmul']:g} GFLOP/s; not run here): "
        "fed's speedup > 1 means fed is faster, and compares fairly only where this run's peak is similar."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="cnn,linear", help="models to run: cnn, linear or both")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per model (default 5)")
    parser.add_argument("--num-clients", type=int, default=1000)
    parser.add_argument("--clients-per-round", type=int, default=50)
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=None,
        help="threads per TensorFlow op (default: TensorFlow's, one per core); see above",
    )
    parser.add_argument(
        "--data",
        choices=["tf.data", "clientdata"],
        default="tf.data",
        help="how fed's rounds get their datasets: made by tf.data for each round, as the "
        "hand-written loop's are (default), or from a TestClientData of all the clients; see above",
    )
    parser.add_argument("--peaks-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peaks_only:
        print(json.dumps(measure_peaks()))
        return
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in PEERS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(PEERS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.intra_op_threads is not None:
        if args.intra_op_threads < 1:
            parser.error("--intra-op-threads must be at least 1")
        # Only before TensorFlow's runtime starts: nothing above has run an op.
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    # TensorFlow also reads the count from TF_NUM_INTRAOP_THREADS.
    threads = (
        tf.config.threading.get_intra_op_parallelism_threads()
        or os.environ.get("TF_NUM_INTRAOP_THREADS")
        or "default"
    )
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, fed-learning {fl.__version__}, "
        f"{os.cpu_count()} CPUs, oneDNN kernels {ONEDNN_STATES[onednn_enabled()]}, "
        f"intra-op threads {threads}"
    )
    peaks = measure_peaks() if threads == "default" else peaks_in_a_fresh_process()
    rows = [
        run_model(k, args.rounds, args.num_clients, args.clients_per_round, args.data)
        for k in kinds
    ]
    print_table(rows, peaks)


if __name__ == "__main__":
    main()
