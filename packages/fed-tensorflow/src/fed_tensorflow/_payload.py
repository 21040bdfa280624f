"""The payload of a TensorFlow computation's compiled leaf: a frozen graph and the names of its
inputs and outputs, and, for client work that reads its datasets only through `fold_dataset`, a second
graph: its vectorized form.

Layout: the magic bytes `fed.tensorflow\\n`; the length of the header, as 4 bytes (unsigned,
little-endian); the header, UTF-8 JSON; then serialized `GraphDef`s. Version 1 (no vectorized form):
the header is `{"version": 1, "inputs": [...], "outputs": [...]}` and one graph follows. `inputs` and
`outputs` are tensor names (`"x:0"`), one per leaf of the parameter and result types in order: a
tensor for a tensor, a dataset variant for a sequence (see `_datasets`). Version 2 adds
`"graph_bytes"` (the length of the first graph) and `"vectorized": {"inputs": [...], "outputs":
[...]}`, the tensor names of the second graph, which follows the first. The vectorized form takes,
for each parameter leaf in order: a tensor as it is (shared by all the clients); for a sequence, the
number of elements read, then for each leaf of the element structure (in `tf.nest` order) the
elements' shapes (`[count, rank]`, int64), then for each leaf the elements padded to the largest,
stacked over clients (`[clients, count, *largest]`). It returns each result leaf stacked over
clients. The graphs hold no variables and no Python code: they run in any process with TensorFlow.

Either version may add `"read_whole"`: per input of the first graph, null, or for a dataset that the
computation folds, the tensor names of optional inputs (placeholders with defaults) that give the
dataset already read whole, as the vectorized form takes a client's: the number of elements (-1,
the default, for not given), then per element leaf their shapes, then per leaf their padded values.
A reader that ignores them runs the graph as it is.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from google.protobuf.message import DecodeError

from fed_tensorflow._structure import leaf_types
from fed_tensorflow._type_conversions import tensor_spec
from fed_types import FunctionType, SequenceType, TensorType

MAGIC = b"fed.tensorflow\n"
VERSION = 1
VECTORIZED_VERSION = 2
_LENGTH = struct.Struct("<I")


@dataclasses.dataclass(frozen=True)
class GraphPayload:
    graph_def: tf.compat.v1.GraphDef
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    vectorized: GraphPayload | None = None
    # Per input: None, or the names of the optional inputs that give that dataset read whole.
    read_whole: tuple[tuple[str, ...] | None, ...] | None = None

    def encode(self) -> bytes:
        graph = self.graph_def.SerializeToString(deterministic=True)
        header: dict[str, Any] = {
            "version": VERSION,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }
        if self.read_whole is not None:
            header["read_whole"] = [None if r is None else list(r) for r in self.read_whole]
        if self.vectorized is not None:
            header["version"] = VECTORIZED_VERSION
            header["graph_bytes"] = len(graph)
            header["vectorized"] = {
                "inputs": list(self.vectorized.inputs),
                "outputs": list(self.vectorized.outputs),
            }
            graph += self.vectorized.graph_def.SerializeToString(deterministic=True)
        encoded = json.dumps(header, separators=(",", ":")).encode()
        return MAGIC + _LENGTH.pack(len(encoded)) + encoded + graph

    @classmethod
    def decode(cls, data: bytes) -> GraphPayload:
        """Reads a payload; ValueError, saying what is wrong, for anything else (a truncated one)."""
        if not data.startswith(MAGIC):
            raise ValueError(
                f"Not a fed TensorFlow payload: it starts with {data[: len(MAGIC)]!r}, not {MAGIC!r}."
            )
        start = len(MAGIC) + _LENGTH.size
        if len(data) < start:
            raise ValueError("The fed TensorFlow payload is cut short: it has no header.")
        (length,) = _LENGTH.unpack_from(data, len(MAGIC))
        if len(data) < start + length:
            raise ValueError(
                f"The fed TensorFlow payload is cut short: its header of {length} bytes ends "
                f"after {len(data) - start}."
            )
        try:
            header = json.loads(data[start : start + length])
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"The header of the fed TensorFlow payload is not JSON: {error}."
            ) from None
        version = header.get("version") if isinstance(header, dict) else None
        if type(version) is not int or version not in (VERSION, VECTORIZED_VERSION):
            raise ValueError(
                f"Unsupported fed TensorFlow payload version {version!r}: this fed-tensorflow "
                f"reads version {VERSION} (and {VECTORIZED_VERSION}, with a vectorized form)."
            )
        inputs, outputs = _names(header, "")
        read_whole = _read_whole_names(header, len(inputs))
        body = data[start + length :]
        if version == VERSION:
            return cls(_graph(body), inputs, outputs, read_whole=read_whole)
        size = header.get("graph_bytes")
        if type(size) is not int or not 0 <= size < len(body):
            raise ValueError(
                f"The header of the fed TensorFlow payload has graph_bytes {size!r}, expected the "
                f"length of its first graph (less than the {len(body)} bytes of both graphs): the "
                f"payload is corrupt or cut short."
            )
        vectorized = header.get("vectorized")
        if not isinstance(vectorized, dict):
            raise ValueError(
                f"The header of the fed TensorFlow payload has vectorized {vectorized!r}, expected "
                f"an object with the inputs and outputs of its vectorized form."
            )
        v_inputs, v_outputs = _names(vectorized, "vectorized ")
        return cls(
            _graph(body[:size]),
            inputs,
            outputs,
            cls(_graph(body[size:]), v_inputs, v_outputs),
            read_whole,
        )

    def check(self, fn_type: FunctionType) -> None:
        """Raises ValueError unless the graph takes and returns one tensor per leaf of `fn_type`, of the
        dtype and a shape compatible with the leaf's type. The graph is imported into a graph of its
        own to find its tensors' dtypes and shapes: nothing runs."""
        ends = {
            "inputs": (self.inputs, leaf_types(fn_type.parameter)),
            "outputs": (self.outputs, leaf_types(fn_type.result)),
        }
        for key, (names, leaves) in ends.items():
            if len(names) != len(leaves):
                raise ValueError(
                    f"The graph has {len(names)} {key}, but the type {fn_type} has {len(leaves)} "
                    f"leaves there."
                )
        graph = tf.Graph()
        with graph.as_default():
            try:
                tf.graph_util.import_graph_def(self.graph_def, name="")
            except (ValueError, TypeError, tf.errors.OpError) as error:
                raise ValueError(f"The graph does not import: {error}") from None
        for position, read_names in enumerate(self.read_whole or ()):
            for name in read_names or ():
                try:
                    graph.get_tensor_by_name(name)
                except (KeyError, ValueError):
                    raise ValueError(
                        f"The graph has no tensor {name!r} (read_whole of input {position})."
                    ) from None
        for key, (names, leaves) in ends.items():
            for position, (name, leaf) in enumerate(zip(names, leaves, strict=True)):
                try:
                    tensor = graph.get_tensor_by_name(name)
                except (KeyError, ValueError):
                    raise ValueError(
                        f"The graph has no tensor {name!r} ({key} {position})."
                    ) from None
                if isinstance(leaf, SequenceType):
                    dtype, shape = tf.variant, tf.TensorShape([])
                else:
                    spec = tensor_spec(leaf)
                    dtype, shape = spec.dtype, spec.shape
                if tensor.dtype != dtype or not tensor.shape.is_compatible_with(shape):
                    raise ValueError(
                        f"The graph's {key[:-1]} {position} ({name!r}) is {_describe(tensor)}, "
                        f"but the type {fn_type} says {leaf}."
                    )


def _names(header: dict[str, Any], what: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: list[tuple[str, ...]] = []
    for key in ("inputs", "outputs"):
        value = header.get(key)
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise ValueError(
                f"The header of the fed TensorFlow payload has {what}{key} {value!r}, expected a "
                f"list of tensor names."
            )
        names.append(tuple(value))
    return names[0], names[1]


def _read_whole_names(
    header: dict[str, Any], num_inputs: int
) -> tuple[tuple[str, ...] | None, ...] | None:
    value = header.get("read_whole")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != num_inputs
        or not all(
            r is None or (isinstance(r, list) and r and all(isinstance(n, str) for n in r))
            for r in value
        )
    ):
        raise ValueError(
            f"The header of the fed TensorFlow payload has read_whole {value!r:.200}, expected a "
            f"list of {num_inputs} entries (one per input), each null or a list of tensor names."
        )
    return tuple(None if r is None else tuple(r) for r in value)


def _graph(data: bytes) -> tf.compat.v1.GraphDef:
    try:
        return tf.compat.v1.GraphDef.FromString(data)
    except DecodeError as error:
        raise ValueError(
            f"A graph of the fed TensorFlow payload does not parse ({error}): the payload is "
            f"corrupt or cut short."
        ) from None


def _describe(tensor: tf.Tensor) -> str:
    if tensor.dtype == tf.variant:
        return "a variant tensor (a dataset)"
    try:
        return f"a {TensorType(tensor.dtype, tensor.shape)} tensor"
    except TypeError:  # a dtype fed has no type for
        return f"a {tensor.dtype.name} tensor"


def all_nodes(graph_def: Any) -> Iterator[Any]:
    """The nodes of a graph and of every function of its library."""
    return itertools.chain(
        graph_def.node, *(function.node_def for function in graph_def.library.function)
    )
