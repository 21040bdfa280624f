"""The hooks a fed plugin can implement.

A plugin is a module or object with functions marked ``@fed_core.hookimpl`` and named after the
hooks below. Installed plugins are found through the entry-point group ``fed_core.plugins``; see
docs/plugins.md. fed calls each hook of each plugin once, the first time anything looks up a
registered entry, with a ``register`` bound to that plugin's distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fed_core.plugins import Registry

PROJECT_NAME = "fed"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def fed_register_backends(register: Registry) -> None:
    """Register backends: what runs the compiled leaves of a frontend (TensorFlow, JAX, ...).

    Called once per plugin when fed's plugins are first loaded. Call ``register.add(frontend,
    factory)`` where ``frontend`` is the name the frontend writes into its compiled leaves and
    ``factory(**options)`` returns a ``fed_core.execution.Backend``; it is called without options, or
    with ``devices=[...]`` when an execution context is given devices. Only leaves whose frontend has
    a registered backend are read from computation files.
    """


@hookspec
def fed_register_frontends(register: Registry) -> None:
    """Deprecated name of :func:`fed_register_backends` (it registers into the same registry)."""


@hookspec
def fed_register_executors(register: Registry) -> None:
    """Register executors: what evaluates computations (local, distributed).

    Called once per plugin when fed's plugins are first loaded. Call
    ``register.add(name, factory)`` for each executor, where ``factory(**options)`` returns a
    ``fed_core.execution.Executor`` from the keyword options a user gives to
    ``fed_core.execution.create_context(name, **options)`` (all but ``default_num_clients``, which
    goes to the context). The factory is not called at registration: keep heavy imports inside it.
    """


@hookspec
def fed_register_aggregators(register: Registry) -> None:
    """Register aggregators by name, so aggregation pipelines can be written as configuration.

    Called once per plugin when fed's plugins are first loaded. Call
    ``register.add(name, factory)`` for each aggregator, where ``factory`` takes the keyword
    arguments of the configuration and returns an aggregation factory.
    """


@hookspec
def fed_register_datasets(register: Registry) -> None:
    """Register federated data sets by name.

    Called once per plugin when fed's plugins are first loaded. Call
    ``register.add(name, factory)`` for each data set, where ``factory`` takes keyword options
    (such as a cache directory) and returns the data set's client data. Do not download or read
    data at registration: do it when the factory is called.
    """


@hookspec
def fed_register_intrinsics(register: Registry) -> None:
    """Register intrinsics that a backend adds to fed's federated language.

    Called once per plugin when fed's plugins are first loaded. Call
    ``register.add(uri, factory)`` for each intrinsic, where ``factory()`` returns its
    ``fed_core.framework.IntrinsicDefinition`` (URI, type signature, kind and local implementation).
    Prefix the URI with your plugin's name so that it cannot clash with fed's own intrinsics
    (``federated_sum``, ...). Users call it through ``fed_core.framework.intrinsic_operator(uri)``.
    """


@hookspec
def fed_register_data_backends(register: Registry) -> None:
    """Register data backends: what materializes ``Data`` blocks of a URI scheme.

    Called once per plugin when fed's plugins are first loaded. Call ``register.add(scheme,
    factory)`` where ``factory()`` returns a ``fed_core.execution.DataBackend`` for URIs of the form
    ``scheme://...``; executors use it for the ``Data`` blocks of computations and data descriptors
    when their context was not given a data backend of its own.
    """
