"""PSLD: the solver contract (linear operators only: the nonlinear motion blur is refused), plus
what is specific to it (one step reduces the residual, the gluing target formula, the gluing term
acts per sample, γ = 0 is exactly Latent-DPS, defaults, registration)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap import Flash
from flash_wrap.operators import NonlinearMotionBlur, RandomInpainting
from flash_wrap.registry import load_registry
from flash_wrap.testing import (
    SolverContract,
    make_state,
    smooth_images,
)
from flash_wrap_plugins.psld import PSLD, psld_target


class TestPSLDContract(SolverContract):
    solver_class = PSLD
    tasks = ("gaussian-blur", "random-inpainting", "super-resolution")
    refused_tasks = ("motion-blur",)
    steps = 10


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


def test_target_keeps_the_measurement_and_the_unseen_part(programmed_model):
    # x̃ = Aᵀy + (I − AᵀA)x0: for inpainting, y on the kept pixels and x0 on the missing ones.
    op = RandomInpainting([0.5, 0.7])
    y = _measure(op, smooth_images(2))
    solver = PSLD(programmed_model)
    state = make_state(solver, torch.zeros(2, *programmed_model.latent_shape), y, op, 5)
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = op.mask_for(32)
    torch.testing.assert_close(psld_target(state, x0), mask * y + (1 - mask) * x0)


def test_target_is_differentiable_in_the_estimate(programmed_model):
    # The gluing gradient flows through x̃ into D(ẑ0): ∂x̃/∂x0 = I − AᵀA, zero on kept pixels.
    op = RandomInpainting([0.5, 0.7])
    y = _measure(op, smooth_images(2))
    state = make_state(PSLD(programmed_model), torch.zeros(2, *programmed_model.latent_shape), y, op, 5)
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    (grad,) = torch.autograd.grad(psld_target(state, x0).sum(), x0)
    torch.testing.assert_close(grad, (1 - op.mask_for(32)).expand_as(grad))


def test_rejects_the_nonlinear_motion_blur_saying_why(programmed_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the operator was checked")

    monkeypatch.setattr(programmed_model.denoiser, "forward", refuse)
    op = NonlinearMotionBlur(length=5.0, turning=1.0, seed=0)
    for runner in (PSLD(programmed_model), Flash(PSLD(programmed_model))):
        with pytest.raises(ValueError, match=r"PSLD needs the transpose Aᵀ.*NonlinearMotionBlur.*not linear"):
            runner.reconstruct(torch.rand(1, 3, 32, 32), op)


def test_defaults_per_task():
    assert PSLD.defaults["gaussian-blur"] == {"c": 1.0, "eta": 2.0, "gamma": 0.2}
    assert PSLD.defaults["random-inpainting"] == {"c": 1.0, "eta": 10.0, "gamma": 0.5}
    assert PSLD.defaults["super-resolution"] == PSLD.defaults["gaussian-blur"]
    assert "motion-blur" not in PSLD.defaults
    assert PSLD.hyperparameter_names() == {"c", "eta", "gamma"}


def test_registered_and_listed(capsys):
    record = load_registry().solvers["psld"]
    assert record.cls is PSLD and "flash_wrap_plugins.psld" in record.origin
    assert flash_wrap.get_solver("psld") is PSLD
    assert PSLD.summary and "Rout et al." in PSLD.reference and "NeurIPS 2023" in PSLD.reference
    cli = pytest.importorskip("flash_wrap.apps.cli", reason="the CLI is moving to flash_wrap.apps")
    assert cli.main(["solvers", "--details"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("psld ") for line in out.splitlines())
    assert "gaussian-blur: c=1, eta=2, gamma=0.2" in out
