"""The payload of a TensorFlow computation's compiled leaf: a frozen graph and the names of its
inputs and outputs.

Layout, version 1: the magic bytes `fed.tensorflow\\n`; the length of the header, as 4 bytes
(unsigned, little-endian); the header, UTF-8 JSON
`{"version": 1, "inputs": [...], "outputs": [...]}`; then a serialized `GraphDef`. `inputs` and
`outputs` are tensor names (`"x:0"`), one per leaf of the parameter and result types in order: a
tensor for a tensor, a dataset variant for a sequence (see `_datasets`). The graph holds no
variables and no Python code: it runs in any process with TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import struct

import tensorflow as tf
from google.protobuf.message import DecodeError

from fed_tensorflow._structure import leaf_types
from fed_tensorflow._type_conversions import tensor_spec
from fed_types import FunctionType, SequenceType, TensorType

MAGIC = b"fed.tensorflow\n"
VERSION = 1
_LENGTH = struct.Struct("<I")


@dataclasses.dataclass(frozen=True)
class GraphPayload:
    graph_def: tf.compat.v1.GraphDef
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self) -> bytes:
        header = json.dumps(
            {"version": VERSION, "inputs": list(self.inputs), "outputs": list(self.outputs)},
            separators=(",", ":"),
        ).encode()
        return (
            MAGIC
            + _LENGTH.pack(len(header))
            + header
            + self.graph_def.SerializeToString(deterministic=True)
        )

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
        if type(version) is not int or version != VERSION:
            raise ValueError(
                f"Unsupported fed TensorFlow payload version {version!r}: this fed-tensorflow "
                f"reads version {VERSION}."
            )
        names = {key: header.get(key) for key in ("inputs", "outputs")}
        for key, value in names.items():
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                raise ValueError(
                    f"The header of the fed TensorFlow payload has {key} {value!r}, expected a "
                    f"list of tensor names."
                )
        try:
            graph_def = tf.compat.v1.GraphDef.FromString(data[start + length :])
        except DecodeError as error:
            raise ValueError(
                f"The graph of the fed TensorFlow payload does not parse ({error}): the payload "
                f"is corrupt or cut short."
            ) from None
        return cls(graph_def, tuple(names["inputs"]), tuple(names["outputs"]))

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


def _describe(tensor: tf.Tensor) -> str:
    if tensor.dtype == tf.variant:
        return "a variant tensor (a dataset)"
    try:
        return f"a {TensorType(tensor.dtype, tensor.shape)} tensor"
    except TypeError:  # a dtype fed has no type for
        return f"a {tensor.dtype.name} tensor"
