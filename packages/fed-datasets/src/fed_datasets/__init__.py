"""fed-datasets: federated data for simulation.

`ClientData` and its implementations (in memory, SQLite, one file per client), the canned data
sets (`emnist`, `shakespeare`, `stackoverflow`, `cifar100`, `digits`), partitioners that turn
centralized arrays into federated data, client samplers, and the composition of a dataset
computation with a process, so that clients build their own datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fed_core.framework import lazy_exports
from fed_datasets.__about__ import __version__

if TYPE_CHECKING:
    from fed_datasets import cifar100, digits, emnist, shakespeare, stackoverflow
    from fed_datasets._client_data import ClientData, TestClientData
    from fed_datasets._compositions import (
        MultipleMatchingSequenceTypesError,
        SequenceTypeNotAssignableError,
        SequenceTypeNotFoundError,
        compose_dataset_computation_with_computation,
        compose_dataset_computation_with_iterative_process,
    )
    from fed_datasets._download import DownloadError
    from fed_datasets._file_per_user import FilePerUserClientData
    from fed_datasets._partition import (
        partition_by_client_id,
        partition_dirichlet,
        partition_iid,
        partition_shards,
    )
    from fed_datasets._sampling import build_client_selection_fn, build_uniform_sampling_fn
    from fed_datasets._sql import (
        DatabaseChangedError,
        DatabaseFormatError,
        ElementSpecCompatibilityError,
        SqlClientData,
        load_and_parse_sql_client_data,
        save_to_sql_client_data,
    )

# Where each public name lives. They are imported on first use, so that importing this package
# (as loading fed's plugins does) does not import TensorFlow.
_HOMES = {
    "ClientData": "_client_data",
    "DatabaseChangedError": "_sql",
    "DatabaseFormatError": "_sql",
    "DownloadError": "_download",
    "ElementSpecCompatibilityError": "_sql",
    "FilePerUserClientData": "_file_per_user",
    "MultipleMatchingSequenceTypesError": "_compositions",
    "SequenceTypeNotAssignableError": "_compositions",
    "SequenceTypeNotFoundError": "_compositions",
    "SqlClientData": "_sql",
    "TestClientData": "_client_data",
    "build_client_selection_fn": "_sampling",
    "build_uniform_sampling_fn": "_sampling",
    "cifar100": "cifar100",
    "compose_dataset_computation_with_computation": "_compositions",
    "compose_dataset_computation_with_iterative_process": "_compositions",
    "digits": "digits",
    "emnist": "emnist",
    "load_and_parse_sql_client_data": "_sql",
    "partition_by_client_id": "_partition",
    "partition_dirichlet": "_partition",
    "partition_iid": "_partition",
    "partition_shards": "_partition",
    "save_to_sql_client_data": "_sql",
    "shakespeare": "shakespeare",
    "stackoverflow": "stackoverflow",
}

__all__ = [
    "ClientData",
    "DatabaseChangedError",
    "DatabaseFormatError",
    "DownloadError",
    "ElementSpecCompatibilityError",
    "FilePerUserClientData",
    "MultipleMatchingSequenceTypesError",
    "SequenceTypeNotAssignableError",
    "SequenceTypeNotFoundError",
    "SqlClientData",
    "TestClientData",
    "__version__",
    "build_client_selection_fn",
    "build_uniform_sampling_fn",
    "cifar100",
    "compose_dataset_computation_with_computation",
    "compose_dataset_computation_with_iterative_process",
    "digits",
    "emnist",
    "load_and_parse_sql_client_data",
    "partition_by_client_id",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
    "save_to_sql_client_data",
    "shakespeare",
    "stackoverflow",
]


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
