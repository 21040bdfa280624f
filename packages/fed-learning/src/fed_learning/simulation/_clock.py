"""Simulated time, and the client data the simulations read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from fed_learning.simulation._population import ClientPopulation


class SimulatedClock:
    """Seconds of simulated time, from 0 (or `start`); it only moves forward."""

    def __init__(self, start: float = 0.0):
        if (
            isinstance(start, bool)
            or not isinstance(start, (int, float))
            or not math.isfinite(start)
        ):
            raise TypeError(f"start must be a finite number of seconds, got {start!r}.")
        self._now = float(start)

    @property
    def now(self) -> float:
        """The simulated time, in seconds."""
        return self._now

    def advance_to(self, time: float) -> None:
        """Moves the clock to `time`, which may not be in the past."""
        if time < self._now:
            raise ValueError(
                f"The simulated clock cannot go back: it is at {self._now} s, asked for {time} s."
            )
        self._now = float(time)

    def __repr__(self) -> str:
        return f"SimulatedClock(now={self._now})"


class ClientDatasets:
    """The population's clients' datasets (from a ClientData, or a mapping from client id to dataset),
    with each client's number of examples counted once, when first needed."""

    def __init__(self, client_data: Any, population: ClientPopulation):
        if not isinstance(population, ClientPopulation):
            raise TypeError(f"population must be a ClientPopulation, got {population!r}.")
        if isinstance(client_data, Mapping):
            known = set(client_data)
            self._dataset = client_data.__getitem__
        elif hasattr(client_data, "create_tf_dataset_for_client"):
            known = set(client_data.client_ids)
            self._dataset = client_data.create_tf_dataset_for_client
        else:
            raise TypeError(
                "client_data must be a ClientData or a mapping from client id to tf.data.Dataset, got "
                f"{type(client_data).__name__}."
            )
        missing = [i for i in population.client_ids if i not in known]
        if missing:
            raise ValueError(
                f"The population's clients {missing[:5]} have no data in client_data "
                f"({len(missing)} of {len(population)} missing)."
            )
        self._population = population
        self._counts: dict[int, int] = {}

    def dataset(self, client: int) -> tf.data.Dataset:
        """The dataset of client number `client` of the population."""
        return self._dataset(self._population.client_ids[client])

    def num_examples(self, client: int) -> int:
        """The number of examples in client number `client`'s dataset (the leading dimension of its
        batches, summed)."""
        if client not in self._counts:
            count = 0
            for batch in self.dataset(client):
                first = tf.nest.flatten(batch)[0]
                count += int(first.shape[0]) if first.shape.rank else 1
            self._counts[client] = count
        return self._counts[client]
