"""The one grid rule (flash_wrap.grid.grid_for): (solver, scheduler, steps) → sampler grid."""

from __future__ import annotations

import math

import pytest
import torch

from flash_wrap.grid import GridSpec, OwnSampler, grid_for
from flash_wrap.testing import tiny_model
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.resample import ReSample

T = 1000
DDPM_SOLVER = OwnSampler("ddpm", None, 0.0)  # like Latent-DPS: DDPM over every timestep
DDIM_SOLVER = OwnSampler("ddim", 500, 1.0)  # like ReSample: DDIM-500, η = 1


def test_no_request_runs_the_solver_own_sampler():
    assert grid_for(DDPM_SOLVER, T) == GridSpec("ddpm", T, None)
    assert grid_for(DDIM_SOLVER, T) == GridSpec("ddim", 500, 1.0)
    assert grid_for(OwnSampler(), T) == GridSpec("ddpm", T, None)  # non-solver callers


def test_solver_classes_are_read_like_any_sampler_defaults():
    assert grid_for(LatentDPS, T) == GridSpec("ddpm", T, None)
    assert grid_for(ReSample, T) == GridSpec("ddim", 500, 1.0)


@pytest.mark.parametrize("solver", [DDPM_SOLVER, DDIM_SOLVER])
def test_fewer_steps_than_timesteps_is_ddim_with_the_solver_own_eta(solver):
    assert grid_for(solver, T, steps=50) == GridSpec("ddim", 50, solver.ddim_eta)
    assert grid_for(solver, T, steps=1) == GridSpec("ddim", 1, solver.ddim_eta)
    assert grid_for(solver, T, steps=T - 1) == GridSpec("ddim", T - 1, solver.ddim_eta)


@pytest.mark.parametrize("solver", [DDPM_SOLVER, DDIM_SOLVER])
def test_all_timesteps_is_ddpm(solver):
    assert grid_for(solver, T, steps=T) == GridSpec("ddpm", T, None)


def test_an_explicit_ddim_eta_wins():
    assert grid_for(DDIM_SOLVER, T, ddim_eta=0.0) == GridSpec("ddim", 500, 0.0)
    assert grid_for(DDPM_SOLVER, T, steps=20, ddim_eta=0.5) == GridSpec("ddim", 20, 0.5)


def test_an_explicit_scheduler_is_obeyed():
    assert grid_for(DDIM_SOLVER, T, scheduler="ddpm") == GridSpec("ddpm", T, None)
    assert grid_for(DDPM_SOLVER, T, scheduler="ddpm", steps=T) == GridSpec("ddpm", T, None)
    assert grid_for(DDPM_SOLVER, T, scheduler="ddim", steps=100) == GridSpec("ddim", 100, 0.0)
    assert grid_for(DDIM_SOLVER, T, scheduler="ddim") == GridSpec("ddim", 500, 1.0)


def test_ddim_over_every_timestep_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"DDIM needs fewer steps than the 1000 training timesteps.*got 1000"):
        grid_for(DDPM_SOLVER, T, scheduler="ddim", steps=T)
    # a DDPM solver asked for DDIM without a length has no DDIM length of its own
    with pytest.raises(ValueError, match=r"sampler='ddim' needs a number of steps below the 1000.*pass steps=N"):
        grid_for(DDPM_SOLVER, T, scheduler="ddim")


def test_a_ddim_eta_for_the_ddpm_sampler_is_refused():
    # DDPM has no η: accepting one would record a setting that did not act
    with pytest.raises(ValueError, match="ddim_eta=0.5 was given but the sampler is DDPM"):
        grid_for(DDPM_SOLVER, T, ddim_eta=0.5)
    assert grid_for(DDPM_SOLVER, T, steps=50, ddim_eta=0.5) == GridSpec("ddim", 50, 0.5)


def test_ddpm_with_fewer_steps_is_refused():
    with pytest.raises(ValueError, match="the DDPM sampler runs all 1000 timesteps; use sampler='ddim' for steps=100"):
        grid_for(DDPM_SOLVER, T, scheduler="ddpm", steps=100)


@pytest.mark.parametrize("steps", [0, -3, T + 1, True, 2.5, "10"])
def test_steps_must_be_an_integer_in_range(steps):
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 1000\].*got"):
        grid_for(DDPM_SOLVER, T, steps=steps)


@pytest.mark.parametrize("eta", [-0.1, math.nan])
def test_ddim_eta_must_be_non_negative(eta):
    with pytest.raises(ValueError, match="DDIM eta must be >= 0"):
        grid_for(DDIM_SOLVER, T, ddim_eta=eta)


def test_unknown_scheduler_is_refused():
    with pytest.raises(ValueError, match="sampler must be 'ddpm' or 'ddim', got 'euler'"):
        grid_for(DDPM_SOLVER, T, scheduler="euler")


def test_label():
    assert GridSpec("ddpm", 1000, None).label() == "ddpm-1000"
    assert GridSpec("ddim", 100, 0.0).label() == "ddim-100 (η=0)"
    assert GridSpec("ddim", 25, 0.85).label() == "ddim-25 (η=0.85)"


def test_build_makes_the_sampler_of_the_spec():
    model = tiny_model("vq")
    alphas_cumprod = model.alphas_cumprod
    ddim = GridSpec("ddim", 25, 0.5).build(model)
    assert (ddim.kind, ddim.num_steps, ddim.eta) == ("ddim", 25, 0.5)
    assert ddim.timesteps.tolist() == [40 * k + 1 for k in range(25)]  # LDM's uniform grid
    ddpm = GridSpec("ddpm", 1000, None).build(model)
    assert (ddpm.kind, ddpm.num_steps) == ("ddpm", 1000) and ddpm.timesteps.tolist() == list(range(1000))
    assert ddim.coef_z0.dtype == alphas_cumprod.dtype and ddim.snr.dtype == torch.float64


def test_a_solver_runs_the_grid_of_its_request():
    model = tiny_model("vq")
    for kwargs, label in [({}, "ddpm-1000"), ({"steps": 10}, "ddim-10 (η=0)"), ({"steps": 10, "ddim_eta": 0.3},
                          "ddim-10 (η=0.3)"), ({"sampler": "ddpm"}, "ddpm-1000")]:
        solver = LatentDPS(model, **kwargs)
        assert solver.grid.label() == label
        assert (solver.sampler.kind, solver.sampler.num_steps) == (solver.grid.kind, solver.grid.steps)
    assert ReSample(model, steps=25).grid == GridSpec("ddim", 25, 1.0)
    with pytest.raises(ValueError, match="use sampler='ddim'"):
        LatentDPS(model, sampler="ddpm", steps=100)
