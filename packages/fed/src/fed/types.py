"""`fed.types`: type utilities (serialization, Python containers, structure predicates), and
`tensorflow_to_type`, which loads TensorFlow on first use."""

from typing import TYPE_CHECKING, Any

from fed_types.types import *  # noqa: F403
from fed_types.types import __all__ as _types_all

if TYPE_CHECKING:
    from fed_tensorflow import to_type as tensorflow_to_type

__all__ = [*_types_all, "tensorflow_to_type"]


def __getattr__(name: str) -> Any:
    if name == "tensorflow_to_type":  # TFF's name of `fed.tensorflow.to_type`
        from fed_tensorflow import to_type

        return to_type
    raise AttributeError(f"module 'fed.types' has no attribute {name!r}")
