"""Start-step rule and noise correction (ALGORITHMS.md §3-4), checked against the schedule."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from flash_wrap.samplers import Sampler
from flash_wrap.start import MAX_NOISE_FRACTION, correct_noise, start_index

LDM = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195)


@pytest.fixture(scope="module")
def alphas_cumprod():
    return DDPMScheduler(**LDM).alphas_cumprod.float()


@pytest.mark.parametrize(
    "steps,pairs",
    [
        (None, {0.001: 0, 0.01: 6, 0.05: 29, 0.1: 54, 0.2149: 100, 0.3: 127, 0.5: 176, 1.0: 254, 2.0: 339}),
        (500, {0.01: 2, 0.1: 27, 0.2149: 50, 0.5: 87, 1.0: 127}),
        (100, {0.1: 5, 0.2149: 10, 1.0: 25}),
    ],
)
def test_start_index_test_vectors(alphas_cumprod, steps, pairs):
    sampler = Sampler.ddpm(alphas_cumprod) if steps is None else Sampler.ddim(alphas_cumprod, steps)
    v = torch.tensor(list(pairs))
    assert start_index(v, sampler.snr).tolist() == list(pairs.values())


def test_start_index_is_the_snr_argmin(alphas_cumprod):
    sampler = Sampler.ddpm(alphas_cumprod)
    v = torch.logspace(-3, 1, 57)
    s = start_index(v, sampler.snr)
    for vi, si in zip(v.tolist(), s.tolist()):
        gaps = (sampler.snr - 1 / vi).abs()
        assert gaps[si] == gaps.min()


def test_start_index_monotone_and_reaches_both_ends(alphas_cumprod):
    for sampler in (Sampler.ddpm(alphas_cumprod), Sampler.ddim(alphas_cumprod, 50)):
        v = torch.logspace(-6, 6, 400)
        s = start_index(v, sampler.snr)
        assert bool((s[1:] >= s[:-1]).all())
        assert start_index(torch.tensor([0.0, 1e-12]), sampler.snr).tolist() == [0, 0]
        top = sampler.num_steps - 1
        assert start_index(torch.tensor([1e6, math.inf]), sampler.snr).tolist() == [top, top]


def test_noise_correction_mean_and_variance():
    z_hat = torch.full((4000, 1, 4, 4), 2.0)
    v = torch.full((4000,), 0.25)
    c = 1.2
    z = correct_noise(z_hat, v, c, torch.Generator().manual_seed(0))
    # z = sqrt(1 - c v) z_hat + sqrt(c v) eps: mean sqrt(0.7)*2, variance c v = 0.3
    n = z.numel()
    mean, var = float(z.mean()), float(z.var())
    assert abs(mean - math.sqrt(1 - c * 0.25) * 2.0) < 4 * math.sqrt(0.3 / n)
    # the sample variance of n Gaussians has std ≈ var * sqrt(2/n)
    assert abs(var - 0.3) < 4 * 0.3 * math.sqrt(2 / n)


def test_noise_correction_is_per_sample_and_reproducible():
    z_hat = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    v = torch.tensor([0.0, 0.1, 0.5])
    a = correct_noise(z_hat, v, 1.0, torch.Generator().manual_seed(7))
    b = correct_noise(z_hat, v, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    torch.testing.assert_close(a[0], z_hat[0])  # v = 0: no noise injected
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    together = correct_noise(z_hat, v, 1.0, gens)
    alone = correct_noise(z_hat[2:], v[2:], 1.0, [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(together[2:], alone)


def test_noise_correction_caps_with_a_warning():
    z_hat = torch.zeros(2, 1, 8, 8)
    v = torch.tensor([0.1, 2.0])
    with pytest.warns(RuntimeWarning, match=r"c·v >= 1 for samples \[1\]"):
        z = correct_noise(z_hat, v, 1.2, torch.Generator().manual_seed(0))
    assert torch.isfinite(z).all()
    assert float(z[1].std()) == pytest.approx(math.sqrt(MAX_NOISE_FRACTION), rel=0.35)
    with pytest.raises(ValueError, match="c must be >= 0"):
        correct_noise(z_hat, v, -1.0)
