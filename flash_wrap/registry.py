"""The solver registry: every ``flash_wrap.Solver`` class the plugins register, by name.

Built from a :class:`~flash_wrap.discovery.PluginSet` by calling each plugin's
``flash_wrap_register_solvers`` hook on its own, so a plugin whose hook raises, or that
registers something that is not a solver, becomes a broken record and the others still load.
:func:`get_registry` is the cached process-wide registry (over :func:`discovery.plugins`);
tests build their own with :func:`load_registry` or :func:`SolverRegistry.empty`.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import pluggy

from .discovery import BrokenPlugin, PluginError, PluginSet, load_plugins, new_plugin_set, plugins
from .errors import WrongType
from .solver import Solver

__all__ = ["BrokenPlugin", "PluginError", "SolverRecord", "SolverRegistry", "get_registry", "get_solver",
           "load_registry", "reset_registry"]


@dataclass(frozen=True)
class SolverRecord:
    """A registered solver class and where it came from."""

    name: str
    cls: type[Solver]
    plugin: str
    origin: str


@dataclass
class SolverRegistry:
    """Solvers collected from a plugin set, plus the broken-plugin records."""

    plugin_set: PluginSet
    solvers: dict[str, SolverRecord] = field(default_factory=dict)
    #: names that two or more plugins register, with every claimant; such a name resolves to none
    conflicts: dict[str, list[SolverRecord]] = field(default_factory=dict)

    @classmethod
    def from_plugins(cls, plugin_set: PluginSet) -> SolverRegistry:
        registry = cls(plugin_set)
        for name in list(plugin_set.origins):
            registry._collect(name)
        return registry

    @classmethod
    def empty(cls, *, strict: bool = False) -> SolverRegistry:
        """A registry with no plugins at all (for tests and notebooks)."""
        return cls(new_plugin_set(strict=strict))

    @property
    def broken(self) -> list[BrokenPlugin]:
        return self.plugin_set.broken

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.plugin_set.hook

    def register_plugin(self, plugin: object, name: str, origin: str = "in-process") -> None:
        """Register a plugin object or module and collect the solvers it registers."""
        if self.plugin_set.add(plugin, name, origin):
            self._collect(name)

    def solver(self, name: str) -> type[Solver]:
        """The solver class registered under ``name``; a :class:`PluginError` (a ``LookupError``)
        says why otherwise: the plugin is broken, or the name is unknown (listing the known ones)."""
        if name in self.solvers:
            return self.solvers[name].cls
        if name in self.conflicts:
            claimants = "; ".join(r.origin for r in self.conflicts[name])
            raise PluginError(f"solver name {name!r} is registered by more than one plugin ({claimants}), so none is "
                              "used; uninstall one of them")
        for record in self.broken:
            if record.plugin == name:
                raise PluginError(f"solver plugin {name!r} is broken ({record.origin}): {record.error}")
        known = ", ".join(sorted(self.solvers)) or "none"
        hint = f"; broken plugins: {', '.join(b.plugin for b in self.broken)}" if self.broken else ""
        raise PluginError(f"unknown solver {name!r}; known solvers: {known}{hint}")

    def _collect(self, plugin: str) -> None:
        origin = self.plugin_set.origins[plugin]
        try:
            found: list[type] = []
            for impl in self.hook.flash_wrap_register_solvers.get_hookimpls():
                if impl.plugin_name == plugin:
                    impl.function(register=found.append)
            records = [self._record(cls, plugin, origin) for cls in found]
            names = [r.name for r in records]
            if len(set(names)) != len(names):
                raise PluginError(f"plugin {plugin!r} registers a solver name twice: {names}")
        except Exception as err:  # one plugin's failure must not stop the others
            self.plugin_set.remove(plugin)
            self.plugin_set.mark_broken(plugin, origin, err)
            return
        for record in records:
            self._add(record)

    def _add(self, record: SolverRecord) -> None:
        """Add a solver; a name another plugin already has becomes a conflict: neither is used
        (whichever loaded first would otherwise win silently, a built-in included)."""
        name = record.name
        if name in self.conflicts:
            self.conflicts[name].append(record)
        elif name in self.solvers:
            self.conflicts[name] = [self.solvers.pop(name), record]
        else:
            self.solvers[name] = record
            return
        warnings.warn(
            f"solver name {name!r} is registered by more than one plugin "
            f"({'; '.join(r.origin for r in self.conflicts[name])}); it is disabled until one is uninstalled",
            stacklevel=3,
        )

    def _record(self, cls: object, plugin: str, origin: str) -> SolverRecord:
        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise WrongType(f"register() expects a flash_wrap.Solver subclass, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise WrongType(f"solver class {cls.__name__} must define a non-empty string `name`")
        return SolverRecord(name, cls, plugin, origin)


def load_registry(*, strict: bool | None = None) -> SolverRegistry:
    """A fresh registry over a fresh load of the ``flash_wrap`` entry-point group."""
    return SolverRegistry.from_plugins(load_plugins(strict=strict))


@functools.cache
def get_registry() -> SolverRegistry:
    """The process-wide registry, built on first use over :func:`flash_wrap.discovery.plugins`."""
    return SolverRegistry.from_plugins(plugins())


def reset_registry() -> None:
    """Forget the cached plugins and registry (e.g. after installing a plugin in this process)."""
    get_registry.cache_clear()
    plugins.cache_clear()


def get_solver(name: str) -> type[Solver]:
    """The solver class registered as ``name`` (e.g. ``"latent-dps"``)."""
    return get_registry().solver(name)


def unused_solver_defaults(defaults: dict, registry: SolverRegistry | None = None) -> list[str]:
    """Entries of a bundle's ``solver_defaults`` that no installed solver or known task will read
    (a misspelt ``latent-dsp`` or ``gausian-blur`` would otherwise be ignored without a word)."""
    from .operators import task_names

    registry = registry or get_registry()
    tasks = set(task_names())
    unused = [f"solver {name!r} (not installed)" for name in defaults if name not in registry.solvers]
    for name, per_task in defaults.items():
        unused += [f"task {task!r} of {name!r} (unknown task)" for task in per_task if task not in tasks]
    return unused
