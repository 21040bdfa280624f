"""TFF's canned federated averaging for a JAX loss function."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import fed_core as fc
from fed_core.templates import IterativeProcess
from fed_jax._frontend import computation
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, StructType, TensorType, to_type


def build_jax_federated_averaging_process(
    batch_type: Any, model_type: Any, loss_fn: Callable[[Any, Any], Any], step_size: float
) -> IterativeProcess:
    """Federated averaging of a model trained with plain gradient descent on `loss_fn(model, batch)`.

    `initialize()` gives the model of `model_type` with every weight zero, at the server.
    `next(model, client_data)` broadcasts the model, takes one gradient step of `step_size` per batch
    of each client's data (a list of batches of `batch_type`), and returns the mean of the clients'
    models: `(<model@SERVER,{batch*}@CLIENTS> -> model@SERVER)`.
    """
    model_t, batch_t = to_type(model_type), to_type(batch_type)
    for name, t in (("model_type", model_t), ("batch_type", batch_t)):
        if not isinstance(t, (TensorType, StructType)):
            raise TypeError(f"{name} must be a tensor type or a struct of them, got {t}.")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function of (model, batch) that returns the loss, got {loss_fn!r}."
        )
    try:
        valid = not isinstance(step_size, (bool, str, bytes)) and 0 < float(step_size) < math.inf
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}.")
    step_size = float(step_size)

    @computation
    def zeros():
        return jax.tree_util.tree_map(
            lambda spec: jnp.zeros(spec.shape, spec.dtype), _specs(model_t)
        )

    @computation(model_t, batch_t)
    def train_on_one_batch(model, batch):
        grads = jax.grad(loss_fn)(model, batch)
        return jax.tree_util.tree_map(lambda w, g: w - step_size * g, model, grads)

    @fc.federated_computation(model_t, SequenceType(batch_t))
    def train_on_one_client(model, batches):
        return fc.sequence_reduce(batches, model, train_on_one_batch)

    @fc.federated_computation
    def initialize():
        return fc.federated_eval(zeros, SERVER)

    @fc.federated_computation(
        FederatedType(model_t, SERVER), FederatedType(SequenceType(batch_t), CLIENTS)
    )
    def next_fn(model, federated_data):
        trained = fc.federated_map(
            train_on_one_client, (fc.federated_broadcast(model), federated_data)
        )
        return fc.federated_mean(trained)

    return IterativeProcess(initialize, next_fn)


def _specs(t: Any) -> Any:
    from fed_jax._structure import leaf_types, pack

    return pack([jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaf_types(t)], t)
