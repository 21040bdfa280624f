"""TFF's tutorial "TFF simulations with accelerators", run with `import fed as tff` on CPU or GPU.

The tutorial imports `federated_language` beside `tensorflow_federated`; fed has those names at its top
level, so `import fed as federated_language` stands in for it. What changed:
- EMNIST is offline: `tff.simulation.datasets.emnist.get_synthetic()` (two clients of ten examples in
  federated EMNIST's element structure) stands for both `load_data()` splits;
- sizes shrink: 2 clients per round (of the 2 there are, not 16), 3 rounds, a CNN of 1 block of width
  1 (8 layers; 2 blocks for the "larger model"), `max_concurrent_computation_calls=2 / 2` for `16 / 2`;
- the notebook's virtual-GPU cell needs a GPU: it runs (in a fresh process, as TensorFlow requires)
  only where one is present, and everything else runs on the CPU when the device lists are empty;
- three lines the notebook wrote for Keras 2 take their Keras 3 spelling, as TensorFlow 2.21 requires
  whatever runs them: `tf.image.per_image_standardization` on a Keras tensor goes in a
  `tf.keras.layers.Lambda`, `metric.reset_states()` is `metric.reset_state()`, and
  `tf.keras.mixed_precision.experimental.Policy`/`set_policy` are `tf.keras.mixed_precision.Policy`/
  `set_global_policy`; the notebook also calls `logging.info` without importing it, here absl's.
The tutorial's profiling (`tf.profiler.experimental.Profile` around the last round) runs as written,
in a temporary directory. Each test checks what the notebook prints: the model summary's name, one
training loss per round (falling), validation accuracy every `rounds_per_eval` rounds and at the end,
and a profile written; the mixed-precision test also checks that models built inside the computations
compute in float16.
"""

import collections
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import logging

import fed as federated_language
import fed as tff

emnist_train = tff.simulation.datasets.emnist.get_synthetic()
emnist_test = tff.simulation.datasets.emnist.get_synthetic()


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    # The notebook profiles into the relative folders 'logdir' and 'mixed'.
    monkeypatch.chdir(tmp_path)
    yield
    tff.backends.native.set_sync_local_cpp_execution_context()
    tf.keras.mixed_precision.set_global_policy("float32")


def test_virtual_gpus():
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("the notebook's virtual-GPU cell needs a physical GPU")
    # Logical devices can be configured only before TensorFlow initializes its runtime, which this
    # test process has already done: the cell runs in a fresh interpreter.
    cell = textwrap.dedent(
        """
        import tensorflow as tf
        gpu_devices = tf.config.list_physical_devices('GPU')
        if not gpu_devices:
          raise ValueError('Cannot detect physical GPU device in TF')
        tf.config.set_logical_device_configuration(
            gpu_devices[0],
            [
                tf.config.LogicalDeviceConfiguration(memory_limit=1024),
                tf.config.LogicalDeviceConfiguration(memory_limit=1024),
            ],
        )
        print([d.name for d in tf.config.list_logical_devices()])

        import fed as federated_language
        @federated_language.federated_computation
        def hello_world():
          return 'Hello, World!'
        print(hello_world())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", cell], capture_output=True, text=True, check=True
    ).stdout
    assert "'/device:GPU:0', '/device:GPU:1'" in out
    assert "b'Hello, World!'" in out


def test_hello_world():
    @federated_language.federated_computation
    def hello_world():
        return "Hello, World!"

    assert hello_world() == b"Hello, World!"
    # On a machine without a GPU the notebook's device lists hold the CPU alone, and all runs there.
    assert tf.config.list_logical_devices()[0].device_type == "CPU"


def preprocess_emnist_dataset(client_epochs_per_round, batch_size, test_batch_size):
    def element_fn(element):
        return collections.OrderedDict(x=tf.expand_dims(element["pixels"], -1), y=element["label"])

    def preprocess_train_dataset(dataset):
        # Use buffer_size same as the maximum client dataset size,
        # 418 for Federated EMNIST
        return (
            dataset.map(element_fn)
            .shuffle(buffer_size=418)
            .repeat(count=client_epochs_per_round)
            .batch(batch_size, drop_remainder=False)
        )

    def preprocess_test_dataset(dataset):
        return dataset.map(element_fn).batch(test_batch_size, drop_remainder=False)

    train_set = emnist_train.preprocess(preprocess_train_dataset)
    test_set = preprocess_test_dataset(emnist_test.create_tf_dataset_from_all_clients())
    return train_set, test_set


def _conv_3x3(input_tensor, filters, strides):
    """2D Convolutional layer with kernel size 3x3."""

    x = tf.keras.layers.Conv2D(
        filters=filters,
        strides=strides,
        kernel_size=3,
        padding="same",
        kernel_initializer="he_normal",
        use_bias=False,
    )(input_tensor)
    return x


def _basic_block(input_tensor, filters, strides):
    """A block of two 3x3 conv layers."""

    x = input_tensor
    x = _conv_3x3(x, filters, strides)
    x = tf.keras.layers.Activation("relu")(x)

    x = _conv_3x3(x, filters, 1)
    x = tf.keras.layers.Activation("relu")(x)
    return x


def _vgg_block(input_tensor, size, filters, strides):
    """A stack of basic blocks."""
    x = _basic_block(input_tensor, filters, strides=strides)
    for _ in range(size - 1):
        x = _basic_block(x, filters, strides=1)
    return x


def create_cnn(num_blocks, conv_width_multiplier=1, num_classes=10):
    """Create a VGG-like CNN model.

    The CNN has (6*num_blocks + 2) layers.
    """
    input_shape = (28, 28, 1)  # channels_last
    img_input = tf.keras.layers.Input(shape=input_shape)
    x = img_input
    x = tf.keras.layers.Lambda(tf.image.per_image_standardization)(x)

    x = _conv_3x3(x, 16 * conv_width_multiplier, 1)
    x = _vgg_block(x, size=num_blocks, filters=16 * conv_width_multiplier, strides=1)
    x = _vgg_block(x, size=num_blocks, filters=32 * conv_width_multiplier, strides=2)
    x = _vgg_block(x, size=num_blocks, filters=64 * conv_width_multiplier, strides=2)

    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(num_classes)(x)

    model = tf.keras.models.Model(
        img_input,
        x,
        name="cnn-{}-{}".format(6 * num_blocks + 2, conv_width_multiplier),  # noqa: UP032
    )
    return model


def keras_evaluate(model, test_data, metric):
    metric.reset_state()
    for batch in test_data:
        preds = model(batch["x"], training=False)
        metric.update_state(y_true=batch["y"], y_pred=preds)
    return metric.result()


def run_federated_training(
    client_epochs_per_round,
    train_batch_size,
    test_batch_size,
    cnn_num_blocks,
    conv_width_multiplier,
    server_learning_rate,
    client_learning_rate,
    total_rounds,
    clients_per_round,
    rounds_per_eval,
    logdir="logdir",
):
    train_data, test_data = preprocess_emnist_dataset(
        client_epochs_per_round, train_batch_size, test_batch_size
    )
    data_spec = test_data.element_spec

    def _model_fn():
        keras_model = create_cnn(cnn_num_blocks, conv_width_multiplier)
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return tff.learning.models.from_keras_model(keras_model, input_spec=data_spec, loss=loss)

    server_optimizer = tff.learning.optimizers.build_sgdm(server_learning_rate)
    client_optimizer = tff.learning.optimizers.build_sgdm(client_learning_rate)

    learning_process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn=_model_fn,
        server_optimizer_fn=server_optimizer,
        client_optimizer_fn=client_optimizer,
        use_experimental_simulation_loop=True,
    )

    metric = tf.keras.metrics.SparseCategoricalAccuracy(name="test_accuracy")
    eval_model = create_cnn(cnn_num_blocks, conv_width_multiplier)
    logging.info(eval_model.summary())

    server_state = learning_process.initialize()
    start_time = time.time()
    for round_num in range(total_rounds):
        sampled_clients = np.random.choice(
            train_data.client_ids, size=clients_per_round, replace=False
        )
        sampled_train_data = [
            train_data.create_tf_dataset_for_client(client) for client in sampled_clients
        ]
        if round_num == total_rounds - 1:
            with tf.profiler.experimental.Profile(logdir):
                result = learning_process.next(server_state, sampled_train_data)
        else:
            result = learning_process.next(server_state, sampled_train_data)
        server_state = result.state
        train_metrics = result.metrics["client_work"]["train"]
        print(
            f"Round {round_num} training loss: {train_metrics['loss']}, "
            f"time: {(time.time() - start_time) / (round_num + 1.0)} secs"
        )
        if round_num % rounds_per_eval == 0 or round_num == total_rounds - 1:
            model_weights = learning_process.get_model_weights(server_state)
            model_weights.assign_weights_to(eval_model)
            accuracy = keras_evaluate(eval_model, test_data, metric)
            print(f"Round {round_num} validation accuracy: {accuracy * 100.0}")


def check_printed_run(printed, model_name, logdir, total_rounds=3, eval_rounds=(0, 2)):
    """Checks what `run_federated_training` printed and the profile of its last round."""
    assert f'Model: "{model_name}"' in printed
    losses = [
        float(v) for v in re.findall(r"^Round \d+ training loss: ([-+.\deE]+), time", printed, re.M)
    ]
    assert len(losses) == total_rounds
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    accuracies = re.findall(r"^Round (\d+) validation accuracy: ([-+.\deE]+)$", printed, re.M)
    assert [int(r) for r, _ in accuracies] == list(eval_rounds)
    assert all(0.0 <= float(a) <= 100.0 for _, a in accuracies)
    profiles = list((logdir / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(profiles) == 1 and profiles[0].stat().st_size > 0


def test_single_gpu_execution(tmp_path, capsys):
    run_federated_training(
        client_epochs_per_round=1,
        train_batch_size=16,
        test_batch_size=128,
        cnn_num_blocks=1,
        conv_width_multiplier=1,
        server_learning_rate=1.0,
        client_learning_rate=0.01,
        total_rounds=3,
        clients_per_round=2,
        rounds_per_eval=2,
    )
    check_printed_run(capsys.readouterr().out, "cnn-8-1", tmp_path / "logdir")


def test_larger_model(tmp_path, capsys):
    run_federated_training(
        client_epochs_per_round=1,
        train_batch_size=16,
        test_batch_size=128,
        cnn_num_blocks=2,
        conv_width_multiplier=1,
        server_learning_rate=1.0,
        client_learning_rate=0.01,
        total_rounds=3,
        clients_per_round=2,
        rounds_per_eval=2,
    )
    check_printed_run(capsys.readouterr().out, "cnn-14-1", tmp_path / "logdir")


def test_control_concurrency_as_the_notebook_writes_it():
    # Control concurrency by `max_concurrent_computation_calls`.
    tff.backends.native.set_sync_local_cpp_execution_context(max_concurrent_computation_calls=2 / 2)


def test_control_concurrency(tmp_path, capsys):
    # The notebook's cell with an integer limit (`2 // 2` for its `16 / 2`): one client's work at a
    # time, the tightest limit there is.
    tff.backends.native.set_sync_local_cpp_execution_context(
        max_concurrent_computation_calls=2 // 2
    )

    run_federated_training(
        client_epochs_per_round=1,
        train_batch_size=16,
        test_batch_size=128,
        cnn_num_blocks=2,
        conv_width_multiplier=1,
        server_learning_rate=1.0,
        client_learning_rate=0.01,
        total_rounds=3,
        clients_per_round=2,
        rounds_per_eval=2,
    )
    check_printed_run(capsys.readouterr().out, "cnn-14-1", tmp_path / "logdir")


def test_mixed_precision(tmp_path, capsys):
    # Mixed precision training.
    tff.backends.native.set_sync_local_cpp_execution_context()
    policy = tf.keras.mixed_precision.Policy("mixed_float16")
    tf.keras.mixed_precision.set_global_policy(policy)

    run_federated_training(
        client_epochs_per_round=1,
        train_batch_size=16,
        test_batch_size=128,
        cnn_num_blocks=2,
        conv_width_multiplier=1,
        server_learning_rate=1.0,
        client_learning_rate=0.01,
        total_rounds=3,
        clients_per_round=2,
        rounds_per_eval=2,
        logdir="mixed",
    )
    check_printed_run(capsys.readouterr().out, "cnn-14-1", tmp_path / "mixed")

    # The policy reaches models built inside computations: they keep float32 weights and
    # compute in float16.
    _, test_data = preprocess_emnist_dataset(1, 16, 128)

    @tff.tensorflow.computation(tff.types.tensorflow_to_type(test_data.element_spec))
    def predict(batch):
        model = create_cnn(1)
        return model(batch["x"]), model.trainable_weights[0]

    assert str(predict.type_signature.result) == "<float16[?,10],float32[3,3,1,16]>"
    predictions, _ = predict(next(iter(test_data)))
    assert predictions.dtype == np.float16 and predictions.shape == (20, 10)
