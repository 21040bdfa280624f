"""Data that lives where a computation runs: `Data` blocks, data descriptors and data backends.

A `Data` building block names a value by URI (a file, a database row, a path that only a worker can
resolve) and its type. An executor materializes it with a `DataBackend`: the one its context was given,
else the one registered (through the `fed_register_data_backends` hook) under the URI's scheme, the part
before `://`. `CreateDataDescriptor(arg_uris, arg_type)` is how a user passes such data as a
computation's argument: one URI per client, each naming a value of `arg_type`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from fed_core import plugins
from fed_core._async import run_sync
from fed_core.execution.values import ClientValues
from fed_core.ir import building_blocks as bb
from fed_types import CLIENTS, FederatedType, Type, to_type


class DataBackend(abc.ABC):
    """Materializes `Data` blocks into values, on the machine where the computation runs.

    `materialize(data, type_spec)` gets the `Data` block (its `uri`) and the type of the value to
    return, in executor form: a `tf.data.Dataset` or a list for a sequence, arrays for tensors, a
    `fed_types.Struct` or Python container for a struct. It may be a coroutine function, as TFF's is.
    """

    @abc.abstractmethod
    def materialize(self, data: bb.Data, type_spec: Type) -> Any:
        """The value that `data.uri` names, of type `type_spec`."""


def run_materialize(backend: Any, data: bb.Data, type_spec: Type) -> Any:
    """Calls `backend.materialize`, running it to completion when it is a coroutine function."""
    return run_sync(backend.materialize(data, type_spec))


def materialize(
    data: bb.Data,
    backend: Any = None,
    *,
    where: str = "",
    advice: str = "give the context a data_backend, or register one for the scheme {scheme!r}",
) -> Any:
    """The value `data` names, made by `backend`, else by the data backend registered under the URI's
    scheme. Without either, raises LookupError naming the URI, `where` it was to be made and `advice`
    (formatted with the `scheme`)."""
    if backend is None:
        scheme = uri_scheme(data.uri)
        registry = plugins.get_registry("data_backends")
        if scheme not in registry:
            raise LookupError(
                f"No data backend can materialize {data.uri!r}{where}: {advice.format(scheme=scheme)} "
                f"(registered: {list(registry.names())})."
            )
        backend = registry.build(scheme)
    return run_materialize(backend, data, data.type_signature)


def uri_scheme(uri: str) -> str:
    """The scheme of `uri` (the part before `://`), or '' if it has none."""
    scheme, separator, _ = uri.partition("://")
    return scheme if separator else ""


class DataDescriptor:
    """A computation argument whose value is data named by URIs, materialized where the computation runs.

    As in TFF, the URIs name one value per client: `arg_type` is the type of one client's value (`T`), and
    the descriptor's type is `{T}@CLIENTS`. A type placed at CLIENTS is taken as it is; a type placed at
    SERVER takes exactly one URI.
    """

    def __init__(self, arg_uris: Sequence[str], arg_type: Any):
        if isinstance(arg_uris, str) or not all(isinstance(u, str) and u for u in arg_uris):
            raise TypeError(f"arg_uris must be a list of non-empty URI strings, got {arg_uris!r}.")
        self._uris = list(arg_uris)
        t = to_type(arg_type)
        self._type = t if isinstance(t, FederatedType) else FederatedType(t, CLIENTS)
        if self._per_client():
            if not self._uris:
                raise ValueError("A data descriptor at CLIENTS needs one URI per client, got none.")
        elif len(self._uris) != 1:
            raise ValueError(
                f"A data descriptor of type {self._type} takes exactly one URI, got {len(self._uris)}."
            )

    def _per_client(self) -> bool:
        t = self._type
        return isinstance(t, FederatedType) and t.placement == CLIENTS and not t.all_equal

    @property
    def uris(self) -> list[str]:
        return list(self._uris)

    @property
    def type_signature(self) -> Type:
        return self._type

    def to_executor_form(self) -> Any:
        """`Data` blocks for the executor to materialize: one per client in ClientValues, else one."""
        t = self._type
        if self._per_client():
            assert isinstance(t, FederatedType)
            return ClientValues([bb.Data(uri, t.member) for uri in self._uris])
        member = t.member if isinstance(t, FederatedType) else t
        return bb.Data(self._uris[0], member)

    def __repr__(self) -> str:
        return f"DataDescriptor({len(self._uris)} URIs: {self._type})"


def CreateDataDescriptor(arg_uris: Sequence[str], arg_type: Any) -> DataDescriptor:  # noqa: N802 (TFF's name)
    """A data descriptor (TFF's name): `arg_uris` named data of type `arg_type`, passed as an argument."""
    return DataDescriptor(arg_uris, arg_type)
