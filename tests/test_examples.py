"""The runnable examples in ``examples/``: each runs end to end with ``--quick`` (demo model or tiny
random diffusers models, DDIM 10 steps) and writes its figure. Each runs as ``__main__`` in the
test process, as ``python examples/SCRIPT --quick`` runs it (the script's folder first on
``sys.path``, its arguments in ``sys.argv``, the working directory a fresh one): a subprocess would
spend most of its time importing torch/diffusers again."""

from __future__ import annotations

import ast
import re
import runpy
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUMMARY = re.compile(r"mean NFE: baseline ([\d.]+) \| Flash ([\d.]+)")


def _apps_imports(source: str) -> list[str]:
    """The modules under ``flash_wrap.apps`` that a Python source imports, at any depth (``ast``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [n for n in names if n == "flash_wrap.apps" or n.startswith("flash_wrap.apps.")]
        if isinstance(node, ast.ImportFrom) and node.module == "flash_wrap":
            found += [f"flash_wrap.{a.name}" for a in node.names if a.name == "apps"]
    return found


def test_the_apps_import_finder_sees_every_form():
    source = ("import flash_wrap.apps.cli\nfrom flash_wrap import apps\n"
              "def f():\n    from flash_wrap.apps.images import x\n"
              "import flash_wrap.metrics\nfrom flash_wrap import Flash\n")
    assert _apps_imports(source) == ["flash_wrap.apps.cli", "flash_wrap.apps", "flash_wrap.apps.images"]


def test_examples_use_only_the_public_api():
    """The examples are what users copy: nothing under ``flash_wrap.apps`` (the commands'
    internals, which may change); the public helpers are ``flash_wrap.metrics``, ``.images``,
    ``.figures`` and ``.degradation``."""
    files = sorted(EXAMPLES.rglob("*.py"))
    assert len(files) >= 10
    offenders = {str(f.relative_to(EXAMPLES)): _apps_imports(f.read_text()) for f in files}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def _run(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *extra: str) -> tuple[str, Path]:
    """Run ``examples/SCRIPT --quick --out tmp_path/figure.png EXTRA`` as ``__main__``; its stdout."""
    import torch

    out = tmp_path / "figure.png"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), "--quick", "--out", str(out), *extra])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(sys.modules, "_common", raising=False)  # imported afresh from the script's folder
    capsys.readouterr()
    with torch.random.fork_rng(devices=[]):  # a script may seed the global RNG; the tests after it see none of it
        try:
            runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        except SystemExit as stop:  # argparse's exit on bad arguments
            pytest.fail(f"{script} exited with {stop.code}:\n{capsys.readouterr().err}")
    return capsys.readouterr().out, out


def _check_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < path.stat().st_size < 1_000_000
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.width >= 400 and img.height >= 200


def _nfe(stdout: str) -> tuple[float, float]:
    match = SUMMARY.search(stdout)
    assert match, f"no summary line in:\n{stdout}"
    return float(match.group(1)), float(match.group(2))


@pytest.mark.parametrize("script, rows", [
    ("gaussian_deblurring.py", 2),
    ("random_inpainting.py", 2),
    ("motion_deblurring.py", 2),
    ("super_resolution.py", 1),
])
def test_inverse_problem_example(script: str, rows: int, tmp_path: Path, monkeypatch, capsys) -> None:
    stdout, figure = _run(script, tmp_path, monkeypatch, capsys)
    _check_png(figure)
    table = [line for line in stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(table) == rows, stdout
    baseline, flash = _nfe(stdout)
    assert baseline == 10.0  # --quick: DDIM over 10 steps, every step spent
    assert 0 < flash < baseline
    if script == "motion_deblurring.py":
        assert "PSLD on this operator" in stdout and "not linear" in stdout


def test_bring_your_own_model_example(tmp_path: Path, monkeypatch, capsys) -> None:
    bundle = tmp_path / "bundle"
    stdout, figure = _run("bring_your_own_model.py", tmp_path, monkeypatch, capsys, "--bundle", str(bundle))
    _check_png(figure)
    assert "saved tiny random diffusers models" in stdout
    assert "flash-wrap train-severity --model" in stdout
    assert (bundle / "model_index.json").is_file()
    assert (bundle / "severity_encoders" / "gaussian-blur" / "model.safetensors").is_file()
    baseline, flash = _nfe(stdout)
    assert baseline == 10.0
    assert 0 < flash <= baseline  # random models: the start step is whatever the fresh encoder says


def _load_example(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FACES_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces_dev"


@pytest.mark.skipif(not FACES_DEV.is_dir(), reason="needs ../shared/data/faces_dev")
def test_severity_resolution_study_shows_blur_is_easier_to_rank_at_128(tmp_path: Path) -> None:
    """The model card's resolution argument, on 5 real faces × 6 draws: the error of the frozen
    encoder ranks the blur σ far better at 128² (σ ≤ 1.5 px) than at 64² (σ ≤ 0.75 px)."""
    from flash_wrap import LatentDiffusion

    study = _load_example("severity_resolution_study").study
    model = LatentDiffusion.from_pretrained("demo")
    small, large = (study(model, FACES_DEV, size, draws=6, limit=5) for size in (64, 128))
    assert not small["native"] and large["native"] and small["samples"] == large["samples"] == 30
    assert large["sigma_max_px"] == 2 * small["sigma_max_px"] == 1.5
    assert large["spearman_autoencoder_error"] > small["spearman_autoencoder_error"] + 0.15
    assert large["spearman_autoencoder_error"] > 0.75
    for row in (small, large):
        assert -1 <= row["spearman_sigma_hat"] <= 1


@pytest.mark.skipif(not FACES_DEV.is_dir(), reason="needs ../shared/data/faces_dev")
def test_spearman_over_seeds_repeats_eval_s_draws(tmp_path: Path) -> None:
    """Seed 0's value is what eval's severity summary computes from the same draws; other seeds
    draw other levels, so the figure moves."""
    import torch

    from flash_wrap import LatentDiffusion, get_task
    from flash_wrap.degradation import degrade
    from flash_wrap.images import load_image
    from flash_wrap.metrics import spearman

    example = _load_example("severity_ranking_over_seeds")
    model = LatentDiffusion.from_pretrained("demo")
    rhos = example.spearman_over_seeds(model, "gaussian-blur", FACES_DEV, 3, limit=5)
    assert len(rhos) == 3 and all(-1 <= r <= 1 for r in rhos) and len(set(rhos)) > 1
    # seed 0 is eval's default: the same degrade() over the task's evaluation range draws its levels
    task = get_task("gaussian-blur")
    files = sorted(FACES_DEV.glob("*.png"))[:5]
    x = torch.stack([load_image(f, model.image_size) for f in files])
    _, levels, op, y = degrade(task, [f.name for f in files], x, task.eval_range, 0)
    with torch.no_grad():
        sigma_hat = model.severity_encoder("gaussian-blur")(op.to_image(y))[1].flatten()
    assert rhos[0] == pytest.approx(float(spearman(levels, sigma_hat)))
    d = example.describe([0.2, 0.9, 0.5, 0.86, 0.7], 0.85)
    assert d["median"] == 0.7 and d["p10"] == 0.2 and d["p90"] == 0.9 and d["share_at_or_above_target"] == 0.4
    with pytest.raises(ValueError, match="at least 3"):
        example.spearman_over_seeds(model, "gaussian-blur", FACES_DEV, 1, limit=2)
