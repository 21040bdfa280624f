"""Federated evaluation of personalization strategies: each client personalizes the broadcast model in
several ways and reports, per strategy, the metrics of its personalized model; the server collects the
per-client metrics of at most `max_num_clients` clients, sampled without replacement."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import federated_gather
from fed_learning._client_training import weights_type_of
from fed_learning.models._conversion import VariableModelSource
from fed_learning.models._variable import VariableModel
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, Type

BASELINE_METRICS = "baseline_metrics"
_TRAIN_DATA, _TEST_DATA, _CONTEXT = "train_data", "test_data", "context"


def _unbatched_element_spec(input_spec: Any) -> Any:
    """The model's batch spec without its leading (batch) dimension."""

    def unbatched(spec: Any) -> tf.TensorSpec:
        if not isinstance(spec, tf.TensorSpec):
            raise TypeError(f"The model's input_spec must hold tf.TensorSpecs, got {spec!r}.")
        if spec.shape.rank is None or spec.shape.rank == 0:
            raise ValueError(
                "Every tensor of the model's input_spec must have a batch dimension (rank 1 or "
                f"more), got {ftf.to_type(spec)}."
            )
        return tf.TensorSpec(spec.shape[1:], spec.dtype)

    return tf.nest.map_structure(unbatched, input_spec)


def _check_arguments(
    model_fn: Any, personalize_fn_dict: Any, baseline_evaluate_fn: Any, max_num_clients: Any
) -> VariableModelSource:
    if not callable(model_fn):
        raise TypeError(
            f"model_fn must be a no-argument function returning a VariableModel, got {model_fn!r}."
        )
    prototype = model_fn()
    if not isinstance(prototype, VariableModel):
        raise TypeError(
            "model_fn must return a fed.learning.models.VariableModel (such as one from "
            f"from_keras_model), got {prototype!r}."
        )
    if not isinstance(personalize_fn_dict, Mapping):
        raise TypeError(
            "personalize_fn_dict must be an OrderedDict from strategy names to no-argument functions "
            f"returning the strategy, got {type(personalize_fn_dict).__name__}."
        )
    for name, builder in personalize_fn_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"The strategy names of personalize_fn_dict must be str, got {name!r}.")
        if not callable(builder):
            raise TypeError(
                f"personalize_fn_dict[{name!r}] must be a no-argument function returning the "
                f"strategy, got {builder!r}."
            )
    if BASELINE_METRICS in personalize_fn_dict:
        raise ValueError(
            f"{BASELINE_METRICS!r} is the key of the baseline's metrics and cannot name a strategy in "
            "personalize_fn_dict."
        )
    if not callable(baseline_evaluate_fn):
        raise TypeError(
            "baseline_evaluate_fn must be a function (model, dataset) -> metrics, got "
            f"{baseline_evaluate_fn!r}."
        )
    if isinstance(max_num_clients, bool) or not isinstance(max_num_clients, (int, np.integer)):
        raise TypeError(f"max_num_clients must be a positive int, got {max_num_clients!r}.")
    if max_num_clients <= 0:
        raise ValueError(f"max_num_clients must be a positive int, got {max_num_clients}.")
    return VariableModelSource(model_fn, prototype)


def _load(model: Any, weights: Any) -> Any:
    """`model` with its variables set to `weights` (a ModelWeights of tensors)."""
    for variable, value in zip(
        list(model.trainable_variables) + list(model.non_trainable_variables),
        tf.nest.flatten(weights.trainable) + tf.nest.flatten(weights.non_trainable),
    ):
        variable.assign(value)
    return model


def build_personalization_eval_computation(
    model_fn: Callable[[], VariableModel],
    personalize_fn_dict: Mapping[str, Callable[[], Callable[..., Any]]],
    baseline_evaluate_fn: Callable[[VariableModel, tf.data.Dataset], Any],
    max_num_clients: int = 100,
    context_tff_type: Type | None = None,
) -> fc.Computation:
    """A federated computation `(<model_weights@SERVER, input@CLIENTS> -> metrics@SERVER)` that
    evaluates personalization strategies on the clients.

    Each client's input is `OrderedDict(train_data=..., test_data=...)`, two unbatched datasets of the
    model's elements (its input_spec without the batch dimension); strategies and the baseline batch
    them as they need. With `context_tff_type` the input has a third entry `context` of that type, given
    to every strategy as a fourth argument (TFF's older form).

    On each client, `baseline_evaluate_fn(model, test_data)` evaluates a model built by `model_fn` and
    loaded with the broadcast weights; then for every `name, builder` in `personalize_fn_dict`,
    `builder()` makes the strategy (a function that may create variables, such as a Keras optimizer's,
    when built) and `strategy(model, train_data, test_data)` personalizes a model loaded with the
    broadcast weights (again, for each strategy) and returns its metrics. Metrics are (nested) dicts of
    scalar tensors.

    The result is `OrderedDict(baseline_metrics=..., <name>=... for each strategy)`, each metric a
    tensor with one entry per collected client, entry `k` of every metric from the same client: all the
    clients in their order if there are at most `max_num_clients`, else `max_num_clients` of them sampled
    without replacement (in their order).
    """
    source = _check_arguments(model_fn, personalize_fn_dict, baseline_evaluate_fn, max_num_clients)
    strategies = collections.OrderedDict(personalize_fn_dict)
    weights_type = weights_type_of(source)
    element_type = ftf.to_type(_unbatched_element_spec(source.input_spec))
    input_type: collections.OrderedDict[str, Type] = collections.OrderedDict(
        [(_TRAIN_DATA, SequenceType(element_type)), (_TEST_DATA, SequenceType(element_type))]
    )
    if context_tff_type is not None:
        input_type[_CONTEXT] = ftf.to_type(context_tff_type)

    @ftf.computation(weights_type, input_type)
    def evaluate_on_client(weights, client_input):
        metrics = collections.OrderedDict()
        metrics[BASELINE_METRICS] = baseline_evaluate_fn(
            _load(source.build(), weights), client_input[_TEST_DATA]
        )
        model = source.build()
        extra = (client_input[_CONTEXT],) if context_tff_type is not None else ()
        for name, builder in strategies.items():
            strategy = builder()
            if not callable(strategy):
                raise TypeError(
                    f"personalize_fn_dict[{name!r}]() must return the strategy, a function "
                    f"(model, train_data, test_data) -> metrics, got {strategy!r}."
                )
            metrics[name] = strategy(
                _load(model, weights), client_input[_TRAIN_DATA], client_input[_TEST_DATA], *extra
            )
        return metrics

    @fc.federated_computation(
        FederatedType(weights_type, SERVER), FederatedType(input_type, CLIENTS)
    )
    def personalization_eval(server_model_weights, federated_client_input):
        metrics = fc.federated_map(
            evaluate_on_client,
            fc.federated_zip(
                (fc.federated_broadcast(server_model_weights), federated_client_input)
            ),
        )
        # Collecting per-client metrics reveals them to the server: make sure that is acceptable.
        gathered = federated_gather(metrics)
        return fc.federated_map(
            _sampling(gathered.type_signature.member, max_num_clients), gathered
        )

    return personalization_eval


def _sampling(stacked_type: Type, max_num_clients: int) -> fc.Computation:
    """A TensorFlow computation that keeps the same `max_num_clients` rows (clients) of every tensor of a
    stack, chosen at random without replacement and kept in order, or all rows if there are no more."""

    @ftf.computation(stacked_type)
    def sample(stacked):
        leaves = tf.nest.flatten(stacked)
        if not leaves:
            return stacked
        count = tf.shape(leaves[0], out_type=tf.int64)[0]
        chosen = tf.sort(tf.random.shuffle(tf.range(count))[:max_num_clients])
        return tf.nest.map_structure(lambda t: tf.gather(t, chosen), stacked)

    return sample
