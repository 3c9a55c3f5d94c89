"""The plugin registry (flash_wrap.registry): solver classes and tasks collected per plugin from the
``flash_wrap_register_solvers`` and ``flash_wrap_register_tasks`` hooks, checked, and looked up by
name; one plugin's failure never stops the others. Every test builds its own registry:
``get_registry()`` is only read."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap import Solver, hookimpl
from flash_wrap.discovery import STRICT_ENV, PluginError, new_plugin_set
from flash_wrap.operators import GaussianBlur, Task
from flash_wrap.registry import (
    PluginRegistry,
    SolverRecord,
    TaskRecord,
    get_registry,
    get_solver,
    get_task,
    load_registry,
)

BUILTINS = {"latent-dps": "LatentDPS", "gml-dps": "GMLDPS", "psld": "PSLD", "resample": "ReSample"}
BUILTIN_TASKS = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")


def _solver(name: str) -> type[Solver]:
    """A prior-only solver class registered as ``name``."""

    def step(self, state):
        eps = state.predict_noise(state.z)
        z0 = state.sampler.tweedie(state.z, eps, state.index)
        return state.sampler.step(state.z, eps, z0, state.index, state.generator)

    return type(f"Solver_{name.replace('-', '_')}", (Solver,), {"name": name, "fallback": {"c": 1.0}, "step": step})


class Registers:
    """A plugin object whose solver hook (or, with ``kind="tasks"``, task hook) registers the given objects."""

    def __init__(self, *objects: object, kind: str = "solvers") -> None:
        self.objects, self.kind = objects, kind

    def _give(self, register, kind: str) -> None:
        for obj in self.objects if kind == self.kind else ():
            register(obj)

    @hookimpl
    def flash_wrap_register_solvers(self, register):
        self._give(register, "solvers")

    @hookimpl
    def flash_wrap_register_tasks(self, register):
        self._give(register, "tasks")


class Raises:
    @hookimpl
    def flash_wrap_register_solvers(self, register):
        register(_solver("half-registered"))
        raise RuntimeError("boom in register")


def test_the_installed_builtins_are_registered_from_their_entry_points():
    registry = load_registry(strict=True)
    for name, cls_name in BUILTINS.items():
        record = registry.solvers[name]
        assert isinstance(record, SolverRecord) and record.plugin == name
        assert record.cls.__name__ == cls_name and record.cls.__module__ == f"flash_wrap_plugins.{name.replace('-', '_')}"
        assert f"entry point {name} = flash_wrap_plugins." in record.origin
        assert registry.solver(name) is record.cls
    assert registry.broken == []


def test_get_solver_reads_the_process_wide_registry():
    from flash_wrap_plugins.latent_dps import LatentDPS

    assert get_solver("latent-dps") is LatentDPS is flash_wrap.get_solver("latent-dps")
    assert get_registry() is get_registry()


def test_an_in_process_plugin_registers_on_an_empty_registry():
    registry = PluginRegistry.empty()
    assert registry.solvers == {} and registry.broken == []
    one, two = _solver("one"), _solver("two")
    registry.register_plugin(Registers(one, two), "pair")
    assert registry.solver("one") is one and registry.solver("two") is two
    assert registry.solvers["one"] == SolverRecord("one", one, "pair", "in-process")
    assert registry.hook is registry.plugin_set.hook and registry.plugin_set.manager.has_plugin("pair")


def test_from_plugins_collects_every_plugin_of_a_set():
    plugin_set = new_plugin_set(strict=True)
    plugin_set.add(Registers(_solver("a")), "plugin-a", "somewhere 1.0")
    plugin_set.add(Registers(_solver("b")), "plugin-b")
    registry = PluginRegistry.from_plugins(plugin_set)
    assert sorted(registry.solvers) == ["a", "b"] and registry.solvers["a"].origin == "somewhere 1.0"


def test_a_raising_register_hook_is_isolated():
    registry = PluginRegistry.empty()
    registry.register_plugin(Registers(_solver("fine")), "fine")
    with pytest.warns(UserWarning, match="'raising'.*broken.*boom in register"):
        registry.register_plugin(Raises(), "raising")
    assert [b.plugin for b in registry.broken] == ["raising"] and "RuntimeError" in registry.broken[0].error
    assert "half-registered" not in registry.solvers  # nothing of a broken plugin is kept
    assert not registry.plugin_set.manager.has_plugin("raising")  # nor its other hooks
    assert "fine" in registry.solvers
    with pytest.raises(PluginError, match="solver plugin 'raising' is broken .*boom in register"):
        registry.solver("raising")


@pytest.mark.parametrize(
    "registered,match",
    [
        (object, "register\\(\\) expects a flash_wrap.Solver subclass"),
        (torch.nn.Linear, "expects a flash_wrap.Solver subclass"),
        ("latent-dps", "expects a flash_wrap.Solver subclass"),
        (type("Nameless", (Solver,), {"step": lambda self, s: s.z}), "Nameless must define a non-empty string `name`"),
    ],
)
def test_registering_a_non_solver_marks_the_plugin_broken(registered, match):
    registry = PluginRegistry.empty()
    with pytest.warns(UserWarning, match=match):
        registry.register_plugin(Registers(registered), "odd")
    assert [b.plugin for b in registry.broken] == ["odd"] and registry.solvers == {}


@pytest.mark.parametrize("kind", ["solver", "task"])
def test_a_name_registered_twice_in_one_plugin_is_refused(kind):
    registry = PluginRegistry.empty()
    twice = (_solver("x"), _solver("x")) if kind == "solver" else (_task("x-blur"), _task("x-blur"))
    with pytest.warns(UserWarning, match=f"registers a {kind} name twice"):
        registry.register_plugin(Registers(*twice, kind=f"{kind}s"), "twice")
    assert registry.solvers == {} and registry.tasks == {} and [b.plugin for b in registry.broken] == ["twice"]


def test_a_name_two_plugins_register_is_a_conflict_that_names_both():
    # neither wins: whichever loaded first would otherwise run silently under the other's name
    registry = PluginRegistry.empty()
    registry.register_plugin(Registers(_solver("shared"), _solver("own")), "first", "first-dist 1.0")
    with pytest.warns(UserWarning, match=r"'shared' is registered by more than one plugin \(first-dist 1.0; in-process\)"):
        registry.register_plugin(Registers(_solver("shared")), "second")
    with pytest.raises(PluginError, match=r"'shared' is registered by more than one plugin \(first-dist 1.0; in-process\)"):
        registry.solver("shared")
    assert registry.solver("own").name == "own" and registry.broken == []  # the plugins' other solvers still work


def test_a_third_party_cannot_take_a_built_in_name():
    registry = load_registry(strict=False)
    builtin = registry.solver("latent-dps")
    with pytest.warns(UserWarning, match="'latent-dps' is registered by more than one plugin"):
        registry.register_plugin(Registers(_solver("latent-dps")), "aaa-impostor", "impostor-dist 0.1")
    with pytest.raises(PluginError, match="impostor-dist 0.1"):
        registry.solver("latent-dps")
    assert builtin.__module__ == "flash_wrap_plugins.latent_dps"


def test_an_unknown_name_lists_the_known_ones():
    registry = PluginRegistry.empty()
    with pytest.raises(PluginError, match="unknown solver 'dps-xl'; known solvers: none$"):
        registry.solver("dps-xl")
    registry.register_plugin(Registers(_solver("b-solver"), _solver("a-solver")), "two")
    with pytest.raises(LookupError, match="unknown solver 'dps-xl'; known solvers: a-solver, b-solver$"):
        registry.solver("dps-xl")
    with pytest.warns(UserWarning):
        registry.register_plugin(Raises(), "raising")
    with pytest.raises(PluginError, match="known solvers: a-solver, b-solver; broken plugins: raising"):
        registry.solver("dps-xl")
    with pytest.raises(PluginError, match="unknown solver 'nope'; known solvers: .*latent-dps"):
        load_registry().solver("nope")


def test_strict_mode_raises_at_registration():
    registry = PluginRegistry.empty(strict=True)
    with pytest.raises(PluginError, match="plugin 'raising' .*failed to load.*boom in register"):
        registry.register_plugin(Raises(), "raising")


def test_strict_mode_from_the_environment(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    registry = PluginRegistry.from_plugins(new_plugin_set())
    with pytest.raises(PluginError, match="not-a-solver.*expects a flash_wrap.Solver subclass"):
        registry.register_plugin(Registers(object), "not-a-solver")


def test_the_cli_lists_solvers_tasks_and_broken_plugins(monkeypatch, capsys):
    cli = pytest.importorskip("flash_wrap.apps.cli", reason="the CLI is moving to flash_wrap.apps")
    registry = load_registry(strict=False)  # a fresh one, shown by the CLI in place of the cached one
    with pytest.warns(UserWarning):
        registry.register_plugin(Raises(), "raising")
    monkeypatch.setattr("flash_wrap.registry.get_registry", lambda: registry)
    assert cli.main(["solvers", "--details"]) == 0
    out = capsys.readouterr().out
    assert "entry point latent-dps = flash_wrap_plugins.latent_dps" in out
    assert "gaussian-blur: c=1.2, eta=1" in out
    assert any(line.startswith("raising ") and "BROKEN (in-process)" in line and "boom in register" in line
               for line in out.splitlines())
    tasks = out[out.index("\ntasks:\n"):]  # the tasks follow the solvers, each with its origin
    assert "gaussian-blur      sigma = (0.3 + 2.7 t) * H/256 px" in tasks and "= flash_wrap_plugins.tasks" in tasks


# -- tasks ------------------------------------------------------------------------------------------
def _task(name: str, official: tuple[str, ...] = ()) -> Task:
    return Task(name, "blur of width 1 + t px", (0.0, 1.0), (0.0, 1.0),
                lambda t, size, noise, seeds: GaussianBlur(1.0 + t, noise), official_operators=official)


def RegistersTasks(*objects: object) -> Registers:
    """A plugin object whose task hook registers the given objects."""
    return Registers(*objects, kind="tasks")


def test_the_built_in_tasks_come_from_one_module_listed_under_each_name():
    registry = load_registry(strict=True)
    assert list(registry.tasks) == list(BUILTIN_TASKS)  # the module's registration order
    for name in BUILTIN_TASKS:
        record = registry.tasks[name]
        assert isinstance(record, TaskRecord) and record.plugin == "flash_wrap_plugins.tasks"
        assert record.origin.startswith("flash-wrap ") and f"{name}" in record.origin.split("=")[0]
        assert registry.task(name) is record.task and record.task.name == name
    assert registry.official_tasks() == {"gaussian_blur": "gaussian-blur", "inpainting/random": "random-inpainting",
                                         "nonlinear_blur": "motion-blur"}
    assert get_task("motion-blur") is get_registry().task("motion-blur") is flash_wrap.get_task("motion-blur")


def test_a_plugin_registers_solvers_and_tasks_together():
    class Both:
        @hookimpl
        def flash_wrap_register_solvers(self, register):
            register(_solver("box-solver"))

        @hookimpl
        def flash_wrap_register_tasks(self, register):
            register(_task("box-blur"))

    registry = PluginRegistry.empty()
    registry.register_plugin(Both(), "both", "both-dist 1.0")
    assert registry.tasks["box-blur"] == TaskRecord("box-blur", registry.task("box-blur"), "both", "both-dist 1.0")
    assert registry.solver("box-solver").name == "box-solver"


def test_an_unknown_task_lists_the_known_ones():
    registry = PluginRegistry.empty()
    for registered, known in (((), "none"), ((_task("b-blur"), _task("a-blur")), "a-blur, b-blur")):
        registry.register_plugin(RegistersTasks(*registered), f"plugin-{known}")
        with pytest.raises(PluginError, match=f"unknown task 'blur'; known tasks: {known}$"):
            registry.task("blur")


@pytest.mark.parametrize("registered", [object(), "gaussian-blur", GaussianBlur(1.0)])
def test_registering_a_non_task_marks_the_plugin_broken(registered):
    registry = PluginRegistry.empty()
    registry.register_plugin(Registers(_solver("kept-apart")), "solvers-only")
    with pytest.warns(UserWarning, match="expects a flash_wrap.operators.Task"):
        registry.register_plugin(RegistersTasks(registered), "odd")
    assert [b.plugin for b in registry.broken] == ["odd"] and registry.tasks == {}
    with pytest.raises(PluginError, match="task plugin 'odd' is broken .*expects a flash_wrap.operators.Task"):
        registry.task("odd")
    assert "kept-apart" in registry.solvers


def test_a_broken_task_plugin_drops_its_solvers_too():
    class HalfBroken(Registers):
        @hookimpl
        def flash_wrap_register_tasks(self, register):
            raise RuntimeError("boom in tasks")

    registry = PluginRegistry.empty()
    with pytest.warns(UserWarning, match="'half'.*broken.*boom in tasks"):
        registry.register_plugin(HalfBroken(_solver("orphan")), "half")
    assert registry.solvers == {} and registry.tasks == {}




def test_a_third_party_cannot_take_a_built_in_task_name():
    # as for solvers: neither is used, since whichever loaded first would otherwise win silently
    registry = load_registry(strict=False)
    with pytest.warns(UserWarning, match="task name 'gaussian-blur' is registered by more than one plugin"):
        registry.register_plugin(RegistersTasks(_task("gaussian-blur")), "aaa-impostor", "impostor-dist 0.1")
    with pytest.raises(PluginError, match="task name 'gaussian-blur' .*more than one plugin.*impostor-dist 0.1"):
        registry.task("gaussian-blur")
    assert registry.task("motion-blur").name == "motion-blur"  # the built-in plugin's other tasks still work
    assert set(registry.task_conflicts) == {"gaussian-blur"}


def test_strict_mode_raises_for_a_bad_task():
    registry = PluginRegistry.empty(strict=True)
    with pytest.raises(PluginError, match="plugin 'odd' .*failed to load.*expects a flash_wrap.operators.Task"):
        registry.register_plugin(RegistersTasks(object()), "odd")


def test_two_tasks_claiming_one_official_operator_are_refused_by_name():
    registry = PluginRegistry.empty()
    registry.register_plugin(RegistersTasks(_task("one-blur", ("gaussian_blur",)),
                                            _task("two-blur", ("gaussian_blur",))), "pair")
    with pytest.raises(PluginError, match="official operator 'gaussian_blur' is claimed by the tasks one-blur .*two-blur"):
        registry.official_tasks()
