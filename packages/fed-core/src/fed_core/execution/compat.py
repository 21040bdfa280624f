"""TFF's names for building an executor stack, mapped onto fed's executor interface.

TFF assembles contexts from executor factories: `local_executor_factory(leaf_executor_fn=fn)`, where
`fn(device)` returns a leaf executor such as `DataExecutor(EagerTFExecutor(device), data_backend=...)`,
and `ExecutionContext(executor_fn=factory)`. fed has one local executor whose options say the same
things, so these names build it: the data backend of a `DataExecutor` becomes the executor's
`data_backend`, and the devices of the leaf executors become its `devices`. TFF's other factory options
are accepted where they mean something here (`default_num_clients`, `max_fanout` as the concurrency,
`client_tf_devices`), and refused with NotImplementedError where they do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from fed_core.execution.local import LocalExecutor


@dataclasses.dataclass(frozen=True)
class _LogicalDevice:
    """What TFF passes to a `leaf_executor_fn`: a device's name and type, like `tf.config.LogicalDevice`."""

    name: str
    device_type: str


_DEFAULT_DEVICE = _LogicalDevice("/job:localhost/replica:0/task:0/device:CPU:0", "CPU")


@dataclasses.dataclass(frozen=True)
class EagerTFExecutor:
    """TFF's leaf executor for TensorFlow computations on `device` (None: TensorFlow's choice)."""

    device: Any = None


@dataclasses.dataclass(frozen=True)
class DataExecutor:
    """TFF's executor that materializes `Data` blocks with `data_backend` and runs the rest on
    `target_executor`."""

    target_executor: Any
    data_backend: Any

    def __post_init__(self) -> None:
        if not callable(getattr(self.data_backend, "materialize", None)):
            raise TypeError(
                f"DataExecutor needs a data_backend with a materialize method (a "
                f"fed_core.execution.DataBackend), got {self.data_backend!r}."
            )


class ExecutorFactory:
    """Makes the local executor with the options a TFF executor factory described."""

    def __init__(
        self,
        default_num_clients: int = 0,
        max_concurrency: int | None = None,
        devices: Sequence[str] | None = None,
        data_backend: Any = None,
    ):
        self.default_num_clients = default_num_clients or None
        self._max_concurrency = max_concurrency
        self._devices = None if devices is None else list(devices)
        self._data_backend = data_backend

    def create_executor(self, cardinalities: Any = None) -> LocalExecutor:
        return LocalExecutor(
            self._max_concurrency, devices=self._devices, data_backend=self._data_backend
        )

    def __call__(self) -> LocalExecutor:
        return self.create_executor()


def _device_name(device: Any) -> str | None:
    if device is None or device == _DEFAULT_DEVICE:
        return None
    return device if isinstance(device, str) else getattr(device, "name", None)


def local_executor_factory(
    default_num_clients: int = 0,
    max_fanout: int = 100,
    clients_per_thread: int = 1,
    server_tf_device: Any = None,
    client_tf_devices: Sequence[Any] = (),
    reference_resolving_clients: bool = True,
    support_sequence_ops: bool = False,
    leaf_executor_fn: Callable[[Any], Any] | None = None,
    local_computation_factory: Any = None,
) -> ExecutorFactory:
    """TFF's factory of a local executor stack, as fed's local executor (see the module's doc)."""
    if (
        server_tf_device is not None
        or local_computation_factory is not None
        or clients_per_thread != 1
    ):
        raise NotImplementedError(
            "local_executor_factory: server_tf_device, clients_per_thread and local_computation_factory "
            "have no meaning for fed's local executor; choose client devices with client_tf_devices."
        )
    devices = [name for name in (_device_name(d) for d in client_tf_devices) if name is not None]
    data_backend = None
    if leaf_executor_fn is not None:
        leaf = leaf_executor_fn(_DEFAULT_DEVICE)
        if isinstance(leaf, DataExecutor):
            data_backend = leaf.data_backend
            leaf = leaf.target_executor
        if not isinstance(leaf, EagerTFExecutor):
            raise NotImplementedError(
                f"local_executor_factory: the leaf executor {leaf!r} is not one fed can map onto its local "
                f"executor (an EagerTFExecutor, optionally wrapped in a DataExecutor)."
            )
        device = _device_name(leaf.device)
        if device is not None and device not in devices:
            devices.append(device)
    return ExecutorFactory(
        default_num_clients=default_num_clients,
        max_concurrency=max_fanout if max_fanout and max_fanout > 0 else None,
        devices=devices or None,
        data_backend=data_backend,
    )


local_cpp_executor_factory = local_executor_factory
"""TFF's name for `local_executor_factory` (fed has one local executor)."""
