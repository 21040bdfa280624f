"""Federated Reconstruction (FedRecon): federated learning with partially local models.

Each round, a client receives the global variables, builds its model (so its local variables start
afresh), reconstructs the local variables by training them on one part of its data with the global ones
frozen, then trains the global variables on the other part with the local ones frozen, and sends back the
change of the global trainable variables. The local variables never leave the client: the client's result
holds only the update of the global ones. The server averages the updates and applies them with its
optimizer, as in federated averaging.

After Singhal et al., "Federated Reconstruction: Partially Local Federated Learning" (NeurIPS 2021).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import (
    MeanFactory,
    UnweightedAggregationFactory,
    WeightedAggregationFactory,
)
from fed_core.templates import MeasuredProcessOutput
from fed_learning._client_training import _all_finite, _zeroed_unless
from fed_learning._loops import fold_dataset
from fed_learning.metrics import sum_then_finalize
from fed_learning.models._conversion import as_optimizer
from fed_learning.models._functional import MetricSpec, ModelWeights, keras_metric_spec
from fed_learning.models._reconstruction import (
    ReconstructionDatasetSplitFn,
    ReconstructionModel,
)
from fed_learning.optimizers import Optimizer, build_sgdm
from fed_learning.templates import (
    ClientResult,
    ClientWeighting,
    ClientWorkProcess,
    DistributionProcess,
    LearningProcess,
    build_apply_optimizer_finalizer,
    build_broadcast_process,
    compose_learning_process,
)
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, TensorType, Type

ModelFn = Callable[[], ReconstructionModel]
LossFn = Callable[[], Any]
MetricsFn = Callable[[], list[Any]]
ClientWeightType = ClientWeighting | Callable[[Any], Any]


class ReconstructionModelSource:
    """The model function of a ReconstructionModel, called wherever a model is needed (inside the
    computations, so that every client gets fresh variables). Learns the model's input spec and the
    types of its global weights from the first model it builds."""

    def __init__(self, model_fn: ModelFn):
        if isinstance(model_fn, ReconstructionModel) or not callable(model_fn):
            raise TypeError(
                "model_fn must be a no-argument function that builds a new "
                f"fed.learning.models.ReconstructionModel on every call, got {model_fn!r}."
            )
        self._model_fn = model_fn
        self._last: ReconstructionModel | None = None
        self.input_spec: Any = None
        self.initial_weights = self._initial_weights_computation()
        self.weights_type: Type = self.initial_weights.type_signature.result
        self.data_type = SequenceType(ftf.to_type(self.input_spec))

    def build(self) -> ReconstructionModel:
        """A new model from the model function, checked to be a new ReconstructionModel."""
        model = self._model_fn()
        if not isinstance(model, ReconstructionModel):
            hint = (
                " (a VariableModel or Keras model trains with build_weighted_fed_avg; wrap a Keras model "
                "with ReconstructionModel.from_keras_model_and_layers to split it into global and local "
                "layers)"
                if hasattr(model, "trainable_variables")
                else ""
            )
            raise TypeError(
                "model_fn must return a fed.learning.models.ReconstructionModel, got "
                f"{type(model).__name__}{hint}."
            )
        if model is self._last:
            raise ValueError(
                "model_fn returned the same model twice: it must build a new model, with new variables, "
                "on every call (it is called inside the computations, so that each client gets fresh "
                "local variables)."
            )
        self._last = model
        return model

    def _initial_weights_computation(self) -> fc.Computation:
        @ftf.computation
        def build_initial_model_weights():
            model = self.build()
            self.input_spec = model.input_spec
            weights = ReconstructionModel.get_global_variables(model)
            return ModelWeights(
                [tf.convert_to_tensor(v) for v in weights.trainable],
                [tf.convert_to_tensor(v) for v in weights.non_trainable],
            )

        return build_initial_model_weights

    def build_with_weights(self, weights: Any) -> tuple[ReconstructionModel, ModelWeights]:
        """A new model with its global variables set to `weights` (inside a computation), and its local
        variables, as they start."""
        model = self.build()
        global_variables = ReconstructionModel.get_global_variables(model)
        expected = self.weights_type
        for part in ("trainable", "non_trainable"):
            variables = getattr(global_variables, part)
            values = getattr(weights, part)
            shapes = [tuple(v.shape) for v in variables]
            if shapes != [tuple(t.shape) for t in getattr(expected, part)]:
                raise ValueError(
                    f"model_fn built a model whose global {part} variables have shapes {shapes}, where the "
                    f"first model it built had {getattr(expected, part)}: it must build the same model "
                    "every time."
                )
            for variable, value in zip(variables, values):
                variable.assign(value)
        return model, ReconstructionModel.get_local_variables(model)


def metric_specs(loss_fn: LossFn, metrics_fn: MetricsFn | None) -> tuple[Any, list[MetricSpec]]:
    """The loss (a Keras loss from `loss_fn()`) and the metrics: `metrics_fn()`'s Keras metrics, then
    `loss`, the mean of the batches' losses, as TFF reports them."""
    import keras

    if isinstance(loss_fn, keras.losses.Loss) or not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a no-argument function returning a Keras loss, got {loss_fn!r}."
        )
    loss = loss_fn()
    if not callable(loss):
        raise TypeError(f"loss_fn must return a Keras loss, got {loss!r}.")
    metrics: list[Any] = []
    if metrics_fn is not None:
        if not callable(metrics_fn):
            raise TypeError(
                "metrics_fn must be a no-argument function returning a list of Keras metrics, got "
                f"{metrics_fn!r}."
            )
        metrics = metrics_fn()
        if not isinstance(metrics, (list, tuple)) or not all(
            hasattr(m, "stateless_update_state") for m in metrics
        ):
            raise TypeError(f"metrics_fn must return a list of Keras metrics, got {metrics!r}.")
        metrics = list(metrics)
    metrics.append(keras.metrics.MeanMetricWrapper(loss_fn(), name="loss"))
    names = [m.name for m in metrics]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"Duplicate metric names {repeated} (the metrics are {names}; `loss` is always reported)."
        )
    return loss, [keras_metric_spec(m) for m in metrics]


def split_client_data(
    dataset_split_fn: ReconstructionDatasetSplitFn, dataset: tf.data.Dataset
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """`dataset_split_fn(dataset)`, checked to be two datasets of the client's batches."""
    split = dataset_split_fn(dataset)
    if not (
        isinstance(split, (tuple, list))
        and len(split) == 2
        and all(isinstance(d, tf.data.Dataset) for d in split)
    ):
        raise TypeError(
            "dataset_split_fn must return a pair of tf.data.Datasets (reconstruction data, "
            f"post-reconstruction data), got {split!r}."
        )
    for name, part in zip(("reconstruction", "post-reconstruction"), split):
        if not _same_structure(part.element_spec, dataset.element_spec):
            raise TypeError(
                f"dataset_split_fn must return datasets of the client's batches, "
                f"{ftf.to_type(dataset.element_spec)}; its {name} dataset has elements "
                f"{ftf.to_type(part.element_spec)}."
            )
    return split[0], split[1]


def _same_structure(spec: Any, expected: Any) -> bool:
    try:
        tf.nest.assert_same_structure(spec, expected, check_types=False)
    except (TypeError, ValueError):
        return False
    return all(
        s.dtype == e.dtype and e.shape.is_compatible_with(s.shape)
        for s, e in zip(tf.nest.flatten(spec), tf.nest.flatten(expected))
    )


def _tf_variable(variable: Any) -> Any:
    """The tf.Variable that holds a Keras 3 variable's value (a GradientTape watches only those)."""
    import keras

    return variable.value if isinstance(variable, keras.Variable) else variable


def _read(variables: list[Any]) -> tuple[tf.Tensor, ...]:
    return tuple(tf.convert_to_tensor(v) for v in variables)


def _specs(variables: list[Any]) -> tuple[tf.TensorSpec, ...]:
    return tuple(tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for v in variables)


def num_examples_in(output: Any) -> tf.Tensor:
    """The batch's number of examples: the forward pass's `num_examples`, or the predictions' first
    dimension if it gives None."""
    if output.num_examples is not None:
        return tf.cast(output.num_examples, tf.int64)
    return tf.shape(tf.nest.flatten(output.predictions)[0], out_type=tf.int64)[0]


def train_variables(
    model: ReconstructionModel,
    variables: list[Any],
    dataset: tf.data.Dataset,
    loss: Any,
    optimizer: Optimizer,
    metrics: list[MetricSpec] | None = None,
) -> tuple[tf.Tensor, collections.OrderedDict[str, list[tf.Tensor]]]:
    """One pass of `optimizer` over `dataset` on `variables` alone (the model's other variables stay as
    they are); returns the number of examples seen and, if `metrics` are given, their states over the
    pass."""
    metrics = metrics or []
    sources = [_tf_variable(v) for v in variables]

    def step(carry: Any, batch: Any) -> Any:
        optimizer_state, count, metric_states = carry
        with tf.GradientTape() as tape:
            # A variable made with trainable=False is trained too when it is in the group trained here.
            tape.watch(sources)
            output = model.forward_pass(batch, training=True)
            batch_loss = loss(y_true=output.labels, y_pred=output.predictions)
        gradients = tape.gradient(
            batch_loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        # Dense gradients (a gather gives IndexedSlices), which every optimizer takes.
        gradients = tuple(tf.convert_to_tensor(g) for g in gradients)
        optimizer_state, new_values = optimizer.next(optimizer_state, _read(variables), gradients)
        for variable, value in zip(variables, new_values):
            variable.assign(value)
        n = num_examples_in(output)
        metric_states = tuple(
            spec.update(list(state), output.labels, output.predictions, batch_loss, n)
            for spec, state in zip(metrics, metric_states)
        )
        return optimizer_state, count + n, metric_states

    initial = (
        optimizer.initialize(_specs(variables)),
        tf.constant(0, tf.int64),
        tuple(spec.initial_state() for spec in metrics),
    )
    _, count, metric_states = fold_dataset(dataset, initial, step)
    return count, collections.OrderedDict(
        (spec.name, list(state)) for spec, state in zip(metrics, metric_states)
    )


def reconstruct(
    model: ReconstructionModel,
    local_variables: ModelWeights,
    dataset: tf.data.Dataset,
    loss: Any,
    optimizer: Optimizer,
) -> None:
    """Trains the model's local trainable variables on `dataset` with the global ones frozen (nothing to
    do for a model without local trainable variables)."""
    if local_variables.trainable:
        train_variables(model, list(local_variables.trainable), dataset, loss, optimizer)


def check_client_weighting(client_weighting: Any, aggregator_factory: Any) -> ClientWeightType:
    if client_weighting is None:
        client_weighting = ClientWeighting.NUM_EXAMPLES
    if not (isinstance(client_weighting, ClientWeighting) or callable(client_weighting)):
        raise TypeError(
            "client_weighting must be a fed.learning.ClientWeighting or a function from the client's "
            f"unfinalized metrics to its weight, got {client_weighting!r}."
        )
    if (
        isinstance(aggregator_factory, UnweightedAggregationFactory)
        and client_weighting is not ClientWeighting.UNIFORM
    ):
        raise ValueError(
            "An unweighted model_aggregator_factory needs client_weighting=ClientWeighting.UNIFORM, got "
            f"{client_weighting}."
        )
    return client_weighting


def _client_weight(client_weighting: ClientWeightType, count: tf.Tensor, metrics: Any) -> tf.Tensor:
    if client_weighting is ClientWeighting.NUM_EXAMPLES:
        return tf.cast(count, tf.float32)
    if client_weighting is ClientWeighting.UNIFORM:
        return tf.constant(1.0)
    weight = tf.convert_to_tensor(client_weighting(metrics))
    if weight.shape.rank != 0 or not (weight.dtype.is_floating or weight.dtype.is_integer):
        raise TypeError(
            "client_weighting must return a numeric scalar, got "
            f"{ftf.to_type(tf.TensorSpec(weight.shape, weight.dtype))}."
        )
    return tf.cast(weight, tf.float32)


def aggregate_metrics_with(
    metric_specs: list[MetricSpec], metrics_aggregator: Any, metrics_type: Type
) -> Callable[[Any], Any]:
    """A function, called while tracing, from the clients' metric states to the metrics at SERVER: TFF's
    `metrics_aggregator(metric_finalizers, local_unfinalized_metrics_type)`, by default
    `fed.learning.metrics.sum_then_finalize` (their sum, finalized)."""
    finalizers = collections.OrderedDict((spec.name, spec.finalize) for spec in metric_specs)
    return (metrics_aggregator or sum_then_finalize)(finalizers, metrics_type)


def _build_reconstruction_client_work(
    source: ReconstructionModelSource,
    loss_fn: LossFn,
    metrics_fn: MetricsFn | None,
    client_optimizer: Optimizer,
    reconstruction_optimizer: Optimizer,
    dataset_split_fn: ReconstructionDatasetSplitFn,
    client_weighting: ClientWeightType,
    metrics_aggregator: Any,
) -> ClientWorkProcess:
    loss, specs = metric_specs(loss_fn, metrics_fn)

    @ftf.computation(source.weights_type, source.data_type)
    def client_update(initial_weights, dataset):
        model, local_variables = source.build_with_weights(initial_weights)
        global_trainable = list(ReconstructionModel.get_global_variables(model).trainable)
        recon_data, post_recon_data = split_client_data(dataset_split_fn, dataset)
        reconstruct(model, local_variables, recon_data, loss, reconstruction_optimizer)
        count, metrics = train_variables(
            model, global_trainable, post_recon_data, loss, client_optimizer, specs
        )
        delta = [w0 - w for w0, w in zip(initial_weights.trainable, _read(global_trainable))]
        finite = _all_finite(delta)
        delta = _zeroed_unless(finite, delta)
        weight = tf.where(finite, _client_weight(client_weighting, count, metrics), 0.0)
        update = tf.nest.pack_sequence_as(initial_weights.trainable, delta)
        return ClientResult(update, weight), metrics

    metrics_type = client_update.type_signature.result[1]
    aggregate_metrics = aggregate_metrics_with(specs, metrics_aggregator, metrics_type)

    @fc.federated_computation
    def initialize():
        return fc.federated_value((), SERVER)

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(source.weights_type, CLIENTS),
        FederatedType(source.data_type, CLIENTS),
    )
    def next_fn(state, weights, client_data):
        results = fc.federated_map(client_update, fc.federated_zip((weights, client_data)))
        measurements = fc.federated_zip(
            collections.OrderedDict(train=aggregate_metrics(results[1]))
        )
        return MeasuredProcessOutput(state, results[0], measurements)

    return ClientWorkProcess(initialize, next_fn)


def check_distributor(model_distributor: Any, weights_type: Type) -> DistributionProcess:
    if model_distributor is None:
        return build_broadcast_process(weights_type)
    if not isinstance(model_distributor, DistributionProcess):
        raise TypeError(
            f"model_distributor must be a fed.learning.templates.DistributionProcess, got "
            f"{model_distributor!r}."
        )
    return model_distributor


def build_fed_recon(
    model_fn: ModelFn,
    *,
    loss_fn: LossFn,
    metrics_fn: MetricsFn | None = None,
    server_optimizer_fn: Optimizer | Callable[[], Any] | None = None,
    client_optimizer_fn: Optimizer | Callable[[], Any] | None = None,
    reconstruction_optimizer_fn: Optimizer | Callable[[], Any] | None = None,
    dataset_split_fn: ReconstructionDatasetSplitFn | None = None,
    client_weighting: ClientWeightType | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator_factory: WeightedAggregationFactory
    | UnweightedAggregationFactory
    | None = None,
    metrics_aggregator: Callable[[Any, Type], Any] | None = None,
) -> LearningProcess:
    """Federated Reconstruction's training process, a LearningProcess over the global variables.

    Args:
        model_fn: a no-argument function building a new ReconstructionModel on every call.
        loss_fn: a no-argument function returning a Keras loss, used in both stages.
        metrics_fn: a no-argument function returning a list of Keras metrics. The metrics, and `loss`
            (the mean of the batches' losses), are computed on the post-reconstruction batches and
            reported as `metrics['client_work']['train']`.
        server_optimizer_fn: applies the mean update to the global variables (SGD, learning rate 1.0,
            if None).
        client_optimizer_fn: trains the global variables on clients (SGD, learning rate 0.1, if None).
        reconstruction_optimizer_fn: reconstructs the local variables (SGD, learning rate 0.1, if None).
            Each optimizer may also be a function returning a fed or Keras optimizer.
        dataset_split_fn: `client_dataset -> (reconstruction data, post-reconstruction data)`; by
            default `ReconstructionModel.build_dataset_split_fn(split_dataset=True)`: the even batches
            reconstruct, the odd ones train.
        client_weighting: `ClientWeighting.NUM_EXAMPLES` (the default: post-reconstruction examples),
            `ClientWeighting.UNIFORM`, or a function from the client's unfinalized metrics to its weight.
        model_distributor: sends the global weights to clients (a broadcast if None).
        model_aggregator_factory: aggregates the clients' updates (MeanFactory if None); an unweighted one
            needs `client_weighting=ClientWeighting.UNIFORM`.
        metrics_aggregator: TFF's `(metric_finalizers, local_unfinalized_metrics_type) -> federated
            computation`; by default `fed.learning.metrics.sum_then_finalize` (the metric states are
            summed, then finalized).

    A client whose update has a NaN or an Inf sends a zero update of weight 0.
    """
    source = ReconstructionModelSource(model_fn)
    if model_aggregator_factory is None:
        model_aggregator_factory = MeanFactory()
    if not isinstance(
        model_aggregator_factory, (WeightedAggregationFactory, UnweightedAggregationFactory)
    ):
        raise TypeError(
            "model_aggregator_factory must be a weighted or unweighted aggregation factory, got "
            f"{model_aggregator_factory!r}."
        )
    client_weighting = check_client_weighting(client_weighting, model_aggregator_factory)
    if dataset_split_fn is None:
        dataset_split_fn = ReconstructionModel.build_dataset_split_fn(split_dataset=True)
    elif not callable(dataset_split_fn):
        raise TypeError(
            "dataset_split_fn must be a function from a client's dataset to two datasets, got "
            f"{dataset_split_fn!r}."
        )
    weights_type = source.weights_type
    update_type = weights_type.trainable  # type: ignore[attr-defined]
    if isinstance(model_aggregator_factory, WeightedAggregationFactory):
        aggregator = model_aggregator_factory.create(update_type, TensorType(np.float32))
    else:
        aggregator = model_aggregator_factory.create(update_type)
    client_work = _build_reconstruction_client_work(
        source,
        loss_fn,
        metrics_fn,
        _optimizer(client_optimizer_fn, 0.1),
        _optimizer(reconstruction_optimizer_fn, 0.1),
        dataset_split_fn,
        client_weighting,
        metrics_aggregator,
    )
    return compose_learning_process(
        source.initial_weights,
        check_distributor(model_distributor, weights_type),
        client_work,
        aggregator,
        build_apply_optimizer_finalizer(_optimizer(server_optimizer_fn, 1.0), weights_type),
    )


def _optimizer(optimizer_fn: Any, default_learning_rate: float) -> Optimizer:
    if optimizer_fn is None:
        return build_sgdm(learning_rate=default_learning_rate)
    return as_optimizer(optimizer_fn)
