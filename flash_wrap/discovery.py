"""Plugin discovery: the ``flash_wrap`` entry-point group, loaded one plugin at a time.

A plugin is a module (or object) that implements hooks of :mod:`flash_wrap.hookspecs`. This
module only finds plugins and registers them with a pluggy ``PluginManager``; what they
register (solvers) is collected and checked by :mod:`flash_wrap.registry`, one layer up, so
the reverse loop can reach the process-wide observers without knowing about solvers.

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
    """A plugin that failed to load, with the error it raised."""

    plugin: str
    origin: str
    error: str


@dataclass
class PluginSet:
    """A pluggy manager with the flash-wrap hookspecs, the plugins registered on it (each with
    its origin) and the plugins that failed."""

    manager: pluggy.PluginManager
    strict: bool = False
    origins: dict[str, str] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

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

    def load_entry_point(self, ep: EntryPoint) -> None:
        origin = entry_point_origin(ep)
        try:
            plugin = ep.load()
        except Exception as err:
            self.mark_broken(ep.name, origin, err)
            return
        self.add(plugin, ep.name, origin)

    def mark_broken(self, plugin: str, origin: str, err: Exception) -> None:
        if self.strict:
            raise PluginError(f"plugin {plugin!r} ({origin}) failed to load: {err!r}") from err
        message = f"{type(err).__name__}: {err}"
        self.broken.append(BrokenPlugin(plugin, origin, message))
        warnings.warn(f"flash-wrap plugin {plugin!r} ({origin}) is broken and was skipped: {message}", stacklevel=3)


def entry_point_origin(ep: EntryPoint) -> str:
    """``"<distribution> <version>, entry point <name> = <value>"``."""
    dist = ep.dist
    where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    return f"{where}, entry point {ep.name} = {ep.value}"


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
    seen: set[tuple[str, str]] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        if (ep.name, ep.value) not in seen:  # the same distribution can be on sys.path twice
            seen.add((ep.name, ep.value))
            plugin_set.load_entry_point(ep)
    return plugin_set


@functools.cache
def plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    return load_plugins()
