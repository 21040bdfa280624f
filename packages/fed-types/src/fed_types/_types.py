"""The types of the fed federated language.

Every value and every computation in fed has one of these types. They are immutable, hashable and
compare structurally; `str(t)` is the compact notation (`{float32}@CLIENTS`, `(int32* -> int32)`),
which `fed_types.parse_type` reads back. `to_type` turns the type specs users write (dtypes,
`(dtype, shape)` pairs, containers of specs ...) into types; the type constructors accept them too.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from fed_types._containers import is_attrs_class, struct_elements
from fed_types._placements import CLIENTS, SERVER, Placement

_STR = np.dtype(np.str_)
_ALLOWED_DTYPES = frozenset(
    np.dtype(d)
    for d in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
    )
) | {_STR}

# Python scalar types map to TensorFlow's default widths, as TFF users expect.
_PYTHON_DTYPES: dict[type, np.dtype] = {
    bool: np.dtype(np.bool_),
    int: np.dtype(np.int32),
    float: np.dtype(np.float32),
    str: _STR,
    bytes: _STR,
}


MAX_NESTING = 100
"""How deeply types may nest where they are read from text or data (`parse_type`,
`deserialize_type`): deeper ones are refused rather than exhausting Python's recursion limit."""


def dtype_name(dtype: np.dtype) -> str:
    """The name of `dtype` in the compact notation (`float32`, `bool`, `str`)."""
    return "str" if dtype == _STR else dtype.name


DTYPE_NAMES: frozenset[str] = frozenset(dtype_name(d) for d in _ALLOWED_DTYPES)
"""The dtype names of the compact notation (`bool`, `str`, `int8` ... `uint64`, `float16` ...
`complex128`)."""


def is_dtype_name(name: object) -> bool:
    """True if `name` is a dtype name that `to_dtype` accepts (a name of `DTYPE_NAMES`, or
    `'string'`)."""
    return isinstance(name, str) and (name in DTYPE_NAMES or name == "string")


def is_tf_dtype(dtype: object) -> bool:
    """True if `dtype` looks like a TensorFlow `DType` (recognised without importing TensorFlow)."""
    # Looked up on the class: reading `as_numpy_dtype` raises for TF dtypes that numpy lacks.
    cls = type(dtype)
    return hasattr(cls, "as_numpy_dtype") and hasattr(cls, "is_floating")


def is_dtype_like(dtype: object) -> bool:
    """True if `to_dtype` would interpret `dtype` as a dtype rather than reject it as something
    else.

    Dtype names count; whether the dtype is supported is checked by `to_dtype` itself.
    """
    if isinstance(dtype, np.dtype) or is_tf_dtype(dtype) or is_dtype_name(dtype):
        return True
    return isinstance(dtype, type) and (dtype in _PYTHON_DTYPES or issubclass(dtype, np.generic))


def to_dtype(dtype: Any) -> np.dtype:
    """Converts a numpy dtype, numpy scalar type, Python scalar type, dtype name or TF dtype to a
    numpy dtype.

    TensorFlow dtypes are recognised by duck typing, so TensorFlow is never imported here. Strings
    (numpy unicode or bytes, `tf.string`) all become numpy's `str_` dtype. Names are the notation's
    (`float32`, `str`) or `string`; numpy's abbreviations (`f4`, `float`) are refused because they
    are ambiguous.
    """
    if isinstance(dtype, type) and dtype in _PYTHON_DTYPES:
        result = _PYTHON_DTYPES[dtype]
    elif is_tf_dtype(dtype):
        if dtype.name == "string":
            result = _STR
        else:
            try:
                result = np.dtype(dtype.as_numpy_dtype)
            except (KeyError, TypeError):
                # TF dtypes without a numpy counterpart (resource, variant) raise here.
                raise TypeError(
                    f"Unsupported dtype {dtype.name}: it has no numpy counterpart."
                ) from None
    elif isinstance(dtype, str):
        if not is_dtype_name(dtype):
            raise TypeError(f"Unknown dtype name {dtype!r}: expected one of {sorted(DTYPE_NAMES)}.")
        result = _STR if dtype in ("str", "string") else np.dtype(dtype)
    elif dtype is None:
        raise TypeError("Expected a dtype, got None.")
    else:
        try:
            result = np.dtype(dtype)
        except TypeError:
            raise TypeError(
                f"Expected a dtype (numpy dtype, Python scalar type, dtype name or TF dtype), "
                f"got {dtype!r} of type {type(dtype).__name__}."
            ) from None
    if result.kind in "US":
        result = _STR
    elif not result.isnative:
        # Byte order is a property of a buffer, not of a fed type.
        result = result.newbyteorder("=")
    if result not in _ALLOWED_DTYPES:
        raise TypeError(
            f"Unsupported dtype {result}: expected one of "
            f"{sorted(dtype_name(d) for d in _ALLOWED_DTYPES)}."
        )
    return result


class _UnknownRank:
    """The shape of a tensor whose rank is not known (`float32[*]`)."""

    _instance: _UnknownRank | None = None

    def __new__(cls) -> _UnknownRank:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN_RANK"

    def __reduce__(self) -> str:
        return "UNKNOWN_RANK"


UNKNOWN_RANK = _UnknownRank()
"""The shape of a tensor whose rank is not known: `TensorType(np.float32, UNKNOWN_RANK)` is `float32[*]`."""

Shape = tuple[int | None, ...] | _UnknownRank

_MAX_DIMENSION = np.iinfo(np.int64).max


def to_shape(shape: Any) -> Shape:
    """Converts `shape` (None or () for a scalar, an int, a sequence of ints/None, UNKNOWN_RANK, or
    a `tf.TensorShape`) to a tuple of dims or UNKNOWN_RANK."""
    if shape is None:
        return ()
    if shape is UNKNOWN_RANK:
        return UNKNOWN_RANK
    if hasattr(shape, "rank") and hasattr(shape, "as_list"):  # tf.TensorShape, by duck typing
        if shape.rank is None:
            return UNKNOWN_RANK
        shape = shape.as_list()
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    # Mappings and sets are iterable, but their order is not a shape's.
    if not isinstance(shape, Iterable) or isinstance(shape, (str, bytes, Mapping, AbstractSet)):
        raise TypeError(f"Expected a shape (a sequence of ints or None), got {shape!r}.")
    dims: list[int | None] = []
    for dim in shape:
        # A TF1-style Dimension holds its size in `value`.
        if hasattr(dim, "value") and not isinstance(dim, (int, np.integer)):
            dim = dim.value
        if dim is None or (isinstance(dim, (int, np.integer)) and dim == -1):
            dims.append(None)
        elif (
            isinstance(dim, (int, np.integer))
            and not isinstance(dim, bool)
            and 0 <= dim <= _MAX_DIMENSION
        ):
            dims.append(int(dim))
        else:
            raise TypeError(
                f"Expected each dimension to be an int in [0, 2**63 - 1] or None, got {dim!r} "
                f"in {shape!r}."
            )
    return tuple(dims)


class TypeNotAssignableError(TypeError):
    """Raised when a value of type `source` is used where `target` is expected."""

    def __init__(self, target: Type, source: Type, difference: str, context: str = ""):
        self.target = target
        self.source = source
        self.difference = difference
        prefix = f"{context}: " if context else ""
        super().__init__(
            f"{prefix}expected a value of type {target}, got {source}; "
            f"first difference: {difference}."
        )


class Type(abc.ABC):
    """The base of all fed types."""

    __slots__ = ("_hash", "_str")
    _hash: int | None
    _str: str | None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable.")

    def _init(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_hash", None)
        object.__setattr__(self, "_str", None)

    @abc.abstractmethod
    def _key(self) -> tuple[Any, ...]:
        """A tuple that identifies this type structurally (for equality and hashing)."""

    @abc.abstractmethod
    def _compact(self) -> str:
        """The compact notation of this type."""

    @abc.abstractmethod
    def _difference_from(self, source: Type, path: str) -> str | None:
        """Why a value of type `source` cannot be used where this type is expected, or None if it
        can.

        `source` is known to be of the same class as `self`.
        """

    @abc.abstractmethod
    def children(self) -> Iterator[Type]:
        """The types directly nested in this one."""

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not type(self):
            return False
        return self._key() == other._key()

    def __hash__(self) -> int:
        result = self._hash
        if result is None:
            result = hash((type(self).__name__, self._key()))
            object.__setattr__(self, "_hash", result)
        return result

    def __str__(self) -> str:
        result = self._str
        if result is None:
            result = self._compact()
            object.__setattr__(self, "_str", result)
        return result

    def compact_representation(self) -> str:
        """The compact notation of this type, as `str()` gives it."""
        return str(self)

    def formatted_representation(self) -> str:
        """The notation of this type laid out for reading, as TFF prints it: the elements of each
        non-empty struct on lines of their own, indented by two spaces per level.

        `<a=int32,b=<float32,bool>>` reads
        ```
        <
          a=int32,
          b=<
            float32,
            bool
          >
        >
        ```
        """
        return "\n".join(line.rstrip() for line in self._lines())

    def _lines(self) -> list[str]:
        """The lines of `formatted_representation`; types without struct inside are one line."""
        return [str(self)]

    def first_difference(self, source: Type) -> str | None:
        """Where and why `source` is not assignable to this type, or None if it is."""
        return _difference(self, source, "")

    def is_assignable_from(self, source: Type) -> bool:
        """True if a value of type `source` can be used where this type is expected."""
        return _difference(self, source, "") is None

    def check_assignable_from(self, source: Type, context: str = "") -> None:
        """Raises `TypeNotAssignableError` (both types printed, with the first difference) unless
        `source` is assignable to this type."""
        difference = _difference(self, source, "")
        if difference is not None:
            raise TypeNotAssignableError(self, source, difference, context)

    def is_equivalent_to(self, other: Type) -> bool:
        """True if each of the two types is assignable from the other."""
        return self.is_assignable_from(other) and other.is_assignable_from(self)

    def is_identical_to(self, other: Type) -> bool:
        """True if the types are equal, including Python container types of structs."""
        return _identical(self, other)


def _difference(target: Type, source: Type, path: str) -> str | None:
    if not isinstance(source, Type):
        return f"at {path or 'the top'}: {source!r} is not a fed type"
    if type(source) is not type(target) and not (
        isinstance(target, StructType) and isinstance(source, StructType)
    ):
        return f"at {path or 'the top'}: expected {target}, found {source}"
    return target._difference_from(source, path)


def _identical(a: Type, b: Type) -> bool:
    if a != b:
        return False
    if isinstance(a, StructType):
        assert isinstance(b, StructType)
        return a.python_container is b.python_container and all(
            _identical(x, y) for x, y in zip(a.children(), b.children(), strict=True)
        )
    return all(_identical(x, y) for x, y in zip(a.children(), b.children(), strict=True))


def _joined(*parts: list[str]) -> list[str]:
    """The lines of `parts` written one after the other: each part continues the last line of
    the one before it."""
    lines = [""]
    for part in parts:
        lines[-1] += part[0]
        lines.extend(part[1:])
    return lines


def _find_nested(type_spec: Type, kinds: tuple[type, ...]) -> Type | None:
    """The first type of one of `kinds` in `type_spec` (itself included, depth first), or None."""
    if isinstance(type_spec, kinds):
        return type_spec
    for child in type_spec.children():
        found = _find_nested(child, kinds)
        if found is not None:
            return found
    return None


class TensorType(Type):
    """The type of a tensor: a dtype and a shape whose dimensions may be unknown (None).

    `TensorType(np.float32)` is a scalar, `TensorType(np.float32, [None, 10])` a batch of vectors,
    `TensorType(np.float32, UNKNOWN_RANK)` a tensor of any rank.
    """

    __slots__ = ("_dtype", "_shape")
    _dtype: np.dtype
    _shape: Shape

    def __init__(self, dtype: Any, shape: Any = None):
        self._init(_dtype=to_dtype(dtype), _shape=to_shape(shape))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def shape(self) -> Shape:
        """A tuple of dims (None where unknown), or UNKNOWN_RANK."""
        return self._shape

    @property
    def rank(self) -> int | None:
        return None if isinstance(self._shape, _UnknownRank) else len(self._shape)

    def is_fully_defined(self) -> bool:
        return not isinstance(self._shape, _UnknownRank) and None not in self._shape

    def _key(self) -> tuple[Any, ...]:
        return (self._dtype, self._shape)

    def _compact(self) -> str:
        name = dtype_name(self._dtype)
        shape = self._shape
        if isinstance(shape, _UnknownRank):
            return f"{name}[*]"
        if not shape:
            return name
        return name + "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"

    def _difference_from(self, source: Type, path: str) -> str | None:
        assert isinstance(source, TensorType)
        where = path or "the top"
        if source.dtype != self.dtype:
            expected, found = dtype_name(self.dtype), dtype_name(source.dtype)
            return f"at {where}: dtype {expected} expected, {found} found"
        target_shape, source_shape = self._shape, source.shape
        if isinstance(target_shape, _UnknownRank):
            return None
        if isinstance(source_shape, _UnknownRank) or len(source_shape) != len(target_shape):
            return f"at {where}: shape {self} expected, {source} found"
        for i, (want, got) in enumerate(zip(target_shape, source_shape, strict=True)):
            if want is not None and want != got:
                return f"at {where}: dimension {i} of {self} expected, {source} found"
        return None

    def children(self) -> Iterator[Type]:
        return iter(())

    def __repr__(self) -> str:
        shape = "UNKNOWN_RANK" if isinstance(self._shape, _UnknownRank) else list(self._shape)
        dtype = f"np.{self._dtype.type.__name__}"
        if shape == []:
            return f"TensorType({dtype})"
        return f"TensorType({dtype}, {shape})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TensorType, (self._dtype, self._shape))


class SequenceType(Type):
    """The type of a sequence (a dataset) of elements of one type: `int32*`."""

    __slots__ = ("_element",)
    _element: Type

    def __init__(self, element: Any):
        element = to_type(element)
        found = _find_nested(element, (FederatedType, FunctionType, SequenceType, PlacementType))
        if found is not None:
            inside = "" if found is element else f", which contains {found}"
            raise TypeError(
                f"A sequence's elements cannot hold {type(found).__name__}s, got element type "
                f"{element}{inside}."
            )
        self._init(_element=element)

    @property
    def element(self) -> Type:
        return self._element

    def _key(self) -> tuple[Any, ...]:
        return (self._element,)

    def _compact(self) -> str:
        return f"{self._element}*"

    def _lines(self) -> list[str]:
        return _joined(self._element._lines(), ["*"])

    def _difference_from(self, source: Type, path: str) -> str | None:
        assert isinstance(source, SequenceType)
        return _difference(self._element, source.element, f"{path}.element")

    def children(self) -> Iterator[Type]:
        return iter((self._element,))

    def __repr__(self) -> str:
        return f"SequenceType({self._element!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SequenceType, (self._element,))


class StructType(Type):
    """The type of a struct: an ordered list of elements, each optionally named:
    `<a=int32,float32>`.

    Elements are given as a list of types, a list of `(name, type)` pairs (mixing is allowed, a name
    may be None), or a mapping from names to types. Elements are read by position (`t[0]`), by name
    (`t['a']`, `t.a`), or all at once (`t.items()`). A Python container type, if given, is what
    values of this type become when they leave fed; it does not take part in equality or in the
    compact notation.
    """

    __slots__ = ("_elements", "_names", "_container")
    _elements: tuple[tuple[str | None, Type], ...]
    _names: dict[str, int]
    _container: type | None

    def __init__(self, elements: Any, container_type: type | None = None):
        if container_type is not None and not isinstance(container_type, type):
            raise TypeError(
                f"Expected the Python container of a struct type to be a class (such as dict or "
                f"a namedtuple) or None, got {describe(container_type)}."
            )
        items: list[tuple[str | None, Type]] = []
        if isinstance(elements, Mapping):
            source: Iterable[Any] = elements.items()
        elif isinstance(elements, tuple) and hasattr(elements, "_asdict"):  # a namedtuple of specs
            source = elements._asdict().items()
        elif isinstance(elements, Iterable) and not isinstance(elements, (str, bytes)):
            source = elements
        else:
            raise TypeError(
                f"Expected the elements of a struct as a list of types, of (name, type) pairs, "
                f"or a mapping; "
                f"got {elements!r}."
            )
        for item in source:
            if (
                isinstance(item, tuple)
                # A namedtuple is a struct spec, not a (name, spec) pair.
                and not hasattr(item, "_fields")
                and len(item) == 2
                and (item[0] is None or isinstance(item[0], str))
            ):
                name, spec = item
            else:
                name, spec = None, item
            if name == "":
                name = None
            items.append((name, to_type(spec)))
        names: dict[str, int] = {}
        for index, (name, _) in enumerate(items):
            if name is None:
                continue
            if name in names:
                raise ValueError(
                    f"Duplicate element name {name!r} in struct elements {elements!r}."
                )
            if not name.isidentifier():
                raise ValueError(f"Struct element names must be Python identifiers, got {name!r}.")
            names[name] = index
        self._init(_elements=tuple(items), _names=names, _container=container_type)

    @property
    def python_container(self) -> type | None:
        """The Python container type values of this struct convert to, or None."""
        return self._container

    def items(self) -> tuple[tuple[str | None, Type], ...]:
        """The elements as `(name or None, type)` pairs, in order."""
        return self._elements

    def names(self) -> tuple[str | None, ...]:
        """The element names in order, None for unnamed elements."""
        return tuple(name for name, _ in self._elements)

    def index_of(self, name: str) -> int:
        """The position of the element named `name`; KeyError names the struct if there is none."""
        try:
            return self._names[name]
        except KeyError:
            raise KeyError(f"Struct type {self} has no element named {name!r}.") from None

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[Type]:
        return (t for _, t in self._elements)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._elements[self.index_of(key)][1]
        if isinstance(key, slice):
            return [t for _, t in self._elements[key]]
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool):
            raise TypeError(
                f"The elements of struct type {self} are read by position (an int), name (a str) "
                f"or slice, got {key!r}."
            )
        try:
            return self._elements[key][1]
        except IndexError:
            raise IndexError(
                f"Index {key} out of range for struct type {self} of {len(self)} elements."
            ) from None

    def __getattr__(self, name: str) -> Type:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._elements[self._names[name]][1]
        except KeyError:
            raise AttributeError(f"Struct type {self} has no element named {name!r}.") from None

    def __dir__(self) -> Iterable[str]:
        return list(super().__dir__()) + list(self._names)

    def _key(self) -> tuple[Any, ...]:
        return self._elements

    def _compact(self) -> str:
        parts = [f"{name}={t}" if name is not None else str(t) for name, t in self._elements]
        return "<" + ",".join(parts) + ">"

    def _lines(self) -> list[str]:
        if not self._elements:
            return ["<>"]
        body: list[str] = []
        last = len(self._elements) - 1
        for index, (name, t) in enumerate(self._elements):
            lines = t._lines() if name is None else _joined([f"{name}="], t._lines())
            if index < last:
                lines[-1] += ","
            body.extend(f"  {line}" for line in lines)
        return ["<", *body, ">"]

    def _difference_from(self, source: Type, path: str) -> str | None:
        assert isinstance(source, StructType)
        where = path or "the top"
        if len(source) != len(self):
            return (
                f"at {where}: {len(self)} elements expected, {len(source)} found "
                f"({self} vs {source})"
            )
        for index, ((name, want), (source_name, got)) in enumerate(
            zip(self._elements, source.items(), strict=True)
        ):
            if name is not None and source_name is not None and name != source_name:
                return f"at {where}: element {index} named {name!r} expected, {source_name!r} found"
            step = f"{path}.{name}" if name is not None else f"{path}[{index}]"
            difference = _difference(want, got, step)
            if difference is not None:
                return difference
        return None

    def children(self) -> Iterator[Type]:
        return iter(self)

    def __repr__(self) -> str:
        parts = [
            f"({name!r}, {t!r})" if name is not None else repr(t) for name, t in self._elements
        ]
        inner = "[" + ", ".join(parts) + "]"
        if self._container is not None:
            return f"StructWithPythonType({inner}, {self._container.__qualname__})"
        return f"StructType({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (StructType, (list(self._elements), self._container))


def StructWithPythonType(elements: Any, container_type: type) -> StructType:  # noqa: N802 (TFF)
    """A struct type whose values convert to `container_type` (a tuple, list, dict, namedtuple,
    attrs or dataclass type) when they leave fed."""
    if not isinstance(container_type, type):
        raise TypeError(f"Expected a Python container type, got {container_type!r}.")
    return StructType(elements, container_type)


NamedTupleType = StructType
"""Legacy name of StructType."""


class FunctionType(Type):
    """The type of a function: `(int32* -> int32)`, or `( -> int32)` with no parameter."""

    __slots__ = ("_parameter", "_result")
    _parameter: Type | None
    _result: Type

    def __init__(self, parameter: Any, result: Any):
        self._init(
            _parameter=None if parameter is None else to_type(parameter),
            _result=to_type(result),
        )

    @property
    def parameter(self) -> Type | None:
        return self._parameter

    @property
    def result(self) -> Type:
        return self._result

    def _key(self) -> tuple[Any, ...]:
        return (self._parameter, self._result)

    def _compact(self) -> str:
        parameter = "" if self._parameter is None else str(self._parameter)
        return f"({parameter} -> {self._result})"

    def _lines(self) -> list[str]:
        parameter = [""] if self._parameter is None else self._parameter._lines()
        return _joined(["("], parameter, [" -> "], self._result._lines(), [")"])

    def _difference_from(self, source: Type, path: str) -> str | None:
        assert isinstance(source, FunctionType)
        where = path or "the top"
        if (self._parameter is None) != (source.parameter is None):
            return f"at {where}: function {self} expected, {source} found"
        if self._parameter is not None:
            # Parameters are contravariant: the source function must accept all the target accepts.
            assert source.parameter is not None
            difference = _difference(source.parameter, self._parameter, f"{path}.parameter")
            if difference is not None:
                return difference
        return _difference(self._result, source.result, f"{path}.result")

    def children(self) -> Iterator[Type]:
        if self._parameter is not None:
            yield self._parameter
        yield self._result

    def __repr__(self) -> str:
        return f"FunctionType({self._parameter!r}, {self._result!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FunctionType, (self._parameter, self._result))


class AbstractType(Type):
    """A type variable, such as the `T` in `federated_map`'s signature `(<(T -> U),{T}@CLIENTS> ->
    {U}@CLIENTS)`."""

    __slots__ = ("_label",)
    _label: str

    def __init__(self, label: str):
        if not isinstance(label, str) or not label.isidentifier():
            raise TypeError(
                f"Expected an abstract type label that is an identifier, got {label!r}."
            )
        if label in DTYPE_NAMES or label == "placement":
            # The notation could not tell such a label from the tensor or placement type.
            raise TypeError(f"An abstract type label cannot be a type name, got {label!r}.")
        self._init(_label=label)

    @property
    def label(self) -> str:
        return self._label

    def _key(self) -> tuple[Any, ...]:
        return (self._label,)

    def _compact(self) -> str:
        return self._label

    def _difference_from(self, source: Type, path: str) -> str | None:
        assert isinstance(source, AbstractType)
        if source.label != self._label:
            return f"at {path or 'the top'}: abstract type {self} expected, {source} found"
        return None

    def children(self) -> Iterator[Type]:
        return iter(())

    def __repr__(self) -> str:
        return f"AbstractType({self._label!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (AbstractType, (self._label,))


class PlacementType(Type):
    """The type of a placement literal (`CLIENTS`, `SERVER`): `placement`."""

    __slots__ = ()

    def __init__(self) -> None:
        self._init()

    def _key(self) -> tuple[Any, ...]:
        return ()

    def _compact(self) -> str:
        return "placement"

    def _difference_from(self, source: Type, path: str) -> str | None:
        return None

    def children(self) -> Iterator[Type]:
        return iter(())

    def __repr__(self) -> str:
        return "PlacementType()"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlacementType, ())


class FederatedType(Type):
    """The type of a federated value: a member type placed at CLIENTS or SERVER.

    `all_equal` says whether all members are equal; it defaults to True at SERVER and False at
    CLIENTS. Printed `{int32}@CLIENTS` when members may differ and `int32@SERVER` when all are
    equal.
    """

    __slots__ = ("_member", "_placement", "_all_equal")
    _member: Type
    _placement: Placement
    _all_equal: bool

    def __init__(self, member: Any, placement: Placement, all_equal: bool | None = None):
        member = to_type(member)
        found = _find_nested(member, (FederatedType, FunctionType, PlacementType))
        if found is not None:
            inside = "" if found is member else f", which contains {found}"
            raise TypeError(
                f"A federated type's member cannot hold {type(found).__name__}s, got member type "
                f"{member}{inside}."
            )
        if not isinstance(placement, Placement):
            raise TypeError(f"Expected a placement (CLIENTS or SERVER), got {placement!r}.")
        if all_equal is None:
            all_equal = placement is SERVER or placement == SERVER
        elif not isinstance(all_equal, (bool, np.bool_)):
            # bool("no") is True: only a bool says what was meant.
            raise TypeError(
                f"Expected all_equal to be True, False or None, got {describe(all_equal)}."
            )
        self._init(_member=member, _placement=placement, _all_equal=bool(all_equal))

    @property
    def member(self) -> Type:
        return self._member

    @property
    def placement(self) -> Placement:
        return self._placement

    @property
    def all_equal(self) -> bool:
        return self._all_equal

    def _key(self) -> tuple[Any, ...]:
        return (self._member, self._placement, self._all_equal)

    def _compact(self) -> str:
        if self._all_equal:
            return f"{self._member}@{self._placement}"
        return f"{{{self._member}}}@{self._placement}"

    def _lines(self) -> list[str]:
        member = self._member._lines()
        if not self._all_equal:
            member = _joined(["{"], member, ["}"])
        return _joined(member, [f"@{self._placement}"])

    def _difference_from(self, source: Type, path: str) -> str | None:
        assert isinstance(source, FederatedType)
        where = path or "the top"
        if source.placement != self._placement:
            return f"at {where}: placement {self._placement} expected, {source.placement} found"
        if self._all_equal and not source.all_equal:
            return (
                f"at {where}: an all-equal value {self} expected, {source} (members may differ) "
                "found"
            )
        return _difference(self._member, source.member, f"{path}.member")

    def children(self) -> Iterator[Type]:
        return iter((self._member,))

    def __repr__(self) -> str:
        return f"FederatedType({self._member!r}, {self._placement}, all_equal={self._all_equal})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FederatedType, (self._member, self._placement, self._all_equal))


def at_clients(member: Any, all_equal: bool = False) -> FederatedType:
    """`{member}@CLIENTS` (or `member@CLIENTS` if `all_equal`)."""
    return FederatedType(member, CLIENTS, all_equal)


def at_server(member: Any) -> FederatedType:
    """`member@SERVER`."""
    return FederatedType(member, SERVER)


# ---- type specs


def describe(obj: Any) -> str:
    """`obj` and its Python type, for error messages (long reprs are cut)."""
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} of Python type {type(obj).__qualname__}"


def is_name_value_pair(item: Any, *, exclude_dtype_names: bool) -> bool:
    """True for a plain 2-tuple `(name, x)` whose name is an identifier.

    In type specs a dtype name (`('float32', [2])`) is read as a dtype, not as an element name.
    """
    if type(item) is not tuple or len(item) != 2 or not isinstance(item[0], str):
        return False
    name = item[0]
    return name.isidentifier() and not (exclude_dtype_names and is_dtype_name(name))


def _is_spec_pair(item: Any) -> bool:
    return is_name_value_pair(item, exclude_dtype_names=True)


def _is_shape_like(shape: Any) -> bool:
    if shape is UNKNOWN_RANK:
        return True
    if hasattr(shape, "rank") and hasattr(shape, "as_list"):  # tf.TensorShape, by duck typing
        return True
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        return True
    return isinstance(shape, (list, tuple)) and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in shape
    )


def _sparse_tensor_type(spec: Any, container: type) -> StructType:
    """The type of a sparse tensor spec (`tf.SparseTensorSpec`), as TFF gives it: the struct of the
    sparse tensor's components, `<indices=int64[?,rank],values=dtype[?],dense_shape=int64[rank]>`,
    whose values leave fed as sparse tensors."""
    shape = to_shape(spec.shape)
    rank = None if isinstance(shape, _UnknownRank) else len(shape)
    return StructType(
        [
            ("indices", TensorType(np.int64, [None, rank])),
            ("values", TensorType(spec.dtype, [None])),
            ("dense_shape", TensorType(np.int64, [rank])),
        ],
        container,
    )


def _ragged_tensor_type(spec: Any, container: type) -> StructType:
    """The type of a ragged tensor spec (`tf.RaggedTensorSpec`), as TFF gives it: the struct of
    the ragged tensor's components, `<flat_values=dtype[...],nested_row_splits=<int64[?],...>>`
    with one row-splits vector per ragged dimension, whose values leave fed as ragged tensors.

    The flat values have the spec's inner dimensions when its rank is known (TFF leaves their rank
    unknown, a type that this one is assignable to).
    """
    ragged_rank = int(spec.ragged_rank)
    flat_values_spec = getattr(spec, "flat_values_spec", None)
    if flat_values_spec is not None:
        flat_values = to_type(flat_values_spec)
    else:
        shape = to_shape(spec.shape)
        inner = (
            UNKNOWN_RANK if isinstance(shape, _UnknownRank) else (None, *shape[ragged_rank + 1 :])
        )
        flat_values = TensorType(spec.dtype, inner)
    row_splits = TensorType(spec.row_splits_dtype, [None])
    return StructType(
        [
            ("flat_values", flat_values),
            ("nested_row_splits", StructType([row_splits] * ragged_rank)),
        ],
        container,
    )


def to_type(spec: Any) -> Type:
    """Converts a type spec to a fed `Type`.

    Accepted specs:
    - a `Type`, returned as is;
    - a dtype: numpy dtype or scalar type, Python `bool`/`int`/`float`/`str` (as `bool`, `int32`,
      `float32`, `str`), a dtype name (`'float32'`), or a TF dtype: a scalar tensor type;
    - a `(dtype, shape)` pair, shape a list or tuple of ints and None, an int, or a
      `tf.TensorShape`;
    - a tensor spec such as `tf.TensorSpec` (anything with `dtype` and `shape`), and a dataset spec
      (anything with an `element_spec`, such as `tf.data.DatasetSpec`) as a sequence type;
    - a `tf.SparseTensorSpec` or `tf.RaggedTensorSpec`, as TFF types them: the struct of the
      tensor's components (`<indices=int64[?,2],values=float32[?],dense_shape=int64[2]>`,
      `<flat_values=int32[?],nested_row_splits=<int64[?]>>`) whose Python container is the
      sparse or ragged tensor class;
    - lists, tuples, dicts, OrderedDicts, namedtuples, and instances of attrs classes and
      dataclasses whose elements are specs, nested: a struct type that keeps the Python container. A
      list or tuple holding `(name, spec)` pairs (`[('a', np.int32), ('b', np.bool_)]`) is a struct
      with names and no container; so is a lone pair `('a', np.int32)`;
    - a `Struct` of specs: a struct type without container.
    """
    if isinstance(spec, Type):
        return spec
    if is_dtype_like(spec):
        return TensorType(spec)
    if isinstance(spec, str):
        raise TypeError(
            f"Expected a type spec, got the string {spec!r}, which is not a dtype name."
        )
    if isinstance(spec, (np.ndarray, np.generic)):
        raise TypeError(
            f"Expected a type spec, got the value {describe(spec)}; "
            "infer_type gives a value's type."
        )
    if type(spec) is tuple and len(spec) == 2:
        first, second = spec
        if is_dtype_like(first) and _is_shape_like(second):
            return TensorType(first, second)
        if _is_spec_pair(spec):
            return StructType([(first, to_type(second))])
    if isinstance(spec, type) and (dataclasses.is_dataclass(spec) or is_attrs_class(spec)):
        raise TypeError(
            f"Expected a type spec, got the class {spec.__qualname__}: pass an instance whose "
            "fields hold the specs of its elements."
        )
    parts = struct_elements(spec, _is_spec_pair, pairs_if=any)
    if parts is not None:
        elements, container = parts
        return StructType([(name, to_type(element)) for name, element in elements], container)
    if hasattr(spec, "element_spec"):
        return SequenceType(to_type(spec.element_spec))
    if hasattr(spec, "dtype") and hasattr(spec, "shape"):
        value_type = getattr(spec, "value_type", None)
        kind = getattr(value_type, "__name__", None)
        if kind == "SparseTensor":
            return _sparse_tensor_type(spec, value_type)  # type: ignore[arg-type]
        if kind == "RaggedTensor":
            return _ragged_tensor_type(spec, value_type)  # type: ignore[arg-type]
        if value_type is not None and kind != "Tensor":
            raise TypeError(
                f"Expected a dense, sparse or ragged tensor spec, got {describe(spec)}."
            )
        return TensorType(spec.dtype, spec.shape)
    raise TypeError(
        "Expected a type spec (a Type, a dtype, a (dtype, shape) pair, a tensor spec, or a "
        f"container of specs), got {describe(spec)}."
    )
