"""Flash(solver): the adaptive start applied, its corrected start latents, fixed starts, where
the noise-correction constant c comes from, its argument errors, and every autoencoder x task
end to end. The loop itself is tested in test_runner.py, the solvers in test_solver_*.py."""

from __future__ import annotations

import re

import pytest
import torch

import flash_wrap.flash as flash_module
from flash_wrap import Flash
from flash_wrap.operators import GaussianBlur, NonlinearMotionBlur, SuperResolution
from flash_wrap.registry import get_task
from flash_wrap.start import correct_noise, start_index
from flash_wrap.testing import Darken, ProgrammedSeverity, generators, smooth_images, tiny_model
from flash_wrap_plugins.latent_dps import LatentDPS


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


def _refuse_denoiser(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the input was validated")

    monkeypatch.setattr(model.denoiser, "forward", refuse)


def _two_severities():
    # programmed v = mean(y) ≈ 0.01 and 0.05 → DDPM-1000 starts ≈ 6 and 29 (ALGORITHMS.md §3)
    op = GaussianBlur(sigma=torch.tensor([0.4, 2.0]))
    return _measure(op, smooth_images(2, brightness=[0.01, 0.05], seed=1)), op


def test_each_sample_starts_at_its_adaptive_step(programmed_model):
    y, op = _two_severities()
    solver = LatentDPS(programmed_model)  # DDPM over all 1000 steps
    out = Flash(solver).reconstruct(y, op, generator=generators([0, 1]), progress=False)
    # the programmed encoder saw the measurement: v = mean(y)
    torch.testing.assert_close(out.sigma_hat, y.flatten(1).mean(dim=1))
    assert out.start_step.tolist() == start_index(out.sigma_hat, solver.sampler.snr).tolist()
    assert 0 < out.start_step[0] < out.start_step[1] < 100  # mild blur: far below the 1000 bare steps
    assert out.nfe.tolist() == out.start_step.tolist()
    assert out.z_hat.shape == (2, *programmed_model.latent_shape)
    assert (out.solver, out.sampler, out.steps, out.eta) == ("latent-dps", "ddpm", 1000, None)


def test_the_start_rule_uses_the_solver_own_grid(programmed_model):
    op = GaussianBlur(sigma=torch.tensor([0.5, 2.5]))
    y = _measure(op, smooth_images(2, brightness=[0.1, 0.5]))
    solver = LatentDPS(programmed_model, sampler="ddim", steps=50, ddim_eta=1.0)
    out = Flash(solver).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.start_step.tolist() == start_index(out.sigma_hat, solver.sampler.snr).tolist()
    assert out.nfe.tolist() == out.start_step.tolist() and all(0 < s < 50 for s in out.start_step.tolist())
    assert (out.sampler, out.steps, out.eta) == ("ddim", 50, 1.0)


def test_the_severity_encoder_sees_the_measurement_on_the_image_grid():
    # Super-resolution measures 8x8 images; the encoder gets them upsampled to 32x32.
    model = tiny_model("vq", image_size=32, seed=0)
    seen = []
    encoder = ProgrammedSeverity(model)
    encoder.register_forward_hook(lambda module, args, output: seen.append(args[0].shape))
    model.add_severity_encoder("super-resolution", encoder)
    op = SuperResolution(4)
    y = _measure(op, smooth_images(2, brightness=[0.1, 0.4]))
    out = Flash(LatentDPS(model, steps=10)).reconstruct(y, op, generator=generators([0, 1]), progress=False)
    assert y.shape[-2:] == (8, 8) and seen == [torch.Size([2, 3, 32, 32])]
    torch.testing.assert_close(out.sigma_hat, op.to_image(y).flatten(1).mean(dim=1))


def test_samples_start_from_the_corrected_estimate(programmed_model):
    # z_s = √(1 − c·v)·ẑ + √(c·v)·ε with ε the first draw of each sample's own generator: the
    # first input each sample gets in the loop is exactly that latent.
    y, op = _two_severities()
    solver = LatentDPS(programmed_model)
    first: dict[int, torch.Tensor] = {}

    def keep_first_input(state, output):
        for position, row in enumerate(state.rows.tolist()):
            first.setdefault(row, state.z[position].clone())

    out = Flash(solver).reconstruct(y, op, generator=generators([4, 5]), progress=False, callback=keep_first_input)
    c = solver.hyperparameters("gaussian-blur")["c"]
    expected = correct_noise(out.z_hat, out.sigma_hat, c, generators([4, 5]))
    for row in (0, 1):
        assert torch.equal(first[row], expected[row])


def test_zero_start_decodes_the_corrected_estimate(programmed_model):
    op = GaussianBlur(sigma=0.3)
    y = torch.zeros(1, 3, 32, 32)  # noiseless black image: programmed v = 0 → s = 0, no noise injected
    out = Flash(LatentDPS(programmed_model)).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.start_step.tolist() == [0] and out.nfe.tolist() == [0] and out.decoder_calls.tolist() == [0]
    torch.testing.assert_close(out.latents, out.z_hat)
    torch.testing.assert_close(out.images, programmed_model.decode(out.z_hat).clamp(0, 1))


@pytest.mark.parametrize("fixed", [5, [5, 2], torch.tensor([5, 2])])
def test_fixed_start_overrides_the_adaptive_one(programmed_model, fixed):
    y, op = _two_severities()
    out = Flash(LatentDPS(programmed_model), fixed_start=fixed).reconstruct(
        y, op, generator=generators([0, 1]), progress=False
    )
    expected = [5, 5] if isinstance(fixed, int) else [5, 2]
    assert out.start_step.tolist() == expected and out.nfe.tolist() == expected
    assert out.sigma_hat is not None  # same encoder and correction as the adaptive run


@pytest.mark.parametrize("fixed", [1000, -1, 2.5, [3, 1000]])
def test_fixed_start_outside_the_grid_is_refused(programmed_model, fixed):
    with pytest.raises(ValueError, match=r"fixed_start must be in \[0, 999\]"):
        Flash(LatentDPS(programmed_model), fixed_start=fixed)


def test_fixed_start_needs_one_index_per_sample(programmed_model, monkeypatch):
    y, op = _two_severities()
    _refuse_denoiser(programmed_model, monkeypatch)
    with pytest.raises(ValueError, match="fixed_start has 3 entries for a batch of 2"):
        Flash(LatentDPS(programmed_model), fixed_start=[1, 2, 3]).reconstruct(y, op, progress=False)


def test_correction_constant_resolves_solver_then_bundle_then_override_then_flash(programmed_model, monkeypatch):
    used = []
    real = flash_module.correct_noise
    monkeypatch.setattr(flash_module, "correct_noise", lambda z, v, c, g: used.append(c) or real(z, v, c, g))
    op = GaussianBlur(sigma=0.5)
    y = _measure(op, smooth_images(1, brightness=[0.02]))

    def run(flash):
        flash.reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)

    run(Flash(LatentDPS(programmed_model, steps=10)))  # the solver's default for the task
    programmed_model.tuned_values = {"solver_defaults": {"latent-dps": {"gaussian-blur": {"c": 0.9}}}}
    run(Flash(LatentDPS(programmed_model, steps=10)))  # the bundle's tuned value
    run(Flash(LatentDPS(programmed_model, steps=10, c=0.5)))  # the user's override of the solver
    run(Flash(LatentDPS(programmed_model, steps=10, c=0.5), c=0.7))  # Flash's own c wins
    assert used == [1.2, 0.9, 0.5, 0.7]


def test_argument_errors(programmed_model, monkeypatch):
    _refuse_denoiser(programmed_model, monkeypatch)
    op = GaussianBlur(sigma=torch.tensor([0.5, 1.0]))
    y = torch.rand(2, 3, 32, 32)
    flash = Flash(LatentDPS(programmed_model))
    with pytest.raises(TypeError, match="Flash wraps a flash_wrap.Solver instance, got LatentDiffusion"):
        Flash(programmed_model)
    with pytest.raises(TypeError, match=r"got the class LatentDPS; build one first: Flash\(LatentDPS\(model\)\)"):
        Flash(LatentDPS)  # the class, not an instance
    with pytest.raises(ValueError, match="generator list has 1 entries but the batch has 2"):
        flash.reconstruct(y, op, generator=[torch.Generator()])
    shared = torch.Generator().manual_seed(0)  # accepted before: both samples then drew from one stream
    with pytest.raises(ValueError, match=r"one torch.Generator object at positions 0 and 1: each sample needs its "
                                         "own generator"):
        flash.reconstruct(y, op, generator=[shared, shared])
    with pytest.raises(TypeError, match="must be a flash_wrap.operators.Operator"):
        flash.reconstruct(y, lambda x: x)
    with pytest.raises(ValueError, match="must be 32x32 pixels"):  # validated by the solver's prepare
        flash.reconstruct(torch.rand(2, 3, 16, 16), op)
    with pytest.raises(ValueError, match="no severity encoder for task 'motion-blur'.*flash-wrap train-severity"):
        flash.reconstruct(y, NonlinearMotionBlur(length=5.0, turning=1.0, seed=0))
    with pytest.raises(ValueError, match="Darken belongs to no task, so no severity encoder applies"):
        flash.reconstruct(y, Darken())


def test_name_and_repr(programmed_model):
    flash = Flash(LatentDPS(programmed_model, steps=10), c=0.7, fixed_start=3)
    assert flash.name == "flash(latent-dps)"
    assert repr(flash) == "Flash(LatentDPS(grid='ddim-10 (η=0)', overrides={}), c=0.7, fixed_start=3)"


@pytest.mark.parametrize("kind,cross", [("vq", False), ("kl", True), ("tiny", False), ("taef2", False)])
@pytest.mark.parametrize("task", ["gaussian-blur", "random-inpainting", "motion-blur", "super-resolution"])
def test_every_autoencoder_and_task_runs_end_to_end(kind, cross, task):
    model = tiny_model(kind, image_size=32, seed=1, cross_attention=cross)
    model.add_severity_encoder(task, model.make_severity_encoder())  # untrained, a real module
    op, _ = get_task(task).sample(2, 32, torch.Generator().manual_seed(0))
    y = op.measure(smooth_images(2), generator=torch.Generator().manual_seed(1))
    out = Flash(LatentDPS(model, steps=10)).reconstruct(y, op, generator=generators([0, 1]), progress=False)
    assert out.images.shape == (2, 3, 32, 32) and torch.isfinite(out.images).all()
    assert 0 <= float(out.images.min()) <= float(out.images.max()) <= 1
    assert out.nfe.tolist() == out.start_step.tolist() and (out.nfe < 10).all()
    assert out.sigma_hat.shape == (2,) and (out.sigma_hat >= 0).all()


@pytest.mark.parametrize("scale, metadata, origin", [
    (float("inf"), {"imported_from": {"source": "official", "file": "enc.ckpt", "sha256": "0"}},
     "imported from enc.ckpt (official)"),
    (float("nan"), {"adopted_from": "--severity-from b", "training": {"steps": 1}},
     "adopted from --severity-from b, trained by flash-wrap train-severity"),
])
def test_a_non_finite_severity_estimate_is_refused_naming_the_encoder(scale, metadata, origin, monkeypatch):
    """σ̂ = inf picked the last grid step without a word; now the encoder, its task and its origin are named."""
    model = tiny_model("vq", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", ProgrammedSeverity(model, scale=scale), metadata)
    y, op = _two_severities()
    _refuse_denoiser(model, monkeypatch)
    with pytest.raises(ValueError, match=rf"^the severity encoder for task 'gaussian-blur' \({re.escape(origin)}\) gave a "
                                         r"non-finite estimate for samples \[0, 1\] \(σ̂ (inf|nan), "):
        Flash(LatentDPS(model)).reconstruct(y, op, generator=generators([0, 1]), progress=False)


def test_a_measurement_of_minus_one_to_one_images_gets_a_warning(programmed_model):
    """[−1, 1] data passed silently: the check of y in every reconstruct now warns when its minimum
    is near −1 (far below what the noise explains), and clean [−1, 1] images get the hint in their error."""
    import warnings

    op = GaussianBlur(sigma=torch.tensor([0.4, 2.0]))
    x = smooth_images(2, brightness=[0.3, 0.6], seed=1)
    solver = LatentDPS(programmed_model, sampler="ddim", steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a [0, 1] image's noisy measurement: no warning
        Flash(solver).reconstruct(_measure(op, x), op, generator=generators([0, 1]), progress=False)
    signed = _measure(op, x) * 2 - 1
    assert float(signed.min()) < -0.5
    with pytest.warns(UserWarning, match=r"^y reaches -0\.\d+, far below what noise of σ_y = 0.05 gives a \[0, 1\] "
                                         r"image: it looks like a measurement of \[-1, 1\] images"):
        Flash(solver).reconstruct(signed, op, generator=generators([0, 1]), progress=False)
    with pytest.raises(ValueError, match=r"x values must lie in \[0, 1\], got .* \(looks like \[-1, 1\] data: "
                                         r"convert with \(x \+ 1\) / 2\)"):
        op.measure(x * 2 - 1)
