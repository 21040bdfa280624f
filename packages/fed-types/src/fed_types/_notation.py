"""A parser for the compact type notation that `str(type)` prints.

Grammar (whitespace is allowed between any two tokens):

    type      := primary ('*' | '@' PLACEMENT)*
    primary   := DTYPE shape? | 'placement' | LABEL
               | '<' (element (',' element)*)? '>'
               | '{' type '}' '@' PLACEMENT
               | '(' type? '->' type ')'
    element   := (NAME '=')? type
    shape     := '[' ('*' | dim (',' dim)*)? ']'
    dim       := INT | '?'

`T*` is a sequence of T, `T@P` a federated value placed at P with all members equal, `{T}@P` one
whose members may differ.
"""

from __future__ import annotations

import re
from typing import NoReturn

from fed_types._placements import Placement, placement_from_name
from fed_types._types import (
    DTYPE_NAMES,
    MAX_NESTING,
    UNKNOWN_RANK,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    Shape,
    StructType,
    TensorType,
    Type,
)

# Words that are not dtypes of the notation but would be read as abstract types: almost always a
# misspelt dtype (`float`, `int`, `float33`, `string`).
_LOOKS_LIKE_A_DTYPE = re.compile(r"(bool|str|string|u?int\d*|float\d*|complex\d*|double|half)")


class TypeNotationError(ValueError):
    """Raised by `parse_type` for text that is not a type in compact notation; `position` is
    where."""

    def __init__(self, text: str, position: int, message: str):
        self.text = text
        self.position = position
        # A long text is shown around the position only.
        start = max(0, position - _CONTEXT)
        shown = text[start : position + _CONTEXT]
        before = "..." if start > 0 else ""
        after = "..." if position + _CONTEXT < len(text) else ""
        caret = " " * (len(before) + position - start)
        super().__init__(
            f"{message} (at position {position}):\n  {before}{shown}{after}\n  {caret}^"
        )


_CONTEXT = 60


def parse_type(text: str) -> Type:
    """Parses the compact notation (`<x=float32,y=int32[?]>`, `{int32*}@CLIENTS`, `(T -> U)`) into a
    `Type`.

    `parse_type(str(t)) == t` for every type `t`. Raises `TypeNotationError` (a ValueError) that
    shows the text with a caret where parsing failed and says what was expected there.
    """
    if not isinstance(text, str):
        raise TypeError(f"Expected the compact notation of a type as a str, got {text!r}.")
    return _Parser(text).parse()


class _Parser:
    """A recursive-descent parser over the characters of one notation string."""

    def __init__(self, text: str):
        self._text = text
        self._pos = 0
        self._depth = 0

    def parse(self) -> Type:
        result = self._type()
        self._skip_space()
        if self._pos != len(self._text):
            self._fail("Expected the end of the type")
        return result

    def _fail(self, expected: str) -> NoReturn:
        position = self._pos
        found = self._text[position : position + 1]
        found_text = f", found {found!r}" if found else ", found the end of the text"
        raise TypeNotationError(self._text, position, expected + found_text)

    def _skip_space(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos].isspace():
            self._pos += 1

    def _peek(self) -> str:
        """The next character after any whitespace, or '' at the end."""
        self._skip_space()
        return self._text[self._pos : self._pos + 1]

    def _accept(self, token: str) -> bool:
        self._skip_space()
        if self._text.startswith(token, self._pos):
            self._pos += len(token)
            return True
        return False

    def _expect(self, token: str, expected: str | None = None) -> None:
        if not self._accept(token):
            self._fail(expected or f"Expected {token!r}")

    def _identifier(self) -> str | None:
        self._skip_space()
        end = self._pos
        while end < len(self._text) and (self._text[end].isalnum() or self._text[end] == "_"):
            end += 1
        word = self._text[self._pos : end]
        if not word.isidentifier():
            return None
        self._pos = end
        return word

    def _build(self, start: int, constructor: type[Type], *args: object) -> Type:
        """Calls a type constructor, reporting what it refuses as a notation error at `start`."""
        try:
            return constructor(*args)
        except (TypeError, ValueError) as error:
            raise TypeNotationError(
                self._text, start, f"Invalid type: {str(error).rstrip('.')}"
            ) from None

    def _type(self) -> Type:
        self._skip_space()
        start = self._pos
        if self._depth == MAX_NESTING:
            raise TypeNotationError(
                self._text, start, f"Types nested more than {MAX_NESTING} deep are not supported"
            )
        self._depth += 1
        try:
            result = self._primary()
        finally:
            self._depth -= 1
        while True:
            if self._accept("*"):
                result = self._build(start, SequenceType, result)
            elif self._peek() == "@":
                result = self._build(start, FederatedType, result, self._placement(), True)
            else:
                return result

    def _placement(self) -> Placement:
        self._expect("@")
        position = self._pos
        name = self._identifier()
        if name is None:
            self._fail("Expected a placement (CLIENTS or SERVER)")
        try:
            return placement_from_name(name)
        except ValueError:
            raise TypeNotationError(
                self._text, position, f"Unknown placement {name!r}: expected CLIENTS or SERVER"
            ) from None

    def _primary(self) -> Type:
        char = self._peek()
        start = self._pos
        if char == "<":
            return self._struct()
        if char == "{":
            self._pos += 1
            member = self._type()
            self._expect("}", "Expected '}' closing the member type of a federated type")
            if self._peek() != "@":
                self._fail("Expected '@' and a placement after '{...}'")
            return self._build(start, FederatedType, member, self._placement(), False)
        if char == "(":
            return self._function()
        name = self._identifier()
        if name is None:
            self._fail("Expected a type")
        if name == "placement":
            return PlacementType()
        if name in DTYPE_NAMES:
            return self._build(start, TensorType, name, self._shape())
        if self._peek() == "[" or _LOOKS_LIKE_A_DTYPE.fullmatch(name):
            names = ", ".join(sorted(DTYPE_NAMES))
            raise TypeNotationError(
                self._text, start, f"Unknown dtype {name!r}: expected one of {names}"
            )
        return self._build(start, AbstractType, name)

    def _shape(self) -> Shape:
        if not self._accept("["):
            return ()
        if self._accept("*"):
            self._expect("]", "Expected ']' after '[*' (a tensor of unknown rank)")
            return UNKNOWN_RANK
        dims: list[int | None] = []
        if self._accept("]"):
            return ()
        while True:
            dims.append(self._dimension())
            if self._accept("]"):
                return tuple(dims)
            self._expect(",", "Expected ',' or ']' in a tensor shape")

    def _dimension(self) -> int | None:
        if self._accept("?"):
            return None
        self._skip_space()
        end = self._pos
        while end < len(self._text) and self._text[end] in "0123456789":
            end += 1
        if end == self._pos:
            self._fail("Expected a dimension (a non-negative int or '?')")
        digits = self._text[self._pos : end]
        self._pos = end
        return int(digits)

    def _struct(self) -> Type:
        self._expect("<")
        elements: list[tuple[str | None, Type]] = []
        start = self._pos - 1
        if self._accept(">"):
            return StructType(elements)
        while True:
            elements.append(self._element())
            if self._accept(">"):
                return self._build(start, StructType, elements)
            self._expect(",", "Expected ',' or '>' in a struct type")

    def _element(self) -> tuple[str | None, Type]:
        self._skip_space()
        mark = self._pos
        name = self._identifier()
        if name is not None and self._accept("="):
            return name, self._type()
        self._pos = mark
        return None, self._type()

    def _function(self) -> Type:
        self._expect("(")
        start = self._pos - 1
        parameter = None
        self._skip_space()
        if not self._text.startswith("->", self._pos):
            parameter = self._type()
        self._expect("->", "Expected '->' in a function type")
        result = self._type()
        self._expect(")", "Expected ')' closing a function type")
        return self._build(start, FunctionType, parameter, result)
