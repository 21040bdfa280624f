"""What a new user gets from fed.learning's entry points for wrong, empty, non-finite, extreme and malformed
inputs: an error of the right type, raised before anything runs where it can be, whose message says what
was expected and what was given."""

import asyncio
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_learning import (
    algorithms,
    models,
    optimizers,
    program,
    programs,
    simulation,
    templates,
)
from fed_learning import model_update_aggregator as aggregators
from fed_types import TensorType

SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))
SGD = optimizers.build_sgdm(0.1)


def _keras():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def model_fn():
    return models.from_keras_model(_keras(), keras.losses.MeanSquaredError(), SPEC)


def _wrap(**kwargs):
    arguments = dict(keras_model=_keras(), loss=keras.losses.MeanSquaredError(), input_spec=SPEC)
    arguments.update(kwargs)
    return models.from_keras_model(**arguments)


def _data(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(2)


GOOD = _data(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32))


class _Round:
    """A FedAvg process and its initial state, built once for the cases that need them."""

    @functools.cached_property
    def process(self):
        return algorithms.build_weighted_fed_avg(model_fn, SGD)

    @functools.cached_property
    def state(self):
        return self.process.initialize()


ROUND = _Round()
ADAM_STATE = optimizers.build_adam(0.1).initialize([tf.TensorSpec([2], tf.float32)])
WEIGHTS_TYPE = models.ModelWeights(
    [TensorType(np.float32, [2, 1]), TensorType(np.float32, [1])], []
)


def _finalizer(should_reject_update):
    return templates.build_apply_optimizer_finalizer(
        SGD, WEIGHTS_TYPE, should_reject_update=should_reject_update
    )


def _mse(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred))


def _flat_predictions_model_fn():
    keras_model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1), keras.layers.Reshape(())]
    )
    return models.from_keras_model(keras_model, _mse, SPEC)


def _train_model(**kwargs):
    arguments = dict(
        train_process=ROUND.process,
        train_data_source=None,
        train_per_round_clients=1,
        train_total_rounds=1,
        program_state_manager=None,
        model_output_manager=None,
    )
    arguments.update(kwargs)
    return asyncio.run(programs.train_model(**arguments))


def case(call, error, *fragments, id):
    return pytest.param(call, error, fragments, id=id)


MODELS = [
    case(lambda: _wrap(keras_model="model"), TypeError, "keras.Model", "str", id="model-not-keras"),
    case(lambda: _wrap(loss=None), TypeError, "loss is required", "Got None", id="loss-none"),
    case(lambda: _wrap(loss="msee"), ValueError, "Unknown Keras loss name 'msee'", id="loss-name"),
    case(lambda: _wrap(loss=3), TypeError, "loss must be a Keras loss", "got 3", id="loss-int"),
    case(
        lambda: _wrap(loss=["mse", "mae"]),
        ValueError,
        "Got 2 losses",
        "1 outputs",
        id="losses-more-than-outputs",
    ),
    case(
        lambda: _wrap(loss_weights=[1.0]),
        ValueError,
        "loss_weights can only be given with a list of losses",
        id="loss-weights-without-list",
    ),
    case(
        lambda: _wrap(metrics=keras.metrics.MeanSquaredError()),
        TypeError,
        "single MeanSquaredError metric",
        "[MeanSquaredError(...)]",
        id="metric-not-in-list",
    ),
    case(
        lambda: _wrap(metrics=[keras.metrics.mean_squared_error]),
        TypeError,
        "'mean_squared_error'",
        "MeanMetricWrapper",
        id="metric-function",
    ),
    case(
        lambda: _wrap(metrics=["accuracy"]),
        TypeError,
        "Keras 3 metric",
        "'accuracy'",
        id="metric-str",
    ),
    case(
        lambda: _wrap(metrics=[keras.metrics.MeanSquaredError(), keras.metrics.MeanSquaredError()]),
        ValueError,
        "unique",
        "mean_squared_error",
        id="metric-twice",
    ),
    case(
        lambda: _wrap(input_spec=SPEC[0]), ValueError, "(x, y)", "TensorSpec", id="spec-not-a-pair"
    ),
    case(
        lambda: _wrap(input_spec={"x": SPEC[0]}),
        ValueError,
        "'x' and 'y'",
        "missing ['y']",
        id="spec-mapping-without-y",
    ),
    case(
        lambda: _wrap(input_spec=(tf.TensorSpec([None, 5], tf.float32), SPEC[1])),
        ValueError,
        "the model takes <float32[?,2]>",
        "input_spec gives <float32[?,5]>",
        id="spec-other-features",
    ),
    case(
        lambda: _wrap(input_spec=(tf.TensorSpec([None, 2, 1], tf.float32), SPEC[1])),
        ValueError,
        "<float32[?,2]>",
        "<float32[?,2,1]>",
        id="spec-other-rank",
    ),
    case(
        lambda: _wrap(input_spec=((SPEC[0], SPEC[0]), SPEC[1])),
        ValueError,
        "takes 1 input(s)",
        "gives 2",
        id="spec-two-inputs",
    ),
    case(
        lambda: _wrap(input_spec=(np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32))),
        TypeError,
        "tf.TensorSpec",
        "ndarray",
        id="spec-of-arrays",
    ),
    case(
        lambda: models.from_compiled_keras_model(_keras(), (np.ones((1, 2)), np.ones((1, 1)))),
        ValueError,
        "needs a compiled Keras model",
        id="compiled-not-compiled",
    ),
    case(
        lambda: models.functional_model_from_keras(_keras(), None, SPEC),
        TypeError,
        "loss is required",
        id="functional-loss-none",
    ),
    case(
        lambda: models.FunctionalModel([np.zeros(2)], lambda w, x, t: x, _mse, SPEC),
        TypeError,
        "pair (trainable, non_trainable)",
        id="functional-weights-not-a-pair",
    ),
    case(
        lambda: models.FunctionalModel(((), ()), None, _mse, SPEC),
        TypeError,
        "predict_on_batch_fn must be callable",
        "None",
        id="functional-predict-none",
    ),
    case(
        lambda: models.ModelWeights.from_model("model"),
        TypeError,
        "Keras model or a VariableModel",
        "str",
        id="weights-from-str",
    ),
    case(
        lambda: models.ModelWeights([np.zeros(3)], []).assign_weights_to(_keras()),
        ValueError,
        "<trainable=<float32[2,1],float32[1]>",
        "<trainable=<float64[3]>",
        id="weights-of-another-model",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(_flat_predictions_model_fn, SGD),
        ValueError,
        "labels are float32[?,1]",
        "predictions float32[?]",
        "broadcast",
        id="labels-broadcast-against-predictions",
    ),
]

ALGORITHMS = [
    case(
        lambda: algorithms.build_weighted_fed_avg(_keras, SGD),
        TypeError,
        "model function returning a VariableModel",
        "Sequential",
        id="model-fn-returns-keras",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(None, SGD),
        TypeError,
        "got None",
        id="model-fn-none",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, 0.1),
        TypeError,
        "fed optimizer",
        "got 0.1",
        id="optimizer-float",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, keras.optimizers.SGD(0.1)),
        TypeError,
        "Keras optimizer instance (SGD)",
        "lambda: keras.optimizers.SGD(...)",
        id="optimizer-keras-instance",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, SGD, server_optimizer_fn="adam"),
        TypeError,
        "fed optimizer",
        "'adam'",
        id="server-optimizer-str",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, SGD, client_weighting="uniform"),
        TypeError,
        "ClientWeighting",
        "'uniform'",
        id="client-weighting-str",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(
            model_fn, SGD, model_aggregator=aggregators.robust_aggregator(weighted=False)
        ),
        TypeError,
        "weighted model_aggregator",
        "unweighted",
        id="weighted-with-unweighted-aggregator",
    ),
    case(
        lambda: algorithms.build_fed_sgd(model_fn, model_aggregator="mean"),
        TypeError,
        "aggregation factory",
        "'mean'",
        id="aggregator-str",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, SGD, model_distributor=3),
        TypeError,
        "DistributionProcess",
        "got 3",
        id="distributor-int",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, SGD, metrics_aggregator=3),
        TypeError,
        "metrics_aggregator must be a function",
        "got 3",
        id="metrics-aggregator-int",
    ),
    case(
        lambda: algorithms.build_weighted_fed_prox(model_fn, -1.0, SGD),
        ValueError,
        "finite float >= 0",
        "-1.0",
        id="prox-negative",
    ),
    case(
        lambda: algorithms.build_unweighted_fed_prox(model_fn, float("nan"), SGD),
        ValueError,
        "finite float >= 0",
        "nan",
        id="prox-nan",
    ),
    case(
        lambda: algorithms.build_weighted_fed_prox(model_fn, "0.1", SGD),
        TypeError,
        "float >= 0",
        "str '0.1'",
        id="prox-str",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, SGD, measure_timing="yes"),
        TypeError,
        "measure_timing must be a bool",
        "'yes'",
        id="measure-timing-str",
    ),
    case(
        lambda: algorithms.build_weighted_fed_avg(model_fn, SGD, loop_implementation="fast"),
        TypeError,
        "LoopImplementation",
        "'fast'",
        id="loop-implementation-str",
    ),
    case(
        lambda: algorithms.build_fed_sgd(model_fn, client_failure=None),
        ValueError,
        "['raise', 'drop']",
        "None",
        id="client-failure-none",
    ),
    case(
        lambda: algorithms.build_federated_averaging_process(
            model_fn, aggregation_process=1, model_update_aggregation_factory=2
        ),
        ValueError,
        "not both",
        id="legacy-two-aggregators",
    ),
    case(
        lambda: algorithms.build_fed_eval(3), TypeError, "FunctionalModel", "3", id="eval-model-int"
    ),
    case(
        lambda: algorithms.build_fedbuff(model_fn, SGD, buffer_size=0),
        ValueError,
        "buffer_size must be an int >= 1, got 0",
        id="fedbuff-buffer-size-0",
    ),
    case(
        lambda: algorithms.build_fedbuff(model_fn, SGD, max_concurrency=-2),
        ValueError,
        "max_concurrency must be an int >= 1, got -2",
        id="fedbuff-negative-concurrency",
    ),
    case(
        lambda: algorithms.build_fedbuff(model_fn, SGD, staleness_weighting="linear"),
        ValueError,
        "['inverse_sqrt', 'constant', 'polynomial']",
        "'linear'",
        id="fedbuff-unknown-staleness",
    ),
    case(
        lambda: algorithms.build_fedbuff(model_fn, SGD, buffer_size=2.5),
        TypeError,
        "buffer_size must be an int >= 1, got float 2.5",
        id="fedbuff-buffer-size-float",
    ),
    case(
        lambda: simulation.load_availability_trace("trace.xml"),
        ValueError,
        "must be a .csv or .json file",
        "'trace.xml'",
        id="trace-extension",
    ),
    case(
        lambda: simulation.ClientPopulation(["a", "b"], [0.1, -1.0]),
        ValueError,
        "seconds_per_example[1] must be a finite number > 0.0, got -1.0",
        id="population-negative-speed",
    ),
]

ROUNDS = [
    case(
        lambda: ROUND.process.next(ROUND.state, GOOD),
        TypeError,
        ".client_data",
        "a list with one member per client",
        id="data-not-a-list",
    ),
    case(
        lambda: ROUND.process.next(ROUND.state, []),
        ValueError,
        "at least one client",
        "empty list",
        id="data-no-clients",
    ),
    case(
        lambda: ROUND.process.next(ROUND.state, [np.ones((4, 2), np.float32)]),
        TypeError,
        "expected <float32[?,2],float32[?,1]> at .client_data[client 0][0]",
        "given float32[2]",
        id="data-array-not-dataset",
    ),
    case(
        lambda: ROUND.process.next(
            ROUND.state, [GOOD, _data(np.ones((4, 3), np.float32), np.ones((4, 1), np.float32))]
        ),
        TypeError,
        "expected <float32[?,2],float32[?,1]>* at .client_data[client 1]",
        "given <float32[?,3],float32[?,1]>*",
        id="data-other-features",
    ),
    case(
        lambda: ROUND.process.next(
            ROUND.state, [_data(np.ones((4, 2)), np.ones((4, 1), np.float32))]
        ),
        TypeError,
        "given <float64[?,2],float32[?,1]>*",
        id="data-float64",
    ),
    case(
        lambda: ROUND.process.next(
            ROUND.state, [tf.data.Dataset.from_tensor_slices((np.ones((4, 2), np.float32),) * 2)]
        ),
        TypeError,
        "given <float32[2],float32[2]>*",
        id="data-not-batched",
    ),
    case(
        lambda: ROUND.process.next(None, [GOOD]),
        TypeError,
        "at .state",
        "NoneType",
        id="state-none",
    ),
    case(
        lambda: ROUND.process.set_model_weights(ROUND.state, ([np.zeros((3, 1))], [])),
        ValueError,
        "it holds <trainable=<float32[2,1],float32[1]>",
        "the weights given are <trainable=<float64[3,1]>",
        id="set-weights-of-another-model",
    ),
    case(
        lambda: ROUND.process.set_model_weights(
            ROUND.state, ([np.full((2, 1), np.nan, np.float32), np.zeros(1, np.float32)], [])
        ),
        ValueError,
        "must be finite",
        "trainable[0] (float32[2,1]) holds NaN or Inf",
        id="set-weights-nan",
    ),
    case(
        lambda: ROUND.process.set_model_weights(ROUND.state, "weights"),
        TypeError,
        "(trainable, non_trainable) pair",
        "str",
        id="set-weights-str",
    ),
    case(
        lambda: ROUND.process.get_model_weights(None),
        TypeError,
        "a state of this process",
        "NoneType",
        id="get-weights-of-none",
    ),
]

OPTIMIZERS = [
    case(
        lambda: optimizers.build_sgdm(-0.1),
        ValueError,
        "learning_rate",
        "-0.1",
        id="sgd-lr-negative",
    ),
    case(lambda: optimizers.build_sgdm(float("inf")), ValueError, "finite", "inf", id="sgd-lr-inf"),
    case(
        lambda: optimizers.build_sgdm("0.1"), TypeError, "learning_rate", "'0.1'", id="sgd-lr-str"
    ),
    case(
        lambda: optimizers.build_sgdm(0.1, momentum=2.0),
        ValueError,
        "momentum",
        "[0, 1)",
        "2.0",
        id="sgd-momentum-2",
    ),
    case(
        lambda: optimizers.build_adam(0.1, beta_1=1.5), ValueError, "beta_1", "1.5", id="adam-beta"
    ),
    case(
        lambda: optimizers.build_adam(0.1, epsilon=-1.0),
        ValueError,
        "epsilon",
        "-1.0",
        id="adam-eps",
    ),
    case(
        lambda: optimizers.build_rmsprop(0.1, decay=2.0),
        ValueError,
        "decay",
        "2.0",
        id="rmsprop-decay",
    ),
    case(
        lambda: optimizers.build_adamw(0.1, weight_decay=float("nan")),
        ValueError,
        "weight_decay",
        "nan",
        id="adamw-decay-nan",
    ),
    case(
        lambda: optimizers.build_adam(0.1).initialize([np.zeros(2)]),
        TypeError,
        "tf.TensorSpec",
        id="adam-initialize-arrays",
    ),
    case(
        lambda: optimizers.build_adam(0.1).next(ADAM_STATE, [tf.zeros(2)], [tf.zeros(3)]),
        ValueError,
        "gradients at [0] has shape (3,)",
        "weight there has shape (2,)",
        id="gradient-shape",
    ),
    case(
        lambda: optimizers.build_adam(0.1).next(ADAM_STATE, [tf.zeros(2)], [tf.zeros(2)] * 2),
        ValueError,
        "expected 1 elements",
        "got 2",
        id="gradient-structure",
    ),
    case(
        lambda: optimizers.build_adam(0.1).next(ADAM_STATE, [tf.zeros(3)], [tf.zeros(3)]),
        ValueError,
        "has shape (2,)",
        "has shape (3,)",
        id="weights-not-of-the-state",
    ),
    case(
        lambda: optimizers.build_adam(0.1).next({"x": 1}, [tf.zeros(2)], [tf.zeros(2)]),
        ValueError,
        "Adam expects a state with keys",
        "['x']",
        id="state-of-another-optimizer",
    ),
    case(
        lambda: optimizers.build_adam(0.1).set_hparams(ADAM_STATE, {"lr": 1.0}),
        ValueError,
        "no hyperparameters ['lr']",
        "'learning_rate'",
        id="hparams-unknown",
    ),
    case(
        lambda: optimizers.build_adam(0.1).set_hparams(ADAM_STATE, {"learning_rate": np.nan}),
        ValueError,
        "learning_rate",
        "nan",
        id="hparams-nan",
    ),
    case(
        lambda: SGD.next(SGD.initialize([]), [tf.zeros(2, tf.int32)], [tf.zeros(2, tf.int32)]),
        TypeError,
        "floating-point",
        "int32",
        id="integer-weights",
    ),
]

TEMPLATES = [
    case(
        lambda: templates.build_model_delta_client_work(model_fn, SGD, client_weighting="x"),
        TypeError,
        "ClientWeighting",
        "'x'",
        id="client-work-weighting",
    ),
    case(
        lambda: templates.build_model_delta_client_work(model_fn, SGD, client_failure="ignore"),
        ValueError,
        "client_failure",
        "'ignore'",
        id="client-work-failure-policy",
    ),
    case(
        lambda: templates.build_apply_optimizer_finalizer(SGD, TensorType(np.float32, [2])),
        TypeError,
        "ModelWeights",
        "float32[2]",
        id="finalizer-weights-type",
    ),
    case(
        lambda: _finalizer(True),
        TypeError,
        "should_reject_update must be a function",
        id="reject-bool",
    ),
    case(
        lambda: _finalizer(lambda state, update: False),
        TypeError,
        "a pair (reject, measurements)",
        "got False",
        id="reject-returns-bool",
    ),
    case(
        lambda: _finalizer(lambda state, update: (False, [tf.constant(1)])),
        TypeError,
        "dict of tensors (or None)",
        "list",
        id="reject-measurements-list",
    ),
    case(
        lambda: _finalizer(
            lambda state, update: (False, {"model_non_finite": tf.constant(0, tf.int32)})
        ),
        ValueError,
        "'model_non_finite'",
        id="reject-measurement-name-taken",
    ),
    case(
        lambda: templates.compose_learning_process(1, 2, 3, 4, 5),
        TypeError,
        "initial_model_weights_fn must be a Computation",
        "int",
        id="compose-not-parts",
    ),
]

AGGREGATORS = [
    case(
        lambda: aggregators.robust_aggregator(zeroing="yes"),
        TypeError,
        "zeroing must be a bool",
        "'yes'",
        id="robust-flag-str",
    ),
    case(
        lambda: aggregators.secure_aggregator(clipping=None),
        TypeError,
        "clipping must be a bool",
        "None",
        id="secure-flag-none",
    ),
    case(
        lambda: aggregators.compression_aggregator(weighted=1),
        TypeError,
        "weighted must be a bool",
        "1",
        id="compression-flag-int",
    ),
    case(
        lambda: aggregators.robust_aggregator(debug_measurements_fn=lambda factory: 3),
        TypeError,
        "WeightedAggregationFactory",
        "got 3",
        id="debug-fn-result",
    ),
    case(
        lambda: aggregators.dp_aggregator(-1.0, 10),
        ValueError,
        "noise_multiplier must be non-negative",
        "-1.0",
        id="dp-noise-negative",
    ),
    case(
        lambda: aggregators.dp_aggregator(float("nan"), 10),
        ValueError,
        "noise_multiplier",
        "nan",
        id="dp-noise-nan",
    ),
    case(
        lambda: aggregators.dp_aggregator(1.0, 0),
        ValueError,
        "clients_per_round must be positive",
        "0",
        id="dp-no-clients",
    ),
]

PROGRAMS = [
    case(
        lambda: program.ClientDataDataSource([GOOD]),
        TypeError,
        "Expected a ClientData",
        "list",
        id="data-source-list",
    ),
    case(
        lambda: program.FileProgramStateManager(None),
        TypeError,
        "root_dir must be a folder's path",
        "None",
        id="state-manager-no-folder",
    ),
    case(
        lambda: program.FileProgramStateManager("/tmp", keep_total=-1),
        ValueError,
        "keep_total must be an int >= 0",
        "-1",
        id="state-manager-keep-negative",
    ),
    case(
        lambda: program.CSVFileReleaseManager("/tmp/metrics.csv", save_mode="append"),
        TypeError,
        "CSVSaveMode",
        "'append'",
        id="csv-save-mode-str",
    ),
    case(
        lambda: program.GroupingReleaseManager([3]),
        TypeError,
        "release managers",
        "3",
        id="grouping-not-managers",
    ),
    case(
        lambda: program.run_training_process(3, lambda n: [GOOD], 1),
        TypeError,
        "training_process must be an iterative process",
        "3",
        id="loop-not-a-process",
    ),
    case(
        lambda: program.run_training_process(ROUND.process, [GOOD], 1),
        TypeError,
        "training_selection_fn must be a function",
        "list",
        id="loop-selection-list",
    ),
    case(
        lambda: program.run_training_process(ROUND.process, lambda n: [GOOD], 0),
        ValueError,
        "total_rounds must be a positive int",
        "0",
        id="loop-no-rounds",
    ),
    case(
        lambda: _train_model(train_total_rounds=-1),
        ValueError,
        "train_total_rounds must be a positive int",
        "-1",
        id="train-model-negative-rounds",
    ),
    case(
        lambda: _train_model(train_process="fedavg"),
        TypeError,
        "train_process must be a learning process",
        "'fedavg'",
        id="train-model-process-str",
    ),
    case(
        lambda: _train_model(train_data_source=[GOOD]),
        TypeError,
        "train_data_source must be a FederatedDataSource",
        "list",
        id="train-model-data-list",
    ),
    case(
        lambda: programs.EvaluationManager([GOOD], None, None, lambda name: (None, None), 2),
        TypeError,
        "data_source must be a FederatedDataSource",
        "list",
        id="evaluation-data-list",
    ),
    case(
        lambda: programs.EvaluationManager(None, None, None, lambda name: (None, None), 0),
        ValueError,
        "cohort_size must be a positive int",
        "0",
        id="evaluation-no-clients",
    ),
]


@pytest.mark.parametrize(
    "call, error, fragments",
    MODELS + ALGORITHMS + ROUNDS + OPTIMIZERS + TEMPLATES + AGGREGATORS + PROGRAMS,
)
def test_a_bad_input_gets_a_clear_error(call, error, fragments):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    missing = [fragment for fragment in fragments if fragment not in message]
    assert not missing, f"{missing} not in the message: {message}"


def test_a_failed_call_leaves_the_state_usable():
    before = [np.asarray(w) for w in ROUND.process.get_model_weights(ROUND.state).trainable]
    for bad in ([], [np.ones((4, 2), np.float32)], GOOD):
        with pytest.raises((TypeError, ValueError)):
            ROUND.process.next(ROUND.state, bad)
    output = ROUND.process.next(ROUND.state, [GOOD])
    assert output.metrics["client_work"]["train"]["num_examples"] == 4
    after = [np.asarray(w) for w in ROUND.process.get_model_weights(ROUND.state).trainable]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_extreme_but_valid_inputs_train_or_are_counted():
    # Features near the float32 limit make every update non-finite: the client is counted, not averaged.
    huge = _data(np.full((4, 2), 1e30, np.float32), np.ones((4, 1), np.float32))
    output = ROUND.process.next(ROUND.state, [huge, GOOD])
    train = output.metrics["client_work"]["train"]
    assert train["num_non_finite_clients"] == 1
    assert train["num_examples"] == 4
    weights = ROUND.process.get_model_weights(output.state).trainable
    assert all(np.isfinite(w).all() for w in weights)
    # A batch of one example and a client of one example are fine.
    single = _data(np.ones((1, 2), np.float32), np.ones((1, 1), np.float32))
    assert (
        ROUND.process.next(ROUND.state, [single]).metrics["client_work"]["train"]["num_examples"]
        == 1
    )
