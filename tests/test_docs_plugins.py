"""Every Python example of docs/plugins.md runs, in order, as a plugin author would run it; the tests the
page shows for a plugin's own test suite run too, with fed's fixtures."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from fed_core import plugins

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def test_the_page_has_an_example_for_every_hook():
    text = DOCS.read_text()
    for kind in plugins.KINDS:
        hook = plugins.KIND_SPECS[kind].hook
        assert f"### {hook}" in text
        section = text.split(f"### {hook}", 1)[1].split("\n### ", 1)[0]
        assert "```python" in section, f"the {hook} section has no example"
        assert hook in section and "register.add(" in section


def test_the_examples_run_in_order(fed_default_plugin_system):
    namespace: dict[str, object] = {"__name__": "plugins_md"}
    blocks = python_blocks()
    assert len(blocks) >= len(plugins.KINDS) + 1
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{DOCS}:example {number}", "exec")
        exec(code, namespace)  # noqa: S102 (the page's own examples)
    tests = {
        name: fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)
    }
    assert len(tests) >= 2
    fixtures = {
        "fed_plugin_system": lambda: plugins.PluginSystem(
            autoload=False, disabled=(), builtins=False
        ),
        "fed_default_plugin_system": plugins.PluginSystem,
    }
    for test in tests.values():
        arguments = {}
        for parameter in inspect.signature(test).parameters:
            system = fixtures[parameter]()
            if parameter == "fed_default_plugin_system":
                previous = plugins._swap_default(system)
            arguments[parameter] = system
        try:
            test(**arguments)
        finally:
            if "fed_default_plugin_system" in arguments:
                plugins._swap_default(previous)
