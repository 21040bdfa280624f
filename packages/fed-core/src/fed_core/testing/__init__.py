"""Test support for fed and its plugins.

fed-core registers a pytest plugin (entry point ``fed_core`` in the group ``pytest11``), so its
fixtures are available in any pytest run where fed-core is installed:

- ``fed_plugin_system``: an isolated PluginSystem that loads no installed plugin; register your
  plugin object into it and inspect what it registered.
- ``fed_default_plugin_system``: a fresh PluginSystem with the installed plugins, made fed's default
  for the test.
- ``fed_python_frontend``: the "python" test frontend's backend, registered into fed's default plugin
  system (where it stays for the rest of the process).

It also holds the "python" frontend: plain Python/numpy functions as compiled leaves
(`python_computation`), for testing the core and executor plugins without TensorFlow. Its backend runs
code stored in computations, so it is registered only on request (`register_python_frontend`), never by
an installed entry point.
"""

from fed_core.testing._python_frontend import (
    PythonBackend,
    python_backend,
    python_computation,
    register_python_frontend,
)

__all__ = ["PythonBackend", "python_backend", "python_computation", "register_python_frontend"]
