"""`build_iblt_computation`: federated heavy hitters with IBLTs (TFF's name and parameters).

Each client reduces its words to distinct strings with counts, caps its contribution, and encodes them in
an IBLT sketch; the server sums the sketches (securely, when asked) and decodes the heavy hitters. No
client sends its words: only a sketch whose size depends on `capacity`, not on the data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import fed_core as fc
import fed_tensorflow as ftf
from fed_analytics._data import all_elements
from fed_analytics.heavy_hitters.iblt import _sketch
from fed_types import CLIENTS, FederatedType, SequenceType, TensorType


class ServerOutput(NamedTuple):
    """What a round of heavy hitters returns at the server.

    `clients`: how many clients took part; `heavy_hitters`: the decoded strings (bytes, as TFF gives
    them); `heavy_hitters_unique_counts`: how many clients contributed each; `heavy_hitters_counts`: their
    summed counts; `num_not_decoded`: the contributions left in the sketch undecoded (more distinct strings
    than `capacity`); `round_timestamp`: seconds since the epoch at the server.
    """

    clients: Any
    heavy_hitters: Any
    heavy_hitters_unique_counts: Any
    heavy_hitters_counts: Any
    num_not_decoded: Any
    round_timestamp: Any


def _check_optional(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an int {bound} or None, got {value!r}.")


def build_iblt_computation(
    *,
    string_max_bytes: int = 10,
    max_words_per_user: int | None = None,
    multi_contribution: bool = True,
    capacity: int = 1000,
    k_anonymity: int = 1,
    max_heavy_hitters: int | None = None,
    string_postprocessor: Callable[[tf.Tensor], tf.Tensor] | None = None,
    secure_sum_bitwidth: int | None = None,
    decode_iblt_fn: Callable[..., Any] | None = None,
    seed: int = 0,
    batch_size: int = 1,
    repetitions: int = _sketch.DEFAULT_REPETITIONS,
) -> Any:
    """A federated computation `({str[?]*}@CLIENTS -> ServerOutput@SERVER)` that finds the strings many
    clients hold. Each client's data is a dataset of batches of strings (rank-1 string tensors).

    - Strings are cut to `string_max_bytes` bytes. A client counts its distinct strings; with
      `multi_contribution` (the default) it contributes each string's count, else 1 per string.
    - `max_words_per_user` caps a client's contribution: with `multi_contribution`, its first
      `max_words_per_user // batch_size` batches are read; without, its `max_words_per_user` most frequent
      distinct strings are kept.
    - The sketches are summed with `federated_sum`, or, with `secure_sum_bitwidth`, with the secure sums
      (the sketch modulo its prime, counts bounded by `2**secure_sum_bitwidth - 1`: a `max_words_per_user`
      above that bound is refused here, and a client's count above it, when the round runs).
    - The server decodes the sum, keeps strings that at least `k_anonymity` clients hold, orders them
      by count (most frequent first; ties in an order that depends only on the summed sketch), keeps the
      first `max_heavy_hitters`, and applies `string_postprocessor` (a TensorFlow function of the
      strings) if given.
    - `capacity` is how many distinct strings the sketch is sized to decode; more are reported in
      `num_not_decoded`. `decode_iblt_fn(iblt=, iblt_values=, capacity=, string_max_bytes=, repetitions=,
      seed=)` replaces the decoder: it returns (strings, unique counts, counts, number not decoded).
    """
    _sketch.check_parameters(capacity, string_max_bytes, repetitions)
    _check_optional("max_words_per_user", max_words_per_user, 1)
    _check_optional("max_heavy_hitters", max_heavy_hitters, 1)
    _check_optional("k_anonymity", k_anonymity, 1)
    _check_optional("secure_sum_bitwidth", secure_sum_bitwidth, 1, 62)
    _check_optional("batch_size", batch_size, 1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}.")
    if k_anonymity is None:
        raise ValueError("k_anonymity must be an int >= 1, got None.")
    if not isinstance(multi_contribution, bool):
        raise TypeError(f"multi_contribution must be a bool, got {multi_contribution!r}.")
    if (
        secure_sum_bitwidth is not None
        and multi_contribution
        and max_words_per_user is not None
        and max_words_per_user > 2**secure_sum_bitwidth - 1
    ):
        # A client's count of one string reaches max_words_per_user; the secure sum takes at most
        # 2**secure_sum_bitwidth - 1 from each client.
        raise ValueError(
            f"secure_sum_bitwidth={secure_sum_bitwidth} sums counts of at most "
            f"{2**secure_sum_bitwidth - 1} per client, but with multi_contribution a client counts "
            f"a string up to max_words_per_user={max_words_per_user} times; raise "
            "secure_sum_bitwidth or lower max_words_per_user."
        )
    for name, fn in (
        ("string_postprocessor", string_postprocessor),
        ("decode_iblt_fn", decode_iblt_fn),
    ):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {fn!r}.")
    sketch_options = {
        "capacity": capacity,
        "string_max_bytes": string_max_bytes,
        "repetitions": repetitions,
        "seed": seed,
    }
    decode_fn = decode_iblt_fn or _sketch.decode

    @ftf.computation(SequenceType(TensorType(np.str_, [None])))
    def client_sketch(dataset):
        if max_words_per_user is not None and multi_contribution:
            dataset = dataset.take(max_words_per_user // batch_size)
        words = all_elements(dataset, tf.string)
        words = tf.strings.substr(words, 0, string_max_bytes, unit="BYTE")
        distinct, _, counts = tf.unique_with_counts(words, out_idx=tf.int64)
        if not multi_contribution:
            if max_words_per_user is not None:
                kept = tf.minimum(tf.size(distinct), max_words_per_user)
                top = tf.math.top_k(counts, k=kept).indices
                distinct = tf.gather(distinct, top)
            counts = tf.ones_like(distinct, tf.int64)
        return _sketch.encode(distinct, counts, **sketch_options)

    @ftf.computation
    def one():
        return tf.constant(1, tf.int32)

    sketch_type, values_type = client_sketch.type_signature.result

    @ftf.computation(sketch_type, values_type, TensorType(np.int32))
    def decode(sketch, values, clients):
        strings, unique_counts, counts, not_decoded = decode_fn(
            iblt=sketch, iblt_values=values, **sketch_options
        )
        unique_counts = tf.cast(unique_counts, tf.int64)
        counts = tf.cast(tf.reshape(counts, [-1]), tf.int64)
        if k_anonymity > 1:
            kept = unique_counts >= k_anonymity
            strings = tf.boolean_mask(strings, kept)
            unique_counts = tf.boolean_mask(unique_counts, kept)
            counts = tf.boolean_mask(counts, kept)
        # Most frequent first; ties keep the decode order, which depends only on the sketch.
        order = tf.argsort(-counts, stable=True)
        if max_heavy_hitters is not None:
            order = order[:max_heavy_hitters]
        strings = tf.gather(strings, order)
        if string_postprocessor is not None:
            strings = string_postprocessor(strings)
        return ServerOutput(
            clients=clients,
            heavy_hitters=strings,
            heavy_hitters_unique_counts=tf.gather(unique_counts, order),
            heavy_hitters_counts=tf.gather(counts, order),
            num_not_decoded=tf.cast(not_decoded, tf.int64),
            round_timestamp=tf.cast(tf.timestamp(), tf.int64),
        )

    @fc.federated_computation(FederatedType(SequenceType(TensorType(np.str_, [None])), CLIENTS))
    def heavy_hitters(client_data):
        sketches = fc.federated_map(client_sketch, client_data)
        sketch, values = sketches[0], sketches[1]
        ones = fc.federated_eval(one, CLIENTS)
        if secure_sum_bitwidth is None:
            total_sketch = fc.federated_sum(sketch)
            total_values = fc.federated_sum(values)
            clients = fc.federated_sum(ones)
        else:
            bound = 2**secure_sum_bitwidth - 1
            total_sketch = fc.federated_secure_modular_sum(sketch, np.int64(_sketch.FIELD_SIZE))
            total_values = fc.federated_secure_sum(values, np.int64(bound))
            clients = fc.federated_secure_sum(ones, np.int32(min(bound, 2**31 - 1)))
        return fc.federated_map(decode, fc.federated_zip((total_sketch, total_values, clients)))

    return _BytesOut(heavy_hitters)


class _BytesOut:
    """The computation, called from Python: its heavy hitters come back as bytes (numpy object arrays of
    `bytes`, as TFF returns strings), cut where the sketch cut them, possibly inside a UTF-8 character.
    Everything else (its type signature, use inside other computations) is the computation's own."""

    def __init__(self, computation: Any):
        self._computation = computation
        functools.update_wrapper(self, computation, assigned=("__doc__",), updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self._computation(*args, **kwargs)
        if not isinstance(result, ServerOutput):  # traced inside another computation
            return result
        strings = np.asarray(result.heavy_hitters)
        as_bytes = np.empty(strings.shape, dtype=object)
        for index, string in np.ndenumerate(strings):
            as_bytes[index] = (
                string.encode("utf-8", "surrogateescape") if isinstance(string, str) else string
            )
        return result._replace(heavy_hitters=as_bytes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._computation, name)

    def __repr__(self) -> str:
        return repr(self._computation)
