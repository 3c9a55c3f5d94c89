"""Plugin discovery through the ``flash_wrap`` entry-point group, broken-plugin isolation, errors."""

import importlib
import textwrap

import pytest

import flash_wrap.solvers
from flash_wrap import Solver
from flash_wrap.cli import main
from flash_wrap.plugins import PluginError, get_registry, load_registry, reset_registry

GOOD = '''
import torch
from flash_wrap import Solver, hookimpl

class EchoSolver(Solver):
    """Prior step only (no data consistency): enough to exercise the contract."""
    name = "echo"
    summary = "unconditional prior"
    defaults = {"gaussian-blur": {"c": 1.0}}
    fallback = {"c": 1.0}

    def step(self, state):
        eps = state.predict_noise(state.z)
        z0 = state.sampler.tweedie(state.z, eps, state.index)
        return state.sampler.step(state.z, eps, z0, state.index, state.generator)

@hookimpl
def flash_wrap_register_solvers(register):
    register(EchoSolver)
'''


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Install a fake distribution whose entry points name modules written into ``tmp_path``."""

    def install(dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[flash_wrap]\n{lines}\n")
        importlib.invalidate_caches()

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("FLASH_WRAP_STRICT_PLUGINS", raising=False)
    yield install
    reset_registry()


def test_builtin_solver_comes_through_the_entry_point():
    registry = load_registry()
    record = registry.solvers["latent-dps"]
    assert record.plugin == "latent-dps"
    assert "flash-wrap" in record.origin and "flash_wrap_plugins.latent_dps" in record.origin
    assert issubclass(record.cls, Solver)
    assert flash_wrap.solvers.LatentDPS is record.cls
    assert flash_wrap.solvers.get_solver("latent-dps") is record.cls


def test_third_party_plugin_is_discovered(fake_dist):
    fake_dist("echo-plugin", {"echo_plugin": GOOD}, {"echo": "echo_plugin"})
    registry = load_registry()
    assert registry.solvers["echo"].origin.startswith("echo-plugin 1.0")
    assert "latent-dps" in registry.solvers
    reset_registry()
    assert flash_wrap.solvers.EchoSolver is registry.solvers["echo"].cls


def test_plugin_that_fails_to_import_is_isolated(fake_dist):
    fake_dist("bad-plugin", {"bad_plugin": "import does_not_exist_anywhere\n"}, {"bad": "bad_plugin"})
    with pytest.warns(UserWarning, match="'bad'.*broken"):
        registry = load_registry()
    assert "latent-dps" in registry.solvers
    (broken,) = registry.broken
    assert broken.plugin == "bad" and "does_not_exist_anywhere" in broken.error
    assert "bad-plugin 1.0" in broken.origin
    with pytest.raises(PluginError, match="'bad' is broken.*does_not_exist_anywhere"):
        registry.solver("bad")


def test_plugin_whose_register_hook_raises_is_isolated(fake_dist):
    source = """
    from flash_wrap import hookimpl

    @hookimpl
    def flash_wrap_register_solvers(register):
        raise RuntimeError("boom in register")
    """
    fake_dist("raising-plugin", {"raising_plugin": source}, {"raising": "raising_plugin"})
    with pytest.warns(UserWarning, match="boom in register"):
        registry = load_registry()
    assert [b.plugin for b in registry.broken] == ["raising"]
    assert "latent-dps" in registry.solvers
    assert not registry.manager.has_plugin("raising")


def test_strict_mode_reraises(fake_dist, monkeypatch):
    fake_dist("bad-plugin", {"bad_plugin2": "raise ImportError('nope')\n"}, {"bad2": "bad_plugin2"})
    monkeypatch.setenv("FLASH_WRAP_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="bad2.*nope"):
        load_registry()


def test_duplicate_solver_name_is_an_error(fake_dist):
    dup = GOOD.replace('name = "echo"', 'name = "latent-dps"')
    fake_dist("dup-plugin", {"dup_plugin": dup}, {"zz-dup": "dup_plugin"})
    with pytest.warns(UserWarning, match="registered twice"):
        registry = load_registry()
    assert registry.solvers["latent-dps"].plugin == "latent-dps"
    assert [b.plugin for b in registry.broken] == ["zz-dup"]


def test_registering_a_non_solver_marks_the_plugin_broken():
    registry = load_registry()

    class NotASolver:
        pass

    from flash_wrap import hookimpl

    class Plugin:
        @hookimpl
        def flash_wrap_register_solvers(self, register):
            register(NotASolver)

    with pytest.warns(UserWarning, match="Solver subclass"):
        registry.register_plugin(Plugin(), "not-a-solver")
    assert registry.broken[-1].plugin == "not-a-solver"


def test_unknown_solver_lists_known_names():
    with pytest.raises(PluginError, match="unknown solver 'dps-xl'; known solvers: .*latent-dps"):
        get_registry().solver("dps-xl")
    with pytest.raises(AttributeError, match="no registered solver class 'Nope'.*LatentDPS"):
        flash_wrap.solvers.Nope  # noqa: B018


def test_cli_lists_solvers_and_broken_plugins(fake_dist, capsys):
    fake_dist("bad-plugin", {"bad_plugin3": "raise ImportError('missing dep')\n"}, {"bad3": "bad_plugin3"})
    reset_registry()
    with pytest.warns(UserWarning):
        assert main(["solvers", "--details"]) == 0
    out = capsys.readouterr().out
    assert "latent-dps" in out and "entry point latent-dps" in out
    assert "gaussian-blur: c=1.2, eta=1" in out
    assert "bad3" in out and "BROKEN" in out and "missing dep" in out
