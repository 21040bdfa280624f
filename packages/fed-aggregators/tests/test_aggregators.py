"""Sum and mean factories: the processes they create, their types, their results, and building by name."""

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import fed_core as fc
from fed_aggregators import (
    MeanFactory,
    SumFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    factory_from_config,
)
from fed_core.plugins import PluginInterfaceError
from fed_core.templates import AggregationProcess
from fed_types import StructType, TensorType

VECTOR = TensorType(np.float32, [2])
MIXED = StructType([("w", VECTOR), ("b", TensorType(np.float32))], collections.OrderedDict)


def _vectors(*rows):
    return [np.array(r, np.float32) for r in rows]


def test_sum_factory_sums_and_is_stateless():
    process = SumFactory().create(TensorType(np.int32, [3]))
    assert isinstance(process, AggregationProcess)
    assert not process.is_weighted
    assert str(process.next.type_signature) == (
        "(<state=<>@SERVER,value={int32[3]}@CLIENTS> -> "
        "<state=<>@SERVER,result=int32[3]@SERVER,measurements=<>@SERVER>)"
    )
    state = process.initialize()
    output = process.next(state, [np.array([1, 2, 3], np.int32), np.array([10, 20, 30], np.int32)])
    np.testing.assert_array_equal(output.result, [11, 22, 33])
    assert output.state == ()


def test_sum_factory_refuses_non_numeric_types():
    with pytest.raises(
        TypeError, match="SumFactory.create: expected a numeric tensor or a struct of them, got str"
    ):
        SumFactory().create(TensorType(np.str_))


def test_mean_factory_weighted_mean_of_structs():
    process = MeanFactory().create(MIXED, TensorType(np.float32))
    assert process.is_weighted
    state = process.initialize()
    values = [
        collections.OrderedDict(w=np.array([1.0, 2.0], np.float32), b=np.float32(0.0)),
        collections.OrderedDict(w=np.array([3.0, 6.0], np.float32), b=np.float32(4.0)),
    ]
    output = process.next(state, values, [1.0, 3.0])
    np.testing.assert_allclose(output.result["w"], [2.5, 5.0])
    assert output.result["b"] == pytest.approx(3.0)
    assert output.measurements == collections.OrderedDict(mean_value=(), mean_weight=())


class _CountingSumFactory(UnweightedAggregationFactory):
    """A sum whose state counts rounds: shows that inner factories are really used and their state kept."""

    def create(self, value_type):
        import tensorflow as tf

        import fed_core as fc
        import fed_tensorflow as ftf
        from fed_core.templates import MeasuredProcessOutput
        from fed_types import CLIENTS, SERVER, FederatedType

        @ftf.computation
        def zero():
            return tf.constant(0, tf.int32)

        @ftf.computation(np.int32)
        def increment(count):
            return count + 1

        @fc.federated_computation
        def initialize():
            return fc.federated_eval(zero, SERVER)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            new_state = fc.federated_map(increment, state)
            return MeasuredProcessOutput(new_state, fc.federated_sum(value), new_state)

        return AggregationProcess(initialize, next_fn)


def test_mean_factory_uses_inner_factories_and_keeps_their_state():
    process = MeanFactory(value_sum_factory=_CountingSumFactory()).create(
        VECTOR, TensorType(np.int32)
    )
    state = process.initialize()
    assert state == collections.OrderedDict(value_sum_process=0, weight_sum_process=())
    for round_num in range(1, 3):
        output = process.next(state, _vectors([1, 1], [4, 0]), [3, 1])
        state = output.state
        np.testing.assert_allclose(output.result, [(3 * 1 + 4) / 4, 3 / 4])
        assert output.measurements["mean_value"] == round_num
    assert state["value_sum_process"] == 2


def test_mean_factory_same_result_by_both_paths():
    values, weights = _vectors([1, 2], [5, -1], [0, 3]), [2.0, 1.0, 0.5]
    fast = MeanFactory().create(VECTOR, TensorType(np.float32))
    general = MeanFactory(no_nan_division=True).create(VECTOR, TensorType(np.float32))
    np.testing.assert_allclose(
        fast.next(fast.initialize(), values, weights).result,
        general.next(general.initialize(), values, weights).result,
        rtol=1e-6,
    )


def test_no_nan_division_gives_zero_for_zero_total_weight():
    process = MeanFactory(no_nan_division=True).create(VECTOR, TensorType(np.float32))
    np.testing.assert_array_equal(
        process.next(process.initialize(), _vectors([1, 2]), [0.0]).result, [0.0, 0.0]
    )


def test_mean_factory_refuses_integer_values_and_vector_weights():
    with pytest.raises(TypeError, match="floating-point tensor or a struct of them, got int32"):
        MeanFactory().create(TensorType(np.int32), TensorType(np.float32))
    with pytest.raises(TypeError, match=r"numeric scalar weight type, got float32\[2\]"):
        MeanFactory().create(VECTOR, VECTOR)
    with pytest.raises(
        TypeError, match="value_sum_factory must be an UnweightedAggregationFactory"
    ):
        MeanFactory(value_sum_factory=MeanFactory())


def test_unweighted_mean_both_paths():
    values = _vectors([1, 2], [3, 4], [5, 9])
    for factory in (
        UnweightedMeanFactory(),
        UnweightedMeanFactory(count_sum_factory=_CountingSumFactory()),
    ):
        process = factory.create(VECTOR)
        output = process.next(process.initialize(), values)
        np.testing.assert_allclose(output.result, [3.0, 5.0])


def test_factories_are_built_by_name_through_the_plugin_registry():
    factory = factory_from_config(
        {"name": "mean", "value_sum_factory": {"name": "sum"}, "no_nan_division": True}
    )
    assert isinstance(factory, MeanFactory)
    assert "no_nan_division=True" in repr(factory)
    assert isinstance(factory_from_config("unweighted_mean"), UnweightedMeanFactory)
    with pytest.raises(KeyError, match="no-such"):
        factory_from_config("no-such")
    with pytest.raises(
        TypeError, match="Cannot build the aggregator 'sum' with options \\['bogus'\\]"
    ):
        factory_from_config({"name": "sum", "bogus": 1})
    with pytest.raises(TypeError, match="a registered name or a dict with a 'name' key"):
        factory_from_config({"value_sum_factory": "sum"})


def test_an_installed_third_party_aggregator_is_built_by_name_and_runs():
    # fed-example-plugin (tests/plugins) registers "example_mean" through its entry point.
    factory = factory_from_config("example_mean")
    assert isinstance(factory, UnweightedMeanFactory)
    process = factory.create(np.float32)
    assert process.next(process.initialize(), [1.0, 2.0, 6.0]).result == pytest.approx(3.0)


def test_a_registered_aggregator_that_builds_the_wrong_thing_is_refused_naming_its_plugin(
    fed_default_plugin_system,
):
    class Wrong:
        @fc.hookimpl
        def fed_register_aggregators(self, register):
            register.add("not_a_factory", lambda: "a string")

    fed_default_plugin_system.register(Wrong(), name="wrong_aggregators")
    with pytest.raises(PluginInterfaceError, match="plugin 'wrong_aggregators'.*create"):
        factory_from_config("not_a_factory")


def test_a_chain_string_builds_nested_factories_outermost_first():
    factory = factory_from_config(
        "zeroing(zeroing_norm=10.0) -> clipping(clipping_norm={'quantile': {'initial_estimate': 1.0, "
        "'target_quantile': 0.8, 'learning_rate': 0.2}}) -> mean"
    )
    process = factory.create(VECTOR, TensorType(np.float32))
    output = process.next(
        process.initialize(), _vectors([30, 40], [0.3, 0.4], [0.6, 0.8]), [1, 1, 2]
    )
    # [30, 40] is zeroed (inf-norm 40 > 10) but keeps its weight; the others are inside the clip 1.0.
    np.testing.assert_allclose(output.result, [(0.3 + 1.2) / 4, (0.4 + 1.6) / 4], rtol=1e-6)
    assert output.measurements["zeroed_count"] == 1
    assert output.measurements["zeroing"]["clipping_norm"] == pytest.approx(1.0)


def test_a_chain_as_a_list_of_steps_equals_the_nested_dict():
    as_list = factory_from_config(
        [{"name": "clipping", "clipping_norm": 2.0}, {"name": "unweighted_mean"}]
    )
    as_dict = factory_from_config(
        {"name": "clipping", "clipping_norm": 2.0, "inner_agg_factory": {"name": "unweighted_mean"}}
    )
    values = _vectors([3, 4], [0, 1])
    results = []
    for factory in (as_list, as_dict):
        process = factory.create(VECTOR)
        results.append(process.next(process.initialize(), values).result)
    np.testing.assert_allclose(results[0], [0.6, 1.3], rtol=1e-6)
    np.testing.assert_allclose(results[1], results[0])


@pytest.mark.parametrize(
    "config, error, message",
    [
        ("clipping(clipping_norm=__import__('os')) -> mean", ValueError, "must be a literal"),
        ("clipping(1.0) -> mean", ValueError, "expected a step 'name' or 'name\\(keyword=literal"),
        ("zeroing(zeroing_norm=1.0) -> -> mean", ValueError, "An empty step"),
        ("sum -> mean", TypeError, "'sum' takes no inner factory"),
        (
            [
                {"name": "clipping", "clipping_norm": 1.0, "inner_agg_factory": {"name": "sum"}},
                "sum",
            ],
            ValueError,
            "given its inner_agg_factory twice",
        ),
        ("sum -> no_such_factory", KeyError, "no_such_factory"),
        ([], TypeError, "Expected an aggregator configuration"),
    ],
)
def test_bad_configurations_are_refused_before_anything_is_built(config, error, message):
    with pytest.raises(error, match=message):
        factory_from_config(config)
