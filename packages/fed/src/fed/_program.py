"""`fed.program`: data sources, program state and release managers for long training programs."""

from fed_learning.program import *  # noqa: F403
from fed_learning.program import __all__  # noqa: F401
