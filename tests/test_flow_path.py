"""The rectified-flow path as a VP path (ALGORITHMS.md §12): the math, the model's prediction, the
sampler tables, the flow scheduler configs and the refusals."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from flash_wrap.grid import FLOW_DEFAULT_STEPS, GridSpec, OwnSampler, grid_for
from flash_wrap.models import LatentDiffusion, flow_schedule_from_config
from flash_wrap.models.flow_path import (
    flow_alpha_bar,
    flow_snr,
    flow_to_vp,
    velocity_to_eps_z0,
    vp_to_flow,
)
from flash_wrap.samplers import Sampler
from flash_wrap.testing import tiny_model
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.resample import ReSample

SIGMAS = torch.tensor([0.0, 1e-3, 0.25, 0.5, 0.8, 0.999, 1.0], dtype=torch.float64)


def test_alpha_bar_and_snr_of_sigma():
    a_bar = flow_alpha_bar(SIGMAS)
    expected = [(1 - s) ** 2 / ((1 - s) ** 2 + s**2) for s in SIGMAS.tolist()]
    assert a_bar.tolist() == pytest.approx(expected, abs=1e-15)
    assert a_bar[0] == 1 and a_bar[-1] == 0
    inner = SIGMAS[1:]
    torch.testing.assert_close(flow_snr(inner), flow_alpha_bar(inner) / (1 - flow_alpha_bar(inner)), rtol=1e-9, atol=0)


def test_vp_flow_round_trip():
    z = torch.randn(len(SIGMAS), 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = SIGMAS.view(-1, 1, 1, 1)
    x, a_bar = flow_to_vp(z, sigma)
    z_back, sigma_back = vp_to_flow(x, a_bar)
    torch.testing.assert_close(z_back, z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sigma_back, sigma.expand_as(sigma_back), rtol=0, atol=1e-12)


def test_flow_state_is_the_vp_state_of_the_same_z0_and_eps():
    """z = (1−σ)z₀ + σε rescaled is a·z₀ + b·ε with a = √ᾱ(σ), b = √(1−ᾱ(σ)), at every σ (also 0 and 1)."""
    gen = torch.Generator().manual_seed(1)
    z0, eps = (torch.randn(len(SIGMAS), 2, 3, 3, dtype=torch.float64, generator=gen) for _ in range(2))
    sigma = SIGMAS.view(-1, 1, 1, 1)
    x, a_bar = flow_to_vp((1 - sigma) * z0 + sigma * eps, sigma)
    torch.testing.assert_close(x, a_bar.sqrt() * z0 + (1 - a_bar).sqrt() * eps, rtol=1e-13, atol=1e-13)


def test_eps_and_z0_from_the_velocity_are_exact_and_finite_at_sigma_one():
    gen = torch.Generator().manual_seed(2)
    z0, eps = (torch.randn(len(SIGMAS), 2, 3, 3, dtype=torch.float64, generator=gen) for _ in range(2))
    sigma = SIGMAS.view(-1, 1, 1, 1)
    z = (1 - sigma) * z0 + sigma * eps
    eps_hat, z0_hat = velocity_to_eps_z0(z, sigma, eps - z0)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(z0_hat, z0, rtol=1e-13, atol=1e-13)
    assert bool(torch.isfinite(eps_hat).all() and torch.isfinite(z0_hat).all())


def _flow_model(dtype=torch.float64, **scheduler) -> LatentDiffusion:
    base = tiny_model("kl", image_size=32, seed=0)
    flow = FlowMatchEulerDiscreteScheduler(**(scheduler or {"shift": 3.0}))
    return LatentDiffusion(base.autoencoder, base.denoiser, flow, image_size=32).to(dtype).requires_grad_(False).eval()


def test_predict_at_sigma_one_is_finite_and_follows_the_flow_form():
    """At the top of a flow grid (σ = 1, ᾱ = 0) ε = z and ẑ₀ = z − u: both finite, unlike VP Tweedie."""
    model = _flow_model()
    x = torch.randn(2, *model.latent_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.full((2,), 1000.0, dtype=torch.float64)
    out = model.predict(x, t)
    u = model.denoiser(x, t)
    torch.testing.assert_close(out.eps, x, rtol=0, atol=0)
    torch.testing.assert_close(out.z0, x - u, rtol=1e-14, atol=1e-14)
    assert bool(torch.isfinite(out.eps).all() and torch.isfinite(out.z0).all())
    torch.testing.assert_close(model.predict_noise(x, t), out.eps, rtol=0, atol=0)


def test_predict_converts_the_vp_state_to_the_flow_state():
    model = _flow_model()
    sigma = 0.3
    x = torch.randn(1, *model.latent_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([sigma * 1000], dtype=torch.float64)
    z = x * ((1 - sigma) ** 2 + sigma**2) ** 0.5
    u = model.denoiser(z, t)
    out = model.predict(x, t)
    torch.testing.assert_close(out.eps, z + (1 - sigma) * u, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out.z0, z - sigma * u, rtol=1e-13, atol=1e-13)
    a_bar = (1 - sigma) ** 2 / ((1 - sigma) ** 2 + sigma**2)  # Tweedie in VP coordinates agrees below σ = 1
    torch.testing.assert_close(out.z0, (x - (1 - a_bar) ** 0.5 * out.eps) / a_bar**0.5, rtol=1e-12, atol=1e-12)


def test_vp_predict_z0_is_the_samplers_tweedie():
    model = tiny_model("vq")
    sampler = GridSpec("ddim", 10, 0.0).build(model)
    x = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(5))
    index = torch.tensor([0, 4, 9])
    out = model.predict(x, sampler.timesteps[index])
    assert torch.equal(out.z0, sampler.tweedie(x, out.eps, index))


def test_flow_sampler_tables():
    sigmas = torch.tensor([1.0, 0.7, 0.4, 0.1], dtype=torch.float64)
    sampler = Sampler.flow(sigmas, 0.0, num_train_timesteps=1000, dtype=torch.float64)
    ascending = sigmas.flip(0)
    assert sampler.path == "flow" and sampler.kind == "ddim" and sampler.num_steps == 4
    assert sampler.timesteps.dtype == torch.float64 and sampler.timesteps.tolist() == pytest.approx([100, 400, 700, 1000])
    a_bar = [(1 - s) ** 2 / ((1 - s) ** 2 + s**2) for s in ascending.tolist()]
    assert sampler.sqrt_alpha_bar.pow(2).tolist() == pytest.approx(a_bar, abs=1e-15)
    assert sampler.snr.dtype == torch.float64 and sampler.snr.tolist() == pytest.approx(
        [(1 - s) ** 2 / s**2 for s in ascending.tolist()], rel=1e-14)
    assert sampler.snr[-1] == 0 and bool(torch.isfinite(sampler.snr).all())
    prev = [1.0, *a_bar[:-1]]  # σ = 0 (ᾱ = 1) below index 0
    assert sampler.coef_z0.tolist() == pytest.approx([p**0.5 for p in prev], abs=1e-15)
    assert sampler.coef_other.tolist() == pytest.approx([(1 - p) ** 0.5 for p in prev], abs=1e-15)
    assert sampler.noise_std.tolist() == [0.0] * 4
    for table in (sampler.coef_z0, sampler.coef_other, sampler.sqrt_alpha_bar, sampler.sqrt_one_minus_alpha_bar):
        assert bool(torch.isfinite(table).all())
    noisy = Sampler.flow(sigmas, 1.0, dtype=torch.float64)
    assert bool(torch.isfinite(noisy.noise_std).all()) and noisy.noise_std[0] == 0 and bool((noisy.noise_std[1:] > 0).all())


def test_ddim_eta0_step_on_the_flow_grid_is_the_euler_step():
    sigmas = torch.tensor([1.0, 0.6, 0.2], dtype=torch.float64)
    sampler = Sampler.flow(sigmas, 0.0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(6)
    z, u = (torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=gen) for _ in range(2))
    for k, (sigma, below) in enumerate(zip([0.2, 0.6, 1.0], [0.0, 0.2, 0.6])):
        x, _ = flow_to_vp(z, torch.tensor(sigma, dtype=torch.float64))
        eps, z0 = velocity_to_eps_z0(z, torch.tensor(sigma, dtype=torch.float64), u)
        x_next = sampler.step(x, eps, z0, torch.tensor([k]))
        z_next = x_next * (((1 - below) ** 2 + below**2) ** 0.5)
        torch.testing.assert_close(z_next, z + (below - sigma) * u, rtol=1e-13, atol=1e-13)


def test_tweedie_refuses_the_sigma_one_level():
    sampler = Sampler.flow(torch.tensor([1.0, 0.5], dtype=torch.float64), 0.0)
    z = torch.randn(2, 1, 2, 2)
    with pytest.raises(ValueError, match="ᾱ = 0 at this grid level") as err:
        sampler.tweedie(z, z, torch.tensor([0, 1]))
    assert "\n" not in str(err.value)
    assert bool(torch.isfinite(sampler.tweedie(z, z, torch.tensor([0, 0]))).all())


def test_flow_sigmas_follow_diffusers_in_both_styles():
    model = _flow_model(shift=3.0)
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(28)
    assert torch.equal(model.flow_sigmas(28), reference.sigmas[:-1].double())
    assert model.flow_sigmas(28)[0] == 1.0
    flux = LatentDiffusion(model.autoencoder, model.denoiser, model.scheduler, image_size=32, flow_grid="flux")
    reference.set_timesteps(sigmas=[1 - k / 10 for k in range(10)])
    torch.testing.assert_close(flux.flow_sigmas(10), reference.sigmas[:-1].double(), rtol=1e-6, atol=0)
    dynamic = _flow_model(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256)
    mu = 64 * (1.15 - 0.5) / 240 + 0.5 - 16 * (1.15 - 0.5) / 240  # 8x8 latent tokens
    reference = FlowMatchEulerDiscreteScheduler.from_config(dynamic.scheduler.config)
    reference.set_timesteps(12, mu=mu)
    torch.testing.assert_close(dynamic.flow_sigmas(12), reference.sigmas[:-1].double(), rtol=1e-7, atol=0)


def test_image_seq_len_defaults_to_h_times_w_and_follows_the_denoiser():
    model = _flow_model(use_dynamic_shifting=True)
    assert model.image_seq_len() == 8 * 8
    model.denoiser.image_seq_len = lambda h, w: (h // 2) * (w // 2)  # FLUX packs 2x2 patches
    assert model.image_seq_len() == 16
    reference = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    reference.set_timesteps(5, mu=16 * (1.15 - 0.5) / 3840 + 0.5 - 256 * (1.15 - 0.5) / 3840)
    torch.testing.assert_close(model.flow_sigmas(5), reference.sigmas[:-1].double(), rtol=1e-7, atol=0)


def test_path_and_refusals_on_flow_models():
    model = _flow_model()
    assert model.path == "flow" and model.flow_grid == "sd3" and model.prediction_type == "velocity"
    assert tiny_model("vq").path == "vp" and tiny_model("vq").flow_grid is None
    for name in ("alphas_cumprod", "betas"):
        with pytest.raises(ValueError, match="flow-matching model .* no discrete DDPM schedule"):
            getattr(model, name)
    with pytest.raises(ValueError, match="sampler='ddpm' cannot run a flow-matching model"):
        LatentDPS(model, sampler="ddpm")
    with pytest.raises(ValueError, match="DDPM sampler cannot run a flow-matching model"):
        GridSpec("ddpm", 1000, None).build(model)
    with pytest.raises(TypeError, match="floating tensor"):
        model.predict(torch.zeros(1, *model.latent_shape, dtype=torch.float64), torch.tensor([10]))
    with pytest.raises(ValueError, match=r"must lie in \(0, 1000\]"):
        model.predict(torch.zeros(1, *model.latent_shape, dtype=torch.float64), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="flow_grid='flux' was given but the scheduler is a DDPMScheduler"):
        LatentDiffusion(model.autoencoder, model.denoiser, DDPMScheduler(), image_size=32, flow_grid="flux")


def test_the_flow_grid_rule():
    """steps = Euler steps on the σ grid; no steps: a DDIM solver's own default, else 100."""
    assert grid_for(LatentDPS, 1000, path="flow") == GridSpec("ddim", FLOW_DEFAULT_STEPS, 0.0)
    assert grid_for(ReSample, 1000, path="flow") == GridSpec("ddim", 500, 1.0)
    assert grid_for(LatentDPS, 1000, steps=1000, path="flow") == GridSpec("ddim", 1000, 0.0)
    assert grid_for(OwnSampler(), 1000, steps=28, ddim_eta=0.0, path="flow") == GridSpec("ddim", 28, 0.0)
    solver = LatentDPS(_flow_model(dtype=torch.float32), steps=28)
    assert solver.grid.label() == "ddim-28 (η=0)" and solver.sampler.path == "flow"
    assert solver.sampler.timesteps[-1] == 1000.0 and solver.sampler.coef_z0.dtype == torch.float32


@pytest.mark.parametrize(("entry", "value"), [
    ("stochastic_sampling", True), ("use_karras_sigmas", True), ("use_exponential_sigmas", True),
    ("use_beta_sigmas", True), ("invert_sigmas", True), ("shift_terminal", 0.1), ("time_shift_type", "linear"),
])
def test_flow_configs_flash_wrap_cannot_reproduce_are_refused(entry, value):
    config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0, entry: value}
    with pytest.raises(ValueError, match=f"{entry}=.* is not supported") as err:
        flow_schedule_from_config(config, "scheduler_config.json")
    assert "\n" not in str(err.value)
    base = tiny_model("kl")
    with pytest.raises(ValueError, match=f"{entry}=.* is not supported"):
        LatentDiffusion(base.autoencoder, base.denoiser, FlowMatchEulerDiscreteScheduler(
            **{k: v for k, v in config.items() if k != "_class_name"}), image_size=32)


def test_flow_config_keeps_what_flash_wrap_reproduces():
    config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.42.0",
              "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096, "stochastic_sampling": False,
              "time_shift_type": "exponential", "shift_terminal": None}
    scheduler = flow_schedule_from_config(config, "x")
    assert scheduler.config.use_dynamic_shifting and scheduler.config.max_shift == 1.15


def test_from_diffusers_takes_a_flow_scheduler_folder(tmp_path):
    base = tiny_model("kl")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(str(tmp_path / "scheduler"))
    model = LatentDiffusion.from_diffusers(base.autoencoder, base.denoiser.unet, scheduler=tmp_path / "scheduler",
                                           image_size=32)
    assert model.path == "flow" and model.scheduler.config.shift == 3.0
    FlowMatchEulerDiscreteScheduler(stochastic_sampling=True).save_pretrained(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="stochastic_sampling=True is not supported"):
        LatentDiffusion.from_diffusers(base.autoencoder, base.denoiser.unet, scheduler=tmp_path / "bad", image_size=32)
