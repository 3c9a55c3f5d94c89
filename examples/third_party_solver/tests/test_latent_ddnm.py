"""The plugin's own tests, run against the *installed* package (``pip install -e ".[test]"`` here,
then ``python -m pytest``). They check the invariants flash-wrap's built-in solver tests check,
on a tiny random model built in the test (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap.solvers
from flash_wrap import Flash, LatentDiffusion, StepState
from flash_wrap.operators import GaussianBlur, NonlinearMotionBlur, RandomInpainting, SuperResolution
from flash_wrap.plugins import load_registry
from flash_wrap.severity import SeverityEncoder
from flash_wrap_ddnm import LatentDDNM, null_space_correction, pseudo_inverse


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    yield
    torch.set_num_threads(previous)


class BrightnessSeverity(SeverityEncoder):
    """Predicted variance ``v = scale · mean(y)``: a test picks each sample's start step through
    its brightness (DDIM-100: v ≈ 0.1 → start 5, v ≈ 0.2 → start 10)."""

    def __init__(self, model: LatentDiffusion, scale: float) -> None:
        base = model.make_severity_encoder()
        super().__init__(base.backbone, model.latent_channels)
        self.scale = scale

    def forward(self, y_image):
        z_hat, _ = super().forward(y_image)
        return z_hat, self.scale * y_image.flatten(1).mean(dim=1).clamp_min(0)


@pytest.fixture
def model() -> LatentDiffusion:
    model = LatentDiffusion.tiny_random("vq", image_size=32, seed=0)
    model.add_severity_encoder("random-inpainting", BrightnessSeverity(model, 1.5))
    model.add_severity_encoder("gaussian-blur", BrightnessSeverity(model, 0.5))
    return model


def images(brightness, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(len(brightness), 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    return (0.2 * x + torch.tensor(brightness).view(-1, 1, 1, 1) - 0.1).clamp(0, 1)


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def inpainting_problem():
    op = RandomInpainting([0.7, 0.8])  # per-sample parameters
    y = op.measure(images([0.2, 0.6], seed=1), generator=torch.Generator().manual_seed(0))
    return y, op


def state_at(solver, z, y, op, k, generator, task):
    index = torch.full((z.shape[0],), k)
    return StepState(
        z=z, index=index, t=solver.sampler.timesteps[index], t_prev=solver.sampler.timesteps[index - 1],
        active=torch.ones(z.shape[0], dtype=torch.bool), rows=torch.arange(z.shape[0]), y=y, operator=op,
        model=solver.model, sampler=solver.sampler, params=solver.hyperparameters(task), generator=generator,
    )


def test_comes_from_this_distribution_through_the_entry_point():
    record = load_registry(strict=True).solvers["latent-ddnm"]
    assert record.cls is LatentDDNM and record.plugin == "latent-ddnm"
    assert record.origin.startswith("flash-wrap-ddnm ") and "flash_wrap_ddnm.solver" in record.origin
    assert flash_wrap.solvers.get_solver("latent-ddnm") is LatentDDNM
    assert all("c" in values for values in LatentDDNM.defaults.values())


def test_inpainting_correction_is_the_exact_null_space_projection(model):
    y, op = inpainting_problem()
    solver = LatentDDNM(model)
    state = state_at(solver, torch.zeros(2, *model.latent_shape), y, op, 5, None, "random-inpainting")
    x0 = torch.rand(2, 3, 32, 32) * 1.4 - 0.2  # decoded estimates may leave [0, 1]
    mask = op.mask_for(32)
    x_tilde = null_space_correction(state, x0)
    torch.testing.assert_close(x_tilde, mask * y + (1 - mask) * x0)
    torch.testing.assert_close(op(x_tilde), op(y))  # consistent with y where A sees it


@pytest.mark.parametrize("op", [GaussianBlur(torch.tensor([0.5, 2.0])), SuperResolution(4)])
def test_regularised_pseudo_inverse_inverts_the_operator(op):
    u = op(images([0.3, 0.7]))
    restored = op(pseudo_inverse(op, u, delta=1e-5, iterations=30))
    assert ((restored - u).flatten(1).norm(dim=1) < 1e-2 * u.flatten(1).norm(dim=1)).all()


def test_flash_runs_mixed_start_steps_with_one_nfe_per_step(model):
    y, op = inpainting_problem()
    flash = Flash(LatentDDNM(model))
    a = flash.reconstruct(y, op, generator=gens(1, 2), progress=False)
    assert a.start_step[0] != a.start_step[1] and a.start_step.min() > 0
    assert a.nfe.tolist() == a.start_step.tolist()
    assert a.decoder_calls.tolist() == a.start_step.tolist()  # one decode per step
    assert torch.isfinite(a.images).all() and a.images.min() >= 0 and a.images.max() <= 1
    b = flash.reconstruct(y, op, generator=gens(1, 2), progress=False)
    c = flash.reconstruct(y, op, generator=gens(3, 4), progress=False)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)


def test_bare_solver_spends_its_full_step_count(model):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = op.measure(images([0.4, 0.5]), generator=torch.Generator().manual_seed(0))
    out = LatentDDNM(model, steps=8).reconstruct(y, op, generator=gens(0, 1), progress=False)
    assert out.nfe.tolist() == [8, 8] and out.decoder_calls.tolist() == [8, 8]
    assert out.sampler == "ddim" and out.steps == 8 and torch.isfinite(out.images).all()


def test_a_sample_alone_equals_the_sample_batched(model):
    model = model.double()  # float64: rounding ~1e-14, any coupling between rows would show
    y, op = inpainting_problem()
    y = y.double()
    flash = Flash(LatentDDNM(model))
    together = flash.reconstruct(y, op, generator=gens(10, 11), progress=False)
    assert together.start_step[0] != together.start_step[1]
    for i in range(2):
        alone = flash.reconstruct(y[i : i + 1], op.select([i]), generator=gens(10 + i), progress=False)
        assert alone.nfe.tolist() == [together.nfe[i].item()]
        torch.testing.assert_close(alone.latents[0], together.latents[i], atol=1e-6, rtol=1e-6)


def test_lam_zero_is_exactly_the_unconditional_step(model):
    y, op = inpainting_problem()
    z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    solver = LatentDDNM(model, lam=0.0)
    state = state_at(solver, z, y, op, 50, gens(0, 1), "random-inpainting")
    stepped = solver.step(state)
    assert state.denoiser_calls == 1 and state.decoder_calls == [0, 0]
    with torch.no_grad():
        index = torch.full((2,), 50)
        eps = model.predict_noise(z, solver.sampler.timesteps[index])
        prior = solver.sampler.step(z, eps, solver.sampler.tweedie(z, eps, index), index, gens(0, 1))
    assert torch.equal(stepped, prior)
    full = LatentDDNM(model)
    corrected = full.step(state_at(full, z, y, op, 50, gens(0, 1), "random-inpainting"))
    assert not corrected.requires_grad and (corrected - prior).abs().amax() > 1e-4  # the projection acts


def test_rejects_a_nonlinear_operator_before_any_work(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the operator was checked")

    monkeypatch.setattr(model.denoiser, "forward", refuse)
    op = NonlinearMotionBlur(length=5.0, turning=1.0, seed=0)
    with pytest.raises(ValueError, match="latent-ddnm .* not linear"):
        LatentDDNM(model).reconstruct(torch.rand(1, 3, 32, 32), op)
