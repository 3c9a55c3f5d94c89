"""The rectified-flow demo prior that ships beside the demo (``from_pretrained("demo-flow")``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import flash_wrap
from flash_wrap import Flash, LatentDiffusion
from flash_wrap.apps.demo import FACES_DIR
from flash_wrap.images import load_images
from flash_wrap.registry import get_task
from flash_wrap_plugins.latent_dps import LatentDPS

ASSETS = Path(flash_wrap.__file__).resolve().parent / "assets"
FLOW = ASSETS / "demo-flow"
TASKS = ("gaussian-blur", "motion-blur", "random-inpainting", "super-resolution")


@pytest.fixture(scope="module")
def flow() -> LatentDiffusion:
    return LatentDiffusion.from_pretrained("demo-flow")


def test_the_flow_prior_is_a_shifted_rectified_flow_on_the_demos_latents(flow: LatentDiffusion) -> None:
    demo = LatentDiffusion.from_pretrained("demo")
    assert flow.path == "flow" and flow.prediction_type == "velocity" and flow.flow_grid == "sd3"
    assert flow.scheduler.config.shift == 3.0 and not flow.scheduler.config.use_dynamic_shifting
    assert flow.latent_shape == demo.latent_shape and flow.latent_scale == demo.latent_scale
    # the demo's autoencoder and its four severity encoders, as they are (the same files)
    for rel in ["autoencoder/model.safetensors", *(f"severity_encoders/{t}/model.safetensors" for t in TASKS)]:
        assert (FLOW / rel).read_bytes() == (ASSETS / "demo" / rel).read_bytes(), rel
    assert sorted(flow.severity_encoders) == sorted(TASKS)
    assert all(flow.severity_metadata[t]["adopted_from"] == "demo" for t in TASKS)
    weights = [p for p in FLOW.rglob("*") if p.is_file() and p.suffix not in {".json", ".md", ""}]
    assert weights and all(p.suffix in {".safetensors", ".png"} for p in weights)
    assert sum(p.stat().st_size for p in FLOW.rglob("*") if p.is_file()) <= 60 * 2**20


def test_every_task_has_tuned_step_sizes_for_flash_and_the_bare_solver(flow: LatentDiffusion) -> None:
    index = json.loads((FLOW / "model_index.json").read_text())
    for task in TASKS:
        tuned = index["solver_defaults"]["latent-dps"][task]
        assert LatentDPS(flow).hyperparameters(task)["eta"] == tuned["eta"] and "c" in tuned
        bare = index["baseline_defaults"]["latent-dps"][task]["ddim-100 (η=0)"]["eta"]
        assert bare > 0


def test_flash_restores_a_shipped_face_on_the_flow_prior_in_a_few_euler_steps(flow: LatentDiffusion) -> None:
    """One face, the hard end of Gaussian blur: Flash starts late on the 100-step σ grid and beats
    the blurred input (the 10-face figures are in the model card)."""
    x = load_images(FACES_DIR, flow.image_size, limit=1)
    op = get_task("gaussian-blur").operator(torch.tensor([1.0]), flow.image_size)
    y = op.measure(x, generator=torch.Generator().manual_seed(0))
    out = Flash(LatentDPS(flow, steps=100)).reconstruct(y, op, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 3, 128, 128)
    assert 0 < int(out.nfe) <= 25
    assert (out.images - x).pow(2).mean() < (op.to_image(y) - x).pow(2).mean()


def test_the_demo_runs_on_the_flow_prior(tmp_path, capsys) -> None:
    """``flash-wrap demo --model demo-flow`` (here on a 5-step grid and one face, for time): every task
    and level, its rows recorded on the flow model's Euler grid."""
    from flash_wrap.apps.cli import main

    assert main(["demo", "--model", "demo-flow", "--steps", "5", "--n-faces", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "demo.json").read_text())
    assert len(result["rows"]) == 7 and result["grid"] == "ddim-5 (η=0)"
    assert all(1 <= row["flash_nfe"] <= 5 and row["baseline_nfe"] == 5 for row in result["rows"])
    assert "demo-flow" in capsys.readouterr().out + json.dumps(result)
