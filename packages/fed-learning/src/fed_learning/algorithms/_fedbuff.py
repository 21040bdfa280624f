"""FedBuff (Nguyen et al., 2022, "Federated Learning with Buffered Asynchronous Aggregation",
arXiv:2106.06639): asynchronous federated learning with a buffer of client updates on the server.

Clients train from the model version they downloaded, with FedAvg's client work (so a client's training
is exactly FedAvg's). The server adds each arriving update, scaled by a function of its staleness (how
many server steps happened since the client downloaded its model), to a buffer; after `buffer_size`
updates it applies the buffer's mean with the server optimizer and bumps the model version.

The arithmetic is in computations (`train`, `accumulate`, `apply_buffer`); when clients start and finish
is decided outside them, by a driver such as `fed_learning.simulation.BufferedAsynchronousSimulation`,
which runs them on a simulated clock.
"""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_learning._client_training import (
    data_type_of,
    initial_weights_computation,
    weights_type_of,
)
from fed_learning.algorithms._fed_avg import ModelFn, _server_optimizer
from fed_learning.algorithms._scaffold import check_count
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import as_model, as_optimizer
from fed_learning.templates import (
    ClientResult,
    ClientWeighting,
    build_apply_optimizer_finalizer,
    build_model_delta_client_work,
)
from fed_learning.templates._templates import conform_weights
from fed_types import CLIENTS, SERVER, FederatedType, TensorType

STALENESS_WEIGHTINGS = ("inverse_sqrt", "constant", "polynomial")
"""The named staleness weightings of `build_fedbuff`."""


class FedBuffState(NamedTuple):
    """FedBuff's server state: the model, the server optimizer's state, the model version (the number of
    server steps taken), and the buffer: the sum of the staleness-weighted updates received since the last
    step and how many there were."""

    global_model_weights: Any
    finalizer: Any
    model_version: Any
    buffer: Any
    buffer_count: Any


def _staleness_function(weighting: Any, exponent: Any) -> Callable[[int], float]:
    if isinstance(exponent, bool) or not isinstance(exponent, numbers.Real):
        raise TypeError(
            f"staleness_exponent must be a float >= 0, got {type(exponent).__name__} {exponent!r}."
        )
    if not (math.isfinite(exponent) and float(exponent) >= 0):
        raise ValueError(f"staleness_exponent must be a finite float >= 0, got {exponent}.")
    if callable(weighting):
        return weighting
    if weighting == "inverse_sqrt":
        return lambda s: 1.0 / math.sqrt(1.0 + s)
    if weighting == "constant":
        return lambda s: 1.0
    if weighting == "polynomial":
        return lambda s: (1.0 + s) ** -float(exponent)
    raise ValueError(
        f"staleness_weighting must be one of {list(STALENESS_WEIGHTINGS)} or a function "
        f"staleness -> weight, got {weighting!r}."
    )


class FedBuffProcess:
    """FedBuff's computations and the Python glue between them.

    - `initialize() -> FedBuffState` (model version 0, an empty buffer);
    - `train(weights, client_data) -> (results, measurements)`: FedAvg's client work on each client from
      `weights` (`{ClientResult}@CLIENTS`, one per dataset, and the clients' training metrics);
    - `accumulate(state, update, weight) -> state`: adds `weight * update` to the buffer;
    - `apply_buffer(state) -> (state, measurements)`: applies the buffer's sum divided by `buffer_size`
      with the server optimizer, bumps the version and empties the buffer (the finalizer's measurements);
    - `receive(state, client_result, model_version)`: one arriving update, trained from `model_version`:
      weighted by its staleness, accumulated, and the buffer applied when it holds `buffer_size` updates.
    """

    def __init__(
        self,
        initialize: fc.Computation,
        train: fc.Computation,
        accumulate: fc.Computation,
        apply_buffer: fc.Computation,
        buffer_size: int,
        max_concurrency: int,
        staleness_function: Callable[[int], float],
    ):
        self.initialize = initialize
        self.train = train
        self.accumulate = accumulate
        self.apply_buffer = apply_buffer
        self.buffer_size = buffer_size
        self.max_concurrency = max_concurrency
        self._staleness_function = staleness_function

    def staleness_weight(self, staleness: int) -> float:
        """The weight of an update `staleness` model versions old."""
        if isinstance(staleness, bool) or not isinstance(staleness, numbers.Integral):
            raise TypeError(f"staleness must be an int >= 0, got {staleness!r}.")
        if staleness < 0:
            raise ValueError(f"staleness must be an int >= 0, got {staleness}.")
        weight = self._staleness_function(int(staleness))
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(
                f"staleness_weighting must return a float, got {weight!r} for staleness {staleness}."
            )
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"staleness_weighting must return a finite float >= 0, got {weight} for staleness "
                f"{staleness}."
            )
        return float(weight)

    def receive(
        self, state: FedBuffState, client_result: ClientResult, model_version: int
    ) -> tuple[FedBuffState, collections.OrderedDict[str, Any]]:
        """Adds one client's update, trained from `model_version`, to the buffer, and applies the buffer
        when it is full. An update the client work left out (weight 0: the client had no data, or its
        update was not finite) is not added. Measurements: `staleness`, `staleness_weight`, `discarded`
        (1 if left out), `applied` (1 if the server stepped) and, when it did, the finalizer's
        (`finalizer`)."""
        current = int(self.get_model_version(state))
        if isinstance(model_version, bool) or not isinstance(model_version, numbers.Integral):
            raise TypeError(f"model_version must be an int, got {model_version!r}.")
        if not 0 <= model_version <= current:
            raise ValueError(
                f"model_version must be a version the server has had (0..{current}), got "
                f"{model_version}."
            )
        staleness = current - int(model_version)
        weight = self.staleness_weight(staleness)
        measurements: collections.OrderedDict[str, Any] = collections.OrderedDict(
            staleness=staleness, staleness_weight=weight, discarded=0, applied=0
        )
        if float(client_result.update_weight) == 0:
            measurements["discarded"] = 1
            return state, measurements
        state = self.accumulate(state, client_result.update, np.float32(weight))
        if int(state.buffer_count) >= self.buffer_size:
            state, finalizer = self.apply_buffer(state)
            measurements["applied"] = 1
            measurements["finalizer"] = finalizer
        return state, measurements

    def get_model_weights(self, state: FedBuffState) -> Any:
        """The server's model weights held in `state`."""
        return _field(state, "global_model_weights")

    def get_model_version(self, state: FedBuffState) -> int:
        """The number of server steps taken to reach `state`."""
        return int(_field(state, "model_version"))

    def set_model_weights(self, state: FedBuffState, model_weights: Any) -> FedBuffState:
        """A copy of `state` holding `model_weights` (checked as `LearningProcess.set_model_weights`
        checks them)."""
        weights = conform_weights(self.get_model_weights(state), model_weights)
        return state._replace(global_model_weights=weights)


def _field(state: Any, name: str) -> Any:
    if not isinstance(state, FedBuffState):
        raise TypeError(
            "Expected a FedBuffState (as initialize(), accumulate() and apply_buffer() return it), got "
            f"{type(state).__name__}."
        )
    return getattr(state, name)


def build_fedbuff(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    server_optimizer_fn: Any = None,
    buffer_size: int = 10,
    *,
    staleness_weighting: str | Callable[[int], float] = "inverse_sqrt",
    staleness_exponent: float = 0.5,
    max_concurrency: int = 100,
) -> FedBuffProcess:
    """FedBuff: buffered asynchronous aggregation.

    Each client trains the model version it downloaded with the client optimizer over one pass of its
    data (FedAvg's client work) and returns its model delta. The server adds the delta times
    `staleness_weighting(s)` to its buffer, `s` being the number of server steps since the client's
    download; once the buffer holds `buffer_size` updates, their weighted sum divided by `buffer_size` is
    applied with the server optimizer (SGD with learning rate 1.0 by default) and the model version goes
    up by one. `staleness_weighting` is "inverse_sqrt" (`1/sqrt(1+s)`, the paper's), "constant" (1),
    "polynomial" (`(1+s)**-staleness_exponent`), or a function `s -> weight`. `max_concurrency` is how
    many clients train at once in a driver that runs the process. An update the client work leaves out
    (weight 0: no data, or not finite) is not counted into the buffer.
    """
    buffer_size = check_count(buffer_size, "buffer_size")
    max_concurrency = check_count(max_concurrency, "max_concurrency")
    staleness_function = _staleness_function(staleness_weighting, staleness_exponent)
    model = as_model(model_fn)
    client_optimizer = as_optimizer(client_optimizer_fn)
    server_optimizer = _server_optimizer(server_optimizer_fn, 1.0)
    weights_type = weights_type_of(model)
    trainable_type = weights_type.trainable  # type: ignore[attr-defined]
    client_work = build_model_delta_client_work(model, client_optimizer, ClientWeighting.UNIFORM)
    finalizer = build_apply_optimizer_finalizer(server_optimizer, weights_type)
    initial_weights = initial_weights_computation(model)
    trainable_specs = [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype)) for t in trainable_type]

    @ftf.computation
    def empty_buffer():
        zeros = [tf.zeros(s.shape, s.dtype) for s in trainable_specs]
        return tf.nest.pack_sequence_as(model.initial_weights.trainable, zeros)

    @ftf.computation
    def first_version():
        return tf.constant(0, tf.int64)

    @ftf.computation
    def no_updates():
        return tf.constant(0, tf.int32)

    @fc.federated_computation
    def initialize():
        return fc.federated_zip(
            FedBuffState(
                fc.federated_eval(initial_weights, SERVER),
                finalizer.initialize(),
                fc.federated_eval(first_version, SERVER),
                fc.federated_eval(empty_buffer, SERVER),
                fc.federated_eval(no_updates, SERVER),
            )
        )

    state_type = initialize.type_signature.result
    buffer_type = state_type.member.buffer

    @fc.federated_computation(
        FederatedType(weights_type, SERVER), FederatedType(data_type_of(model), CLIENTS)
    )
    def train(weights, client_data):
        trained = client_work.next(
            client_work.initialize(), fc.federated_broadcast(weights), client_data
        )
        return trained.result, trained.measurements

    @ftf.computation(buffer_type, TensorType(np.int32), buffer_type, TensorType(np.float32))
    def add_to_buffer(buffer, count, update, weight):
        added = tf.nest.map_structure(lambda b, u: b + tf.cast(weight, u.dtype) * u, buffer, update)
        return added, count + 1

    @fc.federated_computation(
        state_type,
        FederatedType(buffer_type, SERVER),
        FederatedType(TensorType(np.float32), SERVER),
    )
    def accumulate(state, update, weight):
        added = fc.federated_map(
            add_to_buffer, fc.federated_zip((state.buffer, state.buffer_count, update, weight))
        )
        return fc.federated_zip(
            FedBuffState(
                state.global_model_weights,
                state.finalizer,
                state.model_version,
                added[0],
                added[1],
            )
        )

    @ftf.computation(buffer_type, TensorType(np.int64))
    def flush(buffer, version):
        mean = tf.nest.map_structure(lambda b: b / tf.cast(buffer_size, b.dtype), buffer)
        emptied = tf.nest.map_structure(tf.zeros_like, buffer)
        return mean, emptied, version + 1, tf.constant(0, tf.int32)

    @fc.federated_computation(state_type)
    def apply_buffer(state):
        flushed = fc.federated_map(flush, fc.federated_zip((state.buffer, state.model_version)))
        finalized = finalizer.next(state.finalizer, state.global_model_weights, flushed[0])
        new_state = fc.federated_zip(
            FedBuffState(finalized.result, finalized.state, flushed[2], flushed[1], flushed[3])
        )
        return new_state, finalized.measurements

    return FedBuffProcess(
        initialize,
        train,
        accumulate,
        apply_buffer,
        buffer_size,
        max_concurrency,
        staleness_function,
    )
