"""A Griffe extension for the API reference: the names a module exports through
`fed_core.framework.lazy_exports(__name__, homes)` are imported on first use, so a static reading of the
module does not see them. This reads the `homes` mapping (a dict literal, or a module-level name bound to
one) and adds each name as an alias of the object it points to, as `lazy_exports` resolves it."""

from __future__ import annotations

import ast
from typing import Any

import griffe


def _mapping(node: ast.AST, constants: dict[str, ast.Dict]) -> dict[str, str]:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    if not isinstance(node, ast.Dict):
        return {}
    homes: dict[str, str] = {}
    for key, value in zip(node.keys, node.values):
        if key is None:  # `**other`: merge another mapping
            homes.update(_mapping(value, constants))
        elif isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
            homes[key.value] = value.value
    return homes


def _lazy_homes(module: ast.Module) -> dict[str, str]:
    constants: dict[str, ast.Dict] = {}
    homes: dict[str, str] = {}
    for statement in module.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign) and isinstance(
            statement.value, ast.Dict
        ):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = statement.value
        value = getattr(statement, "value", None)
        if (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", getattr(value.func, "attr", None)) == "lazy_exports"
            and len(value.args) == 2
        ):
            homes.update(_mapping(value.args[1], constants))
    return homes


def _assigned_docstrings(module: ast.Module) -> dict[str, ast.Constant]:
    """`name.__doc__ = "..."` statements: the docstrings of objects built by a factory call."""
    docstrings = {}
    for statement in module.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "__doc__"
                and isinstance(target.value, ast.Name)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                docstrings[target.value.id] = value
    return docstrings


class LazyExports(griffe.Extension):
    """Adds the lazily exported names of each module as aliases of their targets, and the docstrings
    that a module assigns to `name.__doc__`."""

    def on_module_members(self, *, node: Any, mod: griffe.Module, **kwargs: Any) -> None:
        if not isinstance(node, ast.Module):
            return
        for name, constant in _assigned_docstrings(node).items():
            member = mod.members.get(name)
            if member is not None and not member.is_alias and member.docstring is None:
                member.docstring = griffe.Docstring(
                    constant.value,
                    lineno=constant.lineno,
                    endlineno=constant.end_lineno,
                    parent=member,
                )
        for name, home in _lazy_homes(node).items():
            module, separator, attribute = home.partition(":")
            if not separator:
                if module == name:  # the submodule itself, already a member
                    continue
                attribute = name
            target = f"{mod.path}.{module}" + (f".{attribute}" if attribute else "")
            existing = mod.members.get(name)
            if existing is not None and not (existing.is_alias and not existing.runtime):
                continue
            mod.set_member(name, griffe.Alias(name, target, parent=mod))
