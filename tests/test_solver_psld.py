"""PSLD: the solver contract (linear operators only: the nonlinear motion blur is refused), plus
what is specific to it (one step reduces the residual, the gluing target formula, the gluing term
acts per sample, γ = 0 is exactly Latent-DPS, defaults, registration)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap import Flash
from flash_wrap.operators import GaussianBlur, NonlinearMotionBlur, RandomInpainting, SuperResolution
from flash_wrap.registry import load_registry
from flash_wrap.testing import SolverContract, generators, make_state, smooth_images, tweedie_residual
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.psld import PSLD, psld_target


class TestPSLDContract(SolverContract):
    solver_class = PSLD
    tasks = ("gaussian-blur", "random-inpainting", "super-resolution")
    refused_tasks = ("motion-blur",)
    steps = 10


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "task,make_op",
    [
        ("gaussian-blur", lambda: GaussianBlur([0.5, 1.5, 2.5])),
        ("random-inpainting", lambda: RandomInpainting([0.7, 0.75, 0.8])),
        ("super-resolution", lambda: SuperResolution(4)),
    ],
)
def test_one_step_reduces_the_residual(programmed_model, task, make_op):
    # Same latents, same generators: the next latents differ only by the guidance, so the
    # residual of their Tweedie estimates must drop, and rise with the sign flipped.
    op = make_op()
    y = _measure(op, smooth_images(3))
    params = PSLD(programmed_model).hyperparameters(task)
    z = torch.randn(3, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(1))
    k = 100

    def residual_after_step(eta, gamma):
        solver = PSLD(programmed_model, eta=eta, gamma=gamma)
        stepped = solver.step(make_state(solver, z, y, op, k, generators([2, 3, 4]), task))
        return tweedie_residual(solver, stepped, k - 1, y, op)

    plain = residual_after_step(0.0, 0.0)
    guided = residual_after_step(params["eta"], params["gamma"])
    assert (guided < plain).all() and plain.mean() - guided.mean() > 1e-3 * plain.mean()
    assert (residual_after_step(-params["eta"], -params["gamma"]) > plain).all()


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


def test_the_gluing_term_acts_per_sample(programmed_model):
    model = programmed_model.double()
    op = GaussianBlur(torch.tensor([0.4, 2.0, 1.2]))
    y = _measure(op, smooth_images(3, seed=2))
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    glued, prior = PSLD(model, eta=0.0, gamma=0.5), PSLD(model, eta=0.0, gamma=0.0)
    batched = glued.step(make_state(glued, z, y, op, 400, generators([0, 1, 2])))
    for i in range(3):
        alone = glued.step(make_state(glued, z[i : i + 1], y[i : i + 1], op.select([i]), 400, generators([i])))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-10, rtol=1e-10)
    prior_only = prior.step(make_state(prior, z, y, op, 400, generators([0, 1, 2])))
    assert (batched - prior_only).abs().amax() > 1e-4


def test_rejects_the_nonlinear_motion_blur_saying_why(programmed_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the operator was checked")

    monkeypatch.setattr(programmed_model.denoiser, "forward", refuse)
    op = NonlinearMotionBlur(length=5.0, turning=1.0, seed=0)
    for runner in (PSLD(programmed_model), Flash(PSLD(programmed_model))):
        with pytest.raises(ValueError, match=r"PSLD needs the transpose Aᵀ.*NonlinearMotionBlur.*not linear"):
            runner.reconstruct(torch.rand(1, 3, 32, 32), op)


def test_gamma_zero_is_exactly_latent_dps(programmed_model):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    ours = PSLD(programmed_model, sampler="ddim", steps=8, eta=3.0, gamma=0.0)
    ldps = LatentDPS(programmed_model, sampler="ddim", steps=8, eta=3.0)
    a = ours.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    b = ldps.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images)
    c = PSLD(programmed_model, sampler="ddim", steps=8, eta=3.0).reconstruct(  # the default γ > 0 differs
        y, op, generator=torch.Generator().manual_seed(5), progress=False
    )
    assert not torch.equal(a.latents, c.latents)


def test_decodes_once_per_step_for_both_terms(programmed_model):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    out = PSLD(programmed_model, sampler="ddim", steps=10).reconstruct(y, op, generators([0, 1]), progress=False)
    assert out.nfe.tolist() == [10, 10] and out.decoder_calls.tolist() == [10, 10]


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
