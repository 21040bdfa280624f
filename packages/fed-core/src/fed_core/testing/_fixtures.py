"""The pytest plugin of fed-core: fixtures for testing fed plugins."""

from collections.abc import Iterator

import pytest

from fed_core import plugins

__all__ = ["fed_default_plugin_system", "fed_plugin_system", "fed_python_frontend"]


@pytest.fixture
def fed_plugin_system() -> plugins.PluginSystem:
    """An isolated PluginSystem that loads no installed plugin, not even fed's own.

    Register the plugin under test with ``fed_plugin_system.register(plugin)`` and inspect what
    it registered with ``registry(kind)`` or ``entries()``. fed's own lookups do not see it: use
    ``fed_default_plugin_system`` for that.
    """
    return plugins.PluginSystem(autoload=False, disabled=(), builtins=False)


@pytest.fixture
def fed_default_plugin_system() -> Iterator[plugins.PluginSystem]:
    """A fresh PluginSystem, with the installed plugins, that is fed's default for this test.

    Plugins registered into it are seen by fed's lookups (``fed_core.plugins.get_registry``)
    beside fed's own and the installed ones, and are gone after the test. It follows
    ``FED_DISABLE_PLUGIN_AUTOLOAD`` and ``FED_DISABLED_PLUGINS`` as fed's default does.
    """
    system = plugins.PluginSystem()
    previous = plugins._swap_default(system)
    try:
        yield system
    finally:
        plugins._swap_default(previous)


@pytest.fixture
def fed_python_frontend() -> plugins.PluginSystem:
    """fed's default plugin system, with the "python" test frontend's backend registered into it (it stays
    registered for the rest of the process).

    The backend runs code stored in computations, so no installed entry point registers it: tests that
    run `fed_core.testing.python_computation`s ask for this fixture.
    """
    from fed_core.testing import register_python_frontend

    register_python_frontend()
    return plugins._default_system()
