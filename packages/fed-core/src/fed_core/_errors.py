"""Errors raised while building computations, pointing at the user's code."""

from __future__ import annotations

import os
import traceback

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_FED_PACKAGE_DIRS: list[str] = [_PACKAGE_DIR]


def register_internal_package(path: str) -> None:
    """Marks a package directory as fed-internal, so that error locations skip its frames (frontends call
    this for their own package)."""
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in _FED_PACKAGE_DIRS:
        _FED_PACKAGE_DIRS.append(directory)


def is_internal_file(filename: str) -> bool:
    """True if `filename` is a module of fed's packages (or of Python's import machinery)."""
    path = os.path.abspath(filename)
    if any(path.startswith(d + os.sep) for d in _FED_PACKAGE_DIRS):
        return True
    return "importlib" in path and "_bootstrap" in path


def user_location() -> str:
    """`file:line: code` of the innermost stack frame outside fed's packages, or '' if there is none."""
    for frame in reversed(traceback.extract_stack()):
        if is_internal_file(frame.filename):
            continue
        code = (frame.line or "").strip()
        return (
            f"{frame.filename}:{frame.lineno}: {code}"
            if code
            else f"{frame.filename}:{frame.lineno}"
        )
    return ""


class FederatedTypeError(TypeError):
    """A federated operator was used with a value of the wrong type; raised while tracing.

    The message names the operator, what it expects and what it was given (types in compact notation), and
    the user's source line.
    """

    def __init__(self, operator: str, expected: str, given: str):
        self.operator = operator
        self.expected = expected
        self.given = given
        location = user_location()
        where = f"\n  at {location}" if location else ""
        super().__init__(f"{operator}: expected {expected}, given {given}.{where}")
