"""Federated Stack Overflow: question and answer sentences grouped by user.

Elements are `OrderedDict(creation_date=string[], score=int64[], tags=string[], title=string[],
tokens=string[], type=string[])`: `tokens` is the lower-cased sentence, tokens separated by
spaces; `tags` are separated by '|'; `type` is 'question' or 'answer'.

Splits: train (before 2018-01-01 UTC, without held-out users: 342,477 users, 135,818,730
examples), heldout (users whose id is 0 mod 10, all dates: 38,758 users, 16,491,230 examples)
and test (from 2018-01-01 UTC, without held-out users: 204,088 users, 16,586,035 examples).
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import tensorflow as tf

from fed_datasets._client_data import ClientData, TestClientData
from fed_datasets._download import fetch_tar_bz2_member
from fed_datasets._sql import load_sql_splits

FILENAME = "stackoverflow.sqlite.lzma"
SPLITS = ("train", "heldout", "test")
WORD_COUNT_ARCHIVE = "stackoverflow.word_count.tar.bz2"
WORD_COUNT_SHA256 = "1dc00256d6e527c54b9756d968118378ae14e6692c0b3b6cad470cdd3f0c519c"
TAG_COUNT_ARCHIVE = "stackoverflow.tag_count.tar.bz2"
TAG_COUNT_SHA256 = "6fe281cec490d9384a290d560072438e7e2b377bbb823876ce7bd6f82696772d"

_FEATURES = {
    "creation_date": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "score": tf.io.FixedLenFeature(shape=(), dtype=tf.int64),
    "tags": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "title": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "tokens": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "type": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
}


def _parse(serialized: tf.Tensor) -> collections.OrderedDict[str, tf.Tensor]:
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return collections.OrderedDict((key, parsed[key]) for key in _FEATURES)


def load_data(
    cache_dir: str | os.PathLike[str] | None = None, *, base_url: str | None = None
) -> tuple[ClientData, ClientData, ClientData]:
    """Returns (train, heldout, test) federated Stack Overflow, downloading it on first use.

    The database is large (tens of GB decompressed). `cache_dir` defaults to
    `$FED_DATASETS_CACHE` or `~/.cache/fed/datasets`; `base_url` to `$FED_DATASETS_BASE_URL` or
    TensorFlow Federated's public bucket.
    """
    train, heldout, test = load_sql_splits(
        FILENAME, SPLITS, _parse, cache_dir=cache_dir, base_url=base_url
    )
    return train, heldout, test


def load_word_counts(
    cache_dir: str | os.PathLike[str] | None = None,
    vocab_size: int | None = None,
    *,
    base_url: str | None = None,
) -> collections.OrderedDict[str, int]:
    """Returns {token: number of train users who used it}, most frequent first.

    With `vocab_size`, only the `vocab_size` most frequent tokens.
    """
    if vocab_size is not None and (
        isinstance(vocab_size, bool | np.bool_)
        or not isinstance(vocab_size, int | np.integer)
        or vocab_size <= 0
    ):
        raise ValueError(f"vocab_size must be None or a positive int, got {vocab_size!r}")
    path = fetch_tar_bz2_member(
        WORD_COUNT_ARCHIVE,
        "stackoverflow.word_count",
        sha256=WORD_COUNT_SHA256,
        cache_dir=cache_dir,
        base_url=base_url,
    )
    counts: collections.OrderedDict[str, int] = collections.OrderedDict()
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if vocab_size is not None and len(counts) >= vocab_size:
                break
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(
                    f"{path}:{line_number}: expected 'token count', got {line.rstrip()!r}"
                )
            counts[fields[0]] = int(fields[1])
    return counts


def load_tag_counts(
    cache_dir: str | os.PathLike[str] | None = None, *, base_url: str | None = None
) -> collections.OrderedDict[str, int]:
    """Returns {tag: number of train users who used it}, most frequent first."""
    path = fetch_tar_bz2_member(
        TAG_COUNT_ARCHIVE,
        "stackoverflow.tag_count",
        sha256=TAG_COUNT_SHA256,
        cache_dir=cache_dir,
        base_url=base_url,
    )
    with open(path, encoding="utf-8") as f:
        counts = json.load(f)
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        raise ValueError(f"{path}: expected a JSON object of tag -> count")
    return collections.OrderedDict(sorted(counts.items(), key=lambda item: -item[1]))


_SYNTHETIC = {
    "synthetic_1": [
        (
            "2012-03-14 10:02:11 UTC",
            12,
            "python|numpy",
            "how to sum the rows of an array",
            "use np . sum with axis = 1 .",
            "answer",
        ),
        (
            "2012-03-14 09:55:40 UTC",
            7,
            "python|numpy",
            "how to sum the rows of an array",
            "i have a 2d array and want one total per row .",
            "question",
        ),
    ],
    "synthetic_2": [
        (
            "2016-11-02 18:21:09 UTC",
            -1,
            "git|branch",
            "undo the last commit",
            "git reset --soft head~1 keeps your changes staged .",
            "answer",
        ),
        (
            "2016-11-02 18:30:52 UTC",
            3,
            "git|branch",
            "undo the last commit",
            "thanks , that worked .",
            "answer",
        ),
        (
            "2017-05-20 07:45:13 UTC",
            0,
            "css|flexbox",
            "center a div",
            "how do i center a div horizontally and vertically ?",
            "question",
        ),
    ],
    "synthetic_3": [
        (
            "2010-07-01 12:00:00 UTC",
            25,
            "sql|join",
            "difference between inner and outer join",
            "an inner join keeps only matching rows .",
            "answer",
        ),
    ],
}


def get_synthetic() -> ClientData:
    """Three offline clients with a few posts each, in federated Stack Overflow's structure."""
    clients = {}
    for client_id, rows in _SYNTHETIC.items():
        columns = dict(zip(_FEATURES, zip(*rows, strict=True), strict=True))
        clients[client_id] = collections.OrderedDict(
            (key, np.array(values, np.int64) if key == "score" else [v.encode() for v in values])
            for key, values in columns.items()
        )
    return TestClientData(clients)
