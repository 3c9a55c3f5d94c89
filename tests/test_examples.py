"""The runnable examples in ``examples/``: each runs end to end with ``--quick`` (demo model or tiny
random diffusers models, DDIM 10 steps) and writes its figure. Each takes a few seconds, most of
it importing torch/diffusers and loading the model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUMMARY = re.compile(r"mean NFE: baseline ([\d.]+) \| Flash ([\d.]+)")


def _run(script: str, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    out = tmp_path / "figure.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out", str(out), *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout, out


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
def test_inverse_problem_example(script: str, rows: int, tmp_path: Path) -> None:
    stdout, figure = _run(script, tmp_path)
    _check_png(figure)
    table = [line for line in stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(table) == rows, stdout
    baseline, flash = _nfe(stdout)
    assert baseline == 10.0  # --quick: DDIM over 10 steps, every step spent
    assert 0 < flash < baseline
    if script == "motion_deblurring.py":
        assert "PSLD on this operator" in stdout and "not linear" in stdout


def test_bring_your_own_model_example(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    stdout, figure = _run("bring_your_own_model.py", tmp_path, "--bundle", str(bundle))
    _check_png(figure)
    assert "saved tiny random diffusers models" in stdout
    assert "flash-wrap train-severity --model" in stdout
    assert (bundle / "model_index.json").is_file()
    assert (bundle / "severity_encoders" / "gaussian-blur" / "model.safetensors").is_file()
    baseline, flash = _nfe(stdout)
    assert baseline == 10.0
    assert 0 < flash <= baseline  # random models: the start step is whatever the fresh encoder says
