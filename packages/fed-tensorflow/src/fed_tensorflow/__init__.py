"""fed-tensorflow: the TensorFlow frontend and backend of fed.

`computation` traces Python functions written with TensorFlow into fed computations; `fold_dataset` is
the loop over a client's dataset that lets a computation train many clients at once; `DatasetSource`
makes clients' datasets from data held in memory, so that the backend can make a whole cohort's at
once (`Cohort`); `to_type` and
`to_tf_spec` convert between TensorFlow specs and fed types; `configure` chooses the devices and the map
strategy of the backend that runs them. The names load on first use, so that loading fed's plugins does
not import TensorFlow.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from fed_core.framework import lazy_exports, register_internal_package
from fed_tensorflow.__about__ import __version__

if TYPE_CHECKING:
    from fed_tensorflow._backend import configure
    from fed_tensorflow._dense import fold_dataset
    from fed_tensorflow._frontend import computation
    from fed_tensorflow._sources import Cohort, DatasetSource, SourcedDataset
    from fed_tensorflow._type_conversions import to_tf_dtype, to_tf_spec, to_type

register_internal_package(__file__)

__all__ = [
    "Cohort",
    "DatasetSource",
    "SourcedDataset",
    "__version__",
    "computation",
    "configure",
    "fold_dataset",
    "to_tf_dtype",
    "to_tf_spec",
    "to_type",
]

_lazy_getattr, __dir__ = lazy_exports(
    __name__,
    {
        "Cohort": "_sources",
        "DatasetSource": "_sources",
        "SourcedDataset": "_sources",
        "computation": "_frontend",
        "configure": "_backend",
        "fold_dataset": "_dense",
        "to_tf_dtype": "_type_conversions",
        "to_tf_spec": "_type_conversions",
        "to_type": "_type_conversions",
    },
)

_NO_TENSORFLOW = (
    "fed-tensorflow needs TensorFlow 2.21, and none is installed: pip install 'fed-framework[tensorflow]' "
    "(or 'fed-tensorflow[tensorflow]'), or the build you choose, such as 'tensorflow-cpu==2.21.*'."
)


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__" and importlib.util.find_spec("tensorflow") is None:
        raise ModuleNotFoundError(_NO_TENSORFLOW, name="tensorflow")
    return _lazy_getattr(name)
