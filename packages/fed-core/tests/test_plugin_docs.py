"""docs/plugins.md documents every hook of fed_core.hookspecs (and no hook that does not exist)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from fed_core import hookspecs
from fed_core.plugins import KIND_SPECS, KINDS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    return [name for name in dir(hookspecs) if manager.parse_hookspec_opts(hookspecs, name)]


LEGACY_HOOKS = sorted(spec.legacy_hook for spec in KIND_SPECS.values() if spec.legacy_hook)
CURRENT_HOOKS = sorted(KIND_SPECS[kind].hook for kind in KINDS)


def documented_sections() -> dict[str, str]:
    """The text under each ``### name`` heading of the docs, by name."""
    parts = re.split(r"^### +(\S+) *$", DOCS.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_there_is_one_hook_per_kind_taking_a_register() -> None:
    assert CURRENT_HOOKS == sorted(f"fed_register_{kind}" for kind in KINDS)
    assert sorted(hook_names()) == sorted(CURRENT_HOOKS + LEGACY_HOOKS)
    for name in hook_names():
        assert list(inspect.signature(getattr(hookspecs, name)).parameters) == ["register"]


@pytest.mark.parametrize("name", CURRENT_HOOKS)
def test_each_hook_is_documented_with_an_example(name: str) -> None:
    sections = documented_sections()
    assert name in sections, f"{name} has no '### {name}' section in {DOCS}"
    assert f"`{name}(register)`" in sections[name]
    assert re.search(rf"def {name}\((self, )?register\):", sections[name])


@pytest.mark.parametrize("name", CURRENT_HOOKS)
def test_each_hookspec_says_when_it_is_called_and_what_to_register(name: str) -> None:
    docstring = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Called once per plugin when fed's plugins are first loaded." in docstring
    assert re.search(r"register\.add\(\w+,\s+factory\)", docstring)


@pytest.mark.parametrize("name", LEGACY_HOOKS)
def test_each_first_release_hook_names_its_successor(name: str) -> None:
    docstring = inspect.getdoc(getattr(hookspecs, name)) or ""
    [successor] = [s.hook for s in KIND_SPECS.values() if s.legacy_hook == name]
    assert docstring.startswith("Deprecated name of") and successor in docstring
    assert name in DOCS.read_text()


def test_the_docs_document_no_hook_that_does_not_exist() -> None:
    assert sorted(documented_sections()) == CURRENT_HOOKS


def test_python_examples_in_the_docs_compile() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= len(hook_names())
    for block in blocks:
        compile(block, str(DOCS), "exec")
