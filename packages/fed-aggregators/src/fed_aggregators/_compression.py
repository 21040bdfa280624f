"""Compressed sums: quantization (`EncodedSumFactory`) and sparsification
(`TopKSparsificationFactory`, `RandomKSparsificationFactory`).

Clients encode their values into smaller messages; the messages are decoded and added up where they are
summed (in `federated_aggregate`'s accumulate step, so what travels from each client is the message, not
the value). Every process reports, as measurements, the bytes one client sends without and with
compression: `bytes_before` and `bytes_after`.

Randomness (stochastic rounding, random coordinates) comes from an int64[2] seed in the process state,
split into a fresh seed each round and used with `tf.random.stateless_*` ops.
"""

from __future__ import annotations

import abc
import collections
import math
import numbers
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._factory import UnweightedAggregationFactory, check_int, check_value_type
from fed_aggregators._seeds import SEED_TYPE, check_seed, seed_initializer, split_seed
from fed_aggregators._sum import empty_at_server
from fed_core.templates import AggregationProcess, MeasuredProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType, Type

_INDEX_BYTES = np.dtype(np.int32).itemsize


# Seeds ----------------------------------------------------------------------------------------------


def seed_per_client(seed: tf.Tensor, tensors: list[tf.Tensor]) -> tf.Tensor:
    """`seed` folded with a fingerprint of a client's tensors.

    Clients are anonymous inside a mapped computation, so their own values are what tells them apart:
    clients with different values draw independent randomness from the same broadcast seed (clients with
    identical values draw the same).
    """
    serialized = tf.strings.join([tf.io.serialize_tensor(t) for t in tensors])
    fingerprint = tf.fingerprint(tf.reshape(serialized, [1]))[0]
    return tf.random.fold_in(seed, tf.bitcast(fingerprint, tf.int64))


# Shared pieces ---------------------------------------------------------------------------------------


def tensor_specs(value_type: Type) -> tuple[Any, list[tf.TensorSpec]]:
    """The TensorFlow spec structure of `value_type` and its tensor specs, in `tf.nest` order."""
    structure = ftf.to_tf_spec(value_type)
    return structure, tf.nest.flatten(structure)


def check_known_shapes(value_type: Type, owner: str) -> None:
    """A TypeError naming `owner` unless every tensor in `value_type` has a fully known shape."""
    for spec in tensor_specs(value_type)[1]:
        if not spec.shape.is_fully_defined():
            raise TypeError(
                f"{owner}.create: expected tensors of fully known shapes, got {value_type}."
            )


def _dims(tensor_type: TensorType) -> tuple[int, ...]:
    """The shape of a tensor type that `check_known_shapes` has let through."""
    return cast(tuple[int, ...], tensor_type.shape)


def byte_counts(bytes_before: int, bytes_after: int) -> collections.OrderedDict[str, Any]:
    """The measurements `bytes_before` and `bytes_after`, as int64@SERVER values (while tracing)."""
    return collections.OrderedDict(
        bytes_before=fc.federated_value(np.int64(bytes_before), SERVER),
        bytes_after=fc.federated_value(np.int64(bytes_after), SERVER),
    )


def _num_elements(spec: tf.TensorSpec) -> int:
    return spec.shape.num_elements()


def _summed_messages(
    messages: Any, specs: list[tf.TensorSpec], structure: Any, decode_add: Callable[..., Any]
) -> Any:
    """The sum at SERVER of client `messages` (a tuple with one message per tensor spec), where
    `decode_add(accumulator, message, k)` adds the decoded message of tensor `k` to its flat
    accumulator."""
    message_type = messages.type_signature.member
    accumulator_type = tuple(TensorType(s.dtype.as_numpy_dtype, [_num_elements(s)]) for s in specs)

    @ftf.computation
    def zero():
        return tuple(tf.zeros([_num_elements(s)], s.dtype) for s in specs)

    @ftf.computation(accumulator_type, message_type)
    def accumulate(accumulator, message):
        return tuple(decode_add(a, m, k) for k, (a, m) in enumerate(zip(accumulator, message)))

    @ftf.computation(accumulator_type, accumulator_type)
    def merge(first, second):
        return tuple(a + b for a, b in zip(first, second))

    @ftf.computation(accumulator_type)
    def report(accumulator):
        return tf.nest.pack_sequence_as(
            structure, [tf.reshape(a, s.shape) for a, s in zip(accumulator, specs)]
        )

    return fc.federated_aggregate(messages, zero(), accumulate, merge, report)


# Quantization ----------------------------------------------------------------------------------------


class TensorEncoder(abc.ABC):
    """How `EncodedSumFactory` sends one tensor (of the type it was made for) from a client.

    `encode` runs on the client and returns the message, a tensor or a structure of tensors;
    `decode` turns one client's message back into a tensor of the original shape and dtype, to be added
    into the sum; `message_bytes` is the size of a message on the wire.
    """

    @abc.abstractmethod
    def encode(self, value: tf.Tensor, seed: tf.Tensor) -> Any:
        """The message for `value`; `seed` (int64[2]) is for `tf.random.stateless_*` ops."""

    @abc.abstractmethod
    def decode(self, message: Any) -> tf.Tensor:
        """The value that `message` stands for."""

    @property
    @abc.abstractmethod
    def message_bytes(self) -> int:
        """The bytes a client sends for one message."""


class _PlainEncoder(TensorEncoder):
    """Sends the tensor as it is."""

    def __init__(self, tensor_type: TensorType):
        self._bytes = int(np.prod(_dims(tensor_type), dtype=np.int64)) * tensor_type.dtype.itemsize

    def encode(self, value: tf.Tensor, seed: tf.Tensor) -> Any:
        return value

    def decode(self, message: Any) -> tf.Tensor:
        return message

    @property
    def message_bytes(self) -> int:
        return self._bytes


class _UniformQuantizer(TensorEncoder):
    """Stochastic uniform quantization over the tensor's own [min, max] range: each element becomes
    one of `2**bits` evenly spaced levels, rounded up or down at random with the probabilities that
    make its expected value exact. Values must be finite."""

    def __init__(self, tensor_type: TensorType, bits: int):
        self._type = tensor_type
        self._levels = 2**bits - 1
        self._code_dtype = tf.uint8 if bits <= 8 else tf.uint16
        # float16 and bfloat16 values are quantized in float32 so that the levels are exact.
        self._work_dtype = tf.float64 if tensor_type.dtype == np.float64 else tf.float32
        num_elements = int(np.prod(_dims(tensor_type), dtype=np.int64))
        # Codes are counted bit-packed; the range travels as two values of the tensor's dtype.
        self._bytes = math.ceil(num_elements * bits / 8) + 2 * tensor_type.dtype.itemsize

    def encode(self, value: tf.Tensor, seed: tf.Tensor) -> Any:
        low, high = tf.reduce_min(value), tf.reduce_max(value)
        x = tf.cast(tf.reshape(value, [-1]), self._work_dtype)
        low_w, high_w = tf.cast(low, self._work_dtype), tf.cast(high, self._work_dtype)
        scale = tf.math.divide_no_nan(tf.constant(self._levels, self._work_dtype), high_w - low_w)
        noise = tf.random.stateless_uniform(tf.shape(x), seed, dtype=self._work_dtype)
        codes = tf.clip_by_value(tf.floor((x - low_w) * scale + noise), 0.0, self._levels)
        return collections.OrderedDict(min=low, max=high, codes=tf.cast(codes, self._code_dtype))

    def decode(self, message: Any) -> tf.Tensor:
        low = tf.cast(message["min"], self._work_dtype)
        high = tf.cast(message["max"], self._work_dtype)
        step = (high - low) / self._levels
        x = low + tf.cast(message["codes"], self._work_dtype) * step
        return tf.cast(tf.reshape(x, self._type.shape), self._type.dtype)

    @property
    def message_bytes(self) -> int:
        return self._bytes


class _QuantizeAboveThreshold:
    """The encoder_fn of `EncodedSumFactory.quantize_above_threshold`."""

    def __init__(self, bits: int, threshold: int):
        self._bits = bits
        self._threshold = threshold

    def __call__(self, tensor_type: TensorType) -> TensorEncoder:
        if int(np.prod(_dims(tensor_type), dtype=np.int64)) > self._threshold:
            return _UniformQuantizer(tensor_type, self._bits)
        return _PlainEncoder(tensor_type)

    def __repr__(self) -> str:
        return (
            f"quantize_above_threshold(quantization_bits={self._bits}, threshold={self._threshold})"
        )


class EncodedSumFactory(UnweightedAggregationFactory):
    """Sums client values (floats) that each client sends encoded, one `TensorEncoder` per tensor.

    `encoder_fn(tensor_type)` gives the encoder for each tensor of the value type. The server decodes
    every client's messages and sums the decoded values. The state is an int64[2] seed (from `seed`, or
    drawn at `initialize` when None) that gives the encoders fresh randomness each round. Measurements:
    `bytes_before` and `bytes_after`, the bytes one client sends without and with encoding.

    `EncodedSumFactory.quantize_above_threshold(...)` is the usual configuration.
    """

    def __init__(self, encoder_fn: Callable[[TensorType], TensorEncoder], seed: int | None = None):
        if not callable(encoder_fn):
            raise TypeError(
                f"EncodedSumFactory: encoder_fn must be a callable from a TensorType to a "
                f"TensorEncoder, got {encoder_fn!r}."
            )
        self._encoder_fn = encoder_fn
        self._seed = check_seed(seed, "EncodedSumFactory")

    @classmethod
    def quantize_above_threshold(
        cls, quantization_bits: int = 8, threshold: int = 20000, seed: int | None = None
    ) -> EncodedSumFactory:
        """Quantizes, on each client, every tensor with more than `threshold` elements to
        `quantization_bits` bits per element, and sums smaller tensors exactly.

        Each client sends the minimum and maximum of such a tensor and an integer code in
        `[0, 2**quantization_bits - 1]` per element: the element's position in that range, rounded up
        or down at random so that the decoded value is unbiased (its expectation is the element). The
        error of one decoded element is at most `(max - min) / (2**quantization_bits - 1)`; values must
        be finite. `quantization_bits` is in [1, 16]; `threshold` >= 0. `seed` fixes the randomness
        (for reproducible runs); by default `initialize` draws a new one.
        """
        owner = "EncodedSumFactory.quantize_above_threshold"
        bits = check_int(quantization_bits, "quantization_bits", owner)
        if not 1 <= bits <= 16:
            raise ValueError(f"{owner}: quantization_bits must be in [1, 16], got {bits}.")
        threshold = check_int(threshold, "threshold", owner)
        if threshold < 0:
            raise ValueError(f"{owner}: threshold must be >= 0, got {threshold}.")

        return cls(_QuantizeAboveThreshold(bits, threshold), seed=seed)

    def create(self, value_type: Any) -> AggregationProcess:
        value_type = check_value_type(value_type, "EncodedSumFactory", "f", "floating-point")
        check_known_shapes(value_type, "EncodedSumFactory")
        structure, specs = tensor_specs(value_type)
        encoders = []
        for spec in specs:
            encoder = self._encoder_fn(TensorType(spec.dtype.as_numpy_dtype, spec.shape.as_list()))
            if not isinstance(encoder, TensorEncoder):
                raise TypeError(
                    f"EncodedSumFactory.create: encoder_fn must return a TensorEncoder, got "
                    f"{encoder!r}."
                )
            encoders.append(encoder)
        bytes_before = sum(_num_elements(s) * s.dtype.size for s in specs)
        bytes_after = sum(e.message_bytes for e in encoders)
        initial_seed = seed_initializer(self._seed)

        @ftf.computation(value_type, SEED_TYPE)
        def encode(value, seed):
            tensors = tf.nest.flatten(value)
            seeds = tf.random.split(seed_per_client(seed, tensors), len(tensors))
            return tuple(e.encode(t, seeds[k]) for k, (e, t) in enumerate(zip(encoders, tensors)))

        def decode_add(accumulator: tf.Tensor, message: Any, k: int) -> tf.Tensor:
            return accumulator + tf.reshape(encoders[k].decode(message), [-1])

        @fc.federated_computation
        def initialize():
            return fc.federated_eval(initial_seed, SERVER)

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            seeds = fc.federated_map(split_seed(), state)
            messages = fc.federated_map(encode, (value, fc.federated_broadcast(seeds[1])))
            total = _summed_messages(messages, specs, structure, decode_add)
            return MeasuredProcessOutput(
                seeds[0], total, fc.federated_zip(byte_counts(bytes_before, bytes_after))
            )

        return AggregationProcess(initialize, next_fn)

    def __repr__(self) -> str:
        return f"EncodedSumFactory(encoder_fn={self._encoder_fn!r}, seed={self._seed})"


# Sparsification ---------------------------------------------------------------------------------------


class _SparsificationFactory(UnweightedAggregationFactory):
    """Sums client values (floats) of which each client sends `k` coordinates per tensor, as values
    and int32 indices; `_select` says which."""

    _uses_seed = False

    def __init__(self, k: int | None, fraction: float | None, seed: int | None):
        owner = type(self).__name__
        if (k is None) == (fraction is None):
            raise ValueError(
                f"{owner}: give exactly one of k and fraction, got k={k!r}, fraction={fraction!r}."
            )
        if k is not None:
            k = check_int(k, "k", owner)
            if k < 1:
                raise ValueError(f"{owner}: k must be >= 1, got {k}.")
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
                raise TypeError(f"{owner}: fraction must be a number, got {fraction!r}.")
            if not 0 < fraction <= 1:
                raise ValueError(f"{owner}: fraction must be in (0, 1], got {fraction}.")
            fraction = float(fraction)
        self._k = k
        self._fraction = fraction
        self._seed = check_seed(seed, owner)

    def kept(self, num_elements: int) -> int:
        """How many of a tensor's `num_elements` coordinates a client sends: `k` (at most all of
        them), or `fraction` of them rounded to the nearest whole number, at least one."""
        if self._k is not None:
            return min(self._k, num_elements)
        assert self._fraction is not None  # one of k and fraction is given
        return min(num_elements, max(1, math.floor(self._fraction * num_elements + 0.5)))

    @abc.abstractmethod
    def _select(
        self, flat: tf.Tensor, k: int, seed: tf.Tensor | None, with_error_feedback: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The int32 indices of the `k` coordinates of `flat` to send, and the values to send;
        `seed` is this tensor's seed for a random selection (None for a deterministic one)."""

    def create(self, value_type: Any) -> AggregationProcess:
        """An AggregationProcess that sums the sparsified client values (no memory between rounds)."""
        return self._build(value_type, with_error_feedback=False)

    def create_with_error_feedback(self, value_type: Any) -> MeasuredProcess:
        """A MeasuredProcess whose clients remember what they did not send, for settings where the
        same clients take part in every round (cross-silo).

        `next(state@SERVER, value@CLIENTS, residual@CLIENTS)` returns
        `<state, result=<sum@SERVER, residual@CLIENTS>, measurements@SERVER>`: each client sparsifies
        `value + residual` and keeps the part it did not send as its new residual, which the caller
        passes back in the next round (zeros in the first). What the server sums then tracks the
        running sum of the true values: their difference is the sum of the current residuals.
        """
        return self._build(value_type, with_error_feedback=True)

    def _build(self, value_type: Any, with_error_feedback: bool) -> Any:
        owner = type(self).__name__
        value_type = check_value_type(value_type, owner, "f", "floating-point")
        check_known_shapes(value_type, owner)
        structure, specs = tensor_specs(value_type)
        ks = [self.kept(_num_elements(s)) for s in specs]
        bytes_before = sum(_num_elements(s) * s.dtype.size for s in specs)
        bytes_after = sum(k * (s.dtype.size + _INDEX_BYTES) for k, s in zip(ks, specs))
        uses_seed = self._uses_seed
        initial_seed = seed_initializer(self._seed)

        def sparsify(tensors: list[tf.Tensor], seed: tf.Tensor | None) -> tuple[Any, ...]:
            """One message per tensor: the indices and values of the coordinates sent."""
            if uses_seed:
                seeds = tf.random.split(seed_per_client(seed, tensors), len(tensors))
            messages = []
            for k, t in enumerate(tensors):
                indices, values = self._select(
                    tf.reshape(t, [-1]), ks[k], seeds[k] if uses_seed else None, with_error_feedback
                )
                messages.append(collections.OrderedDict(indices=indices, values=values))
            return tuple(messages)

        def decode_add(accumulator: tf.Tensor, message: Any, k: int) -> tf.Tensor:
            return tf.tensor_scatter_nd_add(
                accumulator, message["indices"][:, None], message["values"]
            )

        # The client's inputs: its value, its residual with error feedback, the round's seed if the
        # selection is random.
        input_types = collections.OrderedDict(value=value_type)
        if with_error_feedback:
            input_types["residual"] = value_type
        if uses_seed:
            input_types["seed"] = SEED_TYPE

        @ftf.computation(StructType(list(input_types.items()), collections.OrderedDict))
        def client_work(inputs):
            tensors = tf.nest.flatten(inputs["value"])
            if not with_error_feedback:
                return sparsify(tensors, inputs.get("seed"))
            tensors = [v + r for v, r in zip(tensors, tf.nest.flatten(inputs["residual"]))]
            messages = sparsify(tensors, inputs.get("seed"))
            left_out = [
                t - tf.reshape(decode_add(tf.zeros([_num_elements(s)], s.dtype), m, k), s.shape)
                for k, (t, m, s) in enumerate(zip(tensors, messages, specs))
            ]
            return messages, tf.nest.pack_sequence_as(structure, left_out)

        @fc.federated_computation
        def initialize():
            if uses_seed:
                return fc.federated_eval(initial_seed, SERVER)
            return empty_at_server()

        def run_clients(state: Any, **values: Any) -> tuple[Any, Any]:
            """The state to keep, and `client_work`'s output at CLIENTS."""
            if uses_seed:
                seeds = fc.federated_map(split_seed(), state)
                state, values["seed"] = seeds[0], fc.federated_broadcast(seeds[1])
            return state, fc.federated_map(client_work, fc.federated_zip(values))

        measurements = (bytes_before, bytes_after)
        state_type = initialize.type_signature.result
        client_type = FederatedType(value_type, CLIENTS)
        if not with_error_feedback:

            @fc.federated_computation(state_type, client_type)
            def next_fn(state, value):
                new_state, messages = run_clients(state, value=value)
                total = _summed_messages(messages, specs, structure, decode_add)
                return MeasuredProcessOutput(
                    new_state, total, fc.federated_zip(byte_counts(*measurements))
                )

            return AggregationProcess(initialize, next_fn)

        @fc.federated_computation(state_type, client_type, client_type)
        def next_with_feedback(state, value, residual):
            new_state, sent = run_clients(state, value=value, residual=residual)
            total = _summed_messages(sent[0], specs, structure, decode_add)
            return MeasuredProcessOutput(
                new_state,
                collections.OrderedDict(sum=total, residual=sent[1]),
                fc.federated_zip(byte_counts(*measurements)),
            )

        return MeasuredProcess(initialize, next_with_feedback, next_is_multi_arg=True)

    def __repr__(self) -> str:
        size = f"k={self._k}" if self._k is not None else f"fraction={self._fraction}"
        seed = f", seed={self._seed}" if self._uses_seed else ""
        return f"{type(self).__name__}({size}{seed})"


class TopKSparsificationFactory(_SparsificationFactory):
    """Sums client values (floats) of which each client sends, per tensor, only its `k`
    largest-magnitude coordinates (or that `fraction` of them), as values and int32 indices; ties go to
    the lower index. Deterministic and stateless; biased (small coordinates never arrive) unless used with
    error feedback, `create_with_error_feedback`. Give exactly one of `k` and `fraction`.
    Measurements: `bytes_before` and `bytes_after`, the bytes one client sends.
    """

    def __init__(self, k: int | None = None, fraction: float | None = None):
        super().__init__(k, fraction, seed=None)

    def _select(
        self, flat: tf.Tensor, k: int, seed: tf.Tensor | None, with_error_feedback: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        indices = tf.math.top_k(tf.abs(flat), k).indices
        return indices, tf.gather(flat, indices)


class RandomKSparsificationFactory(_SparsificationFactory):
    """Sums client values (floats) of which each client sends, per tensor, `k` coordinates (or that
    `fraction` of them) chosen uniformly at random, scaled by `d / k` (`d` the tensor's size) so that
    the sum is unbiased. The state is an int64[2] seed (from `seed`, or drawn at `initialize`), fresh
    each round; clients with different values choose independently. Give exactly one of `k` and
    `fraction`. Measurements: `bytes_before` and `bytes_after`, the bytes one client sends.

    With error feedback (`create_with_error_feedback`) the coordinates are sent unscaled: error
    feedback needs a compressor that shrinks what is left out, and the scaled one does not when
    `k < d / 2`.
    """

    _uses_seed = True

    def __init__(
        self, k: int | None = None, fraction: float | None = None, seed: int | None = None
    ):
        super().__init__(k, fraction, seed)

    def _select(
        self, flat: tf.Tensor, k: int, seed: tf.Tensor, with_error_feedback: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        # The k largest of independent uniform scores are a uniformly random k-subset.
        scores = tf.random.stateless_uniform(tf.shape(flat), seed)
        indices = tf.math.top_k(scores, k, sorted=False).indices
        values = tf.gather(flat, indices)
        if not with_error_feedback:
            d = flat.shape.num_elements()
            values = values * tf.cast(d / k, flat.dtype)
        return indices, values
