"""fed's plugin system: registries of backends, executors, aggregators, data sets, intrinsics and data
backends.

Plugins implement the hooks of :mod:`fed_core.hookspecs` with ``@hookimpl`` and are found through
the entry-point group ``fed_core.plugins``, the first time anything looks up an entry (not at
import). Each hook gets a :class:`Registry` bound to the plugin's distribution, so every entry
knows where it came from. A plugin that fails to load is kept out whole and the others load as
usual; it is reported where it matters: by :func:`load_errors` and ``python -m fed_core plugins``,
in the error of a lookup that finds nothing, and by a :class:`PluginConflictWarning` when fed uses
an entry whose name the failed plugin registers too. Loading logs the failures at INFO level only.

Environment variables, read when a :class:`PluginSystem` is made without arguments:
``FED_DISABLE_PLUGIN_AUTOLOAD=1`` turns discovery off; ``FED_DISABLED_PLUGINS=a,b`` skips the
plugins with those entry-point or distribution names (and warns of a name that matches none).
"""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import pluggy

from fed_core import hookspecs
from fed_core._lazy import import_attribute

__all__ = [
    "AUTOLOAD_ENV",
    "DISABLED_ENV",
    "ENTRY_POINT_GROUP",
    "BUILTIN_DISTRIBUTIONS",
    "deferred",
    "IN_PROCESS",
    "KINDS",
    "LEGACY_KINDS",
    "DuplicateEntryError",
    "Entry",
    "InvalidEntryError",
    "KindSpec",
    "PluginConflictWarning",
    "PluginInterfaceError",
    "LoadError",
    "PluginSystem",
    "Registry",
    "UnknownEntryError",
    "get_registry",
    "hookimpl",
    "list_entries",
    "load_errors",
    "register_plugin",
]

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT_NAME)
"""Marks a plugin's function as the implementation of the `fed_core.hookspecs` hook of the same name."""

ENTRY_POINT_GROUP: Final = "fed_core.plugins"
AUTOLOAD_ENV: Final = "FED_DISABLE_PLUGIN_AUTOLOAD"
DISABLED_ENV: Final = "FED_DISABLED_PLUGINS"
IN_PROCESS: Final = "(in-process)"
BUILTIN_DISTRIBUTIONS: Final = frozenset(
    {
        "fed-framework",
        "fed-types",
        "fed-core",
        "fed-tensorflow",
        "fed-aggregators",
        "fed-learning",
        "fed-datasets",
        "fed-analytics",
    }
)
"""fed's own distributions: their plugins load even with autoload off, as a framework's built-ins do."""
KINDS: Final = ("backends", "executors", "aggregators", "datasets", "intrinsics", "data_backends")
LEGACY_KINDS: Final = {"frontends": "backends"}
"""Kind names of the first release, still accepted for one release (with a DeprecationWarning)."""

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})

_logger = logging.getLogger(__name__)


class InvalidEntryError(ValueError):
    """A registration with a bad name or a factory that is not callable."""


class DuplicateEntryError(ValueError):
    """A registration under a name that another entry of the same kind already has; ``kind`` and
    ``name`` say which."""

    def __init__(self, message: str, kind: str | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class PluginConflictWarning(UserWarning):
    """Issued when fed uses an entry whose name a plugin that failed to load also registers: the
    entry may not be the one that was meant."""


class UnknownEntryError(KeyError):
    """A lookup of a name that no plugin registered."""

    def __str__(self) -> str:
        # KeyError's own str() shows the repr of its argument, quotes and escapes included.
        return str(self.args[0])


class PluginInterfaceError(TypeError):
    """A registered factory built something that does not implement its kind's interface."""


@runtime_checkable
class _Backend(Protocol):
    def load(self, computation: Any) -> Any: ...


@runtime_checkable
class _Executor(Protocol):
    def execute(self, computation: Any, argument: Any, cardinality: int) -> Any: ...


@runtime_checkable
class _LegacyExecutionContext(Protocol):
    def invoke(self, computation: Any, argument: Any) -> Any: ...


@runtime_checkable
class _AggregationFactory(Protocol):
    def create(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class _ClientData(Protocol):
    @property
    def client_ids(self) -> Any: ...


@runtime_checkable
class _IntrinsicDefinition(Protocol):
    uri: str
    type_signature: Any
    kind: Any
    implementation: Any


@runtime_checkable
class _DataBackend(Protocol):
    def materialize(self, data: Any, type_spec: Any) -> Any: ...


@dataclass(frozen=True)
class KindSpec:
    """What the entries of one kind are: the hook that registers them, what their factories build (the
    interface, by name, and a structural check of it), and the first release's hook name if it changed."""

    kind: str
    hook: str
    builds: str
    check: Callable[[Any], bool]
    legacy_hook: str | None = None


KIND_SPECS: Final = {
    spec.kind: spec
    for spec in (
        KindSpec(
            "backends",
            "fed_register_backends",
            "a fed_core.execution.Backend (with load(computation)) for the frontend of that name",
            lambda built: isinstance(built, _Backend),
            legacy_hook="fed_register_frontends",
        ),
        KindSpec(
            "executors",
            "fed_register_executors",
            "a fed_core.execution.Executor (with execute(computation, argument, cardinality))",
            lambda built: isinstance(built, (_Executor, _LegacyExecutionContext)),
        ),
        KindSpec(
            "aggregators",
            "fed_register_aggregators",
            "an aggregation factory (with create(value_type, ...)), such as fed_aggregators' factories",
            lambda built: isinstance(built, _AggregationFactory),
        ),
        KindSpec(
            "datasets",
            "fed_register_datasets",
            "client data (with client_ids), such as a fed_datasets.ClientData, or a tuple of them",
            lambda built: (
                isinstance(built, _ClientData)
                or (
                    isinstance(built, tuple)
                    and bool(built)
                    and all(isinstance(b, _ClientData) for b in built)
                )
            ),
        ),
        KindSpec(
            "intrinsics",
            "fed_register_intrinsics",
            "a fed_core.framework.IntrinsicDefinition (uri, type_signature, kind, implementation)",
            lambda built: isinstance(built, _IntrinsicDefinition),
        ),
        KindSpec(
            "data_backends",
            "fed_register_data_backends",
            "a fed_core.execution.DataBackend (with materialize(data, type_spec)) for the URI scheme of that name",
            lambda built: isinstance(built, _DataBackend),
        ),
    )
}
"""Each kind's hook and interface; a factory's result is checked when fed builds it (`Registry.build`)."""


@dataclass(frozen=True)
class Entry:
    """One registered factory and where it came from.

    ``plugin`` is the plugin's name (its entry-point name for installed plugins);
    ``distribution`` is the installed distribution that provides it, or ``"(in-process)"`` for
    plugins registered at run time, whose ``version`` is None.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    distribution: str
    version: str | None
    plugin: str


@dataclass(frozen=True)
class LoadError:
    """An installed plugin that could not be loaded; nothing it registered is kept."""

    plugin: str
    distribution: str
    version: str | None
    message: str
    exception: Exception

    def __str__(self) -> str:
        return f"{_Source(self.plugin, self.distribution, self.version)}: {self.message}"


@dataclass(frozen=True)
class _Source:
    plugin: str
    distribution: str
    version: str | None

    def __str__(self) -> str:
        release = (
            self.distribution if self.version is None else f"{self.distribution} {self.version}"
        )
        return f"{release} (plugin {self.plugin!r})"


# Entries added straight to a registry, not from a plugin's hook.
_DIRECT = _Source("(direct)", IN_PROCESS, None)


class Registry:
    """The entries of one kind, by name.

    Plugins fill it from their hooks with :meth:`add`; fed looks factories up with :meth:`get`.
    The registry a hook receives records the hook's plugin and distribution on every entry.
    """

    def __init__(
        self,
        kind: str,
        *,
        hint: Callable[[], str] | None = None,
        on_lookup: Callable[[str, str], None] | None = None,
    ) -> None:
        """Make an empty registry; ``hint()`` adds context to the error of a failed lookup, and
        ``on_lookup(kind, name)`` is called on every successful one."""
        kind = _check_kind(kind)
        self.kind: Final = kind
        self._entries: dict[str, Entry] = {}
        self._source = _DIRECT
        self._hint = hint
        self._on_lookup = on_lookup

    def add(self, name: str, factory: Callable[..., Any]) -> Entry:
        """Register ``factory`` under ``name`` and return the new entry.

        ``name`` is a non-empty str of ASCII letters, digits, ``_``, ``-`` and ``.``. Raises
        InvalidEntryError for a bad name or a factory that is not callable, and
        DuplicateEntryError if the name is taken, naming both distributions.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidEntryError(
                f"a {self.kind} name must be a non-empty str of ASCII letters, digits, '_', '-' "
                f"and '.'; got {name!r}"
            )
        if not callable(factory):
            raise InvalidEntryError(
                f"the factory of {self.kind} {name!r} must be callable; got {factory!r} "
                f"of type {type(factory).__name__}"
            )
        existing = self._entries.get(name)
        if existing is not None:
            holder = _Source(existing.plugin, existing.distribution, existing.version)
            raise DuplicateEntryError(
                f"{self.kind} {name!r} from {self._source} is already registered by {holder}; "
                f"one of them must use another name, or disable one with {DISABLED_ENV}",
                self.kind,
                name,
            )
        entry = Entry(
            kind=self.kind,
            name=name,
            factory=factory,
            distribution=self._source.distribution,
            version=self._source.version,
            plugin=self._source.plugin,
        )
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered under ``name``; UnknownEntryError (a KeyError) if none."""
        entry = self._entries.get(name)
        if entry is None:
            registered = ", ".join(repr(n) for n in self.names()) or "none"
            message = f"no {self.kind} named {name!r}; registered: {registered}"
            hint = self._hint() if self._hint is not None else ""
            raise UnknownEntryError(f"{message}; {hint}" if hint else message)
        if self._on_lookup is not None:
            self._on_lookup(self.kind, name)
        return entry.factory

    def entry(self, name: str) -> Entry:
        """The entry registered under ``name``; UnknownEntryError (a KeyError) if none."""
        self.get(name)
        return self._entries[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under ``name`` and check that what it built implements this kind's
        interface (see :data:`KIND_SPECS`); PluginInterfaceError, naming the plugin's distribution, if not.

        This is how fed builds entries; ``get`` returns the bare factory.
        """
        factory = self.get(name)
        built = factory(*args, **kwargs)
        spec = KIND_SPECS[self.kind]
        if not spec.check(built):
            entry = self._entries[name]
            source = _Source(entry.plugin, entry.distribution, entry.version)
            raise PluginInterfaceError(
                f"{self.kind} {name!r} from {source}: its factory must build {spec.builds}; "
                f"got {built!r} of type {type(built).__qualname__}"
            )
        return built

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    def entries(self) -> tuple[Entry, ...]:
        """The registered entries, sorted by name."""
        return tuple(self._entries[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={list(self.names())!r})"

    def _bound_to(self, source: _Source) -> Registry:
        """A view sharing these entries whose additions are recorded as coming from ``source``."""
        view = copy.copy(self)
        view._source = source
        return view

    def _remove_plugin(self, plugin: str) -> None:
        for name in [n for n, entry in self._entries.items() if entry.plugin == plugin]:
            del self._entries[name]


class _RegistrationHooks:
    """Calls fed's hooks; nothing else in fed calls them.

    Each plugin's implementation is called on its own, so that the registry it gets can record
    that plugin's distribution; for the same reason, hook wrappers are refused at registration.
    """

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self._manager = manager

    def call(self, plugin: object, kind: str, register: Registry) -> None:
        """Call ``plugin``'s implementation of the hook of ``kind`` (and of its first-release name), if it
        has one."""
        spec = KIND_SPECS[kind]
        arguments = {"register": register}
        for hook in (spec.hook, spec.legacy_hook):
            if hook is None:
                continue
            caller: pluggy.HookCaller = getattr(self._manager.hook, hook)
            for implementation in caller.get_hookimpls():
                if implementation.plugin is plugin:
                    if hook != spec.hook:
                        warnings.warn(
                            f"The fed hook {hook} is deprecated: implement {spec.hook} instead (it "
                            f"registers the same {kind}).",
                            DeprecationWarning,
                            stacklevel=2,
                        )
                    implementation.function(*(arguments[name] for name in implementation.argnames))


class PluginSystem:
    """A plugin manager with its registries and the load errors of installed plugins.

    Installed plugins load on the first call of :meth:`registry`, :meth:`entries`,
    :meth:`load_errors` or :meth:`register`, in order of distribution name, then entry-point
    name; when two plugins register the same name, the first keeps it and the second fails to
    load. ``autoload`` and ``disabled`` default to what ``FED_DISABLE_PLUGIN_AUTOLOAD`` and
    ``FED_DISABLED_PLUGINS`` say. fed's own plugins (:data:`BUILTIN_DISTRIBUTIONS`) load whatever
    ``autoload`` says, unless ``builtins=False``; tests pass ``autoload=False, builtins=False``
    for an isolated instance.
    """

    def __init__(
        self,
        autoload: bool | None = None,
        disabled: Iterable[str] | None = None,
        builtins: bool = True,
    ) -> None:
        if isinstance(disabled, str):
            raise TypeError(
                f"disabled must be an iterable of plugin or distribution names, not a str; "
                f"got {disabled!r}"
            )
        self._autoload = _autoload_from_environment() if autoload is None else autoload
        self._builtins = builtins
        self._disabled = frozenset(_disabled_from_environment() if disabled is None else disabled)
        self._manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._manager.add_hookspecs(hookspecs)
        self._hooks = _RegistrationHooks(self._manager)
        self._registries = {
            kind: Registry(kind, hint=self._lookup_hint, on_lookup=self._warn_if_contested)
            for kind in KINDS
        }
        self._sources: dict[str, _Source] = {}
        self._load_errors: list[LoadError] = []
        self._warned: set[tuple[str, str]] = set()
        self._loaded = False
        self._lock = threading.RLock()

    @property
    def autoload(self) -> bool:
        """Whether installed plugins are discovered through entry points."""
        return self._autoload

    @property
    def disabled(self) -> frozenset[str]:
        """Entry-point or distribution names of installed plugins that are skipped."""
        return self._disabled

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind``, one of :data:`KINDS`."""
        kind = _check_kind(kind)
        self._ensure_loaded()
        return self._registries[kind]

    def entries(self) -> tuple[Entry, ...]:
        """Every registered entry, by kind (in the order of :data:`KINDS`), then by name."""
        self._ensure_loaded()
        return tuple(entry for kind in KINDS for entry in self._registries[kind].entries())

    def load_errors(self) -> tuple[LoadError, ...]:
        """The installed plugins that failed to load, and why."""
        self._ensure_loaded()
        return tuple(self._load_errors)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object made at run time (in a notebook, a test) and return its name.

        Its hooks are called at once; its entries show ``"(in-process)"`` as their distribution.
        ``name`` defaults to the object's ``__name__``, else its class name. Errors are raised
        here, and leave nothing of the plugin registered.
        """
        self._ensure_loaded()
        if name is None:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if not isinstance(name, str) or not name:
            raise TypeError(f"a plugin name must be a non-empty str; got {name!r}")
        with self._lock:
            self._add_plugin(plugin, _Source(name, IN_PROCESS, None))
        return name

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            # Set first: a plugin whose import looks up entries must not start a second load.
            self._loaded = True
            if self._autoload or self._builtins:
                self._load_entry_points()
            if self._load_errors:
                # Not a warning: a plugin that fails to load matters where its entries are looked
                # up, and there the lookup error names it, and so does the warning of a conflict
                # (`_warn_if_contested`); a warning here would print on every run of anything.
                _logger.info(
                    "fed plugins not loaded: %s; `python -m fed_core plugins` shows why",
                    self._failed_plugins(),
                )

    def _load_entry_points(self) -> None:
        # fed's own plugins first, so that no third-party plugin can take the names of fed's built-ins.
        entry_points = sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (
                _normalize(_distribution_of(ep)[0]) not in _BUILTIN_NORMALIZED,
                _normalize(_distribution_of(ep)[0]),
                ep.name,
            ),
        )
        blocked = {_normalize(name) for name in self._disabled}
        self._warn_of_unknown_disabled(entry_points)
        for entry_point in entry_points:
            source = _Source(entry_point.name, *_distribution_of(entry_point))
            if {_normalize(source.plugin), _normalize(source.distribution)} & blocked:
                continue
            builtin = _normalize(source.distribution) in _BUILTIN_NORMALIZED
            if not (self._builtins if builtin else self._autoload):
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:
                message = f"cannot import {entry_point.value}: {_describe(error)}"
                self._report(source, message, error)
                continue
            try:
                self._add_plugin(plugin, source)
            except Exception as error:
                self._report(source, _describe(error), error)

    def _warn_of_unknown_disabled(self, entry_points: list[importlib.metadata.EntryPoint]) -> None:
        """Warn of disabled names that no installed plugin or distribution has: a misspelt name
        would otherwise leave its plugin enabled without a word."""
        plugins = {entry_point.name for entry_point in entry_points}
        distributions = {_distribution_of(entry_point)[0] for entry_point in entry_points}
        known = {_normalize(name) for name in plugins | distributions}
        unknown = sorted(name for name in self._disabled if _normalize(name) not in known)
        if unknown:
            warnings.warn(
                f"{DISABLED_ENV} (or disabled=) names {', '.join(map(repr, unknown))}, which is "
                f"neither an installed plugin nor a distribution that provides one. Installed plugins: "
                f"{', '.join(sorted(plugins))}; their distributions: "
                f"{', '.join(sorted(distributions))}.",
                UserWarning,
                stacklevel=4,
            )

    def _add_plugin(self, plugin: object, source: _Source) -> None:
        """Register ``plugin`` and call its hooks, all or nothing; raise what it got wrong."""
        if plugin is None:
            raise pluggy.PluginValidationError(plugin, "the plugin object is None")
        taken = self._sources.get(source.plugin)
        if taken is not None:
            raise ValueError(
                f"plugin name {source.plugin!r} of {source.distribution} is already taken by "
                f"{taken}; one of them needs another name"
            )
        for other_name, other in self._manager.list_name_plugin():
            if other is plugin:
                raise ValueError(
                    f"this plugin object is already registered, as {self._sources[other_name]}"
                )
        try:
            self._manager.register(plugin, name=source.plugin)
        except BaseException:
            # pluggy before 1.6 keeps a plugin whose hooks it refused registered under its name.
            if self._manager.has_plugin(source.plugin):
                self._manager.unregister(name=source.plugin)
            raise
        try:
            self._check_hooks(plugin)
            for kind in KINDS:
                try:
                    self._hooks.call(plugin, kind, self._registries[kind]._bound_to(source))
                except Exception as error:
                    error.add_note(f"(raised by {_hook_name(kind)})")
                    raise
        except BaseException:
            self._manager.unregister(plugin, name=source.plugin)
            for registry in self._registries.values():
                registry._remove_plugin(source.plugin)
            raise
        self._sources[source.plugin] = source

    def _check_hooks(self, plugin: object) -> None:
        """Refuse misspelt hooks, hook wrappers, and hooks not marked with ``@hookimpl``."""
        known = _hook_names()
        for caller in self._manager.get_hookcallers(plugin) or ():
            for implementation in caller.get_hookimpls():
                if implementation.plugin is not plugin:
                    continue
                if not caller.has_spec() and not implementation.optionalhook:
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"{caller.name!r} is not a fed hook; fed's hooks are {', '.join(known)}",
                    )
                if implementation.wrapper or implementation.hookwrapper:
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"{caller.name} is a hook wrapper; fed calls each plugin's registration "
                        "hooks on their own, so a plain @hookimpl is needed",
                    )
        for name in known:
            if (
                callable(inspect.getattr_static(plugin, name, None))
                and self._manager.parse_hookimpl_opts(plugin, name) is None
            ):
                raise pluggy.PluginValidationError(
                    plugin,
                    f"{name} is not marked with @fed_core.hookimpl, so fed would not call it",
                )

    def _report(self, source: _Source, message: str, error: Exception) -> None:
        self._load_errors.append(
            LoadError(source.plugin, source.distribution, source.version, message, error)
        )

    def _failed_plugins(self) -> str:
        return ", ".join(f"{e.plugin} ({e.distribution})" for e in self._load_errors)

    def _lookup_hint(self) -> str:
        notes = []
        if not self._autoload:
            notes.append("installed plugins are not loaded (autoload is off)")
        if self._disabled:
            notes.append(f"disabled plugins: {', '.join(sorted(self._disabled))}")
        if self._load_errors:
            notes.append(
                f"{len(self._load_errors)} plugin(s) failed to load: {self._failed_plugins()}; "
                "`python -m fed_core plugins` shows why"
            )
        return "; ".join(notes)

    def _warn_if_contested(self, kind: str, name: str) -> None:
        """Warn, once per entry, when a plugin that failed to load registers ``name`` too."""
        if (kind, name) in self._warned:
            return
        rivals = [
            error
            for error in self._load_errors
            if isinstance(error.exception, DuplicateEntryError)
            and (error.exception.kind, error.exception.name) == (kind, name)
        ]
        if not rivals:
            return
        self._warned.add((kind, name))
        entry = self._registries[kind]._entries[name]
        holder = _Source(entry.plugin, entry.distribution, entry.version)
        others = ", ".join(str(_Source(e.plugin, e.distribution, e.version)) for e in rivals)
        warnings.warn(
            f"fed uses {kind} {name!r} from {holder}; {others} also registers it and was not "
            f"loaded. Disable one of them with {DISABLED_ENV} to choose.",
            PluginConflictWarning,
            stacklevel=3,
        )


def _check_kind(kind: str) -> str:
    """``kind``, or its new name if it is a first-release name (with a DeprecationWarning)."""
    if kind in LEGACY_KINDS:
        new = LEGACY_KINDS[kind]
        warnings.warn(
            f"The plugin kind {kind!r} is now called {new!r}.", DeprecationWarning, stacklevel=3
        )
        return new
    if kind not in KINDS:
        raise ValueError(f"expected a plugin kind among {', '.join(KINDS)}; got {kind!r}")
    return kind


def _hook_name(kind: str) -> str:
    return KIND_SPECS[kind].hook


def _hook_names() -> list[str]:
    names = []
    for kind in KINDS:
        spec = KIND_SPECS[kind]
        names += [spec.hook] + ([spec.legacy_hook] if spec.legacy_hook else [])
    return names


def _normalize(name: str) -> str:
    """A distribution or entry-point name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str | None]:
    distribution = entry_point.dist
    if distribution is None:
        return "(unknown distribution)", None
    return distribution.name, distribution.version


def _describe(error: BaseException) -> str:
    notes = getattr(error, "__notes__", [])
    return " ".join([f"{type(error).__name__}: {error}", *notes])


def _autoload_from_environment() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() in _FALSE_VALUES


def _disabled_from_environment() -> list[str]:
    return [name.strip() for name in os.environ.get(DISABLED_ENV, "").split(",") if name.strip()]


_default: PluginSystem | None = None
_default_lock = threading.Lock()


def _default_system() -> PluginSystem:
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginSystem()
        return _default


def _swap_default(system: PluginSystem | None) -> PluginSystem | None:
    """Make ``system`` the default instance (None: a new one on next use); return the old one."""
    global _default
    with _default_lock:
        previous, _default = _default, system
        return previous


def get_registry(kind: str) -> Registry:
    """The registry of ``kind`` (one of :data:`KINDS`), loading installed plugins on first use."""
    return _default_system().registry(kind)


def list_entries() -> tuple[Entry, ...]:
    """Every registered entry, by kind then name, loading installed plugins on first use."""
    return _default_system().entries()


def load_errors() -> tuple[LoadError, ...]:
    """The installed plugins that failed to load, and why."""
    return _default_system().load_errors()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object made at run time and return its name; see PluginSystem.register."""
    return _default_system().register(plugin, name)


_BUILTIN_NORMALIZED = frozenset(_normalize(name) for name in BUILTIN_DISTRIBUTIONS)


def deferred(target: str) -> Callable[..., Any]:
    """A factory that imports `"module:attribute"` on first call and calls it with the same arguments.

    Plugins register these so that loading them, which happens on fed's first registry lookup, does not
    import heavy dependencies (such as TensorFlow) before they are needed.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"Expected a target of the form 'module:attribute', got {target!r}.")

    def build(*args: Any, **kwargs: Any) -> Any:
        return import_attribute(target)(*args, **kwargs)

    build.__name__ = build.__qualname__ = attribute
    build.__module__ = module_name
    build.__doc__ = f"Calls {target} (imported on first use)."
    build.fed_target = target  # type: ignore[attr-defined]
    return build
