"""The building blocks of learning algorithms and their composition into a LearningProcess.

A round: the distributor sends the server's model weights to the clients, the client work trains on each
client's data and returns a `ClientResult` (model update and its weight), the aggregator combines the
updates, and the finalizer applies the aggregate to the server's weights. Each part is a MeasuredProcess
with its own state and measurements; `compose_learning_process` checks that their types fit and builds
the round.
"""

from __future__ import annotations

import collections
import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
from fed_core.execution import ClientWorkError, handle_client_failures
from fed_core.execution.failures import describe_error
from fed_core.templates import (
    AggregationProcess,
    IterativeProcess,
    MeasuredProcess,
    MeasuredProcessOutput,
)
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType, Type


class ClientResult(NamedTuple):
    """What one client's work returns: the model update and its weight in the aggregation."""

    update: Any
    update_weight: Any


class LearningProcessOutput(NamedTuple):
    """The result of a round: the new state and the round's metrics."""

    state: Any
    metrics: Any


class LearningAlgorithmState(NamedTuple):
    """The state of a composed learning process: the server's model weights and each part's state."""

    global_model_weights: Any
    distributor: Any
    client_work: Any
    aggregator: Any
    finalizer: Any

    @property
    def model(self) -> Any:
        """The server's model weights (the name TFF's older processes used)."""
        return self.global_model_weights


def conform_weights(current: Any, new: Any) -> Any:
    """`new` model weights as arrays in the containers of `current` (a ModelWeights of arrays), or a
    ValueError that names both structures if they do not fit."""
    from fed_learning.models import ModelWeights
    from fed_learning.models._functional import weights_signature

    if hasattr(new, "trainable") and hasattr(new, "non_trainable"):
        parts = (new.trainable, new.non_trainable)
    elif isinstance(new, (tuple, list)) and len(new) == 2:
        parts = (new[0], new[1])
    else:
        raise TypeError(
            "Model weights must be a ModelWeights or a (trainable, non_trainable) pair, got "
            f"{type(new).__name__}."
        )
    given = [[_array(v) for v in tf.nest.flatten(part)] for part in parts]
    expected = [[np.asarray(v) for v in tf.nest.flatten(part)] for part in current]
    for name, part in zip(("trainable", "non_trainable"), given):
        for index, array in enumerate(part):
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise ValueError(
                    f"The model weights must be finite: {name}[{index}] "
                    f"({TensorType(array.dtype, array.shape)}) holds NaN or Inf."
                )
    fits = all(
        len(g) == len(e)
        and all(
            a.shape == b.shape and np.can_cast(a.dtype, b.dtype, casting="same_kind")
            for a, b in zip(g, e)
        )
        for g, e in zip(given, expected)
    )
    if not fits:
        raise ValueError(
            f"The model weights do not fit the process: it holds {weights_signature(*expected)}, "
            f"the weights given are {weights_signature(*given)}."
        )
    return ModelWeights(
        *(
            tf.nest.pack_sequence_as(part, [a.astype(b.dtype, copy=False) for a, b in zip(g, e)])
            for part, g, e in zip(current, given, expected)
        )
    )


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


CLIENT_FAILURE_POLICIES = ("raise", "drop")


def check_client_failure(client_failure: Any) -> str:
    """Validates a `client_failure` policy: "raise" or "drop"."""
    if not isinstance(client_failure, str) or client_failure not in CLIENT_FAILURE_POLICIES:
        raise ValueError(
            f"client_failure must be one of {list(CLIENT_FAILURE_POLICIES)}, got {client_failure!r}."
        )
    return client_failure


class ClientFailureGuard(NamedTuple):
    """How a round handles a client whose `work` (the computation mapped over clients) raises: with no
    `fallback`, the round raises a ClientWorkError that names the client; with one, the client's result is
    `fallback()` and the round goes on without its work."""

    work: fc.Computation
    fallback: Callable[[], Any] | None


class GuardedComputation(fc.Computation):
    """A computation whose calls handle failures of client work by its `client_failure_guards`, and pass
    their result to `after` (for warnings about it). Used as the `next` of processes with client work: the
    handling belongs to calls of this object, so a computation that embeds it in its own traced body
    (or that is deserialized from it) raises the client's own error instead."""

    def __init__(
        self,
        computation: fc.Computation,
        guards: Sequence[ClientFailureGuard] = (),
        after: Callable[[Any], None] | None = None,
        before: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None,
    ):
        super().__init__(computation.building_block, computation.name)
        self.client_failure_guards = tuple(guards)
        self._after = after
        self._before = before

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._before is not None:
            self._before(args, kwargs)
        with contextlib.ExitStack() as stack:
            dropped = [
                (guard, stack.enter_context(handle_client_failures(guard.work, guard.fallback)))
                for guard in self.client_failure_guards
            ]
            try:
                result = super().__call__(*args, **kwargs)
            except ClientWorkError as error:
                error.add_note(
                    "The arguments of the call (a process's state) are unchanged and can be used "
                    "again. To leave failing clients out of a round instead, build the process with "
                    "client_failure='drop'."
                )
                raise
        for guard, failures in dropped:
            if failures:
                _warn_dropped(guard, failures)
        if self._after is not None:
            self._after(result)
        return result


def guards_of(computation: Any) -> tuple[ClientFailureGuard, ...]:
    """The client failure guards of a GuardedComputation (none for another computation)."""
    return getattr(computation, "client_failure_guards", ())


def _warn_dropped(guard: ClientFailureGuard, failures: Sequence[Any]) -> None:
    listed = "; ".join(
        f"client {f.client_index}: {describe_error(f.error)}" for f in sorted(failures)
    )
    name = guard.work.name or "the client work"
    warnings.warn(
        f"{len(failures)} client(s) failed in {name} and were left out of the round "
        f"(client_failure='drop'): {listed}.",
        RuntimeWarning,
        stacklevel=3,
    )


def _check_round_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuses a round without clients, which has nothing to aggregate, with a message that says so."""
    client_data = args[1] if len(args) > 1 else kwargs.get("client_data")
    if isinstance(client_data, (list, tuple)) and not client_data:
        raise ValueError(
            "next needs the data of at least one client: client_data is an empty list. Give one "
            "dataset per client taking part in the round."
        )


def _warn_about_round(output: Any) -> None:
    """Warns when a round's finalizer refused the update, as its measurements report."""
    if not isinstance(output, LearningProcessOutput) or not isinstance(output.metrics, Mapping):
        return
    finalizer = output.metrics.get("finalizer")
    if not isinstance(finalizer, Mapping):
        return
    if finalizer.get("model_non_finite", 0):
        warnings.warn(
            "The round's server update was refused: applying it would have made the model weights or "
            "the server optimizer's state non-finite (NaN or Inf). The model and the optimizer state are "
            "kept as they were; a smaller server learning rate may help.",
            RuntimeWarning,
            stacklevel=3,
        )
    elif finalizer.get("update_non_finite", 0):
        warnings.warn(
            "The round's aggregated update was not finite, so it was refused and the model and the "
            "server optimizer state are kept as they were. This happens when no client contributed a "
            "usable update (every client without data, with a non-finite update, or failed: see "
            "metrics['client_work']['train']) or when the aggregate overflows.",
            RuntimeWarning,
            stacklevel=3,
        )


def _output(next_fn: fc.Computation, name: str) -> Type:
    """The type of the element `name` of what a measured process's `next` returns."""
    result = next_fn.type_signature.result
    if not isinstance(result, StructType) or name not in result.names():
        raise TypeError(f"next must return <state, result, measurements>, got {result}.")
    return result[name]


def _check_placed(t: Type, placement: Any, what: str, process: str) -> None:
    if not (isinstance(t, FederatedType) and t.placement == placement):
        raise TypeError(f"{process}: {what} must be placed at {placement}, got {t}.")


class DistributionProcess(MeasuredProcess):
    """Sends server values to clients: `next(state@SERVER, value@SERVER) -> <state, value@CLIENTS,
    measurements@SERVER>`."""

    def __init__(self, initialize_fn: fc.Computation, next_fn: fc.Computation):
        super().__init__(initialize_fn, next_fn)
        parameter = next_fn.type_signature.parameter
        if not isinstance(parameter, StructType) or len(parameter) != 2:
            raise TypeError(f"DistributionProcess: next must take <state, value>, got {parameter}.")
        _check_placed(parameter[1], SERVER, "the distributed value", "DistributionProcess")
        _check_placed(_output(next_fn, "result"), CLIENTS, "the result", "DistributionProcess")


class ClientWorkProcess(MeasuredProcess):
    """Trains on clients: `next(state@SERVER, weights@CLIENTS, data@CLIENTS) -> <state,
    ClientResult@CLIENTS, measurements@SERVER>`."""

    def __init__(self, initialize_fn: fc.Computation, next_fn: fc.Computation):
        super().__init__(initialize_fn, next_fn)
        parameter = next_fn.type_signature.parameter
        if not isinstance(parameter, StructType) or len(parameter) != 3:
            raise TypeError(
                f"ClientWorkProcess: next must take <state, weights, client_data>, got {parameter}."
            )
        _check_placed(parameter[1], CLIENTS, "the weights", "ClientWorkProcess")
        _check_placed(parameter[2], CLIENTS, "the client data", "ClientWorkProcess")
        result = _output(next_fn, "result")
        _check_placed(result, CLIENTS, "the result", "ClientWorkProcess")
        assert isinstance(result, FederatedType)
        if getattr(result.member, "python_container", None) is not ClientResult:
            raise TypeError(
                f"ClientWorkProcess: the result must be a ClientResult at CLIENTS, got {result}."
            )


class FinalizerProcess(MeasuredProcess):
    """Applies the aggregate: `next(state@SERVER, weights@SERVER, update@SERVER) -> <state,
    weights@SERVER, measurements@SERVER>`."""

    def __init__(self, initialize_fn: fc.Computation, next_fn: fc.Computation):
        super().__init__(initialize_fn, next_fn)
        parameter = next_fn.type_signature.parameter
        if not isinstance(parameter, StructType) or len(parameter) != 3:
            raise TypeError(
                f"FinalizerProcess: next must take <state, weights, update>, got {parameter}."
            )
        for index, what in ((1, "the weights"), (2, "the update")):
            _check_placed(parameter[index], SERVER, what, "FinalizerProcess")
        result = _output(next_fn, "result")
        if not result.is_equivalent_to(parameter[1]):
            raise TypeError(
                f"FinalizerProcess: next must return weights of type {parameter[1]}, got {result}."
            )


class LearningProcess(IterativeProcess):
    """A learning algorithm: `initialize() -> state`, `next(state, client_data) -> LearningProcessOutput`,
    `get_model_weights(state)` and `set_model_weights(state, weights)` (Python functions on the state)."""

    def __init__(
        self,
        initialize_fn: fc.Computation,
        next_fn: fc.Computation,
        get_model_weights: Callable[[Any], Any],
        set_model_weights: Callable[[Any, Any], Any],
    ):
        # `next` handles its client work's failures (see GuardedComputation) and warns when a round
        # keeps the model because the update was refused.
        if isinstance(next_fn, fc.Computation):  # else IterativeProcess says what it must be
            next_fn = GuardedComputation(
                next_fn, guards_of(next_fn), after=_warn_about_round, before=_check_round_arguments
            )
        super().__init__(initialize_fn, next_fn)
        self._get = get_model_weights
        self._set = set_model_weights

    def get_model_weights(self, state: Any) -> Any:
        """The server's model weights held in `state`."""
        try:
            return self._get(state)
        except (AttributeError, KeyError, IndexError, TypeError):
            raise TypeError(
                "Expected a state of this process (as initialize() or next() return it), got "
                f"{type(state).__name__}."
            ) from None

    def set_model_weights(self, state: Any, model_weights: Any) -> Any:
        """A copy of `state` holding `model_weights` as the server's model weights.

        `model_weights` is a ModelWeights, a plain `(trainable, non_trainable)` pair, or anything with
        `trainable` and `non_trainable` sequences of arrays, tensors or variables (such as
        `ModelWeights(trainable=keras_model.trainable_weights, non_trainable=keras_model.non_trainable_weights)`).
        Weights that do not fit the state's (other numbers of weights or other shapes) are refused with
        both structures named.
        """
        return self._set(state, conform_weights(self.get_model_weights(state), model_weights))


def compose_learning_process(
    initial_model_weights_fn: fc.Computation,
    model_weights_distributor: DistributionProcess,
    client_work: ClientWorkProcess,
    model_update_aggregator: AggregationProcess,
    model_finalizer: FinalizerProcess,
) -> LearningProcess:
    """Composes the four parts into a LearningProcess whose metrics are
    `OrderedDict(distributor=..., client_work=..., aggregator=..., finalizer=...)`."""
    for value, kind, name in (
        (initial_model_weights_fn, fc.Computation, "initial_model_weights_fn"),
        (model_weights_distributor, DistributionProcess, "model_weights_distributor"),
        (client_work, ClientWorkProcess, "client_work"),
        (model_update_aggregator, AggregationProcess, "model_update_aggregator"),
        (model_finalizer, FinalizerProcess, "model_finalizer"),
    ):
        if not isinstance(value, kind):
            raise TypeError(
                f"compose_learning_process: {name} must be a {kind.__name__}, got "
                f"{type(value).__name__}."
            )
    weights_type = initial_model_weights_fn.type_signature.result
    if isinstance(weights_type, FederatedType):
        raise TypeError(
            f"initial_model_weights_fn must return unplaced weights, got {weights_type}."
        )
    data_type = client_work.next.type_signature.parameter[2]  # type: ignore[index]

    @fc.federated_computation
    def initialize():
        return fc.federated_zip(
            LearningAlgorithmState(
                fc.federated_eval(initial_model_weights_fn, SERVER),
                model_weights_distributor.initialize(),
                client_work.initialize(),
                model_update_aggregator.initialize(),
                model_finalizer.initialize(),
            )
        )

    state_type = initialize.type_signature.result

    @fc.federated_computation(state_type, data_type)
    def next_fn(state, client_data):
        distributed = model_weights_distributor.next(state.distributor, state.global_model_weights)
        trained = client_work.next(state.client_work, distributed.result, client_data)
        if model_update_aggregator.is_weighted:
            aggregated = model_update_aggregator.next(
                state.aggregator, trained.result.update, trained.result.update_weight
            )
        else:
            aggregated = model_update_aggregator.next(state.aggregator, trained.result.update)
        finalized = model_finalizer.next(
            state.finalizer, state.global_model_weights, aggregated.result
        )
        new_state = fc.federated_zip(
            LearningAlgorithmState(
                finalized.result,
                distributed.state,
                trained.state,
                aggregated.state,
                finalized.state,
            )
        )
        metrics = fc.federated_zip(
            collections.OrderedDict(
                distributor=distributed.measurements,
                client_work=trained.measurements,
                aggregator=aggregated.measurements,
                finalizer=finalized.measurements,
            )
        )
        return LearningProcessOutput(new_state, metrics)

    return LearningProcess(
        initialize,
        GuardedComputation(next_fn, guards_of(client_work.next)),
        lambda state: state.global_model_weights,
        lambda state, weights: state._replace(global_model_weights=weights),
    )


def build_broadcast_process(model_weights_type: Any) -> DistributionProcess:
    """A stateless DistributionProcess that broadcasts the weights to every client."""

    @fc.federated_computation
    def initialize():
        return fc.federated_value((), SERVER)

    @fc.federated_computation(
        initialize.type_signature.result, FederatedType(model_weights_type, SERVER)
    )
    def next_fn(state, weights):
        return MeasuredProcessOutput(
            state, fc.federated_broadcast(weights), fc.federated_value((), SERVER)
        )

    return DistributionProcess(initialize, next_fn)
