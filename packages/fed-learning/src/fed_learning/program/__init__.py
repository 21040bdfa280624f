"""`fed.program`: the parts of long training programs (TFF's `tff.program`).

Data sources select each round's clients (`FederatedDataSource`, `ClientDataDataSource`); program state
managers save and resume the state (`FileProgramStateManager`, atomic saves); release managers send each
round's metrics to logs, memory, CSV files or TensorBoard. `run_training_process` (also
`fed.simulation.run_training_process`) is the loop that uses them.
"""

from fed_core.framework import run_sync
from fed_learning.program._data_source import (
    Capability,
    ClientDataDataSource,
    ClientDataIterator,
    FederatedDataSource,
    FederatedDataSourceIterator,
)
from fed_learning.program._loops import (
    EVALUATION_METRICS_PREFIX,
    EVALUATION_TIME_KEY,
    ROUND_NUMBER_KEY,
    TRAINING_TIME_KEY,
    plot_metrics,
    run_training_process,
)
from fed_learning.program._release import (
    CSVFileReleaseManager,
    CSVSaveMode,
    GroupingReleaseManager,
    LoggingReleaseManager,
    MemoryReleaseManager,
    ReleaseManager,
    TensorBoardReleaseManager,
    flat_metrics,
)
from fed_learning.program._state import (
    FileProgramStateManager,
    ProgramStateManager,
    ProgramStateStructureError,
)

__all__ = [
    "EVALUATION_METRICS_PREFIX",
    "EVALUATION_TIME_KEY",
    "ROUND_NUMBER_KEY",
    "TRAINING_TIME_KEY",
    "CSVFileReleaseManager",
    "CSVSaveMode",
    "Capability",
    "ClientDataDataSource",
    "ClientDataIterator",
    "FederatedDataSource",
    "FederatedDataSourceIterator",
    "FileProgramStateManager",
    "GroupingReleaseManager",
    "LoggingReleaseManager",
    "MemoryReleaseManager",
    "ProgramStateManager",
    "ProgramStateStructureError",
    "ReleaseManager",
    "TensorBoardReleaseManager",
    "flat_metrics",
    "plot_metrics",
    "run_sync",
    "run_training_process",
]
