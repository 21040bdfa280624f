"""Serialization of types to JSON-compatible dicts, and back.

The form, version 1: `{"version": 1, "type": NODE}`, where NODE is one of

    {"kind": "tensor", "dtype": "float32", "shape": [10, null]}
    {"kind": "sequence", "element": NODE}
    {"kind": "struct", "elements": [{"name": "a" or null, "type": NODE}, ...],
     "container": "module:qualname"}
    {"kind": "function", "parameter": NODE or null, "result": NODE}
    {"kind": "abstract", "label": "T"}
    {"kind": "placement"}
    {"kind": "federated", "member": NODE, "placement": "clients" or "server",
     "all_equal": true or false}

A tensor's shape is [] for a scalar and null for an unknown rank; a dimension is an int or null.
A struct's `"container"` is present only when its Python container can be imported by that path
(builtins such as `builtins:dict`, `collections:OrderedDict`, and classes defined at the top level
of a module). A reader never imports anything: it looks the container up among the modules the process
has imported, reads the struct without container (names kept) when its module is not one of them, and
refuses a class that is not a container (a dict, list or tuple or a subclass, a named tuple, a dataclass
or an attrs class), since converting values to their container calls the class.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from typing import Any

import numpy as np

from fed_types._placements import placement_from_uri
from fed_types._types import (
    MAX_NESTING,
    UNKNOWN_RANK,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    dtype_name,
    is_dtype_name,
    to_dtype,
)

VERSION = 1

_NODE_KEYS = {
    "tensor": {"dtype", "shape"},
    "sequence": {"element"},
    "struct": {"elements"},
    "function": {"parameter", "result"},
    "abstract": {"label"},
    "placement": set(),
    "federated": {"member", "placement", "all_equal"},
}


def serialize_type(type_spec: Type) -> dict[str, Any]:
    """A JSON-compatible dict (only dicts, lists, str, int, bool and None) that `deserialize_type`
    reads back."""
    if not isinstance(type_spec, Type):
        raise TypeError(f"Expected a fed Type to serialize, got {type_spec!r}.")
    return {"version": VERSION, "type": _node(type_spec)}


def _node(t: Type) -> dict[str, Any]:
    if isinstance(t, TensorType):
        shape = None if t.rank is None else list(t.shape)  # type: ignore[arg-type]
        return {"kind": "tensor", "dtype": dtype_name(t.dtype), "shape": shape}
    if isinstance(t, SequenceType):
        return {"kind": "sequence", "element": _node(t.element)}
    if isinstance(t, StructType):
        node: dict[str, Any] = {
            "kind": "struct",
            "elements": [{"name": name, "type": _node(element)} for name, element in t.items()],
        }
        path = _container_path(t.python_container)
        if path is not None:
            node["container"] = path
        return node
    if isinstance(t, FunctionType):
        parameter = None if t.parameter is None else _node(t.parameter)
        return {"kind": "function", "parameter": parameter, "result": _node(t.result)}
    if isinstance(t, AbstractType):
        return {"kind": "abstract", "label": t.label}
    if isinstance(t, PlacementType):
        return {"kind": "placement"}
    if isinstance(t, FederatedType):
        return {
            "kind": "federated",
            "member": _node(t.member),
            "placement": t.placement.uri,
            "all_equal": t.all_equal,
        }
    raise TypeError(f"Cannot serialize {t!r}: unknown kind of type {type(t).__qualname__}.")


def _container_path(container: type | None) -> str | None:
    """`module:qualname` of `container` if importing that path gives it back, else None."""
    if container is None:
        return None
    path = f"{container.__module__}:{container.__qualname__}"
    try:
        return path if _import(path) is container else None
    except Exception:
        # Whatever the reason (a class defined in a function, say), a path that does not import is
        # not recorded.
        return None


def _import(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    result: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        result = getattr(result, part)
    return result


def deserialize_type(data: dict[str, Any]) -> Type:
    """Reads a type written by `serialize_type`.

    Raises ValueError naming the key and value at fault (and where in the type) for malformed input.
    """
    if not isinstance(data, dict):
        raise ValueError(f"Expected a serialized type (a dict), got {_short(data)}.")
    version = data.get("version")
    # 1.0 and True equal 1 in Python, but are not the version this reader knows.
    if type(version) is not int or version != VERSION:
        raise ValueError(
            f"Unsupported serialized type: key 'version' is {version!r}, expected {VERSION}."
        )
    if set(data) != {"version", "type"}:
        raise ValueError(
            f"Expected the keys ['type', 'version'] in a serialized type, got {sorted(data)}."
        )
    return _read(data["type"], "type", 0)


def _malformed(where: str, message: str) -> ValueError:
    if len(where) > 120:  # deep inside a type: its start and end say where
        where = f"{where[:50]}...{where[-60:]}"
    return ValueError(f"Malformed serialized type at {where}: {message}.")


def _read(node: Any, where: str, depth: int) -> Type:
    if depth == MAX_NESTING:
        raise _malformed(where, f"types nested more than {MAX_NESTING} deep are not supported")
    depth += 1
    if not isinstance(node, dict):
        raise _malformed(where, f"expected a dict, got {_short(node)}")
    kind = node.get("kind")
    if not isinstance(kind, str) or kind not in _NODE_KEYS:
        raise _malformed(
            where, f"key 'kind' is {_short(kind)}, expected one of {sorted(_NODE_KEYS)}"
        )
    required = _NODE_KEYS[kind] | {"kind"}
    allowed = required | ({"container"} if kind == "struct" else set())
    if not required <= set(node) <= allowed:
        raise _malformed(
            where, f"a {kind} node has keys {sorted(node)}, expected {sorted(required)}"
        )
    if kind == "tensor":
        dtype = _read_dtype(node["dtype"], where)
        return _construct(where, TensorType, dtype, _read_shape(node["shape"], where))
    if kind == "sequence":
        return _construct(where, SequenceType, _read(node["element"], f"{where}.element", depth))
    if kind == "struct":
        return _read_struct(node, where, depth)
    if kind == "function":
        parameter = node["parameter"]
        return FunctionType(
            None if parameter is None else _read(parameter, f"{where}.parameter", depth),
            _read(node["result"], f"{where}.result", depth),
        )
    if kind == "abstract":
        return _construct(where, AbstractType, node["label"])
    if kind == "placement":
        return PlacementType()
    return _read_federated(node, where, depth)


def _short(value: Any) -> str:
    """The repr of `value`, cut short: malformed input can be large."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _construct(where: str, constructor: type[Type], *args: Any) -> Type:
    """Calls a type constructor, reporting what it refuses as malformed input at `where`."""
    try:
        return constructor(*args)
    except (TypeError, ValueError) as error:
        raise _malformed(where, str(error).rstrip(".")) from None


def _read_dtype(name: Any, where: str) -> np.dtype:
    if not is_dtype_name(name):
        raise _malformed(where, f"key 'dtype' is {name!r}, expected a dtype name such as 'float32'")
    return to_dtype(name)


def _read_shape(shape: Any, where: str) -> Any:
    if shape is None:
        return UNKNOWN_RANK
    if not isinstance(shape, list) or not all(
        d is None or (type(d) is int and d >= 0) for d in shape
    ):
        raise _malformed(
            where,
            f"key 'shape' is {_short(shape)}, expected null or a list of non-negative ints and nulls",
        )
    return shape


def _read_struct(node: dict[str, Any], where: str, depth: int) -> Type:
    elements = node["elements"]
    if not isinstance(elements, list):
        raise _malformed(where, f"key 'elements' is {_short(elements)}, expected a list")
    items: list[tuple[str | None, Type]] = []
    for index, element in enumerate(elements):
        at = f"{where}.elements[{index}]"
        if not isinstance(element, dict) or set(element) != {"name", "type"}:
            raise _malformed(
                at, f"expected a dict with keys ['name', 'type'], got {_short(element)}"
            )
        name = element["name"]
        if name is not None and not isinstance(name, str):
            raise _malformed(at, f"key 'name' is {name!r}, expected a str or null")
        items.append((name, _read(element["type"], f"{at}.type", depth)))
    return _construct(where, StructType, items, _read_container(node.get("container"), where))


def _read_container(path: Any, where: str) -> type | None:
    """The container class `path` names, if its module is already imported; never imports anything.

    A serialized type comes from data, so reading one runs no code: the container is looked up among the
    modules this process has imported (a struct whose container's module is not imported is read without
    its container), and only container classes are accepted (dicts, lists, tuples and their subclasses,
    named tuples, dataclasses and attrs classes), since converting a result to its container calls it.
    """
    if path is None:
        return None
    module_name, colon, qualname = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not (colon and module_name and qualname):
        raise _malformed(where, f"key 'container' is {path!r}, expected 'module:qualname'")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    container: Any = module
    for part in qualname.split("."):
        container = inspect.getattr_static(container, part, None)
        if container is None:
            return None
    if not _is_container_class(container):
        raise _malformed(
            where,
            f"key 'container' is {path!r}, which is not a container class (a dict, list or tuple, a "
            f"subclass of one, a named tuple, a dataclass or an attrs class)",
        )
    return container


def _is_container_class(cls: Any) -> bool:
    if not isinstance(cls, type):
        return False
    if issubclass(cls, (dict, list, tuple)):
        return True
    return dataclasses.is_dataclass(cls) or getattr(cls, "__attrs_attrs__", None) is not None


def _read_federated(node: dict[str, Any], where: str, depth: int) -> Type:
    uri = node["placement"]
    try:
        placement = placement_from_uri(uri)
    except (ValueError, TypeError):
        raise _malformed(
            where, f"key 'placement' is {uri!r}, expected 'clients' or 'server'"
        ) from None
    all_equal = node["all_equal"]
    if not isinstance(all_equal, bool):
        raise _malformed(where, f"key 'all_equal' is {all_equal!r}, expected true or false")
    return _construct(
        where, FederatedType, _read(node["member"], f"{where}.member", depth), placement, all_equal
    )
