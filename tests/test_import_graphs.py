"""fed's packages import their own modules without cycles, counting imports inside functions (those under
`if TYPE_CHECKING:` never run, so they do not count), and fed_core's subpackages are layered: their imports
point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGES = {"fed_types": "fed-types", "fed_core": "fed-core"}
ROOT = Path(__file__).resolve().parents[1] / "packages"


def _module_names(package: str) -> dict[str, Path]:
    """Every module of `package` by dotted name; a package's `__init__` goes by the package."""
    source = ROOT / PACKAGES[package] / "src" / package
    modules = {}
    for path in sorted(source.rglob("*.py")):
        parts = (package, *path.relative_to(source).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Imports(ast.NodeVisitor):
    """The package's modules that one module imports, wherever the import statement is."""

    def __init__(self, name: str, is_package: bool, modules: set[str]):
        self.root = name.partition(".")[0]
        self.package = name if is_package else name.rpartition(".")[0]
        self.modules = modules
        self.found: set[str] = set()

    def _add(self, dotted: str) -> None:
        # `import fed_types.a.b` names fed_types.a.b; a name past the last module is an attribute.
        while dotted and dotted not in self.modules:
            dotted = dotted.rpartition(".")[0]
        if dotted:
            self.found.add(dotted)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.visit(node.test)
            for statement in node.body:
                self.visit(statement)
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == self.root or alias.name.startswith(self.root + "."):
                self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - node.level + 1]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        if source != self.root and not source.startswith(self.root + "."):
            return
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self._add(submodule if submodule in self.modules else source)


def import_graph(package: str) -> dict[str, set[str]]:
    """Each module of `package` and the package's modules it imports."""
    modules = _module_names(package)
    graph = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", set(modules))
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        graph[name] = visitor.found - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as a path whose last node is its first, or None if there is none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle is not None:
            return cycle
    return None


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """`graph` with each module replaced by its top-level module or subpackage (`fed_core.execution`);
    the package itself, which only gathers the public names, is left out."""

    def layer(module: str) -> str:
        return ".".join(module.split(".")[:2])

    layers: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if "." not in module:
            continue
        source = layer(module)
        layers.setdefault(source, set()).update(
            layer(t) for t in targets if "." in t and layer(t) != source
        )
    return layers


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_package_is_found(package):
    graph = import_graph(package)
    assert len(graph) > 5 and package in graph and graph[package]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    cycle = find_cycle(import_graph(package))
    assert cycle is None, f"{package} modules import each other in a cycle: " + " -> ".join(cycle)


def test_fed_core_subpackages_are_layered():
    layers = layer_graph(import_graph("fed_core"))
    assert {"fed_core.ir", "fed_core.execution", "fed_core.tracing", "fed_core.compiler"} <= set(
        layers
    )
    cycle = find_cycle(layers)
    assert cycle is None, "fed_core's subpackages import each other in a cycle: " + " -> ".join(
        cycle
    )
    # The layers of fed-core's README ("Layout"): the plugin system and the IR at the bottom, then
    # execution, intrinsics, tracing, and the compiler and serialization above them.
    order = [
        "fed_core.plugins",
        "fed_core.ir",
        "fed_core.execution",
        "fed_core.intrinsics",
        "fed_core.tracing",
        "fed_core.compiler",
        "fed_core.serialization",
    ]
    for lower, higher in zip(order, order[1:]):
        assert higher not in _reachable(layers, lower), (
            f"{lower} imports {higher}, a layer above it"
        )


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _graph_of(source: str, name: str = "fed_types.a") -> set[str]:
    modules = {"fed_types", name, "fed_types.b", "fed_types.c"}
    visitor = _Imports(name, False, modules)
    visitor.visit(ast.parse(source))
    return visitor.found


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import fed_types.b", {"fed_types.b"}),
        ("import fed_types.b.thing as t", {"fed_types.b"}),
        ("from fed_types import b, Struct", {"fed_types.b", "fed_types"}),
        ("from fed_types.b import x", {"fed_types.b"}),
        ("from . import c", {"fed_types.c"}),
        ("from .b import x", {"fed_types.b"}),
        ("def f():\n    from fed_types.b import x", {"fed_types.b"}),
        ("class C:\n    def f(self):\n        import fed_types.c", {"fed_types.c"}),
        ("if TYPE_CHECKING:\n    from fed_types.b import x", set()),
        (
            "if typing.TYPE_CHECKING:\n    import fed_types.b\nelse:\n    import fed_types.c",
            {"fed_types.c"},
        ),
        ("import numpy\nfrom typing import Any", set()),
    ],
)
def test_imports_are_collected(source, found):
    assert _graph_of(source) == found


def test_cycles_are_reported():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": set()}
    assert find_cycle(graph) == ["b", "c", "b"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
