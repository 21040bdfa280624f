"""Composing a dataset computation with a computation or process that takes client datasets, so that
clients build their own datasets (from a client id, say) instead of receiving them."""

from __future__ import annotations

from typing import Any, cast

from fed_core import Computation, federated_computation, federated_map
from fed_core.templates import IterativeProcess
from fed_types import CLIENTS, FederatedType, SequenceType, Struct, StructType, Type, types


class SequenceTypeNotAssignableError(TypeError):
    """The computation takes client datasets, but none of the dataset computation's type."""


class SequenceTypeNotFoundError(TypeError):
    """The computation takes no client datasets."""


class MultipleMatchingSequenceTypesError(TypeError):
    """The computation takes more than one client dataset of the dataset computation's type."""


def _check_dataset_computation(dataset_computation: Any) -> SequenceType:
    if not isinstance(dataset_computation, Computation):
        raise TypeError(
            "Expected dataset_computation to be a fed computation (T -> U*), got "
            f"{dataset_computation!r} of type {type(dataset_computation).__qualname__}."
        )
    signature = dataset_computation.type_signature
    if not isinstance(signature.result, SequenceType):
        raise TypeError(
            f"Expected dataset_computation to return a sequence (T -> U*), got one of type "
            f"{signature}."
        )
    if signature.parameter is None:
        raise TypeError(
            f"Expected dataset_computation to take an argument (T -> U*), such as a client id; "
            f"got one of type {signature}."
        )
    return signature.result


def _dataset_paths(
    parameter: StructType, matches: Any, path: tuple[int, ...], sequences: list[Type]
) -> list[tuple[int, ...]]:
    """The paths (element positions, nested) of the elements of `parameter` that `matches`, and
    every federated sequence met on the way appended to `sequences`."""
    found = []
    for index, element in enumerate(parameter):
        if isinstance(element, FederatedType) and isinstance(element.member, SequenceType):
            sequences.append(element)
        if matches(element):
            found.append((*path, index))
        elif isinstance(element, StructType):
            found.extend(_dataset_paths(element, matches, (*path, index), sequences))
    return found


def _replaced(parameter: StructType, path: tuple[int, ...], new: Type) -> StructType:
    """`parameter` with its element at `path` replaced by `new`."""
    head, rest = path[0], path[1:]
    elements = [
        (
            name,
            (new if not rest else _replaced(cast(StructType, element), rest, new))
            if index == head
            else element,
        )
        for index, (name, element) in enumerate(parameter.items())
    ]
    return StructType(elements, parameter.python_container)


def compose_dataset_computation_with_computation(
    dataset_computation: Computation, computation_body: Computation
) -> Computation:
    """A computation that takes, in place of the client datasets of `computation_body`, the
    arguments from which `dataset_computation` builds them on the clients.

    With `dataset_computation: (T -> U*)` and `computation_body: ({U*}@CLIENTS -> V)`, the result
    is `({T}@CLIENTS -> V)`: it maps `dataset_computation` over its argument and passes the datasets
    on. If `computation_body` takes a struct, exactly one element of it (possibly nested) must be
    client datasets that `U*` can be passed as; that element's type becomes `{T}@CLIENTS`.

    Raises TypeError for arguments that are not computations of those shapes, and its subclasses
    `SequenceTypeNotFoundError` (no client datasets taken), `SequenceTypeNotAssignableError` (none
    of type `U*`) and `MultipleMatchingSequenceTypesError` (more than one).
    """
    dataset_type = _check_dataset_computation(dataset_computation)
    if not isinstance(computation_body, Computation):
        raise TypeError(
            "Expected computation_body to be a fed computation taking client datasets, got "
            f"{computation_body!r} of type {type(computation_body).__qualname__}."
        )
    client_inputs = FederatedType(dataset_computation.type_signature.parameter, CLIENTS)
    parameter = computation_body.type_signature.parameter

    def matches(t: Type) -> bool:
        return (
            isinstance(t, FederatedType)
            and t.placement == CLIENTS
            and t.member.is_assignable_from(dataset_type)
        )

    if matches(parameter):  # type: ignore[arg-type]

        @federated_computation(client_inputs)
        def composed(inputs: Any) -> Any:
            return computation_body(federated_map(dataset_computation, inputs))

        return composed
    if not isinstance(parameter, StructType):
        raise SequenceTypeNotFoundError(
            f"Expected computation_body to take client datasets that {dataset_type} can be "
            f"passed as ({{{dataset_type}}}@CLIENTS), alone or in a struct; it has type "
            f"{computation_body.type_signature}."
        )
    sequences: list[Type] = []
    paths = _dataset_paths(parameter, matches, (), sequences)
    if not paths:
        error = SequenceTypeNotAssignableError if sequences else SequenceTypeNotFoundError
        found = (
            f"it takes client datasets of types {', '.join(map(str, sequences))} only"
            if sequences
            else "it takes no client datasets"
        )
        raise error(
            f"Expected computation_body to take client datasets that {dataset_type} can be "
            f"passed as ({{{dataset_type}}}@CLIENTS); {found}: its parameter is {parameter}."
        )
    if len(paths) > 1:
        raise MultipleMatchingSequenceTypesError(
            f"Expected computation_body to take one argument of client datasets of type "
            f"{{{dataset_type}}}@CLIENTS, found {len(paths)} in its parameter {parameter}."
        )
    (path,) = paths

    def with_datasets(value: Any, value_type: StructType, path: tuple[int, ...]) -> Struct:
        head, rest = path[0], path[1:]
        elements = []
        for index, (name, element_type) in enumerate(value_type.items()):
            element = value[index]
            if index == head:
                if rest:
                    element = with_datasets(element, element_type, rest)  # type: ignore[arg-type]
                else:
                    element = federated_map(dataset_computation, element)
            elements.append((name, element))
        return Struct(elements)

    @federated_computation(_replaced(parameter, path, client_inputs))
    def composed_struct(argument: Any) -> Any:
        return computation_body(with_datasets(argument, parameter, path))

    return composed_struct


def compose_dataset_computation_with_iterative_process(
    dataset_computation: Computation, process: IterativeProcess
) -> IterativeProcess:
    """An `IterativeProcess` whose `next` takes, in place of client datasets, the arguments from
    which `dataset_computation` builds them on the clients (client ids, say).

    With `dataset_computation: (T -> U*)` and `process.next: (<S,{U*}@CLIENTS> -> <S,V>)`, the new
    `next` is `(<S,{T}@CLIENTS> -> <S,V>)`; `initialize` is kept. See
    `compose_dataset_computation_with_computation` for the rules and errors; in addition,
    `process.initialize` must not return datasets.
    """
    _check_dataset_computation(dataset_computation)
    if not isinstance(process, IterativeProcess):
        raise TypeError(
            f"Expected process to be an IterativeProcess, got {process!r} of type "
            f"{type(process).__qualname__}."
        )
    initial_state = process.initialize.type_signature.result
    if types.contains(initial_state, lambda t: isinstance(t, SequenceType)):
        raise TypeError(
            f"Expected a process whose initialize returns no datasets; it returns {initial_state}."
        )
    next_fn = compose_dataset_computation_with_computation(dataset_computation, process.next)
    return IterativeProcess(process.initialize, next_fn)
