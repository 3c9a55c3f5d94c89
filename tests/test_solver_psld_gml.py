"""The PSLD and GML-DPS solver plugins: data consistency, NFE, Flash wrapping, batching,
determinism, operator checks, the γ = 0 reduction to Latent-DPS, registration."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import Flash, StepState
from flash_wrap.cli import main
from flash_wrap.operators import GaussianBlur, NonlinearMotionBlur, RandomInpainting, SuperResolution
from flash_wrap.plugins import get_registry
from flash_wrap.solvers import get_solver
from flash_wrap_plugins.gml_dps import GMLDPS
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.psld import PSLD, psld_target

from .conftest import smooth_images

SOLVERS = [PSLD, GMLDPS]


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


def _state(solver, z, y, op, k, generator, task):
    index = torch.full((z.shape[0],), k)
    return StepState(
        z=z, index=index, t=solver.sampler.timesteps[index], t_prev=solver.sampler.timesteps[index - 1],
        active=torch.ones(z.shape[0], dtype=torch.bool), rows=torch.arange(z.shape[0]), y=y, operator=op,
        model=solver.model, sampler=solver.sampler, params=solver.hyperparameters(task), generator=generator,
    )


def _residual_at(solver, z, k, y, op):
    """‖A(D(ẑ0)) − y‖ per sample, with ẑ0 the Tweedie estimate of latents ``z`` at grid index ``k``."""
    with torch.no_grad():
        index = torch.full((z.shape[0],), k)
        eps = solver.model.predict_noise(z, solver.sampler.timesteps[index])
        z0 = solver.sampler.tweedie(z, eps, index)
        return (op(solver.model.decode(z0)) - y).flatten(1).norm(dim=1)


TASK_OPERATORS = [
    ("gaussian-blur", lambda: GaussianBlur([0.5, 1.5, 2.5])),
    ("random-inpainting", lambda: RandomInpainting([0.7, 0.75, 0.8])),
    ("super-resolution", lambda: SuperResolution(4)),
]


@pytest.mark.parametrize("cls", SOLVERS)
@pytest.mark.parametrize("task,make_op", TASK_OPERATORS)
def test_one_step_reduces_the_residual(tiny_model, cls, task, make_op):
    # Same latents, same generator: the only difference between the two next latents is the
    # data-consistency correction, so the residual of their Tweedie estimates (at the next
    # level) must drop; a sign error or a gradient w.r.t. the wrong tensor would raise it.
    op = make_op()
    y = _measure(op, smooth_images(3))
    solver = cls(tiny_model)
    params = solver.hyperparameters(task)
    z = torch.randn(3, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(1))
    k = 100

    def residual_after_step(eta, gamma):
        stepper = cls(tiny_model, eta=eta, gamma=gamma)
        stepped = stepper.step(_state(stepper, z, y, op, k, _gens(2, 3, 4), task))
        assert not stepped.requires_grad and stepped.grad_fn is None  # no graph kept
        return _residual_at(solver, stepped, k - 1, y, op)

    plain = residual_after_step(0.0, 0.0)
    guided = residual_after_step(params["eta"], params["gamma"])
    assert (guided < plain).all() and plain.mean() - guided.mean() > 1e-3 * plain.mean()
    # The check has teeth: the same step with the correction's sign flipped raises the residual.
    assert (residual_after_step(-params["eta"], -params["gamma"]) > plain).all()


def test_psld_target_keeps_the_measurement_and_the_unseen_part(tiny_model):
    # x̃ = Aᵀy + (I − AᵀA)x0: for inpainting, y on kept pixels and x0 on missing ones.
    op = RandomInpainting([0.5, 0.7])
    y = _measure(op, smooth_images(2))
    solver = PSLD(tiny_model)
    x0 = torch.rand(2, 3, 32, 32)
    target = psld_target(_state(solver, torch.zeros(2, *tiny_model.latent_shape), y, op, 5, None,
                                "random-inpainting"), x0)
    mask = op.mask_for(32)
    torch.testing.assert_close(target, mask * y + (1 - mask) * x0)


def test_encoding_accepts_out_of_range_images(tiny_model):
    x = smooth_images(1)
    torch.testing.assert_close(tiny_model.encode(x, estimate=True), tiny_model.encode(x))
    assert torch.isfinite(tiny_model.encode(1.5 * x - 0.2, estimate=True)).all()  # decoded estimates leave [0, 1]
    with pytest.raises(ValueError):
        tiny_model.encode(1.5 * x - 0.2)
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.encode(torch.full_like(x, float("nan")), estimate=True)


@pytest.mark.parametrize("cls", SOLVERS)
def test_bare_solver_spends_its_full_step_count(tiny_model, cls):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    out = cls(tiny_model, sampler="ddim", steps=10).reconstruct(y, op, generator=_gens(0, 1), progress=False)
    assert out.nfe.tolist() == [10, 10] and out.start_step.tolist() == [10, 10]
    assert out.decoder_calls.tolist() == [10, 10]  # one decode per step, shared by both terms
    assert out.solver == cls.name
    assert torch.isfinite(out.images).all() and out.images.min() >= 0 and out.images.max() <= 1


def _two_severities():
    # brightness → programmed variance v ≈ mean(y) ≈ 0.024, 0.049 → starts 14 and 29 (DDPM-1000).
    x = smooth_images(2, brightness=[0.01, 0.05], seed=1)
    op = GaussianBlur(sigma=torch.tensor([0.4, 2.0]))
    return _measure(op, x), op


@pytest.mark.parametrize("cls", SOLVERS)
def test_flash_starts_each_sample_at_its_adaptive_step_deterministically(tiny_model, cls):
    y, op = _two_severities()
    flash = Flash(cls(tiny_model))
    a = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(3), progress=False)
    assert a.start_step[1] - a.start_step[0] > 10 and a.start_step.min() > 0
    assert a.nfe.tolist() == a.start_step.tolist()  # DDPM: steps s−1 … 0, one UNet call each
    assert torch.isfinite(a.images).all()
    b = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(3), progress=False)
    c = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(4), progress=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images)
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize("cls", SOLVERS)
def test_a_sample_alone_equals_the_sample_batched(tiny_model, cls):
    # In float32, alone vs batched changes conv batch sizes, hence rounding (~5e-6 of a
    # correction of size ~10 after a single step, more after many), so the comparison runs in
    # float64, where rounding is ~1e-14 and any cross-sample coupling would still show.
    model = tiny_model.double()
    y, op = _two_severities()
    y = y.double()
    flash = Flash(cls(model))
    together = flash.reconstruct(y, op, generator=_gens(10, 11), progress=False)
    assert together.start_step[0] != together.start_step[1]
    for i in range(2):
        alone = flash.reconstruct(y[i : i + 1], op.select([i]), generator=_gens(10 + i), progress=False)
        assert alone.nfe.tolist() == [together.nfe[i].item()]
        torch.testing.assert_close(alone.latents[0], together.latents[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.images[0], together.images[i], atol=1e-5, rtol=1e-5)

    op = GaussianBlur(torch.tensor([0.4, 2.0, 1.2]))
    y = _measure(op, smooth_images(3, seed=2)).double()
    solver, prior = cls(model), cls(model, eta=0.0, gamma=0.0)
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batched = solver.step(_state(solver, z, y, op, 400, _gens(0, 1, 2), "gaussian-blur"))
    for i in range(3):
        alone = solver.step(_state(solver, z[i : i + 1], y[i : i + 1], op.select([i]), 400, _gens(i), "gaussian-blur"))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=1e-5)
    prior_only = prior.step(_state(prior, z, y, op, 400, _gens(0, 1, 2), "gaussian-blur"))
    assert (batched - prior_only).abs().amax() > 1e-3  # the data-consistency terms did act


def _refuse_denoiser(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the operator was checked")

    monkeypatch.setattr(model.denoiser, "forward", refuse)


def test_psld_rejects_the_nonlinear_motion_blur_before_any_work(tiny_model, monkeypatch):
    op = NonlinearMotionBlur(length=5.0, turning=1.0, seed=0)
    y = torch.rand(1, 3, 32, 32)
    _refuse_denoiser(tiny_model, monkeypatch)
    for runner in (PSLD(tiny_model), Flash(PSLD(tiny_model))):
        with pytest.raises(ValueError, match=r"PSLD needs the transpose Aᵀ.*NonlinearMotionBlur.*not linear"):
            runner.reconstruct(y, op)


def test_gml_dps_handles_the_nonlinear_motion_blur(tiny_model):
    op = NonlinearMotionBlur(length=[3.0, 6.0], turning=1.0, seed=[0, 1])
    y = _measure(op, smooth_images(2))
    out = GMLDPS(tiny_model, sampler="ddim", steps=3).reconstruct(y, op, generator=_gens(0, 1), progress=False)
    assert out.nfe.tolist() == [3, 3] and torch.isfinite(out.images).all()


@pytest.mark.parametrize("cls", SOLVERS)
def test_gamma_zero_is_exactly_latent_dps(tiny_model, cls):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    ours = cls(tiny_model, sampler="ddim", steps=8, eta=3.0, gamma=0.0)
    ldps = LatentDPS(tiny_model, sampler="ddim", steps=8, eta=3.0)
    a = ours.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    b = ldps.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images)
    c = cls(tiny_model, sampler="ddim", steps=8, eta=3.0).reconstruct(  # default γ > 0 does differ
        y, op, generator=torch.Generator().manual_seed(5), progress=False
    )
    assert not torch.equal(a.latents, c.latents)


def test_defaults_per_task():
    assert PSLD.defaults["gaussian-blur"] == {"c": 1.0, "eta": 2.0, "gamma": 0.2}
    assert PSLD.defaults["random-inpainting"] == {"c": 1.0, "eta": 10.0, "gamma": 0.5}
    assert "motion-blur" not in PSLD.defaults
    assert GMLDPS.defaults["gaussian-blur"] == GMLDPS.defaults["motion-blur"] == {"c": 1.2, "eta": 3.0, "gamma": 0.05}
    assert GMLDPS.defaults["random-inpainting"] == {"c": 1.0, "eta": 10.0, "gamma": 0.05}
    assert GMLDPS.defaults["super-resolution"] == GMLDPS.defaults["gaussian-blur"]
    assert PSLD.hyperparameter_names() == GMLDPS.hyperparameter_names() == {"c", "eta", "gamma"}


def test_both_are_registered_and_listed(capsys):
    registry = get_registry()
    for cls in SOLVERS:
        record = registry.solvers[cls.name]
        assert record.cls is cls and get_solver(cls.name) is cls
        assert f"flash_wrap_plugins.{cls.__module__.rsplit('.', 1)[-1]}" in record.origin
        assert cls.summary and "Rout et al." in cls.reference and "NeurIPS 2023" in cls.reference
    assert main(["solvers", "--details"]) == 0
    out = capsys.readouterr().out
    for name in ("psld", "gml-dps", "latent-dps"):
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "gamma=0.2" in out and "gamma=0.05" in out
