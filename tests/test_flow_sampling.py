"""Sampling, Flash and the four solvers on a rectified-flow prior (ALGORITHMS.md §12).

The reproduction tests run flash-wrap's DDIM η = 0 loop (``apps.sample.sample_latents``) from a given
initial noise and diffusers' own loop (``set_timesteps``, ``unet(z, t)``, ``scheduler.step``) on a tiny
random ``UNet2DModel`` flow prior and compare the final latents.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from flash_wrap import Flash
from flash_wrap.apps.sample import sample_latents
from flash_wrap.grid import GridSpec
from flash_wrap.models import LatentDiffusion
from flash_wrap.operators import GaussianBlur
from flash_wrap.severity.range import RANGE_KEY, sigma_hat_range
from flash_wrap.start import start_index
from flash_wrap.testing import ProgrammedSeverity, SolverContract, generators, smooth_images, tiny_model
from flash_wrap_plugins.gml_dps import GMLDPS
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.psld import PSLD
from flash_wrap_plugins.resample import ReSample

DYNAMIC = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 16,
           "max_image_seq_len": 256}


def _flow_model(config: dict, dtype: torch.dtype, flow_grid: str = "sd3") -> LatentDiffusion:
    base = tiny_model("kl", image_size=32, seed=0)
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    model = LatentDiffusion(base.autoencoder, base.denoiser, scheduler, image_size=32, flow_grid=flow_grid)
    return model.to(dtype).requires_grad_(False).eval()


def _diffusers_loop(model: LatentDiffusion, z: torch.Tensor, steps: int, style: str, *, exact: bool) -> torch.Tensor:
    """diffusers' own sampler: ``set_timesteps`` as the SD3 (``steps``) or FLUX (``sigmas``) pipeline calls
    it, the raw network on ``(z, t)``, and ``scheduler.step`` (``exact``: the same Euler update in the
    latents' dtype, since ``step`` rounds the state to float32)."""
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(model.scheduler.config)
    mu = None
    if scheduler.config.use_dynamic_shifting:  # the pipelines' calculate_shift, for 8x8 = 64 latent tokens
        c = scheduler.config
        m = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
        mu = 64 * m + (c.base_shift - m * c.base_image_seq_len)
    if style == "sd3":
        scheduler.set_timesteps(steps, mu=mu)
    else:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            u = model.denoiser.unet(z, t.expand(z.shape[0])).sample
            if exact:
                z = z + (scheduler.sigmas[i + 1].double() - scheduler.sigmas[i].double()).to(z.dtype) * u
            else:
                z = scheduler.step(u, t, z).prev_sample
    return z


@pytest.mark.parametrize("config", [{"shift": 3.0}, DYNAMIC], ids=["shift3", "dynamic"])
@pytest.mark.parametrize("style", ["sd3", "flux"])
def test_eta0_run_reproduces_the_diffusers_loop(config, style):
    steps = 12
    for dtype, exact, tolerance in ((torch.float64, True, 1e-10), (torch.float64, False, 1e-5),
                                    (torch.float32, False, 1e-5)):
        model = _flow_model(config, dtype, style)
        z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
        ours = sample_latents(model, z, steps=steps, ddim_eta=0.0, progress=False)
        theirs = _diffusers_loop(model, z.clone(), steps, style, exact=exact)
        assert ours.dtype == dtype and theirs.abs().max() > 0.5  # a real trajectory, not a vanishing one
        torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance)


def test_reproduction_would_catch_a_wrong_grid():
    model = _flow_model({"shift": 3.0}, torch.float64)
    z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = sample_latents(model, z, steps=12, ddim_eta=0.0, progress=False)
    other = _diffusers_loop(_flow_model({"shift": 2.9}, torch.float64), z.clone(), 12, "sd3", exact=True)
    assert (ours - other).abs().max() > 1e-4


#: Start-rule test vectors for the SD3-style grid with shift 3 and 28 steps (flash_wrap/ALGORITHMS.md §12):
#: predicted variance v → start index s.
FLOW_START_VECTORS = {1e-4: 0, 0.01: 1, 0.05: 2, 0.1: 3, 0.2149: 4, 0.5: 5, 1.0: 7, 2.0: 9, 10.0: 14}


def test_start_rule_vectors_on_a_flow_grid():
    """s = argmin_k |SNR_k − 1/v| with SNR_k = (1−σ_k)²/σ_k², the σ's computed here by hand: diffusers'
    SD3 grid is linspace(σ_max, σ_min) of the once-shifted training σ's, shifted again."""
    shift, steps = 3.0, 28
    sigma_min = shift * 0.001 / (1 + (shift - 1) * 0.001)
    base = np.linspace(1.0, sigma_min, steps)
    sigmas = (shift * base / (1 + (shift - 1) * base))[::-1]  # increasing: grid index k
    snr = (1 - sigmas) ** 2 / sigmas**2
    hand = {v: int(np.argmin(np.abs(snr - 1 / v))) for v in FLOW_START_VECTORS}
    assert hand == FLOW_START_VECTORS
    sampler = GridSpec("ddim", steps, 0.0).build(tiny_model("vq", flow_shift=shift))
    variances = torch.tensor(list(FLOW_START_VECTORS), dtype=torch.float64)
    assert start_index(variances, sampler.snr).tolist() == list(FLOW_START_VECTORS.values())
    assert sampler.snr[-1] == 0 and sampler.timesteps[-1] == 1000


def _blur_problem(model: LatentDiffusion, brightness=(0.2, 0.6)):
    operator = GaussianBlur(sigma=torch.tensor([1.0, 2.0]))
    x = smooth_images(len(brightness), 32, seed=0, brightness=list(brightness))
    return operator.measure(x, generator=torch.Generator().manual_seed(1)), operator


def test_flash_budget_and_out_of_range_flag_on_a_flow_model():
    model = tiny_model("vq", flow_shift=3.0)
    encoder = ProgrammedSeverity(model, scale=0.5)
    model.add_severity_encoder("gaussian-blur", encoder, metadata={RANGE_KEY: sigma_hat_range(torch.tensor([0.0, 0.15]))})
    y, operator = _blur_problem(model)
    solver = LatentDPS(model, steps=20)
    out = Flash(solver).reconstruct(y, operator, generators([0, 1]), progress=False)
    assert out.path == "flow" and out.sampler == "ddim" and out.steps == 20
    assert out.start_step.tolist() == start_index(out.sigma_hat, solver.sampler.snr).tolist()
    assert out.nfe.tolist() == out.start_step.tolist() and len(set(out.start_step.tolist())) == 2
    assert out.out_of_range is not None and out.out_of_range.tolist() == [False, True]
    budget = Flash(solver, nfe_budget=2.0).reconstruct(y, operator, generators([0, 1]), progress=False)
    assert budget.snr_scale is not None and budget.snr_scale > 1 and float(budget.nfe.double().mean()) <= 2.0
    assert bool(torch.isfinite(out.images).all() and torch.isfinite(budget.images).all())


def test_a_bare_run_from_sigma_one_is_finite():
    model = tiny_model("vq", flow_shift=3.0)
    y, operator = _blur_problem(model)
    for solver in (LatentDPS(model, steps=6), PSLD(model, steps=6), GMLDPS(model, steps=6),
                   ReSample(model, steps=6, iterations=2, every_n=2)):
        out = solver.reconstruct(y, operator, generators([0, 1]), progress=False)
        assert out.path == "flow" and out.nfe.tolist() == [6, 6]
        assert bool(torch.isfinite(out.latents).all()), type(solver).__name__


def test_a_flow_bundle_reloads_to_identical_reconstructions(tmp_path):
    model = tiny_model("vq", flow_shift=3.0)
    model = LatentDiffusion(model.autoencoder, model.denoiser, model.scheduler, image_size=32, flow_grid="flux")
    model.save_pretrained(tmp_path / "flow")
    index = __import__("json").loads((tmp_path / "flow" / "model_index.json").read_text())
    assert index["flow_grid"] == {"style": "flux"} and index["format_version"] == 3
    assert index["prediction_type"] == "velocity"
    again = LatentDiffusion.from_pretrained(tmp_path / "flow")
    assert again.path == "flow" and again.flow_grid == "flux"
    assert torch.equal(again.flow_sigmas(10), model.flow_sigmas(10))
    for bundle in (model, again):  # the same programmed encoder (its head is drawn from the global RNG)
        torch.manual_seed(0)
        bundle.add_severity_encoder("gaussian-blur", ProgrammedSeverity(bundle, scale=0.5))
    y, operator = _blur_problem(model)
    bare = [LatentDPS(bundle, steps=10).reconstruct(y, operator, generators([0, 1]), progress=False)
            for bundle in (model, again)]
    assert torch.equal(bare[0].latents, bare[1].latents) and bare[0].path == bare[1].path == "flow"
    first = Flash(LatentDPS(model, steps=10)).reconstruct(y, operator, generators([0, 1]), progress=False)
    second = Flash(LatentDPS(again, steps=10)).reconstruct(y, operator, generators([0, 1]), progress=False)
    assert first.start_step.tolist() == second.start_step.tolist()
    # the guidance gradient of the reloaded weights differs by float rounding (3e-7 per step) on this CPU
    torch.testing.assert_close(first.latents, second.latents, rtol=0, atol=1e-5)


def test_flow_bundle_inconsistencies_are_refused(tmp_path):
    import json

    tiny_model("vq", flow_shift=3.0).save_pretrained(tmp_path / "flow")
    index_file = tmp_path / "flow" / "model_index.json"
    index = json.loads(index_file.read_text())
    index_file.write_text(json.dumps({**index, "format_version": 2}))
    with pytest.raises(ValueError, match="format_version 2 cannot hold a flow-matching model"):
        LatentDiffusion.from_pretrained(tmp_path / "flow")
    index_file.write_text(json.dumps({**index, "flow_grid": {"style": "wan"}}))
    with pytest.raises(ValueError, match="flow grid style must be one of sd3, flux"):
        LatentDiffusion.from_pretrained(tmp_path / "flow")
    config_file = tmp_path / "flow" / "scheduler" / "scheduler_config.json"
    index_file.write_text(json.dumps(index))
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "stochastic_sampling": True}))
    with pytest.raises(ValueError, match="stochastic_sampling=True is not supported"):
        LatentDiffusion.from_pretrained(tmp_path / "flow")


class TestLatentDPSFlowContract(SolverContract):
    solver_class = LatentDPS
    tasks = ("gaussian-blur", "random-inpainting")
    flow_shift = 1.0  # the demo-flow prior's; shift 3 is coarse at the clean end of a 10-step grid


class TestPSLDFlowContract(SolverContract):
    solver_class = PSLD
    tasks = ("gaussian-blur", "super-resolution")
    refused_tasks = ("motion-blur",)
    flow_shift = 3.0


class TestGMLDPSFlowContract(SolverContract):
    solver_class = GMLDPS
    tasks = ("gaussian-blur", "motion-blur")
    flow_shift = 1.0  # the demo-flow prior's; shift 3 is coarse at the clean end of a 10-step grid


class TestReSampleFlowContract(SolverContract):
    solver_class = ReSample
    tasks = ("gaussian-blur", "random-inpainting")
    # σ grid of 10 steps (shift 3): every_n = 3 puts hard DC on latent, pixel and skipped levels
    overrides = {"iterations": 3, "every_n": 3}
    flow_shift = 1.0  # the demo-flow prior's; shift 3 is coarse at the clean end of a 10-step grid
