"""Plugin discovery: the ``flash_wrap`` entry-point group, loaded lazily, one plugin at a time.

A plugin that fails to import, or whose register hook raises, becomes a :class:`BrokenPlugin`
record (with a warning) and the others still load; set ``FLASH_WRAP_STRICT_PLUGINS=1`` to raise
instead. The registry is built on first use and cached (:func:`get_registry`); tests build fresh
ones with :func:`load_registry`.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "flash_wrap"
STRICT_ENV = "FLASH_WRAP_STRICT_PLUGINS"


class PluginError(RuntimeError):
    """A plugin could not be loaded, or a solver name is unknown or duplicated."""


@dataclass(frozen=True)
class SolverRecord:
    """A registered solver class and where it came from."""

    name: str
    cls: type
    plugin: str
    origin: str


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to load, with the error it raised."""

    plugin: str
    origin: str
    error: str


@dataclass
class PluginRegistry:
    """Solvers discovered through the plugin manager, plus broken-plugin records."""

    manager: pluggy.PluginManager
    strict: bool = False
    solvers: dict[str, SolverRecord] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def register_plugin(self, plugin: object, name: str, origin: str = "in-process") -> None:
        """Register a plugin object or module and collect the solvers it registers."""
        try:
            self.manager.register(plugin, name=name)
            found: list[type] = []
            for impl in self.manager.hook.flash_wrap_register_solvers.get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(register=found.append)
            records = [self._record(cls, name, origin) for cls in found]
            names = [r.name for r in records]
            if len(set(names)) != len(names):
                raise PluginError(f"plugin {name!r} registers a solver name twice: {names}")
            self.solvers.update((r.name, r) for r in records)
        except Exception as err:  # one plugin's failure must not stop the others
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            self._mark_broken(name, origin, err)

    def load_entry_point(self, ep: EntryPoint) -> None:
        origin = _origin(ep)
        try:
            plugin = ep.load()
        except Exception as err:
            self._mark_broken(ep.name, origin, err)
            return
        self.register_plugin(plugin, ep.name, origin)

    def solver(self, name: str) -> type:
        """The solver class registered under ``name``; clear errors for broken or unknown names."""
        if name in self.solvers:
            return self.solvers[name].cls
        for record in self.broken:
            if record.plugin == name:
                raise PluginError(f"solver plugin {name!r} is broken ({record.origin}): {record.error}")
        known = ", ".join(sorted(self.solvers)) or "none"
        hint = f"; broken plugins: {', '.join(b.plugin for b in self.broken)}" if self.broken else ""
        raise PluginError(f"unknown solver {name!r}; known solvers: {known}{hint}")

    def _record(self, cls: type, plugin: str, origin: str) -> SolverRecord:
        from .solver import Solver

        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise TypeError(f"register() expects a flash_wrap.Solver subclass, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"solver class {cls.__name__} must define a non-empty string `name`")
        if name in self.solvers:
            other = self.solvers[name]
            raise PluginError(f"solver name {name!r} registered twice: by {other.origin} and by {origin}")
        return SolverRecord(name, cls, plugin, origin)

    def _mark_broken(self, plugin: str, origin: str, err: Exception) -> None:
        if self.strict:
            raise PluginError(f"plugin {plugin!r} ({origin}) failed to load: {err!r}") from err
        message = f"{type(err).__name__}: {err}"
        self.broken.append(BrokenPlugin(plugin, origin, message))
        warnings.warn(f"flash-wrap plugin {plugin!r} ({origin}) is broken and was skipped: {message}", stacklevel=3)


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    return f"{where}, entry point {ep.name} = {ep.value}"


def load_registry(*, strict: bool | None = None) -> PluginRegistry:
    """Build a fresh registry from the ``flash_wrap`` entry-point group."""
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "False")
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = PluginRegistry(manager=manager, strict=strict)
    seen: set[tuple[str, str]] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if (ep.name, ep.value) not in seen:  # the same distribution can be on sys.path twice
            seen.add((ep.name, ep.value))
            registry.load_entry_point(ep)
    return registry


@functools.cache
def get_registry() -> PluginRegistry:
    """The process-wide registry, built on first use."""
    return load_registry()


def reset_registry() -> None:
    """Forget the cached registry (e.g. after installing a plugin in the same process)."""
    get_registry.cache_clear()
