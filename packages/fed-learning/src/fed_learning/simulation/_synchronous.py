"""Synchronous rounds as production systems run them: over-selection, a deadline, and the round closed by
the first `cohort_size` reports."""

from __future__ import annotations

import collections
import math
import time as wall_time
from typing import Any, NamedTuple

import numpy as np

from fed_learning.simulation._clock import ClientDatasets, SimulatedClock
from fed_learning.simulation._population import (
    ClientPopulation,
    check_count,
    check_number,
    check_seed,
)
from fed_learning.templates import LearningProcess


class ClientOutcome(NamedTuple):
    """What one selected client did in a round: `finish` is when it reports (simulated seconds), or when it
    dropped out if `dropped`."""

    client: int
    finish: float
    dropped: bool


class RoundPlan(NamedTuple):
    """A round's outcome on the simulated clock: the selected clients' numbers, those that report (in the
    order they report), those that dropped out, the stragglers (neither: they would report after the
    round closed), and when the round started and closed."""

    selected: list[int]
    reported: list[int]
    dropped: list[int]
    stragglers: list[int]
    start: float
    close: float


def plan_round(
    outcomes: list[ClientOutcome], start: float, cohort_size: int, deadline: float | None
) -> RoundPlan:
    """Which of the selected clients' `outcomes` report: those that do not drop out and finish by the
    deadline, the first `cohort_size` of them by finish time. The round closes when the last of those
    reports if `cohort_size` do, and at the deadline otherwise (or, without one, when the last client
    that does not drop out reports)."""
    finishing = sorted(
        (
            o
            for o in outcomes
            if not o.dropped and (deadline is None or o.finish <= start + deadline)
        ),
        key=lambda o: o.finish,
    )
    reported = finishing[:cohort_size]
    if len(reported) == cohort_size:
        close = reported[-1].finish if reported else start
    elif deadline is not None:
        close = start + deadline
    else:
        close = reported[-1].finish if reported else start
    reported_ids = [o.client for o in reported]
    dropped = [o.client for o in outcomes if o.dropped]
    stragglers = [o.client for o in outcomes if not o.dropped and o.client not in reported_ids]
    return RoundPlan([o.client for o in outcomes], reported_ids, dropped, stragglers, start, close)


class SynchronousSimulation:
    """Runs a `LearningProcess` (FedAvg, say) in synchronous rounds over a `ClientPopulation` on a simulated
    clock.

    A round starting at simulated time `t` selects `ceil(cohort_size * (1 + over_selection))` of the
    clients online at `t` (all of them if fewer are), uniformly at random. Each selected client would
    report at `t + population.training_seconds(client, num_examples)` unless it drops out first
    (`population.dropout_after`). The round takes the first `cohort_size` reports that arrive by `t +
    deadline` and closes at the last of them, or at the deadline if fewer arrive; `process.next` then runs
    on the reporting clients' data only. A round that no client reports to keeps the state.

    `next(state)` returns the new state and the round's metrics: the process's metrics (under `train`,
    absent when nothing was reported) and `selected`, `reported`, `dropped`, `stragglers`, `round_seconds`
    (simulated), `simulated_seconds` (the clock after the round) and `wall_clock_seconds` (the round's real
    time). The same `seed` and population give the same rounds.
    """

    def __init__(
        self,
        process: LearningProcess,
        population: ClientPopulation,
        client_data: Any,
        *,
        cohort_size: int,
        over_selection: float = 0.3,
        deadline: float | None = None,
        seed: int = 0,
        clock: SimulatedClock | None = None,
    ):
        if not isinstance(process, LearningProcess):
            raise TypeError(f"process must be a LearningProcess, got {type(process).__name__}.")
        self.over_selection = check_number(over_selection, "over_selection")
        self.deadline = None if deadline is None else check_number(deadline, "deadline", above=True)
        self.process = process
        self.population = population
        self.cohort_size = check_count(cohort_size, "cohort_size")
        self.datasets = ClientDatasets(client_data, population)
        self.clock = clock if clock is not None else SimulatedClock()
        self._rng = np.random.default_rng(check_seed(seed))

    def select(self) -> list[ClientOutcome]:
        """Selects the clients of a round starting now and draws what each of them does."""
        now = self.clock.now
        online = np.flatnonzero(self.population.online(now))
        wanted = math.ceil(self.cohort_size * (1 + self.over_selection))
        chosen = self._rng.choice(online, size=min(wanted, len(online)), replace=False)
        outcomes = []
        for client in chosen:
            client = int(client)
            duration = self.population.training_seconds(client, self.datasets.num_examples(client))
            dropout = self.population.dropout_after(client, now, duration, self._rng)
            if dropout is None:
                outcomes.append(ClientOutcome(client, now + duration, False))
            else:
                outcomes.append(ClientOutcome(client, now + dropout, True))
        return outcomes

    def next(self, state: Any) -> tuple[Any, collections.OrderedDict[str, Any]]:
        """Runs one round from `state`; returns the new state and the round's metrics."""
        started = wall_time.perf_counter()
        start = self.clock.now
        plan = plan_round(self.select(), start, self.cohort_size, self.deadline)
        if not plan.selected:
            if self.deadline is None:
                raise RuntimeError(
                    f"No client is online at {start} s (simulated) and the rounds have no deadline "
                    "to wait out: give SynchronousSimulation a deadline."
                )
            # Nobody is online: the server waits out the deadline before it tries again.
            plan = plan._replace(close=start + self.deadline)
        metrics: collections.OrderedDict[str, Any] = collections.OrderedDict()
        if plan.reported:
            output = self.process.next(state, [self.datasets.dataset(c) for c in plan.reported])
            state = output.state
            metrics["train"] = output.metrics
        self.clock.advance_to(plan.close)
        metrics.update(
            selected=len(plan.selected),
            reported=len(plan.reported),
            dropped=len(plan.dropped),
            stragglers=len(plan.stragglers),
            round_seconds=plan.close - start,
            simulated_seconds=self.clock.now,
            wall_clock_seconds=wall_time.perf_counter() - started,
        )
        return state, metrics
