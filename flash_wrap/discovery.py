"""Plugin discovery: the ``flash_wrap`` entry-point group, loaded one plugin at a time.

A plugin is a module (or object) that implements hooks of :mod:`flash_wrap.hookspecs`. This
module only finds plugins and registers them with a pluggy ``PluginManager``; what they
register (solvers, tasks) is collected and checked by :mod:`flash_wrap.registry`, one layer up,
so the reverse loop can reach the process-wide observers without knowing about solvers.

A distribution may list one module under several entry points (one per name it registers: the
naming convention of :mod:`flash_wrap.hookspecs`); the module is loaded and registered once, as
the plugin named by its entry point, or by the module's path where there are several.

A plugin that fails to import becomes a :class:`BrokenPlugin` record (with a warning) and the
others still load; ``FLASH_WRAP_STRICT_PLUGINS=1`` raises instead. :func:`plugins` is built on
first use and cached for the process; tests build their own with :func:`load_plugins` (or an
empty :func:`new_plugin_set`) and never touch the cached one.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from . import hookspecs
from .errors import FlashWrapError

ENTRY_POINT_GROUP = "flash_wrap"
STRICT_ENV = "FLASH_WRAP_STRICT_PLUGINS"


class PluginError(FlashWrapError, LookupError):
    """A plugin could not be loaded, or a solver name is unknown, broken or taken twice."""


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to load, with the error it raised and the entry-point names it was
    listed under (what a user asks for by name)."""

    plugin: str
    origin: str
    error: str
    names: tuple[str, ...] = ()


@dataclass
class PluginSet:
    """A pluggy manager with the flash-wrap hookspecs, the plugins registered on it (each with
    its origin) and the plugins that failed."""

    manager: pluggy.PluginManager
    strict: bool = False
    origins: dict[str, str] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    #: plugin -> the entry-point names of its distribution in the group (absent for in-process
    #: plugins): the names it may register
    declared: dict[str, frozenset[str]] = field(default_factory=dict)
    #: plugin -> the entry-point names it was listed under
    entry_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def add(self, plugin: object, name: str, origin: str = "in-process") -> bool:
        """Register ``plugin`` under ``name``; ``False`` (and a broken record) if pluggy refuses it."""
        try:
            self.manager.register(plugin, name=name)
            # a flash_wrap_* hook whose name matches no spec (a typo) would otherwise never run
            self.manager.check_pending()
        except Exception as err:  # a hook with wrong arguments, or one that matches no spec
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin, name=name)
            self.mark_broken(name, origin, err)
            return False
        self.origins[name] = origin
        return True

    def remove(self, name: str) -> None:
        """Unregister the plugin ``name`` (e.g. when what it registered was refused)."""
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin, name=name)
        self.origins.pop(name, None)

    def load_entry_points(self, eps: list[EntryPoint], declared: frozenset[str]) -> None:
        """Load the module the entry points ``eps`` (one distribution, one value) name, once.

        ``declared``: every name the distribution lists in the group."""
        names = tuple(ep.name for ep in eps)
        name = names[0] if len(names) == 1 else eps[0].value
        origin = entry_point_origin(eps)
        self.entry_names[name] = names
        try:
            plugin = eps[0].load()
        except Exception as err:
            self.mark_broken(name, origin, err)
            return
        if self.add(plugin, name, origin):
            self.declared[name] = declared

    def mark_broken(self, plugin: str, origin: str, err: Exception) -> None:
        if self.strict:
            raise PluginError(f"plugin {plugin!r} ({origin}) failed to load: {err!r}") from err
        message = f"{type(err).__name__}: {err}"
        self.broken.append(BrokenPlugin(plugin, origin, message, self.entry_names.get(plugin, ())))
        warnings.warn(f"flash-wrap plugin {plugin!r} ({origin}) is broken and was skipped: {message}", stacklevel=3)


def entry_point_origin(eps: list[EntryPoint]) -> str:
    """``"<distribution> <version>, entry point <name> = <value>"`` (``entry points <a>, <b> = …``
    for one module listed under several names)."""
    dist = eps[0].dist
    where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    label = "entry point" if len(eps) == 1 else "entry points"
    return f"{where}, {label} {', '.join(ep.name for ep in eps)} = {eps[0].value}"


def _distribution(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ""


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "False")


def new_plugin_set(*, strict: bool | None = None) -> PluginSet:
    """An empty plugin set with the flash-wrap hookspecs (no entry points loaded)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return PluginSet(manager=manager, strict=strict_from_env() if strict is None else strict)


def load_plugins(*, strict: bool | None = None) -> PluginSet:
    """A fresh plugin set holding every plugin of the ``flash_wrap`` entry-point group."""
    plugin_set = new_plugin_set(strict=strict)
    unique: dict[tuple[str, str], EntryPoint] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        unique.setdefault((ep.name, ep.value), ep)  # the same distribution can be on sys.path twice
    modules: dict[tuple[str, str], list[EntryPoint]] = {}
    declared: dict[str, set[str]] = {}
    for ep in unique.values():
        modules.setdefault((_distribution(ep), ep.value), []).append(ep)
        declared.setdefault(_distribution(ep), set()).add(ep.name)
    for (dist, _), eps in modules.items():
        plugin_set.load_entry_points(eps, frozenset(declared[dist]))
    return plugin_set


@functools.cache
def plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    return load_plugins()
