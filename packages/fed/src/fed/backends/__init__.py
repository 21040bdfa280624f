"""`fed.backends`: choosing the execution context, with TFF's names.

`set_context(name, **options)` makes a context on any registered executor the default ("local", "ray",
or a third party's); `create_context` makes one without installing it.
"""

from fed.backends import native, ray, test, xla
from fed_core.execution import create_context, set_context

__all__ = ["create_context", "native", "ray", "set_context", "test", "xla"]
