"""Serialization of computations: a versioned, documented, platform-independent form (UTF-8 JSON).

The format is described field by field in docs/serialization.md. In short:

    {"format": "fed.computation", "version": 1, "name": "...", "types": [serialized type, ...],
    "blocks": [block, ...], "root": index}

Types are written once each with `fed_types.serialize_type` and referred to by index; blocks are
listed children first and refer to their children by index, so a block that occurs several times in
the tree is written once, and neither writing nor reading recurses over the depth of the tree.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fed_core import plugins
from fed_core.intrinsics import definitions
from fed_core.ir import building_blocks as bb
from fed_core.tracing.computation import Computation, PolymorphicComputation
from fed_types import (
    FunctionType,
    StructType,
    TensorType,
    Type,
    deserialize_type,
    placement_from_uri,
    serialize_type,
    to_dtype,
)

FORMAT = "fed.computation"
VERSION = 1

_TOP_LEVEL_KEYS = frozenset({"format", "version", "name", "types", "blocks", "root"})

# The fields of each kind of block, besides "kind".
_BLOCK_FIELDS: dict[str, frozenset[str]] = {
    "reference": frozenset({"name", "type"}),
    "selection": frozenset({"source", "index"}),
    "struct": frozenset({"elements", "type"}),
    "call": frozenset({"function", "argument"}),
    "lambda": frozenset({"parameter_name", "parameter_type", "result"}),
    "block": frozenset({"locals", "result"}),
    "intrinsic": frozenset({"uri", "type"}),
    "placement": frozenset({"uri"}),
    "literal": frozenset({"type", "value"}),
    "data": frozenset({"uri", "type"}),
    "compiled": frozenset({"frontend", "name", "payload", "type"}),
}


def serialize_computation(comp: Computation) -> bytes:
    """The computation as UTF-8 JSON bytes that `deserialize_computation` reads back, in any
    process."""
    if isinstance(comp, PolymorphicComputation):
        raise TypeError(
            f"Cannot serialize {comp.__name__}: it was defined without parameter types, so it has "
            "no type signature yet. Declare its types, or serialize "
            f"`{comp.__name__}.concrete(parameter_type)`."
        )
    if not isinstance(comp, Computation):
        raise TypeError(f"Expected a Computation to serialize, got a {type(comp).__qualname__}.")
    writer = _Writer()
    root = writer.add(comp.building_block)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "name": comp.name,
        "types": writer.types,
        "blocks": writer.blocks,
        "root": root,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Writer:
    """Collects the type table and the block list of one computation."""

    def __init__(self) -> None:
        self.types: list[dict[str, Any]] = []
        self.blocks: list[dict[str, Any]] = []
        # Types compare equal regardless of their Python containers, so equal types are told apart
        # by `is_identical_to` before sharing an entry.
        self._type_entries: dict[Type, list[tuple[Type, int]]] = {}
        # Blocks are immutable, so a block object met twice is written once (keyed by identity).
        self._block_index: dict[int, int] = {}

    def type_index(self, t: Type) -> int:
        candidates = self._type_entries.setdefault(t, [])
        for known, index in candidates:
            if known.is_identical_to(t):
                return index
        index = len(self.types)
        self.types.append(serialize_type(t))
        candidates.append((t, index))
        return index

    def add(self, root: bb.ComputationBuildingBlock) -> int:
        """Writes `root` and every block below it (children first); returns the index of `root`."""
        stack: list[tuple[bb.ComputationBuildingBlock, bool]] = [(root, False)]
        while stack:
            block, children_written = stack.pop()
            if id(block) in self._block_index:
                continue
            if children_written:
                self._block_index[id(block)] = len(self.blocks)
                self.blocks.append(self._encode(block))
                continue
            stack.append((block, True))
            stack.extend((child, False) for child in reversed(list(block.children())))
        return self._block_index[id(root)]

    def _encode(self, block: bb.ComputationBuildingBlock) -> dict[str, Any]:
        index = self._block_index
        if isinstance(block, bb.Reference):
            return {
                "kind": "reference",
                "name": block.name,
                "type": self.type_index(block.type_signature),
            }
        if isinstance(block, bb.Selection):
            return {"kind": "selection", "source": index[id(block.source)], "index": block.index}
        if isinstance(block, bb.Struct):
            return {
                "kind": "struct",
                "elements": [
                    {"name": name, "value": index[id(value)]} for name, value in block.elements
                ],
                "type": self.type_index(block.type_signature),
            }
        if isinstance(block, bb.Call):
            argument = None if block.argument is None else index[id(block.argument)]
            return {"kind": "call", "function": index[id(block.function)], "argument": argument}
        if isinstance(block, bb.Lambda):
            parameter_type = (
                None if block.parameter_type is None else self.type_index(block.parameter_type)
            )
            return {
                "kind": "lambda",
                "parameter_name": block.parameter_name,
                "parameter_type": parameter_type,
                "result": index[id(block.result)],
            }
        if isinstance(block, bb.Block):
            return {
                "kind": "block",
                "locals": [
                    {"name": name, "value": index[id(value)]} for name, value in block.locals
                ],
                "result": index[id(block.result)],
            }
        if isinstance(block, bb.Intrinsic):
            return {
                "kind": "intrinsic",
                "uri": block.uri,
                "type": self.type_index(block.type_signature),
            }
        if isinstance(block, bb.Placement):
            return {"kind": "placement", "uri": block.placement.uri}
        if isinstance(block, bb.Literal):
            return {
                "kind": "literal",
                "type": self.type_index(block.type_signature),
                "value": _encode_array(block.value),
            }
        if isinstance(block, bb.Data):
            return {"kind": "data", "uri": block.uri, "type": self.type_index(block.type_signature)}
        if isinstance(block, bb.CompiledComputation):
            return {
                "kind": "compiled",
                "frontend": block.frontend,
                "name": block.name,
                "payload": base64.b64encode(block.payload).decode("ascii"),
                "type": self.type_index(block.type_signature),
            }
        raise TypeError(
            f"Cannot serialize a building block of unknown kind {type(block).__qualname__}."
        )


def _encode_array(value: Any) -> dict[str, Any]:
    array = np.asarray(value)
    shape = list(array.shape)
    if array.dtype.kind in "US" or (
        array.dtype.kind == "O" and all(isinstance(x, (str, bytes)) for x in array.flat)
    ):
        strings = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.flat]
        return {"dtype": "str", "shape": shape, "strings": strings}
    try:
        dtype = to_dtype(array.dtype.newbyteorder("="))
    except TypeError:
        raise TypeError(
            f"Cannot serialize the literal {value!r}: expected a numeric, bool or str array, got "
            f"one of dtype {array.dtype}."
        ) from None
    little_endian = array.astype(dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": str(TensorType(dtype)),
        "shape": shape,
        "data": base64.b64encode(little_endian.tobytes()).decode("ascii"),
    }


def deserialize_computation(data: bytes) -> Computation:
    """Reads a computation written by `serialize_computation`; blocks are rebuilt through their
    constructors, so their types are checked again.

    Raises ValueError naming the field at fault for malformed input or an unknown format, version or
    kind.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"Expected the bytes of a serialized computation, got a {type(data).__qualname__}."
        )
    try:
        document = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Expected a serialized computation (UTF-8 JSON), but the bytes do not parse: {error}."
        ) from None
    except RecursionError:
        # Only the type entries nest, and `fed_types.MAX_NESTING` bounds them far below this.
        raise ValueError(
            "Malformed serialized computation: its JSON is nested too deeply to be read."
        ) from None
    if not isinstance(document, dict):
        raise ValueError(
            "Expected a serialized computation (a JSON object), got a JSON "
            f"{type(document).__name__}."
        )
    if document.get("format") != FORMAT:
        raise ValueError(
            f"Not a serialized computation: key 'format' is {document.get('format')!r}, expected "
            f"{FORMAT!r}."
        )
    version = document.get("version")
    # 1.0 and True equal 1 in Python, but are not the version this reader knows.
    if type(version) is not int or version != VERSION:
        raise ValueError(
            f"Unsupported serialized computation version {version!r}: this fed reads version "
            f"{VERSION}."
        )
    if set(document) != _TOP_LEVEL_KEYS:
        raise ValueError(
            f"A serialized computation has the keys {sorted(_TOP_LEVEL_KEYS)}, got "
            f"{sorted(document)}."
        )
    name = document["name"]
    if not isinstance(name, str):
        raise ValueError(
            f"Malformed serialized computation: key 'name' is {name!r}, expected a str."
        )
    reader = _Reader(document["types"], document["blocks"])
    root = document["root"]
    if not (type(root) is int and 0 <= root < len(reader.blocks)):
        raise ValueError(
            f"Malformed serialized computation: key 'root' is {root!r}, expected the index of one "
            f"of its {len(reader.blocks)} blocks."
        )
    block = reader.blocks[root]
    if not isinstance(block.type_signature, FunctionType):
        raise ValueError(
            f"Malformed serialized computation: its root block has type {block.type_signature}, "
            "expected a function type."
        )
    unbound = reader.free[root]
    if unbound:
        name_, (_, at) = next(iter(unbound.items()))
        raise _malformed(
            at,
            f"the reference {name_!r} is bound by no enclosing lambda or block (unbound names: "
            f"{sorted(unbound)})",
        )
    return Computation(block, name)


class _MalformedError(ValueError):
    """Malformed input, already described with its location."""


def _malformed(where: str, message: str) -> _MalformedError:
    return _MalformedError(f"Malformed serialized computation at {where}: {message}.")


class _Reader:
    """Reads the type table, then the blocks in order (each only refers to blocks before it)."""

    def __init__(self, types: Any, blocks: Any):
        if not isinstance(types, list):
            raise _malformed("types", f"expected a list of serialized types, got {types!r}")
        self.types: list[Type] = []
        for position, entry in enumerate(types):
            try:
                self.types.append(deserialize_type(entry))
            except ValueError as error:
                raise _malformed(f"types[{position}]", str(error).rstrip(".")) from None
        if not isinstance(blocks, list) or not blocks:
            raise _malformed("blocks", f"expected a non-empty list of blocks, got {blocks!r}")
        self.blocks: list[bb.ComputationBuildingBlock] = []
        # The names each block refers to and does not bind, with their types and where they are
        # referred to: the root must have none, and each binding must fit its references.
        self.free: list[_Free] = []
        self._free_by_block: dict[int, _Free] = {}
        for position, entry in enumerate(blocks):
            where = f"blocks[{position}]"
            block = self._read(entry, where)
            free = _free_references(block, self._free_by_block, where)
            self.blocks.append(block)
            self.free.append(free)
            self._free_by_block[id(block)] = free

    def _read(self, entry: Any, where: str) -> bb.ComputationBuildingBlock:
        if not isinstance(entry, dict):
            raise _malformed(where, f"expected a block (a JSON object), got {entry!r}")
        kind = entry.get("kind")
        if kind not in _BLOCK_FIELDS:
            raise _malformed(
                where, f"unknown block kind {kind!r}, expected one of {sorted(_BLOCK_FIELDS)}"
            )
        expected = _BLOCK_FIELDS[kind] | {"kind"}
        if set(entry) != expected:
            raise _malformed(
                where, f"a {kind} block has the keys {sorted(expected)}, got {sorted(entry)}"
            )
        try:
            return _READERS[kind](self, entry, where)
        except _MalformedError:
            raise
        except (TypeError, ValueError, IndexError, KeyError) as error:
            # The constructors' own checks (types of calls, selection indices) reject the input.
            message = str(error.args[0]) if isinstance(error, KeyError) else str(error)
            raise _malformed(where, f"the {kind} block is invalid: {message.rstrip('.')}") from None

    def block(self, entry: dict[str, Any], key: str, where: str) -> bb.ComputationBuildingBlock:
        """The earlier block that `entry[key]` refers to."""
        index = entry[key]
        if not (type(index) is int and 0 <= index < len(self.blocks)):
            raise _malformed(
                where,
                f"key {key!r} is {index!r}, expected the index of an earlier block (0 to "
                f"{len(self.blocks) - 1})",
            )
        return self.blocks[index]

    def type(self, entry: dict[str, Any], key: str, where: str) -> Type:
        index = entry[key]
        if not (type(index) is int and 0 <= index < len(self.types)):
            raise _malformed(
                where,
                f"key {key!r} is {index!r}, expected an index into 'types' (0 to "
                f"{len(self.types) - 1})",
            )
        return self.types[index]


_Free = dict[str, tuple[Type, str]]
_NO_FREE: _Free = {}


def _free_references(
    block: bb.ComputationBuildingBlock, free_by_block: dict[int, _Free], where: str
) -> _Free:
    """The names `block` refers to without binding them, each with its type and the place of a reference,
    from those of its children (read before it, so nothing here recurses over the depth of the tree).

    Refuses a reference whose type does not accept the value its lambda parameter or block local binds.
    """
    if isinstance(block, bb.Reference):
        return {block.name: (block.type_signature, where)}
    free: _Free
    if isinstance(block, bb.Lambda):
        free = free_by_block[id(block.result)]
        if block.parameter_name is None:
            return free
        assert block.parameter_type is not None
        return _bind(free, block.parameter_name, block.parameter_type, "the lambda's parameter")
    if isinstance(block, bb.Block):
        free = {}
        bound: dict[str, Type] = {}
        for name, value in [*block.locals, (None, block.result)]:
            for ref, (ref_type, at) in free_by_block[id(value)].items():
                if ref in bound:
                    _check_binding(ref, ref_type, at, bound[ref], "the block's local")
                else:
                    _merge(free, ref, ref_type, at)
            if name is not None:
                bound[name] = value.type_signature
        return free
    children = list(block.children())
    if not children:
        return _NO_FREE
    if len(children) == 1:
        return free_by_block[id(children[0])]
    free = {}
    for child in children:
        for ref, (ref_type, at) in free_by_block[id(child)].items():
            _merge(free, ref, ref_type, at)
    return free


def _bind(free: _Free, name: str, value_type: Type, binder: str) -> _Free:
    if name not in free:
        return free
    ref_type, at = free[name]
    _check_binding(name, ref_type, at, value_type, binder)
    return {ref: found for ref, found in free.items() if ref != name}


def _check_binding(name: str, ref_type: Type, at: str, value_type: Type, binder: str) -> None:
    if not ref_type.is_assignable_from(value_type):
        raise _malformed(
            at,
            f"the reference {name!r} has type {ref_type}, but {binder} {name!r} has type {value_type}",
        )


def _merge(free: _Free, name: str, ref_type: Type, at: str) -> None:
    known = free.get(name)
    if known is None:
        free[name] = (ref_type, at)
    elif known[0] != ref_type:
        raise _malformed(
            at, f"the reference {name!r} has type {ref_type}, but at {known[1]} it has {known[0]}"
        )


def _string(entry: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = entry[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _malformed(
            where, f"key {key!r} is {value!r}, expected a str{' or null' if optional else ''}"
        )
    return value


def _bindings(
    entry: dict[str, Any], key: str, name_key: str, where: str, optional_names: bool
) -> list[tuple[Any, dict[str, Any]]]:
    """The (name, entry) pairs of a struct's elements or a block's locals: each entry holds the
    element's block index under 'value'."""
    items = entry[key]
    if not isinstance(items, list):
        raise _malformed(where, f"key {key!r} is {items!r}, expected a list")
    pairs = []
    for position, item in enumerate(items):
        at = f"{where}.{key}[{position}]"
        if not isinstance(item, dict) or set(item) != {name_key, "value"}:
            raise _malformed(
                at, f"expected an object with the keys [{name_key!r}, 'value'], got {item!r}"
            )
        pairs.append((_string(item, name_key, at, optional=optional_names), item))
    return pairs


def _read_reference(
    reader: _Reader, entry: dict[str, Any], where: str
) -> bb.ComputationBuildingBlock:
    return bb.Reference(_string(entry, "name", where), reader.type(entry, "type", where))


def _read_selection(
    reader: _Reader, entry: dict[str, Any], where: str
) -> bb.ComputationBuildingBlock:
    index = entry["index"]
    if type(index) is not int:
        raise _malformed(where, f"key 'index' is {index!r}, expected an int")
    return bb.Selection(reader.block(entry, "source", where), index=index)


def _read_struct(reader: _Reader, entry: dict[str, Any], where: str) -> bb.ComputationBuildingBlock:
    recorded = reader.type(entry, "type", where)
    if not isinstance(recorded, StructType):
        raise _malformed(where, f"key 'type' names {recorded}, expected a struct type")
    elements = [
        (name, reader.block(item, "value", f"{where}.elements[{k}]"))
        for k, (name, item) in enumerate(
            _bindings(entry, "elements", "name", where, optional_names=True)
        )
    ]
    struct = bb.Struct(elements, recorded.python_container)
    if struct.type_signature != recorded:
        raise _malformed(
            where,
            f"the elements make a struct of type {struct.type_signature}, but 'type' is {recorded}",
        )
    return struct


def _read_call(reader: _Reader, entry: dict[str, Any], where: str) -> bb.ComputationBuildingBlock:
    function = reader.block(entry, "function", where)
    argument = None if entry["argument"] is None else reader.block(entry, "argument", where)
    return bb.Call(function, argument)


def _read_lambda(reader: _Reader, entry: dict[str, Any], where: str) -> bb.ComputationBuildingBlock:
    name = _string(entry, "parameter_name", where, optional=True)
    parameter_type = (
        None if entry["parameter_type"] is None else reader.type(entry, "parameter_type", where)
    )
    return bb.Lambda(name, parameter_type, reader.block(entry, "result", where))


def _read_block(reader: _Reader, entry: dict[str, Any], where: str) -> bb.ComputationBuildingBlock:
    local_symbols = [
        (name, reader.block(item, "value", f"{where}.locals[{k}]"))
        for k, (name, item) in enumerate(
            _bindings(entry, "locals", "name", where, optional_names=False)
        )
    ]
    return bb.Block(local_symbols, reader.block(entry, "result", where))


def _read_intrinsic(
    reader: _Reader, entry: dict[str, Any], where: str
) -> bb.ComputationBuildingBlock:
    uri = _string(entry, "uri", where)
    fn_type = reader.type(entry, "type", where)
    try:
        definition = definitions.lookup(uri)
    except LookupError as error:
        raise _malformed(where, str(error).rstrip(".")) from None
    if not isinstance(fn_type, FunctionType):
        raise _malformed(where, f"key 'type' names {fn_type}, expected a function type")
    try:
        definition.check(fn_type)
    except TypeError as error:
        raise _malformed(
            where, f"the intrinsic {uri} cannot have the type {fn_type}: {error}"
        ) from None
    return bb.Intrinsic(uri, fn_type)


def _read_placement(
    reader: _Reader, entry: dict[str, Any], where: str
) -> bb.ComputationBuildingBlock:
    return bb.Placement(placement_from_uri(_string(entry, "uri", where)))


def _read_literal(
    reader: _Reader, entry: dict[str, Any], where: str
) -> bb.ComputationBuildingBlock:
    return bb.Literal(
        _decode_array(entry["value"], f"{where}.value"), reader.type(entry, "type", where)
    )


def _read_data(reader: _Reader, entry: dict[str, Any], where: str) -> bb.ComputationBuildingBlock:
    return bb.Data(_string(entry, "uri", where), reader.type(entry, "type", where))


def _read_compiled(
    reader: _Reader, entry: dict[str, Any], where: str
) -> bb.ComputationBuildingBlock:
    try:
        payload = base64.b64decode(_string(entry, "payload", where), validate=True)
    except binascii.Error as error:
        raise _malformed(where, f"key 'payload' is not base64 ({error})") from None
    fn_type = reader.type(entry, "type", where)
    if not isinstance(fn_type, FunctionType):
        raise _malformed(where, f"key 'type' names {fn_type}, expected a function type")
    frontend, name = _string(entry, "frontend", where), _string(entry, "name", where)
    backends = plugins.get_registry("backends")
    if frontend not in backends:
        # Only the compiled forms of registered frontends are read: a payload of any other kind is refused
        # here, before anything could run it.
        raise _malformed(
            where,
            f"the compiled leaf {name!r} is of the frontend {frontend!r}, which no installed backend runs "
            f"(registered: {list(backends.names())})",
        )
    leaf = bb.CompiledComputation(frontend, payload, fn_type, name)
    try:
        backends.build(frontend).check(leaf)
    except (TypeError, ValueError) as error:
        raise _malformed(
            where, f"the compiled leaf {name!r} cannot run: {str(error).rstrip('.')}"
        ) from None
    return leaf


_READERS: dict[str, Callable[[_Reader, dict[str, Any], str], bb.ComputationBuildingBlock]] = {
    "reference": _read_reference,
    "selection": _read_selection,
    "struct": _read_struct,
    "call": _read_call,
    "lambda": _read_lambda,
    "block": _read_block,
    "intrinsic": _read_intrinsic,
    "placement": _read_placement,
    "literal": _read_literal,
    "data": _read_data,
    "compiled": _read_compiled,
}


def _decode_array(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, dict):
        raise _malformed(
            where,
            f"expected an object with 'dtype', 'shape' and 'data' or 'strings', got {value!r}",
        )
    dtype_name = value.get("dtype")
    payload_key = "strings" if dtype_name == "str" else "data"
    if set(value) != {"dtype", "shape", payload_key}:
        raise _malformed(
            where,
            f"a {dtype_name} value has the keys {sorted(['dtype', 'shape', payload_key])}, got "
            f"{sorted(value)}",
        )
    try:
        dtype = to_dtype(dtype_name)
    except TypeError:
        raise _malformed(
            where, f"key 'dtype' is {dtype_name!r}, expected a dtype name such as 'float32'"
        ) from None
    shape = value["shape"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _malformed(where, f"key 'shape' is {shape!r}, expected a list of non-negative ints")
    size = math.prod(shape)
    if payload_key == "strings":
        strings = value["strings"]
        if (
            not isinstance(strings, list)
            or len(strings) != size
            or not all(isinstance(s, str) for s in strings)
        ):
            raise _malformed(
                where,
                f"key 'strings' must be a list of {size} str for shape {shape}, got {strings!r}",
            )
        return np.array(strings, dtype=np.str_).reshape(shape)
    data = value["data"]
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
    except binascii.Error:
        raw = None
    if raw is None:
        raise _malformed(where, f"key 'data' is {data!r}, expected base64 text")
    little_endian = dtype.newbyteorder("<")
    if len(raw) != size * little_endian.itemsize:
        raise _malformed(
            where,
            f"key 'data' holds {len(raw)} bytes, but a {dtype_name} tensor of shape {shape} needs "
            f"{size * little_endian.itemsize}",
        )
    return np.frombuffer(raw, dtype=little_endian).astype(dtype).reshape(shape)
