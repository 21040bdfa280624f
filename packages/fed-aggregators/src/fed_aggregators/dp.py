"""Privacy accounting for differentially private federated training (the `dp` extra), with dp-accounting.

A round of DP-FedAvg with Poisson-sampled clients (each of `population` clients takes part with
probability `clients_per_round / population`) and Gaussian noise of multiplier `noise_multiplier` is the
event `PoissonSampledDpEvent(q, GaussianDpEvent(noise_multiplier))`; a run of `rounds` rounds composes
it. `epsilon` spends that on an RDP or PLD accountant, `noise_multiplier_for_epsilon` inverts it, and
`PrivacyAccountedProcess` reports the epsilon spent as a metric every round and refuses a round that
would exceed a budget:

    process = fed.aggregators.dp.PrivacyAccountedProcess(
        learning_process, noise_multiplier=1.0, clients_per_round=50, population=3383,
        target_delta=1e-5, epsilon_budget=2.0)
    output = process.next(state, data)   # output.metrics["privacy"]["epsilon"]
"""

from __future__ import annotations

import collections
import numbers
from typing import Any

from fed_aggregators._dp import (
    DPAggregatorState,
    ExtractingDpEventFromInitialStateError,
    extract_dp_event_from_state,
    import_dp_accounting,
)
from fed_aggregators._factory import check_float

__all__ = [
    "DPAggregatorState",
    "ExtractingDpEventFromInitialStateError",
    "PrivacyAccountedProcess",
    "PrivacyBudgetExceededError",
    "epsilon",
    "extract_dp_event_from_state",
    "noise_multiplier_for_epsilon",
    "round_event",
]

_ACCOUNTANTS = ("rdp", "pld")


class PrivacyBudgetExceededError(RuntimeError):
    """Running one more round would spend more than the privacy budget."""


def _sampling_probability(clients_per_round: Any, population: Any, owner: str) -> float:
    clients_per_round = check_float(
        clients_per_round, "clients_per_round", owner, low=0.0, low_open=True
    )
    population = check_float(population, "population", owner, low=0.0, low_open=True)
    if clients_per_round > population:
        raise ValueError(
            f"{owner}: clients_per_round ({clients_per_round:g}) exceeds the population "
            f"({population:g})."
        )
    return clients_per_round / population


def round_event(noise_multiplier: float, clients_per_round: float, population: int) -> Any:
    """The DP event of one round: the Gaussian mechanism on a Poisson sample of the population."""
    dp_accounting = import_dp_accounting()
    noise_multiplier = check_float(
        noise_multiplier, "noise_multiplier", "round_event", low=0.0, low_open=False
    )
    q = _sampling_probability(clients_per_round, population, "round_event")
    return dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier))


def _accountant(name: str, owner: str) -> Any:
    dp_accounting = import_dp_accounting()
    if name == "rdp":
        return dp_accounting.rdp.RdpAccountant()
    if name == "pld":
        return dp_accounting.pld.PLDAccountant()
    raise ValueError(f"{owner}: accountant must be one of {list(_ACCOUNTANTS)}, got {name!r}.")


def _check_delta(delta: Any, owner: str) -> float:
    delta = check_float(delta, "target_delta", owner, low=0.0, low_open=True)
    if not delta < 1:
        raise ValueError(f"{owner}: target_delta must be in (0, 1), got {delta}.")
    return delta


def _check_rounds(rounds: Any, owner: str) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 0:
        raise ValueError(f"{owner}: rounds must be a non-negative int, got {rounds!r}.")
    return int(rounds)


def epsilon(
    noise_multiplier: float,
    clients_per_round: float,
    population: int,
    rounds: int,
    target_delta: float,
    accountant: str = "rdp",
) -> float:
    """The epsilon that `rounds` rounds spend at `target_delta`, for Gaussian noise of
    `noise_multiplier` on Poisson samples of `clients_per_round` expected clients out of `population`
    (`accountant`: "rdp" or "pld"). Zero rounds spend nothing; zero noise spends infinity."""
    owner = "epsilon"
    rounds = _check_rounds(rounds, owner)
    target_delta = _check_delta(target_delta, owner)
    event = round_event(noise_multiplier, clients_per_round, population)
    ledger = _accountant(accountant, owner)
    if rounds == 0:
        return 0.0
    ledger.compose(event, rounds)
    return float(ledger.get_epsilon(target_delta))


def noise_multiplier_for_epsilon(
    target_epsilon: float,
    clients_per_round: float,
    population: int,
    rounds: int,
    target_delta: float,
    accountant: str = "rdp",
) -> float:
    """The smallest noise multiplier with which `rounds` rounds spend at most `target_epsilon` at
    `target_delta` (dp-accounting's calibration, within 1e-3 of the smallest)."""
    owner = "noise_multiplier_for_epsilon"
    dp_accounting = import_dp_accounting()
    target_epsilon = check_float(target_epsilon, "target_epsilon", owner, low=0.0, low_open=True)
    rounds = _check_rounds(rounds, owner)
    if rounds == 0:
        return 0.0
    target_delta = _check_delta(target_delta, owner)
    q = _sampling_probability(clients_per_round, population, owner)
    _accountant(accountant, owner)

    def run(noise_multiplier: float) -> Any:
        event = dp_accounting.PoissonSampledDpEvent(
            q, dp_accounting.GaussianDpEvent(noise_multiplier)
        )
        return dp_accounting.SelfComposedDpEvent(event, rounds)

    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _accountant(accountant, owner),
            run,
            target_epsilon,
            target_delta,
            dp_accounting.LowerEndpointAndGuess(0.0, 1.0),
            tol=1e-3,
        )
    )


class PrivacyAccountedProcess:
    """Wraps an iterative process (a learning process trained with a DP aggregator) to account for its
    privacy: every `next` adds `metrics["privacy"]` (`epsilon` spent so far, `target_delta`,
    `rounds`), and with an `epsilon_budget` a round that would spend more raises
    `PrivacyBudgetExceededError` before it runs (the state you hold stays valid).

    The accounting is for Poisson sampling of `clients_per_round` expected clients out of
    `population`, with the noise multiplier that the DP aggregator was built with (for
    `dp_aggregator` and `gaussian_adaptive`, the total effective one). `rounds_done` resumes the count
    for a run restarted from a checkpoint. Other attributes (`initialize`, `get_model_weights`, ...)
    are the wrapped process's.
    """

    def __init__(
        self,
        process: Any,
        *,
        noise_multiplier: float,
        clients_per_round: float,
        population: int,
        target_delta: float,
        epsilon_budget: float | None = None,
        accountant: str = "rdp",
        rounds_done: int = 0,
    ):
        owner = "PrivacyAccountedProcess"
        if not callable(getattr(process, "next", None)):
            raise TypeError(f"{owner}: expected an iterative process, got {process!r}.")
        signature = getattr(process.next, "type_signature", None)
        result = getattr(signature, "result", None)
        if signature is not None and "metrics" not in getattr(result, "names", lambda: ())():
            raise TypeError(
                f"{owner}: the process's next must return state and metrics (as a LearningProcess "
                f"does); it returns {result}."
            )
        self._process = process
        self._event = round_event(noise_multiplier, clients_per_round, population)
        self._delta = _check_delta(target_delta, owner)
        self._budget = (
            None
            if epsilon_budget is None
            else check_float(epsilon_budget, "epsilon_budget", owner, low=0.0, low_open=True)
        )
        _accountant(accountant, owner)
        self._accountant_name = accountant
        self._rounds = _check_rounds(rounds_done, owner)
        self._epsilons: dict[int, float] = {0: 0.0}

    @property
    def rounds(self) -> int:
        """The rounds accounted for so far."""
        return self._rounds

    def epsilon_after(self, rounds: int) -> float:
        """The epsilon that `rounds` rounds in all spend."""
        if rounds not in self._epsilons:
            ledger = _accountant(self._accountant_name, "PrivacyAccountedProcess")
            ledger.compose(self._event, rounds)
            self._epsilons[rounds] = float(ledger.get_epsilon(self._delta))
        return self._epsilons[rounds]

    @property
    def epsilon_spent(self) -> float:
        return self.epsilon_after(self._rounds)

    def next(self, state: Any, *args: Any, **kwargs: Any) -> Any:
        upcoming = self.epsilon_after(self._rounds + 1)
        if self._budget is not None and upcoming > self._budget:
            raise PrivacyBudgetExceededError(
                f"Round {self._rounds + 1} would spend epsilon {upcoming:.4g} at delta "
                f"{self._delta:g}, over the budget of {self._budget:g} (spent so far: "
                f"{self.epsilon_spent:.4g} in {self._rounds} rounds)."
            )
        output = self._process.next(state, *args, **kwargs)
        self._rounds += 1
        privacy = collections.OrderedDict(
            epsilon=upcoming, target_delta=self._delta, rounds=self._rounds
        )
        metrics = getattr(output, "metrics", None)
        if isinstance(metrics, dict):
            metrics["privacy"] = privacy
        elif (
            isinstance(output, tuple)
            and hasattr(output, "_replace")
            and "metrics" in getattr(output, "_fields", ())
        ):
            output = output._replace(
                metrics=collections.OrderedDict(metrics or (), privacy=privacy)
            )
        else:
            raise TypeError(
                "PrivacyAccountedProcess: the wrapped process's next must return an output with a "
                f"metrics dict (as a LearningProcess does), got {type(output).__name__}."
            )
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)
