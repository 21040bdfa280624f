"""Federated data sources: where a program gets each round's clients' data."""

from __future__ import annotations

import abc
import enum
import json
from typing import Any

import numpy as np

from fed_types import CLIENTS, FederatedType, SequenceType


class Capability(enum.Enum):
    """What a data source can do (TFF's names)."""

    RANDOM_UNIFORM = "random_uniform"
    """It selects clients uniformly at random."""
    SUPPORTS_REUSE = "supports_reuse"
    """The same client may be selected again in another round."""


class FederatedDataSourceIterator(abc.ABC):
    """Selects the clients' data of one round after another."""

    @property
    @abc.abstractmethod
    def federated_type(self) -> FederatedType:
        """The type of what `select` returns, `{T*}@CLIENTS` for clients' datasets."""

    @abc.abstractmethod
    def select(self, num_clients: int | None = None) -> Any:
        """The next round's data of `num_clients` clients."""

    def to_bytes(self) -> bytes:
        """The iterator's position, to save with the program state."""
        raise NotImplementedError(f"{type(self).__name__} cannot save its position.")

    @classmethod
    def from_bytes(cls, buffer: bytes) -> FederatedDataSourceIterator:
        """An iterator at the position `to_bytes` saved."""
        raise NotImplementedError(f"{cls.__name__} cannot restore a position.")


class FederatedDataSource(abc.ABC):
    """A source of federated data: makes iterators over it."""

    @property
    @abc.abstractmethod
    def federated_type(self) -> FederatedType:
        """The type of what the iterators' `select` returns."""

    @property
    @abc.abstractmethod
    def capabilities(self) -> list[Capability]:
        """What the source can do."""

    @abc.abstractmethod
    def iterator(self) -> FederatedDataSourceIterator:
        """A new iterator, at the start."""


class ClientDataIterator(FederatedDataSourceIterator):
    """Selects clients of a ClientData uniformly at random, without replacement within a round; round `r`
    depends only on the seed and `r`, so an iterator restored at a position selects what the original
    would have."""

    def __init__(self, client_data: Any, seed: int, position: int = 0):
        self._client_data = client_data
        self._seed = seed
        self._position = position

    @property
    def federated_type(self) -> FederatedType:
        return _federated_type(self._client_data)

    @property
    def position(self) -> int:
        """How many rounds this iterator has selected."""
        return self._position

    def select(self, num_clients: int | None = None) -> list[Any]:
        ids = list(self._client_data.client_ids)
        if num_clients is None:
            num_clients = len(ids)
        if (
            isinstance(num_clients, bool)
            or not isinstance(num_clients, int)
            or not 0 < num_clients <= len(ids)
        ):
            raise ValueError(
                f"num_clients must be an int in [1, {len(ids)}] (the number of clients), got {num_clients!r}."
            )
        rng = np.random.default_rng([self._seed, self._position])
        self._position += 1
        chosen = rng.choice(len(ids), size=num_clients, replace=False)
        return [self._client_data.create_tf_dataset_for_client(ids[k]) for k in chosen]

    def to_bytes(self) -> bytes:
        return json.dumps({"seed": self._seed, "position": self._position}).encode()

    def restore(self, buffer: bytes) -> ClientDataIterator:
        """This iterator's data at the position `buffer` (from `to_bytes`) saved."""
        saved = json.loads(buffer)
        return ClientDataIterator(self._client_data, int(saved["seed"]), int(saved["position"]))


class ClientDataDataSource(FederatedDataSource):
    """A data source over a `fed.simulation.datasets.ClientData`: each round, clients drawn uniformly at
    random (seeded), their datasets as `create_tf_dataset_for_client` makes them."""

    def __init__(self, client_data: Any, seed: int = 0):
        if not hasattr(client_data, "client_ids") or not hasattr(
            client_data, "create_tf_dataset_for_client"
        ):
            raise TypeError(f"Expected a ClientData, got {type(client_data).__name__}.")
        if not list(client_data.client_ids):
            raise ValueError("The ClientData has no clients.")
        self._client_data = client_data
        self._seed = int(seed)

    @property
    def federated_type(self) -> FederatedType:
        return _federated_type(self._client_data)

    @property
    def capabilities(self) -> list[Capability]:
        return [Capability.RANDOM_UNIFORM, Capability.SUPPORTS_REUSE]

    def iterator(self) -> ClientDataIterator:
        return ClientDataIterator(self._client_data, self._seed)


def _federated_type(client_data: Any) -> FederatedType:
    import fed_tensorflow

    return FederatedType(
        SequenceType(fed_tensorflow.to_type(client_data.element_type_structure)), CLIENTS
    )
