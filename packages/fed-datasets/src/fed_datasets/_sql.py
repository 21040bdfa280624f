"""`ClientData` in a SQLite database, in the schema of TensorFlow Federated's published data sets.

The schema: a table `examples(split_name TEXT, client_id TEXT, serialized_example_proto BLOB)`
with one serialized `tf.train.Example` per row, and a table
`client_metadata(client_id TEXT, split_name TEXT, num_examples INTEGER)` with one row per client
and split.

A `SqlClientData` reads its client ids and example counts when it is opened, and examples when a
dataset is iterated; the file must stay as it was in between. A change is detected through the
database header, which SQLite rewrites on every committed change to a database in its default
rollback-journal mode (as TensorFlow Federated's files and `save_to_sql_client_data`'s are).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from fed_datasets._client_data import (
    ClientData,
    ClientId,
    DatasetFn,
    check_bool,
    check_client_ids,
    is_python_id,
    python_client_id,
)
from fed_datasets._download import fetch_lzma_file
from fed_tensorflow import Cohort, DatasetSource

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "examples": ("split_name", "client_id", "serialized_example_proto"),
    "client_metadata": ("client_id", "split_name", "num_examples"),
}

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
"""The size of a SQLite database header; its file change counter moves with every committed change."""


class DatabaseFormatError(ValueError):
    """A file is not a SQLite database in the schema `SqlClientData` reads."""


class DatabaseChangedError(RuntimeError):
    """The database file of a `SqlClientData` changed after it was opened (its client ids and example
    counts were read then): open it again."""


class ElementSpecCompatibilityError(TypeError):
    """Datasets cannot be written to or read from a SQL database with the given element spec."""


def _read_only_uri(path: Path) -> str:
    # mode=ro: never create or change the user's file, whichever library opens it.
    return f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"


@contextlib.contextmanager
def _connect_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        yield connection
    finally:
        connection.close()


def check_database_format(database_filepath: str | os.PathLike[str]) -> None:
    """Checks that a file is a SQLite database with the tables and columns `SqlClientData` reads.

    Raises:
      FileNotFoundError: no file at `database_filepath`.
      DatabaseFormatError: the file is not SQLite, or a required table or column is missing.
    """
    path = Path(database_filepath)
    if not path.is_file():
        raise FileNotFoundError(f"no SQLite database at {str(path)!r}")
    with open(path, "rb") as f:
        header = f.read(len(_SQLITE_MAGIC))
    if header != _SQLITE_MAGIC:
        raise DatabaseFormatError(
            f"{str(path)!r} is not a SQLite database (its first bytes are {header[:16]!r})"
        )
    try:
        with _connect_read_only(path) as connection:
            tables = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            for table, columns in REQUIRED_COLUMNS.items():
                if table not in tables:
                    raise DatabaseFormatError(
                        f"database {str(path)!r} has no table {table!r}; expected tables "
                        f"{sorted(REQUIRED_COLUMNS)}, found {sorted(tables)}"
                    )
                found = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                missing = [c for c in columns if c not in found]
                if missing:
                    raise DatabaseFormatError(
                        f"table {table!r} of database {str(path)!r} has no column "
                        f"{', '.join(repr(c) for c in missing)}; expected columns "
                        f"{list(columns)}, found {sorted(found)}"
                    )
    except sqlite3.DatabaseError as e:
        raise DatabaseFormatError(f"cannot read SQLite database {str(path)!r}: {e}") from e


def _sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_identity(path: Path) -> tuple[bytes, tuple[int, int]]:
    """The database header and the file's (device, inode): both change when the file is changed or
    replaced."""
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        return f.read(_HEADER_BYTES), (stat.st_dev, stat.st_ino)


def _page_size(header: bytes) -> int:
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def _glob_escaped(path: str) -> str:
    """`path` as a pattern of `tf.io.matching_files` that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in path)


class SqlClientData(ClientData):
    """`ClientData` read from a SQLite database in TensorFlow Federated's schema.

    Each element is a scalar string, the serialized `tf.train.Example` of one example; parse it
    with `preprocess` (the canned data sets and `load_and_parse_sql_client_data` do). The file is
    opened read-only. With `split_name`, only that split's clients and examples are read.

    Client ids and example counts are read when the `SqlClientData` is opened. The file must not
    change afterwards: once it is removed, changed or replaced, `client_ids`, `num_examples` and
    `create_tf_dataset_for_client` raise `FileNotFoundError` or `DatabaseChangedError`, and a
    dataset iterated after that fails with `tf.errors.InvalidArgumentError` saying the same (a
    dataset is read lazily, when it is iterated).

    Raises:
      FileNotFoundError: no file at `database_filepath`.
      DatabaseFormatError: the file is not a SQLite database in the expected schema.
    """

    def __init__(self, database_filepath: str | os.PathLike[str], split_name: str | None = None):
        if split_name is not None and not isinstance(split_name, str):
            raise TypeError(f"split_name must be None or a str, got {type(split_name).__name__}")
        if not isinstance(database_filepath, str | os.PathLike):
            raise TypeError(
                f"database_filepath must be a str or a path, got {type(database_filepath).__name__}"
            )
        path = Path(database_filepath)
        check_database_format(path)
        self._path = path.resolve()
        self._split_name = split_name
        query = "SELECT client_id, SUM(num_examples) FROM client_metadata"
        params: tuple[str, ...] = ()
        if split_name is not None:
            query += " WHERE split_name = ?"
            params = (split_name,)
        self._identity = _file_identity(self._path)
        with _connect_read_only(self._path) as connection:
            rows = connection.execute(query + " GROUP BY client_id", params).fetchall()
        counts = {str(client_id): int(n or 0) for client_id, n in rows}
        if not counts:
            where = f" for split {split_name!r}" if split_name is not None else ""
            raise DatabaseFormatError(
                f"table 'client_metadata' of database {str(path)!r} lists no clients{where}"
            )
        self._check_unchanged()  # the ids and counts come from the file as it was when opened
        self._num_examples = counts
        self._client_ids = tuple(sorted(counts))

    def _check_unchanged(self) -> None:
        try:
            identity = _file_identity(self._path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the database file {str(self._path)!r} of this SqlClientData was removed after "
                "it was opened"
            ) from None
        if identity[1] != self._identity[1]:
            raise DatabaseChangedError(
                f"the database file {str(self._path)!r} was replaced after this SqlClientData "
                "opened it; open a new SqlClientData to read the new file"
            )
        if identity[0] != self._identity[0]:
            raise DatabaseChangedError(
                f"the database file {str(self._path)!r} changed after this SqlClientData opened it "
                "(its client ids and example counts were read then); open a new SqlClientData to "
                "read it as it is now"
            )

    @property
    def database_filepath(self) -> Path:
        """The path of the database file."""
        return self._path

    @property
    def split_name(self) -> str | None:
        """The split read, or None for all examples."""
        return self._split_name

    @property
    def client_ids(self) -> list[str]:
        self._check_unchanged()
        return list(self._client_ids)

    @property
    def element_type_structure(self) -> tf.TensorSpec:
        return tf.TensorSpec(shape=(), dtype=tf.string)

    def num_examples(self, client_id: str) -> int:
        """The number of examples of one client, as the `client_metadata` table records it."""
        client_id = self._check_known(client_id)
        self._check_unchanged()
        return self._num_examples[client_id]

    def _graph_source(self) -> DatasetSource:
        def inputs(client_id: str) -> list[Any]:
            self._check_unchanged()
            return [client_id]

        def cohort(client_ids: Sequence[str]) -> Cohort:
            self._check_unchanged()
            return Cohort([tf.constant(list(client_ids), tf.string)], [])

        def select(ids: Sequence[tf.Tensor], _: Sequence[tf.Tensor]) -> list[tf.Tensor]:
            return list(ids)

        return DatasetSource(
            [tf.TensorSpec([], tf.string)],
            inputs,
            self.serializable_dataset_fn,
            cohort=cohort,
            select=select,
            keep_read=True,  # the file must not change (each round checks that it has not)
        )

    @functools.cached_property
    def _factory(self) -> DatasetSource:
        # One call of a graph traced once: building the dataset op by op would trace its reading
        # function anew for every client (tens of milliseconds each).
        return self._graph_source()

    def _dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        return self._factory.dataset(client_id)

    def _query_suffix(self) -> str:
        if self._split_name is None:
            return ""
        return f" AND split_name = {_sql_quote(self._split_name)}"

    @property
    def serializable_dataset_fn(self) -> DatasetFn:
        uri = _read_only_uri(self._path)
        prefix = "SELECT serialized_example_proto FROM examples WHERE client_id = "
        suffix = self._query_suffix()
        path = str(self._path)
        header = self._identity[0]
        page_size = _page_size(header)
        removed = (
            f"SqlClientData: the database file {path!r} was removed after it was opened; open a "
            "new SqlClientData"
        )
        changed = (
            f"SqlClientData: the database file {path!r} changed after it was opened (its client "
            "ids and example counts were read then); open a new SqlClientData"
        )

        def read(query: tf.Tensor) -> tf.data.Dataset:
            # TensorFlow's SqlDataset crashes the process when it cannot open its file, and reads
            # whatever the file holds now: check, just before it opens, that it is the file opened.
            exists = tf.size(tf.io.matching_files(_glob_escaped(path))) > 0
            with tf.control_dependencies([tf.debugging.Assert(exists, [removed])]):
                # The first page, or b"" if the file is shorter (one element either way).
                first_page = tf.data.experimental.get_single_element(
                    tf.data.FixedLengthRecordDataset(path, page_size)
                    .take(1)
                    .concatenate(tf.data.Dataset.from_tensors(tf.constant(b"")))
                    .take(1)
                )
            same = tf.equal(tf.strings.substr(first_page, 0, _HEADER_BYTES), header)
            with tf.control_dependencies([tf.debugging.Assert(same, [changed])]):
                query = tf.identity(query)
            return tf.data.experimental.SqlDataset(
                driver_name="sqlite", data_source_name=uri, query=query, output_types=tf.string
            )

        def dataset_fn(client_id: ClientId) -> tf.data.Dataset:
            if is_python_id(client_id):
                query = tf.constant(prefix + _sql_quote(python_client_id(client_id)) + suffix)
            else:
                escaped = tf.strings.regex_replace(client_id, "'", "''")
                query = tf.strings.join([prefix, "'", escaped, "'", suffix])
            return tf.data.Dataset.from_tensors(query).flat_map(read)

        return dataset_fn


def _feature_kind(key: str, spec: Any) -> str:
    if not isinstance(spec, tf.TensorSpec):
        raise ElementSpecCompatibilityError(
            f"element_spec[{key!r}] must be a tf.TensorSpec, got {spec!r}; nested structures "
            "and ragged or sparse tensors cannot be stored as tf.train.Example features"
        )
    if spec.dtype == tf.string:
        return "bytes"
    if spec.dtype.is_floating:
        return "float"
    if spec.dtype.is_integer or spec.dtype.is_bool:
        return "int64"
    raise ElementSpecCompatibilityError(
        f"element_spec[{key!r}] has dtype {spec.dtype.name}; supported are string, floating, "
        "integer and bool"
    )


def _check_element_spec(element_spec: Any, what: str) -> dict[str, str]:
    if not isinstance(element_spec, Mapping):
        raise ElementSpecCompatibilityError(
            f"{what} must be a dict of str -> tf.TensorSpec, got {element_spec!r}"
        )
    kinds = {}
    for key, spec in element_spec.items():
        if not isinstance(key, str):
            raise ElementSpecCompatibilityError(f"{what} keys must be str, got {key!r}")
        kinds[key] = _feature_kind(key, spec)
    return kinds


def _serialize(element: Mapping[str, tf.Tensor], kinds: Mapping[str, str]) -> bytes:
    features = {}
    for key, kind in kinds.items():
        values = np.asarray(element[key].numpy()).ravel()
        if kind == "bytes":
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))
        elif kind == "float":
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64)))
        features[key] = feature
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def save_to_sql_client_data(
    client_ids: Iterable[str],
    dataset_fn: Callable[[str], tf.data.Dataset],
    database_filepath: str | os.PathLike[str],
    allow_overwrite: bool = False,
) -> None:
    """Writes a federated data set to a SQLite database that `SqlClientData` reads.

    Every client's dataset must have the same `element_spec`, a dict of str -> `tf.TensorSpec`
    (string, floating, integer or bool). Examples are stored as `tf.train.Example` protos in
    split 'N/A', as TensorFlow Federated does. The database is written to a temporary file
    beside `database_filepath` and moved into place at the end.

    Raises:
      FileExistsError: the file exists and `allow_overwrite` is False.
      ElementSpecCompatibilityError: an element spec is not a flat dict of supported tensors,
        or clients' element specs differ.
    """
    ids = check_client_ids(client_ids)
    if not callable(dataset_fn):
        raise TypeError(
            "dataset_fn must be a callable from client id to tf.data.Dataset, got "
            f"{type(dataset_fn).__name__}"
        )
    allow_overwrite = check_bool(allow_overwrite, "allow_overwrite")
    if not isinstance(database_filepath, str | os.PathLike):
        raise TypeError(
            f"database_filepath must be a str or a path, got {type(database_filepath).__name__}"
        )
    path = Path(database_filepath)
    if path.exists() and not allow_overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass allow_overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        connection = sqlite3.connect(tmp_name)
        try:
            _write_clients(connection, ids, dataset_fn)
            connection.commit()
        finally:
            connection.close()
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_name)
        raise


def _write_clients(
    connection: sqlite3.Connection,
    client_ids: tuple[str, ...],
    dataset_fn: Callable[[str], tf.data.Dataset],
) -> None:
    connection.execute(
        "CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
        "serialized_example_proto BLOB NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
        "num_examples INTEGER NOT NULL)"
    )
    # Reading one client is a lookup rather than a scan of every example.
    connection.execute("CREATE INDEX examples_by_client ON examples (client_id, split_name)")
    first_spec = None
    kinds: dict[str, str] = {}
    for client_id in client_ids:
        dataset = dataset_fn(client_id)
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(
                f"dataset_fn({client_id!r}) must return a tf.data.Dataset, got "
                f"{type(dataset).__name__}"
            )
        if first_spec is None:
            first_spec = dataset.element_spec
            kinds = _check_element_spec(first_spec, f"the element_spec of client {client_id!r}")
        elif dataset.element_spec != first_spec:
            raise ElementSpecCompatibilityError(
                f"client {client_id!r} has element_spec {dataset.element_spec}, but client "
                f"{client_ids[0]!r} has {first_spec}; all clients must share one"
            )
        rows = [("N/A", client_id, _serialize(element, kinds)) for element in dataset]
        connection.executemany(
            "INSERT INTO examples (split_name, client_id, serialized_example_proto) "
            "VALUES (?, ?, ?)",
            rows,
        )
        connection.execute(
            "INSERT INTO client_metadata (client_id, split_name, num_examples) VALUES (?, ?, ?)",
            (client_id, "N/A", len(rows)),
        )


def build_example_parser(
    element_spec: Mapping[str, tf.TensorSpec],
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Returns a function parsing one serialized `tf.train.Example` into `element_spec`.

    Shapes must be fully defined, except that the first dimension may be None (a variable
    number of values).
    """
    kinds = _check_element_spec(element_spec, "element_spec")
    features = {}
    for key, spec in element_spec.items():
        parse_dtype = {"bytes": tf.string, "float": tf.float32, "int64": tf.int64}[kinds[key]]
        shape = spec.shape
        if shape.rank is None or any(d is None for d in shape[1:]):
            raise ElementSpecCompatibilityError(
                f"element_spec[{key!r}] has shape {shape}; only the first dimension may be None"
            )
        if shape.rank > 0 and shape[0] is None:
            features[key] = tf.io.FixedLenSequenceFeature(
                shape=shape[1:], dtype=parse_dtype, allow_missing=True
            )
        else:
            features[key] = tf.io.FixedLenFeature(shape=shape, dtype=parse_dtype)

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_single_example(serialized, features)
        return {key: tf.cast(parsed[key], spec.dtype) for key, spec in element_spec.items()}

    return parse


_FEATURE_LISTS = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}


def _check_stored_features(
    client_data: SqlClientData, element_spec: Mapping[str, tf.TensorSpec]
) -> None:
    """Checks that the database's first example has the features `element_spec` parses, of the
    right kinds and sizes, so that a wrong spec is refused when loading rather than when a dataset
    is iterated."""
    kinds = _check_element_spec(element_spec, "element_spec")
    with _connect_read_only(client_data.database_filepath) as connection:
        row = connection.execute("SELECT serialized_example_proto FROM examples LIMIT 1").fetchone()
    if row is None:
        return
    features = tf.train.Example.FromString(row[0]).features.feature

    def describe(feature: tf.train.Feature) -> str:
        kind = feature.WhichOneof("kind")
        return f"{kind}[{len(getattr(feature, kind).value)}]" if kind else "empty"

    stored = {key: describe(feature) for key, feature in features.items()}
    for key, spec in element_spec.items():
        variable_length = bool(spec.shape.rank) and spec.shape[0] is None
        if key not in features:
            if variable_length:
                continue  # parsed as no values
            raise ElementSpecCompatibilityError(
                f"element_spec[{key!r}] names a feature the stored examples lack; they hold "
                f"{stored}"
            )
        feature = features[key]
        kind = feature.WhichOneof("kind")
        if kind is not None and kind != _FEATURE_LISTS[kinds[key]]:
            raise ElementSpecCompatibilityError(
                f"element_spec[{key!r}] is {spec.dtype.name}, parsed from a "
                f"{_FEATURE_LISTS[kinds[key]]} feature, but the stored examples hold {key!r} as "
                f"{stored[key]}"
            )
        count = len(getattr(feature, kind).value) if kind is not None else 0
        inner = int(np.prod(spec.shape[1:], dtype=np.int64)) if spec.shape.rank else 1
        if variable_length:
            fits = inner == 0 or count % inner == 0
        else:
            fits = count == int(np.prod(spec.shape, dtype=np.int64))
        if not fits:
            raise ElementSpecCompatibilityError(
                f"element_spec[{key!r}] has shape {spec.shape.as_list()}, but the first stored "
                f"example holds {count} values for it ({stored[key]})"
            )


def load_and_parse_sql_client_data(
    database_filepath: str | os.PathLike[str], element_spec: Mapping[str, tf.TensorSpec]
) -> ClientData:
    """Reads a database written by `save_to_sql_client_data`, parsing examples into `element_spec`.

    Raises:
      FileNotFoundError: no file at `database_filepath`.
      DatabaseFormatError: the file is not a SQLite database in the expected schema.
      ElementSpecCompatibilityError: `element_spec` is not a flat dict of supported tensors, or
        the stored examples do not have its features (checked on the first example).
    """
    parse = build_example_parser(element_spec)
    client_data = SqlClientData(database_filepath)
    _check_stored_features(client_data, element_spec)

    def parse_dataset(dataset: tf.data.Dataset) -> tf.data.Dataset:
        return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)

    return client_data.preprocess(parse_dataset)


def load_sql_splits(
    filename: str,
    split_names: Iterable[str],
    parse: Callable[[tf.Tensor], Any],
    *,
    cache_dir: str | os.PathLike[str] | None,
    base_url: str | None,
) -> tuple[ClientData, ...]:
    """Fetches a published `.sqlite.lzma` database and returns one parsed `ClientData` per split."""
    path = fetch_lzma_file(
        filename, cache_dir=cache_dir, base_url=base_url, validate=check_database_format
    )

    def parse_dataset(dataset: tf.data.Dataset) -> tf.data.Dataset:
        return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)

    return tuple(SqlClientData(path, split).preprocess(parse_dataset) for split in split_names)
