"""SCAFFOLD (Karimireddy et al., 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning"), and the per-client state it shares with Ditto.

Per-client state in simulation: the clients of a fixed population of `num_clients` are numbered
0..num_clients-1, and the server state holds a table with one row per client (for SCAFFOLD, each
client's control variate: `num_clients` copies of the trainable weights). A round takes the numbers of
its clients beside their data, `next(state, client_data, client_ids)`; `federated_select` sends each
client only its own row, and a `federated_aggregate` writes the clients' new rows back (rows of clients
not in the round are kept). The table costs `num_clients` times the trainable weights' size in server
state; per round each client receives and returns one row, and the write-back copies the table once per
participating client (a scatter into it), which is small next to training for the populations a
simulation runs.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory, WeightedAggregationFactory
from fed_learning._client_training import (
    _all_finite,
    _choose,
    _client_status,
    _zeroed_unless,
    build_metrics_aggregation,
    data_type_of,
    failed_client_result,
    initial_weights_computation,
    open_session,
    weights_type_of,
)
from fed_learning._loops import fold_dataset
from fed_learning.algorithms._adaptive import check_hyperparameter
from fed_learning.algorithms._fed_avg import (
    ModelFn,
    _check_arguments,
    _undefined_without_contributions,
)
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import TrainableModel, as_model
from fed_learning.models._functional import num_examples_of
from fed_learning.optimizers import build_sgdm
from fed_learning.templates import (
    ClientResult,
    ClientWeighting,
    LearningProcess,
    LearningProcessOutput,
    build_apply_optimizer_finalizer,
)
from fed_learning.templates._client_work import _train_report
from fed_learning.templates._templates import (
    ClientFailureGuard,
    DistributionProcess,
    GuardedComputation,
    _check_round_arguments,
    _warn_about_round,
    build_broadcast_process,
)
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, TensorType, Type

# Per-client rows kept in the server state.


def check_count(value: Any, name: str = "num_clients") -> int:
    """Validates a count (by default the size of a fixed client population): an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}.")
    return int(value)


def zeros_table_computation(row_type: Type, num_clients: int) -> fc.Computation:
    """A TensorFlow computation returning the table of `num_clients` zero rows of `row_type`."""
    specs = ftf.to_tf_spec(row_type)

    @ftf.computation
    def zero_rows():
        return tf.nest.map_structure(
            lambda s: tf.zeros([num_clients, *s.shape], s.dtype), list(tf.nest.flatten(specs))
        )

    return zero_rows


def build_row_selection(table_type: Type, num_clients: int) -> Callable[[Any, Any], Any]:
    """`select(table@SERVER, client_ids@CLIENTS) -> {row*}@CLIENTS`, to call while tracing: each client
    receives a sequence of one element, its own row of the table."""

    @ftf.computation(TensorType(np.int32))
    def as_key(client_id):
        return tf.reshape(client_id, [1])

    @ftf.computation(table_type, TensorType(np.int32))
    def row_of(table, key):
        return [tf.gather(t, key) for t in table]

    def select(table: Any, client_ids: Any) -> Any:
        keys = fc.federated_map(as_key, client_ids)
        max_key = fc.federated_value(np.int32(num_clients), SERVER)
        return fc.federated_select(keys, max_key, table, row_of)

    return select


def build_row_write_back(
    table_type: Type, row_type: Type, num_clients: int
) -> Callable[[Any, Any, Any, Any], Any]:
    """`write(table@SERVER, client_ids@CLIENTS, rows@CLIENTS, failed@CLIENTS) -> table@SERVER`, to call
    while tracing: the table with the row of each participating client replaced by the row it sent,
    except for the clients whose `failed` (int32) is not 0, whose rows are kept."""
    zeros = zeros_table_computation(row_type, num_clients)

    @ftf.computation
    def zero():
        return zeros(), tf.zeros([num_clients], tf.int32)

    accumulator_type = zero.type_signature.result

    @ftf.computation(accumulator_type, (TensorType(np.int32), row_type, TensorType(np.int32)))
    def accumulate(accumulator, client_row):
        rows, written = accumulator
        client_id, row, failed = client_row
        index = tf.reshape(client_id, [1, 1])
        keep = tf.equal(failed, 0)
        rows = [
            tf.tensor_scatter_nd_add(t, index, tf.expand_dims(r, 0))
            for t, r in zip(rows, _zeroed_unless(keep, tf.nest.flatten(row)))
        ]
        mark = tf.reshape(tf.cast(keep, tf.int32), [1])
        return rows, tf.tensor_scatter_nd_add(written, index, mark)

    @ftf.computation(accumulator_type, accumulator_type)
    def merge(a, b):
        return [x + y for x, y in zip(a[0], b[0])], a[1] + b[1]

    @ftf.computation(accumulator_type)
    def report(accumulator):
        return accumulator

    @ftf.computation(table_type, accumulator_type)
    def replace_rows(table, written_rows):
        rows, written = written_rows
        return [
            tf.where(tf.reshape(written > 0, [-1] + [1] * (t.shape.rank - 1)), r, t)
            for t, r in zip(table, rows)
        ]

    def write(table: Any, client_ids: Any, rows: Any, failed: Any) -> Any:
        written = fc.federated_aggregate(
            fc.federated_zip((client_ids, rows, failed)), zero(), accumulate, merge, report
        )
        return fc.federated_map(replace_rows, fc.federated_zip((table, written)))

    return write


def first_element(rows: tf.data.Dataset, like: Any) -> Any:
    """The one element of `rows` (a client's selected row), inside a TensorFlow computation; `like`
    gives its structure."""
    return fold_dataset(rows, like, lambda _, row: tuple(tf.nest.flatten(row)))


class ClientIdsComputation(GuardedComputation):
    """A computation called as `(state, client_data, client_ids)`, whose `client_ids` (a list, tuple or
    array of ints) are checked against the fixed population of `num_clients` and passed on as a list of
    int32 before it runs. `after` sees the result, as in GuardedComputation."""

    def __init__(
        self,
        computation: fc.Computation,
        num_clients: int,
        after: Callable[[Any], None] | None,
        guards: Sequence[ClientFailureGuard] = (),
    ):
        super().__init__(computation, guards, after=after)
        self.num_clients = num_clients

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _check_round_arguments(args, kwargs)
        client_data = args[1] if len(args) > 1 else kwargs.get("client_data")
        client_ids = args[2] if len(args) > 2 else kwargs.get("client_ids")
        ids = checked_client_ids(client_ids, client_data, self.num_clients)
        if len(args) > 2:
            args = (*args[:2], ids, *args[3:])
        else:
            kwargs["client_ids"] = ids
        return super().__call__(*args, **kwargs)


class PerClientStateProcess(LearningProcess):
    """A LearningProcess whose `next(state, client_data, client_ids)` takes each client's number in the
    fixed population of `num_clients` beside its data, and checks them before the round runs. Its state
    is a NamedTuple whose `global_model_weights` are the model's weights."""

    def __init__(
        self,
        initialize_fn: fc.Computation,
        next_fn: fc.Computation,
        num_clients: int,
        guards: Sequence[ClientFailureGuard] = (),
    ):
        super().__init__(
            initialize_fn,
            next_fn,
            lambda state: state.global_model_weights,
            lambda state, weights: state._replace(global_model_weights=weights),
        )
        self.num_clients = num_clients
        self._next_fn = ClientIdsComputation(
            next_fn, num_clients, after=_warn_about_round, guards=guards
        )


def round_measurements(
    distributed: Any, train: Any, status: Any, aggregated: Any, finalized: Any
) -> Any:
    """A round's measurements at the server, traced: the distributor's, the clients' training metrics and
    status counts (`client_work`), and the aggregator's and finalizer's measurements."""
    return fc.federated_zip(
        collections.OrderedDict(
            distributor=distributed.measurements,
            client_work=fc.federated_zip(_train_report(train, status)),
            aggregator=aggregated.measurements,
            finalizer=finalized.measurements,
        )
    )


def checked_distributor(model_distributor: Any, weights_type: Type) -> DistributionProcess:
    """`model_distributor` (a broadcast if None), checked to distribute weights of `weights_type`."""
    if model_distributor is None:
        return build_broadcast_process(weights_type)
    if not isinstance(model_distributor, DistributionProcess):
        raise TypeError(
            f"model_distributor must be a DistributionProcess, got {model_distributor!r}."
        )
    value_type = model_distributor.next.type_signature.parameter[1]  # type: ignore[index]
    if not FederatedType(weights_type, SERVER).is_assignable_from(value_type):
        raise TypeError(
            f"model_distributor must distribute the model weights, {weights_type}@SERVER; its next "
            f"takes {value_type}."
        )
    return model_distributor


def client_failure_guards(work: fc.Computation, client_failure: str) -> list[ClientFailureGuard]:
    """The guard of a round's client work: with "drop", a client whose work raises contributes
    `failed_client_result(work)` (nothing, counted in `num_failed_clients`)."""
    fallback = None
    if client_failure == "drop":
        dropped = failed_client_result(work)
        fallback = lambda: dropped  # noqa: E731
    return [ClientFailureGuard(work, fallback)]


def checked_client_ids(client_ids: Any, client_data: Any, num_clients: int) -> list[np.int32]:
    """`client_ids` as a list of int32, or an error if they are not distinct ints in [0, num_clients),
    one per client."""
    if client_ids is None:
        raise TypeError(
            "next needs client_ids: next(state, client_data, client_ids), the number in "
            f"[0, {num_clients}) of each client in client_data."
        )
    if not isinstance(client_ids, (Sequence, np.ndarray)) or isinstance(client_ids, str):
        raise TypeError(f"client_ids must be a list of ints, got {type(client_ids).__name__}.")
    ids = list(client_ids)
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"client_ids must be ints, got {type(i).__name__} {i!r}.")
        if not 0 <= i < num_clients:
            raise ValueError(
                f"client_ids must lie in [0, {num_clients}) (the process was built for "
                f"num_clients={num_clients}), got {i}."
            )
    ids = [int(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"client_ids must be distinct, got {ids}.")
    if isinstance(client_data, (list, tuple)) and len(client_data) != len(ids):
        raise ValueError(
            f"client_ids must give one number per client: got {len(ids)} ids for "
            f"{len(client_data)} datasets."
        )
    return [np.int32(i) for i in ids]


# SCAFFOLD.


class ScaffoldState(NamedTuple):
    """SCAFFOLD's state: the server's model weights, the server control variate `c` (shaped as the
    trainable weights), each client's control variate `c_i` (a table of `num_clients` rows), and the
    states of the model distributor, the aggregator and the server optimizer."""

    global_model_weights: Any
    server_control_variate: Any
    client_control_variates: Any
    distributor: Any
    aggregator: Any
    finalizer: Any


def _build_scaffold_on_client(model: TrainableModel, learning_rate: float) -> fc.Computation:
    """`(weights, data, c, c_i rows) -> <ClientResult, new c_i, delta c_i, metrics, status>`: SCAFFOLD's
    local training (option II of the paper's control variate update)."""
    weights_type = weights_type_of(model)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]

    @ftf.computation(
        weights_type,
        data_type_of(model),
        trainable_type,
        SequenceType(trainable_type),
    )
    def scaffold_on_client(weights, dataset, server_variate, client_rows):
        session = open_session(model, weights)
        initial = session.initial_trainable
        zero_metrics = session.zero_metrics()
        c = list(tf.nest.flatten(server_variate))
        c_i = list(first_element(client_rows, tuple(tf.zeros_like(w) for w in initial)))
        correction = [ci_s - c_s for ci_s, c_s in zip(c_i, c)]  # y -= lr * (g - c_i + c)

        def step(carry, batch):
            local, steps, count = carry
            with tf.GradientTape() as tape:
                sources = session.sources(local)
                session.watch(tape, local)
                output, local = session.forward(local, batch, True)
            gradients = tape.gradient(
                output.loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            values = session.values(local)
            new = [w - learning_rate * (g - k) for w, g, k in zip(values, gradients, correction)]
            local = session.assign(local, new)
            return local, steps + 1, count + num_examples_of(output)

        local, steps, count = fold_dataset(
            dataset, (session.start(), tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step
        )
        update = [w0 - w for w0, w in zip(initial, session.values(local))]
        scale = tf.math.divide_no_nan(1.0, tf.cast(steps, tf.float32) * learning_rate)
        new_c_i = [ci_s - c_s + u * tf.cast(scale, u.dtype) for ci_s, c_s, u in zip(c_i, c, update)]
        finite = _all_finite(update + new_c_i)
        used = tf.logical_and(finite, count > 0)
        update, new_c_i = _choose(
            used, (update, new_c_i), ([tf.zeros_like(u) for u in update], c_i)
        )
        delta_c = [n - old for n, old in zip(new_c_i, c_i)]
        weight = tf.where(used, tf.cast(count, tf.float32), 0.0)
        metrics = _choose(finite, session.metrics(local), zero_metrics)
        return (
            ClientResult(tf.nest.pack_sequence_as(weights.trainable, update), weight),
            new_c_i,
            delta_c,
            metrics,
            _client_status(finite, count),
        )

    return scaffold_on_client


def build_scaffold(
    model_fn: ModelFn | FunctionalModel,
    client_learning_rate: float,
    server_learning_rate: float = 1.0,
    num_clients: int = 10,
    client_weighting: ClientWeighting | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    model_distributor: DistributionProcess | None = None,
    client_failure: str = "raise",
) -> PerClientStateProcess:
    """SCAFFOLD: federated averaging with control variates that correct each client's drift.

    Client `i` of a round starts from the server's weights `x`, and each local step (one per batch) is
    `y = y - client_learning_rate * (g(y) - c_i + c)`, with `c` the server control variate and `c_i` the
    client's own. After K steps the client's variate becomes `c_i+ = c_i - c + (x - y) / (K *
    client_learning_rate)` (the paper's option II). The server steps to `x - server_learning_rate * mean(x
    - y)` (the mean weighted by `client_weighting`: uniform, as in the paper, by default) and to `c + sum(
    c_i+ - c_i) / num_clients`, and keeps each `c_i+` for client `i`'s next round.

    Clients are numbered 0..`num_clients`-1 and a round is `next(state, client_data, client_ids)`; the
    module's docstring says how their control variates are kept and what that costs. A client without
    data, or whose update or variate is not finite, keeps its variate and is left out of the mean.
    `model_distributor` sends the weights to the clients (a broadcast by default); `client_failure` says
    what a client whose work raises does to the round, as in `build_weighted_fed_avg`: "raise" or "drop"
    (the client is left out, keeps its variate, and is counted in `num_failed_clients`).
    """
    learning_rate = check_hyperparameter(client_learning_rate, "client_learning_rate")
    check_hyperparameter(server_learning_rate, "server_learning_rate")
    num_clients = check_count(num_clients)
    if client_weighting is None:
        client_weighting = ClientWeighting.UNIFORM
    if not isinstance(client_weighting, ClientWeighting):
        raise TypeError(f"client_weighting must be a ClientWeighting, got {client_weighting!r}.")
    model_aggregator = model_aggregator or MeanFactory()
    _check_arguments(
        model_aggregator, model_distributor, metrics_aggregator, client_failure, weighted=True
    )
    model = as_model(model_fn)
    weights_type = weights_type_of(model)
    distributor = checked_distributor(model_distributor, weights_type)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]
    work = _build_scaffold_on_client(model, learning_rate)
    metrics_type = work.type_signature.result[3]  # type: ignore[index]
    aggregate_metrics = build_metrics_aggregation(model, metrics_type, metrics_aggregator)
    aggregator = _undefined_without_contributions(
        model_aggregator.create(trainable_type, TensorType(np.float32))
    )
    finalizer = build_apply_optimizer_finalizer(build_sgdm(server_learning_rate), weights_type)
    row_type = trainable_type
    zero_table = zeros_table_computation(row_type, num_clients)
    table_type = zero_table.type_signature.result
    select = build_row_selection(table_type, num_clients)
    write = build_row_write_back(table_type, row_type, num_clients)
    uniform = client_weighting is ClientWeighting.UNIFORM

    @ftf.computation
    def zero_variate():
        return tf.nest.map_structure(
            lambda s: tf.zeros(s.shape, s.dtype), ftf.to_tf_spec(trainable_type)
        )

    @ftf.computation(trainable_type, trainable_type)
    def add_mean_change(c, change_sum):
        return tf.nest.map_structure(lambda a, b: a + b / num_clients, c, change_sum)

    @ftf.computation(TensorType(np.float32))
    def as_uniform(weight):
        return tf.where(weight > 0, 1.0, 0.0) if uniform else weight

    @fc.federated_computation
    def initialize():
        return fc.federated_zip(
            ScaffoldState(
                fc.federated_eval(initial_weights_computation(model), SERVER),
                fc.federated_eval(zero_variate, SERVER),
                fc.federated_eval(zero_table, SERVER),
                distributor.initialize(),
                aggregator.initialize(),
                finalizer.initialize(),
            )
        )

    @fc.federated_computation(
        initialize.type_signature.result,
        FederatedType(data_type_of(model), CLIENTS),
        FederatedType(TensorType(np.int32), CLIENTS),
    )
    def next_fn(state, client_data, client_ids):
        distributed = distributor.next(state.distributor, state.global_model_weights)
        weights = distributed.result
        c = fc.federated_broadcast(state.server_control_variate)
        rows = select(state.client_control_variates, client_ids)
        results = fc.federated_map(work, fc.federated_zip((weights, client_data, c, rows)))
        aggregated = aggregator.next(
            state.aggregator,
            results[0].update,
            fc.federated_map(as_uniform, results[0].update_weight),
        )
        finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        new_c = fc.federated_map(
            add_mean_change,
            fc.federated_zip((state.server_control_variate, fc.federated_sum(results[2]))),
        )
        table = write(
            state.client_control_variates, client_ids, results[1], results[4].num_failed_clients
        )
        train = aggregate_metrics(results[3])
        status = fc.federated_sum(results[4])
        new_state = fc.federated_zip(
            ScaffoldState(
                finalized.result,
                new_c,
                table,
                distributed.state,
                aggregated.state,
                finalized.state,
            )
        )
        metrics = round_measurements(distributed, train, status, aggregated, finalized)
        return LearningProcessOutput(new_state, metrics)

    return PerClientStateProcess(
        initialize, next_fn, num_clients, client_failure_guards(work, client_failure)
    )
