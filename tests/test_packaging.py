"""The distributions' metadata agree with each other and with the code: every dependency between fed's
own packages admits the version that package has now, every fed package a module imports is declared, no
package forces one TensorFlow distribution on its users, and every package ships the license."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGES = sorted(path.parent for path in (REPOSITORY / "packages").glob("*/pyproject.toml"))
UMBRELLA = "fed-framework"
"""The umbrella's distribution name (`fed` on PyPI belongs to an unrelated project)."""


def _project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


def _version(folder: Path) -> Version:
    config = tomllib.loads((folder / "pyproject.toml").read_text())
    about = (folder / config["tool"]["hatch"]["version"]["path"]).read_text()
    found = re.search(r'^__version__ = "([^"]+)"$', about, re.MULTILINE)
    assert found, f"{folder.name}: no __version__ in its __about__.py"
    return Version(found.group(1))


def _import_name(folder: Path) -> str:
    config = tomllib.loads((folder / "pyproject.toml").read_text())
    (package,) = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return Path(package).name


NAMES = {canonicalize_name(_project(folder)["name"]): folder for folder in PACKAGES}
IMPORTS = {_import_name(folder): canonicalize_name(_project(folder)["name"]) for folder in PACKAGES}


def _requirements(folder: Path) -> list[tuple[str, Requirement]]:
    """(where, requirement) for the dependencies and every extra's."""
    project = _project(folder)
    found = [("dependencies", Requirement(text)) for text in project.get("dependencies", [])]
    for extra, texts in project.get("optional-dependencies", {}).items():
        found += [(f"extra {extra!r}", Requirement(text)) for text in texts]
    return found


def _imported_top_level_names(folder: Path) -> set[str]:
    names = set()
    for path in (folder / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names


def test_the_umbrella_is_published_under_its_own_name_and_imports_as_fed() -> None:
    assert UMBRELLA in NAMES
    assert _import_name(NAMES[UMBRELLA]) == "fed"
    assert "fed" not in NAMES


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda folder: folder.name)
def test_dependencies_on_fed_packages_are_ranges_that_admit_their_current_version(
    folder: Path,
) -> None:
    for where, requirement in _requirements(folder):
        name = canonicalize_name(requirement.name)
        if name not in NAMES or name == canonicalize_name(_project(folder)["name"]):
            continue
        specifier = requirement.specifier
        assert any(spec.operator in ("<", "~=", "==") for spec in specifier), (
            f"{folder.name} ({where}) needs {requirement}: give it an upper bound, e.g. '>=0.1,<0.2'"
        )
        current = _version(NAMES[name])
        assert specifier.contains(current, prereleases=True), (
            f"{folder.name} ({where}) needs {requirement}, which excludes {name} {current}, the "
            "version in this repository"
        )


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda folder: folder.name)
def test_every_fed_package_a_module_imports_is_a_declared_dependency(folder: Path) -> None:
    own = canonicalize_name(_project(folder)["name"])
    declared = {canonicalize_name(requirement.name) for _, requirement in _requirements(folder)}
    imported = {IMPORTS[name] for name in _imported_top_level_names(folder) if name in IMPORTS}
    missing = sorted(imported - declared - {own})
    assert not missing, (
        f"{folder.name} imports {missing} without declaring them in its pyproject.toml"
    )


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda folder: folder.name)
def test_tensorflow_is_left_to_the_user_or_to_an_extra(folder: Path) -> None:
    # tensorflow, tensorflow-cpu and vendor builds all install the same `tensorflow` module: a hard
    # requirement on one of them would give users of another two TensorFlows.
    project = _project(folder)
    hard = [Requirement(text) for text in project.get("dependencies", [])]
    assert not [r for r in hard if canonicalize_name(r.name).startswith("tensorflow")], folder.name
    if "tensorflow" in _imported_top_level_names(folder):
        extra = [str(r) for r in map(Requirement, project["optional-dependencies"]["tensorflow"])]
        # fed-aggregators' extra also brings tf-keras, which tensorflow-privacy's queries need and which
        # itself requires the `tensorflow` distribution.
        assert extra[0] in ("tensorflow==2.21.*", "fed-tensorflow[tensorflow]<0.2,>=0.1"), extra
        assert [canonicalize_name(Requirement(r).name) for r in extra[1:]] in ([], ["tf-keras"]), (
            extra
        )


def test_the_tensorflow_extra_reaches_one_pinned_tensorflow() -> None:
    (pin,) = _project(NAMES["fed-tensorflow"])["optional-dependencies"]["tensorflow"]
    assert Requirement(pin).name == "tensorflow" and str(Requirement(pin).specifier) == "==2.21.*"
    umbrella_extra = _project(NAMES[UMBRELLA])["optional-dependencies"]["tensorflow"]
    assert {Requirement(text).name: Requirement(text).extras for text in umbrella_extra} == {
        "fed-tensorflow": {"tensorflow"},
        "fed-aggregators": {"tensorflow"},
    }


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda folder: folder.name)
def test_every_package_ships_the_license_and_says_where_it_lives(folder: Path) -> None:
    project = _project(folder)
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (folder / "LICENSE").read_bytes() == (REPOSITORY / "LICENSE").read_bytes()
    assert "Apache License" in (REPOSITORY / "LICENSE").read_text()
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # PEP 639
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in project["classifiers"]
    assert set(project["urls"]) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert project["urls"]["Source"].endswith(f"/packages/{folder.name}")


def test_scikit_learn_is_not_needed_to_install_fed() -> None:
    for folder in PACKAGES:
        names = {
            canonicalize_name(r.name)
            for where, r in _requirements(folder)
            if where == "dependencies"
        }
        assert "scikit-learn" not in names, folder.name
