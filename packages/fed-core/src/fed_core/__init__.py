"""fed-core: the federated language of fed, its execution, and the plugin system."""

from fed_core import execution, framework, templates
from fed_core.__about__ import __version__
from fed_core._errors import FederatedTypeError
from fed_core.plugins import hookimpl
from fed_core.tracing.computation import Computation, PolymorphicComputation
from fed_core.tracing.operators import (
    federated_aggregate,
    federated_apply,
    federated_broadcast,
    federated_eval,
    federated_map,
    federated_max,
    federated_mean,
    federated_min,
    federated_secure_modular_sum,
    federated_secure_sum,
    federated_secure_sum_bitwidth,
    federated_select,
    federated_sum,
    federated_value,
    federated_zip,
    sequence_map,
    sequence_reduce,
    sequence_sum,
)
from fed_core.tracing.tracer import federated_computation

__all__ = [
    "Computation",
    "FederatedTypeError",
    "PolymorphicComputation",
    "__version__",
    "execution",
    "federated_aggregate",
    "federated_apply",
    "federated_broadcast",
    "federated_computation",
    "federated_eval",
    "federated_map",
    "federated_max",
    "federated_mean",
    "federated_min",
    "federated_secure_modular_sum",
    "federated_secure_sum",
    "federated_secure_sum_bitwidth",
    "federated_select",
    "federated_sum",
    "federated_value",
    "federated_zip",
    "framework",
    "hookimpl",
    "sequence_map",
    "sequence_reduce",
    "sequence_sum",
    "templates",
]
