"""A third-party fed plugin used by fed's tests, written as a plugin author would write one: only
fed-core's public interfaces (`fed_core.framework`, `fed_core.execution`, `fed_core.plugins`).

Through its entry point (``example = "fed_example_plugin"`` in the group ``fed_core.plugins``) it
registers:

- the executor ``example_sequential``: its own evaluator of fed's IR, running clients one at a time;
- the intrinsic ``example.federated_median``: ``({T}@CLIENTS -> T@SERVER)``, the element-wise median;
- the aggregator ``example_mean``: fed-aggregators' unweighted mean (imported on first use);
- the data set ``example_counting``: client ``client_i`` holds the examples 0, 1, ..., i;
- the data backend ``example``: ``example://range/N`` materializes the sequence 0, 1, ..., N - 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fed_core import hookimpl

if TYPE_CHECKING:
    from fed_core.plugins import Registry

MEDIAN = "example.federated_median"


def create_sequential_executor(**options: Any) -> Any:
    from fed_example_plugin._executor import SequentialExecutor

    return SequentialExecutor(**options)


def _median(state: Any, fn_type: Any, clients: Any) -> Any:
    from fed_core.framework import map_structure

    if len(clients) == 0:
        raise ValueError(f"{MEDIAN} needs at least one client; there are none.")
    return map_structure(
        lambda leaf: np.median(np.asarray(leaf), axis=0).astype(np.asarray(leaf).dtype),
        clients.stacked(),
    )


def _floats_only(fn_type: Any) -> str | None:
    from fed_types import is_structure_of

    if is_structure_of(fn_type.result.member, lambda t: t.dtype.kind == "f"):
        return None
    return "the values must be floating-point tensors or structs of them"


def create_median_definition() -> Any:
    from fed_core.framework import IntrinsicDefinition, IntrinsicKind

    return IntrinsicDefinition(
        uri=MEDIAN,
        type_signature="({T}@CLIENTS -> T@SERVER)",  # type: ignore[arg-type]
        kind=IntrinsicKind.AGGREGATION,
        implementation=_median,
        name="federated_median",
        constraint=_floats_only,
        doc="The element-wise median of the clients' values, at the server.",
    )


def federated_median(value: Any) -> Any:
    """What users call inside a federated computation: ``{T}@CLIENTS -> T@SERVER``."""
    from fed_core.framework import intrinsic_operator

    return intrinsic_operator(MEDIAN)(value)


def create_mean_aggregator() -> Any:
    import fed_aggregators

    return fed_aggregators.UnweightedMeanFactory()


class CountingClientData:
    """Client ``client_i`` holds the examples 0, 1, ..., i."""

    def __init__(self, num_clients: int = 3) -> None:
        if num_clients < 1:
            raise ValueError(f"num_clients must be at least 1; got {num_clients}")
        self.client_ids = [f"client_{i}" for i in range(num_clients)]

    def examples(self, client_id: str) -> list[int]:
        return list(range(self.client_ids.index(client_id) + 1))


def create_counting_data(num_clients: int = 3) -> CountingClientData:
    return CountingClientData(num_clients)


class RangeDataBackend:
    """Materializes ``example://range/N`` as the sequence 0, 1, ..., N - 1 of the requested dtype."""

    def __init__(self) -> None:
        self.materialized: list[str] = []

    def materialize(self, data: Any, type_spec: Any) -> Any:
        prefix = "example://range/"
        if not data.uri.startswith(prefix):
            raise ValueError(f"expected a URI {prefix}N, got {data.uri!r}")
        self.materialized.append(data.uri)
        dtype = type_spec.element.dtype
        return [np.asarray(k, dtype=dtype) for k in range(int(data.uri[len(prefix) :]))]


_range_backend = RangeDataBackend()


def create_range_data_backend() -> RangeDataBackend:
    return _range_backend


@hookimpl
def fed_register_executors(register: Registry) -> None:
    register.add("example_sequential", create_sequential_executor)


@hookimpl
def fed_register_intrinsics(register: Registry) -> None:
    register.add(MEDIAN, create_median_definition)


@hookimpl
def fed_register_aggregators(register: Registry) -> None:
    register.add("example_mean", create_mean_aggregator)


@hookimpl
def fed_register_datasets(register: Registry) -> None:
    register.add("example_counting", create_counting_data)


@hookimpl
def fed_register_data_backends(register: Registry) -> None:
    register.add("example", create_range_data_backend)
