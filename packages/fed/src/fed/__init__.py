"""fed: federated computation and federated learning, in one namespace shaped like TensorFlow Federated's.

`import fed as tff` runs most TFF programs. Names are implemented in the package that owns them (fed_types,
fed_core, fed_tensorflow, fed_aggregators, fed_learning, fed_datasets) and re-exported here. Submodules that
need TensorFlow (`fed.tensorflow`, `fed.learning`, `fed.aggregators`, `fed.simulation`) load on first use,
so `import fed` alone stays light.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

from fed import backends, structure, types
from fed.__about__ import __version__
from fed_core import (
    Computation,
    federated_aggregate,
    federated_apply,
    federated_broadcast,
    federated_computation,
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
    framework,
    sequence_map,
    sequence_reduce,
    sequence_sum,
)
from fed_core.framework import lazy_exports
from fed_types import (
    CLIENTS,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    NamedTupleType,
    PlacementType,
    SequenceType,
    StructType,
    StructWithPythonType,
    TensorType,
    Type,
    to_type,
)


def type_at_clients(member: Any, all_equal: bool = False) -> FederatedType:
    """`{member}@CLIENTS` (TFF's helper)."""
    return FederatedType(member, CLIENTS, all_equal)


def type_at_server(member: Any) -> FederatedType:
    """`member@SERVER` (TFF's helper)."""
    return FederatedType(member, SERVER)


# Submodules and names that import TensorFlow, loaded on first access.
_LAZY = {
    "tensorflow": "_tensorflow:",
    "templates": "_templates:",
    "utils": "_utils:",
    "simulation": "_simulation:",
    "learning": "_learning:",
    "aggregators": "_aggregators:",
    "tf_computation": "_tensorflow:computation",
    "tensorflow_computation": "_tensorflow:computation",
    "experimental": "_experimental:",
    "program": "_program:",
    "analytics": "_analytics:",
}
# Names of optional parts, present when their package is installed (fed-jax: `pip install fed-framework[jax]`);
# without it they are missing attributes, with a message saying what to install.
_OPTIONAL = {"jax": "_jax:", "jax_computation": "_jax:computation"}
_HAS_JAX = importlib.util.find_spec("fed_jax") is not None
_lazy_getattr, __dir__ = lazy_exports(__name__, {**_LAZY, **(_OPTIONAL if _HAS_JAX else {})})


def _submodule(fullname: str) -> ModuleType | None:
    """The module that `fed.X.Y...` names: the attribute chain from `fed`, or the real submodule of a
    package along it that is not imported yet; None if there is none."""
    value: Any = sys.modules[__name__]
    for part in fullname.split(".")[1:]:
        try:
            value = getattr(value, part)
        except AttributeError:
            if not isinstance(value, ModuleType):
                return None
            try:
                value = importlib.import_module(f"{value.__name__}.{part}")
            except ImportError:
                return None
    return value if isinstance(value, ModuleType) else None


class _SubmoduleImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes the lazy submodules importable by name, as TFF's are: `import fed.learning`,
    `from fed.aggregators import dp`, `import fed.simulation.datasets.emnist`. The name `fed.X.Y` is bound
    to the module that the attribute `fed.X.Y` is (never a second copy of it); the module keeps its own
    `__name__`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, rest = fullname.partition(".")
        if package != __name__ or rest.partition(".")[0] not in _lazy_names:
            return None
        module = _submodule(fullname)
        if module is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> ModuleType | None:
        module = _submodule(spec.name)
        if module is not None and not hasattr(module, "__path__"):
            module.__path__ = []  # so that `fed.X.Y` can be imported too
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module is already loaded."""


def __getattr__(name: str) -> Any:
    if name in _OPTIONAL and not _HAS_JAX:
        raise AttributeError(
            f"fed.{name} needs the fed-jax package (and JAX): pip install 'fed-framework[jax]'"
        )
    return _lazy_getattr(name)


# The submodules that `import fed.X` reaches through this importer: the lazy ones, and fed-core's `framework`.
_lazy_names = frozenset(_LAZY) | {"framework"} | (frozenset(_OPTIONAL) if _HAS_JAX else frozenset())
if not any(isinstance(finder, _SubmoduleImporter) for finder in sys.meta_path):
    sys.meta_path.insert(0, _SubmoduleImporter())

__all__ = [
    "CLIENTS",
    "SERVER",
    "AbstractType",
    "Computation",
    "FederatedType",
    "FunctionType",
    "NamedTupleType",
    "PlacementType",
    "SequenceType",
    "StructType",
    "StructWithPythonType",
    "TensorType",
    "Type",
    "__version__",
    "backends",
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
    "sequence_map",
    "sequence_reduce",
    "sequence_sum",
    "structure",
    "to_type",
    "type_at_clients",
    "type_at_server",
    "types",
    *_LAZY,
]
