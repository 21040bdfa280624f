"""Composing a dataset computation with computations and processes that take client datasets."""

import collections

import numpy as np
import pytest

import fed_core as fc
import fed_tensorflow as ftf
from fed_core.templates import IterativeProcess
from fed_datasets import (
    MultipleMatchingSequenceTypesError,
    SequenceTypeNotAssignableError,
    SequenceTypeNotFoundError,
    TestClientData,
    compose_dataset_computation_with_computation,
    compose_dataset_computation_with_iterative_process,
)
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType

CLIENT_DATA = TestClientData(
    {
        "a": np.array([1.0, 2.0, 3.0], np.float32),
        "b": np.array([10.0], np.float32),
        "c": np.array([5.0, 5.0], np.float32),
    }
)
DATASETS = FederatedType(SequenceType(np.float32), CLIENTS)


@ftf.computation(SequenceType(np.float32))
def dataset_total(dataset):
    return dataset.reduce(np.float32(0), lambda total, x: total + x)


@ftf.computation(np.float32, np.float32)
def add(a, b):
    return a + b


@fc.federated_computation(DATASETS)
def sum_of_totals(datasets):
    return fc.federated_sum(fc.federated_map(dataset_total, datasets))


def test_a_computation_on_client_datasets_takes_client_ids_instead():
    composed = compose_dataset_computation_with_computation(
        CLIENT_DATA.dataset_computation, sum_of_totals
    )
    assert str(composed.type_signature) == "({str}@CLIENTS -> float32@SERVER)"
    assert composed(["a", "b"]) == pytest.approx(16.0)
    assert composed(["c"]) == pytest.approx(10.0)


def test_the_datasets_may_be_one_element_of_a_nested_parameter():
    @fc.federated_computation(
        FederatedType(np.float32, SERVER),
        collections.OrderedDict(weights=FederatedType(np.float32, CLIENTS), data=DATASETS),
    )
    def scaled(offset, clients):
        totals = fc.federated_map(dataset_total, clients.data)
        return fc.federated_map(add, (fc.federated_sum(totals), offset))

    composed = compose_dataset_computation_with_computation(CLIENT_DATA.dataset_computation, scaled)
    assert str(composed.type_signature.parameter) == (
        "<offset=float32@SERVER,clients=<weights={float32}@CLIENTS,data={str}@CLIENTS>>"
    )
    assert composed(np.float32(100.0), {"weights": [1.0, 1.0], "data": ["a", "c"]}) == (
        pytest.approx(116.0)
    )


def test_an_iterative_process_takes_client_ids_and_keeps_its_initialize():
    @fc.federated_computation
    def initialize():
        return fc.federated_value(np.float32(0), SERVER)

    @fc.federated_computation(FederatedType(np.float32, SERVER), DATASETS)
    def next_fn(state, datasets):
        total = fc.federated_sum(fc.federated_map(dataset_total, datasets))
        return fc.federated_map(add, (state, total)), total

    process = IterativeProcess(initialize, next_fn)
    composed = compose_dataset_computation_with_iterative_process(
        CLIENT_DATA.dataset_computation, process
    )
    assert composed.initialize is process.initialize
    assert str(composed.next.type_signature) == (
        "(<state=float32@SERVER,datasets={str}@CLIENTS> -> <float32@SERVER,float32@SERVER>)"
    )
    state = composed.initialize()
    state, total = composed.next(state, ["a"])
    state, total = composed.next(state, ["b", "c"])
    assert (state, total) == (pytest.approx(26.0), pytest.approx(20.0))


def test_what_cannot_be_composed_is_refused_with_the_types():
    dataset_computation = CLIENT_DATA.dataset_computation

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def no_datasets(x):
        return fc.federated_sum(x)

    with pytest.raises(
        SequenceTypeNotFoundError,
        match=r"alone or in a struct; it has type \(\{float32\}@CLIENTS ->",
    ):
        compose_dataset_computation_with_computation(dataset_computation, no_datasets)

    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS), FederatedType(SequenceType(np.int32), CLIENTS)
    )
    def other_datasets(x, d):
        return fc.federated_sum(x)

    with pytest.raises(SequenceTypeNotAssignableError, match=r"of types \{int32\*\}@CLIENTS only"):
        compose_dataset_computation_with_computation(dataset_computation, other_datasets)

    @fc.federated_computation(DATASETS, DATASETS)
    def two(d1, d2):
        return sum_of_totals(d1)

    with pytest.raises(MultipleMatchingSequenceTypesError, match="found 2"):
        compose_dataset_computation_with_computation(dataset_computation, two)

    with pytest.raises(TypeError, match="to return a sequence"):
        compose_dataset_computation_with_computation(dataset_total, sum_of_totals)
    with pytest.raises(TypeError, match="to be a fed computation taking client datasets"):
        compose_dataset_computation_with_computation(dataset_computation, print)

    with pytest.raises(
        TypeError, match="to be an IterativeProcess, got <Computation sum_of_totals"
    ):
        compose_dataset_computation_with_iterative_process(dataset_computation, sum_of_totals)


def test_a_process_whose_state_holds_datasets_is_refused():
    import tensorflow as tf

    make_dataset = ftf.computation(lambda: tf.data.Dataset.range(2))

    @fc.federated_computation
    def initialize():
        return fc.federated_value(make_dataset(), SERVER)

    @fc.federated_computation(initialize.type_signature.result, DATASETS)
    def next_fn(state, datasets):
        return state

    process = IterativeProcess(initialize, next_fn)
    with pytest.raises(
        TypeError, match=r"initialize returns no datasets; it returns int64\*@SERVER"
    ):
        compose_dataset_computation_with_iterative_process(CLIENT_DATA.dataset_computation, process)
