"""TFF's tutorial "Implementing Custom Aggregations", run with `import fed as tff`.

The tutorial imports `federated_language` (the federated language package TensorFlow Federated is built
on) beside `tensorflow_federated`; fed has those names at its top level, so `fed` stands in for both.
Each factory below is the tutorial's, and each test checks what the tutorial prints as expected.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed as federated_language
import fed as tff


class ScalingTaskFactory(tff.aggregators.UnweightedAggregationFactory):
    """The tutorial's first factory: scale, sum, unscale; stateless."""

    def create(self, value_type):
        @federated_language.federated_computation()
        def initialize_fn():
            return federated_language.federated_value((), federated_language.SERVER)

        @federated_language.federated_computation(
            initialize_fn.type_signature.result,
            federated_language.FederatedType(value_type, federated_language.CLIENTS),
        )
        def next_fn(state, value):
            scaled_value = federated_language.federated_map(
                tff.tensorflow.computation(lambda x: x * 2.0), value
            )
            summed_value = federated_language.federated_sum(scaled_value)
            unscaled_value = federated_language.federated_map(
                tff.tensorflow.computation(lambda x: x / 2.0), summed_value
            )
            measurements = federated_language.federated_value((), federated_language.SERVER)
            return tff.templates.MeasuredProcessOutput(
                state=state, result=unscaled_value, measurements=measurements
            )

        return tff.templates.AggregationProcess(initialize_fn, next_fn)


def test_stateless_factory():
    client_data = [1.0, 2.0, 5.0]
    factory = ScalingTaskFactory()
    aggregation_process = factory.create(federated_language.TensorType(np.float32))
    assert str(aggregation_process.initialize.type_signature) == "( -> <>@SERVER)"
    assert str(aggregation_process.next.type_signature) == (
        "(<state=<>@SERVER,value={float32}@CLIENTS> -> "
        "<state=<>@SERVER,result=float32@SERVER,measurements=<>@SERVER>)"
    )
    state = aggregation_process.initialize()
    output = aggregation_process.next(state, client_data)
    assert output.result == pytest.approx(8.0)


class StatefulTaskFactory(tff.aggregators.UnweightedAggregationFactory):
    """The tutorial's stateful factory: the state counts rounds and scales the values."""

    def create(self, value_type):
        @federated_language.federated_computation()
        def initialize_fn():
            return federated_language.federated_value(0.0, federated_language.SERVER)

        @federated_language.federated_computation(
            initialize_fn.type_signature.result,
            federated_language.FederatedType(value_type, federated_language.CLIENTS),
        )
        def next_fn(state, value):
            new_state = federated_language.federated_map(
                tff.tensorflow.computation(lambda x: x + 1.0), state
            )
            state_at_clients = federated_language.federated_broadcast(new_state)
            scaled_value = federated_language.federated_map(
                tff.tensorflow.computation(lambda x, y: x * y), (value, state_at_clients)
            )
            summed_value = federated_language.federated_sum(scaled_value)
            unscaled_value = federated_language.federated_map(
                tff.tensorflow.computation(lambda x, y: x / y), (summed_value, new_state)
            )
            return tff.templates.MeasuredProcessOutput(
                state=new_state, result=unscaled_value, measurements=summed_value
            )

        return tff.templates.AggregationProcess(initialize_fn, next_fn)


def test_stateful_factory_measures_the_scaled_sum():
    client_data = [1.0, 2.0, 5.0]
    aggregation_process = StatefulTaskFactory().create(federated_language.TensorType(np.float32))
    state = aggregation_process.initialize()
    for round_number in (1, 2, 3):
        output = aggregation_process.next(state, client_data)
        state = output.state
        assert output.result == pytest.approx(8.0)
        assert output.measurements == pytest.approx(8.0 * round_number)


@tff.tensorflow.computation()
def scale(value, factor):
    return tf.nest.map_structure(lambda x: x * factor, value)


@tff.tensorflow.computation()
def unscale(value, factor):
    return tf.nest.map_structure(lambda x: x / factor, value)


@tff.tensorflow.computation()
def add_one(value):
    return value + 1.0


class StructuredTaskFactory(tff.aggregators.UnweightedAggregationFactory):
    """The tutorial's factory for structured values, with polymorphic TensorFlow computations."""

    def create(self, value_type):
        @federated_language.federated_computation()
        def initialize_fn():
            return federated_language.federated_value(0.0, federated_language.SERVER)

        @federated_language.federated_computation(
            initialize_fn.type_signature.result,
            federated_language.FederatedType(value_type, federated_language.CLIENTS),
        )
        def next_fn(state, value):
            new_state = federated_language.federated_map(add_one, state)
            state_at_clients = federated_language.federated_broadcast(new_state)
            scaled_value = federated_language.federated_map(scale, (value, state_at_clients))
            summed_value = federated_language.federated_sum(scaled_value)
            unscaled_value = federated_language.federated_map(unscale, (summed_value, new_state))
            return tff.templates.MeasuredProcessOutput(
                state=new_state, result=unscaled_value, measurements=summed_value
            )

        return tff.templates.AggregationProcess(initialize_fn, next_fn)


def test_structured_values():
    client_data = [[[1.0, 2.0], [3.0, 4.0, 5.0]], [[1.0, 1.0], [3.0, 0.0, -5.0]]]
    aggregation_process = StructuredTaskFactory().create(
        federated_language.to_type([(np.float32, (2,)), (np.float32, (3,))])
    )
    assert "value={<float32[2],float32[3]>}@CLIENTS" in str(aggregation_process.next.type_signature)
    state = aggregation_process.initialize()
    output = aggregation_process.next(state, client_data)
    np.testing.assert_allclose(output.result[0], [2.0, 3.0])
    np.testing.assert_allclose(output.result[1], [6.0, 4.0, 0.0])


class ExampleTaskFactory(tff.aggregators.UnweightedAggregationFactory):
    """The tutorial's factory that delegates the sum to an inner factory."""

    def __init__(self, inner_factory=None):
        if inner_factory is None:
            inner_factory = tff.aggregators.SumFactory()
        self._inner_factory = inner_factory

    def create(self, value_type):
        inner_process = self._inner_factory.create(value_type)

        @federated_language.federated_computation()
        def initialize_fn():
            my_state = federated_language.federated_value(0.0, federated_language.SERVER)
            inner_state = inner_process.initialize()
            return federated_language.federated_zip((my_state, inner_state))

        @federated_language.federated_computation(
            initialize_fn.type_signature.result,
            federated_language.FederatedType(value_type, federated_language.CLIENTS),
        )
        def next_fn(state, value):
            my_state, inner_state = state
            my_new_state = federated_language.federated_map(add_one, my_state)
            my_state_at_clients = federated_language.federated_broadcast(my_new_state)
            scaled_value = federated_language.federated_map(scale, (value, my_state_at_clients))

            # Delegation to an inner factory, returning values placed at SERVER.
            inner_output = inner_process.next(inner_state, scaled_value)

            unscaled_value = federated_language.federated_map(
                unscale, (inner_output.result, my_new_state)
            )

            new_state = federated_language.federated_zip((my_new_state, inner_output.state))
            measurements = federated_language.federated_zip(
                collections.OrderedDict(
                    scaled_value=inner_output.result, example_task=inner_output.measurements
                )
            )

            return tff.templates.MeasuredProcessOutput(
                state=new_state, result=unscaled_value, measurements=measurements
            )

        return tff.templates.AggregationProcess(initialize_fn, next_fn)


def test_delegating_factory():
    client_data = [1.0, 2.0, 5.0]
    aggregation_process = ExampleTaskFactory().create(federated_language.TensorType(np.float32))
    state = aggregation_process.initialize()
    for round_number in (1, 2):
        output = aggregation_process.next(state, client_data)
        state = output.state
        assert output.result == pytest.approx(8.0)
        assert output.measurements["scaled_value"] == pytest.approx(8.0 * round_number)
        assert output.measurements["example_task"] == ()


def test_nested_factories_multiply_by_the_square_of_the_round():
    client_data = [1.0, 2.0, 5.0]
    factory = ExampleTaskFactory(ExampleTaskFactory())
    aggregation_process = factory.create(federated_language.TensorType(np.float32))
    state = aggregation_process.initialize()
    for round_number in (1, 2):
        output = aggregation_process.next(state, client_data)
        state = output.state
        assert output.result == pytest.approx(8.0)
        # The outer factory sees the inner's unscaled sum; the inner one scales twice.
        assert output.measurements["scaled_value"] == pytest.approx(8.0 * round_number)
        assert output.measurements["example_task"]["scaled_value"] == pytest.approx(
            8.0 * round_number**2
        )


def test_a_user_factory_nests_inside_the_library_mean_and_trains():
    """A user-written factory works where fed's own do: as a MeanFactory's value sum."""
    mean = tff.aggregators.MeanFactory(value_sum_factory=ExampleTaskFactory())
    process = mean.create(federated_language.TensorType(np.float32, [2]), np.float32)
    state = process.initialize()
    output = process.next(
        state, [np.array([1.0, 2.0], np.float32), np.array([3.0, 6.0], np.float32)], [1.0, 3.0]
    )
    np.testing.assert_allclose(output.result, [2.5, 5.0])
    assert output.measurements["mean_value"]["scaled_value"] == pytest.approx([10.0, 20.0])
