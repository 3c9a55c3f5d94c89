"""The NFE budget (ALGORITHMS.md §3.1): one common SNR scale λ, calibrated by bisection on log λ,
keeps the mean start step within the budget and the order of the starts by σ̂; Flash applies it
per call (nfe_budget) or as given (snr_scale), with the noise correction at v/λ."""

from __future__ import annotations

import pytest
import torch

import flash_wrap.flash as flash_module
from flash_wrap import Flash, InvalidInput
from flash_wrap.budget import TOLERANCE, calibrate_budget, mean_start
from flash_wrap.operators import GaussianBlur
from flash_wrap.start import start_index
from flash_wrap.testing import generators, smooth_images, tiny_model
from flash_wrap_plugins.latent_dps import LatentDPS


@pytest.fixture(scope="module")
def snr():
    return LatentDPS(tiny_model(), sampler="ddim", steps=100).sampler.snr  # DDIM-100, SNR decreasing in k


def _variances(n=40, seed=0):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.6 + 0.005


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.25, 0.05])
def test_the_calibrated_scale_meets_the_budget_and_is_the_smallest_to_do_so(snr, fraction):
    v = _variances()
    free = mean_start(v, snr, 1.0)
    budget = fraction * free
    scale = calibrate_budget(v, snr, budget)
    assert scale > 1
    assert mean_start(v, snr, scale) <= budget
    # just below λ (beyond the bisection's tolerance) the budget is exceeded: λ is the smallest
    assert mean_start(v, snr, scale / (1 + 2 * TOLERANCE)) > budget


def test_the_budgeted_starts_keep_the_order_by_sigma_hat(snr):
    v = _variances(60, seed=3)
    scale = calibrate_budget(v, snr, 0.5 * mean_start(v, snr, 1.0))
    starts = start_index(v / scale, snr)
    order = torch.argsort(v)
    assert (starts[order].diff() >= 0).all()  # pairwise: a larger σ̂ never starts lower
    assert starts.unique().numel() > 3  # not collapsed onto one step


def test_mean_start_falls_monotonically_with_the_scale(snr):
    v = _variances()
    means = [mean_start(v, snr, scale) for scale in torch.logspace(0, 4, 30).tolist()]
    assert all(a >= b for a, b in zip(means, means[1:]))
    assert means[0] > means[-1]


def test_the_scale_falls_monotonically_with_the_budget(snr):
    v = _variances()
    free = mean_start(v, snr, 1.0)
    scales = [calibrate_budget(v, snr, f * free) for f in (0.9, 0.7, 0.5, 0.3, 0.1)]
    assert all(a <= b for a, b in zip(scales, scales[1:]))


def test_a_budget_the_unbudgeted_rule_meets_leaves_the_scale_at_one(snr):
    v = _variances()
    assert calibrate_budget(v, snr, mean_start(v, snr, 1.0)) == 1.0
    assert calibrate_budget(v, snr, 100) == 1.0


@pytest.mark.parametrize("budget", [0, -1, 100.5, float("nan"), float("inf"), True])
def test_a_budget_outside_the_grid_is_refused_in_one_line(snr, budget):
    with pytest.raises(InvalidInput, match=r"nfe_budget must be .* in \(0, 100\]") as caught:
        calibrate_budget(_variances(), snr, budget)
    assert "\n" not in str(caught.value)


def test_non_finite_or_missing_variances_are_refused(snr):
    with pytest.raises(InvalidInput, match="finite variances"):
        calibrate_budget(torch.tensor([0.1, float("nan")]), snr, 5)
    with pytest.raises(InvalidInput, match="at least one"):
        calibrate_budget(torch.tensor([]), snr, 5)


def _batch(n=6):
    op = GaussianBlur(sigma=torch.linspace(0.4, 2.5, n))
    y = op.measure(smooth_images(n, brightness=torch.linspace(0.02, 0.3, n).tolist(), seed=1),
                   generator=torch.Generator().manual_seed(0))
    return y, op


def test_flash_with_a_budget_spends_at_most_the_budget_in_order(programmed_model):
    y, op = _batch()
    solver = LatentDPS(programmed_model, sampler="ddim", steps=100)
    free = Flash(solver).reconstruct(y, op, generator=generators(range(6)), progress=False)
    budget = 0.5 * float(free.nfe.float().mean())
    out = Flash(solver, nfe_budget=budget).reconstruct(y, op, generator=generators(range(6)), progress=False)
    assert free.snr_scale == 1.0 and out.snr_scale > 1
    assert float(out.nfe.float().mean()) <= budget
    assert out.nfe.tolist() == out.start_step.tolist()  # NFE = start step for the built-in solvers
    assert out.start_step.tolist() == start_index(out.sigma_hat / out.snr_scale, solver.sampler.snr).tolist()
    order = torch.argsort(out.sigma_hat)
    assert (out.start_step[order].diff() >= 0).all()
    torch.testing.assert_close(out.sigma_hat, free.sigma_hat)  # σ̂ is reported as the encoder gave it


def test_a_fixed_scale_starts_and_corrects_with_the_matching_variance(programmed_model, monkeypatch):
    y, op = _batch(3)
    solver = LatentDPS(programmed_model, sampler="ddim", steps=100)
    seen = {}
    original = flash_module.correct_noise

    def spy(z_hat, variance, c, generator=None):
        seen["variance"] = variance
        return original(z_hat, variance, c, generator)

    monkeypatch.setattr(flash_module, "correct_noise", spy)
    out = Flash(solver, snr_scale=4.0).reconstruct(y, op, generator=generators(range(3)), progress=False)
    assert out.snr_scale == 4.0
    torch.testing.assert_close(seen["variance"], out.sigma_hat / 4)
    assert out.start_step.tolist() == start_index(out.sigma_hat / 4, solver.sampler.snr).tolist()


def test_flash_refuses_a_bad_budget_or_scale_before_any_work(programmed_model):
    solver = LatentDPS(programmed_model, sampler="ddim", steps=100)
    for budget in (0, -3, 101):
        with pytest.raises(InvalidInput, match=r"in \(0, 100\]"):
            Flash(solver, nfe_budget=budget)
    for scale in (0.5, float("inf"), 0):
        with pytest.raises(InvalidInput, match="snr_scale must be a finite number >= 1"):
            Flash(solver, snr_scale=scale)
    with pytest.raises(InvalidInput, match="nfe_budget and snr_scale"):
        Flash(solver, nfe_budget=10, snr_scale=2.0)
    with pytest.raises(InvalidInput, match="fixed_start and nfe_budget"):
        Flash(solver, fixed_start=3, nfe_budget=10)


def test_the_repr_names_the_budget_or_the_scale(programmed_model):
    solver = LatentDPS(programmed_model, steps=10)
    assert repr(Flash(solver, nfe_budget=4)).endswith("c=None, fixed_start=None, nfe_budget=4)")
    assert repr(Flash(solver, snr_scale=2.5)).endswith("c=None, fixed_start=None, snr_scale=2.5)")
