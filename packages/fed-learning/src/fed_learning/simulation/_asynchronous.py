"""FedBuff's asynchronous schedule on a simulated clock: clients start and finish as a `ClientPopulation`
says, and their updates reach the server in the order they finish."""

from __future__ import annotations

import collections
import heapq
import math
import time as wall_time
from typing import Any, NamedTuple

import numpy as np

from fed_learning.algorithms._fedbuff import FedBuffProcess
from fed_learning.simulation._clock import ClientDatasets, SimulatedClock
from fed_learning.simulation._population import (
    ClientPopulation,
    check_count,
    check_number,
    check_seed,
)
from fed_learning.templates import ClientResult


class _Job(NamedTuple):
    client: int
    model_version: int
    dropped: bool


_RETRY = -1  # the job number of the event at which the server looks for online clients again


class BufferedAsynchronousSimulation:
    """Runs a `FedBuffProcess` over a `ClientPopulation` on a simulated clock.

    Up to `process.max_concurrency` clients train at once. A client starts at simulated time `t` (chosen
    uniformly among the online clients not already training) from the model version current at `t`, and
    finishes at `t + population.training_seconds(client, num_examples)` unless it drops out first. When it
    finishes its update goes to `process.receive` with its staleness; then another client starts. When
    no client is online to fill a free slot, the server looks again `retry_seconds` later. Clients that
    trained from the same model version are trained together, in one call of `process.train`, when the
    first of them finishes; the result is the same as training each alone.

    `run(state, model_updates=..., until_seconds=...)` continues from where the last call stopped (clients
    in flight stay in flight) and returns the state and the run's measurements: `updates_applied` (server
    steps), `updates_received`, `updates_discarded` (updates the client work left out: no data, or not
    finite), `clients_started`, `dropped`, `staleness_mean` and `staleness_max` (of the updates received),
    `model_version`, `simulated_seconds` (the clock) and `wall_clock_seconds` (the run's real time).
    """

    def __init__(
        self,
        process: FedBuffProcess,
        population: ClientPopulation,
        client_data: Any,
        *,
        seed: int = 0,
        retry_seconds: float = 60.0,
        clock: SimulatedClock | None = None,
    ):
        if not isinstance(process, FedBuffProcess):
            raise TypeError(
                f"process must be a FedBuffProcess (from build_fedbuff), got {type(process).__name__}."
            )
        self.process = process
        self.population = population
        self.datasets = ClientDatasets(client_data, population)
        self.retry_seconds = check_number(retry_seconds, "retry_seconds", above=True)
        self.clock = clock if clock is not None else SimulatedClock()
        self._rng = np.random.default_rng(check_seed(seed))
        self._events: list[tuple[float, int]] = []
        self._jobs: dict[int, _Job] = {}
        self._results: dict[int, ClientResult] = {}
        self._weights: dict[int, Any] = {}
        self._next_job = 0
        self._retry_pending = False

    def _training(self) -> int:
        return len(self._jobs)

    def _start_clients(self, state: Any, counts: collections.Counter[str]) -> None:
        now = self.clock.now
        version = self.process.get_model_version(state)
        while self._training() < self.process.max_concurrency:
            online = self.population.online(now)
            for job in self._jobs.values():
                online[job.client] = False
            candidates = np.flatnonzero(online)
            if not len(candidates):
                if not self._retry_pending:
                    heapq.heappush(self._events, (now + self.retry_seconds, _RETRY))
                    self._retry_pending = True
                return
            client = int(self._rng.choice(candidates))
            duration = self.population.training_seconds(client, self.datasets.num_examples(client))
            if duration <= 0:
                # It would finish at once and start again, for ever, with the clock standing still.
                raise ValueError(
                    f"Client {self.population.client_ids[client]!r} has no examples and no network "
                    "latency: its training takes no simulated time. Give the population a "
                    "network_latency, or leave clients without data out of it."
                )
            dropout = self.population.dropout_after(client, now, duration, self._rng)
            job_number = self._next_job
            self._next_job += 1
            self._jobs[job_number] = _Job(client, version, dropout is not None)
            self._weights.setdefault(version, self.process.get_model_weights(state))
            finish = now + (duration if dropout is None else dropout)
            heapq.heappush(self._events, (finish, job_number))
            counts["clients_started"] += 1

    def _result(self, job_number: int) -> ClientResult:
        if job_number not in self._results:
            version = self._jobs[job_number].model_version
            batch = [
                number
                for number, job in self._jobs.items()
                if job.model_version == version and not job.dropped and number not in self._results
            ]
            results, _ = self.process.train(
                self._weights[version], [self.datasets.dataset(self._jobs[n].client) for n in batch]
            )
            self._results.update(zip(batch, results))
        return self._results.pop(job_number)

    def run(
        self,
        state: Any,
        *,
        model_updates: int | None = None,
        until_seconds: float | None = None,
    ) -> tuple[Any, collections.OrderedDict[str, Any]]:
        """Runs until `model_updates` more server steps are applied or the clock reaches `until_seconds`,
        whichever comes first (at least one must be given)."""
        if model_updates is None and until_seconds is None:
            raise ValueError("run needs model_updates or until_seconds (or both).")
        if model_updates is not None:
            model_updates = check_count(model_updates, "model_updates")
        if until_seconds is not None:
            until_seconds = check_number(until_seconds, "until_seconds")
        self.process.get_model_version(state)  # a FedBuffState, or a clear error
        started = wall_time.perf_counter()
        counts: collections.Counter[str] = collections.Counter()
        staleness: list[int] = []
        self._start_clients(state, counts)
        while model_updates is None or counts["updates_applied"] < model_updates:
            if until_seconds is not None and self._events[0][0] > until_seconds:
                self.clock.advance_to(max(until_seconds, self.clock.now))
                break
            finish, job_number = heapq.heappop(self._events)
            self.clock.advance_to(finish)
            if job_number == _RETRY:
                self._retry_pending = False
            elif self._jobs[job_number].dropped:
                del self._jobs[job_number]
                counts["dropped"] += 1
            else:
                result = self._result(job_number)
                job = self._jobs.pop(job_number)
                state, received = self.process.receive(state, result, job.model_version)
                if received["discarded"]:
                    counts["updates_discarded"] += 1
                else:
                    staleness.append(received["staleness"])
                    counts["updates_received"] += 1
                    counts["updates_applied"] += received["applied"]
                in_use = {j.model_version for j in self._jobs.values()}
                for version in [v for v in self._weights if v not in in_use]:
                    del self._weights[version]
            self._start_clients(state, counts)
        measurements = collections.OrderedDict(
            updates_applied=counts["updates_applied"],
            updates_received=counts["updates_received"],
            updates_discarded=counts["updates_discarded"],
            clients_started=counts["clients_started"],
            dropped=counts["dropped"],
            staleness_mean=float(np.mean(staleness)) if staleness else math.nan,
            staleness_max=max(staleness) if staleness else 0,
            model_version=self.process.get_model_version(state),
            simulated_seconds=self.clock.now,
            wall_clock_seconds=wall_time.perf_counter() - started,
        )
        return state, measurements
