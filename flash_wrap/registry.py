"""The plugin registry: every solver class and every task the plugins register, by name.

Built from a :class:`~flash_wrap.discovery.PluginSet` by calling each plugin's
``flash_wrap_register_solvers`` and ``flash_wrap_register_tasks`` hooks on their own, so a
plugin whose hook raises, or that registers something that is not a solver or a task, becomes a
broken record and the others still load. A name two plugins register is a conflict: neither is
used. :func:`get_registry` is the cached process-wide registry (over :func:`discovery.plugins`);
tests build their own with :func:`load_registry` or :func:`PluginRegistry.empty`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import pluggy

from .discovery import BrokenPlugin, PluginError, PluginSet, load_plugins, new_plugin_set, plugins
from .errors import WrongType
from .operators import Task
from .solver import Solver

__all__ = ["BrokenPlugin", "PluginError", "PluginRegistry", "SolverRecord", "TaskRecord", "get_registry", "get_solver",
           "get_task", "load_registry", "reset_registry", "task_names"]

class _Record(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def origin(self) -> str: ...


V = TypeVar("V", bound=_Record)


@dataclass(frozen=True)
class SolverRecord:
    """A registered solver class and where it came from."""

    name: str
    cls: type[Solver]
    plugin: str
    origin: str


@dataclass(frozen=True)
class TaskRecord:
    """A registered task and where it came from."""

    name: str
    task: Task
    plugin: str
    origin: str


@dataclass
class _Kind(Generic[V]):
    """One kind of registered thing: its hook, how a registered object becomes a record, and
    the records and conflicts by name."""

    word: str
    hook: str
    record: Callable[[object, str, str], V]
    records: dict[str, V] = field(default_factory=dict)
    conflicts: dict[str, list[V]] = field(default_factory=dict)


def _solver_record(cls: object, plugin: str, origin: str) -> SolverRecord:
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise WrongType(f"register() expects a flash_wrap.Solver subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise WrongType(f"solver class {cls.__name__} must define a non-empty string `name`")
    return SolverRecord(name, cls, plugin, origin)


def _task_record(task: object, plugin: str, origin: str) -> TaskRecord:
    if not isinstance(task, Task):
        raise WrongType(f"register() of flash_wrap_register_tasks expects a flash_wrap.operators.Task, got {task!r}")
    return TaskRecord(task.name, task, plugin, origin)


class PluginRegistry:
    """Solvers and tasks collected from a plugin set, plus the broken-plugin records."""

    def __init__(self, plugin_set: PluginSet) -> None:
        self.plugin_set = plugin_set
        self._solvers: _Kind[SolverRecord] = _Kind("solver", "flash_wrap_register_solvers", _solver_record)
        self._tasks: _Kind[TaskRecord] = _Kind("task", "flash_wrap_register_tasks", _task_record)

    @classmethod
    def from_plugins(cls, plugin_set: PluginSet) -> PluginRegistry:
        registry = cls(plugin_set)
        for name in list(plugin_set.origins):
            registry._collect(name)
        return registry

    @classmethod
    def empty(cls, *, strict: bool = False) -> PluginRegistry:
        """A registry with no plugins at all (for tests and notebooks)."""
        return cls(new_plugin_set(strict=strict))

    @property
    def solvers(self) -> dict[str, SolverRecord]:
        return self._solvers.records

    @property
    def conflicts(self) -> dict[str, list[SolverRecord]]:
        """Solver names that two or more plugins register, with every claimant; such a name
        resolves to none."""
        return self._solvers.conflicts

    @property
    def tasks(self) -> dict[str, TaskRecord]:
        return self._tasks.records

    @property
    def task_conflicts(self) -> dict[str, list[TaskRecord]]:
        return self._tasks.conflicts

    @property
    def broken(self) -> list[BrokenPlugin]:
        return self.plugin_set.broken

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.plugin_set.hook

    def register_plugin(self, plugin: object, name: str, origin: str = "in-process") -> None:
        """Register a plugin object or module and collect the solvers and tasks it registers."""
        if self.plugin_set.add(plugin, name, origin):
            self._collect(name)

    def solver(self, name: str) -> type[Solver]:
        """The solver class registered under ``name``; a :class:`PluginError` (a ``LookupError``)
        says why otherwise: the plugin is broken, or the name is unknown (listing the known ones)."""
        return self._lookup(self._solvers, name).cls

    def task(self, name: str) -> Task:
        """The task registered under ``name``; a :class:`PluginError` (a ``LookupError``) says why
        otherwise, as for :meth:`solver`."""
        return self._lookup(self._tasks, name).task

    def official_tasks(self) -> dict[str, str]:
        """Official Flash-Diffusion operator key → the task that imports its encoders
        (:attr:`Task.official_operators`); a :class:`PluginError` if two tasks claim one key."""
        claimed: dict[str, list[TaskRecord]] = {}
        for record in self.tasks.values():
            for key in record.task.official_operators:
                claimed.setdefault(key, []).append(record)
        for key, records in claimed.items():
            if len(records) > 1:
                raise PluginError(f"the official operator {key!r} is claimed by the tasks "
                                  f"{', '.join(f'{r.name} ({r.origin})' for r in records)}; uninstall one of them")
        return {key: records[0].name for key, records in claimed.items()}

    def _lookup(self, kind: _Kind[V], name: str) -> V:
        if isinstance(name, str) and name in kind.records:
            return kind.records[name]
        if name in kind.conflicts:
            claimants = "; ".join(r.origin for r in kind.conflicts[name])
            raise PluginError(f"{kind.word} name {name!r} is registered by more than one plugin ({claimants}), so "
                              "none is used; uninstall one of them")
        for record in self.broken:
            if name == record.plugin or name in record.names:
                raise PluginError(f"{kind.word} plugin {name!r} is broken ({record.origin}): {record.error}")
        known = ", ".join(sorted(kind.records)) or "none"
        hint = f"; broken plugins: {', '.join(b.plugin for b in self.broken)}" if self.broken else ""
        raise PluginError(f"unknown {kind.word} {name!r}; known {kind.word}s: {known}{hint}")

    def _collect(self, plugin: str) -> None:
        origin = self.plugin_set.origins[plugin]
        try:
            found = [(kind, self._registered(kind, plugin, origin)) for kind in (self._solvers, self._tasks)]
        except Exception as err:  # one plugin's failure must not stop the others
            self.plugin_set.remove(plugin)
            self.plugin_set.mark_broken(plugin, origin, err)
            return
        declared = self.plugin_set.declared.get(plugin)
        for kind, records in found:
            for record in records:
                if declared is not None and record.name not in declared:
                    warnings.warn(
                        f"plugin {plugin!r} ({origin}) registers the {kind.word} {record.name!r}, which none of its "
                        f"distribution's flash_wrap entry points declares; list `{record.name} = <its module>` under "
                        "[project.entry-points.flash_wrap] so the name can be checked before torch loads",
                        stacklevel=3,
                    )
                self._add(kind, record)

    def _registered(self, kind: _Kind[V], plugin: str, origin: str) -> list[V]:
        """What ``plugin``'s hook of ``kind`` registers, as records (raises on anything wrong)."""
        found: list[object] = []
        for impl in getattr(self.hook, kind.hook).get_hookimpls():
            if impl.plugin_name == plugin:
                impl.function(register=found.append)
        records = [kind.record(obj, plugin, origin) for obj in found]
        names = [r.name for r in records]
        if len(set(names)) != len(names):
            raise PluginError(f"plugin {plugin!r} registers a {kind.word} name twice: {names}")
        return records

    def _add(self, kind: _Kind[V], record: V) -> None:
        """Add a record; a name another plugin already has becomes a conflict: neither is used
        (whichever loaded first would otherwise win silently, a built-in included)."""
        name = record.name
        if name in kind.conflicts:
            kind.conflicts[name].append(record)
        elif name in kind.records:
            kind.conflicts[name] = [kind.records.pop(name), record]
        else:
            kind.records[name] = record
            return
        warnings.warn(
            f"{kind.word} name {name!r} is registered by more than one plugin "
            f"({'; '.join(r.origin for r in kind.conflicts[name])}); it is disabled until one is uninstalled",
            stacklevel=4,
        )


def load_registry(*, strict: bool | None = None) -> PluginRegistry:
    """A fresh registry over a fresh load of the ``flash_wrap`` entry-point group."""
    return PluginRegistry.from_plugins(load_plugins(strict=strict))


@functools.cache
def get_registry() -> PluginRegistry:
    """The process-wide registry, built on first use over :func:`flash_wrap.discovery.plugins`."""
    return PluginRegistry.from_plugins(plugins())


def reset_registry() -> None:
    """Forget the cached plugins and registry (e.g. after installing a plugin in this process)."""
    get_registry.cache_clear()
    plugins.cache_clear()


def get_solver(name: str) -> type[Solver]:
    """The solver class registered as ``name`` (e.g. ``"latent-dps"``)."""
    return get_registry().solver(name)


def get_task(name: str) -> Task:
    """The task registered as ``name`` (e.g. ``"gaussian-blur"``); a :class:`PluginError` (a
    ``LookupError``) listing the known tasks otherwise."""
    return get_registry().task(name)


def task_names() -> list[str]:
    """Names of the registered tasks, in registration order."""
    return list(get_registry().tasks)

