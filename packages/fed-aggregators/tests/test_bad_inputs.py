"""Every public entry point of fed-aggregators, given what a new user might give it by mistake: each call
is refused early with an error that names what was expected and what was given, and a refused round
leaves the process's state as usable as it was."""

import importlib.util
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

import fed_core as fc
from fed_aggregators import (
    BulyanFactory,
    CoordinateMedianFactory,
    DifferentiallyPrivateFactory,
    DiscreteFourierTransformFactory,
    EncodedSumFactory,
    HadamardTransformFactory,
    KrumFactory,
    MeanFactory,
    MultiKrumFactory,
    NormBoundedMeanFactory,
    PrivateQuantileEstimationProcess,
    RandomKSparsificationFactory,
    SecureModularSumFactory,
    SecureSumFactory,
    SumFactory,
    TopKSparsificationFactory,
    TrimmedMeanFactory,
    UnweightedAggregationFactory,
    UnweightedMeanFactory,
    clipping_factory,
    dp,
    factory_from_config,
    federated_gather,
    zeroing_factory,
)
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, StructType, TensorType

F32 = TensorType(np.float32)
VECTOR = TensorType(np.float32, [2])
no_noise = PrivateQuantileEstimationProcess.no_noise
needs_dp_accounting = pytest.mark.skipif(
    importlib.util.find_spec("dp_accounting") is None, reason="the accounting needs dp-accounting"
)


class _CountingSum(UnweightedAggregationFactory):
    """A sum that is not SumFactory (so that MeanFactory takes its general path), with a state."""

    def create(self, value_type):
        inner = SumFactory().create(value_type)

        @fc.federated_computation
        def initialize():
            return fc.federated_value(np.int32(0), SERVER)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            summed = inner.next(inner.initialize(), value)
            return MeasuredProcessOutput(state, summed.result, state)

        return AggregationProcess(initialize, next_fn)


CONSTRUCTION = [
    # ---- sums and means
    pytest.param(
        lambda: MeanFactory(no_nan_division="yes"),
        TypeError,
        "MeanFactory: no_nan_division must be a bool, got 'yes'",
        id="MeanFactory/no_nan_division str",
    ),
    pytest.param(
        lambda: MeanFactory(value_sum_factory=3),
        TypeError,
        "MeanFactory: value_sum_factory must be an UnweightedAggregationFactory, got 3",
        id="MeanFactory/value_sum_factory int",
    ),
    pytest.param(
        lambda: MeanFactory(weight_sum_factory=MeanFactory()),
        TypeError,
        "weight_sum_factory must be an UnweightedAggregationFactory, got MeanFactory",
        id="MeanFactory/weighted weight_sum_factory",
    ),
    pytest.param(
        lambda: UnweightedMeanFactory(count_sum_factory="sum"),
        TypeError,
        "count_sum_factory must be an UnweightedAggregationFactory, got 'sum'",
        id="UnweightedMeanFactory/count_sum_factory str",
    ),
    # ---- secure sums
    pytest.param(
        lambda: SecureSumFactory(None),
        TypeError,
        "upper_bound_threshold must be an int, a float or an EstimationProcess, got None",
        id="SecureSumFactory/None",
    ),
    pytest.param(
        lambda: SecureSumFactory(True),
        TypeError,
        "upper_bound_threshold must be an int, a float or an EstimationProcess, got True",
        id="SecureSumFactory/bool",
    ),
    pytest.param(
        lambda: SecureSumFactory(float("nan")),
        ValueError,
        "the bounds must be finite, got nan",
        id="SecureSumFactory/nan",
    ),
    pytest.param(
        lambda: SecureSumFactory(1.0, float("-inf")),
        ValueError,
        "the bounds must be finite, got 1.0 and -inf",
        id="SecureSumFactory/infinite lower",
    ),
    pytest.param(
        lambda: SecureSumFactory(0),
        ValueError,
        r"with only upper_bound_threshold, it must be positive \(its negation is the lower bound\), "
        "got 0",
        id="SecureSumFactory/zero",
    ),
    pytest.param(
        lambda: SecureSumFactory(1, 0.5),
        TypeError,
        "must be of the same kind .* got 1 and 0.5",
        id="SecureSumFactory/mixed kinds",
    ),
    pytest.param(
        lambda: SecureSumFactory(1.0, 1.0),
        ValueError,
        "upper_bound_threshold must be larger than lower_bound_threshold, got 1.0 and 1.0",
        id="SecureSumFactory/equal bounds",
    ),
    pytest.param(
        lambda: SecureSumFactory(2**62),
        ValueError,
        "needs 64 bits per client, more than the 62 bits a secure sum carries",
        id="SecureSumFactory/too wide",
    ),
    pytest.param(
        lambda: SecureModularSumFactory(0),
        ValueError,
        "SecureModularSumFactory: modulus must be positive, got 0",
        id="SecureModularSumFactory/zero",
    ),
    pytest.param(
        lambda: SecureModularSumFactory(5.0),
        TypeError,
        "modulus must be an integer, got 5.0",
        id="SecureModularSumFactory/float",
    ),
    pytest.param(
        lambda: SecureModularSumFactory(5, "yes"),
        TypeError,
        "symmetric_range must be a bool, got 'yes'",
        id="SecureModularSumFactory/symmetric_range str",
    ),
    pytest.param(
        lambda: SecureModularSumFactory(2**63),
        ValueError,
        r"must fit int64 \(at most 9223372036854775807\)",
        id="SecureModularSumFactory/huge",
    ),
    # ---- clipping and zeroing
    pytest.param(
        lambda: clipping_factory(0, MeanFactory()),
        ValueError,
        "clipping_factory: clipping_norm must be positive, got 0",
        id="clipping_factory/zero norm",
    ),
    pytest.param(
        lambda: clipping_factory(-1.5, MeanFactory()),
        ValueError,
        "clipping_norm must be positive, got -1.5",
        id="clipping_factory/negative norm",
    ),
    pytest.param(
        lambda: clipping_factory(float("nan"), MeanFactory()),
        ValueError,
        "clipping_norm must be positive, got nan",
        id="clipping_factory/nan norm",
    ),
    pytest.param(
        lambda: clipping_factory("1", MeanFactory()),
        TypeError,
        "clipping_norm must be a positive number or an EstimationProcess, got '1'",
        id="clipping_factory/str norm",
    ),
    pytest.param(
        lambda: clipping_factory(1.0, MeanFactory),
        TypeError,
        "inner_agg_factory must be an aggregation factory, got <class",
        id="clipping_factory/a class as inner",
    ),
    pytest.param(
        lambda: clipping_factory(1.0, MeanFactory(), clipped_count_sum_factory=MeanFactory()),
        TypeError,
        "the count's sum factory must be an UnweightedAggregationFactory",
        id="clipping_factory/weighted count sum",
    ),
    pytest.param(
        lambda: zeroing_factory(1.0, SumFactory(), norm_order=3),
        ValueError,
        "zeroing_factory: norm_order must be 1.0, 2.0 or inf, got 3",
        id="zeroing_factory/order 3",
    ),
    pytest.param(
        lambda: zeroing_factory(1.0, SumFactory(), norm_order="l2"),
        TypeError,
        "norm_order must be 1.0, 2.0 or inf, got 'l2'",
        id="zeroing_factory/order str",
    ),
    pytest.param(
        lambda: zeroing_factory(1.0, SumFactory(), norm_order=float("nan")),
        ValueError,
        "norm_order must be 1.0, 2.0 or inf, got nan",
        id="zeroing_factory/order nan",
    ),
    # ---- quantile estimation
    pytest.param(
        lambda: no_noise(0.0, 0.5, 0.2),
        ValueError,
        "initial_estimate must be positive, got 0.0",
        id="quantile/initial_estimate zero",
    ),
    pytest.param(
        lambda: no_noise(float("inf"), 0.5, 0.2),
        ValueError,
        "initial_estimate must be a finite number, got inf",
        id="quantile/initial_estimate inf",
    ),
    pytest.param(
        lambda: no_noise(1.0, 1.5, 0.2),
        ValueError,
        r"target_quantile must be in \[0.0, 1.0\], got 1.5",
        id="quantile/target_quantile above 1",
    ),
    pytest.param(
        lambda: no_noise(1.0, float("nan"), 0.2),
        ValueError,
        r"target_quantile must be in \[0.0, 1.0\], got nan",
        id="quantile/target_quantile nan",
    ),
    pytest.param(
        lambda: no_noise(1.0, 0.5, -0.1),
        ValueError,
        "learning_rate must be positive, got -0.1",
        id="quantile/negative learning_rate",
    ),
    pytest.param(
        lambda: no_noise(1.0, 0.5, 0.2, multiplier=float("inf")),
        ValueError,
        "multiplier must be a finite number, got inf",
        id="quantile/infinite multiplier",
    ),
    pytest.param(
        lambda: no_noise(1.0, 0.5, 0.2, secure_estimation="yes"),
        TypeError,
        "secure_estimation must be a bool, got 'yes'",
        id="quantile/secure_estimation str",
    ),
    pytest.param(
        lambda: PrivateQuantileEstimationProcess(3),
        TypeError,
        "expected a quantile estimator query .* got 3",
        id="quantile/not a query",
    ),
    # ---- robust rules
    pytest.param(
        lambda: TrimmedMeanFactory(0.5),
        ValueError,
        r"beta, the fraction trimmed from each end, must be in \[0, 0.5\), got 0.5",
        id="TrimmedMeanFactory/beta 0.5",
    ),
    pytest.param(
        lambda: TrimmedMeanFactory(float("nan")),
        ValueError,
        r"must be in \[0, 0.5\), got nan",
        id="TrimmedMeanFactory/beta nan",
    ),
    pytest.param(
        lambda: TrimmedMeanFactory("0.1"),
        TypeError,
        "beta must be a number, got '0.1'",
        id="TrimmedMeanFactory/beta str",
    ),
    pytest.param(
        lambda: KrumFactory(-1),
        ValueError,
        "KrumFactory: num_byzantine must be at least 0, got -1",
        id="KrumFactory/negative",
    ),
    pytest.param(
        lambda: KrumFactory(1.0),
        TypeError,
        "KrumFactory: num_byzantine must be an int, got 1.0",
        id="KrumFactory/float",
    ),
    pytest.param(
        lambda: MultiKrumFactory(1, 0),
        ValueError,
        "num_selected must be at least 1, got 0",
        id="MultiKrumFactory/none selected",
    ),
    pytest.param(
        lambda: BulyanFactory(None),
        TypeError,
        "BulyanFactory: num_byzantine must be an int, got None",
        id="BulyanFactory/None",
    ),
    pytest.param(
        lambda: NormBoundedMeanFactory(-1),
        ValueError,
        "norm_bound must be a positive finite number, got -1.0",
        id="NormBoundedMeanFactory/negative",
    ),
    pytest.param(
        lambda: NormBoundedMeanFactory(float("nan")),
        ValueError,
        "norm_bound must be a positive finite number, got nan",
        id="NormBoundedMeanFactory/nan",
    ),
    # ---- compression
    pytest.param(
        lambda: EncodedSumFactory.quantize_above_threshold(0),
        ValueError,
        r"quantization_bits must be in \[1, 16\], got 0",
        id="EncodedSumFactory/zero bits",
    ),
    pytest.param(
        lambda: EncodedSumFactory.quantize_above_threshold(17),
        ValueError,
        r"quantization_bits must be in \[1, 16\], got 17",
        id="EncodedSumFactory/17 bits",
    ),
    pytest.param(
        lambda: EncodedSumFactory.quantize_above_threshold(8, -1),
        ValueError,
        "threshold must be >= 0, got -1",
        id="EncodedSumFactory/negative threshold",
    ),
    pytest.param(
        lambda: EncodedSumFactory(None),
        TypeError,
        "encoder_fn must be a callable from a TensorType to a TensorEncoder, got None",
        id="EncodedSumFactory/no encoder",
    ),
    pytest.param(
        lambda: EncodedSumFactory.quantize_above_threshold(seed="a"),
        TypeError,
        "seed must be an int or None, got 'a'",
        id="EncodedSumFactory/seed str",
    ),
    pytest.param(
        lambda: TopKSparsificationFactory(),
        ValueError,
        "give exactly one of k and fraction, got k=None, fraction=None",
        id="TopK/neither",
    ),
    pytest.param(
        lambda: TopKSparsificationFactory(k=1, fraction=0.5),
        ValueError,
        "give exactly one of k and fraction, got k=1, fraction=0.5",
        id="TopK/both",
    ),
    pytest.param(
        lambda: TopKSparsificationFactory(k=0),
        ValueError,
        "k must be >= 1, got 0",
        id="TopK/k zero",
    ),
    pytest.param(
        lambda: TopKSparsificationFactory(fraction=float("nan")),
        ValueError,
        r"fraction must be in \(0, 1\], got nan",
        id="TopK/fraction nan",
    ),
    pytest.param(
        lambda: RandomKSparsificationFactory(k=1, seed=1.5),
        TypeError,
        "seed must be an int or None, got 1.5",
        id="RandomK/seed float",
    ),
    pytest.param(
        lambda: HadamardTransformFactory(num_repeats=0),
        ValueError,
        "num_repeats must be >= 1, got 0",
        id="Hadamard/no repeats",
    ),
    pytest.param(
        lambda: DiscreteFourierTransformFactory(inner_agg_factory=3),
        TypeError,
        "inner_agg_factory must be an UnweightedAggregationFactory, got 3",
        id="DFT/inner int",
    ),
    # ---- differential privacy (checked before tensorflow-privacy is needed)
    pytest.param(
        lambda: DifferentiallyPrivateFactory.gaussian_fixed(-1.0, 10, 1.0),
        ValueError,
        "gaussian_fixed: noise_multiplier must be non-negative, got -1.0",
        id="dp_fixed/negative noise",
    ),
    pytest.param(
        lambda: DifferentiallyPrivateFactory.gaussian_fixed(1.0, 0, 1.0),
        ValueError,
        "gaussian_fixed: clients_per_round must be positive, got 0.0",
        id="dp_fixed/zero clients_per_round",
    ),
    pytest.param(
        lambda: DifferentiallyPrivateFactory.gaussian_fixed(1.0, -3, 1.0),
        ValueError,
        "clients_per_round must be positive, got -3.0",
        id="dp_fixed/negative clients_per_round",
    ),
    pytest.param(
        lambda: DifferentiallyPrivateFactory.gaussian_fixed(1.0, 10, float("nan")),
        ValueError,
        "clip must be positive, got nan",
        id="dp_fixed/nan clip",
    ),
    pytest.param(
        lambda: DifferentiallyPrivateFactory.gaussian_fixed(1.0, 10, float("inf")),
        ValueError,
        "clip must be a finite number, got inf",
        id="dp_fixed/infinite clip",
    ),
    pytest.param(
        lambda: DifferentiallyPrivateFactory.gaussian_adaptive(
            1.0, 100, target_unclipped_quantile=2
        ),
        ValueError,
        r"target_unclipped_quantile must be in \[0.0, 1.0\], got 2.0",
        id="dp_adaptive/quantile above 1",
    ),
    pytest.param(
        lambda: DifferentiallyPrivateFactory.tree_aggregation(1.0, 10, 0.0, tf.TensorSpec([2])),
        ValueError,
        "l2_norm_clip must be positive, got 0.0",
        id="dp_tree/zero clip",
    ),
    pytest.param(
        lambda: dp.epsilon(1.0, 10, 1000, -1, 1e-5),
        ValueError,
        "epsilon: rounds must be a non-negative int, got -1",
        id="dp.epsilon/negative rounds",
        marks=needs_dp_accounting,
    ),
    pytest.param(
        lambda: dp.epsilon(1.0, 10, 1000, 10, 1.0),
        ValueError,
        r"target_delta must be in \(0, 1\), got 1.0",
        id="dp.epsilon/delta 1",
        marks=needs_dp_accounting,
    ),
    pytest.param(
        lambda: dp.epsilon(1.0, 10, 5, 10, 1e-5),
        ValueError,
        r"clients_per_round \(10\) exceeds the population \(5\)",
        id="dp.epsilon/more clients than people",
        marks=needs_dp_accounting,
    ),
    pytest.param(
        lambda: dp.epsilon(1.0, 10, 1000, 10, 1e-5, accountant="x"),
        ValueError,
        r"accountant must be one of \['rdp', 'pld'\], got 'x'",
        id="dp.epsilon/unknown accountant",
        marks=needs_dp_accounting,
    ),
    pytest.param(
        lambda: dp.noise_multiplier_for_epsilon(float("inf"), 10, 1000, 10, 1e-5),
        ValueError,
        "target_epsilon must be a finite number, got inf",
        id="dp.noise_multiplier_for_epsilon/infinite epsilon",
        marks=needs_dp_accounting,
    ),
    # ---- configuration and the gather intrinsic
    pytest.param(
        lambda: factory_from_config(None),
        TypeError,
        "Expected an aggregator configuration: .* got None",
        id="factory_from_config/None",
    ),
    pytest.param(
        lambda: factory_from_config({"name": "mean", "bogus": 1}),
        TypeError,
        r"Cannot build the aggregator 'mean' with options \['bogus'\]",
        id="factory_from_config/unknown option",
    ),
    pytest.param(
        lambda: factory_from_config({"name": "krum", "num_byzantine": -1}),
        ValueError,
        "KrumFactory: num_byzantine must be at least 0, got -1",
        id="factory_from_config/bad option value",
    ),
    pytest.param(
        lambda: federated_gather(3),
        RuntimeError,
        "federated_gather can only be used inside a federated computation",
        id="federated_gather/outside a computation",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), CONSTRUCTION)
def test_bad_construction_is_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


CREATION = [
    pytest.param(
        lambda: SumFactory().create(TensorType(np.str_)),
        TypeError,
        "SumFactory.create: expected a numeric tensor or a struct of them, got str",
        id="SumFactory/strings",
    ),
    pytest.param(
        lambda: SumFactory().create(SequenceType(np.float32)),
        TypeError,
        r"expected a numeric tensor or a struct of them, got float32\*",
        id="SumFactory/a sequence",
    ),
    pytest.param(
        lambda: SumFactory().create(FederatedType(np.float32, CLIENTS)),
        TypeError,
        "expected a numeric tensor or a struct of them, got {float32}@CLIENTS",
        id="SumFactory/a federated type",
    ),
    pytest.param(
        lambda: MeanFactory().create(TensorType(np.int32), F32),
        TypeError,
        "MeanFactory.create: expected a floating-point tensor or a struct of them, got int32",
        id="MeanFactory/integer values",
    ),
    pytest.param(
        lambda: MeanFactory().create(VECTOR, VECTOR),
        TypeError,
        r"MeanFactory.create: expected a numeric scalar weight type, got float32\[2\]",
        id="MeanFactory/vector weights",
    ),
    pytest.param(
        lambda: MeanFactory().create(VECTOR, np.bool_),
        TypeError,
        "expected a numeric scalar weight type, got bool",
        id="MeanFactory/bool weights",
    ),
    pytest.param(
        lambda: SecureSumFactory(5).create(VECTOR),
        TypeError,
        r"bounds are for integer values; .* got float32\[2\]",
        id="SecureSumFactory/integer bounds for floats",
    ),
    pytest.param(
        lambda: SecureSumFactory(2**40).create(TensorType(np.int32)),
        ValueError,
        "the upper bound 1099511627776 does not fit the values' dtype int32",
        id="SecureSumFactory/bound beyond the dtype",
    ),
    pytest.param(
        lambda: SecureSumFactory(5).create(StructType([("a", np.int32), ("b", np.int64)])),
        TypeError,
        "expected tensors of a single dtype .* got <a=int32,b=int64>",
        id="SecureSumFactory/mixed dtypes",
    ),
    pytest.param(
        lambda: SecureModularSumFactory(2**40).create(np.int32),
        ValueError,
        "the sum modulo 1099511627776 reaches 1099511627775, beyond the values' dtype int32",
        id="SecureModularSumFactory/modulus beyond the dtype",
    ),
    pytest.param(
        lambda: SecureModularSumFactory(5, symmetric_range=True).create(np.uint8),
        TypeError,
        "symmetric_range gives negative sums, which unsigned values cannot hold",
        id="SecureModularSumFactory/symmetric unsigned",
    ),
    pytest.param(
        lambda: clipping_factory(1.0, MeanFactory()).create(TensorType(np.int32), F32),
        TypeError,
        "clipping_factory.create: expected a floating-point tensor or a struct of them, got int32",
        id="clipping_factory/integer values",
    ),
    pytest.param(
        lambda: CoordinateMedianFactory().create(StructType([])),
        TypeError,
        "expected at least one tensor to aggregate, got <>",
        id="CoordinateMedianFactory/empty struct",
    ),
    pytest.param(
        lambda: KrumFactory(0).create(VECTOR, VECTOR),
        TypeError,
        r"KrumFactory.create: expected a numeric scalar weight type, got float32\[2\]",
        id="KrumFactory/vector weights",
    ),
    pytest.param(
        lambda: EncodedSumFactory.quantize_above_threshold().create(TensorType(np.float32, [None])),
        TypeError,
        r"expected tensors of fully known shapes, got float32\[\?\]",
        id="EncodedSumFactory/unknown shape",
    ),
    pytest.param(
        lambda: HadamardTransformFactory().create(TensorType(np.str_)),
        TypeError,
        "expected a numeric tensor or a struct of them, got str",
        id="HadamardTransformFactory/strings",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), CREATION)
def test_bad_value_types_are_refused_at_create(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- rounds: refused before anything runs, and the state still serves the next round


def _floats(*values):
    return [np.float32(v) for v in values]


ROUNDS = [
    pytest.param(
        lambda: MeanFactory().create(F32, F32),
        (_floats(1.0, 2.0), _floats(2.0, -1.0)),
        ValueError,
        "MeanFactory: client weights must be finite non-negative numbers; client 1 has weight -1",
        (_floats(1.0, 2.0), _floats(1.0, 3.0)),
        1.75,
        id="MeanFactory/negative weight",
    ),
    pytest.param(
        lambda: MeanFactory(weight_sum_factory=_CountingSum()).create(F32, F32),
        (_floats(1.0), _floats(np.inf)),
        ValueError,
        "MeanFactory: client weights must be finite non-negative numbers; client 0 has weight inf",
        (_floats(1.0, 3.0), _floats(1.0, 1.0)),
        2.0,
        id="MeanFactory/infinite weight, inner factories",
    ),
    pytest.param(
        lambda: MeanFactory().create(F32, F32),
        ([], []),
        ValueError,
        "MeanFactory needs at least one client; there are none",
        (_floats(4.0), _floats(2.0)),
        4.0,
        id="MeanFactory/no clients",
    ),
    pytest.param(
        lambda: UnweightedMeanFactory(count_sum_factory=SecureSumFactory(1)).create(F32),
        ([],),
        ValueError,
        "UnweightedMeanFactory needs at least one client; there are none",
        (_floats(1.0, 2.0),),
        1.5,
        id="UnweightedMeanFactory/no clients",
    ),
    pytest.param(
        lambda: KrumFactory(1).create(F32),
        ([],),
        ValueError,
        r"KrumFactory needs n >= 2 \* num_byzantine \+ 3 = 5 clients \(num_byzantine = 1\); "
        "got n = 0",
        (_floats(1, 2, 3, 4, 100),),
        2.0,
        id="KrumFactory/no clients",
    ),
    pytest.param(
        lambda: MultiKrumFactory(1, 4).create(F32, F32),
        (_floats(1, 2, 3, 4, 5), _floats(1, 1, 1, 1, 0)),
        ValueError,
        r"MultiKrumFactory needs n >= max\(2 \* num_byzantine \+ 3, num_selected \+ num_byzantine\) "
        r"= 5 clients with a positive weight \(num_byzantine = 1, num_selected = 4\); got n = 4",
        (_floats(1, 2, 3, 4, 5), _floats(1, 1, 1, 1, 1)),
        2.5,
        id="MultiKrumFactory/weight zero does not count",
    ),
    pytest.param(
        lambda: BulyanFactory(1).create(F32),
        (_floats(1, 2, 3),),
        ValueError,
        r"BulyanFactory needs n >= 4 \* num_byzantine \+ 3 = 7 clients \(num_byzantine = 1\); "
        "got n = 3",
        (_floats(5, 5, 5, 5, 5, 5, 100),),
        5.0,
        id="BulyanFactory/too few clients",
    ),
    pytest.param(
        lambda: TrimmedMeanFactory(0.2).create(F32, F32),
        (_floats(1.0, 2.0), _floats(0.0, 0.0)),
        ValueError,
        "TrimmedMeanFactory needs at least one client with a positive weight; got n = 0",
        (_floats(1.0, 2.0), _floats(1.0, 1.0)),
        1.5,
        id="TrimmedMeanFactory/only weight zero",
    ),
    pytest.param(
        lambda: CoordinateMedianFactory().create(F32, F32),
        (_floats(1.0, 2.0), _floats(1.0, np.nan)),
        ValueError,
        "CoordinateMedianFactory: client weights must be finite non-negative numbers; client 1 has "
        "weight nan",
        (_floats(1.0, 2.0, 9.0), _floats(1.0, 1.0, 1.0)),
        2.0,
        id="CoordinateMedianFactory/nan weight",
    ),
    pytest.param(
        lambda: NormBoundedMeanFactory(10.0).create(F32, F32),
        (_floats(1.0), _floats(-2.0)),
        ValueError,
        "NormBoundedMeanFactory: client weights must be finite non-negative numbers; client 0 has "
        "weight -2",
        (_floats(1.0, 3.0), _floats(1.0, 1.0)),
        2.0,
        id="NormBoundedMeanFactory/negative weight",
    ),
    pytest.param(
        lambda: SecureSumFactory(2**30).create(np.int32),
        ([np.int32(2**30), np.int32(1)],),
        ValueError,
        r"summing the values of 2 clients, int32 clipped to \[-1073741824, 1073741824\], can "
        "overflow the range of int32; the limit is 1 clients. Narrow the bounds or use a wider dtype",
        ([np.int32(2**30)],),
        2**30,
        id="SecureSumFactory/int32 overflow",
    ),
    pytest.param(
        lambda: SecureSumFactory(1000.0).create(np.float16),
        ([np.float16(0.5)] * 66,),
        ValueError,
        r"66 clients, float16 clipped to \[-1000, 1000\], can overflow the range of float16",
        ([np.float16(0.5)] * 4,),
        2.0,
        id="SecureSumFactory/float16 overflow",
    ),
]


@pytest.mark.parametrize(
    ("make", "arguments", "error", "message", "good_arguments", "expected"), ROUNDS
)
def test_a_refused_round_leaves_the_state_usable(
    make, arguments, error, message, good_arguments, expected
):
    process = make()
    state = process.initialize()
    with pytest.raises(error, match=message):
        process.next(state, *arguments)
    output = process.next(state, *good_arguments)
    assert output.result == pytest.approx(expected, rel=1e-6)
    assert process.next(output.state, *good_arguments).result == pytest.approx(expected, rel=1e-6)


# ---- the known cases


def _mean_inside_a_computation(factory):
    process = factory.create(F32, F32)

    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS), FederatedType(np.float32, CLIENTS)
    )
    def mean_of(values, weights):
        return process.next(process.initialize(), values, weights).result

    return mean_of


@pytest.mark.parametrize(
    "factory",
    [MeanFactory(), MeanFactory(no_nan_division=True)],
    ids=["one reduction", "general path"],
)
def test_negative_weights_are_refused_inside_another_computation_too(factory):
    mean_of = _mean_inside_a_computation(factory)
    assert mean_of(_floats(1.0, 2.0), _floats(1.0, 3.0)) == pytest.approx(1.75)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="MeanFactory: client weights must be finite non-negative numbers; got -1",
    ):
        mean_of(_floats(1.0, 2.0), _floats(2.0, -1.0))


@pytest.mark.parametrize("inner", [None, _CountingSum()], ids=["SumFactory", "custom sum"])
def test_a_zero_total_weight_gives_the_same_mean_whatever_the_sum_factory(inner):
    process = MeanFactory(weight_sum_factory=inner).create(VECTOR, F32)
    result = process.next(process.initialize(), [np.ones(2, np.float32)], _floats(0.0)).result
    assert np.isnan(result).all()  # undefined, as TensorFlow Federated gives it
    no_nan = MeanFactory(weight_sum_factory=inner, no_nan_division=True).create(VECTOR, F32)
    zeros = no_nan.next(no_nan.initialize(), [np.ones(2, np.float32)], _floats(0.0)).result
    np.testing.assert_array_equal(zeros, [0.0, 0.0])


def test_an_int32_secure_sum_that_overflows_is_refused_not_wrapped():
    @fc.federated_computation(FederatedType(np.int32, CLIENTS))
    def secure_total(values):
        return fc.federated_secure_sum(values, np.int32(2**31 - 1))

    assert secure_total([np.int32(2**30), np.int32(2**30 - 1)]) == 2**31 - 1
    with pytest.raises(
        OverflowError,
        match=r"federated_secure_sum: the sum of the clients' int32 values is 2147483652, which "
        r"overflows int32 .* sum them in a wider dtype \(cast to int64 before the sum\)",
    ):
        secure_total([np.int32(2**31 - 1), np.int32(5)])


NUMPY_SCALARS = [
    pytest.param(
        lambda: zeroing_factory(np.float32(1.0), SumFactory(), np.float32(2.0)), id="zeroing"
    ),
    pytest.param(lambda: zeroing_factory(1.0, SumFactory(), np.int64(1)), id="zeroing int order"),
    pytest.param(lambda: clipping_factory(np.float64(1.0), MeanFactory()), id="clipping"),
    pytest.param(lambda: SecureSumFactory(np.int64(5), np.int32(-2)), id="secure sum ints"),
    pytest.param(lambda: SecureSumFactory(np.float32(2.0)), id="secure sum float"),
    pytest.param(lambda: SecureModularSumFactory(np.int64(7), np.bool_(True)), id="modular sum"),
    pytest.param(lambda: TrimmedMeanFactory(np.float32(0.25)), id="trimmed mean"),
    pytest.param(lambda: MultiKrumFactory(np.int64(1), np.int32(2)), id="multi-Krum"),
    pytest.param(lambda: NormBoundedMeanFactory(np.float16(1.0)), id="norm bounded mean"),
    pytest.param(lambda: TopKSparsificationFactory(fraction=np.float32(0.5)), id="top-k"),
    pytest.param(
        lambda: EncodedSumFactory.quantize_above_threshold(np.int64(8), np.int32(0), np.int64(3)),
        id="quantization",
    ),
    pytest.param(lambda: HadamardTransformFactory(num_repeats=np.int64(2)), id="Hadamard"),
    pytest.param(
        lambda: no_noise(np.float32(1.0), np.float64(0.5), np.float32(0.2)), id="quantile"
    ),
]


@pytest.mark.parametrize("build", NUMPY_SCALARS)
def test_numpy_scalars_are_taken_as_python_numbers(build):
    assert build() is not None


@needs_dp_accounting
def test_numpy_scalars_in_the_accounting():
    assert dp.epsilon(np.float32(1.0), np.int64(10), np.int64(1000), np.int64(5), 1e-5) == (
        pytest.approx(dp.epsilon(1.0, 10, 1000, 5, 1e-5))
    )
    assert math.isfinite(dp.epsilon(1.0, 10, 1000, np.int32(5), np.float64(1e-5)))
