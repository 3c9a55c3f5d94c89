"""A third-party task package, installed for real: ``examples/third_party_task`` (distribution
``flash-wrap-box-inpainting``) adds an operator and the task ``box-inpainting`` through the
``flash_wrap`` entry-point group alone, and ``flash-wrap eval --task box-inpainting`` runs it.

The package is installed offline into a temporary ``--target`` folder (as the third-party solver
is); this module puts that folder on ``sys.path`` only while a test runs, and rebuilds the
process-wide registry before and after, so no other test sees the task.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch

from flash_wrap.apps.cli import main
from flash_wrap.registry import get_registry, get_solver, get_task, load_registry, reset_registry
from flash_wrap.testing import tiny_model, write_images

from .offline_install import pip_install

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "third_party_task"
ORIGIN = "flash-wrap-box-inpainting 0.1.0, entry point box-inpainting = flash_wrap_box.task"


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("third_party_task")
    source = work / "flash-wrap-box-inpainting"  # a copy: pip's in-tree build writes build/ and *.egg-info
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*cache"))
    pip_install(source, work / "site-packages")
    assert (work / "site-packages" / "flash_wrap_box" / "task.py").is_file()
    return work / "site-packages"


@pytest.fixture
def installed(target, monkeypatch):
    """The package importable and its entry point visible, in this process, for one test."""
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()
    reset_registry()
    yield target
    reset_registry()
    for name in [m for m in sys.modules if m == "flash_wrap_box" or m.startswith("flash_wrap_box.")]:
        del sys.modules[name]


def test_the_task_is_registered_from_its_distribution(installed):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no broken plugin, no name without its entry point
        registry = load_registry(strict=True)
    record = registry.tasks["box-inpainting"]
    assert record.origin == ORIGIN and record.plugin == "box-inpainting"
    task = get_task("box-inpainting")
    assert Path(sys.modules[type(task.operator(0.5, 32)).__module__].__file__).is_relative_to(installed)
    assert {"gaussian-blur", "random-inpainting", "motion-blur", "super-resolution"} <= set(registry.tasks)
    assert task.demo_levels == (0.0, 1.0) and task.describe(0.25) == "25% missing"


def test_the_operator_is_linear_with_its_adjoint_and_grows_with_the_level(installed):
    op = get_task("box-inpainting").operator(torch.tensor([0.0, 0.5, 1.0]), 32)
    assert op.task == "box-inpainting" and op.linear
    severity = op.severity
    assert bool((severity.diff() > 0).all()) and 0.0 < float(severity[0]) < float(severity[-1]) < 1.0
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=generator, dtype=torch.float64)
    u = torch.randn(3, 3, 32, 32, generator=generator, dtype=torch.float64)
    lhs = (op(x) * u).flatten(1).sum(1)
    rhs = (x * op.adjoint(u)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs)  # <A x, u> = <x, Aᵀ u> per sample
    torch.testing.assert_close(op.select([2])(x[2:]), op(x)[2:])


def test_eval_runs_the_installed_task_and_solvers_fall_back_to_their_generic_defaults(installed, tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setattr("flash_wrap.apps.evaluation.runner.LPIPS.load", classmethod(lambda cls: None))
    model = tiny_model("taef2", image_size=32, seed=0)
    model.add_severity_encoder("box-inpainting", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    images = write_images(tmp_path / "images", 3, 40, 36)
    common = ["--data", str(images), "--model", str(tmp_path / "model"), "--steps", "4"]

    assert main(["eval", "--task", "box-inpaint", *common, "--out", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'box-inpaint'; did you mean 'box-inpainting'? the installed plugins declare box-inpainting, " in err

    out = tmp_path / "out"
    assert main(["eval", "--task", "box-inpainting", *common, "--baseline", "--out", str(out)]) == 0
    assert "| Flash(latent-dps) |" in capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert result["task"] == "box-inpainting" and result["n_images"] == 3
    for record in result["images"]:
        assert record["nfe"]["flash"] == record["start_step"] <= 4 and record["nfe"]["baseline"] == 4
        assert all(v == v for v in record["psnr"].values())  # finite numbers, no NaN
    # latent-dps lists no defaults for this task: its generic fallback runs (hookspecs' rule)
    latent_dps = get_solver("latent-dps")
    assert "box-inpainting" not in latent_dps.defaults
    assert result["hyperparameters"]["flash"] == dict(latent_dps.fallback)
    assert get_registry().tasks["box-inpainting"].origin == ORIGIN


def test_the_contract_suite_covers_every_registered_task_by_default(installed):
    from flash_wrap.testing import SolverContract

    class Contract(SolverContract):
        solver_class = get_solver("latent-dps")
        refused_tasks = ("motion-blur",)

    assert sorted(Contract().supported_tasks) == ["box-inpainting", "gaussian-blur", "random-inpainting",
                                                  "super-resolution"]
