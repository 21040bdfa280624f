"""Fixtures that build small files in the real formats of the published data sets."""

from __future__ import annotations

import lzma
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

# split -> client id -> that client's serialized tf.train.Example protos
Splits = Mapping[str, Mapping[str, Sequence[bytes]]]


def example_proto(**features: object) -> bytes:
    """A serialized tf.train.Example; bytes/str give bytes_list, floats float_list, ints int64."""
    feature_map = {}
    for name, value in features.items():
        values = np.asarray(value)
        if values.dtype.kind in "SUO":
            items = [v.encode() if isinstance(v, str) else v for v in values.ravel().tolist()]
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=items))
        elif values.dtype.kind == "f":
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=values.ravel()))
        else:
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=values.ravel()))
        feature_map[name] = feature
    return tf.train.Example(features=tf.train.Features(feature=feature_map)).SerializeToString()


def write_tff_database(path: Path, splits: Splits) -> Path:
    """Writes a SQLite database in TensorFlow Federated's published schema."""
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
        "serialized_example_proto BLOB NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
        "num_examples INTEGER NOT NULL)"
    )
    for split, clients in splits.items():
        for client_id, protos in clients.items():
            connection.executemany(
                "INSERT INTO examples VALUES (?, ?, ?)",
                [(split, client_id, proto) for proto in protos],
            )
            connection.execute(
                "INSERT INTO client_metadata VALUES (?, ?, ?)", (client_id, split, len(protos))
            )
    connection.commit()
    connection.close()
    return path


def lzma_compress(source: Path, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(lzma.compress(source.read_bytes()))
    return destination


@pytest.fixture(autouse=True)
def _no_download_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # A failed download is retried after a pause; tests fail at once unless they test retries.
    from fed_datasets import _download

    monkeypatch.setattr(_download, "RETRIES", 0)


@pytest.fixture
def make_database(tmp_path: Path) -> Callable[..., Path]:
    """make_database(splits, name='data.sqlite') -> path of a TFF-schema SQLite database."""

    def make(splits: Splits, name: str = "data.sqlite") -> Path:
        return write_tff_database(tmp_path / name, splits)

    return make


@pytest.fixture
def publish(tmp_path: Path) -> Callable[[Splits, str], str]:
    """publish(splits, filename) -> file:// base URL serving `filename`, an LZMA'd database."""
    server = tmp_path / "server"
    server.mkdir()

    def publish_database(splits: Splits, filename: str) -> str:
        plain = write_tff_database(tmp_path / filename.removesuffix(".lzma"), splits)
        lzma_compress(plain, server / filename)
        plain.unlink()
        return server.as_uri()

    return publish_database


@pytest.fixture
def proto() -> Callable[..., bytes]:
    """proto(**features) -> a serialized tf.train.Example (see example_proto)."""
    return example_proto


@pytest.fixture
def write_database() -> Callable[[Path, Splits], Path]:
    """write_database(path, splits) -> path, a TFF-schema SQLite database written there."""
    return write_tff_database
