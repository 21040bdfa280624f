"""The documentation site (docs/, mkdocs.yml).

Every ```python block of every page in docs/ runs: a page's blocks in order, in one namespace, as a reader
would run them one after another. A block is left out only when the line before it is `<!-- no-run -->`
(kept for what needs a cluster or the network). A page may define `test_*` functions, which then run too,
with fed's plugin fixtures. The site builds with `mkdocs build --strict`, and its API reference shows every
name each package exports.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fed_core import execution, plugins

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
PACKAGES = [
    "fed_types",
    "fed_core",
    "fed_tensorflow",
    "fed_learning",
    "fed_aggregators",
    "fed_datasets",
    "fed_analytics",
    "fed_jax",
    "fed_ray",
]
_FENCE = re.compile(r"^(?P<indent> *)```python\s*$")


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The page's ```python blocks that run, each with the line number of its first line of code."""
    lines = page.read_text().splitlines()
    blocks = []
    number = 0
    while number < len(lines):
        fence = _FENCE.match(lines[number])
        if fence is None:
            number += 1
            continue
        indent = fence["indent"]
        start = number + 1
        end = start
        while lines[end].strip() != "```":
            end += 1
        previous = next((line.strip() for line in reversed(lines[:number]) if line.strip()), "")
        if previous != NO_RUN:
            code = "\n".join(line.removeprefix(indent) for line in lines[start:end])
            blocks.append((start + 1, code))
        number = end + 1
    return blocks


PAGES = [page for page in sorted(DOCS.glob("*.md")) if python_blocks(page)]


def _page_fixtures() -> dict[str, object]:
    return {
        "fed_plugin_system": lambda: plugins.PluginSystem(
            autoload=False, disabled=(), builtins=False
        ),
        "fed_default_plugin_system": plugins.PluginSystem,
    }


def _run_page_tests(namespace: dict[str, object]) -> None:
    """Runs the `test_*` functions a page defines (a plugin's tests, say), with fed's plugin fixtures."""
    fixtures = _page_fixtures()
    for name, test in list(namespace.items()):
        if not (name.startswith("test_") and inspect.isfunction(test)):
            continue
        arguments = {
            parameter: fixtures[parameter]() for parameter in inspect.signature(test).parameters
        }
        previous = None
        if "fed_default_plugin_system" in arguments:
            previous = plugins._swap_default(arguments["fed_default_plugin_system"])
        try:
            test(**arguments)
        finally:
            if previous is not None:
                plugins._swap_default(previous)


def _ray_is_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.mark.parametrize("page", PAGES, ids=[page.stem for page in PAGES])
def test_the_pages_examples_run_in_order(page, fed_default_plugin_system, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what an example writes goes to a fresh folder
    previous = execution.get_context()
    ray_was_running = _ray_is_running()
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for line, code in python_blocks(page):
            # Padded so that a failure's traceback shows the line of the page.
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)  # noqa: S102
        _run_page_tests(namespace)
    finally:
        current = execution.get_context()
        if current is not previous:  # a context the page made: released, and the previous one back
            execution.set_default_context(previous)
            current.close()
        if _ray_is_running() and not ray_was_running:  # a page that started Ray leaves no cluster
            sys.modules["ray"].shutdown()


def test_blocks_are_found_and_left_out_only_when_marked(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nx = 1\n```\n\n<!-- no-run -->\n```python\nconnect()\n```\n\n"
        "- A list item:\n\n  ```python\n  y = x + 1\n  ```\n\n```console\n$ fed plugins\n```\n"
    )
    assert python_blocks(page) == [(4, "x = 1"), (15, "y = x + 1")]


def test_the_key_pages_run_and_few_blocks_are_left_out():
    """The guides' main pages have examples that run, and at most a tenth of all blocks are left out."""
    pages = sorted(DOCS.glob("*.md"))
    assert {"index", "getting-started", "learning", "coming-from-tff"} <= {p.stem for p in PAGES}
    skipped = sum(page.read_text().count(NO_RUN) for page in pages)
    total = sum(page.read_text().count("```python") for page in pages)
    assert skipped <= total // 10, f"{skipped} of {total} Python blocks are marked {NO_RUN}"


def test_the_plugins_page_has_an_example_for_every_hook():
    text = (DOCS / "plugins.md").read_text()
    for kind in plugins.KINDS:
        hook = plugins.KIND_SPECS[kind].hook
        assert f"### {hook}" in text
        section = text.split(f"### {hook}", 1)[1].split("\n### ", 1)[0]
        assert "```python" in section, f"the {hook} section has no example"
        assert hook in section and "register.add(" in section
    # The tests a plugin author would write, which the page's run calls with fed's fixtures.
    assert (
        len(
            re.findall(
                r"^def test_\w+\((fed_plugin_system|fed_default_plugin_system)\)", text, re.M
            )
        )
        >= 2
    )


def test_the_frontend_guide_covers_what_a_frontend_registers_and_carries():
    text = (DOCS / "writing-a-frontend.md").read_text()
    for needed in [
        "CompiledComputation(frontend, payload, type_signature, name)",
        "fed_register_backends",
        "make_decorator",
        "LoadedComputation",
        "ClientValues(stacked=",
        "fed_plugin_system",
        "never Python code",
    ]:
        assert needed in text, needed


_DOTTED = re.compile(r"(fed|tff)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _resolve(parts: list[str]) -> object:
    import fed

    value: object = fed
    for part in parts:
        value = getattr(value, part)
    return value


def test_the_tff_page_names_only_what_fed_has_and_lacks():
    """Every `fed.…` and `tff.…` name on the TFF page exists in fed (`tff` standing for `import fed as
    tff`), except the names the page lists as missing, which must be missing."""
    text = re.sub(r"```.*?```", "", (DOCS / "coming-from-tff.md").read_text(), flags=re.DOTALL)
    head, missing_section = text.split("## What fed does not have", 1)
    missing_section, tail = missing_section.split("\n## ", 1)
    present, missing = [], []
    for section, names in ((head + tail, present), (missing_section, missing)):
        for span in re.findall(r"`([^`]+)`", section):
            found = _DOTTED.match(span)
            if found is not None and not (found[1] == "fed" and section is missing_section):
                names.append(found[0])
            elif found is not None:
                present.append(found[0])
    assert len(present) > 150 and len(missing) > 30
    for name in present:
        _resolve(name.split(".")[1:])  # AttributeError names what is not there
    for name in missing:
        with pytest.raises(AttributeError):
            _resolve(name.split(".")[1:])
            pytest.fail(f"the page says fed lacks {name}, but fed has it")


def _exports(module_file: Path) -> list[str]:
    """The names in a module's `__all__`, read from its source."""
    for statement in ast.parse(module_file.read_text()).body:
        if (
            isinstance(statement, ast.Assign)
            and any(getattr(target, "id", None) == "__all__" for target in statement.targets)
            and isinstance(statement.value, ast.List)
        ):
            return [e.value for e in statement.value.elts if isinstance(e, ast.Constant)]
    return []


def public_names(package: str) -> list[str]:
    """Every public name of a package, dotted: its `__all__`, and that of each public submodule."""
    (init,) = ROOT.glob(f"packages/*/src/{package}/__init__.py")

    def walk(dotted: str, module_file: Path) -> list[str]:
        names = []
        for name in _exports(module_file):
            if name == "__version__":
                continue
            names.append(f"{dotted}.{name}")
            if module_file.name == "__init__.py":
                for submodule in (
                    module_file.parent / f"{name}.py",
                    module_file.parent / name / "__init__.py",
                ):
                    if submodule.exists():
                        names += walk(f"{dotted}.{name}", submodule)
        return names

    return walk(package, init)


def test_the_api_reference_has_a_page_per_package():
    for package in PACKAGES:
        page = DOCS / "reference" / f"{package}.md"
        assert f"::: {package}\n" in page.read_text(), page
    assert len(public_names("fed_datasets")) > 20


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_public_name_in_the_reference(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-5000:]
    assert (site / "getting-started" / "index.html").exists()
    for package in PACKAGES:
        html = (site / "reference" / package / "index.html").read_text()
        anchors = set(re.findall(r'id="([^"]+)"', html))
        missing = [name for name in public_names(package) if name not in anchors]
        assert not missing, f"the reference of {package} lacks {missing}"
