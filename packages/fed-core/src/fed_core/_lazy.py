"""The one lazy-import helper: names imported on first use, so that loading plugins or importing a
namespace does not import heavy dependencies (such as TensorFlow) before they are needed."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def import_attribute(target: str) -> Any:
    """The object `"module:attribute"` names (importing the module), or the module itself for
    `"module:"`; the attribute may be dotted (`"module:Class.method"`)."""
    module_name, separator, attribute = target.partition(":")
    if not module_name or not separator:
        raise ValueError(f"Expected a target of the form 'module:attribute', got {target!r}.")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else ():
        found = getattr(found, part)
    return found


def lazy_exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for a package whose public names are imported on first use.

    `homes` maps each public name to where it lives, relative to `package`: a submodule (`"_backend"`: the
    attribute of that name in it, or the submodule itself if it has the name), `"_backend:configure"` (an
    attribute of another name), or `"_tensorflow:"` (the submodule itself, under another name).
    """
    namespace = importlib.import_module(package)

    def __getattr__(name: str) -> Any:  # noqa: N807
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, separator, attribute = home.partition(":")
        if not separator:
            attribute = "" if module == name else name
        value = import_attribute(f"{package}.{module}:{attribute}")
        setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(namespace)) | set(homes))

    return __getattr__, __dir__
