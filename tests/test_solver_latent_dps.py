"""Latent-DPS: the solver contract, plus what is specific to it (one step reduces the residual,
the data-consistency step is per sample, one decode per step, registration)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap import Flash
from flash_wrap.operators import GaussianBlur
from flash_wrap.registry import load_registry
from flash_wrap.testing import (
    SolverContract,
    generators,
    make_state,
    smooth_images,
)
from flash_wrap_plugins.latent_dps import LatentDPS


class TestLatentDPSContract(SolverContract):
    solver_class = LatentDPS
    tasks = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")
    steps = 10


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


def test_the_data_consistency_step_is_per_sample_and_acts(programmed_model):
    # In float32 a single step alone and batched agrees to rounding; the same step without the
    # guidance (η = 0) differs clearly, so the comparison is not between two prior steps.
    op = GaussianBlur(sigma=torch.tensor([0.4, 2.8, 1.5]))
    y = _measure(op, smooth_images(3, brightness=[0.05, 0.6, 0.3], seed=1))
    solver = LatentDPS(programmed_model)
    z = torch.randn(3, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(0))
    together = solver.step(make_state(solver, z, y, op, 400, generators([0, 1, 2])))
    for i in range(3):
        alone = solver.step(make_state(solver, z[i : i + 1], y[i : i + 1], op.select([i]), 400, generators([i])))
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)
    prior = LatentDPS(programmed_model, eta=0.0)
    prior_only = prior.step(make_state(prior, z, y, op, 400, generators([0, 1, 2])))
    assert (together - prior_only).abs().amax() > 1e-3


def test_eta_zero_is_the_unconditional_prior_step(programmed_model):
    op = GaussianBlur(sigma=torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    solver = LatentDPS(programmed_model, eta=0.0, sampler="ddim", steps=20)
    z = torch.randn(2, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(0))
    stepped = solver.step(make_state(solver, z, y, op, 7, generators([0, 1])))
    with torch.no_grad():
        index = torch.full((2,), 7)
        eps = programmed_model.predict_noise(z, solver.sampler.timesteps[index])
        z0 = solver.sampler.tweedie(z, eps, index)
        expected = solver.sampler.step(z, eps, z0, index, generators([0, 1]))
    torch.testing.assert_close(stepped, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("wrapped", [False, True])
def test_decodes_once_per_step(programmed_model, wrapped):
    op = GaussianBlur(sigma=torch.tensor([0.4, 2.8, 1.5]))
    y = _measure(op, smooth_images(3, brightness=[0.05, 0.6, 0.3], seed=1))
    solver = LatentDPS(programmed_model, sampler="ddim", steps=20)
    runner = Flash(solver) if wrapped else solver
    out = runner.reconstruct(y, op, generator=generators([0, 1, 2]), progress=False)
    assert out.decoder_calls.tolist() == out.nfe.tolist()
    assert wrapped or out.nfe.tolist() == [20, 20, 20]


def test_defaults_and_own_sampler():
    assert LatentDPS.sampler_kind == "ddpm" and LatentDPS.default_steps is None
    assert LatentDPS.defaults["random-inpainting"] == {"c": 1.2, "eta": 7.0}
    assert LatentDPS.defaults["motion-blur"] == {"c": 1.0, "eta": 1.0}
    assert LatentDPS.hyperparameter_names() == {"c", "eta"}


def test_registered_through_its_entry_point():
    record = load_registry().solvers["latent-dps"]
    assert record.cls is LatentDPS and record.plugin == "latent-dps"
    assert "flash_wrap_plugins.latent_dps" in record.origin
    assert flash_wrap.get_solver("latent-dps") is LatentDPS
