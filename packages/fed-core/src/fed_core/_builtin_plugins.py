"""fed-core's own plugin: the local executor and fed's intrinsics, registered through the same entry-point
group and hooks as third-party plugins."""

from __future__ import annotations

from fed_core.plugins import Registry, hookimpl


@hookimpl
def fed_register_executors(register: Registry) -> None:
    from fed_core.execution.local import create_local_executor

    register.add("local", create_local_executor)


@hookimpl
def fed_register_intrinsics(register: Registry) -> None:
    from fed_core.intrinsics.definitions import BUILTINS

    for uri, definition in BUILTINS.items():
        register.add(uri, lambda definition=definition: definition)
