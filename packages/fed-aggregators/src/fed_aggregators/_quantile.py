"""PrivateQuantileEstimationProcess: an estimate of a quantile of the clients' scalar values (say, the
norms of their model updates), adapted round by round with the geometric method of Andrew, Thakkar et
al., "Differentially Private Learning with Adaptive Clipping" (2021).

Each round a client reports whether its value is at most the current estimate; the server turns the
fraction below into a step `estimate *= exp(-learning_rate * (fraction_below - target_quantile))`.
The query that does this is any object with tensorflow-privacy's DPQuery methods: the no-noise one
here needs nothing beyond TensorFlow, and with the `dp` extra a tensorflow-privacy
`QuantileEstimatorQuery` noises the count for differential privacy.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._factory import UnweightedAggregationFactory, check_float
from fed_aggregators._sum import SumFactory
from fed_core.templates import EstimationProcess
from fed_types import CLIENTS, SERVER, FederatedType


class _QueryState(NamedTuple):
    current_estimate: Any
    target_quantile: Any
    learning_rate: Any


class _SampleParams(NamedTuple):
    current_estimate: Any


class _Record(NamedTuple):
    below: Any
    count: Any


class NoNoiseQuantileEstimatorQuery:
    """The quantile estimator without noise, written against tensorflow-privacy's DPQuery methods
    (the same update as its `NoPrivacyQuantileEstimatorQuery`) so that it runs without that package.

    A round with no clients leaves the estimate unchanged.
    """

    def __init__(
        self,
        initial_estimate: float,
        target_quantile: float,
        learning_rate: float,
        geometric_update: bool = True,
    ):
        self._initial_estimate = initial_estimate
        self._target_quantile = target_quantile
        self._learning_rate = learning_rate
        self._geometric_update = geometric_update

    def initial_global_state(self) -> _QueryState:
        return _QueryState(
            tf.constant(self._initial_estimate, tf.float32),
            tf.constant(self._target_quantile, tf.float32),
            tf.constant(self._learning_rate, tf.float32),
        )

    def derive_sample_params(self, global_state: _QueryState) -> _SampleParams:
        return _SampleParams(global_state.current_estimate)

    def initial_sample_state(self, template: Any = None) -> _Record:
        return _Record(tf.constant(0.0), tf.constant(0.0))

    def preprocess_record(self, params: _SampleParams, record: Any) -> _Record:
        below = tf.cast(record <= params.current_estimate, tf.float32) - 0.5
        return _Record(below, tf.constant(1.0))

    def get_noised_result(self, sample_state: _Record, global_state: _QueryState):
        fraction_below = tf.clip_by_value(
            tf.math.divide_no_nan(sample_state.below, sample_state.count) + 0.5, 0.0, 1.0
        )
        step = global_state.learning_rate * (fraction_below - global_state.target_quantile)
        if self._geometric_update:
            moved = global_state.current_estimate * tf.exp(-step)
        else:
            moved = global_state.current_estimate - step
        estimate = tf.where(sample_state.count > 0, moved, global_state.current_estimate)
        return estimate, global_state._replace(current_estimate=estimate), None

    def derive_metrics(self, global_state: _QueryState) -> collections.OrderedDict:
        return collections.OrderedDict(estimate=global_state.current_estimate)


class PrivateQuantileEstimationProcess(EstimationProcess):
    """An `EstimationProcess` of a quantile of the clients' float32 values.

    `next: (<S@SERVER,{float32}@CLIENTS> -> S@SERVER)`; `report(state)` is the current estimate
    (`float32@SERVER`). `quantile_estimator_query` is any object with tensorflow-privacy's DPQuery
    methods that estimates a quantile: a `tensorflow_privacy.QuantileEstimatorQuery` gives a
    differentially private estimate; `no_noise(...)` builds the non-private one.
    `record_aggregation_factory` sums the clients' records (SumFactory by default).
    """

    @classmethod
    def no_noise(
        cls,
        initial_estimate: float,
        target_quantile: float,
        learning_rate: float,
        multiplier: float = 1.0,
        increment: float = 0.0,
        secure_estimation: bool = False,
    ) -> EstimationProcess:
        """Estimates the value `C` at the `target_quantile` of the clients' values, without noise (so
        without a privacy guarantee), and reports `multiplier * C + increment`.

        With `secure_estimation`, the clients' records are summed with a `SecureSumFactory`.
        """
        owner = "PrivateQuantileEstimationProcess.no_noise"
        initial_estimate = check_float(
            initial_estimate, "initial_estimate", owner, low=0.0, low_open=True
        )
        target_quantile = check_float(
            target_quantile, "target_quantile", owner, low=0.0, low_open=False, high=1.0
        )
        learning_rate = check_float(learning_rate, "learning_rate", owner, low=0.0, low_open=True)
        multiplier = check_float(multiplier, "multiplier", owner, low=0.0, low_open=True)
        increment = check_float(increment, "increment", owner, low=0.0, low_open=False)
        if not isinstance(secure_estimation, bool | np.bool_):
            raise TypeError(
                f"{owner}: secure_estimation must be a bool, got {secure_estimation!r}."
            )
        if secure_estimation:
            from fed_aggregators._secure import SecureSumFactory

            record_factory: UnweightedAggregationFactory = SecureSumFactory(1.0)
        else:
            record_factory = SumFactory()
        process = cls(
            NoNoiseQuantileEstimatorQuery(initial_estimate, target_quantile, learning_rate),
            record_factory,
        )
        if multiplier == 1.0 and increment == 0.0:
            return process

        @ftf.computation(np.float32)
        def affine(estimate):
            return multiplier * estimate + increment

        @fc.federated_computation(FederatedType(np.float32, SERVER))
        def transform(estimate):
            return fc.federated_map(affine, estimate)

        return process.map(transform)

    def __init__(
        self,
        quantile_estimator_query: Any,
        record_aggregation_factory: UnweightedAggregationFactory | None = None,
    ):
        for method in ("initial_global_state", "derive_sample_params", "preprocess_record"):
            if not callable(getattr(quantile_estimator_query, method, None)):
                raise TypeError(
                    "PrivateQuantileEstimationProcess: expected a quantile estimator query (with "
                    f"DPQuery methods such as {method}), got {quantile_estimator_query!r}."
                )
        if record_aggregation_factory is None:
            record_aggregation_factory = SumFactory()
        elif not isinstance(record_aggregation_factory, UnweightedAggregationFactory):
            raise TypeError(
                "PrivateQuantileEstimationProcess: record_aggregation_factory must be an "
                f"UnweightedAggregationFactory, got {record_aggregation_factory!r}."
            )
        query = quantile_estimator_query
        initial_state = ftf.computation(query.initial_global_state)
        state_type = initial_state.type_signature.result
        derive_params = ftf.computation(query.derive_sample_params, state_type)
        to_record = ftf.computation(
            query.preprocess_record, derive_params.type_signature.result, np.float32
        )
        record_type = to_record.type_signature.result
        record_process = record_aggregation_factory.create(record_type)

        @ftf.computation(record_type, state_type)
        def update(record_sum, state):
            _, new_state, _ = query.get_noised_result(record_sum, state)
            return new_state

        @fc.federated_computation
        def initialize():
            return fc.federated_zip(
                (fc.federated_eval(initial_state, SERVER), record_process.initialize())
            )

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(np.float32, CLIENTS)
        )
        def next_fn(state, value):
            query_state, record_state = state
            params = fc.federated_broadcast(fc.federated_map(derive_params, query_state))
            records = fc.federated_map(to_record, fc.federated_zip((params, value)))
            summed = record_process.next(record_state, records)
            new_query_state = fc.federated_map(
                update, fc.federated_zip((summed.result, query_state))
            )
            return fc.federated_zip((new_query_state, summed.state))

        @fc.federated_computation(initialize.type_signature.result)
        def report(state):
            return state[0].current_estimate

        super().__init__(initialize, next_fn, report)
