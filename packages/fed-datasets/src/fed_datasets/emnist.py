"""Federated EMNIST: handwritten characters grouped by writer (LEAF's preprocessing of EMNIST).

Elements are `OrderedDict(label=int32[], pixels=float32[28, 28])`. Pixels are in [0, 1] with
1.0 the background and 0.0 the ink (the inverse of MNIST's usual convention). Labels 0-9 are
digits, 10-35 upper-case and 36-61 lower-case letters.

Sizes: with only_digits=True, 3,383 writers, 341,873 train and 40,832 test examples; with
only_digits=False, 3,400 writers, 671,585 train and 77,483 test examples. Each writer's examples
are split between train and test, so both hold the same client ids.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import tensorflow as tf

from fed_datasets._client_data import ClientData, TestClientData, check_bool
from fed_datasets._sql import load_sql_splits

FILENAME = "emnist_all.sqlite.lzma"
SPLITS = {True: ("digits_only_train", "digits_only_test"), False: ("all_train", "all_test")}

_FEATURES = {
    "pixels": tf.io.FixedLenFeature(shape=(28, 28), dtype=tf.float32),
    "label": tf.io.FixedLenFeature(shape=(), dtype=tf.int64),
}


def _parse(serialized: tf.Tensor) -> collections.OrderedDict[str, tf.Tensor]:
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return collections.OrderedDict(
        label=tf.cast(parsed["label"], tf.int32), pixels=parsed["pixels"]
    )


def load_data(
    only_digits: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
) -> tuple[ClientData, ClientData]:
    """Returns (train, test) federated EMNIST, downloading and caching it on first use.

    The database (`emnist_all.sqlite.lzma`, about 1 GB once decompressed) is cached in
    `cache_dir` (default `$FED_DATASETS_CACHE` or `~/.cache/fed/datasets`) and downloaded from
    `base_url` (default `$FED_DATASETS_BASE_URL` or TensorFlow Federated's public bucket).
    With `only_digits`, only the 10 digit classes; otherwise all 62 classes.
    """
    only_digits = check_bool(only_digits, "only_digits")
    train, test = load_sql_splits(
        FILENAME, SPLITS[only_digits], _parse, cache_dir=cache_dir, base_url=base_url
    )
    return train, test


def _synthetic_images(occurrence: int) -> tuple[np.ndarray, np.ndarray]:
    """One EMNIST-like image per digit, upscaled from the 8x8 handwritten digits shipped in fed-datasets."""
    from fed_datasets.digits import load_arrays

    pixels, labels = load_arrays()
    rows = [np.flatnonzero(labels == d)[occurrence] for d in range(10)]
    small = pixels[rows]
    large = np.kron(small, np.ones((1, 3, 3)))  # 8x8 -> 24x24
    framed = np.pad(large, ((0, 0), (2, 2), (2, 2)))  # -> 28x28
    return (1.0 - framed).astype(np.float32), np.arange(10, dtype=np.int32)


def get_synthetic() -> ClientData:
    """Two offline clients of 10 examples each, one per digit, in federated EMNIST's structure."""
    clients = {}
    for i, client_id in enumerate(("synthetic_1", "synthetic_2")):
        pixels, labels = _synthetic_images(i)
        clients[client_id] = collections.OrderedDict(label=labels, pixels=pixels)
    return TestClientData(clients)
