"""The intermediate representation of fed computations: building blocks, each carrying its type.

A traced `federated_computation` is a `Lambda` whose body is a tree of these blocks; a frontend's
computation (a TensorFlow graph, a Python function) is a `CompiledComputation` leaf. Blocks are immutable;
transformations build new trees (see `transform_postorder`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from fed_types import (
    FunctionType,
    PlacementType,
    StructType,
    Type,
)
from fed_types import Placement as PlacementLiteral


class ComputationBuildingBlock(abc.ABC):
    """A node of the IR. `type_signature` is its type; `children()` are the nodes it holds."""

    __slots__ = ("_type_signature",)

    def __init__(self, type_signature: Type):
        if not isinstance(type_signature, Type):
            raise TypeError(f"Expected a fed type, got {type_signature!r}.")
        self._type_signature = type_signature

    @property
    def type_signature(self) -> Type:
        return self._type_signature

    @abc.abstractmethod
    def children(self) -> Iterator[ComputationBuildingBlock]:
        """The blocks directly held by this one, in evaluation order."""

    @abc.abstractmethod
    def with_children(
        self, children: Sequence[ComputationBuildingBlock]
    ) -> ComputationBuildingBlock:
        """A copy of this block with its children replaced (same order as `children()`)."""

    @abc.abstractmethod
    def _fmt(self) -> str:
        """The compact textual form of this block."""

    def __str__(self) -> str:
        return self._fmt()

    def __repr__(self) -> str:
        return f"{type(self).__name__}<{self._fmt()}>"

    def compact_representation(self) -> str:
        return self._fmt()

    def formatted_representation(self) -> str:
        """A multi-line, indented rendering of the tree, one block per line (for reading large bodies)."""
        lines: list[str] = []
        _format_tree(self, 0, lines)
        return "\n".join(lines)


def _format_tree(block: ComputationBuildingBlock, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    if isinstance(block, Lambda):
        lines.append(f"{pad}({block.parameter_name or ''} ->")
        _format_tree(block.result, depth + 1, lines)
        lines.append(f"{pad})")
    elif isinstance(block, Block):
        lines.append(f"{pad}let")
        for name, value in block.locals:
            lines.append(f"{pad}  {name}=")
            _format_tree(value, depth + 2, lines)
        lines.append(f"{pad}in")
        _format_tree(block.result, depth + 1, lines)
    else:
        lines.append(f"{pad}{block._fmt()}")


class Reference(ComputationBuildingBlock):
    """A reference to a name bound by an enclosing Lambda parameter or Block local."""

    __slots__ = ("_name",)

    def __init__(self, name: str, type_signature: Type):
        super().__init__(type_signature)
        if not isinstance(name, str) or not name:
            raise TypeError(f"Expected a non-empty reference name, got {name!r}.")
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter(())

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Reference:
        return self

    def _fmt(self) -> str:
        return self._name


class Selection(ComputationBuildingBlock):
    """Selects one element of a struct-typed `source` by position."""

    __slots__ = ("_source", "_index")

    def __init__(
        self, source: ComputationBuildingBlock, index: int | None = None, name: str | None = None
    ):
        struct = source.type_signature
        if not isinstance(struct, StructType):
            raise TypeError(f"Selection needs a struct, got a value of type {struct}.")
        if (index is None) == (name is None):
            raise ValueError("Selection takes exactly one of index or name.")
        if name is not None:
            index = struct.index_of(name)
        assert index is not None
        if not 0 <= index < len(struct):
            raise IndexError(f"Index {index} out of range for {struct} of {len(struct)} elements.")
        super().__init__(struct[index])
        self._source = source
        self._index = index

    @property
    def source(self) -> ComputationBuildingBlock:
        return self._source

    @property
    def index(self) -> int:
        return self._index

    @property
    def name(self) -> str | None:
        return self._source.type_signature.names()[self._index]  # type: ignore[attr-defined]

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter((self._source,))

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Selection:
        (source,) = children
        return self if source is self._source else Selection(source, index=self._index)

    def _fmt(self) -> str:
        name = self.name
        return (
            f"{self._source._fmt()}.{name}"
            if name is not None
            else f"{self._source._fmt()}[{self._index}]"
        )


class Struct(ComputationBuildingBlock):
    """Builds a struct from elements, each optionally named; `container_type` is carried into the type."""

    __slots__ = ("_elements",)

    def __init__(
        self,
        elements: Sequence[tuple[str | None, ComputationBuildingBlock] | ComputationBuildingBlock],
        container_type: type | None = None,
    ):
        pairs: list[tuple[str | None, ComputationBuildingBlock]] = []
        for element in elements:
            if isinstance(element, ComputationBuildingBlock):
                pairs.append((None, element))
            else:
                name, block = element
                if not isinstance(block, ComputationBuildingBlock):
                    raise TypeError(f"Expected a building block, got {block!r}.")
                pairs.append((name, block))
        super().__init__(StructType([(n, b.type_signature) for n, b in pairs], container_type))
        self._elements = tuple(pairs)

    @property
    def elements(self) -> tuple[tuple[str | None, ComputationBuildingBlock], ...]:
        return self._elements

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return (b for _, b in self._elements)

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Struct:
        if all(new is old for new, (_, old) in zip(children, self._elements)):
            return self
        container = self.type_signature.python_container  # type: ignore[attr-defined]
        return Struct([(n, c) for (n, _), c in zip(self._elements, children)], container)

    def _fmt(self) -> str:
        parts = [f"{n}={b._fmt()}" if n is not None else b._fmt() for n, b in self._elements]
        return "<" + ",".join(parts) + ">"


class Call(ComputationBuildingBlock):
    """Calls a function-typed block, with an argument if the function takes one."""

    __slots__ = ("_function", "_argument")

    def __init__(
        self,
        function: ComputationBuildingBlock,
        argument: ComputationBuildingBlock | None = None,
        *,
        check: bool = True,
    ):
        """`check=False` skips the argument's type check, for callers that have already made it (with a
        message of their own, see `fed_core.ir.build.call`)."""
        fn_type = function.type_signature
        if not isinstance(fn_type, FunctionType):
            raise TypeError(f"Only functions can be called; this value has type {fn_type}.")
        if fn_type.parameter is None:
            if argument is not None:
                raise TypeError(
                    f"The function of type {fn_type} takes no argument, but one of type "
                    f"{argument.type_signature} was given."
                )
        else:
            if argument is None:
                raise TypeError(
                    f"The function of type {fn_type} needs an argument of type {fn_type.parameter}."
                )
            if check:
                fn_type.parameter.check_assignable_from(
                    argument.type_signature, "calling a function"
                )
        super().__init__(fn_type.result)
        self._function = function
        self._argument = argument

    @property
    def function(self) -> ComputationBuildingBlock:
        return self._function

    @property
    def argument(self) -> ComputationBuildingBlock | None:
        return self._argument

    def children(self) -> Iterator[ComputationBuildingBlock]:
        yield self._function
        if self._argument is not None:
            yield self._argument

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Call:
        function, *rest = children
        argument = rest[0] if rest else None
        if function is self._function and argument is self._argument:
            return self
        return Call(function, argument)

    def _fmt(self) -> str:
        argument = "" if self._argument is None else self._argument._fmt()
        return f"{self._function._fmt()}({argument})"


class Lambda(ComputationBuildingBlock):
    """A function: `(parameter_name -> result)`, or `( -> result)` with no parameter."""

    __slots__ = ("_parameter_name", "_parameter_type", "_result")

    def __init__(
        self,
        parameter_name: str | None,
        parameter_type: Type | None,
        result: ComputationBuildingBlock,
    ):
        if (parameter_name is None) != (parameter_type is None):
            raise ValueError("A Lambda has both a parameter name and type, or neither.")
        super().__init__(FunctionType(parameter_type, result.type_signature))
        self._parameter_name = parameter_name
        self._parameter_type = parameter_type
        self._result = result

    @property
    def parameter_name(self) -> str | None:
        return self._parameter_name

    @property
    def parameter_type(self) -> Type | None:
        return self._parameter_type

    @property
    def result(self) -> ComputationBuildingBlock:
        return self._result

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter((self._result,))

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Lambda:
        (result,) = children
        if result is self._result:
            return self
        return Lambda(self._parameter_name, self._parameter_type, result)

    def _fmt(self) -> str:
        return f"({self._parameter_name or ''} -> {self._result._fmt()})"


class Block(ComputationBuildingBlock):
    """`let name_1=value_1, ..., name_n=value_n in result`: locals evaluated in order, each visible to the
    ones after it and to the result."""

    __slots__ = ("_locals", "_result")

    def __init__(
        self,
        local_symbols: Sequence[tuple[str, ComputationBuildingBlock]],
        result: ComputationBuildingBlock,
    ):
        super().__init__(result.type_signature)
        self._locals = tuple((name, value) for name, value in local_symbols)
        self._result = result

    @property
    def locals(self) -> tuple[tuple[str, ComputationBuildingBlock], ...]:
        return self._locals

    @property
    def result(self) -> ComputationBuildingBlock:
        return self._result

    def children(self) -> Iterator[ComputationBuildingBlock]:
        for _, value in self._locals:
            yield value
        yield self._result

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Block:
        *values, result = children
        if result is self._result and all(v is old for v, (_, old) in zip(values, self._locals)):
            return self
        return Block([(name, v) for (name, _), v in zip(self._locals, values)], result)

    def _fmt(self) -> str:
        bindings = ",".join(f"{name}={value._fmt()}" for name, value in self._locals)
        return f"(let {bindings} in {self._result._fmt()})"


class Intrinsic(ComputationBuildingBlock):
    """A built-in federated operator, by URI, with the concrete type it is used at."""

    __slots__ = ("_uri",)

    def __init__(self, uri: str, type_signature: Type):
        super().__init__(type_signature)
        self._uri = uri

    @property
    def uri(self) -> str:
        return self._uri

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter(())

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Intrinsic:
        return self

    def _fmt(self) -> str:
        return self._uri


class Placement(ComputationBuildingBlock):
    """A placement literal (`CLIENTS`, `SERVER`) used as a value."""

    __slots__ = ("_placement",)

    def __init__(self, placement: PlacementLiteral):
        super().__init__(PlacementType())
        self._placement = placement

    @property
    def placement(self) -> PlacementLiteral:
        return self._placement

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter(())

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Placement:
        return self

    def _fmt(self) -> str:
        return self._placement.name


class Literal(ComputationBuildingBlock):
    """A constant tensor value (a numpy array or scalar) embedded in the computation."""

    __slots__ = ("_value",)

    def __init__(self, value: Any, type_signature: Type):
        super().__init__(type_signature)
        self._value = value

    @property
    def value(self) -> Any:
        return self._value

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter(())

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Literal:
        return self

    def _fmt(self) -> str:
        value = self._value
        if isinstance(value, np.ndarray) and value.size > 6:
            return f"{self.type_signature}(...)"
        text = (
            np.array2string(np.asarray(value), separator=",")
            if isinstance(value, np.ndarray)
            else repr(value)
        )
        return text


class Data(ComputationBuildingBlock):
    """A reference to data that lives outside the computation (a URI understood by the executor that runs
    it, such as a client dataset in a distributed deployment)."""

    __slots__ = ("_uri",)

    def __init__(self, uri: str, type_signature: Type):
        super().__init__(type_signature)
        self._uri = uri

    @property
    def uri(self) -> str:
        return self._uri

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter(())

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> Data:
        return self

    def _fmt(self) -> str:
        return f"data<{self._uri}>"


class CompiledComputation(ComputationBuildingBlock):
    """A leaf compiled by a frontend: an opaque payload, the frontend's name and the function type.

    The backend registered under the same frontend name runs it (see `fed_core.framework.Backend`).
    """

    __slots__ = ("_frontend", "_payload", "_name")

    def __init__(self, frontend: str, payload: bytes, type_signature: FunctionType, name: str = ""):
        if not isinstance(type_signature, FunctionType):
            raise TypeError(
                f"A compiled computation must have a function type, got {type_signature}."
            )
        if not isinstance(payload, bytes):
            raise TypeError(
                f"A compiled computation's payload must be bytes, got {type(payload).__name__}."
            )
        super().__init__(type_signature)
        self._frontend = frontend
        self._payload = payload
        self._name = name

    @property
    def frontend(self) -> str:
        return self._frontend

    @property
    def payload(self) -> bytes:
        return self._payload

    @property
    def name(self) -> str:
        return self._name

    def children(self) -> Iterator[ComputationBuildingBlock]:
        return iter(())

    def with_children(self, children: Sequence[ComputationBuildingBlock]) -> CompiledComputation:
        return self

    def _fmt(self) -> str:
        return f"comp#{self._frontend}:{self._name}" if self._name else f"comp#{self._frontend}"


# ---- traversal and transformation


def walk(block: ComputationBuildingBlock) -> Iterator[ComputationBuildingBlock]:
    """All blocks of the tree, parents before children."""
    stack = [block]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(node.children())))


def transform_postorder(
    block: ComputationBuildingBlock,
    fn: Callable[[ComputationBuildingBlock], ComputationBuildingBlock],
) -> ComputationBuildingBlock:
    """Rebuilds the tree bottom-up, replacing each block `b` (after its children) by `fn(b)`."""
    children = list(block.children())
    if children:
        new_children = [transform_postorder(c, fn) for c in children]
        block = block.with_children(new_children)
    return fn(block)


def free_references(block: ComputationBuildingBlock) -> set[str]:
    """The names referenced in `block` that no Lambda or Block inside it binds."""
    if isinstance(block, Reference):
        return {block.name}
    if isinstance(block, Lambda):
        names = free_references(block.result)
        names.discard(block.parameter_name)
        return names
    if isinstance(block, Block):
        names = set()
        bound: set[str] = set()
        for name, value in block.locals:
            names |= free_references(value) - bound
            bound.add(name)
        return names | (free_references(block.result) - bound)
    result: set[str] = set()
    for child in block.children():
        result |= free_references(child)
    return result
