"""Invertible Bloom lookup tables (IBLTs) of strings, in TensorFlow ops (usable inside computations).

A sketch is an int64 tensor of shape `[repetitions, table_size, num_chunks + 2]`. Each string is added to
one cell in every repetition (the cell chosen by a salted hash of the string): the cell's first
`num_chunks` columns sum the string's chunks (its bytes, three per chunk), the next counts the
strings added, the last sums a check hash of each. All three are kept modulo the prime `FIELD_SIZE`,
so sketches add (and can be summed securely, modulo that prime). A second, plain int64 tensor of shape
`[repetitions, table_size, 1]` sums a value per string (how often a client saw it).

Decoding peels: a cell whose count `k` is not zero and whose chunks, divided by `k`, spell a string
whose check hash times `k` is the cell's check is "pure" (holds one string); that string, with count `k`,
is removed from all its cells, which may make other cells pure. Strings that never become pure stay in the
table: the decode reports how many (`num_not_decoded`). With the table sized for `capacity` strings,
decoding succeeds with high probability when at most `capacity` distinct strings were added.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

FIELD_SIZE = 2**31 - 1
"""The prime modulus of the sketch's arithmetic."""

BYTES_PER_CHUNK = 3
"""Bytes of a string per chunk: 3 bytes (< 2**24) always fit below FIELD_SIZE."""

DEFAULT_REPETITIONS = 3
"""The default number of repetitions: each string is added to one cell in each of this many tables."""

# Space overhead per repetition count: the table's cells per expected string, for decoding to succeed
# with high probability (from the analysis of IBLT peeling thresholds).
_OVERHEAD = {3: 1.222, 4: 1.295, 5: 1.425, 6: 1.570}


def table_size(capacity: int, repetitions: int = DEFAULT_REPETITIONS) -> int:
    """Cells per repetition for `capacity` distinct strings."""
    check_parameters(capacity, 1, repetitions)
    space = _OVERHEAD.get(repetitions, repetitions / 4) * capacity
    return int(1.1 * space / repetitions + 10)


def num_chunks(string_max_bytes: int) -> int:
    return math.ceil(string_max_bytes / BYTES_PER_CHUNK)


def check_parameters(capacity: int, string_max_bytes: int, repetitions: int) -> None:
    for name, value, minimum in (
        ("capacity", capacity, 1),
        ("string_max_bytes", string_max_bytes, 1),
        ("repetitions", repetitions, 3),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def _check_shape(what: str, tensor: tf.Tensor, expected: list[int | None]) -> None:
    """A ValueError when `tensor`'s static shape is known not to be `expected` (None: any size)."""
    shape = tensor.shape
    if shape.rank is not None and (
        shape.rank != len(expected)
        or any(d is not None and e is not None and d != e for d, e in zip(shape, expected))
    ):
        wanted = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{what} must have shape {wanted}, got {shape.as_list()}.")


# -- strings and chunks -------------------------------------------------------------------------------

_BYTE_STRINGS = [b""] + [bytes([b]) for b in range(1, 256)]  # a zero byte spells nothing


def to_chunks(strings: tf.Tensor, string_max_bytes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The strings (rank 1) cut to `string_max_bytes` bytes, with zero bytes dropped, and their chunks:
    `[n, num_chunks]` int64, three bytes each, the first byte lowest."""
    chunks_per_string = num_chunks(string_max_bytes)
    width = chunks_per_string * BYTES_PER_CHUNK
    cut = tf.strings.substr(strings, 0, string_max_bytes, unit="BYTE")
    raw = tf.io.decode_raw(cut, tf.uint8, fixed_length=width)  # zero-padded
    trimmed = from_bytes(raw)
    grouped = tf.reshape(tf.cast(raw, tf.int64), [-1, chunks_per_string, BYTES_PER_CHUNK])
    chunks = grouped[..., 0] + grouped[..., 1] * 256 + grouped[..., 2] * 65536
    return trimmed, chunks


def from_bytes(raw: tf.Tensor) -> tf.Tensor:
    """Strings from rows of bytes (`[n, width]`, any integer dtype), zero bytes dropped."""
    table = tf.constant(_BYTE_STRINGS)
    return tf.strings.reduce_join(tf.gather(table, tf.cast(raw, tf.int32)), axis=-1)


def from_chunks(chunks: tf.Tensor) -> tf.Tensor:
    """Strings from chunks (`[..., num_chunks]` int64, each below 2**24)."""
    shifts = tf.constant([0, 8, 16], tf.int64)
    raw = tf.bitwise.bitwise_and(tf.bitwise.right_shift(chunks[..., None], shifts), 255)
    shape = tf.shape(chunks)
    flat = tf.reshape(raw, [-1, shape[-1] * BYTES_PER_CHUNK])
    return tf.reshape(from_bytes(flat), shape[:-1])


# -- hashes -------------------------------------------------------------------------------------------


def cell_indices(strings: tf.Tensor, size: int, repetitions: int, seed: int) -> tf.Tensor:
    """`[repetitions, n]` int64: each string's cell in each repetition."""
    return tf.stack(
        [
            tf.strings.to_hash_bucket_fast(tf.strings.join([f"{seed + r};", strings]), size)
            for r in range(repetitions)
        ]
    )


def check_hash(strings: tf.Tensor, seed: int) -> tf.Tensor:
    return tf.strings.to_hash_bucket_fast(
        tf.strings.join([f"hash_check_{seed}", strings]), FIELD_SIZE
    )


def _mulmod(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.math.floormod(a * b, FIELD_SIZE)  # both below 2**31: the product fits in int64


def _inverse(x: tf.Tensor) -> tf.Tensor:
    """x ** (FIELD_SIZE - 2) mod FIELD_SIZE: the inverse of x (not 0) in the field."""
    result = tf.ones_like(x)
    base = tf.math.floormod(x, FIELD_SIZE)
    exponent = FIELD_SIZE - 2
    while exponent:
        if exponent & 1:
            result = _mulmod(result, base)
        base = _mulmod(base, base)
        exponent >>= 1
    return result


# -- encoding -----------------------------------------------------------------------------------------


def encode(
    strings: tf.Tensor,
    values: tf.Tensor,
    *,
    capacity: int,
    string_max_bytes: int,
    repetitions: int = DEFAULT_REPETITIONS,
    seed: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The sketch of distinct `strings` (rank 1) with int64 `values` (rank 1, one per string): each string
    is added once to the sketch's count, and its value to the value table. Returns (sketch, value table)."""
    check_parameters(capacity, string_max_bytes, repetitions)
    size = table_size(capacity, repetitions)
    strings = tf.convert_to_tensor(strings, tf.string)
    values = tf.cast(values, tf.int64)
    _check_shape("encode: strings", strings, [None])
    _check_shape("encode: values (one per string)", values, [strings.shape[0]])
    ones = tf.ones_like(values)
    cells, updates, value_updates = _contributions(
        strings, ones, values, string_max_bytes, size, repetitions, seed
    )
    width = num_chunks(string_max_bytes) + 2
    sketch = tf.scatter_nd(cells, updates, [repetitions, size, width])
    value_table = tf.scatter_nd(cells, value_updates, [repetitions, size, 1])
    return tf.math.floormod(sketch, FIELD_SIZE), value_table


def _contributions(
    strings: tf.Tensor,
    counts: tf.Tensor,
    values: tf.Tensor,
    string_max_bytes: int,
    size: int,
    repetitions: int,
    seed: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Where each string goes in the table and what it adds there, `counts` times: the cells
    (`[repetitions * n, 2]`, repetition-major), the sketch's rows (chunks, count, check; modulo the
    field) and the value table's rows."""
    trimmed, chunks = to_chunks(strings, string_max_bytes)
    n = tf.shape(strings, out_type=tf.int64)[0]
    indices = cell_indices(trimmed, size, repetitions, seed)  # [R, n]
    rows = tf.repeat(tf.range(repetitions, dtype=tf.int64)[:, None], n, axis=1)
    cells = tf.reshape(tf.stack([rows, indices], axis=-1), [-1, 2])
    entries = tf.concat(
        [
            _mulmod(chunks, counts[:, None]),
            counts[:, None],
            _mulmod(check_hash(trimmed, seed), counts)[:, None],
        ],
        axis=1,
    )
    return cells, tf.tile(entries, [repetitions, 1]), tf.tile(values[:, None], [repetitions, 1])


# -- decoding -----------------------------------------------------------------------------------------


def decode(
    iblt: tf.Tensor,
    iblt_values: tf.Tensor,
    *,
    capacity: int,
    string_max_bytes: int,
    repetitions: int = DEFAULT_REPETITIONS,
    seed: int = 0,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Peels a (summed) sketch `iblt` with its value table `iblt_values` (TFF's names): the strings it
    holds, how many times each was added (its unique count), its summed value, and how many additions
    could not be decoded (the count left in the table, per repetition). Strings come out in decode order.
    """
    check_parameters(capacity, string_max_bytes, repetitions)
    size = table_size(capacity, repetitions)
    chunks_per_string = num_chunks(string_max_bytes)
    sketch = tf.math.floormod(tf.cast(iblt, tf.int64), FIELD_SIZE)
    value_table = tf.cast(iblt_values, tf.int64)
    # The sketch's shape follows from the parameters: a sketch made with others cannot be decoded.
    _check_shape(
        f"decode: iblt (capacity={capacity}, string_max_bytes={string_max_bytes}, "
        f"repetitions={repetitions})",
        sketch,
        [repetitions, size, chunks_per_string + 2],
    )
    _check_shape("decode: iblt_values", value_table, [repetitions, size, 1])
    count_column = chunks_per_string

    def pure_cells(table: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        flat = tf.reshape(table, [-1, chunks_per_string + 2])
        count = flat[:, count_column]
        inverse = _inverse(tf.where(count == 0, tf.ones_like(count), count))
        chunks = _mulmod(flat[:, :chunks_per_string], inverse[:, None])
        valid = tf.reduce_all(chunks < 2**24, axis=1)
        strings = from_chunks(tf.where(valid[:, None], chunks, tf.zeros_like(chunks)))
        expected = _mulmod(count, check_hash(strings, seed))
        pure = (count != 0) & valid & (strings != "") & (expected == flat[:, count_column + 1])
        return pure, strings, count

    def condition(table, values, out_strings, out_counts, out_values):
        pure, _, _ = pure_cells(table)
        return tf.reduce_any(pure)

    def peel(table, values, out_strings, out_counts, out_values):
        pure, strings, counts = pure_cells(table)
        where = tf.where(pure)[:, 0]
        found, position = tf.unique(tf.gather(strings, where))
        first = tf.math.unsorted_segment_min(where, position, tf.size(found))
        found_counts = tf.gather(counts, first)
        found_values = tf.gather(tf.reshape(values, [-1]), first)
        cells, updates, value_updates = _contributions(
            found, found_counts, found_values, string_max_bytes, size, repetitions, seed
        )
        table = tf.math.floormod(tf.tensor_scatter_nd_sub(table, cells, updates), FIELD_SIZE)
        values = tf.tensor_scatter_nd_sub(values, cells, value_updates)
        return (
            table,
            values,
            tf.concat([out_strings, found], 0),
            tf.concat([out_counts, found_counts], 0),
            tf.concat([out_values, found_values], 0),
        )

    empty_strings = tf.constant([], tf.string)
    empty = tf.constant([], tf.int64)
    table, _, strings, counts, values = tf.while_loop(
        condition,
        peel,
        (sketch, value_table, empty_strings, empty, empty),
        shape_invariants=(
            sketch.shape,
            value_table.shape,
            tf.TensorShape([None]),
            tf.TensorShape([None]),
            tf.TensorShape([None]),
        ),
        maximum_iterations=repetitions * size,
    )
    not_decoded = tf.reduce_sum(table[:, :, count_column]) // repetitions
    return strings, counts, values, not_decoded
