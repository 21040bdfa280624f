"""DifferentiallyPrivateFactory: aggregation by a tensorflow-privacy DPQuery (the `dp` extra).

Clients preprocess (clip) their values with the query's sample parameters, an inner factory sums the
records, and the server adds the query's noise and updates its state. Gaussian noise is drawn with
stateless random ops from a seed carried in the process state, so it never comes from a seed baked into
a graph: a given `noise_seed` reproduces a run; without one, `initialize` draws a fresh seed and each
call also mixes in fresh entropy, so that a round run twice from one state gets independent noise.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._factory import UnweightedAggregationFactory, check_float, check_value_type
from fed_aggregators._seeds import check_seed, seed_initializer
from fed_aggregators._sum import SumFactory
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, StructType

_EXTRA_HINT = (
    "Differential privacy needs tensorflow-privacy (which installs on Python < 3.12 with "
    "TensorFlow 2.21) and dp-accounting: pip install 'fed-aggregators[dp]'"
)


def import_dp_query(module: str) -> Any:
    """A tensorflow-privacy `privacy.dp_query` module, imported without the package's top level (which
    imports TensorFlow Estimator): the library's own `sys.skip_tf_privacy_import` switch."""
    sys.skip_tf_privacy_import = True  # type: ignore[attr-defined]
    import importlib

    try:
        # GaussianSumQuery.get_noised_result reads `distutils.version` without importing it.
        import distutils.version  # noqa: F401

        return importlib.import_module(f"tensorflow_privacy.privacy.dp_query.{module}")
    except ModuleNotFoundError as error:
        if error.name == "tf_keras":
            raise ModuleNotFoundError(
                "tensorflow-privacy's DP queries need tf-keras, which requires the `tensorflow` "
                "distribution: pip install 'fed-framework[tensorflow]' (or 'fed-aggregators[tensorflow]'); "
                "beside another TensorFlow 2.21 build, pip install 'tf-keras==2.21.*' --no-deps "
                f"({error})",
                name=error.name,
            ) from None
        if error.name and error.name.split(".")[0] == "tensorflow_privacy":
            raise ModuleNotFoundError(f"{_EXTRA_HINT} ({error})", name=error.name) from None
        raise


def import_dp_accounting() -> Any:
    try:
        import dp_accounting
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"{_EXTRA_HINT} ({error})", name=error.name) from None
    return dp_accounting


# ---- Seeded Gaussian noise ----------------------------------------------------------------------

_ACTIVE_SEEDS: contextvars.ContextVar[_SeedStream | None] = contextvars.ContextVar(
    "fed_dp_noise_seeds", default=None
)


class _SeedStream:
    """Distinct stateless seeds derived from one round seed, one per noise draw while tracing."""

    def __init__(self, seed: tf.Tensor):
        self._seed = seed
        self._count = 0

    def next(self) -> tf.Tensor:
        self._count += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._count)


@contextlib.contextmanager
def _seeded_noise(seed: tf.Tensor) -> Iterator[None]:
    token = _ACTIVE_SEEDS.set(_SeedStream(seed))
    try:
        yield
    finally:
        _ACTIVE_SEEDS.reset(token)


_SEEDED_CLASSES: dict[type, type] = {}


def _seeded_gaussian_class(base: type) -> type:
    """A subclass of tensorflow-privacy's GaussianSumQuery whose noise comes from the active seed
    stream (the same distribution, N(0, stddev) per coordinate, and the same DP event)."""
    if base not in _SEEDED_CLASSES:
        dp_event = import_dp_query("gaussian_query").dp_event

        class SeededGaussianSumQuery(base):
            def get_noised_result(self, sample_state, global_state):
                seeds = _ACTIVE_SEEDS.get()
                if seeds is None:
                    return super().get_noised_result(sample_state, global_state)

                def add_noise(v):
                    noise = tf.random.stateless_normal(
                        tf.shape(v), seed=seeds.next(), stddev=global_state.stddev
                    )
                    return v + tf.cast(noise, v.dtype)

                result = tf.nest.map_structure(add_noise, sample_state)
                event = dp_event.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)
                return result, global_state, event

        SeededGaussianSumQuery.__qualname__ = f"Seeded{base.__qualname__}"
        _SEEDED_CLASSES[base] = SeededGaussianSumQuery
    return _SEEDED_CLASSES[base]


def _with_seeded_noise(query: Any) -> Any:
    """A copy of `query` in which every GaussianSumQuery (at any depth: a NormalizedQuery's numerator,
    an adaptive-clip query's sum and count queries, the members of a NestedQuery; subclasses too, unless
    they draw their noise themselves) draws its noise from the active seed stream. Other mechanisms
    draw their noise as their query does."""
    gaussian = import_dp_query("gaussian_query").GaussianSumQuery
    dp_query_base = import_dp_query("dp_query").DPQuery
    query = copy.deepcopy(query)
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, list | tuple):
            for item in obj:
                visit(item)
            return
        if isinstance(obj, dict):
            for item in obj.values():
                visit(item)
            return
        if not isinstance(obj, dp_query_base) or id(obj) in seen:
            return
        seen.add(id(obj))
        cls = type(obj)
        if isinstance(obj, gaussian) and cls.get_noised_result is gaussian.get_noised_result:
            obj.__class__ = _seeded_gaussian_class(cls)
        for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
            visit(value)

    visit(query)
    return query


# ---- DP events in the state -----------------------------------------------------------------------


def _event_to_struct(event: Any) -> collections.OrderedDict:
    """A DP event (an attrs class, possibly nesting others) as a struct of tensors that the state can
    carry: its class name and its fields."""
    import attr

    struct = collections.OrderedDict(event_class=tf.constant(type(event).__name__))
    for field in attr.fields(type(event)):
        value = getattr(event, field.name)
        if isinstance(value, list | tuple):
            struct[field.name] = tuple(_event_to_struct(e) for e in value)
        elif attr.has(type(value)):
            struct[field.name] = _event_to_struct(value)
        else:
            tensor = tf.convert_to_tensor(value)
            struct[field.name] = tf.cast(
                tensor, tf.float64 if tensor.dtype.is_floating else tf.int64
            )
    return struct


def _struct_to_event(struct: Any) -> Any:
    dp_accounting = import_dp_accounting()
    fields = dict(struct.items()) if hasattr(struct, "items") else dict(struct._asdict())
    name = fields.pop("event_class")
    name = name.decode() if isinstance(name, bytes) else str(name)
    cls = getattr(dp_accounting, name, None)
    if cls is None:
        return dp_accounting.UnsupportedDpEvent()
    arguments = {}
    for key, value in fields.items():
        if isinstance(value, tuple | list):
            arguments[key] = [_struct_to_event(e) for e in value]
        elif hasattr(value, "items") or hasattr(value, "_asdict"):
            arguments[key] = _struct_to_event(value)
        else:
            number = np.asarray(value).item()
            arguments[key] = number
    return cls(**arguments)


class ExtractingDpEventFromInitialStateError(ValueError):
    """`extract_dp_event_from_state` was given the state `initialize` returned, whose event is a
    placeholder."""


class DPAggregatorState(NamedTuple):
    """The state of a DifferentiallyPrivateFactory's process."""

    query_state: Any
    agg_state: Any
    dp_event: Any
    is_init_state: Any
    noise_seed: Any


def extract_dp_event_from_state(state: Any) -> Any:
    """The `dp_accounting.DpEvent` of the round that produced `state` (a state returned by the `next`
    of a DifferentiallyPrivateFactory's process), for a privacy ledger."""
    is_init = state["is_init_state"] if hasattr(state, "keys") else state.is_init_state
    if bool(is_init):
        raise ExtractingDpEventFromInitialStateError(
            "extract_dp_event_from_state: this state comes from initialize(), whose DP event is a "
            "placeholder; pass a state returned by next()."
        )
    event = state["dp_event"] if hasattr(state, "keys") else state.dp_event
    return _struct_to_event(event)


# ---- The factory ----------------------------------------------------------------------------------


def adaptive_clip_noise_params(
    noise_multiplier: float, expected_clients_per_round: float, clipped_count_stddev: float | None
) -> tuple[float, float]:
    """The noise multiplier for the values and the stddev of the clipped count's noise, such that the
    two together spend the privacy of `noise_multiplier` (the split TensorFlow Federated makes):
    `value_nm = (nm**-2 - (2 * count_stddev)**-2) ** -0.5`, with `count_stddev` defaulting to
    `0.05 * expected_clients_per_round`."""
    if noise_multiplier > 0.0:
        if clipped_count_stddev is None:
            clipped_count_stddev = 0.05 * expected_clients_per_round
        if noise_multiplier >= 2 * clipped_count_stddev:
            raise ValueError(
                f"clipped_count_stddev = {clipped_count_stddev} (0.05 * clients_per_round unless "
                f"given) is too low for the total noise_multiplier {noise_multiplier}: it must be "
                "more than noise_multiplier / 2. Increase clipped_count_stddev (or "
                "clients_per_round), or decrease noise_multiplier."
            )
        value_noise_multiplier = (noise_multiplier**-2 - (2 * clipped_count_stddev) ** -2) ** -0.5
        if value_noise_multiplier / noise_multiplier >= 2:
            warnings.warn(
                f"The values get {value_noise_multiplier / noise_multiplier:.2f}x the noise of "
                f"noise_multiplier={noise_multiplier} to pay for the adaptive clipping; a larger "
                "clipped_count_stddev or more clients per round would need less.",
                stacklevel=3,
            )
        return value_noise_multiplier, clipped_count_stddev
    return 0.0, 0.0 if clipped_count_stddev is None else clipped_count_stddev


def _same_specs(given: Any, expected: Any) -> bool:
    try:
        tf.nest.assert_same_structure(given, expected, check_types=False)
    except (ValueError, TypeError):
        return False
    return all(
        g.dtype == e.dtype and g.shape.is_compatible_with(e.shape)
        for g, e in zip(tf.nest.flatten(given), tf.nest.flatten(expected))
    )


class DifferentiallyPrivateFactory(UnweightedAggregationFactory):
    """Aggregates client values with a tensorflow-privacy `DPQuery` (a `SumAggregationDPQuery`, such as a
    NormalizedQuery of a GaussianSumQuery).

    Each client preprocesses its value with the query's sample parameters (clipping by the global L2
    norm over the whole structure); `record_aggregation_factory` (SumFactory by default) sums the
    records, and must not raise their sensitivity; the server adds the query's noise. The state
    (`DPAggregatorState`) carries the query's state, the DP event of the last round (read it with
    `extract_dp_event_from_state`) and the noise seed. Measurements: `dp_query_metrics` (the query's
    metrics, e.g. the adaptive `clip`) and `dp` (the record aggregation's).

    `noise_seed` fixes the Gaussian noise's seed, so that a run can be reproduced: the noise is then a
    function of the seed and the state, and anyone who knows the seed can remove it (for tests and
    reproducible experiments, not for a release). By default `initialize` draws a fresh seed and every
    call mixes in fresh entropy, so that running a round again from the same state adds new noise.
    """

    @classmethod
    def gaussian_adaptive(
        cls,
        noise_multiplier: float,
        clients_per_round: float,
        initial_l2_norm_clip: float = 0.1,
        target_unclipped_quantile: float = 0.5,
        learning_rate: float = 0.2,
        clipped_count_stddev: float | None = None,
        noise_seed: int | None = None,
    ) -> DifferentiallyPrivateFactory:
        """The mean of the clients' values with adaptive clipping and Gaussian noise (McMahan et al.
        2017; the clip follows the `target_unclipped_quantile` of the clients' norms geometrically,
        Andrew et al. 2021).

        `noise_multiplier` is the total effective one: the values get slightly more noise to pay for
        the privately estimated clipped count (see `adaptive_clip_noise_params`). The sum is divided by
        `clients_per_round` (always that number, however many clients take part).
        """
        owner = "DifferentiallyPrivateFactory.gaussian_adaptive"
        noise_multiplier = check_float(
            noise_multiplier, "noise_multiplier", owner, low=0.0, low_open=False
        )
        clients_per_round = check_float(
            clients_per_round, "clients_per_round", owner, low=0.0, low_open=True
        )
        initial_l2_norm_clip = check_float(
            initial_l2_norm_clip, "initial_l2_norm_clip", owner, low=0.0, low_open=True
        )
        target_unclipped_quantile = check_float(
            target_unclipped_quantile,
            "target_unclipped_quantile",
            owner,
            low=0.0,
            low_open=False,
            high=1.0,
        )
        learning_rate = check_float(learning_rate, "learning_rate", owner, low=0.0, low_open=False)
        if clipped_count_stddev is not None:
            clipped_count_stddev = check_float(
                clipped_count_stddev, "clipped_count_stddev", owner, low=0.0, low_open=False
            )
        value_noise_multiplier, clipped_count_stddev = adaptive_clip_noise_params(
            noise_multiplier, clients_per_round, clipped_count_stddev
        )
        adaptive = import_dp_query("quantile_adaptive_clip_sum_query")
        normalized = import_dp_query("normalized_query")
        query = adaptive.QuantileAdaptiveClipSumQuery(
            initial_l2_norm_clip=initial_l2_norm_clip,
            noise_multiplier=value_noise_multiplier,
            target_unclipped_quantile=target_unclipped_quantile,
            learning_rate=learning_rate,
            clipped_count_stddev=clipped_count_stddev,
            expected_num_records=clients_per_round,
            geometric_update=True,
        )
        return cls(
            normalized.NormalizedQuery(query, denominator=clients_per_round),
            noise_seed=check_seed(noise_seed, owner),
        )

    @classmethod
    def gaussian_fixed(
        cls,
        noise_multiplier: float,
        clients_per_round: float,
        clip: float,
        noise_seed: int | None = None,
    ) -> DifferentiallyPrivateFactory:
        """The mean of the clients' values clipped to the L2 norm `clip`, with Gaussian noise of
        standard deviation `clip * noise_multiplier` on the sum, divided by `clients_per_round`."""
        owner = "DifferentiallyPrivateFactory.gaussian_fixed"
        noise_multiplier = check_float(
            noise_multiplier, "noise_multiplier", owner, low=0.0, low_open=False
        )
        clients_per_round = check_float(
            clients_per_round, "clients_per_round", owner, low=0.0, low_open=True
        )
        clip = check_float(clip, "clip", owner, low=0.0, low_open=True)
        gaussian = import_dp_query("gaussian_query")
        normalized = import_dp_query("normalized_query")
        query = normalized.NormalizedQuery(
            gaussian.GaussianSumQuery(l2_norm_clip=clip, stddev=clip * noise_multiplier),
            denominator=clients_per_round,
        )
        return cls(query, noise_seed=check_seed(noise_seed, owner))

    @classmethod
    def tree_aggregation(
        cls,
        noise_multiplier: float,
        clients_per_round: float,
        l2_norm_clip: float,
        record_specs: Sequence[tf.TensorSpec] | tf.TensorSpec,
        noise_seed: int | None = None,
        use_efficient: bool = True,
        record_aggregation_factory: UnweightedAggregationFactory | None = None,
    ) -> DifferentiallyPrivateFactory:
        """DP-FTRL's aggregation (Kairouz et al. 2021): clipped client values, with noise from tree
        aggregation over rounds (each round gets the residual of the cumulative noise), divided by
        `clients_per_round`. The tree's noise has standard deviation `l2_norm_clip *
        noise_multiplier` per node and its seed lives in the query's state (`noise_seed`, or a fresh
        one)."""
        owner = "DifferentiallyPrivateFactory.tree_aggregation"
        noise_multiplier = check_float(
            noise_multiplier, "noise_multiplier", owner, low=0.0, low_open=False
        )
        clients_per_round = check_float(
            clients_per_round, "clients_per_round", owner, low=0.0, low_open=True
        )
        l2_norm_clip = check_float(l2_norm_clip, "l2_norm_clip", owner, low=0.0, low_open=True)
        tree = import_dp_query("tree_aggregation_query")
        normalized = import_dp_query("normalized_query")
        sum_query = tree.TreeResidualSumQuery.build_l2_gaussian_query(
            l2_norm_clip,
            noise_multiplier,
            record_specs,
            noise_seed=check_seed(noise_seed, owner),
            use_efficient=use_efficient,
        )
        factory = cls(
            normalized.NormalizedQuery(sum_query, denominator=clients_per_round),
            record_aggregation_factory=record_aggregation_factory,
        )
        factory._record_specs = record_specs
        return factory

    @classmethod
    def tree_adaptive(cls, *args: Any, **kwargs: Any) -> DifferentiallyPrivateFactory:
        """DP-FTRL with adaptive clipping and periodic tree restarts: not available, because the
        tensorflow-privacy release that installs with TensorFlow 2.21 has no adaptive tree query."""
        adaptive_tree = None
        try:
            adaptive_tree = import_dp_query("quantile_adaptive_clip_tree_query")
        except ModuleNotFoundError:
            pass
        if adaptive_tree is None:
            raise NotImplementedError(
                "DifferentiallyPrivateFactory.tree_adaptive needs tensorflow-privacy's "
                "QAdaClipTreeResSumQuery, which the tensorflow-privacy release installed here lacks; "
                "use tree_aggregation (fixed clip) or gaussian_adaptive."
            )
        raise NotImplementedError(
            "DifferentiallyPrivateFactory.tree_adaptive is not wired to QAdaClipTreeResSumQuery yet."
        )

    def __init__(
        self,
        query: Any,
        record_aggregation_factory: UnweightedAggregationFactory | None = None,
        noise_seed: int | None = None,
    ):
        sum_query_base = import_dp_query("dp_query").SumAggregationDPQuery
        if not isinstance(query, sum_query_base):
            raise TypeError(
                "DifferentiallyPrivateFactory: expected a tensorflow-privacy SumAggregationDPQuery, "
                f"got {query!r}."
            )
        if record_aggregation_factory is None:
            record_aggregation_factory = SumFactory()
        elif not isinstance(record_aggregation_factory, UnweightedAggregationFactory):
            raise TypeError(
                "DifferentiallyPrivateFactory: record_aggregation_factory must be an "
                f"UnweightedAggregationFactory, got {record_aggregation_factory!r}."
            )
        self._query = _with_seeded_noise(query)
        self._record_aggregation_factory = record_aggregation_factory
        self._noise_seed = check_seed(noise_seed, "DifferentiallyPrivateFactory")
        self._record_specs: Any = None

    @property
    def query(self) -> Any:
        """The DPQuery this factory aggregates with."""
        return self._query

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = check_value_type(value_type, "DifferentiallyPrivateFactory", "fiu", "numeric")
        query = self._query
        specs = ftf.to_tf_spec(value_type)
        if self._record_specs is not None and not _same_specs(self._record_specs, specs):
            raise TypeError(
                f"DifferentiallyPrivateFactory.create: the record_specs {self._record_specs} the "
                f"factory was built with do not match the value type {value_type}."
            )
        initial_query_state = ftf.computation(query.initial_global_state)
        query_state_type = initial_query_state.type_signature.result
        derive_params = ftf.computation(query.derive_sample_params, query_state_type)
        to_record = ftf.computation(
            query.preprocess_record, derive_params.type_signature.result, value_type
        )
        record_process = self._record_aggregation_factory.create(to_record.type_signature.result)
        next_result = cast(StructType, record_process.next.type_signature.result)
        sum_type = cast(FederatedType, next_result.result).member
        sum_specs = ftf.to_tf_spec(sum_type)
        # The placeholder event of `initialize` comes from noising an empty sum of the records (which
        # some queries, such as a tree of ranges, shape unlike the values).
        empty_sample = ftf.computation(
            lambda: (
                tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), sum_specs)
                if all(s.shape.is_fully_defined() for s in tf.nest.flatten(sum_specs))
                else query.initial_sample_state(specs)
            )
        )

        initial_seed = seed_initializer(self._noise_seed)

        fresh = self._noise_seed is None

        def noised(sample, query_state, noise_seed):
            next_seed, round_seed = tf.unstack(
                tf.random.experimental.stateless_split(noise_seed, 2)
            )
            if fresh:
                # Without a given seed, every call also mixes in fresh entropy: a round run again from
                # the same state (a retry, a restart from a checkpoint) must not add the same noise,
                # or the difference of the two releases would be noiseless.
                entropy = tf.random.uniform([], tf.int64.min, tf.int64.max, dtype=tf.int64)
                round_seed = tf.random.experimental.stateless_fold_in(round_seed, entropy)
            with _seeded_noise(round_seed):
                result, new_query_state, event = query.get_noised_result(sample, query_state)
            if isinstance(result, tf.RaggedTensor):
                # As TensorFlow Federated passes a ragged result (a tree of range sums) on.
                result = collections.OrderedDict(
                    flat_values=result.flat_values, nested_row_splits=result.nested_row_splits
                )
            return result, new_query_state, _event_to_struct(event), next_seed

        seed_type = initial_seed.type_signature.result
        add_noise = ftf.computation(noised, sum_type, query_state_type, seed_type)
        derive_metrics = ftf.computation(query.derive_metrics, query_state_type)

        @fc.federated_computation
        def initialize():
            query_state = fc.federated_eval(initial_query_state, SERVER)
            noise_seed = fc.federated_eval(initial_seed, SERVER)
            _, _, event, _ = fc.federated_map(
                add_noise,
                fc.federated_zip(
                    (fc.federated_eval(empty_sample, SERVER), query_state, noise_seed)
                ),
            )
            return fc.federated_zip(
                DPAggregatorState(
                    query_state,
                    record_process.initialize(),
                    event,
                    fc.federated_value(True, SERVER),
                    noise_seed,
                )
            )

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            params = fc.federated_broadcast(fc.federated_map(derive_params, state.query_state))
            records = fc.federated_map(to_record, fc.federated_zip((params, value)))
            summed = record_process.next(state.agg_state, records)
            result, new_query_state, event, next_seed = fc.federated_map(
                add_noise, fc.federated_zip((summed.result, state.query_state, state.noise_seed))
            )
            new_state = DPAggregatorState(
                new_query_state,
                summed.state,
                event,
                fc.federated_value(False, SERVER),
                next_seed,
            )
            measurements = collections.OrderedDict(
                dp_query_metrics=fc.federated_map(derive_metrics, new_query_state),
                dp=summed.measurements,
            )
            return MeasuredProcessOutput(
                fc.federated_zip(new_state), result, fc.federated_zip(measurements)
            )

        return AggregationProcess(initialize, next_fn)

    def __repr__(self) -> str:
        return (
            f"DifferentiallyPrivateFactory(query={type(self._query).__name__}, "
            f"record_aggregation_factory={self._record_aggregation_factory!r})"
        )
