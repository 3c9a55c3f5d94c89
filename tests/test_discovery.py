"""Plugin discovery (flash_wrap.discovery): the ``flash_wrap`` entry-point group loaded one plugin
at a time into a fresh pluggy plugin set; broken imports isolated or, in strict mode, raised.
Every test builds its own plugin set: the process-wide one is never touched."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from flash_wrap import hookimpl
from flash_wrap.discovery import (
    ENTRY_POINT_GROUP,
    STRICT_ENV,
    PluginError,
    load_plugins,
    new_plugin_set,
    plugins,
    strict_from_env,
)

BUILTINS = {
    "latent-dps": "flash_wrap_plugins.latent_dps",
    "gml-dps": "flash_wrap_plugins.gml_dps",
    "psld": "flash_wrap_plugins.psld",
    "resample": "flash_wrap_plugins.resample",
}

OBSERVER = '''
from flash_wrap import hookimpl

@hookimpl
def flash_wrap_on_step(state):
    pass
'''


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """``install(dist, modules, entry_points)``: a fake installed distribution whose
    ``flash_wrap`` entry points name modules written into ``tmp_path`` (on ``sys.path`` for this
    test only; the modules are dropped from ``sys.modules`` afterwards)."""
    written: list[str] = []

    def install(dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            written.append(module)
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
        importlib.invalidate_caches()

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(STRICT_ENV, raising=False)
    yield install
    for module in written:
        sys.modules.pop(module, None)


def test_a_new_plugin_set_is_empty_and_knows_the_hookspecs():
    plugin_set = new_plugin_set(strict=False)
    assert plugin_set.origins == {} and plugin_set.broken == [] and not plugin_set.strict
    assert hasattr(plugin_set.hook, "flash_wrap_register_solvers")
    assert hasattr(plugin_set.hook, "flash_wrap_on_step")


def test_the_installed_builtins_come_through_the_entry_points():
    plugin_set = load_plugins(strict=True)
    for name, module in BUILTINS.items():
        origin = plugin_set.origins[name]
        assert origin.startswith("flash-wrap ") and f"entry point {name} = {module}" in origin
        assert plugin_set.manager.get_plugin(name) is sys.modules[module]
    assert plugin_set.broken == []


def test_a_fresh_load_is_a_new_set_and_the_process_wide_one_is_cached():
    assert load_plugins() is not load_plugins()
    assert plugins() is plugins()


def test_a_third_party_plugin_is_discovered(fake_dist):
    fake_dist("observer-plugin", {"observer_plugin_ok": OBSERVER}, {"observer": "observer_plugin_ok"})
    plugin_set = load_plugins()
    assert plugin_set.origins["observer"] == "observer-plugin 1.0, entry point observer = observer_plugin_ok"
    assert set(BUILTINS) <= set(plugin_set.origins)  # the others still load


def test_a_plugin_that_fails_to_import_is_isolated(fake_dist):
    fake_dist("bad-plugin", {"bad_plugin_import": "import does_not_exist_anywhere\n"}, {"bad": "bad_plugin_import"})
    with pytest.warns(UserWarning, match="plugin 'bad' .*is broken and was skipped.*does_not_exist_anywhere"):
        plugin_set = load_plugins()
    (broken,) = plugin_set.broken
    assert broken.plugin == "bad" and "ModuleNotFoundError" in broken.error and "does_not_exist_anywhere" in broken.error
    assert broken.origin.startswith("bad-plugin 1.0")
    assert "bad" not in plugin_set.origins and set(BUILTINS) <= set(plugin_set.origins)


def test_a_hook_that_does_not_fit_its_spec_is_a_broken_plugin():
    class WrongArguments:
        @hookimpl
        def flash_wrap_on_step(self, state, trajectory):  # the spec has no `trajectory`
            pass

    plugin_set = new_plugin_set(strict=False)
    with pytest.warns(UserWarning, match="(?s)'wrong'.*broken.*trajectory"):
        assert not plugin_set.add(WrongArguments(), "wrong")
    assert [b.plugin for b in plugin_set.broken] == ["wrong"] and "wrong" not in plugin_set.origins
    assert not plugin_set.manager.has_plugin("wrong")


def test_a_misspelt_hook_is_a_broken_plugin_not_a_silent_no_op():
    class Typo:
        @hookimpl
        def flash_wrap_on_stp(self, state):  # no such hook: it would never be called
            pass

    plugin_set = new_plugin_set(strict=False)
    with pytest.warns(UserWarning, match="(?s)'typo'.*broken.*flash_wrap_on_stp"):
        assert not plugin_set.add(Typo(), "typo")
    assert [b.plugin for b in plugin_set.broken] == ["typo"] and not plugin_set.manager.has_plugin("typo")


def test_strict_mode_raises_instead(fake_dist):
    fake_dist("bad-plugin", {"bad_plugin_strict": "raise ImportError('nope')\n"}, {"bad2": "bad_plugin_strict"})
    with pytest.raises(PluginError, match=r"plugin 'bad2' \(bad-plugin 1.0.*\) failed to load.*nope"):
        load_plugins(strict=True)


def test_strict_mode_from_the_environment(fake_dist, monkeypatch):
    fake_dist("bad-plugin", {"bad_plugin_env": "raise ImportError('nope')\n"}, {"bad3": "bad_plugin_env"})
    monkeypatch.setenv(STRICT_ENV, "1")
    assert strict_from_env() and new_plugin_set().strict
    with pytest.raises(PluginError, match="bad3.*nope"):
        load_plugins()
    for off in ("", "0", "false", "False"):
        monkeypatch.setenv(STRICT_ENV, off)
        assert not strict_from_env()
    assert new_plugin_set(strict=True).strict  # an explicit argument wins over the environment


def test_plugin_error_is_a_lookup_error():
    assert issubclass(PluginError, LookupError)


def test_the_same_entry_point_twice_on_the_path_loads_once(fake_dist, tmp_path):
    # e.g. an editable install plus a copy of the same distribution elsewhere on sys.path
    fake_dist("observer-plugin", {"observer_plugin_twice": OBSERVER}, {"twice": "observer_plugin_twice"})
    second = tmp_path / "again"
    second.mkdir()
    (second / "observer-plugin-1.0.dist-info").mkdir()
    for name in ("METADATA", "entry_points.txt"):
        source = tmp_path / "observer-plugin-1.0.dist-info" / name
        (second / "observer-plugin-1.0.dist-info" / name).write_text(source.read_text())
    sys.path.insert(0, str(second))
    try:
        importlib.invalidate_caches()
        plugin_set = load_plugins(strict=True)  # a second registration under one name would raise
    finally:
        sys.path.remove(str(second))
    assert "twice" in plugin_set.origins and plugin_set.broken == []


def test_remove_unregisters_a_plugin():
    class Observer:
        @hookimpl
        def flash_wrap_on_step(self, state):
            pass

    plugin_set = new_plugin_set(strict=True)
    assert plugin_set.add(Observer(), "observer")
    plugin_set.remove("observer")
    assert not plugin_set.manager.has_plugin("observer") and "observer" not in plugin_set.origins
    plugin_set.remove("never-added")  # a no-op


TWO_TASKS = '''
from flash_wrap import hookimpl
from flash_wrap.operators import GaussianBlur, Task

def _build(t, size, noise_std, seeds):
    return GaussianBlur(1.0 + t, noise_std)

@hookimpl
def flash_wrap_register_tasks(register):
    register(Task("soft-blur", "", (0.0, 1.0), (0.0, 1.0), _build))
    register(Task("hard-blur", "", (0.0, 1.0), (0.0, 1.0), _build))
'''


def test_a_module_listed_under_several_names_loads_once(fake_dist):
    from flash_wrap.registry import PluginRegistry

    fake_dist("blur-tasks", {"blur_tasks_once": TWO_TASKS},
              {"soft-blur": "blur_tasks_once", "hard-blur": "blur_tasks_once"})
    plugin_set = load_plugins(strict=True)  # a second registration of one module would raise
    origin = plugin_set.origins["blur_tasks_once"]
    assert origin == "blur-tasks 1.0, entry points hard-blur, soft-blur = blur_tasks_once"
    assert plugin_set.entry_names["blur_tasks_once"] == ("hard-blur", "soft-blur")
    registry = PluginRegistry.from_plugins(plugin_set)
    assert {registry.tasks[n].plugin for n in ("soft-blur", "hard-blur")} == {"blur_tasks_once"}


def test_a_name_no_entry_point_declares_is_a_warning_not_a_failure(fake_dist):
    from flash_wrap.registry import PluginRegistry

    fake_dist("blur-tasks", {"blur_tasks_undeclared": TWO_TASKS}, {"soft-blur": "blur_tasks_undeclared"})
    plugin_set = load_plugins(strict=True)
    with pytest.warns(UserWarning, match="registers the task 'hard-blur', which none of its distribution's flash_wrap "
                      "entry points declares; list `hard-blur = <its module>`"):
        registry = PluginRegistry.from_plugins(plugin_set)
    assert {"soft-blur", "hard-blur"} <= set(registry.tasks) and registry.broken == []


def test_a_broken_module_is_found_by_each_of_its_names(fake_dist):
    from flash_wrap.registry import PluginRegistry

    fake_dist("blur-tasks", {"blur_tasks_broken": "raise ImportError('no kernels')\n"},
              {"soft-blur": "blur_tasks_broken", "hard-blur": "blur_tasks_broken"})
    with pytest.warns(UserWarning, match="plugin 'blur_tasks_broken' .*is broken.*no kernels"):
        plugin_set = load_plugins()
    (broken,) = plugin_set.broken
    assert broken.names == ("hard-blur", "soft-blur")
    registry = PluginRegistry.from_plugins(plugin_set)
    with pytest.raises(PluginError, match="task plugin 'soft-blur' is broken .*entry points hard-blur, soft-blur.*no kernels"):
        registry.task("soft-blur")
