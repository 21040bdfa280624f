"""q-FedAvg (Li et al., 2020, "Fair Resource Allocation in Federated Learning"), which minimizes the
q-fair objective `sum_k F_k(w)**(q+1) / (q+1)`: clients with a higher loss weigh more, so accuracy is
spread more evenly over clients. With q = 0 it is federated averaging with every client counting equally.

Each client k evaluates its mean loss `F` at the broadcast weights `w`, trains as FedAvg does to `w_k`,
and reports, with `L` the Lipschitz constant of the gradient (the inverse client learning rate by
default):

    dw = L * (w - w_k)
    delta_k = F**q * dw
    h_k = q * F**(q - 1) * ||dw||**2 + L * F**q

and the server steps to `w - sum_k delta_k / sum_k h_k`. That ratio is the mean of `delta_k / h_k`
weighted by `h_k`, so each client reports `ClientResult(delta_k / h_k, h_k)` and any weighted aggregator
(MeanFactory by default) computes it; the server applies it with SGD at learning rate 1.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators import MeanFactory, WeightedAggregationFactory
from fed_learning._client_training import (
    build_train_on_client,
    data_type_of,
    open_session,
    weights_type_of,
)
from fed_learning._loops import fold_dataset
from fed_learning.algorithms._adaptive import check_hyperparameter
from fed_learning.algorithms._fed_avg import ModelFn, _check_arguments, _compose
from fed_learning.models import FunctionalModel
from fed_learning.models._conversion import TrainableModel, as_model, as_optimizer
from fed_learning.models._functional import num_examples_of
from fed_learning.optimizers import Optimizer, build_sgdm
from fed_learning.templates import ClientResult, DistributionProcess, LearningProcess
from fed_learning.templates._client_work import client_work_process

_MIN_LOSS = 1e-10
"""The loss is floored here so that `F**(q - 1)` stays finite for a client whose loss is 0."""


def build_mean_loss_on_client(model: TrainableModel) -> fc.Computation:
    """`(weights, data) -> float32`: the model's mean loss over the client's examples at `weights`
    (forward passes with `training=False`), 0 for a client without data."""

    @ftf.computation(weights_type_of(model), data_type_of(model))
    def mean_loss(weights, dataset):
        session = open_session(model, weights)

        def step(carry, batch):
            local, total, count = carry
            output, local = session.forward(local, batch, False)
            n = num_examples_of(output)
            return (
                local,
                total + tf.cast(output.loss, tf.float32) * tf.cast(n, tf.float32),
                count + n,
            )

        _, total, count = fold_dataset(
            dataset, (session.start(), tf.constant(0.0), tf.constant(0, tf.int64)), step
        )
        return tf.math.divide_no_nan(total, tf.cast(count, tf.float32))

    return mean_loss


def _default_lipschitz(optimizer: Optimizer) -> float:
    """The inverse of the client optimizer's learning rate, as the paper sets `L`."""
    learning_rate = optimizer.get_hparams(optimizer.initialize(())).get("learning_rate")
    if learning_rate is None or not float(learning_rate) > 0:
        raise ValueError(
            "build_q_fed_avg needs lipschitz: the client optimizer has no positive learning_rate "
            f"to take it from (got {learning_rate!r})."
        )
    return 1.0 / float(learning_rate)


def build_q_fed_avg(
    model_fn: ModelFn | FunctionalModel,
    client_optimizer_fn: Any,
    q: float = 1.0,
    lipschitz: float | None = None,
    model_distributor: DistributionProcess | None = None,
    model_aggregator: WeightedAggregationFactory | None = None,
    metrics_aggregator: Any = None,
    client_failure: str = "raise",
) -> LearningProcess:
    """q-FedAvg: federated averaging for the q-fair objective (see the module's docstring).

    `q` (a float >= 0) is the fairness strength: 0 is FedAvg with clients weighted equally, larger
    values favour the clients with a higher loss. `lipschitz` is `L` (a float > 0); by default it is
    1 / the client optimizer's learning rate, as in the paper. The server's step shrinks as `L` grows,
    so a smaller `L` trains faster when the default is too cautious (tune it as a learning rate).
    Clients train one pass over their data with the client optimizer, and also evaluate their loss at
    the broadcast weights first, one more pass. A client without data, or whose update is not finite,
    has `h_k = 0` and is left out. The state is FedAvg's (the server's SGD keeps none);
    `model_aggregator` must be weighted (it receives `h_k` as the weight), and the other arguments are
    `build_weighted_fed_avg`'s.
    """
    q = check_hyperparameter(q, "q", allow_zero=True)
    client_optimizer = as_optimizer(client_optimizer_fn)
    if lipschitz is None:
        lipschitz = _default_lipschitz(client_optimizer)
    lipschitz = check_hyperparameter(lipschitz, "lipschitz")
    model_aggregator = model_aggregator or MeanFactory()
    _check_arguments(
        model_aggregator, model_distributor, metrics_aggregator, client_failure, weighted=True
    )
    model = as_model(model_fn)
    train = build_train_on_client(model, client_optimizer, True, 0.0)
    mean_loss = build_mean_loss_on_client(model)

    @ftf.computation(weights_type_of(model), data_type_of(model))
    def q_fair_work_on_client(weights, dataset):
        loss = tf.maximum(mean_loss(weights, dataset), _MIN_LOSS)
        result, metrics, status = train(weights, dataset)
        update = tf.nest.flatten(result[0])
        scaled = [lipschitz * u for u in update]
        squared_norm = tf.add_n([tf.reduce_sum(tf.square(tf.cast(d, tf.float32))) for d in scaled])
        h = q * tf.pow(loss, q - 1.0) * squared_norm + lipschitz * tf.pow(loss, q)
        # train gives weight 0 to a client without data or with a non-finite update: leave it out.
        h = tf.where(result[1] > 0, h, 0.0)
        factor = tf.math.divide_no_nan(tf.pow(loss, q), h)
        ratio = [d * tf.cast(factor, d.dtype) for d in scaled]
        return (
            ClientResult(tf.nest.pack_sequence_as(weights.trainable, ratio), h),
            metrics,
            status,
        )

    client_work = client_work_process(
        model, q_fair_work_on_client, metrics_aggregator, client_failure
    )
    return _compose(model, client_work, build_sgdm(1.0), model_aggregator, model_distributor)
