"""The errors for what Python, numpy, TensorFlow and JAX would do to a symbolic value while a federated
computation is traced.

Arithmetic, comparisons and tensor operations are not part of the federated language: they run in a
frontend's computation, applied to each member of a federated value with `federated_map`. Without these
errors, a first federated computation that writes `v + 1.0` or `tf.reduce_sum(v)` gets Python's or the
framework's message about an unknown class, and `v == 1` is silently False.
"""

from __future__ import annotations

import sys
from types import FrameType

from fed_core._errors import is_internal_file
from fed_types import FederatedType, Type

# Frameworks whose functions may receive a symbolic value, with the name users import them as.
_FRAMEWORKS = {"tensorflow": "tf", "keras": "keras", "jax": "jax", "numpy": "np"}
# The functions that frameworks wrap their public operations in: never the operation.
_WRAPPERS = frozenset({"wrapper", "wrapped", "error_handler", "op_dispatch_handler"})

# The functions TensorFlow implements a tensor's operators with (`tensor + value`), and the symbols of
# the operators they name.
_OPERATOR_WRAPPERS = frozenset({"binary_op_wrapper", "r_binary_op_wrapper"})
_SYMBOLS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "truediv": "/",
    "div": "/",
    "floordiv": "//",
    "mod": "%",
    "pow": "**",
    "matmul": "@",
    "and": "&",
    "or": "|",
    "xor": "^",
}


def operation_error(value_type: Type, operation: str | None = None) -> TypeError:
    """The error for applying `operation` (such as `'+'` or `'tf.add'`; found on the stack when None) to a
    symbolic value of type `value_type`."""
    if operation is None:
        operation = _framework_operation() or "a TensorFlow, JAX or numpy operation"
    if isinstance(value_type, FederatedType):
        what = f"a federated value {value_type}"
        advice = (
            "use federated_map with a computation (such as a tensorflow.computation) that applies "
            "it to each member"
        )
    else:
        what = f"the value of type {value_type} of a federated computation"
        advice = (
            "compute it in a computation (such as a tensorflow.computation) and call that with the "
            "value"
        )
    location = _user_location()
    where = f"\n  at {location}" if location else ""
    return TypeError(f"cannot apply {operation} to {what}: {advice}.{where}")


def _framework(frame: FrameType) -> str | None:
    """The alias of the framework whose module `frame` runs in (`tf`, `np` ...), or None."""
    module = frame.f_globals.get("__name__", "")
    return _FRAMEWORKS.get(module.partition(".")[0]) if isinstance(module, str) else None


def _is_users(frame: FrameType) -> bool:
    return _framework(frame) is None and not is_internal_file(frame.f_code.co_filename)


def _frames() -> list[FrameType]:
    """The frames of the stack, innermost first."""
    frames = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def _framework_operation() -> str | None:
    """`tf.add` when the user's code called `tf.add`, which then converted a symbolic value: the
    outermost public function of a framework between the user's frame and this one."""
    frames = _frames()
    user = next((k for k, frame in enumerate(frames) if _is_users(frame)), len(frames))
    for frame in reversed(frames[:user]):
        alias = _framework(frame)
        name = frame.f_code.co_name
        if alias is None:
            continue
        if name in _OPERATOR_WRAPPERS:
            # A tensor's operator (`tensor + value`): the wrapper's closure names it.
            operator = frame.f_locals.get("op_name")
            return _SYMBOLS.get(operator, f"__{operator}__") if operator else None
        if not name.startswith("_") and name not in _WRAPPERS:
            # TensorFlow records the public names of its functions (`nn.relu` for gen_nn_ops.relu).
            public = getattr(frame.f_globals.get(name), "_tf_api_names", None)
            return f"{alias}.{public[0] if public else name}"
    return None


def _user_location() -> str:
    """`file:line` of the innermost frame of the user's code."""
    for frame in _frames():
        if _is_users(frame):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
    return ""
