"""`fed.learning.algorithms`: federated learning algorithms."""

from fed_learning.algorithms._adaptive import (
    build_fed_adagrad,
    build_fed_adam,
    build_fed_avgm,
    build_fed_yogi,
)
from fed_learning.algorithms._ditto import build_ditto, build_ditto_evaluation
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
from fed_learning.algorithms._fedbuff import FedBuffProcess, FedBuffState, build_fedbuff
from fed_learning.algorithms._legacy import build_federated_averaging_process
from fed_learning.algorithms._mime import (
    build_mime_lite_with_optimizer_schedule,
    build_unweighted_mime_lite,
    build_weighted_mime_lite,
)
from fed_learning.algorithms._personalization_eval import build_personalization_eval_computation
from fed_learning.algorithms._qfedavg import build_q_fed_avg
from fed_learning.algorithms._scaffold import build_scaffold
from fed_learning.algorithms._schedules import build_weighted_fed_avg_with_optimizer_schedule

__all__ = [
    "FedBuffProcess",
    "FedBuffState",
    "build_ditto",
    "build_ditto_evaluation",
    "build_fed_adagrad",
    "build_fed_adam",
    "build_fed_avgm",
    "build_fed_eval",
    "build_fed_recon",
    "build_fed_recon_eval",
    "build_fed_sgd",
    "build_fed_yogi",
    "build_fedbuff",
    "build_federated_averaging_process",
    "build_federated_evaluation",
    "build_mime_lite_with_optimizer_schedule",
    "build_personalization_eval_computation",
    "build_q_fed_avg",
    "build_scaffold",
    "build_unweighted_fed_avg",
    "build_unweighted_fed_prox",
    "build_unweighted_mime_lite",
    "build_weighted_fed_avg",
    "build_weighted_fed_avg_with_optimizer_schedule",
    "build_weighted_fed_prox",
    "build_weighted_mime_lite",
]
