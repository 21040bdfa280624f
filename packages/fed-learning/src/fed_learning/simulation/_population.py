"""A population of simulated clients: how fast each trains, when it is online, and how it drops out."""

from __future__ import annotations

import bisect
import csv
import dataclasses
import json
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

DAY_SECONDS = 86400.0


def check_number(value: Any, name: str, minimum: float = 0.0, *, above: bool = False) -> float:
    """`value` as a finite float >= `minimum` (> with `above`), or an error that says what it got."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    relation = ">" if above else ">="
    if not math.isfinite(value) or value < minimum or (above and value == minimum):
        raise ValueError(f"{name} must be a finite number {relation} {minimum}, got {value}.")
    return float(value)


def check_count(value: Any, name: str) -> int:
    """`value` as an int >= 1, or an error that says what it got."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    return int(value)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed must be an int >= 0, got {seed!r}.")
    return int(seed)


@dataclasses.dataclass(frozen=True)
class DiurnalAvailability:
    """A daily availability pattern: client `i` is online at time `t` (seconds) when
    `mean + amplitude * sin(2 pi t / period + phase_i) > u_i`, with `u_i` uniform in [0, 1) and `phase_i`
    uniform in [0, 2 pi * phase_spread), both drawn once per client. So the chance that a client is online
    at `t` follows the sinusoid (clipped to [0, 1]), and each client is online for one stretch per period.
    `phase_spread` 0 puts every client in one time zone; 1 spreads them over the whole day."""

    mean: float = 0.5
    amplitude: float = 0.4
    period: float = DAY_SECONDS
    phase_spread: float = 1.0

    def __post_init__(self) -> None:
        check_number(self.mean, "DiurnalAvailability.mean")
        check_number(self.amplitude, "DiurnalAvailability.amplitude")
        check_number(self.period, "DiurnalAvailability.period", above=True)
        spread = check_number(self.phase_spread, "DiurnalAvailability.phase_spread")
        if spread > 1:
            raise ValueError(f"DiurnalAvailability.phase_spread must be in [0, 1], got {spread}.")

    def probability(self, time: float, phase: float | np.ndarray = 0.0) -> Any:
        """The chance that a client of this `phase` is online at `time`."""
        wave = self.mean + self.amplitude * np.sin(2 * np.pi * time / self.period + phase)
        return np.clip(wave, 0.0, 1.0)


class _AlwaysOnline:
    def __init__(self, num_clients: int):
        self.num_clients = num_clients

    def online(self, time: float) -> np.ndarray:
        return np.ones(self.num_clients, bool)

    def online_until(self, client: int, time: float) -> float | None:
        return math.inf


class _Diurnal:
    def __init__(self, model: DiurnalAvailability, phases: np.ndarray, thresholds: np.ndarray):
        self.model = model
        self.phases = phases
        self.thresholds = thresholds

    def online(self, time: float) -> np.ndarray:
        return self.model.probability(time, self.phases) > self.thresholds

    def online_until(self, client: int, time: float) -> float | None:
        model = self.model
        if not self.online(time)[client]:
            return None
        if model.amplitude == 0 or (self.thresholds[client] - model.mean) / model.amplitude < -1:
            return math.inf
        # Online while sin(theta) > c, i.e. while theta - asin(c) (mod 2 pi) < pi - 2 asin(c).
        low = math.asin((self.thresholds[client] - model.mean) / model.amplitude)
        theta = 2 * math.pi * time / model.period + self.phases[client]
        into = (theta - low) % (2 * math.pi)
        return time + (math.pi - 2 * low - into) * model.period / (2 * math.pi)


class _Trace:
    def __init__(self, intervals: Sequence[Sequence[tuple[float, float]]]):
        self.intervals = [list(client) for client in intervals]
        self.starts = [[start for start, _ in client] for client in self.intervals]

    def online_until(self, client: int, time: float) -> float | None:
        index = bisect.bisect_right(self.starts[client], time) - 1
        if index < 0:
            return None
        start, end = self.intervals[client][index]
        return end if time < end else None

    def online(self, time: float) -> np.ndarray:
        return np.array(
            [self.online_until(client, time) is not None for client in range(len(self.intervals))],
            bool,
        )


class AvailabilityTrace:
    """Online intervals per client, read from a trace file by `load_availability_trace`."""

    def __init__(
        self,
        client_ids: Sequence[str],
        intervals: Sequence[Sequence[tuple[float, float]]],
        seconds_per_example: Sequence[float | None],
    ):
        self.client_ids = list(client_ids)
        self.intervals = [list(client) for client in intervals]
        self.seconds_per_example = list(seconds_per_example)

    def __repr__(self) -> str:
        return f"AvailabilityTrace({len(self.client_ids)} clients)"


def _trace_error(path: Any, where: str, message: str) -> ValueError:
    return ValueError(f"Bad availability trace {os.fspath(path)} ({where}): {message}")


def _trace_time(value: Any, path: Any, where: str, name: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _trace_error(
                path, where, f"{name} must be a number of seconds, got {value!r}."
            ) from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _trace_error(path, where, f"{name} must be a number of seconds, got {value!r}.")
    if not math.isfinite(value) or value < 0:
        raise _trace_error(path, where, f"{name} must be a finite number >= 0, got {value}.")
    return float(value)


def _sorted_intervals(
    raw: list[tuple[float, float, str]], client_id: str, path: Any
) -> list[tuple[float, float]]:
    raw = sorted(raw)
    for (start, end, where), (next_start, _, next_where) in zip(raw, raw[1:]):
        if next_start < end:
            raise _trace_error(
                path,
                next_where,
                f"client {client_id!r} is online over [{start}, {end}) ({where}) and from "
                f"{next_start}: its intervals overlap.",
            )
    return [(start, end) for start, end, _ in raw]


def _read_csv(path: Any) -> AvailabilityTrace:
    by_client: dict[str, list[tuple[float, float, str]]] = {}
    with open(path, newline="") as file:
        rows = csv.reader(file)
        header = next(rows, None)
        if header is None or [h.strip() for h in header] != ["client_id", "start", "end"]:
            raise _trace_error(
                path, "line 1", f"expected the header 'client_id,start,end', got {header!r}."
            )
        for line, row in enumerate(rows, start=2):
            where = f"line {line}"
            if not row:
                continue
            if len(row) != 3:
                raise _trace_error(path, where, f"expected 3 fields, got {len(row)}: {row!r}.")
            client_id = row[0].strip()
            if not client_id:
                raise _trace_error(path, where, "client_id is empty.")
            start = _trace_time(row[1].strip(), path, where, "start")
            end = _trace_time(row[2].strip(), path, where, "end")
            if end <= start:
                raise _trace_error(path, where, f"end ({end}) must be after start ({start}).")
            by_client.setdefault(client_id, []).append((start, end, where))
    if not by_client:
        raise _trace_error(path, "whole file", "it lists no clients.")
    ids = list(by_client)
    return AvailabilityTrace(
        ids, [_sorted_intervals(by_client[i], i, path) for i in ids], [None] * len(ids)
    )


def _read_json(path: Any) -> AvailabilityTrace:
    with open(path) as file:
        try:
            document = json.load(file)
        except json.JSONDecodeError as error:
            raise _trace_error(
                path, f"line {error.lineno}", f"not valid JSON: {error.msg}."
            ) from None
    if not isinstance(document, dict) or set(document) != {"clients"}:
        raise _trace_error(path, "top level", 'expected an object {"clients": [...]}.')
    clients = document["clients"]
    if not isinstance(clients, list) or not clients:
        raise _trace_error(path, "clients", "expected a non-empty list of clients.")
    ids: list[str] = []
    intervals = []
    speeds: list[float | None] = []
    for index, client in enumerate(clients):
        where = f"clients[{index}]"
        if not isinstance(client, dict):
            raise _trace_error(path, where, f"expected an object, got {client!r}.")
        unknown = set(client) - {"id", "online", "seconds_per_example"}
        if unknown or "id" not in client or "online" not in client:
            raise _trace_error(
                path,
                where,
                'expected keys "id", "online" and optionally "seconds_per_example", got '
                f"{sorted(client)}.",
            )
        client_id = client["id"]
        if not isinstance(client_id, str) or not client_id:
            raise _trace_error(path, where, f"id must be a non-empty string, got {client_id!r}.")
        if client_id in ids:
            raise _trace_error(path, where, f"client {client_id!r} is listed twice.")
        online = client["online"]
        if not isinstance(online, list):
            raise _trace_error(
                path, where, f"online must be a list of [start, end], got {online!r}."
            )
        raw = []
        for position, interval in enumerate(online):
            at = f"{where}.online[{position}]"
            if not isinstance(interval, list) or len(interval) != 2:
                raise _trace_error(path, at, f"expected [start, end], got {interval!r}.")
            start = _trace_time(interval[0], path, at, "start")
            end = _trace_time(interval[1], path, at, "end")
            if end <= start:
                raise _trace_error(path, at, f"end ({end}) must be after start ({start}).")
            raw.append((start, end, at))
        speed = client.get("seconds_per_example")
        if speed is not None:
            if isinstance(speed, bool) or not isinstance(speed, numbers.Real):
                raise _trace_error(
                    path, where, f"seconds_per_example must be a number, got {speed!r}."
                )
            if not (math.isfinite(speed) and float(speed) > 0):
                raise _trace_error(
                    path, where, f"seconds_per_example must be a finite number > 0, got {speed}."
                )
            speed = float(speed)
        ids.append(client_id)
        intervals.append(_sorted_intervals(raw, client_id, path))
        speeds.append(speed)
    return AvailabilityTrace(ids, intervals, speeds)


def load_availability_trace(path: str | os.PathLike[str]) -> AvailabilityTrace:
    """Reads an availability trace: when each client is online, in seconds from the simulation's start.

    A `.csv` file has the header `client_id,start,end` and one row per online interval `[start, end)`. A
    `.json` file is `{"clients": [{"id": "a", "online": [[start, end], ...], "seconds_per_example": 0.01},
    ...]}`, where `seconds_per_example` may be left out. Intervals of a client may come in any order but
    may not overlap; outside them the client is offline. Anything else raises a ValueError naming the file
    and the line or entry.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".json":
        return _read_json(path)
    raise ValueError(
        f"An availability trace must be a .csv or .json file, got {os.fspath(path)!r}."
    )


def _per_client(value: Any, name: str, num_clients: int, minimum: float, above: bool) -> np.ndarray:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return np.full(num_clients, check_number(value, name, minimum, above=above))
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (num_clients,):
        raise ValueError(
            f"{name} must be a number or one per client ({num_clients}), got shape {array.shape}."
        )
    for index, item in enumerate(array):
        check_number(float(item), f"{name}[{index}]", minimum, above=above)
    return array


class ClientPopulation:
    """Simulated clients: client `i` (of `client_ids`) takes `num_examples * seconds_per_example[i] +
    network_latency[i]` seconds to train on its data, is online always (or, built by `sample` or
    `from_trace`, as a daily pattern or a trace says), and drops out of a training it started with
    probability `dropout_probability` (at a time uniform over the training), or at a rate of
    `dropout_rate` per second (an exponential hazard), or when it goes offline before it finishes.

    Build one from parameters with `ClientPopulation.sample` or from a trace with
    `ClientPopulation.from_trace`.
    """

    def __init__(
        self,
        client_ids: Sequence[str],
        seconds_per_example: Any,
        *,
        dropout_probability: Any = 0.0,
        dropout_rate: Any = 0.0,
        network_latency: Any = 0.0,
    ):
        if isinstance(client_ids, str) or not isinstance(client_ids, Sequence) or not client_ids:
            raise TypeError(f"client_ids must be a non-empty sequence of str, got {client_ids!r}.")
        self.client_ids = [str(i) for i in client_ids]
        if len(set(self.client_ids)) != len(self.client_ids):
            raise ValueError("client_ids must be distinct.")
        n = len(self.client_ids)
        self.seconds_per_example = _per_client(
            seconds_per_example, "seconds_per_example", n, 0.0, True
        )
        self.dropout_probability = _per_client(
            dropout_probability, "dropout_probability", n, 0.0, False
        )
        if (self.dropout_probability > 1).any():
            raise ValueError(
                f"dropout_probability must be in [0, 1], got {self.dropout_probability.max()}."
            )
        self.dropout_rate = _per_client(dropout_rate, "dropout_rate", n, 0.0, False)
        self.network_latency = _per_client(network_latency, "network_latency", n, 0.0, False)
        self._availability: Any = _AlwaysOnline(n)

    @classmethod
    def sample(
        cls,
        client_ids: Sequence[str],
        *,
        seed: int = 0,
        speed_mu: float = math.log(0.01),
        speed_sigma: float = 0.5,
        diurnal: DiurnalAvailability | None = None,
        dropout_probability: float = 0.0,
        dropout_rate: float = 0.0,
        network_latency: float = 0.0,
    ) -> ClientPopulation:
        """A population drawn from a seeded `numpy.random.Generator`: seconds per example lognormal with
        `speed_mu` and `speed_sigma` (their median is `exp(speed_mu)`), online always or as `diurnal`
        says (with each client's phase and threshold drawn), and dropouts as in the constructor."""
        rng = np.random.default_rng(check_seed(seed))
        if isinstance(speed_mu, bool) or not isinstance(speed_mu, numbers.Real):
            raise TypeError(f"speed_mu must be a number, got {speed_mu!r}.")
        if not math.isfinite(speed_mu):
            raise ValueError(f"speed_mu must be finite, got {speed_mu}.")
        sigma = check_number(speed_sigma, "speed_sigma")
        if diurnal is not None and not isinstance(diurnal, DiurnalAvailability):
            raise TypeError(f"diurnal must be a DiurnalAvailability or None, got {diurnal!r}.")
        n = len(client_ids)
        speeds = rng.lognormal(float(speed_mu), sigma, n)
        population = cls(
            client_ids,
            speeds,
            dropout_probability=dropout_probability,
            dropout_rate=dropout_rate,
            network_latency=network_latency,
        )
        if diurnal is not None:
            phases = rng.uniform(0.0, 2 * np.pi * diurnal.phase_spread, n)
            population._availability = _Diurnal(diurnal, phases, rng.uniform(0.0, 1.0, n))
        return population

    @classmethod
    def from_trace(
        cls,
        trace: AvailabilityTrace | str | os.PathLike[str],
        *,
        seed: int = 0,
        speed_mu: float = math.log(0.01),
        speed_sigma: float = 0.5,
        dropout_probability: float = 0.0,
        dropout_rate: float = 0.0,
        network_latency: float = 0.0,
    ) -> ClientPopulation:
        """The clients of an availability trace (or the path of one): online as it says, with its
        `seconds_per_example` where given and lognormal ones (as in `sample`) where not."""
        if not isinstance(trace, AvailabilityTrace):
            trace = load_availability_trace(trace)
        drawn = cls.sample(trace.client_ids, seed=seed, speed_mu=speed_mu, speed_sigma=speed_sigma)
        speeds = [
            given if given is not None else drawn_speed
            for given, drawn_speed in zip(trace.seconds_per_example, drawn.seconds_per_example)
        ]
        population = cls(
            trace.client_ids,
            np.array(speeds),
            dropout_probability=dropout_probability,
            dropout_rate=dropout_rate,
            network_latency=network_latency,
        )
        population._availability = _Trace(trace.intervals)
        return population

    def __len__(self) -> int:
        return len(self.client_ids)

    def __repr__(self) -> str:
        return f"ClientPopulation({len(self)} clients)"

    def online(self, time: float) -> np.ndarray:
        """Whether each client is online at `time` (bool, one per client)."""
        return np.asarray(self._availability.online(float(time)), bool)

    def online_until(self, client: int, time: float) -> float | None:
        """When client number `client`'s online period that holds `time` ends (inf if never); None if
        it is offline at `time`."""
        return self._availability.online_until(int(client), float(time))

    def training_seconds(self, client: int, num_examples: int) -> float:
        """How long client number `client` takes to train on `num_examples` and report."""
        return float(num_examples * self.seconds_per_example[client] + self.network_latency[client])

    def dropout_after(
        self, client: int, start: float, duration: float, rng: np.random.Generator
    ) -> float | None:
        """Seconds after `start` at which client number `client` drops out of a training of `duration`
        seconds, or None if it finishes. Draws twice from `rng` whatever happens, so that the draws of
        later clients do not depend on this one's outcome."""
        times = []
        chance, hazard = rng.uniform(), rng.exponential()
        if chance < self.dropout_probability[client]:
            times.append(duration * chance / self.dropout_probability[client])
        if self.dropout_rate[client] > 0 and hazard / self.dropout_rate[client] < duration:
            times.append(hazard / self.dropout_rate[client])
        until = self.online_until(client, start)
        if until is not None and until - start < duration:
            times.append(until - start)
        return min(times) if times else None
