"""`fed.backends`: choosing the execution context, with TFF's names."""

from fed.backends import native, test, xla

__all__ = ["native", "test", "xla"]
