"""The per-sample DDPM/DDIM updates agree with diffusers' own step() on a shared timestep."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from flash_wrap.samplers import Sampler

LDM = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195,
           clip_sample=False)


@pytest.fixture(scope="module")
def alphas_cumprod():
    return DDPMScheduler(**LDM).alphas_cumprod.float()


def _latents(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 4, 6, 6, generator=g), torch.randn(3, 4, 6, 6, generator=g)


@pytest.mark.parametrize("t", [999, 640, 100, 1, 0])
def test_ddpm_step_matches_diffusers(alphas_cumprod, t):
    reference = DDPMScheduler(variance_type="fixed_small", **LDM)
    sampler = Sampler.ddpm(alphas_cumprod)
    z, eps = _latents()
    want = reference.step(eps, t, z, generator=torch.Generator().manual_seed(3)).prev_sample
    index = torch.full((3,), t)
    got = sampler.step(z, eps, sampler.tweedie(z, eps, index), index, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps,eta", [(100, 1.0), (500, 1.0), (20, 0.0)])
def test_ddim_step_matches_diffusers(alphas_cumprod, steps, eta):
    reference = DDIMScheduler(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, **LDM)
    reference.set_timesteps(steps)
    sampler = Sampler.ddim(alphas_cumprod, steps, eta=eta)
    assert sampler.timesteps.flip(0).tolist() == reference.timesteps.tolist()
    z, eps = _latents(1)
    for k in (steps - 1, steps // 2, 0):
        t = int(sampler.timesteps[k])
        want = reference.step(eps, t, z, eta=eta, generator=torch.Generator().manual_seed(5)).prev_sample
        index = torch.full((3,), k)
        got = sampler.step(z, eps, sampler.tweedie(z, eps, index), index, torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_ldm_grid_is_uniform_with_offset_one(alphas_cumprod):
    # ALGORITHMS.md §3: g_k = k·(1000/N) + 1
    assert Sampler.ddim(alphas_cumprod, 500).timesteps[:3].tolist() == [1, 3, 5]
    assert Sampler.ddim(alphas_cumprod, 100).timesteps[[0, -1]].tolist() == [1, 991]
    assert Sampler.ddpm(alphas_cumprod).timesteps.tolist() == list(range(1000))


def test_rows_at_different_indices_step_independently(alphas_cumprod):
    sampler = Sampler.ddpm(alphas_cumprod)
    z, eps = _latents(2)
    index = torch.tensor([900, 10, 0])
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    together = sampler.step(z, eps, sampler.tweedie(z, eps, index), index, gens)
    for i in range(3):
        idx = index[i : i + 1]
        alone = sampler.step(z[i : i + 1], eps[i : i + 1], sampler.tweedie(z[i : i + 1], eps[i : i + 1], idx), idx,
                             [torch.Generator().manual_seed(i)])
        torch.testing.assert_close(together[i : i + 1], alone)


def test_tweedie_inverts_forward_noising(alphas_cumprod):
    sampler = Sampler.ddpm(alphas_cumprod)
    z0, eps = _latents(4)
    index = torch.tensor([5, 300, 900])
    a = alphas_cumprod[index].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    torch.testing.assert_close(sampler.tweedie(z_t, eps, index), z0, atol=1e-3, rtol=1e-3)


def test_bad_ddim_settings_are_rejected(alphas_cumprod):
    with pytest.raises(ValueError, match="DDIM steps"):
        Sampler.ddim(alphas_cumprod, 0)
    with pytest.raises(ValueError, match="eta"):
        Sampler.ddim(alphas_cumprod, 10, eta=-1)
