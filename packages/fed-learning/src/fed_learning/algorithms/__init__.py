"""`fed.learning.algorithms`: federated learning algorithms."""

from fed_learning.algorithms._fed_avg import (
    build_fed_sgd,
    build_unweighted_fed_avg,
    build_unweighted_fed_prox,
    build_weighted_fed_avg,
    build_weighted_fed_prox,
)
from fed_learning.algorithms._fed_eval import build_fed_eval, build_federated_evaluation
from fed_learning.algorithms._fed_recon import build_fed_recon
from fed_learning.algorithms._fed_recon_eval import build_fed_recon_eval
from fed_learning.algorithms._legacy import build_federated_averaging_process

__all__ = [
    "build_fed_eval",
    "build_fed_recon",
    "build_fed_recon_eval",
    "build_fed_sgd",
    "build_federated_averaging_process",
    "build_federated_evaluation",
    "build_unweighted_fed_avg",
    "build_unweighted_fed_prox",
    "build_weighted_fed_avg",
    "build_weighted_fed_prox",
]
