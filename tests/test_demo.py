"""The demo command and the metrics it reports."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from flash_wrap.apps.cli import main
from flash_wrap.apps.demo import DEMO_LEVELS, run_demo
from flash_wrap.testing import tiny_model, write_images


@pytest.fixture
def demo_setup(tmp_path):
    model = tiny_model("taef2", image_size=32, seed=0)
    for task in ("gaussian-blur", "super-resolution"):
        model.add_severity_encoder(task, model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model", write_images(tmp_path / "faces", 2, 64, 64)


def test_demo_runs_every_available_task_and_writes_a_figure(demo_setup, tmp_path):
    model, faces = demo_setup
    out = run_demo(model=str(model), out=tmp_path / "out", faces=faces, steps=8, progress=False)
    results = out["results"]
    assert [r.task for r in results] == ["gaussian-blur", "super-resolution"]  # only tasks with an encoder
    for r in results:
        assert r.baseline_nfe.tolist() == [8] * 2 * len(DEMO_LEVELS)
        assert (r.flash_nfe <= 8).all() and r.flash_nfe.shape == (4,)
        assert all(math.isfinite(v) for v in r.flash_psnr.tolist() + r.baseline_psnr.tolist())
    assert out["figure"].is_file()
    with Image.open(out["figure"]) as img:
        assert img.width > 500 and img.height > 300
    rows = [line for line in out["table"].splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert len(rows) == 4  # 2 tasks × 2 severities
    assert out["grid"] == "ddim-8 (η=0)" and out["table"].startswith("latent-dps, ddim-8 (η=0)")
    assert (tmp_path / "out" / "demo.md").read_text() == out["table"] + "\n"


def test_demo_cli(demo_setup, tmp_path, capsys):
    model, faces = demo_setup
    assert main(["demo", "--model", str(model), "--faces", str(faces), "--n-faces", "1", "--steps", "4",
                 "--out", str(tmp_path / "cli")]) == 0
    assert "figure:" in capsys.readouterr().out
    assert main(["demo", "--model", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err

