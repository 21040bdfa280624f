"""Random rotations before an inner aggregation: `HadamardTransformFactory` and
`DiscreteFourierTransformFactory`.

A random orthogonal rotation spreads a vector's mass evenly over its coordinates, which makes a quantizer
(or any per-coordinate compression) inside it lose less. The rotation is linear, so the server undoes it
on the aggregate: for a sum or a mean inside, the result equals the inner aggregate of the unrotated
values up to float error.
"""

from __future__ import annotations

import abc
import collections
import math
from typing import Any, cast

import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_aggregators._compression import (
    byte_counts,
    check_known_shapes,
    tensor_specs,
)
from fed_aggregators._factory import UnweightedAggregationFactory, check_int, check_value_type
from fed_aggregators._mean import _check_sum_factory
from fed_aggregators._seeds import SEED_TYPE, check_seed, seed_initializer, split_seed
from fed_core.templates import AggregationProcess, MeasuredProcessOutput
from fed_types import CLIENTS, SERVER, FederatedType, StructType


def _rotated_dtype(dtype: tf.DType) -> tf.DType:
    """float64 tensors are rotated in float64, all others (integers included) in float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


class _RotationFactory(UnweightedAggregationFactory):
    """Flattens and pads each client tensor, applies `num_repeats` random rotations (the same for every
    client in a round, new each round), aggregates the rotated values with the inner factory, and undoes
    the rotations, padding and flattening at the server."""

    # The key of the inner factory's measurements, as TensorFlow Federated names it.
    _measurements_key = ""

    def __init__(
        self,
        inner_agg_factory: UnweightedAggregationFactory | None = None,
        num_repeats: int = 1,
        seed: int | None = None,
    ):
        owner = type(self).__name__
        self._inner_agg_factory = _check_sum_factory(inner_agg_factory, "inner_agg_factory", owner)
        self._num_repeats = check_int(num_repeats, "num_repeats", owner)
        if self._num_repeats < 1:
            raise ValueError(f"{owner}: num_repeats must be >= 1, got {num_repeats}.")
        self._seed = check_seed(seed, owner)

    @abc.abstractmethod
    def _padded_size(self, num_elements: int) -> int:
        """The length a flattened tensor of `num_elements` is padded to with zeros."""

    @abc.abstractmethod
    def _rotate(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """One random rotation of the padded vector `x`."""

    @abc.abstractmethod
    def _unrotate(self, y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The inverse of `_rotate(·, seed)`."""

    def create(self, value_type: Any) -> AggregationProcess:
        owner = type(self).__name__
        value_type = check_value_type(value_type, owner, "fiu", "numeric")
        check_known_shapes(value_type, owner)
        structure, specs = tensor_specs(value_type)
        sizes = [s.shape.num_elements() for s in specs]
        padded = [self._padded_size(d) for d in sizes]
        repeats = self._num_repeats
        initial_seed = seed_initializer(self._seed)

        def rotation_seeds(round_seed: tf.Tensor) -> list[list[tf.Tensor]]:
            """One seed per tensor and repeat, the same on clients and at the server."""
            seeds = tf.random.split(round_seed, max(1, len(specs) * repeats))
            return [[seeds[k * repeats + r] for r in range(repeats)] for k in range(len(specs))]

        @ftf.computation(value_type, SEED_TYPE)
        def client_transform(value, round_seed):
            seeds = rotation_seeds(round_seed)
            rotated = []
            for k, (t, spec) in enumerate(zip(tf.nest.flatten(value), specs)):
                x = tf.cast(tf.reshape(t, [-1]), _rotated_dtype(spec.dtype))
                x = tf.concat([x, tf.zeros([padded[k] - sizes[k]], x.dtype)], axis=0)
                for r in range(repeats):
                    x = self._rotate(x, seeds[k][r])
                rotated.append(x)
            return tf.nest.pack_sequence_as(structure, rotated)

        rotated_type = client_transform.type_signature.result
        inner_process = self._inner_agg_factory.create(rotated_type)

        inner_result = cast(StructType, inner_process.next.type_signature.result)

        @ftf.computation(cast(FederatedType, inner_result.result).member, SEED_TYPE)
        def server_transform(aggregate, round_seed):
            seeds = rotation_seeds(round_seed)
            restored = []
            for k, (y, spec) in enumerate(zip(tf.nest.flatten(aggregate), specs)):
                for r in reversed(range(repeats)):
                    y = self._unrotate(y, seeds[k][r])
                y = tf.reshape(y[: sizes[k]], spec.shape)
                if spec.dtype.is_integer:
                    y = tf.round(y)
                restored.append(tf.cast(y, spec.dtype))
            return tf.nest.pack_sequence_as(structure, restored)

        bytes_before = sum(d * s.dtype.size for d, s in zip(sizes, specs))
        bytes_after = sum(n * _rotated_dtype(s.dtype).size for n, s in zip(padded, specs))
        key = self._measurements_key

        @fc.federated_computation
        def initialize():
            return fc.federated_zip(
                collections.OrderedDict(
                    inner_agg_process=inner_process.initialize(),
                    seed=fc.federated_eval(initial_seed, SERVER),
                )
            )

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(value_type, CLIENTS)
        )
        def next_fn(state, value):
            seeds = fc.federated_map(split_seed(), state.seed)
            rotated = fc.federated_map(client_transform, (value, fc.federated_broadcast(seeds[1])))
            inner_output = inner_process.next(state.inner_agg_process, rotated)
            result = fc.federated_map(server_transform, (inner_output.result, seeds[1]))
            new_state = fc.federated_zip(
                collections.OrderedDict(inner_agg_process=inner_output.state, seed=seeds[0])
            )
            measurements = fc.federated_zip(
                collections.OrderedDict(
                    [
                        (key, inner_output.measurements),
                        *byte_counts(bytes_before, bytes_after).items(),
                    ]
                )
            )
            return MeasuredProcessOutput(new_state, result, measurements)

        return AggregationProcess(initialize, next_fn)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(inner_agg_factory={self._inner_agg_factory!r}, "
            f"num_repeats={self._num_repeats}, seed={self._seed})"
        )


def _random_signs(size: int, dtype: tf.DType, seed: tf.Tensor) -> tf.Tensor:
    bits = tf.random.stateless_uniform([size], seed, minval=0, maxval=2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)


def _fast_walsh_hadamard(x: tf.Tensor) -> tf.Tensor:
    """The orthonormal Walsh-Hadamard transform of `x` (length a power of 2), in O(d log d); it is its
    own inverse."""
    n = x.shape[0]
    half = 1
    while half < n:
        pairs = tf.reshape(x, [-1, 2, half])
        first, second = pairs[:, 0, :], pairs[:, 1, :]
        x = tf.reshape(tf.stack([first + second, first - second], axis=1), [n])
        half *= 2
    return x / tf.sqrt(tf.cast(n, x.dtype))


class HadamardTransformFactory(_RotationFactory):
    """Aggregates numeric client values with `inner_agg_factory` (SumFactory by default) after a
    randomized Walsh-Hadamard rotation, undone at the server.

    Each client flattens each tensor, pads it with zeros to a power-of-2 length, and `num_repeats`
    times flips the signs of its coordinates at random and applies the orthonormal fast Walsh-Hadamard
    transform. All clients use the same random signs in a round, drawn from an int64[2] seed in the
    state (from `seed`, or drawn at `initialize` when None) and new each round. The inner factory sees
    float32 vectors (float64 for float64 tensors); integer results are rounded. The state is
    `<inner_agg_process=..., seed=int64[2]>`; measurements are `hd` (the inner factory's),
    `bytes_before` (the value's bytes) and `bytes_after` (the rotated, padded vectors' bytes, which a
    compressing inner factory shrinks: see its own measurements).
    """

    _measurements_key = "hd"

    def _padded_size(self, num_elements: int) -> int:
        return 1 << max(0, num_elements - 1).bit_length()

    def _rotate(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return _fast_walsh_hadamard(x * _random_signs(x.shape[0], x.dtype, seed))

    def _unrotate(self, y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return _fast_walsh_hadamard(y) * _random_signs(y.shape[0], y.dtype, seed)


def _random_phases(size: int, dtype: tf.DType, seed: tf.Tensor, inverse: bool) -> tf.Tensor:
    """`e^(i θ)` for θ uniform in [0, 2π) (`e^(-i θ)` for the inverse), of complex `dtype`."""
    real = tf.float64 if dtype == tf.complex128 else tf.float32
    theta = tf.random.stateless_uniform([size], seed, minval=0, maxval=2 * math.pi, dtype=real)
    if inverse:
        theta = -theta
    return tf.complex(tf.cos(theta), tf.sin(theta))


class DiscreteFourierTransformFactory(_RotationFactory):
    """Aggregates numeric client values with `inner_agg_factory` (SumFactory by default) after a
    randomized discrete Fourier rotation, undone at the server.

    Each client flattens each tensor, pads it to an even length `d`, and `num_repeats` times packs its
    halves into the real and imaginary parts of a complex vector of length `d/2`, multiplies each
    coordinate by a random unit complex number, applies the FFT scaled by `1/sqrt(d/2)` (which makes
    it orthonormal), and unpacks the real and imaginary parts again. All clients use the same random
    phases in a round, drawn from an int64[2] seed in the state (from `seed`, or drawn at `initialize`
    when None) and new each round. The inner factory sees float32 vectors (float64 for float64
    tensors); integer results are rounded. The state is `<inner_agg_process=..., seed=int64[2]>`;
    measurements are `dft` (the inner factory's), `bytes_before` and `bytes_after` (as for
    `HadamardTransformFactory`).
    """

    _measurements_key = "dft"

    def _padded_size(self, num_elements: int) -> int:
        return max(2, num_elements + num_elements % 2)

    def _rotate(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        half = x.shape[0] // 2
        z = tf.complex(x[:half], x[half:])
        z = tf.signal.fft(z * _random_phases(half, z.dtype, seed, inverse=False))
        z = z / tf.cast(math.sqrt(half), z.dtype)
        return tf.concat([tf.math.real(z), tf.math.imag(z)], axis=0)

    def _unrotate(self, y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        half = y.shape[0] // 2
        z = tf.complex(y[:half], y[half:])
        z = tf.signal.ifft(z * tf.cast(math.sqrt(half), z.dtype))
        z = z * _random_phases(half, z.dtype, seed, inverse=True)
        return tf.concat([tf.math.real(z), tf.math.imag(z)], axis=0)
