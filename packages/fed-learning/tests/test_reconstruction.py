"""Federated Reconstruction: ReconstructionModel, build_fed_recon and build_fed_recon_eval, checked against a
matrix factorization computed by hand with numpy (one reconstruction step and one global step per
client), a few rounds of training on synthetic ratings, and the errors bad input gets."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory, UnweightedMeanFactory
from fed_core.serialization import deserialize_computation, serialize_computation
from fed_core.templates import AggregationProcess
from fed_learning import ClientWeighting, algorithms, models, optimizers
from fed_learning.algorithms._fed_recon import (
    ReconstructionModelSource,
    _build_reconstruction_client_work,
)
from fed_types import CLIENTS, FederatedType, TensorType

ReconstructionModel = models.ReconstructionModel

ITEMS0 = np.array([[0.5, -0.2], [0.1, 0.3], [-0.4, 0.2], [0.3, 0.6]], np.float32)
USER0 = np.array([[0.2, 0.4]], np.float32)
INPUT_SPEC = collections.OrderedDict(
    x=tf.TensorSpec([None, 1], tf.int64), y=tf.TensorSpec([None, 1], tf.float32)
)
RECON_LR, CLIENT_LR, SERVER_LR = 0.1, 0.2, 0.5


class TinyFactorization(ReconstructionModel):
    """A rating is the dot product of a global item vector and the client's local user vector."""

    def __init__(self):
        self.items = tf.Variable(ITEMS0, name="items")
        self.user = tf.Variable(USER0, name="user")

    @property
    def global_trainable_variables(self):
        return [self.items]

    @property
    def global_non_trainable_variables(self):
        return []

    @property
    def local_trainable_variables(self):
        return [self.user]

    @property
    def local_non_trainable_variables(self):
        return []

    @property
    def input_spec(self):
        return INPUT_SPEC

    @tf.function
    def forward_pass(self, batch_input, training=True):
        del training
        item_vectors = tf.gather(self.items, batch_input["x"][:, 0])
        predictions = tf.matmul(item_vectors, self.user, transpose_b=True)
        return models.ReconstructionBatchOutput(
            predictions=predictions,
            labels=batch_input["y"],
            num_examples=tf.shape(batch_input["x"])[0],
        )


class UserEmbedding(keras.layers.Layer):
    """One user's vector, repeated for every example of the batch."""

    def __init__(self, initial, **kwargs):
        super().__init__(**kwargs)
        self.initial = initial

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=self.initial.shape, initializer=keras.initializers.Constant(self.initial)
        )

    def call(self, inputs):
        return keras.ops.repeat(self.embedding, keras.ops.shape(inputs)[0], axis=0)


def keras_factorization(items=ITEMS0, user=USER0):
    """The same model in Keras: the item embedding layer is global, the user embedding local."""
    item_input = keras.layers.Input(shape=[1], dtype="int64")
    item_layer = keras.layers.Embedding(
        items.shape[0], items.shape[1], embeddings_initializer=keras.initializers.Constant(items)
    )
    user_layer = UserEmbedding(user)
    item_vector = keras.layers.Flatten()(item_layer(item_input))
    prediction = keras.layers.Dot(1)([user_layer(item_input), item_vector])
    keras_model = keras.Model(item_input, prediction)
    return ReconstructionModel.from_keras_model_and_layers(
        keras_model, global_layers=[item_layer], local_layers=[user_layer], input_spec=INPUT_SPEC
    )


def _dataset(items, ratings, batch_size):
    return tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(
            x=np.array(items, np.int64).reshape(-1, 1),
            y=np.array(ratings, np.float32).reshape(-1, 1),
        )
    ).batch(batch_size)


# Each client has two batches: by default the first reconstructs, the second trains (or evaluates).
CLIENT_A = ([0, 1, 2, 3], [1.0, 2.0, 3.0, 1.0], 2)
CLIENT_B = ([1, 3, 2, 0], [4.0, 2.0, 5.0, 2.0], 3)


def _batches(items, ratings, batch_size):
    items = np.array(items).reshape(-1, 1)
    ratings = np.array(ratings, np.float64).reshape(-1, 1)
    return [
        (items[i : i + batch_size, 0], ratings[i : i + batch_size])
        for i in range(0, len(items), batch_size)
    ]


def client_by_hand(items, client, recon_lr=RECON_LR, client_lr=CLIENT_LR):
    """(reconstructed user vector, update of the items, post-reconstruction loss, absolute errors,
    number of post-reconstruction examples), with plain SGD on the mean squared error."""
    (recon_x, recon_y), (post_x, post_y) = _batches(*client)
    items = items.astype(np.float64)
    user = USER0.astype(np.float64)
    residual = items[recon_x] @ user.T - recon_y
    user = user - recon_lr * 2 / len(recon_y) * (residual.T @ items[recon_x])
    predictions = items[post_x] @ user.T
    residual = predictions - post_y
    gradient = np.zeros_like(items)
    np.add.at(gradient, post_x, 2 / len(post_y) * residual * user)
    update = client_lr * gradient
    return user, update, np.mean(residual**2), np.abs(residual).ravel(), len(post_y)


def metrics_fn():
    return [keras.metrics.MeanAbsoluteError()]


def loss_fn():
    return keras.losses.MeanSquaredError()


def _training_process(model_fn, **kwargs):
    options = dict(
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        server_optimizer_fn=optimizers.build_sgdm(SERVER_LR),
        client_optimizer_fn=optimizers.build_sgdm(CLIENT_LR),
        reconstruction_optimizer_fn=optimizers.build_sgdm(RECON_LR),
    )
    options.update(kwargs)
    return algorithms.build_fed_recon(model_fn, **options)


@pytest.mark.parametrize(
    "model_fn", [TinyFactorization, keras_factorization], ids=["custom", "keras"]
)
def test_one_round_matches_the_hand_computation(model_fn):
    process = _training_process(model_fn)
    state = process.initialize()
    np.testing.assert_array_equal(process.get_model_weights(state).trainable[0], ITEMS0)
    state, metrics = process.next(state, [_dataset(*CLIENT_A), _dataset(*CLIENT_B)])

    _, update_a, loss_a, errors_a, n_a = client_by_hand(ITEMS0, CLIENT_A)
    _, update_b, loss_b, errors_b, n_b = client_by_hand(ITEMS0, CLIENT_B)
    assert (n_a, n_b) == (2, 1)
    mean_update = (n_a * update_a + n_b * update_b) / (n_a + n_b)
    expected_items = ITEMS0 - SERVER_LR * mean_update
    new_items = process.get_model_weights(state).trainable[0]
    np.testing.assert_allclose(new_items, expected_items, rtol=1e-5, atol=1e-7)
    assert not np.allclose(new_items, ITEMS0)

    train = metrics["client_work"]["train"]
    assert list(train) == ["mean_absolute_error", "loss"]
    # `loss` is the mean of the post-reconstruction batches' losses; MAE is over their examples.
    np.testing.assert_allclose(train["loss"], (loss_a + loss_b) / 2, rtol=1e-5)
    np.testing.assert_allclose(
        train["mean_absolute_error"], np.mean(np.concatenate([errors_a, errors_b])), rtol=1e-5
    )
    assert metrics["finalizer"]["update_non_finite"] == 0
    assert list(metrics) == ["distributor", "client_work", "aggregator", "finalizer"]


def test_a_round_serializes_and_runs_restored():
    """The models are built inside the computations: the round ships without the Python classes."""
    process = _training_process(keras_factorization)
    state = process.initialize()
    restored = deserialize_computation(serialize_computation(process.next))
    got = restored(state, [_dataset(*CLIENT_A), _dataset(*CLIENT_B)])
    want = process.next(state, [_dataset(*CLIENT_A), _dataset(*CLIENT_B)])
    np.testing.assert_allclose(
        got.state.global_model_weights.trainable[0], want.state.global_model_weights.trainable[0]
    )
    assert got.metrics["client_work"]["train"] == want.metrics["client_work"]["train"]


def test_the_defaults_are_tffs():
    # SGD with learning rates 0.1 (reconstruction), 0.1 (clients) and 1.0 (server); the even batches
    # reconstruct and the odd ones train.
    process = algorithms.build_fed_recon(TinyFactorization, loss_fn=loss_fn)
    state = process.initialize()
    assert float(state.finalizer["learning_rate"]) == 1.0
    state, metrics = process.next(state, [_dataset(*CLIENT_A)])
    _, update, loss, _, _ = client_by_hand(ITEMS0, CLIENT_A, recon_lr=0.1, client_lr=0.1)
    np.testing.assert_allclose(
        process.get_model_weights(state).trainable[0], ITEMS0 - update, rtol=1e-5, atol=1e-7
    )
    assert list(metrics["client_work"]["train"]) == ["loss"]
    np.testing.assert_allclose(metrics["client_work"]["train"]["loss"], loss, rtol=1e-5)


def test_a_metrics_aggregator_gets_the_finalizers_and_the_metrics_type():
    seen = {}

    def largest_client_loss(metric_finalizers, local_unfinalized_metrics_type):
        seen["names"] = list(metric_finalizers)
        seen["type"] = str(local_unfinalized_metrics_type)

        @ftf.computation(local_unfinalized_metrics_type)
        def client_loss(metrics):
            return metric_finalizers["loss"](metrics["loss"])

        @fc.federated_computation(FederatedType(local_unfinalized_metrics_type, CLIENTS))
        def aggregate(values):
            losses = fc.federated_map(client_loss, values)
            return fc.federated_aggregate(losses, np.float32(0.0), tf_max, tf_max, identity_float32)

        return aggregate

    @ftf.computation(np.float32, np.float32)
    def tf_max(a, b):
        return tf.maximum(a, b)

    @ftf.computation(np.float32)
    def identity_float32(a):
        return a

    process = _training_process(TinyFactorization, metrics_aggregator=largest_client_loss)
    _, metrics = process.next(process.initialize(), [_dataset(*CLIENT_A), _dataset(*CLIENT_B)])
    assert seen == {
        "names": ["mean_absolute_error", "loss"],
        "type": "<mean_absolute_error=<float32,float32>,loss=<float32,float32>>",
    }
    loss_a = client_by_hand(ITEMS0, CLIENT_A)[2]
    loss_b = client_by_hand(ITEMS0, CLIENT_B)[2]
    np.testing.assert_allclose(metrics["client_work"]["train"], max(loss_a, loss_b), rtol=1e-5)


def test_uniform_weighting_averages_clients_equally():
    process = _training_process(TinyFactorization, client_weighting=ClientWeighting.UNIFORM)
    state, _ = process.next(process.initialize(), [_dataset(*CLIENT_A), _dataset(*CLIENT_B)])
    update_a = client_by_hand(ITEMS0, CLIENT_A)[1]
    update_b = client_by_hand(ITEMS0, CLIENT_B)[1]
    np.testing.assert_allclose(
        process.get_model_weights(state).trainable[0],
        ITEMS0 - SERVER_LR * (update_a + update_b) / 2,
        rtol=1e-5,
        atol=1e-7,
    )


def test_client_weighting_function_gets_the_unfinalized_metrics():
    seen = []

    def weight_by_total_abs_error(metrics):
        seen.append(list(metrics))
        return metrics["mean_absolute_error"][0]  # the sum of the absolute errors

    process = _training_process(TinyFactorization, client_weighting=weight_by_total_abs_error)
    state, _ = process.next(process.initialize(), [_dataset(*CLIENT_A), _dataset(*CLIENT_B)])
    assert seen == [["mean_absolute_error", "loss"]]
    _, update_a, _, errors_a, _ = client_by_hand(ITEMS0, CLIENT_A)
    _, update_b, _, errors_b, _ = client_by_hand(ITEMS0, CLIENT_B)
    w_a, w_b = errors_a.sum(), errors_b.sum()
    np.testing.assert_allclose(
        process.get_model_weights(state).trainable[0],
        ITEMS0 - SERVER_LR * (w_a * update_a + w_b * update_b) / (w_a + w_b),
        rtol=1e-5,
        atol=1e-7,
    )


def test_local_variables_never_leave_the_client():
    source = ReconstructionModelSource(TinyFactorization)
    client_work = _build_reconstruction_client_work(
        source,
        loss_fn,
        metrics_fn,
        optimizers.build_sgdm(CLIENT_LR),
        optimizers.build_sgdm(RECON_LR),
        ReconstructionModel.build_dataset_split_fn(split_dataset=True),
        ClientWeighting.NUM_EXAMPLES,
        None,
    )
    # What a client sends: the update of the item matrix and its weight; the user vector (float32[1,2])
    # is in none of the process's types.
    result_type = client_work.next.type_signature.result.result
    assert str(result_type) == "{<update=<float32[4,2]>,update_weight=float32>}@CLIENTS"
    process = _training_process(TinyFactorization)
    for signature in (process.initialize.type_signature, process.next.type_signature):
        assert "float32[1,2]" not in str(signature)
    assert str(process.next.type_signature.parameter[0].member.global_model_weights) == (
        "<trainable=<float32[4,2]>,non_trainable=<>>"
    )


def test_a_client_with_a_non_finite_update_is_left_out():
    bad_client = ([0, 1, 2, 3], [1.0, 2.0, np.nan, 1.0], 2)
    process = _training_process(TinyFactorization)
    state, metrics = process.next(
        process.initialize(), [_dataset(*bad_client), _dataset(*CLIENT_B)]
    )
    update_b = client_by_hand(ITEMS0, CLIENT_B)[1]
    np.testing.assert_allclose(
        process.get_model_weights(state).trainable[0],
        ITEMS0 - SERVER_LR * update_b,
        rtol=1e-5,
        atol=1e-7,
    )
    assert metrics["finalizer"]["update_non_finite"] == 0


def test_a_model_without_local_variables_trains_as_federated_averaging():
    class ItemsOnly(TinyFactorization):
        @property
        def global_non_trainable_variables(self):
            return [self.user]

        @property
        def local_trainable_variables(self):
            return []

    assert ReconstructionModel.has_only_global_variables(ItemsOnly())
    assert not ReconstructionModel.has_only_global_variables(TinyFactorization())
    process = _training_process(ItemsOnly)
    state, _ = process.next(process.initialize(), [_dataset(*CLIENT_A)])
    # No reconstruction: the user vector stays USER0, which a zero reconstruction rate also gives.
    _, update, _, _, _ = client_by_hand(ITEMS0, CLIENT_A, recon_lr=0.0)
    weights = process.get_model_weights(state)
    np.testing.assert_allclose(weights.trainable[0], ITEMS0 - SERVER_LR * update, rtol=1e-5)
    np.testing.assert_array_equal(weights.non_trainable[0], USER0)


def test_evaluation_reconstructs_then_evaluates_and_accumulates_rounds():
    evaluation = algorithms.build_fed_recon_eval(
        keras_factorization,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        reconstruction_optimizer_fn=optimizers.build_sgdm(RECON_LR),
    )
    items = ITEMS0 * 2.0
    state = evaluation.set_model_weights(evaluation.initialize(), models.ModelWeights([items], []))
    state, first = evaluation.next(state, [_dataset(*CLIENT_A)])
    state, second = evaluation.next(state, [_dataset(*CLIENT_B)])
    np.testing.assert_array_equal(evaluation.get_model_weights(state).trainable[0], items)

    _, _, loss_a, errors_a, _ = client_by_hand(items, CLIENT_A)
    _, _, loss_b, errors_b, _ = client_by_hand(items, CLIENT_B)
    first_eval, second_eval = first["client_work"]["eval"], second["client_work"]["eval"]
    assert list(first_eval) == ["current_round_metrics", "total_rounds_metrics"]
    np.testing.assert_allclose(first_eval["current_round_metrics"]["loss"], loss_a, rtol=1e-5)
    np.testing.assert_allclose(second_eval["current_round_metrics"]["loss"], loss_b, rtol=1e-5)
    np.testing.assert_allclose(
        second_eval["total_rounds_metrics"]["loss"], (loss_a + loss_b) / 2, rtol=1e-5
    )
    np.testing.assert_allclose(
        second_eval["total_rounds_metrics"]["mean_absolute_error"],
        np.mean(np.concatenate([errors_a, errors_b])),
        rtol=1e-5,
    )
    assert str(evaluation.next.type_signature.result.metrics) == (
        "<distributor=<>,client_work=<eval=<current_round_metrics=<mean_absolute_error=float32,"
        "loss=float32>,total_rounds_metrics=<mean_absolute_error=float32,loss=float32>>>,"
        "aggregator=<mean_value=<>,mean_weight=<>>,finalizer=<>>@SERVER"
    )


def _synthetic_ratings(num_clients, num_items, seed):
    """Clients' ratings from a rank-2 model around 3, rounded and clipped to 1..5."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0.0, 0.8, (num_clients, 2))
    items = rng.normal(0.0, 0.8, (num_items, 2))
    datasets = []
    for u in range(num_clients):
        rated = rng.choice(num_items, 16, replace=False)
        ratings = np.clip(np.round(3.0 + items[rated] @ users[u]), 1, 5)
        datasets.append(_dataset(rated, ratings, 4))
    return datasets


def test_training_improves_the_model_and_its_evaluation():
    num_items = 20
    rng = np.random.default_rng(1)

    def model_fn():
        return keras_factorization(
            rng.uniform(-0.1, 0.1, (num_items, 3)).astype(np.float32),
            np.full((1, 3), 0.5, np.float32),
        )

    train_data = _synthetic_ratings(16, num_items, seed=2)
    eval_data = _synthetic_ratings(6, num_items, seed=3)
    process = _training_process(
        model_fn,
        server_optimizer_fn=optimizers.build_sgdm(1.0),
        client_optimizer_fn=optimizers.build_sgdm(0.3),
        reconstruction_optimizer_fn=optimizers.build_sgdm(0.3),
    )
    evaluation = algorithms.build_fed_recon_eval(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        reconstruction_optimizer_fn=optimizers.build_sgdm(0.3),
    )

    def evaluate(state):
        eval_state = evaluation.set_model_weights(
            evaluation.initialize(), process.get_model_weights(state)
        )
        return evaluation.next(eval_state, eval_data).metrics["client_work"]["eval"][
            "current_round_metrics"
        ]

    state = process.initialize()
    before = evaluate(state)
    losses = []
    for _ in range(8):
        state, metrics = process.next(state, train_data)
        losses.append(float(metrics["client_work"]["train"]["loss"]))
    after = evaluate(state)
    print("train loss by round:", losses)
    print("evaluation before:", dict(before), "after:", dict(after))
    # With about 9 at the start, the loss falls below 1 (and the evaluation's near it) in eight rounds.
    assert losses[-1] < 0.2 * losses[0], losses
    assert after["loss"] < 0.2 * before["loss"], (before, after)
    assert after["mean_absolute_error"] < before["mean_absolute_error"]


def test_dataset_split_fn_options():
    dataset = tf.data.Dataset.range(5)

    def values(d):
        return [int(x) for x in d]

    split = ReconstructionModel.build_dataset_split_fn(split_dataset=True)
    assert [values(d) for d in split(dataset)] == [[0, 2, 4], [1, 3]]
    split = ReconstructionModel.build_dataset_split_fn(
        recon_epochs=2, recon_steps_max=7, post_recon_epochs=2, post_recon_steps_max=3
    )
    assert [values(d) for d in split(dataset)] == [[0, 1, 2, 3, 4, 0, 1], [0, 1, 2]]
    same = ReconstructionModel.simple_dataset_split_fn(dataset)
    assert same == (dataset, dataset)
    with pytest.raises(ValueError, match="recon_epochs must be an int >= 0, got -1"):
        ReconstructionModel.build_dataset_split_fn(recon_epochs=-1)


def test_a_custom_dataset_split_is_used():
    # Reconstruct on nothing and train on everything: the user vector stays USER0.
    def train_only(dataset):
        return dataset.take(0), dataset

    process = _training_process(TinyFactorization, dataset_split_fn=train_only)
    client = ([0, 1], [1.0, 2.0], 2)
    state, _ = process.next(process.initialize(), [_dataset(*client)])
    items = ITEMS0.astype(np.float64)
    residual = items[[0, 1]] @ USER0.T - np.array([[1.0], [2.0]])
    gradient = np.zeros_like(items)
    np.add.at(gradient, [0, 1], residual * USER0)  # 2 / batch size 2
    np.testing.assert_allclose(
        process.get_model_weights(state).trainable[0],
        ITEMS0 - SERVER_LR * CLIENT_LR * gradient,
        rtol=1e-5,
        atol=1e-7,
    )


def test_reconstruction_model_helpers():
    model = TinyFactorization()
    global_variables = ReconstructionModel.get_global_variables(model)
    local_variables = ReconstructionModel.get_local_variables(model)
    assert global_variables.trainable == [model.items] and global_variables.non_trainable == []
    assert local_variables.trainable == [model.user] and local_variables.non_trainable == []
    metric = keras.metrics.Mean(name="m")
    metric.update_state([1.0, 3.0])
    read = ReconstructionModel.read_metric_variables([metric])
    assert list(read) == ["m"] and [float(v) for v in read["m"]] == [4.0, 2.0]
    with pytest.raises(ValueError, match="Duplicate metric name 'm'"):
        ReconstructionModel.read_metric_variables([metric, keras.metrics.Mean(name="m")])


# Bad input.


def test_model_fn_must_build_a_reconstruction_model():
    def variable_model_fn():
        return models.from_keras_model(
            keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]),
            loss=keras.losses.MeanSquaredError(),
            input_spec=(tf.TensorSpec([None, 1]), tf.TensorSpec([None, 1])),
        )

    with pytest.raises(
        TypeError, match="must return a fed.learning.models.ReconstructionModel, got "
    ):
        _training_process(variable_model_fn)
    with pytest.raises(TypeError, match="no-argument function that builds a new"):
        _training_process(TinyFactorization())
    shared = TinyFactorization()
    with pytest.raises(ValueError, match="returned the same model twice"):
        _training_process(lambda: shared)


def _keras_parts():
    item_input = keras.layers.Input(shape=[1], dtype="int64")
    item_layer = keras.layers.Embedding(4, 2)
    user_layer = UserEmbedding(USER0)
    item_vector = keras.layers.Flatten()(item_layer(item_input))
    prediction = keras.layers.Dot(1)([user_layer(item_input), item_vector])
    return keras.Model(item_input, prediction), item_layer, user_layer


def test_keras_layers_must_split_the_model_weights():
    keras_model, item_layer, user_layer = _keras_parts()
    with pytest.raises(ValueError, match=r"must hold all of the Keras model's weights; missing \["):
        ReconstructionModel.from_keras_model_and_layers(
            keras_model, global_layers=[item_layer], local_layers=[], input_spec=INPUT_SPEC
        )
    with pytest.raises(
        ValueError,
        match="must be disjoint: .* in both global_trainable_variables and local_trainable",
    ):
        ReconstructionModel.from_keras_model_and_layers(
            keras_model,
            global_layers=[item_layer, user_layer],
            local_layers=[user_layer],
            input_spec=INPUT_SPEC,
        )
    other = keras.layers.Dense(1)
    other.build((None, 2))
    with pytest.raises(ValueError, match="which is not a weight of the Keras model"):
        ReconstructionModel.from_keras_model_and_layers(
            keras_model,
            global_layers=[item_layer],
            local_layers=[user_layer, other],
            input_spec=INPUT_SPEC,
        )
    with pytest.raises(TypeError, match="local_layers must hold Keras layers"):
        ReconstructionModel.from_keras_model_and_layers(
            keras_model, global_layers=[item_layer], local_layers=["user"], input_spec=INPUT_SPEC
        )
    with pytest.raises(TypeError, match=r"Expected a Keras 3 model \(keras.Model\), got Embedding"):
        ReconstructionModel.from_keras_model_and_layers(
            item_layer, global_layers=[item_layer], local_layers=[], input_spec=INPUT_SPEC
        )
    with pytest.raises(ValueError, match="exactly the keys 'x'"):
        ReconstructionModel.from_keras_model_and_layers(
            keras_model,
            global_layers=[item_layer],
            local_layers=[user_layer],
            input_spec={"x": INPUT_SPEC["x"]},
        )
    unbuilt = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(1)])
    model = ReconstructionModel.from_keras_model_and_layers(
        unbuilt,
        global_layers=unbuilt.layers[:1],
        local_layers=unbuilt.layers[1:],
        input_spec=(tf.TensorSpec([None, 2]), tf.TensorSpec([None, 1])),
    )
    assert [tuple(v.shape) for v in model.global_trainable_variables] == [(2, 3), (3,)]
    assert [tuple(v.shape) for v in model.local_trainable_variables] == [(3, 1), (1,)]
    with pytest.raises(ValueError, match="The Keras model must be built"):
        ReconstructionModel.from_keras_model_and_variables(
            keras.Sequential([keras.layers.Dense(1)]),
            global_trainable_variables=[],
            global_non_trainable_variables=[],
            local_trainable_variables=[],
            local_non_trainable_variables=[],
            input_spec=INPUT_SPEC,
        )
    model = ReconstructionModel.from_keras_model_and_variables(
        keras_model,
        global_trainable_variables=item_layer.trainable_weights,
        global_non_trainable_variables=[],
        local_trainable_variables=user_layer.trainable_weights,
        local_non_trainable_variables=[],
        input_spec=INPUT_SPEC,
    )
    assert model.global_trainable_variables == [item_layer.embeddings]
    assert model.local_trainable_variables == [user_layer.embedding]
    # Dropout's seed state is a variable but not a weight: it is in no group.
    with_dropout = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1), keras.layers.Dropout(0.5)]
    )
    assert len(with_dropout.non_trainable_variables) == 1 and not with_dropout.non_trainable_weights
    model = ReconstructionModel.from_keras_model_and_variables(
        with_dropout,
        global_trainable_variables=with_dropout.trainable_variables,
        global_non_trainable_variables=[],
        local_trainable_variables=[],
        local_non_trainable_variables=with_dropout.non_trainable_variables,
        input_spec=(tf.TensorSpec([None, 2]), tf.TensorSpec([None, 1])),
    )
    assert model.local_non_trainable_variables == []


def test_dataset_split_fn_must_return_two_datasets_of_batches():
    with pytest.raises(TypeError, match="must return a pair of tf.data.Datasets"):
        _training_process(TinyFactorization, dataset_split_fn=lambda d: d)
    with pytest.raises(TypeError, match=r"its post-reconstruction dataset has elements int64"):
        _training_process(
            TinyFactorization, dataset_split_fn=lambda d: (d, d.map(lambda batch: batch["x"]))
        )
    with pytest.raises(TypeError, match="must return a pair of tf.data.Datasets"):
        algorithms.build_fed_recon_eval(
            TinyFactorization, loss_fn=loss_fn, dataset_split_fn=lambda d: (d, d, d)
        )


def test_other_bad_arguments():
    with pytest.raises(
        ValueError, match="unweighted model_aggregator_factory needs client_weighting"
    ):
        _training_process(TinyFactorization, model_aggregator_factory=UnweightedMeanFactory())
    process = _training_process(
        TinyFactorization,
        model_aggregator_factory=UnweightedMeanFactory(),
        client_weighting=ClientWeighting.UNIFORM,
    )
    assert process.next.type_signature.parameter[0].member.aggregator is not None
    with pytest.raises(
        TypeError, match="model_aggregator_factory must be a weighted or unweighted"
    ):
        _training_process(TinyFactorization, model_aggregator_factory=MeanFactory().create)
    with pytest.raises(ValueError, match=r"Duplicate metric names \['loss'\]"):
        _training_process(
            TinyFactorization, metrics_fn=lambda: [keras.metrics.MeanSquaredError(name="loss")]
        )
    with pytest.raises(TypeError, match="metrics_fn must return a list of Keras metrics"):
        _training_process(TinyFactorization, metrics_fn=lambda: keras.metrics.MeanSquaredError())
    with pytest.raises(TypeError, match="loss_fn must be a no-argument function"):
        _training_process(TinyFactorization, loss_fn=keras.losses.MeanSquaredError())
    with pytest.raises(TypeError, match="client_weighting must return a numeric scalar, got str"):
        _training_process(TinyFactorization, client_weighting=lambda metrics: tf.constant("w"))
    with pytest.raises(
        TypeError, match="metrics_aggregation_process must be an AggregationProcess"
    ):
        algorithms.build_fed_recon_eval(
            TinyFactorization, loss_fn=loss_fn, metrics_aggregation_process=MeanFactory()
        )
    weighted_mean = MeanFactory().create(TensorType(np.float32), TensorType(np.float32))
    assert isinstance(weighted_mean, AggregationProcess)
    with pytest.raises(TypeError, match="must aggregate the clients' metric states"):
        algorithms.build_fed_recon_eval(
            TinyFactorization, loss_fn=loss_fn, metrics_aggregation_process=weighted_mean
        )
