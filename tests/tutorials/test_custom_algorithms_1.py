"""The flows of TFF's tutorial "Custom Federated Algorithms, Part 1: Introduction to the Federated
Core", with TensorFlow computations."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType


@ftf.computation(np.float32)
def add_half(x):
    return tf.add(x, 0.5)


@ftf.computation(SequenceType(np.float32))
def get_local_temperature_average(local_temperatures):
    sum_and_count = local_temperatures.reduce((0.0, 0), lambda x, y: (x[0] + y, x[1] + 1))
    return sum_and_count[0] / tf.cast(sum_and_count[1], tf.float32)


def test_federated_mean_of_sensor_readings():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def get_average_temperature(sensor_readings):
        return fc.federated_mean(sensor_readings)

    assert str(get_average_temperature.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    assert get_average_temperature([68.5, 70.3, 69.8]) == pytest.approx(69.533333)


def test_a_tensorflow_computation_mapped_over_client_values():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def add_half_on_clients(x):
        return fc.federated_map(add_half, x)

    assert str(add_half.type_signature) == "(float32 -> float32)"
    assert str(add_half_on_clients.type_signature) == "({float32}@CLIENTS -> {float32}@CLIENTS)"
    assert add_half_on_clients([1.0, 3.0, 2.0]) == [1.5, 3.5, 2.5]


def test_fraction_of_readings_over_a_broadcast_threshold():
    @ftf.computation(np.float32, np.float32)
    def is_over_as_float(value, threshold):
        return tf.cast(value > threshold, tf.float32)

    @fc.federated_computation(FederatedType(np.float32, CLIENTS), FederatedType(np.float32, SERVER))
    def get_fraction_over_threshold(readings, threshold):
        pairs = fc.federated_zip([readings, fc.federated_broadcast(threshold)])
        return fc.federated_mean(fc.federated_map(is_over_as_float, pairs))

    assert get_fraction_over_threshold([68.5, 70.3, 69.8], 69.0) == pytest.approx(2 / 3)


def test_a_computation_that_reduces_a_float32_sequence():
    assert str(get_local_temperature_average.type_signature) == "(float32* -> float32)"
    assert get_local_temperature_average([68.5, 70.3, 69.8]) == pytest.approx(69.533333)


def test_sequences_of_structs():
    @ftf.computation(SequenceType(collections.OrderedDict(A=np.int32, B=np.int32)))
    def dot(pairs):
        assert isinstance(pairs.element_spec, collections.OrderedDict)
        return pairs.reduce(np.int32(0), lambda total, x: total + x["A"] * x["B"])

    assert str(dot.type_signature) == "(<A=int32,B=int32>* -> int32)"
    assert dot([{"A": 2, "B": 3}, {"A": 4, "B": 5}]) == 26


def test_the_mean_of_per_client_dataset_averages():
    @fc.federated_computation(FederatedType(SequenceType(np.float32), CLIENTS))
    def get_global_temperature_average(sensor_readings):
        return fc.federated_mean(fc.federated_map(get_local_temperature_average, sensor_readings))

    assert (
        str(get_global_temperature_average.type_signature)
        == "({float32*}@CLIENTS -> float32@SERVER)"
    )
    assert get_global_temperature_average(
        [[68.0, 70.0], [71.0], [68.0, 72.0, 70.0]]
    ) == pytest.approx(70.0)
    datasets = [
        tf.data.Dataset.from_tensor_slices(np.array(r, np.float32)) for r in ([68.0, 70.0], [71.0])
    ]
    assert get_global_temperature_average(datasets) == pytest.approx(70.0)
