"""TFF's tutorial "Differential Privacy in TFF", run with `import fed as tff`: user-level DP-FedAvg with
`tff.learning.model_update_aggregator.dp_aggregator` (adaptive clipping, Gaussian noise), Poisson-sampled
clients, federated evaluation, then the privacy accounting with dp-accounting, and fed's own accounting
of the same run.

The tutorial downloads federated EMNIST; here a small stand-in with its element structure (28x28 digits made
from scikit-learn's 8x8 ones) takes its place, and rounds and clients are fewer.
"""

import collections
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

import fed as tff

if importlib.util.find_spec("tensorflow_privacy") is None:
    pytest.skip(
        "the dp extra's tensorflow-privacy installs on Python < 3.12 only", allow_module_level=True
    )
dp_accounting = pytest.importorskip("dp_accounting")

NUM_CLIENTS = 12


def load_emnist_stand_in():
    """(train, test) ClientData of 28x28 digits, EMNIST's structure: `label` int32, `pixels` float32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images / 16.0, np.ones((1, 3, 3)))
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32)
    labels = digits.target.astype(np.int32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))[: NUM_CLIENTS * 30]
    train, test = {}, {}
    for i, rows in enumerate(np.array_split(order, NUM_CLIENTS)):
        split = int(len(rows) * 0.8)
        train[str(i)] = collections.OrderedDict(
            label=labels[rows[:split]], pixels=images[rows[:split]]
        )
        test[str(i)] = collections.OrderedDict(
            label=labels[rows[split:]], pixels=images[rows[split:]]
        )
    data = tff.simulation.datasets.TestClientData
    return data(train), data(test)


def get_emnist_dataset():
    emnist_train, emnist_test = load_emnist_stand_in()

    def element_fn(element):
        return collections.OrderedDict(x=tf.expand_dims(element["pixels"], -1), y=element["label"])

    def preprocess_train_dataset(dataset):
        return (
            dataset.map(element_fn)
            .shuffle(buffer_size=418)
            .repeat(1)
            .batch(32, drop_remainder=False)
        )

    def preprocess_test_dataset(dataset):
        return dataset.map(element_fn).batch(128, drop_remainder=False)

    emnist_train = emnist_train.preprocess(preprocess_train_dataset)
    emnist_test = preprocess_test_dataset(emnist_test.create_tf_dataset_from_all_clients())
    return emnist_train, emnist_test


train_data, test_data = get_emnist_dataset()


def my_model_fn():
    model = tf.keras.models.Sequential(
        [
            tf.keras.layers.Reshape(input_shape=(28, 28, 1), target_shape=(28 * 28,)),
            tf.keras.layers.Dense(200, activation=tf.nn.relu),
            tf.keras.layers.Dense(200, activation=tf.nn.relu),
            tf.keras.layers.Dense(10),
        ]
    )
    return tff.learning.models.from_keras_model(
        keras_model=model,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=test_data.element_spec,
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )


total_clients = len(train_data.client_ids)


def train(rounds, noise_multiplier, clients_per_round, data_frame):
    """The tutorial's training loop; `data_frame` is a list of rows (the tutorial's pandas
    `DataFrame.append` is gone from pandas 2)."""
    # Using the `dp_aggregator` here turns on differential privacy with adaptive clipping.
    aggregation_factory = tff.learning.model_update_aggregator.dp_aggregator(
        noise_multiplier, clients_per_round
    )

    # Poisson subsampling: the number of clients per round is random, with mean clients_per_round.
    sampling_prob = clients_per_round / total_clients

    learning_process = tff.learning.algorithms.build_unweighted_fed_avg(
        my_model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.01),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0, momentum=0.9),
        model_aggregator=aggregation_factory,
    )

    eval_process = tff.learning.build_federated_evaluation(my_model_fn)

    state = learning_process.initialize()
    rng = np.random.default_rng(1)
    for round in range(rounds):
        if round % 5 == 0:
            model_weights = learning_process.get_model_weights(state)
            metrics = eval_process(model_weights, [test_data])["eval"]
            data_frame.append({"Round": round, "NoiseMultiplier": noise_multiplier, **metrics})

        x = rng.uniform(size=total_clients)
        sampled_clients = [
            train_data.client_ids[i] for i in range(total_clients) if x[i] < sampling_prob
        ]
        sampled_train_data = [
            train_data.create_tf_dataset_for_client(client) for client in sampled_clients
        ]

        result = learning_process.next(state, sampled_train_data)
        state = result.state
        metrics = result.metrics

    model_weights = learning_process.get_model_weights(state)
    metrics = eval_process(model_weights, [test_data])["eval"]
    data_frame.append({"Round": rounds, "NoiseMultiplier": noise_multiplier, **metrics})
    return data_frame, result


def test_dp_fedavg_runs_for_each_noise_multiplier():
    data_frame = []
    rounds, clients_per_round = 6, 6
    for noise_multiplier in [0.0, 0.5]:
        data_frame, last = train(rounds, noise_multiplier, clients_per_round, data_frame)
        aggregator = last.metrics["aggregator"]
        assert set(aggregator) == {"zeroing", "zeroing_norm", "zeroed_count"}
        assert aggregator["zeroing"]["dp_query_metrics"]["clip"] > 0
    assert [row["Round"] for row in data_frame] == [0, 5, 6, 0, 5, 6]
    for row in data_frame:
        assert np.isfinite(row["loss"])
        assert 0.0 <= row["sparse_categorical_accuracy"] <= 1.0
    without_noise = [row for row in data_frame if row["NoiseMultiplier"] == 0.0]
    # Without noise, DP-FedAvg learns: the loss falls from the untrained model's.
    assert without_noise[-1]["loss"] < without_noise[0]["loss"]


def test_calibrating_clients_per_round_for_a_target_epsilon():
    total_clients = 3383
    noise_to_clients_ratio = 0.01
    target_delta = 1e-5
    target_eps = 2
    rounds = 100

    make_fresh_accountant = dp_accounting.rdp.RdpAccountant

    def make_event_from_param(clients_per_round):
        q = clients_per_round / total_clients
        noise_multiplier = clients_per_round * noise_to_clients_ratio
        gaussian_event = dp_accounting.GaussianDpEvent(noise_multiplier)
        sampled_event = dp_accounting.PoissonSampledDpEvent(q, gaussian_event)
        composed_event = dp_accounting.SelfComposedDpEvent(sampled_event, rounds)
        return composed_event

    bracket_interval = dp_accounting.ExplicitBracketInterval(1, total_clients)
    clients_per_round = dp_accounting.calibrate_dp_mechanism(
        make_fresh_accountant,
        make_event_from_param,
        target_eps,
        target_delta,
        bracket_interval,
        discrete=True,
    )
    noise_multiplier = clients_per_round * noise_to_clients_ratio
    # fed's accounting of the same run agrees with dp-accounting's, and the calibrated run is within
    # budget while one client fewer is not.
    spent = tff.aggregators.dp.epsilon(
        noise_multiplier, clients_per_round, total_clients, rounds, target_delta
    )
    assert spent <= target_eps
    fewer = clients_per_round - 1
    assert (
        tff.aggregators.dp.epsilon(
            fewer * noise_to_clients_ratio, fewer, total_clients, rounds, target_delta
        )
        > target_eps
    )


def test_accounted_training_reports_epsilon_and_stops_at_the_budget():
    noise_multiplier, clients_per_round, delta = 0.5, 12, 1e-3
    learning_process = tff.learning.algorithms.build_unweighted_fed_avg(
        my_model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.01),
        model_aggregator=tff.learning.dp_aggregator(noise_multiplier, clients_per_round),
    )
    options = dict(
        noise_multiplier=noise_multiplier,
        clients_per_round=clients_per_round,
        population=total_clients,
        target_delta=delta,
    )
    budget = tff.aggregators.dp.epsilon(rounds=2, **options) * 1.0001
    process = tff.aggregators.dp.PrivacyAccountedProcess(
        learning_process, epsilon_budget=budget, **options
    )
    state = process.initialize()
    sample = [train_data.create_tf_dataset_for_client(c) for c in train_data.client_ids]
    spent = []
    for _ in range(2):
        output = process.next(state, sample)
        state = output.state
        spent.append(output.metrics["privacy"]["epsilon"])
    assert spent[0] < spent[1] <= budget
    with pytest.raises(tff.aggregators.dp.PrivacyBudgetExceededError):
        process.next(state, sample)
    # The held state still trains, in a process that accounts afresh.
    assert process.get_model_weights(state).trainable[0].shape == (784, 200)
