"""A third-party solver package, installed for real: ``examples/third_party_solver`` (distribution
``flash-wrap-ddnm``, solver ``latent-ddnm``) adds a solver through the ``flash_wrap`` entry-point
group alone, without touching flash-wrap.

The package is built by pip from a copy of its folder and installed into a temporary ``--target``
folder, offline (``--no-index --no-build-isolation``: the build backend is the environment's own
setuptools). Only where that is impossible (no setuptools in the environment, e.g. a fresh
Python ≥ 3.12 venv) does pip fall back to an isolated build, which fetches setuptools from the
package index like ``pip install -e .`` of flash-wrap itself did. The environment is never
modified: the target folder is only put on ``PYTHONPATH`` of the subprocesses that use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .offline_install import pip_install

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "third_party_solver"
ORIGIN = "from flash-wrap-ddnm 0.1.0, entry point latent-ddnm = flash_wrap_ddnm.solver"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Install the package into a temporary target; returns the ``subprocess.run`` keyword
    arguments (cwd, env) of a process that sees it."""
    work = tmp_path_factory.mktemp("third_party_solver")
    source = work / "flash-wrap-ddnm"  # a copy: pip's in-tree build writes build/ and *.egg-info
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*cache"))
    target = work / "site-packages"
    pip_install(source, target)
    assert (target / "flash_wrap_ddnm" / "solver.py").is_file()
    run_dir = work / "run"  # an empty working directory: nothing importable from the source tree
    run_dir.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH", "")) if p)
    env.update(OMP_NUM_THREADS="1", FLASH_WRAP_STRICT_PLUGINS="1", PYTHONDONTWRITEBYTECODE="1")
    return {"cwd": run_dir, "env": env, "target": target, "source": source}


def _run(args: list[str], installed: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args, cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_cli_lists_the_solver_from_the_third_party_distribution(installed):
    script = Path(sys.executable).with_name("flash-wrap")
    cli = [str(script)] if script.is_file() else [sys.executable, "-m", "flash_wrap"]
    out = _run([*cli, "solvers", "--details"], installed).stdout
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("latent-ddnm "))
    assert "Latent DDNM" in lines[at]
    assert lines[at + 1].strip() == ORIGIN
    assert "ddim" in lines[at + 2] and "ICLR 2023" in lines[at + 2]  # --details: sampler, reference
    assert "random-inpainting: c=1.2, delta=0.05, lam=1, cg_iters=10" in out
    assert "BROKEN" not in out
    for builtin in ("latent-dps", "psld", "gml-dps", "resample"):  # the built-ins still load
        assert any(line.startswith(builtin + " ") for line in lines)


FLASH_RUN = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    import flash_wrap
    from flash_wrap import Flash
    from flash_wrap.operators import RandomInpainting
    from flash_wrap.registry import get_registry
    from flash_wrap.testing import ProgrammedSeverity, generators, smooth_images, tiny_model

    model = tiny_model("vq", image_size=32, seed=0)
    # v = 1.5 * mean(y): the two samples below get different start steps
    model.add_severity_encoder("random-inpainting", ProgrammedSeverity(model, 1.5))
    x = smooth_images(2, brightness=[0.2, 0.6])
    op = RandomInpainting([0.7, 0.8])                          # per-sample parameters
    y = op.measure(x, generator=torch.Generator().manual_seed(1))

    Solver = flash_wrap.get_solver("latent-ddnm")               # resolved through the registry
    out = Flash(Solver(model)).reconstruct(y, op, generator=generators([2, 3]), progress=False)
    print(json.dumps({
        "module_file": sys.modules[Solver.__module__].__file__,
        "origin": get_registry().solvers["latent-ddnm"].origin,
        "solver": out.solver, "sampler": out.sampler, "steps": out.steps, "eta": out.eta,
        "start_step": out.start_step.tolist(), "nfe": out.nfe.tolist(),
        "decoder_calls": out.decoder_calls.tolist(),
        "finite": bool(torch.isfinite(out.images).all()),
        "min": float(out.images.min()), "max": float(out.images.max()),
    }))
    """
)


def test_flash_wraps_the_installed_solver(installed):
    result = json.loads(_run([sys.executable, "-c", FLASH_RUN], installed).stdout.strip().splitlines()[-1])
    assert Path(result["module_file"]).resolve().is_relative_to(installed["target"].resolve())
    assert result["origin"] == ORIGIN.removeprefix("from ")
    assert (result["solver"], result["sampler"], result["steps"], result["eta"]) == ("latent-ddnm", "ddim", 100, 0.85)
    start = result["start_step"]
    assert start[0] != start[1] and min(start) > 0  # a batch whose rows join at different steps
    assert result["nfe"] == start  # one denoiser call per step from each sample's start
    assert result["decoder_calls"] == start  # one counted decode per step
    assert result["finite"] and 0.0 <= result["min"] <= result["max"] <= 1.0


def test_the_package_own_tests_pass_against_the_installed_package(installed):
    tests = installed["source"] / "tests"
    args = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(tests)]
    done = _run(args, installed, timeout=300)
    assert " passed" in done.stdout and "failed" not in done.stdout
    # flash-wrap's contract suite ran against the installed solver, not only the plugin's own checks
    passed = [line for line in done.stdout.splitlines() if "TestLatentDDNMContract::" in line and "PASSED" in line]
    for check in ("test_a_sample_does_not_depend_on_its_batch", "test_refused_task_is_refused_before_any_work[motion-blur]"):
        assert any(f"::{check} PASSED" in line for line in passed), f"{check} did not pass:\n{done.stdout[-3000:]}"
