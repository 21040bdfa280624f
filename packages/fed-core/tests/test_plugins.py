"""fed's plugin system, tested with real plugins installed in the test environment.

tests/plugins/ holds three distributions installed with the workspace: fed-example-plugin (works),
fed-broken-plugin (four entry points, each failing in its own way) and fed-rival-plugin (registers
a name that fed-example-plugin has).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import fed_example_plugin
import pluggy
import pytest

from fed_core import hookimpl, plugins
from fed_core.plugins import (
    BUILTIN_DISTRIBUTIONS,
    IN_PROCESS,
    KINDS,
    DuplicateEntryError,
    Entry,
    InvalidEntryError,
    PluginSystem,
    Registry,
    UnknownEntryError,
)

BROKEN = "fed-broken-plugin"
BROKEN_PLUGINS = {
    "broken_import": ModuleNotFoundError,
    "broken_unknown_hook": pluggy.PluginValidationError,
    "broken_hook_raises": RuntimeError,
    "broken_invalid_name": InvalidEntryError,
}


def installed(*disabled: str) -> PluginSystem:
    """A plugin system that discovers the installed plugins, whatever the environment says."""
    return PluginSystem(autoload=True, disabled=disabled)


def isolated() -> PluginSystem:
    return PluginSystem(autoload=False, disabled=(), builtins=False)


def create_thing() -> str:
    return "thing"


class ExecutorsPlugin:
    """An in-process plugin registering the given executor names."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def fed_register_executors(self, register: Registry) -> None:
        for name in self.names:
            register.add(name, create_thing)


def run_python(code: str, environment: Mapping[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FED_")}
    env.update(environment or {})
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


# Registry


@pytest.mark.parametrize("name", ["local", "a", "A9", "dp.gaussian-v2_1"])
def test_add_accepts_names_of_letters_digits_underscores_dashes_and_dots(name: str) -> None:
    registry = Registry("executors")
    entry = registry.add(name, create_thing)
    assert entry == Entry("executors", name, create_thing, IN_PROCESS, None, "(direct)")
    assert registry.get(name) is create_thing


@pytest.mark.parametrize("name", ["", "has space", "caf\u00e9", "a/b", "x\n", 5, None])
def test_add_refuses_a_bad_name_saying_what_was_expected_and_given(name: object) -> None:
    registry = Registry("aggregators")
    with pytest.raises(InvalidEntryError) as raised:
        registry.add(name, create_thing)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "non-empty str of ASCII letters, digits, '_', '-' and '.'" in message
    assert message.endswith(f"got {name!r}")
    assert len(registry) == 0


@pytest.mark.parametrize("factory", [42, "create_thing", None])
def test_add_refuses_a_factory_that_is_not_callable(factory: object) -> None:
    registry = Registry("datasets")
    with pytest.raises(InvalidEntryError) as raised:
        registry.add("emnist", factory)  # type: ignore[arg-type]
    assert str(raised.value) == (
        f"the factory of datasets 'emnist' must be callable; got {factory!r} "
        f"of type {type(factory).__name__}"
    )
    assert "emnist" not in registry


def test_add_refuses_a_duplicate_name_naming_both_sources() -> None:
    registry = Registry("executors")
    registry.add("local", create_thing)
    with pytest.raises(DuplicateEntryError) as raised:
        registry.add("local", print)
    assert "executors 'local' from (in-process) (plugin '(direct)') is already registered by " in (
        str(raised.value)
    )
    assert registry.get("local") is create_thing


def test_registry_lists_names_and_entries_sorted() -> None:
    registry = Registry("intrinsics")
    registry.add("zeta", create_thing)
    registry.add("alpha", print)
    assert registry.names() == ("alpha", "zeta")
    assert [e.name for e in registry.entries()] == ["alpha", "zeta"]
    assert len(registry) == 2
    assert "zeta" in registry and "beta" not in registry and 3 not in registry
    assert repr(registry) == "Registry('intrinsics', names=['alpha', 'zeta'])"


def test_get_of_an_unknown_name_raises_a_key_error_listing_registered_names() -> None:
    registry = Registry("backends")
    registry.add("tensorflow", create_thing)
    registry.add("jax", create_thing)
    with pytest.raises(KeyError) as raised:
        registry.get("torch")
    assert isinstance(raised.value, UnknownEntryError)
    assert str(raised.value) == "no backends named 'torch'; registered: 'jax', 'tensorflow'"
    with pytest.raises(UnknownEntryError, match="no backends named 'x'; registered: none$"):
        Registry("backends").get("x")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match="among backends, executors, aggregators, datasets, intrinsics, data_backends",
    ):
        Registry("models")
    with pytest.raises(ValueError, match="got 'executor'"):
        isolated().registry("executor")


# Discovery of installed plugins


def test_the_example_plugin_is_discovered_through_its_entry_point() -> None:
    system = installed()
    expected = {
        ("executors", "example_sequential", fed_example_plugin.create_sequential_executor),
        ("intrinsics", fed_example_plugin.MEDIAN, fed_example_plugin.create_median_definition),
        ("aggregators", "example_mean", fed_example_plugin.create_mean_aggregator),
        ("datasets", "example_counting", fed_example_plugin.create_counting_data),
        ("data_backends", "example", fed_example_plugin.create_range_data_backend),
    }
    example_entries = [e for e in system.entries() if e.distribution == "fed-example-plugin"]
    assert {(e.kind, e.name, e.factory) for e in example_entries} == expected
    assert {(e.version, e.plugin) for e in example_entries} == {("0.0.1", "example")}


@pytest.mark.filterwarnings("ignore::fed_core.plugins.PluginConflictWarning")
def test_factories_of_the_example_plugin_build_things_of_their_kinds() -> None:
    from fed_core.execution import Executor
    from fed_core.framework import IntrinsicDefinition

    system = installed()
    executor = system.registry("executors").build("example_sequential", trace=True)
    assert isinstance(executor, Executor) and executor.trace
    definition = system.registry("intrinsics").build(fed_example_plugin.MEDIAN)
    assert isinstance(definition, IntrinsicDefinition)
    assert str(definition.type_signature) == "({T}@CLIENTS -> T@SERVER)"
    data = system.registry("datasets").build("example_counting", num_clients=3)
    assert data.client_ids == ["client_0", "client_1", "client_2"]
    assert data.examples("client_2") == [0, 1, 2]
    backend = system.registry("data_backends").build("example")
    assert callable(backend.materialize)


def test_entries_are_ordered_by_kind_then_name() -> None:
    entries = installed().entries()
    keys = [(KINDS.index(e.kind), e.name) for e in entries]
    assert keys == sorted(keys)


def test_broken_plugins_are_reported_with_their_distribution_and_others_still_load() -> None:
    system = installed()
    broken = {e.plugin: e for e in system.load_errors() if e.distribution == BROKEN}
    assert {name: type(e.exception) for name, e in broken.items()} == BROKEN_PLUGINS
    assert {e.version for e in broken.values()} == {"0.0.1"}
    assert broken["broken_import"].message == (
        "cannot import fed_broken_plugin.import_error: "
        "ModuleNotFoundError: No module named 'fed_missing_dependency'"
    )
    assert "'fed_register_executor' is not a fed hook" in broken["broken_unknown_hook"].message
    assert broken["broken_hook_raises"].message == (
        "RuntimeError: the aggregation service is unreachable (raised by fed_register_aggregators)"
    )
    assert "got 'my data'" in broken["broken_invalid_name"].message
    assert str(broken["broken_import"]).startswith(
        "fed-broken-plugin 0.0.1 (plugin 'broken_import'): cannot import"
    )
    assert "example_sequential" in system.registry("executors")


def test_a_plugin_that_fails_keeps_nothing_it_registered() -> None:
    system = installed()
    # broken_hook_raises registers this executor before its aggregators hook raises.
    assert "broken_partial" not in system.registry("executors")
    assert "rival_executor" not in system.registry("executors")


def test_a_duplicate_between_distributions_names_both_and_the_first_loaded_keeps_it() -> None:
    system = installed()
    (rival,) = [e for e in system.load_errors() if e.plugin == "rival"]
    assert isinstance(rival.exception, DuplicateEntryError)
    assert (rival.distribution, rival.version) == ("fed-rival-plugin", "0.0.2")
    assert (
        "executors 'example_sequential' from fed-rival-plugin 0.0.2 (plugin 'rival') is already "
        "registered by fed-example-plugin 0.0.1 (plugin 'example')"
    ) in rival.message
    kept = [e for e in system.registry("executors").entries() if e.name == "example_sequential"]
    assert [(e.distribution, e.plugin) for e in kept] == [("fed-example-plugin", "example")]


def test_a_failed_lookup_names_the_plugins_that_failed_to_load() -> None:
    system = installed()
    with pytest.raises(UnknownEntryError) as raised:
        system.registry("executors").get("gpu")
    count = len(system.load_errors())
    message = str(raised.value)
    assert (
        f"; {count} plugin(s) failed to load: broken_hook_raises (fed-broken-plugin), " in message
    )
    assert message.endswith("rival (fed-rival-plugin); `python -m fed_core plugins` shows why")


def test_load_errors_are_logged_once_at_info_level_only(caplog: pytest.LogCaptureFixture) -> None:
    system = installed()
    with caplog.at_level("INFO", logger="fed_core.plugins"):
        system.entries()
        system.load_errors()
        system.registry("aggregators").get("example_mean")
    (record,) = caplog.records
    assert record.levelname == "INFO"
    assert "broken_import (fed-broken-plugin)" in record.getMessage()
    assert "rival (fed-rival-plugin)" in record.getMessage()


def test_loading_plugins_prints_nothing_in_a_fresh_process() -> None:
    code = "from fed_core import plugins; assert plugins.load_errors(); plugins.list_entries()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_using_a_name_that_a_failed_plugin_also_registers_warns_once() -> None:
    system = installed()
    executors = system.registry("executors")
    with pytest.warns(plugins.PluginConflictWarning) as warned:
        executors.get("example_sequential")
        executors.build("example_sequential")
    (warning,) = warned
    assert str(warning.message) == (
        "fed uses executors 'example_sequential' from fed-example-plugin 0.0.1 (plugin 'example'); "
        "fed-rival-plugin 0.0.2 (plugin 'rival') also registers it and was not loaded. Disable one "
        "of them with FED_DISABLED_PLUGINS to choose."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        system.registry("aggregators").get("example_mean")  # uncontested: no warning


# Switching discovery off and disabling plugins


def test_disabling_a_plugin_by_entry_point_name_skips_it() -> None:
    system = installed("example")
    assert system.disabled == frozenset({"example"})
    by_distribution = {e.distribution for e in system.entries()}
    assert "fed-example-plugin" not in by_distribution
    # Without the example plugin, the rival's names are free.
    entry = [e for e in system.entries() if e.name == "example_sequential"]
    assert [(e.distribution, e.version) for e in entry] == [("fed-rival-plugin", "0.0.2")]
    assert "rival_executor" in system.registry("executors")
    assert "rival" not in {e.plugin for e in system.load_errors()}


@pytest.mark.parametrize("name", ["fed-broken-plugin", "fed_broken_plugin", "FED.Broken_plugin"])
def test_disabling_a_distribution_skips_all_its_plugins(name: str) -> None:
    system = installed(name)
    assert BROKEN not in {e.distribution for e in system.load_errors()}
    assert "example_sequential" in system.registry("executors")


def test_environment_variable_turns_discovery_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FED_DISABLE_PLUGIN_AUTOLOAD", "1")
    system = PluginSystem()
    assert system.autoload is False
    # fed's own plugins still load, as built-ins; no third-party plugin does.
    assert {entry.distribution for entry in system.entries()} <= BUILTIN_DISTRIBUTIONS
    assert "local" in system.registry("executors")
    assert system.load_errors() == ()
    assert PluginSystem(builtins=False).entries() == ()
    with pytest.raises(UnknownEntryError, match="installed plugins are not loaded"):
        system.registry("executors").get("example_sequential")


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_false_values_of_the_autoload_variable_leave_discovery_on(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FED_DISABLE_PLUGIN_AUTOLOAD", value)
    system = PluginSystem()
    assert system.autoload is True
    assert "example_mean" in system.registry("aggregators")


def test_environment_variable_disables_plugins_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FED_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("FED_DISABLED_PLUGINS", " rival , fed-broken-plugin,, ")
    system = PluginSystem()
    assert system.disabled == frozenset({"rival", "fed-broken-plugin"})
    assert system.load_errors() == ()
    assert "example_sequential" in system.registry("executors")


def test_disabled_must_be_a_collection_of_names_not_a_str() -> None:
    with pytest.raises(TypeError, match="not a str; got 'example'"):
        PluginSystem(autoload=True, disabled="example")


# Lazy loading


LOADED_MODULES = """
import json, sys
def loaded():
    return sorted(m for m in sys.modules if m.startswith(("fed_example_plugin", "fed_rival")))
import fed_core
from fed_core import plugins
before = loaded()
system = plugins.PluginSystem()
made = loaded()
plugins.list_entries()
print(json.dumps([before, made, loaded()]))
"""


def test_plugins_are_imported_on_first_use_not_on_import() -> None:
    before, made, after = json.loads(run_python(LOADED_MODULES))
    assert before == [] and made == []
    assert after == ["fed_example_plugin", "fed_rival_plugin"]


def test_disabled_plugins_are_not_imported() -> None:
    *_, after = json.loads(run_python(LOADED_MODULES, {"FED_DISABLED_PLUGINS": "example"}))
    assert after == ["fed_rival_plugin"]
    *_, after = json.loads(run_python(LOADED_MODULES, {"FED_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert after == []


# Plugins registered at run time


def test_register_calls_the_hooks_of_an_in_process_plugin_at_once() -> None:
    system = isolated()
    assert system.register(ExecutorsPlugin("mine", "other")) == "ExecutorsPlugin"
    assert system.entries() == (
        Entry("executors", "mine", create_thing, IN_PROCESS, None, "ExecutorsPlugin"),
        Entry("executors", "other", create_thing, IN_PROCESS, None, "ExecutorsPlugin"),
    )
    assert system.registry("executors").get("mine")() == "thing"


def test_register_a_module_under_its_name() -> None:
    system = isolated()
    assert system.register(fed_example_plugin) == "fed_example_plugin"
    assert (
        system.registry("aggregators").get("example_mean")
        is fed_example_plugin.create_mean_aggregator
    )


def test_register_raises_a_duplicate_naming_the_installed_distribution() -> None:
    system = installed("rival", "fed-broken-plugin")
    with pytest.raises(DuplicateEntryError) as raised:
        system.register(ExecutorsPlugin("new_one", "example_sequential"), name="shadow")
    assert str(raised.value).startswith(
        "executors 'example_sequential' from (in-process) (plugin 'shadow') is already "
        "registered by fed-example-plugin 0.0.1 (plugin 'example')"
    )
    assert "new_one" not in system.registry("executors")
    # Nothing of the failed plugin is left: its name can be used again.
    assert system.register(ExecutorsPlugin("new_one"), name="shadow") == "shadow"
    (entry,) = [e for e in system.registry("executors").entries() if e.name == "new_one"]
    assert entry.plugin == "shadow"


def test_register_raises_what_a_hook_raised_with_the_hook_named() -> None:
    class Failing:
        @hookimpl
        def fed_register_datasets(self, register: Registry) -> None:
            register.add("half", create_thing)
            raise OSError("disk full")

    system = isolated()
    with pytest.raises(OSError, match="disk full") as raised:
        system.register(Failing())
    assert raised.value.__notes__ == ["(raised by fed_register_datasets)"]
    assert system.entries() == ()


def test_register_refuses_a_name_or_object_already_registered() -> None:
    system = isolated()
    plugin = ExecutorsPlugin("a")
    system.register(plugin, name="first")
    with pytest.raises(ValueError, match="already registered, as \\(in-process\\)"):
        system.register(plugin, name="second")
    with pytest.raises(
        ValueError, match="plugin name 'first' of \\(in-process\\) is already taken"
    ):
        system.register(ExecutorsPlugin("b"), name="first")
    assert system.registry("executors").names() == ("a",)


class MisspeltHook:
    @hookimpl
    def fed_register_aggregator(self, register: Registry) -> None:
        register.add("x", create_thing)


class WrapperHook:
    @hookimpl(wrapper=True)
    def fed_register_executors(self, register: Registry) -> object:
        return (yield)


class UnmarkedHook:
    def fed_register_executors(self, register: Registry) -> None:
        register.add("x", create_thing)


class UnknownArgument:
    @hookimpl
    def fed_register_executors(self, registry: Registry) -> None:
        registry.add("x", create_thing)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (MisspeltHook(), "'fed_register_aggregator' is not a fed hook; fed's hooks are "),
        (WrapperHook(), "fed_register_executors is a hook wrapper"),
        (UnmarkedHook(), "fed_register_executors is not marked with @fed_core.hookimpl"),
        (UnknownArgument(), "Argument(s) {'registry'} are declared in the hookimpl"),
    ],
)
def test_register_refuses_bad_hooks(plugin: object, message: str) -> None:
    system = isolated()
    with pytest.raises(pluggy.PluginValidationError) as raised:
        system.register(plugin)
    assert message in str(raised.value)
    assert system.entries() == ()
    assert system.register(ExecutorsPlugin("ok"), name=type(plugin).__name__)


def test_optional_hooks_of_other_projects_are_allowed() -> None:
    class WithOptionalHook(ExecutorsPlugin):
        @hookimpl(optionalhook=True)
        def fed_report_progress(self) -> None:
            """A hook of a later version of fed."""

    system = isolated()
    system.register(WithOptionalHook("x"))
    assert system.registry("executors").names() == ("x",)


def test_a_plugin_is_called_once_per_hook_with_its_own_registry() -> None:
    calls: list[tuple[str, str]] = []

    def recording(kind: str) -> Callable[..., None]:
        def hook(self: object, register: Registry) -> None:
            calls.append((kind, register.kind))

        hook.__name__ = f"fed_register_{kind}"
        return hookimpl(hook)

    plugin_class = type("AllKinds", (), {f"fed_register_{k}": recording(k) for k in KINDS})
    isolated().register(plugin_class())
    assert calls == [(kind, kind) for kind in KINDS]


# The pytest fixtures for plugin authors


def test_fed_plugin_system_fixture_is_isolated(fed_plugin_system: PluginSystem) -> None:
    assert fed_plugin_system.autoload is False
    assert fed_plugin_system.register(ExecutorsPlugin("fixture_executor")) == "ExecutorsPlugin"
    assert fed_plugin_system.entries() == (
        Entry("executors", "fixture_executor", create_thing, IN_PROCESS, None, "ExecutorsPlugin"),
    )
    assert "fixture_executor" not in plugins.get_registry("executors")


def test_fed_default_plugin_system_fixture_is_fed_default(
    fed_default_plugin_system: PluginSystem,
) -> None:
    assert plugins.register_plugin(ExecutorsPlugin("fixture_executor")) == "ExecutorsPlugin"
    assert plugins.get_registry("executors").get("fixture_executor") is create_thing
    assert "fixture_executor" in fed_default_plugin_system.registry("executors")
    assert "example_sequential" in plugins.get_registry("executors")


PLUGIN_AUTHOR_TESTS = """
from fed_core import hookimpl
from fed_core.plugins import get_registry


class TinyData:
    @hookimpl
    def fed_register_datasets(self, register):
        register.add("tiny", lambda: {"client_0": [1.0]})


def test_registers_tiny(fed_plugin_system):
    fed_plugin_system.register(TinyData())
    assert fed_plugin_system.registry("datasets").get("tiny")() == {"client_0": [1.0]}
    assert [e.name for e in fed_plugin_system.entries()] == ["tiny"]


def test_fed_sees_tiny_beside_installed_plugins(fed_default_plugin_system):
    fed_default_plugin_system.register(TinyData())
    assert get_registry("datasets").get("tiny")() == {"client_0": [1.0]}
    assert "example_counting" in get_registry("datasets")


def test_default_is_back_after_the_fixture():
    assert "tiny" not in get_registry("datasets")
    assert "example_counting" in get_registry("datasets")
"""


def test_plugin_authors_get_the_fixture_from_the_pytest11_entry_point(tmp_path: Path) -> None:
    (tmp_path / "test_tiny_plugin.py").write_text(PLUGIN_AUTHOR_TESTS)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FED_", "PYTEST_")) and k != "PYTHONPATH"
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tiny_plugin.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
