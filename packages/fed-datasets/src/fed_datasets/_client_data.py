"""`ClientData`: a federated data set for simulation, one `tf.data.Dataset` per client id."""

from __future__ import annotations

import abc
import collections
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import tensorflow as tf

from fed_tensorflow import Cohort, DatasetSource

ClientId: TypeAlias = str | tf.Tensor
DatasetFn: TypeAlias = Callable[[Any], tf.data.Dataset]
PreprocessFn: TypeAlias = Callable[[tf.data.Dataset], tf.data.Dataset]


def check_client_ids(client_ids: Iterable[str], what: str = "client_ids") -> tuple[str, ...]:
    """Returns `client_ids` as a tuple after checking they are unique, non-empty strings."""
    if isinstance(client_ids, str | bytes):
        raise TypeError(
            f"{what} must be an iterable of str, got a single {type(client_ids).__name__}"
        )
    ids = tuple(client_ids)
    if not ids:
        raise ValueError(f"{what} must hold at least one client id, got none")
    for client_id in ids:
        if not isinstance(client_id, str):
            raise TypeError(
                f"{what} must hold str client ids, got {client_id!r} of type "
                f"{type(client_id).__name__}"
            )
        if not client_id:
            raise ValueError(f"{what} must be non-empty strings, got ''")
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
        raise ValueError(f"{what} must be unique, got duplicates {duplicates[:5]}")
    return ids


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` (a Python or numpy integer, not a bool) as an int in `[minimum, maximum]`."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    assert minimum is not None or maximum is None, "a maximum goes with a minimum"
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is not None:
            expected = f"an int between {minimum} and {maximum}"
        else:
            words: dict[int | None, str] = {0: "a non-negative int", 1: "a positive int"}
            expected = words.get(minimum, f"an int of at least {minimum}")
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def check_positive_number(value: Any, name: str) -> float:
    """`value` (a Python or numpy real number, not a bool) as a float, finite and positive."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a finite positive number, got {value!r} of type {type(value).__name__}"
        )
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return number


def check_bool(value: Any, name: str) -> bool:
    """`value` (a Python or numpy bool) as a bool."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")
    return bool(value)


def check_seed(seed: int | None, what: str = "seed") -> int | None:
    """Returns `seed` after checking it is None or a non-negative int."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{what} must be None or a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{what} must be None or a non-negative int, got {seed!r}")
    return int(seed)


class _UnknownClientIdError(KeyError):
    def __str__(self) -> str:
        # KeyError's own str() is the repr of its message, quotes escaped.
        return str(self.args[0])


def _check_dataset(value: Any, producer: str) -> tf.data.Dataset:
    if not isinstance(value, tf.data.Dataset):
        raise TypeError(f"{producer} must return a tf.data.Dataset, got {type(value).__name__}")
    return value


def is_python_id(client_id: Any) -> bool:
    """Whether `client_id` can be read as a Python str now (a str or an eager tensor)."""
    return isinstance(client_id, str) or (
        isinstance(client_id, tf.Tensor) and not tf.is_symbolic_tensor(client_id)
    )


def python_client_id(client_id: Any) -> str:
    """Converts a str or an eager string tensor to str."""
    if isinstance(client_id, str):
        return client_id
    return client_id.numpy().decode("utf-8")


class ClientData(abc.ABC):
    """A federated data set for simulation: a list of client ids and one dataset per client.

    Client ids exist only in simulation, to choose whose data goes into a round; federated
    computations never see them.
    """

    @property
    @abc.abstractmethod
    def client_ids(self) -> list[str]:
        """The ids of the clients in this data set, as a new list."""

    @property
    @abc.abstractmethod
    def element_type_structure(self) -> Any:
        """The `tf.TensorSpec` structure of one element of any client's dataset."""

    @property
    @abc.abstractmethod
    def serializable_dataset_fn(self) -> DatasetFn:
        """A function from a client id (str or scalar string tensor) to that client's dataset.

        It is pure TensorFlow when given a tensor, so it can be traced inside `tf.function`
        (and `tf.data.Dataset.flat_map`). It does not check that the id belongs to this data set
        beyond what the graph can assert.
        """

    def _dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        """Builds the dataset of a known client id; subclasses override for a faster eager path."""
        return self.serializable_dataset_fn(client_id)

    def _graph_source(self) -> DatasetSource | None:
        """How a client's dataset is made in a graph from a few of its tensors, keyed by client id
        (None if it is not)."""
        return None

    @functools.cached_property
    def _client_id_set(self) -> frozenset[str]:
        return frozenset(self.client_ids)

    def _check_known(self, client_id: Any) -> str:
        if not isinstance(client_id, str):
            raise TypeError(
                f"client_id must be a str, got {client_id!r} of type {type(client_id).__name__}"
            )
        if client_id not in self._client_id_set:
            ids = self.client_ids
            examples = ", ".join(repr(i) for i in ids[:3])
            raise _UnknownClientIdError(
                f"unknown client id {client_id!r}: this {type(self).__name__} has {len(ids)} "
                f"client ids ({examples}{', ...' if len(ids) > 3 else ''})"
            )
        return client_id

    def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        """Returns the dataset of one client.

        Raises:
          KeyError: `client_id` is not one of `client_ids`.
        """
        return self._dataset_for_client(self._check_known(client_id))

    def datasets(
        self, limit_count: int | None = None, seed: int | None = None
    ) -> Iterator[tf.data.Dataset]:
        """Yields the clients' datasets in an order shuffled by `seed`, at most `limit_count`."""
        if limit_count is not None:
            limit_count = check_int(limit_count, "limit_count", minimum=0)
        ids = self.client_ids
        order = np.random.default_rng(check_seed(seed)).permutation(len(ids))
        if limit_count is not None:
            order = order[:limit_count]
        for i in order:
            yield self.create_tf_dataset_for_client(ids[i])

    def create_tf_dataset_from_all_clients(self, seed: int | None = None) -> tf.data.Dataset:
        """Returns one dataset with every client's examples, client after client.

        Clients come in an order shuffled by `seed`; examples within a client keep their order,
        so shuffle the result before centralized training. Datasets are built lazily, one
        client at a time.
        """
        ids = self.client_ids
        order = np.random.default_rng(check_seed(seed)).permutation(len(ids))
        shuffled = np.array([ids[i] for i in order], dtype=object)
        return tf.data.Dataset.from_tensor_slices(shuffled).flat_map(self.serializable_dataset_fn)

    def preprocess(self, preprocess_fn: PreprocessFn) -> ClientData:
        """Returns a `ClientData` whose datasets are `preprocess_fn(dataset)`.

        Lazy: nothing runs until a dataset is created. Calls compose, the earliest applied
        first. `preprocess_fn` must be traceable by TensorFlow: it is traced once and the trace
        reused for every client, so its Python side effects happen once, not per client.
        """
        if not callable(preprocess_fn):
            raise TypeError(
                f"preprocess_fn must be a callable from tf.data.Dataset to tf.data.Dataset, "
                f"got {type(preprocess_fn).__name__}"
            )
        return _PreprocessedClientData(self, (preprocess_fn,))

    @classmethod
    def from_clients_and_tf_fn(
        cls, client_ids: Iterable[str], serializable_dataset_fn: DatasetFn
    ) -> ClientData:
        """A `ClientData` over `client_ids` whose datasets are `serializable_dataset_fn(id)`.

        The function must accept a str and a scalar string tensor and be traceable by TensorFlow.
        """
        return _FunctionClientData(client_ids, serializable_dataset_fn)

    @classmethod
    def train_test_client_split(
        cls, client_data: ClientData, num_test_clients: int, seed: int | None = None
    ) -> tuple[ClientData, ClientData]:
        """Splits the clients of `client_data` into disjoint (train, test) `ClientData`.

        The `num_test_clients` test clients are drawn at random (reproducibly with `seed`) among
        clients with at least one example; clients with no data stay in train.

        Raises:
          ValueError: `num_test_clients` is not between 1 and the number of clients minus one, or
            too few clients have data.
        """
        if not isinstance(client_data, ClientData):
            raise TypeError(f"client_data must be a ClientData, got {type(client_data).__name__}")
        ids = client_data.client_ids
        if isinstance(num_test_clients, bool | np.bool_) or not isinstance(
            num_test_clients, numbers.Integral
        ):
            raise TypeError(
                f"num_test_clients must be an int, got {num_test_clients!r} of type "
                f"{type(num_test_clients).__name__}"
            )
        if not 0 < num_test_clients < len(ids):
            raise ValueError(
                f"num_test_clients must be an int between 1 and {len(ids) - 1} (the data has "
                f"{len(ids)} clients), got {num_test_clients!r}"
            )
        num_test_clients = int(num_test_clients)
        order = np.random.default_rng(check_seed(seed)).permutation(len(ids))
        test_ids: list[str] = []
        test_set: set[str] = set()
        for i in order:
            if len(test_ids) == num_test_clients:
                break
            dataset = client_data.create_tf_dataset_for_client(ids[i])
            if any(True for _ in dataset.take(1)):
                test_ids.append(ids[i])
                test_set.add(ids[i])
        if len(test_ids) < num_test_clients:
            raise ValueError(
                f"asked for {num_test_clients} test clients but only {len(test_ids)} clients "
                "have at least one example"
            )
        train_ids = [i for i in ids if i not in test_set]
        return _SubsetClientData(client_data, train_ids), _SubsetClientData(client_data, test_ids)

    @property
    def dataset_computation(self) -> Any:
        """A fed computation `(str -> T*)` from a client id to that client's dataset, so that data
        loading can run where the clients are: `federated_map(cd.dataset_computation, client_ids)`
        inside a federated computation gives each client its dataset. Built from
        `serializable_dataset_fn` with fed's TensorFlow frontend (once per ClientData)."""
        computation = self.__dict__.get("_dataset_computation")
        if computation is None:
            import fed_tensorflow
            from fed_types import TensorType

            computation = fed_tensorflow.computation(
                self.serializable_dataset_fn, TensorType(np.str_)
            )
            self.__dict__["_dataset_computation"] = computation
        return computation

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_clients={len(self.client_ids)})"


class _PreprocessedClientData(ClientData):
    """The clients of a base `ClientData` with preprocessing functions applied in order."""

    _base: ClientData
    _preprocess_fns: tuple[PreprocessFn, ...]

    def __init__(self, base: ClientData, preprocess_fns: tuple[PreprocessFn, ...]):
        if isinstance(base, _PreprocessedClientData):
            preprocess_fns = base._preprocess_fns + preprocess_fns
            base = base._base
        self._base = base
        self._preprocess_fns = preprocess_fns

    def _apply(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        for fn in self._preprocess_fns:
            dataset = _check_dataset(fn(dataset), f"preprocess_fn {fn!r}")
        return dataset

    @property
    def client_ids(self) -> list[str]:
        return self._base.client_ids

    @functools.cached_property
    def _client_id_set(self) -> frozenset[str]:
        return self._base._client_id_set

    @functools.cached_property
    def element_type_structure(self) -> Any:
        return self.create_tf_dataset_for_client(self.client_ids[0]).element_spec

    @property
    def serializable_dataset_fn(self) -> DatasetFn:
        base_fn = self._base.serializable_dataset_fn

        def dataset_fn(client_id: ClientId) -> tf.data.Dataset:
            return self._apply(base_fn(client_id))

        return dataset_fn

    @functools.cached_property
    def _traced_apply(self) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
        # Traced once per input element structure and reused for every client: tracing the
        # preprocessing anew for each client's dataset is slow and grows TensorFlow's function
        # library without bound over a long simulation.
        return tf.function(self._apply)

    @functools.cached_property
    def _factory(self) -> DatasetSource | None:
        source = self._base._graph_source()
        return None if source is None else source.preprocessed(self._apply)

    def _dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        factory = self._factory
        if factory is not None:
            try:
                return factory.dataset(client_id)
            except Exception:  # noqa: S110 (the preprocessing cannot be traced with its input: see below)
                # Not on its arrays in one graph: preprocess the dataset itself, which raises the
                # preprocessing function's own error if it has one.
                self.__dict__["_factory"] = None
        return self._traced_apply(self._base._dataset_for_client(client_id))


class _FunctionClientData(ClientData):
    """Clients given by a list of ids and a function from id to dataset."""

    def __init__(self, client_ids: Iterable[str], dataset_fn: DatasetFn):
        self._client_ids = check_client_ids(client_ids)
        if not callable(dataset_fn):
            raise TypeError(
                f"serializable_dataset_fn must be a callable from client id to tf.data.Dataset, "
                f"got {type(dataset_fn).__name__}"
            )
        self._dataset_fn = dataset_fn

    @property
    def client_ids(self) -> list[str]:
        return list(self._client_ids)

    @functools.cached_property
    def element_type_structure(self) -> Any:
        return self.create_tf_dataset_for_client(self._client_ids[0]).element_spec

    @property
    def serializable_dataset_fn(self) -> DatasetFn:
        def dataset_fn(client_id: ClientId) -> tf.data.Dataset:
            return _check_dataset(self._dataset_fn(client_id), "serializable_dataset_fn")

        return dataset_fn


class _SubsetClientData(ClientData):
    """Some of the clients of a base `ClientData`."""

    def __init__(self, base: ClientData, client_ids: Sequence[str]):
        self._base = base
        self._client_ids = tuple(client_ids)

    @property
    def client_ids(self) -> list[str]:
        return list(self._client_ids)

    @property
    def element_type_structure(self) -> Any:
        return self._base.element_type_structure

    @property
    def serializable_dataset_fn(self) -> DatasetFn:
        return self._base.serializable_dataset_fn

    def _dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        return self._base._dataset_for_client(client_id)

    def _graph_source(self) -> DatasetSource | None:
        return self._base._graph_source()


def _to_leaf(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, tf.Tensor):
        array = value.numpy()
    else:
        if value is None:
            raise TypeError(
                "examples must be arrays, lists or numbers (or dicts and tuples of them), got None"
            )
        as_objects = np.array(value, dtype=object)
        if as_objects.size and all(isinstance(x, str | bytes) for x in as_objects.flat):
            array = as_objects
        else:
            try:
                # Python lists and scalars convert as TensorFlow converts them (floats to float32).
                array = tf.constant(value).numpy()
            except (TypeError, ValueError) as error:
                text = repr(value)
                raise ValueError(
                    "examples must be arrays, or lists of numbers or of str of one shape (every "
                    f"example alike); cannot convert {text[:80]}{'...' if len(text) > 80 else ''}: "
                    f"{error}"
                ) from None
    if array.dtype.kind in "SUO":
        # Object arrays of bytes: numpy's fixed-width bytes would drop trailing NUL bytes.
        items = array.ravel().tolist()
        if not all(isinstance(x, str | bytes) for x in items):
            raise TypeError(
                f"an array of dtype {array.dtype} must hold only str or bytes, got "
                f"{sorted({type(x).__name__ for x in items})}"
            )
        array = np.array(
            [x.encode("utf-8") if isinstance(x, str) else x for x in items], dtype=object
        ).reshape(array.shape)
    return array


def normalize_examples(examples: Any) -> Any:
    """Turns dicts and tuples into the structure tf.data uses, with numpy arrays as leaves."""
    if isinstance(examples, Mapping):
        for key in examples:
            if not isinstance(key, str):
                raise TypeError(f"keys of an examples dict must be str, got {key!r}")
        items = [(key, normalize_examples(value)) for key, value in examples.items()]
        # An OrderedDict stays one: the container type is part of the element structure.
        if isinstance(examples, collections.OrderedDict):
            return collections.OrderedDict(items)
        return dict(items)
    if isinstance(examples, tuple):
        values = [normalize_examples(value) for value in examples]
        return type(examples)(*values) if hasattr(examples, "_fields") else tuple(values)
    return _to_leaf(examples)


def leaves_with_paths(structure: Any, path: str = "") -> list[tuple[str, np.ndarray]]:
    """The leaves in `tf.nest.flatten` order, each with a readable path such as `['pixels']`."""
    if isinstance(structure, dict):
        return [
            leaf
            for key in sorted(structure)
            for leaf in leaves_with_paths(structure[key], f"{path}[{key!r}]")
        ]
    if isinstance(structure, tuple):
        return [
            leaf
            for i, value in enumerate(structure)
            for leaf in leaves_with_paths(value, f"{path}[{i}]")
        ]
    return [(path, structure)]


def _tf_dtype(array: np.ndarray) -> tf.DType:
    return tf.string if array.dtype == object else tf.as_dtype(array.dtype)


# The alignment, in bytes, of the arrays that tensors share memory with: TensorFlow's CPU kernels
# need 64 (a tensor on a less aligned buffer aborts the process), and 128 leaves a margin.
_ALIGNMENT = 128


def _is_aligned(array: np.ndarray) -> bool:
    return array.flags.c_contiguous and array.ctypes.data % _ALIGNMENT == 0


def _aligned_concatenate(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """`np.concatenate(arrays)`, into a buffer that a tensor can share (numeric arrays only)."""
    if arrays[0].dtype.kind in "OSU":
        return np.concatenate(arrays)
    shape = (sum(len(a) for a in arrays), *arrays[0].shape[1:])
    dtype = arrays[0].dtype
    size = math.prod(shape) * dtype.itemsize
    buffer = np.empty(size + _ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % _ALIGNMENT
    out = buffer[start : start + size].view(dtype).reshape(shape)
    np.concatenate(arrays, out=out)
    return out


def _shared_tensor(array: np.ndarray) -> tf.Tensor | None:
    """A CPU tensor on `array`'s memory (no copy), or None where it cannot be one. The tensor keeps
    the memory alive; the array must not change after."""
    if array.dtype.kind in "OSU" or not _is_aligned(array):
        return None
    try:
        tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except (TypeError, ValueError, BufferError, tf.errors.OpError):
        return None  # a dtype, or strides, that DLPack or TensorFlow does not take
    return tensor if tensor.dtype == _tf_dtype(array) and tensor.shape == array.shape else None


class TestClientData(ClientData):
    """In-memory `ClientData` from numpy arrays: for tests, examples and small data sets.

    `tensor_slices_dict` maps each client id to that client's examples: a dict of arrays, a
    tuple of arrays, or one array (nesting allowed), where every array's first dimension indexes
    the examples, as for `tf.data.Dataset.from_tensor_slices`. Python lists convert as
    TensorFlow converts them (floats to float32, str to bytes). Every client must have the same
    structure, dtypes and per-example shapes; a client may have zero examples.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, tensor_slices_dict: Mapping[str, Any]):
        if not isinstance(tensor_slices_dict, Mapping):
            raise TypeError(
                "tensor_slices_dict must be a dict of client id -> examples, got "
                f"{type(tensor_slices_dict).__name__}"
            )
        self._client_ids = check_client_ids(tensor_slices_dict, "the keys of tensor_slices_dict")
        first_id = self._client_ids[0]

        def normalized(client_id: str) -> Any:
            try:
                return normalize_examples(tensor_slices_dict[client_id])
            except (TypeError, ValueError) as error:
                raise type(error)(f"client {client_id!r}: {error}") from None

        template = normalized(first_id)
        reference = leaves_with_paths(template)
        columns: list[list[np.ndarray]] = [[] for _ in reference]
        offsets = [0]
        for client_id in self._client_ids:
            structure = template if client_id == first_id else normalized(client_id)
            try:
                tf.nest.assert_same_structure(template, structure)
            except (TypeError, ValueError):
                raise TypeError(
                    f"client {client_id!r} has examples structured as "
                    f"{tf.nest.map_structure(lambda _: '*', structure)}, but client {first_id!r} "
                    f"has {tf.nest.map_structure(lambda _: '*', template)}"
                ) from None
            num_examples = None
            for column, (path, leaf), (_, expected) in zip(
                columns, leaves_with_paths(structure), reference, strict=True
            ):
                where = f"client {client_id!r} examples{path}"
                if leaf.ndim == 0:
                    raise ValueError(
                        f"{where} is a scalar; it needs a first dimension indexing the examples"
                    )
                if _tf_dtype(leaf) != _tf_dtype(expected) or leaf.shape[1:] != expected.shape[1:]:
                    raise TypeError(
                        f"{where} holds {_tf_dtype(leaf).name}{list(leaf.shape[1:])} per example, "
                        f"but client {first_id!r} holds "
                        f"{_tf_dtype(expected).name}{list(expected.shape[1:])}"
                    )
                if num_examples is None:
                    num_examples = leaf.shape[0]
                elif leaf.shape[0] != num_examples:
                    raise ValueError(
                        f"{where} has {leaf.shape[0]} examples but other arrays of that client "
                        f"have {num_examples}"
                    )
                column.append(leaf)
            offsets.append(offsets[-1] + (num_examples or 0))
        # One array per leaf for all clients; a client's examples are a view of a row range.
        self._columns = [_aligned_concatenate(column) for column in columns]
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._position = {client_id: i for i, client_id in enumerate(self._client_ids)}
        self._structure = tf.nest.map_structure(lambda _: None, template)
        self._element_spec = tf.data.Dataset.from_tensor_slices(self._rows(0, 0)).element_spec

    def _rows(self, start: int, end: int) -> Any:
        return tf.nest.pack_sequence_as(
            self._structure, [column[start:end] for column in self._columns]
        )

    @property
    def client_ids(self) -> list[str]:
        return list(self._client_ids)

    @property
    def element_type_structure(self) -> Any:
        return self._element_spec

    def num_examples(self, client_id: str) -> int:
        """The number of examples of one client."""
        i = self._position[self._check_known(client_id)]
        return int(self._offsets[i + 1] - self._offsets[i])

    def _client_arrays(self, client_id: str) -> list[np.ndarray]:
        i = self._position[client_id]
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        return [column[start:end] for column in self._columns]

    def _graph_source(self) -> DatasetSource:
        specs = [
            tf.TensorSpec((None, *column.shape[1:]), _tf_dtype(column)) for column in self._columns
        ]

        def build(*columns: tf.Tensor) -> tf.data.Dataset:
            return tf.data.Dataset.from_tensor_slices(
                tf.nest.pack_sequence_as(self._structure, list(columns))
            )

        def cohort(client_ids: Sequence[str]) -> Cohort:
            positions = np.fromiter(
                (self._position[c] for c in client_ids), np.int64, len(client_ids)
            )
            starts, ends = self._offsets[positions], self._offsets[positions + 1]
            return Cohort([tf.constant(starts), tf.constant(ends)], self._column_tensors)

        def select(bounds: Sequence[tf.Tensor], columns: Sequence[tf.Tensor]) -> list[tf.Tensor]:
            start, end = bounds
            return [column[start:end] for column in columns]

        return DatasetSource(
            specs, self._client_arrays, build, cohort=cohort, select=select, keep_read=True
        )

    @functools.cached_property
    def _column_tensors(self) -> list[tf.Tensor]:
        """The arrays of all clients' examples as tensors, for the backend to cut each client's from
        (see `fed_tensorflow.DatasetSource`). Numeric tensors share the arrays' memory (made read-only
        here), so that the examples are held once and no copy of them is made."""
        # Two threads may both convert (a race the cached property allows): the data is the same.
        tensors = []
        for k, column in enumerate(self._columns):
            if column.dtype.kind not in "OSU" and not _is_aligned(column):
                column = _aligned_concatenate([column])  # an unpickled array: copied once
            tensor = _shared_tensor(column)
            if tensor is None:
                with tf.device("/CPU:0"):  # the host's memory, where datasets are made
                    tensor = tf.convert_to_tensor(column, dtype=_tf_dtype(column))
            elif column.flags.writeable:
                column.flags.writeable = False
            self._columns[k] = column
            tensors.append(tensor)
        return tensors

    @functools.cached_property
    def _factory(self) -> DatasetSource:
        return self._graph_source()

    def __getstate__(self) -> dict[str, Any]:
        # The examples pickle once, as arrays; tensors and traced functions are made again.
        state = dict(self.__dict__)
        for made in ("_column_tensors", "_factory"):
            state.pop(made, None)
        return state

    def _dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        return self._factory.dataset(client_id)

    def create_tf_dataset_from_all_clients(self, seed: int | None = None) -> tf.data.Dataset:
        # Same order as the generic version, from one gather of the arrays rather than a graph
        # holding all of them as constants.
        order = np.random.default_rng(check_seed(seed)).permutation(len(self._client_ids))
        rows = np.concatenate(
            [np.arange(self._offsets[i], self._offsets[i + 1]) for i in order]
        ).astype(np.int64)
        return tf.data.Dataset.from_tensor_slices(
            tf.nest.pack_sequence_as(self._structure, [column[rows] for column in self._columns])
        )

    def _graph_dataset(self, client_id: tf.Tensor) -> tf.data.Dataset:
        # All data goes into the graph as constants: fine for the small data this class is for.
        ids = tf.constant(np.array(self._client_ids, dtype=object))
        matches = tf.equal(ids, client_id)
        check = tf.debugging.Assert(tf.reduce_any(matches), ["unknown client id:", client_id])
        with tf.control_dependencies([check]):
            i = tf.argmax(tf.cast(matches, tf.int32), output_type=tf.int64)
        offsets = tf.constant(self._offsets)
        start, end = offsets[i], offsets[i + 1]
        columns = [tf.constant(column)[start:end] for column in self._columns]
        return tf.data.Dataset.from_tensor_slices(
            tf.nest.pack_sequence_as(self._structure, columns)
        )

    @property
    def serializable_dataset_fn(self) -> DatasetFn:
        def dataset_fn(client_id: ClientId) -> tf.data.Dataset:
            if is_python_id(client_id):
                return self.create_tf_dataset_for_client(python_client_id(client_id))
            return self._graph_dataset(client_id)

        return dataset_fn
