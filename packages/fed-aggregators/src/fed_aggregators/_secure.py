"""Secure aggregation: sums that move client values to the server only through the secure-sum
intrinsics, so that the server learns the sum and nothing about any one client's value.

A secure sum adds non-negative integers of a known range. `SecureSumFactory` maps any values into that
form (clip to bounds, shift, quantize floats) and back; `SecureModularSumFactory` sums integers modulo a
given modulus.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._factory import (
    UnweightedAggregationFactory,
    check_scalar_estimation,
    is_structure_of,
    with_client_check,
)
from fed_aggregators._sum import empty_at_server
from fed_core.framework import Value
from fed_core.templates import AggregationProcess, EstimationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType, Type, to_type
from fed_types.types import preorder

_MAX_SECURE_SUM_BITS = 62
"""The widest sum the secure-sum intrinsics carry: their simulations accumulate in int64, and 62
bits keep every sum of in-range values clear of its sign bit."""

_QUANTIZATION_MAX = 2**32 - 1
"""Floats are quantized to 32-bit codes in `[0, 2**32 - 1]`, as TensorFlow Federated does."""

_MAX_FLOAT_CLIENTS = (2**_MAX_SECURE_SUM_BITS - 1) // _QUANTIZATION_MAX
"""The most clients whose 32-bit codes sum within the secure sum's bits (2**30)."""

_COUNT_DTYPE = np.int32
_ESTIMATE_TYPE = TensorType(np.float32)
"""What an estimation process that adapts the bounds takes from each client and reports."""


def _tensor_types(t: Type) -> list[TensorType]:
    return [leaf for leaf in preorder(t) if isinstance(leaf, TensorType)]


def _dtype_name(dtype: Any) -> str:
    return str(TensorType(dtype))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _threshold_kind(threshold: Any) -> str | None:
    """What a bound is given as: "integer", "float" or "process" (None for anything else)."""
    if _is_int(threshold):
        return "integer"
    if isinstance(threshold, (float, np.floating)):
        return "float"
    return "process" if isinstance(threshold, EstimationProcess) else None


def _count_clients() -> Value:
    """The number of clients taking part, summed securely (each adds a 1)."""

    @ftf.computation
    def one():
        return tf.constant(1, _COUNT_DTYPE)

    return fc.federated_secure_sum(fc.federated_eval(one, CLIENTS), np.int32(1))


def _constant_at_server(value: Any, dtype: Any) -> Value:
    @ftf.computation
    def constant():
        return tf.constant(value, dtype)

    return fc.federated_eval(constant, SERVER)


class SecureSumFactory(UnweightedAggregationFactory):
    """Sums client values with secure aggregation, within bounds.

    Each client clips its values to `[lower_bound_threshold, upper_bound_threshold]` and shifts them by
    the lower bound; floats are then quantized to 32-bit integer codes. The secure sum adds these
    non-negative integers, and the server shifts (and dequantizes) the sum back. Integer sums are exact
    for values within the bounds; float sums are within one quantization step
    `(upper - lower) / (2**32 - 1)` per client.

    The bounds are Python or numpy integers (for integer values) or floats (for float values); with only
    `upper_bound_threshold`, the lower bound is its negation. For float values, `upper_bound_threshold`
    (and `lower_bound_threshold`) may instead be `EstimationProcess`es that take each client's largest
    value (`float32@CLIENTS`; with one process, the largest absolute value) and report a `float32`
    bound: their state is this process's state, updated every round.

    Measurements: `secure_upper_clipped_count` and `secure_lower_clipped_count` (how many clients had
    a value above or below the bounds, summed securely), `secure_upper_threshold` and
    `secure_lower_threshold` (the bounds used this round).

    A sum that could leave the value dtype, or need more than 62 bits in the secure sum, is refused:
    when `create` is called if the bounds alone rule it out, otherwise in the round, naming the
    number of clients, before any sum is returned (a ValueError before anything runs when `next` is
    called from Python with a list of values and fixed bounds; else `tf.errors.InvalidArgumentError`
    when the sum runs).
    """

    def __init__(
        self,
        upper_bound_threshold: int | float | EstimationProcess,
        lower_bound_threshold: int | float | EstimationProcess | None = None,
    ):
        # A number or an EstimationProcess, told apart by `kind` below.
        upper: Any = upper_bound_threshold
        lower: Any = lower_bound_threshold
        kind = _threshold_kind(upper)
        if kind is None:
            raise TypeError(
                "SecureSumFactory: upper_bound_threshold must be an int, a float or an "
                f"EstimationProcess, got {upper!r}."
            )
        if lower is not None and _threshold_kind(lower) != kind:
            raise TypeError(
                "SecureSumFactory: upper_bound_threshold and lower_bound_threshold must be of "
                f"the same kind (both integers, both floats or both EstimationProcesses), got "
                f"{upper!r} and {lower!r}."
            )
        self._upper_bound_threshold = upper
        self._lower_bound_threshold = lower
        self._processes: tuple[EstimationProcess, ...] = ()
        if kind == "process":
            self._processes = tuple(
                check_scalar_estimation(
                    process, "SecureSumFactory", role, "the state and each client's largest value"
                )
                for process, role in (
                    (upper, "upper_bound_threshold"),
                    (lower, "lower_bound_threshold"),
                )
                if process is not None
            )
            self._integer = False
            return
        self._integer = kind == "integer"
        cast = int if self._integer else float
        upper = cast(upper)
        if not math.isfinite(upper) or (lower is not None and not math.isfinite(cast(lower))):
            raise ValueError(
                f"SecureSumFactory: the bounds must be finite, got {upper_bound_threshold!r} and "
                f"{lower_bound_threshold!r}."
            )
        if lower is None:
            if upper <= 0:
                raise ValueError(
                    "SecureSumFactory: with only upper_bound_threshold, it must be positive (its "
                    f"negation is the lower bound), got {upper_bound_threshold!r}."
                )
            lower = -upper
        else:
            lower = cast(lower)
            if upper <= lower:
                raise ValueError(
                    "SecureSumFactory: upper_bound_threshold must be larger than "
                    f"lower_bound_threshold, got {upper_bound_threshold!r} and "
                    f"{lower_bound_threshold!r}."
                )
        self._bounds: tuple[Any, Any] = (upper, lower)
        if self._integer:
            # The secure sum adds `value - lower` in [0, upper - lower]: one client needs that many bits.
            bits = (upper - lower).bit_length()
            if bits > _MAX_SECURE_SUM_BITS:
                raise ValueError(
                    f"SecureSumFactory: the range [{lower}, {upper}] needs {bits} bits per client, "
                    f"more than the {_MAX_SECURE_SUM_BITS} bits a secure sum carries."
                )

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = to_type(value_type)
        kind = "integer" if self._integer else "floating-point"
        leaves = _tensor_types(value_type)
        if not (leaves and is_structure_of(value_type, "iu" if self._integer else "f")):
            raise TypeError(
                f"SecureSumFactory.create: this factory's bounds are for {kind} values; expected "
                f"a tensor or a struct of tensors of {kind} dtype, got {value_type}."
            )
        dtypes = {leaf.dtype for leaf in leaves}
        if len(dtypes) > 1:
            raise TypeError(
                "SecureSumFactory.create: expected tensors of a single dtype (the bounds take it), "
                f"got {value_type}."
            )
        dtype = dtypes.pop()
        # How many clients the static bounds allow (None: no static bounds), and the refusal.
        limit: tuple[int, str] | None = None
        sum_securely: Callable[[Any, Any, Any], Any]
        if self._integer:
            shift = _IntegerShift(value_type, dtype, *self._bounds)
            sum_securely = shift.sum_securely
            limit = (shift.max_clients, shift.overflow_message)
        else:
            sum_securely = _quantized_sum_securely(value_type, dtype)
            if not self._processes:
                upper, lower = self._bounds
                limit = (
                    _max_float_clients(upper, lower, dtype),
                    _float_overflow_message(dtype).format("{}", f"{lower:g}", f"{upper:g}"),
                )
        get_bounds, update_state, initialize = self._bound_functions(dtype)

        @ftf.computation(value_type)
        def reduce_max(value):
            return tf.reduce_max(tf.stack([tf.reduce_max(v) for v in tf.nest.flatten(value)]))

        @ftf.computation(value_type)
        def reduce_min(value):
            return tf.reduce_min(tf.stack([tf.reduce_min(v) for v in tf.nest.flatten(value)]))

        bound_type = TensorType(dtype)

        @ftf.computation(bound_type, bound_type)
        def is_above(bound, value_max):
            return tf.cast(value_max > bound, _COUNT_DTYPE)

        @ftf.computation(bound_type, bound_type)
        def is_below(bound, value_min):
            return tf.cast(value_min < bound, _COUNT_DTYPE)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            # The extremes before clipping: they count the clipped clients and feed the estimation.
            value_max = fc.federated_map(reduce_max, value)
            value_min = fc.federated_map(reduce_min, value)
            upper, lower = get_bounds(state)
            new_state = update_state(state, value_min, value_max)
            total = sum_securely(value, upper, lower)
            upper_clipped = fc.federated_map(is_above, (fc.federated_broadcast(upper), value_max))
            lower_clipped = fc.federated_map(is_below, (fc.federated_broadcast(lower), value_min))
            measurements = fc.federated_zip(
                collections.OrderedDict(
                    secure_upper_clipped_count=fc.federated_secure_sum(upper_clipped, np.int32(1)),
                    secure_lower_clipped_count=fc.federated_secure_sum(lower_clipped, np.int32(1)),
                    secure_upper_threshold=upper,
                    secure_lower_threshold=lower,
                )
            )
            return MeasuredProcessOutput(new_state, total, measurements)

        def check(values: Any, weights: Any) -> None:
            if limit is not None and len(values) > limit[0]:
                raise ValueError(limit[1].format(len(values)))

        return with_client_check(AggregationProcess(initialize, next_fn), check)

    def _bound_functions(
        self, dtype: np.dtype
    ) -> tuple[Callable[[Any], tuple[Any, Any]], Callable[[Any, Any, Any], Any], fc.Computation]:
        """How the bounds come from the state, how the state follows the clients' values, and the
        initial state."""
        if not self._processes:

            @fc.federated_computation
            def initialize():
                return empty_at_server()

            upper, lower = self._bounds
            return (
                lambda state: (
                    _constant_at_server(upper, dtype),
                    _constant_at_server(lower, dtype),
                ),
                lambda state, value_min, value_max: state,
                initialize,
            )

        bound_type = TensorType(dtype)

        @ftf.computation(_ESTIMATE_TYPE)
        def to_bound(estimate):
            return tf.cast(estimate, dtype)

        @ftf.computation(bound_type, bound_type)
        def checked(upper, lower):
            message = tf.strings.format(
                "SecureSumFactory: the estimated upper bound {} is below the lower bound {}.",
                (upper, lower),
            )
            with tf.control_dependencies([tf.debugging.Assert(lower <= upper, [message])]):
                return tf.identity(upper), tf.identity(lower)

        @ftf.computation(bound_type)
        def negated(bound):
            return bound, -bound

        @ftf.computation(bound_type)
        def to_estimate(value):
            return tf.cast(value, _ESTIMATE_TYPE.dtype)

        @ftf.computation(bound_type, bound_type)
        def largest_magnitude(value_min, value_max):
            return tf.cast(tf.maximum(tf.abs(value_min), tf.abs(value_max)), _ESTIMATE_TYPE.dtype)

        if len(self._processes) == 1:
            (process,) = self._processes

            def single_bounds(state):
                upper = fc.federated_map(to_bound, process.report(state))
                bounds = fc.federated_map(checked, fc.federated_map(negated, upper))
                return bounds[0], bounds[1]

            def single_update(state, value_min, value_max):
                return process.next(
                    state, fc.federated_map(largest_magnitude, (value_min, value_max))
                )

            return single_bounds, single_update, process.initialize

        upper_process, lower_process = self._processes

        @fc.federated_computation
        def initialize_both():
            return fc.federated_zip((upper_process.initialize(), lower_process.initialize()))

        def both_bounds(state):
            bounds = fc.federated_map(
                checked,
                (
                    fc.federated_map(to_bound, upper_process.report(state[0])),
                    fc.federated_map(to_bound, lower_process.report(state[1])),
                ),
            )
            return bounds[0], bounds[1]

        def both_update(state, value_min, value_max):
            return fc.federated_zip(
                (
                    upper_process.next(state[0], fc.federated_map(to_estimate, value_max)),
                    lower_process.next(state[1], fc.federated_map(to_estimate, value_min)),
                )
            )

        return both_bounds, both_update, initialize_both

    def __repr__(self) -> str:
        return (
            f"SecureSumFactory(upper_bound_threshold={self._upper_bound_threshold!r}, "
            f"lower_bound_threshold={self._lower_bound_threshold!r})"
        )


def _wide_dtype(dtype: np.dtype) -> np.dtype:
    """The 64-bit integer type in which a value of `dtype` and its sums are shifted without overflow."""
    return np.dtype(np.uint64 if dtype.kind == "u" else np.int64)


class _IntegerShift:
    """The integer path: clip and shift by the lower bound on the clients, secure sum, shift back."""

    def __init__(self, value_type: Type, dtype: np.dtype, upper: int, lower: int):
        info = np.iinfo(dtype)
        name = _dtype_name(dtype)
        for role, bound in (("upper", upper), ("lower", lower)):
            if not info.min <= bound <= info.max:
                raise ValueError(
                    f"SecureSumFactory.create: the {role} bound {bound} does not fit the values' "
                    f"dtype {name} (range [{info.min}, {info.max}])."
                )
        self._value_type, self._dtype = value_type, dtype
        self._range = upper - lower
        # The most clients whose clipped values sum within the dtype and the secure sum's bits.
        by_bits = (2**_MAX_SECURE_SUM_BITS - 1) // self._range
        by_dtype = math.inf
        if upper > 0:
            by_dtype = info.max // upper
        if lower < 0:
            by_dtype = min(by_dtype, info.min // lower)
        self.max_clients = int(min(by_bits, by_dtype))
        limit = (
            f"the range of {name}"
            if by_dtype <= by_bits
            else f"the {_MAX_SECURE_SUM_BITS} bits of the secure sum"
        )
        self.overflow_message = (
            "SecureSumFactory: summing the values of {} clients, "
            f"{name} clipped to [{lower}, {upper}], can overflow {limit}; the limit is "
            f"{self.max_clients} clients. Narrow the bounds or use a wider dtype."
        )

    def sum_securely(self, value: Any, upper: Any, lower: Any) -> Any:
        value_type, dtype, wide = self._value_type, self._dtype, _wide_dtype(self._dtype)
        bound_type = TensorType(dtype)
        shifted_type = _map_type(value_type, np.int64)

        @ftf.computation(value_type, bound_type, bound_type)
        def client_shift(value, upper, lower):
            def shift(v):
                clipped = tf.clip_by_value(v, lower, upper)
                # Signed values shift in int64 (the range may not fit their dtype); unsigned ones
                # shift in their own dtype (clipped >= lower >= 0) and then fit int64.
                if dtype.kind == "u":
                    return tf.cast(clipped - lower, tf.int64)
                return tf.cast(clipped, tf.int64) - tf.cast(lower, tf.int64)

            return tf.nest.map_structure(shift, value)

        max_clients, message = self.max_clients, self.overflow_message

        @ftf.computation(shifted_type, bound_type, TensorType(_COUNT_DTYPE))
        def server_shift(total, lower, clients):
            fits = tf.cast(clients, tf.int64) <= max_clients
            check = tf.debugging.Assert(fits, [tf.strings.format(message, clients)])
            with tf.control_dependencies([check]):
                offset = tf.cast(clients, wide) * tf.cast(lower, wide)
                return tf.nest.map_structure(
                    lambda t: tf.cast(tf.cast(t, wide) + offset, dtype), total
                )

        shifted = fc.federated_map(
            client_shift,
            (value, fc.federated_broadcast(upper), fc.federated_broadcast(lower)),
        )
        total = fc.federated_secure_sum(shifted, np.int64(self._range))
        return fc.federated_map(server_shift, (total, lower, _count_clients()))


def _map_type(t: Type, dtype: Any) -> Type:
    """`t` with every tensor's dtype replaced by `dtype` (shapes and containers kept)."""
    if isinstance(t, TensorType):
        return TensorType(dtype, t.shape)
    assert isinstance(t, StructType)
    return StructType([(n, _map_type(e, dtype)) for n, e in t.items()], t.python_container)


def _float_overflow_message(dtype: np.dtype) -> str:
    """The refusal of a float sum that could overflow, with `{}` for the clients, lower and upper bound."""
    name = _dtype_name(dtype)
    return (
        "SecureSumFactory: summing the values of {} clients, "
        f"{name} clipped to [{{}}, {{}}], can overflow the range of "
        f"{name} or the {_MAX_SECURE_SUM_BITS} bits of the secure sum (which "
        f"carries the quantized values of at most {_MAX_FLOAT_CLIENTS} clients, fewer for "
        "bounds far from zero)."
    )


def _max_float_clients(upper: float, lower: float, dtype: np.dtype) -> int:
    """The most clients whose float values, clipped to fixed bounds, the quantized sum carries: the
    limits `dequantize` checks when it runs."""
    span = upper - lower
    scale = _QUANTIZATION_MAX / span if span > 0 else 0.0
    largest_code = max(abs(round(lower * scale)), abs(round(upper * scale)))
    magnitude = max(abs(lower), abs(upper))
    limits = [_MAX_FLOAT_CLIENTS]
    if largest_code > 0:
        limits.append(math.ceil(2.0**_MAX_SECURE_SUM_BITS / largest_code) - 1)
    if magnitude > 0:
        limits.append(math.floor(float(np.finfo(dtype).max) / magnitude))
    return int(min(limits))


def _quantized_sum_securely(value_type: Type, dtype: np.dtype) -> Callable[[Any, Any, Any], Any]:
    """The float path: clip and quantize to 32-bit codes on the clients, secure sum, dequantize."""
    bound_type = TensorType(dtype)
    codes_type = _map_type(value_type, np.int64)

    def scale_and_offset(upper, lower):
        # Codes are `round(x * scale) - round(lower * scale)`: shifting in integers keeps the
        # server's inverse exact for the offset, so a sum of zeros comes back as exactly zero.
        span = tf.cast(upper, tf.float64) - tf.cast(lower, tf.float64)
        scale = tf.math.divide_no_nan(tf.constant(_QUANTIZATION_MAX, tf.float64), span)
        offset = tf.round(tf.cast(lower, tf.float64) * scale)
        return span, scale, offset

    @ftf.computation(value_type, bound_type, bound_type)
    def quantize(value, upper, lower):
        _, scale, offset = scale_and_offset(upper, lower)

        def one(v):
            clipped = tf.clip_by_value(
                tf.cast(v, tf.float64), tf.cast(lower, tf.float64), tf.cast(upper, tf.float64)
            )
            codes = tf.saturate_cast(tf.round(clipped * scale) - offset, tf.int64)
            return tf.clip_by_value(codes, tf.constant(0, tf.int64), _QUANTIZATION_MAX)

        return tf.nest.map_structure(one, value)

    @ftf.computation(codes_type, bound_type, bound_type, TensorType(_COUNT_DTYPE))
    def dequantize(total, upper, lower, clients):
        span, scale, offset = scale_and_offset(upper, lower)
        n = tf.cast(clients, tf.float64)
        # Re-adding the offset happens in int64, so it must fit as well as the codes' sum.
        largest_code = tf.maximum(
            tf.abs(offset), tf.abs(tf.round(tf.cast(upper, tf.float64) * scale))
        )
        magnitude = tf.maximum(
            tf.abs(tf.cast(lower, tf.float64)), tf.abs(tf.cast(upper, tf.float64))
        )
        fits = tf.reduce_all(
            [
                clients <= _MAX_FLOAT_CLIENTS,
                n * largest_code < 2.0**_MAX_SECURE_SUM_BITS,
                n * magnitude <= float(np.finfo(dtype).max),
            ]
        )
        message = tf.strings.format(_float_overflow_message(dtype), (clients, lower, upper))
        with tf.control_dependencies([tf.debugging.Assert(fits, [message])]):
            step = span / _QUANTIZATION_MAX
            offsets = tf.cast(clients, tf.int64) * tf.cast(offset, tf.int64)

            def one(t):
                restored = tf.cast(t + offsets, tf.float64) * step
                # Equal bounds quantize everything to code 0: every client sent the bound.
                restored = tf.where(span > 0, restored, n * tf.cast(lower, tf.float64))
                return tf.cast(restored, dtype)

            return tf.nest.map_structure(one, total)

    def sum_securely(value, upper, lower):
        codes = fc.federated_map(
            quantize, (value, fc.federated_broadcast(upper), fc.federated_broadcast(lower))
        )
        total = fc.federated_secure_sum(codes, np.int64(_QUANTIZATION_MAX))
        return fc.federated_map(dequantize, (total, upper, lower, _count_clients()))

    return sum_securely


class SecureModularSumFactory(UnweightedAggregationFactory):
    """Sums integer client values modulo `modulus` with secure aggregation.

    Values are taken modulo `modulus` (they wrap, they are not refused), and the sum lies in
    `[0, modulus - 1]`. With `symmetric_range=True`, values and sum lie in
    `[-(modulus - 1), modulus - 1]`: the secure sum then runs modulo `2 * modulus - 1` and the server
    maps its result back into that range, as TensorFlow Federated does. Stateless; no measurements.
    """

    def __init__(self, modulus: int, symmetric_range: bool = False):
        if not _is_int(modulus):
            raise TypeError(
                f"SecureModularSumFactory: modulus must be an integer, got {modulus!r}."
            )
        if not isinstance(symmetric_range, (bool, np.bool_)):
            raise TypeError(
                f"SecureModularSumFactory: symmetric_range must be a bool, got {symmetric_range!r}."
            )
        modulus = int(modulus)
        if modulus <= 0:
            raise ValueError(f"SecureModularSumFactory: modulus must be positive, got {modulus}.")
        self._modulus = modulus
        self._symmetric_range = bool(symmetric_range)
        # The modulus the secure sum runs with; the sum reaches `sum_modulus - 1` before any shift.
        self._sum_modulus = 2 * modulus - 1 if symmetric_range else modulus
        int64_max = int(np.iinfo(np.int64).max)
        if self._sum_modulus > int64_max:
            raise ValueError(
                f"SecureModularSumFactory: modulus {modulus} is too large: the secure sum runs "
                f"modulo {self._sum_modulus}, which must fit int64 (at most {int64_max})."
            )

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = to_type(value_type)
        leaves = _tensor_types(value_type)
        if not (leaves and is_structure_of(value_type, "iu")):
            raise TypeError(
                "SecureModularSumFactory.create: expected an integer tensor or a struct of them, "
                f"got {value_type}."
            )
        symmetric, modulus, sum_modulus = (
            self._symmetric_range,
            self._modulus,
            self._sum_modulus,
        )
        for leaf in leaves:
            info = np.iinfo(leaf.dtype)
            if symmetric and leaf.dtype.kind == "u":
                raise TypeError(
                    "SecureModularSumFactory.create: symmetric_range gives negative sums, which "
                    f"unsigned values cannot hold; got {value_type}."
                )
            if modulus - 1 > info.max:
                raise ValueError(
                    f"SecureModularSumFactory.create: the sum modulo {modulus} reaches "
                    f"{modulus - 1}, beyond the values' dtype {_dtype_name(leaf.dtype)} (at most "
                    f"{info.max})."
                )

        @fc.federated_computation
        def initialize():
            return empty_at_server()

        if symmetric:
            wide_type = _map_type(value_type, np.int64)

            @ftf.computation(value_type)
            def widen(value):
                # Before the server's shift the sum reaches 2 * modulus - 2, which may not fit the
                # values' dtype.
                return tf.nest.map_structure(lambda v: tf.cast(v, tf.int64), value)

            specs = ftf.to_tf_spec(value_type)

            @ftf.computation(wide_type)
            def into_symmetric_range(total):
                def one(t, spec):
                    shifted = tf.where(t >= modulus, t - sum_modulus, t)
                    return tf.cast(shifted, spec.dtype)

                return tf.nest.map_structure(one, total, specs)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            if symmetric:
                total = fc.federated_secure_modular_sum(
                    fc.federated_map(widen, value), np.int64(sum_modulus)
                )
                total = fc.federated_map(into_symmetric_range, total)
            else:
                total = fc.federated_secure_modular_sum(value, np.int64(modulus))
            return MeasuredProcessOutput(state, total, empty_at_server())

        return AggregationProcess(initialize, next_fn)

    def __repr__(self) -> str:
        return (
            f"SecureModularSumFactory(modulus={self._modulus}, "
            f"symmetric_range={self._symmetric_range})"
        )
