"""Privacy accounting in fed_aggregators.dp, checked against dp-accounting directly (it needs only
dp-accounting, which installs on every Python), and the error that names the dp extra when
tensorflow-privacy is missing."""

import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

dp_accounting = pytest.importorskip("dp_accounting")

from fed_aggregators import dp  # noqa: E402
from fed_aggregators._dp import import_dp_query  # noqa: E402


def _direct(noise_multiplier, q, rounds, delta, accountant):
    ledger = accountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier))
    ledger.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return ledger.get_epsilon(delta)


@pytest.mark.parametrize(
    "name, accountant",
    [("rdp", dp_accounting.rdp.RdpAccountant), ("pld", dp_accounting.pld.PLDAccountant)],
)
def test_epsilon_equals_dp_accountings(name, accountant):
    got = dp.epsilon(1.1, 50, 3383, 100, 1e-5, accountant=name)
    assert got == pytest.approx(_direct(1.1, 50 / 3383, 100, 1e-5, accountant), rel=1e-9)
    assert 0 < got < 5
    assert dp.epsilon(1.1, 50, 3383, 0, 1e-5) == 0.0
    assert dp.epsilon(1.1, 50, 3383, 200, 1e-5) > got  # more rounds spend more


def test_noise_multiplier_for_epsilon_inverts_epsilon():
    noise_multiplier = dp.noise_multiplier_for_epsilon(2.0, 50, 3383, 100, 1e-5)
    assert dp.epsilon(noise_multiplier, 50, 3383, 100, 1e-5) <= 2.0
    assert dp.epsilon(noise_multiplier * 0.99, 50, 3383, 100, 1e-5) > 2.0 * 0.995


def test_accounting_refuses_bad_arguments():
    with pytest.raises(
        ValueError, match="clients_per_round \\(60\\) exceeds the population \\(50\\)"
    ):
        dp.epsilon(1.0, 60, 50, 10, 1e-5)
    with pytest.raises(ValueError, match="target_delta must be in \\(0, 1\\), got 1.5"):
        dp.epsilon(1.0, 5, 50, 10, 1.5)
    with pytest.raises(ValueError, match="accountant must be one of \\['rdp', 'pld'\\], got 'gdp'"):
        dp.epsilon(1.0, 5, 50, 10, 1e-5, accountant="gdp")


class _CountingProcess:
    """A stand-in learning process: its state counts rounds; metrics are a dict as LearningProcess's."""

    def initialize(self):
        return 0

    def next(self, state, data):
        from fed_learning.templates import LearningProcessOutput

        return LearningProcessOutput(
            state + 1, collections.OrderedDict(train=collections.OrderedDict())
        )


def test_privacy_accounted_process_reports_epsilon_and_stops_before_the_budget():
    options = dict(noise_multiplier=1.0, clients_per_round=10, population=100, target_delta=1e-5)
    budget = dp.epsilon(rounds=3, **options) + 1e-9
    process = dp.PrivacyAccountedProcess(_CountingProcess(), epsilon_budget=budget, **options)
    state = process.initialize()
    for rounds in (1, 2, 3):
        output = process.next(state, [])
        state = output.state
        privacy = output.metrics["privacy"]
        assert privacy["epsilon"] == pytest.approx(dp.epsilon(rounds=rounds, **options))
        assert privacy["rounds"] == rounds
    with pytest.raises(dp.PrivacyBudgetExceededError, match="Round 4 would spend epsilon"):
        process.next(state, [])
    assert process.rounds == 3 and state == 3  # nothing ran, nothing lost


def test_a_missing_tensorflow_privacy_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorflow_privacy"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorflow_privacy", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fed-aggregators\[dp\]'"):
        import_dp_query("gaussian_query")


def test_a_process_without_metrics_is_refused_before_any_round():
    import numpy as np

    import fed_core as fc
    from fed_core.templates import IterativeProcess
    from fed_types import SERVER, FederatedType

    @fc.federated_computation
    def init():
        return fc.federated_value(np.int32(0), SERVER)

    @fc.federated_computation(FederatedType(np.int32, SERVER))
    def step(state):
        return state

    with pytest.raises(TypeError, match="must return state and metrics"):
        dp.PrivacyAccountedProcess(
            IterativeProcess(init, step),
            noise_multiplier=1.0,
            clients_per_round=1,
            population=10,
            target_delta=1e-5,
        )
