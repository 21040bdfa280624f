"""The interface between executors and frontends' backends, and the one cache of loaded leaves."""

from __future__ import annotations

import abc
import collections
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Executor as PoolExecutor
from typing import Any

from fed_core.execution.values import ClientValues
from fed_core.ir.building_blocks import CompiledComputation


class LoadedComputation(abc.ABC):
    """A compiled leaf made ready to run by its backend (loaded once, called many times)."""

    @abc.abstractmethod
    def __call__(self, argument: Any = None) -> Any:
        """Runs the computation on one argument (None if it takes none) in executor form: tensors as arrays or
        the backend's native tensors, structs as `fed_types.Struct`, sequences as lists or native datasets."""

    def map(self, clients: ClientValues, pool: PoolExecutor | None) -> ClientValues:
        """Runs the computation once per client. The executor hands all clients of a `federated_map` over in
        one call, so a backend can vectorize or batch them; this default runs them concurrently on `pool`
        (or in order without one), which keeps results in client order."""
        return ClientValues(run_per_member(self, clients.members(), pool))


def run_per_member(
    fn: Callable[[Any], Any], members: list[Any], pool: PoolExecutor | None
) -> list[Any]:
    """`[fn(m) for m in members]`, concurrently on `pool` when there is one and more than one member."""
    if pool is None or len(members) < 2:
        return [fn(m) for m in members]
    return list(pool.map(fn, members))


class Backend(abc.ABC):
    """Runs the compiled leaves of one frontend. Registered under the frontend's name (the `frontend` of
    the leaves it runs) through the `fed_register_backends` hook; the registered factory returns the
    Backend, and takes the keyword option `devices` when an execution context is given devices."""

    @abc.abstractmethod
    def load(self, computation: CompiledComputation) -> LoadedComputation:
        """Prepares `computation` to run (deserialize, build a callable); called once per leaf and cached."""

    def check(self, computation: CompiledComputation) -> None:  # noqa: B027 (optional to override)
        """Raises ValueError if `computation` could not run: a payload that does not parse, or that does
        not take and return what the leaf's type says. Called when a serialized computation is read, so
        it reads the payload and runs nothing. The default checks nothing."""


class LeafCache:
    """Loaded leaves, each loaded once: found by the leaf object's identity on the fast path (no hashing
    on every evaluation), else by content (frontend, payload digest and type), so equal leaves from two
    deserializations share one load. The most recently used `MAX_ENTRIES` loads are kept."""

    MAX_ENTRIES = 4096
    """How many loaded leaves (and how many leaf objects, on the fast path) the cache keeps."""

    def __init__(self, load: Callable[[CompiledComputation], LoadedComputation]):
        self._load = load
        # Reentrant, and held while loading: a leaf is loaded once even when several threads ask for it,
        # and a load may itself load other leaves (a computation that calls another).
        self._lock = threading.RLock()
        self._by_identity: collections.OrderedDict[
            int, tuple[CompiledComputation, LoadedComputation]
        ] = collections.OrderedDict()
        self._by_content: collections.OrderedDict[tuple[str, bytes, str], LoadedComputation] = (
            collections.OrderedDict()
        )

    def get(self, leaf: CompiledComputation) -> LoadedComputation:
        """The loaded form of `leaf`, loading it on first use."""
        known = self._by_identity.get(id(leaf))
        if known is not None and known[0] is leaf:
            return known[1]
        key = (leaf.frontend, hashlib.sha256(leaf.payload).digest(), str(leaf.type_signature))
        with self._lock:
            loaded = self._by_content.get(key)
            if loaded is None:
                loaded = self._load(leaf)
                self._by_content[key] = loaded
                _trim(self._by_content, self.MAX_ENTRIES)
            else:
                self._by_content.move_to_end(key)
            # The leaf is kept alive with its entry, so its id is not reused while the entry exists.
            self._by_identity[id(leaf)] = (leaf, loaded)
            _trim(self._by_identity, self.MAX_ENTRIES)
        return loaded

    def __len__(self) -> int:
        return len(self._by_content)


def _trim(entries: collections.OrderedDict[Any, Any], size: int) -> None:
    while len(entries) > size:
        entries.popitem(last=False)
