"""`fed.structure`: TFF's functions on `Struct`s and nests of Python containers."""

from fed_types.structure import *  # noqa: F403
from fed_types.structure import __all__  # noqa: F401
