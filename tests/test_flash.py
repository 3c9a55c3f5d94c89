"""Flash(solver): adaptive start, batched joining, NFE accounting, determinism, input errors."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import Flash, LatentDiffusion, StepState, hookimpl
from flash_wrap.operators import GaussianBlur, NonlinearMotionBlur
from flash_wrap.plugins import get_registry
from flash_wrap.solvers import LatentDPS
from flash_wrap.start import start_index

from .conftest import smooth_images


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


def _no_denoiser_calls(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the input was validated")

    monkeypatch.setattr(model.denoiser, "forward", refuse)


@pytest.fixture(scope="module")
def baseline_run():
    model = LatentDiffusion.tiny_random("vq", image_size=32, seed=0)
    op = GaussianBlur(sigma=torch.tensor([0.5, 0.8]))
    y = _measure(op, smooth_images(2))
    return LatentDPS(model).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)


def test_bare_solver_spends_the_full_trajectory(baseline_run):
    assert baseline_run.nfe.tolist() == [1000, 1000]
    assert baseline_run.start_step.tolist() == [1000, 1000]
    assert baseline_run.sigma_hat is None
    images = baseline_run.images
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_flash_end_to_end_on_mild_blur_spends_fewer_steps(baseline_run):
    model = LatentDiffusion.tiny_random("vq", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())  # untrained, real module
    op = GaussianBlur(sigma=torch.tensor([0.5, 0.8]))
    y = _measure(op, smooth_images(2))
    out = Flash(LatentDPS(model)).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)
    assert (out.nfe < baseline_run.nfe).all()
    assert out.nfe.tolist() == out.start_step.tolist()  # DDPM: steps s−1 … 0
    assert out.start_step.tolist() == start_index(out.sigma_hat, LatentDPS(model).sampler.snr).tolist()
    assert (out.sigma_hat >= 0).all() and out.sigma_hat.shape == (2,)
    assert torch.isfinite(out.images).all() and out.images.min() >= 0 and out.images.max() <= 1
    assert out.z_hat.shape == (2, *model.latent_shape)


def test_same_generator_is_bit_identical(tiny_model):
    op = GaussianBlur(sigma=torch.tensor([1.0, 2.0]))
    y = _measure(op, smooth_images(2, brightness=[0.2, 0.3]))
    flash = Flash(LatentDPS(tiny_model))
    a = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(3), progress=False)
    b = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(3), progress=False)
    c = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(4), progress=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.latents, b.latents)
    assert not torch.equal(a.latents, c.latents)


def _two_severities(seed=1):
    # brightness 0.05 → programmed v ≈ 0.05 → s ≈ 30; brightness 0.6 → s ≈ 195; 0.3 → s ≈ 130
    x = smooth_images(3, brightness=[0.05, 0.6, 0.3], seed=seed)
    op = GaussianBlur(sigma=torch.tensor([0.4, 2.8, 1.5]))
    return _measure(op, x), op


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_a_sample_is_bit_identical_whatever_its_batch_mates(tiny_model):
    y, op = _two_severities()
    flash = Flash(LatentDPS(tiny_model))
    with_b = flash.reconstruct(y[[0, 1]], op.select([0, 1]), generator=_gens(10, 11), progress=False)
    with_c = flash.reconstruct(y[[0, 2]], op.select([0, 2]), generator=_gens(10, 12), progress=False)
    assert with_b.start_step[1] - with_b.start_step[0] > 100 and with_b.start_step[1] != with_c.start_step[1]
    assert torch.equal(with_b.latents[0], with_c.latents[0])
    assert with_b.nfe[0] == with_c.nfe[0] == with_b.start_step[0]


def test_a_sample_alone_equals_the_sample_batched(tiny_model):
    # Alone vs batched changes the batch size, hence float rounding inside conv kernels (~1e-7).
    # Over hundreds of steps the solver's data-consistency dynamics amplify such differences
    # (any 1e-6 perturbation does the same), so the whole trajectory is compared with the
    # prior's own update (η = 0) and a single data-consistency step is compared separately.
    y, op = _two_severities()
    flash = Flash(LatentDPS(tiny_model, eta=0.0))
    together = flash.reconstruct(y[:2], op.select([0, 1]), generator=_gens(10, 11), progress=False)
    assert together.start_step[1] - together.start_step[0] > 100
    for i in range(2):
        alone = flash.reconstruct(y[i : i + 1], op.select([i]), generator=_gens(10 + i), progress=False)
        assert alone.nfe.tolist() == [together.nfe[i].item()]
        assert alone.start_step.tolist() == [together.start_step[i].item()]
        torch.testing.assert_close(alone.latents[0], together.latents[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.images[0], together.images[i], atol=1e-5, rtol=1e-5)


def test_a_sample_alone_equals_the_sample_batched_with_full_data_consistency_in_float64(tiny_model):
    # The same comparison with the default η over whole trajectories, in float64: rounding is then
    # ~1e-14, so any coupling between batch mates (shared norms, shared noise) would show.
    model = tiny_model.double()
    y, op = _two_severities()
    y = y.double()
    flash = Flash(LatentDPS(model))
    together = flash.reconstruct(y[:2], op.select([0, 1]), generator=_gens(10, 11), progress=False)
    assert together.start_step[1] - together.start_step[0] > 100
    for i in range(2):
        alone = flash.reconstruct(y[i : i + 1], op.select([i]), generator=_gens(10 + i), progress=False)
        assert alone.nfe.tolist() == [together.nfe[i].item()]
        torch.testing.assert_close(alone.latents[0], together.latents[i], atol=1e-9, rtol=1e-9)


def _state(model, solver, z, y, op, k, generator):
    index = torch.full((z.shape[0],), k)
    return StepState(
        z=z, index=index, t=solver.sampler.timesteps[index], t_prev=solver.sampler.timesteps[index - 1],
        active=torch.ones(z.shape[0], dtype=torch.bool), rows=torch.arange(z.shape[0]), y=y, operator=op,
        model=model, sampler=solver.sampler, params=solver.hyperparameters("gaussian-blur"), generator=generator,
    )


def test_one_data_consistency_step_is_per_sample(tiny_model):
    y, op = _two_severities()
    solver = LatentDPS(tiny_model)
    z = torch.randn(3, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(0))
    together = solver.step(_state(tiny_model, solver, z, y, op, 400, _gens(0, 1, 2)))
    for i in range(3):
        alone = solver.step(_state(tiny_model, solver, z[i : i + 1], y[i : i + 1], op.select([i]), 400, _gens(i)))
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)
    prior = LatentDPS(tiny_model, eta=0.0)
    prior_only = prior.step(_state(tiny_model, prior, z, y, op, 400, _gens(0, 1, 2)))
    assert (together - prior_only).abs().amax() > 1e-3  # the data-consistency term did act


class StepRecorder:
    """An ``on_step`` observer plugin: records which rows were active at which timestep."""

    def __init__(self):
        self.seen: list[tuple[int, list[int]]] = []

    @hookimpl
    def flash_wrap_on_step(self, state):
        assert bool((state.t == state.t[0]).all())
        self.seen.append((int(state.t[0]), state.rows.tolist()))


def test_samples_join_when_the_loop_reaches_their_start(tiny_model):
    solver = LatentDPS(tiny_model)
    op = GaussianBlur(sigma=torch.tensor([0.5, 2.5, 1.0]))
    y = _measure(op, smooth_images(3))
    recorder = StepRecorder()
    registry = get_registry()
    registry.manager.register(recorder, name="recorder")
    try:
        start = torch.tensor([3, 12, 7])
        z = torch.randn(3, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(0))
        _, _, nfe = solver.run(z, start, y, op, torch.Generator().manual_seed(0), solver.hyperparameters("gaussian-blur"),
                            progress=False)
    finally:
        registry.manager.unregister(recorder)
    assert nfe.tolist() == [3, 12, 7]
    assert [t for t, _ in recorder.seen] == list(range(11, -1, -1))
    active = {t: sorted(rows) for t, rows in recorder.seen}
    assert active[11] == [1] and active[7] == [1] and active[6] == [1, 2] and active[2] == [0, 1, 2]


def test_zero_start_decodes_the_corrected_estimate(tiny_model):
    op = GaussianBlur(sigma=0.3)
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()  # noiseless black image: programmed v = 0 → s = 0, no noise injected
    out = Flash(LatentDPS(tiny_model)).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.start_step.tolist() == [0] and out.nfe.tolist() == [0]
    torch.testing.assert_close(out.latents, out.z_hat)
    torch.testing.assert_close(out.images, tiny_model.decode(out.z_hat).clamp(0, 1))


def test_ddim_sampler_counts_its_own_steps(tiny_model):
    op = GaussianBlur(sigma=torch.tensor([0.5, 2.5]))
    y = _measure(op, smooth_images(2, brightness=[0.1, 0.5]))
    solver = LatentDPS(tiny_model, sampler="ddim", steps=50, ddim_eta=1.0)
    bare = solver.reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)
    assert bare.nfe.tolist() == [50, 50] and bare.sampler == "ddim" and bare.steps == 50
    out = Flash(solver).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.nfe.tolist() == out.start_step.tolist()
    assert out.start_step.tolist() == start_index(out.sigma_hat, solver.sampler.snr).tolist()
    assert all(0 < s < 50 for s in out.start_step.tolist())


def test_fixed_start_overrides_the_adaptive_one(tiny_model):
    op = GaussianBlur(sigma=torch.tensor([0.5, 2.5]))
    y = _measure(op, smooth_images(2, brightness=[0.1, 0.5]))
    out = Flash(LatentDPS(tiny_model), fixed_start=5).reconstruct(y, op, generator=torch.Generator().manual_seed(0),
                                                                  progress=False)
    assert out.start_step.tolist() == [5, 5] and out.nfe.tolist() == [5, 5]
    with pytest.raises(ValueError, match="fixed_start must be in"):
        Flash(LatentDPS(tiny_model), fixed_start=1000)


def test_correction_constant_comes_from_the_solver_defaults(tiny_model, monkeypatch):
    import flash_wrap.flash as flash_module

    used = []
    real = flash_module.correct_noise
    monkeypatch.setattr(flash_module, "correct_noise", lambda z, v, c, g: used.append(c) or real(z, v, c, g))
    op = GaussianBlur(sigma=0.5)
    y = _measure(op, smooth_images(1, brightness=[0.02]))
    Flash(LatentDPS(tiny_model)).reconstruct(y, op, progress=False)
    Flash(LatentDPS(tiny_model, c=0.5)).reconstruct(y, op, progress=False)
    Flash(LatentDPS(tiny_model), c=0.7).reconstruct(y, op, progress=False)
    assert used == [1.2, 0.5, 0.7]


@pytest.mark.parametrize(
    "make_y,match",
    [
        (lambda: torch.rand(2, 3, 16, 16), "must be 32x32 pixels"),
        (lambda: torch.rand(2, 1, 32, 32), "must have 3 channels"),
        (lambda: torch.rand(2, 3, 32), r"shape \(B, C, H, W\)"),
        (lambda: torch.rand(2, 3, 32, 32) * 255, "looks like 0-255"),
        (lambda: torch.full((2, 3, 32, 32), float("nan")), "NaN or Inf"),
        (lambda: torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "floating-point"),
        (lambda: torch.rand(3, 3, 32, 32), "holds 2 per-sample values but the batch has 3"),
    ],
)
def test_bad_measurements_are_rejected_before_any_work(tiny_model, monkeypatch, make_y, match):
    _no_denoiser_calls(tiny_model, monkeypatch)
    op = GaussianBlur(sigma=torch.tensor([0.5, 1.0]))
    for runner in (Flash(LatentDPS(tiny_model)), LatentDPS(tiny_model)):
        with pytest.raises((ValueError, TypeError), match=match):
            runner.reconstruct(make_y(), op)


def test_other_bad_arguments(tiny_model, monkeypatch):
    _no_denoiser_calls(tiny_model, monkeypatch)
    op = GaussianBlur(sigma=torch.tensor([0.5, 1.0]))
    y = torch.rand(2, 3, 32, 32)
    flash = Flash(LatentDPS(tiny_model))
    with pytest.raises(ValueError, match="generator list has 1 entries but the batch has 2"):
        flash.reconstruct(y, op, generator=[torch.Generator()])
    with pytest.raises(TypeError, match="must be a flash_wrap.operators.Operator"):
        flash.reconstruct(y, lambda x: x)
    with pytest.raises(ValueError, match="no severity encoder for task 'motion-blur'.*flash-wrap train-severity"):
        flash.reconstruct(y, NonlinearMotionBlur(length=5.0, turning=1.0, seed=0))
    with pytest.raises(TypeError, match=r"unknown hyper-parameter\(s\) \['step_size'\]"):
        LatentDPS(tiny_model, step_size=1.0)
    with pytest.raises(ValueError, match="use sampler='ddim'"):
        LatentDPS(tiny_model, steps=100)
    with pytest.raises(TypeError, match="Flash wraps a flash_wrap.Solver"):
        Flash(tiny_model)
    with pytest.raises(TypeError, match="needs a flash_wrap.LatentDiffusion"):
        LatentDPS("a model")


@pytest.mark.parametrize("kind,cross", [("vq", False), ("kl", True), ("tiny", False), ("taef2", False)])
@pytest.mark.parametrize("task", ["gaussian-blur", "random-inpainting", "motion-blur", "super-resolution"])
def test_every_autoencoder_and_task_runs_end_to_end(kind, cross, task):
    from flash_wrap.operators import get_task

    model = LatentDiffusion.tiny_random(kind, image_size=32, seed=1, cross_attention=cross)
    model.add_severity_encoder(task, model.make_severity_encoder())
    op, _ = get_task(task).sample(2, 32, torch.Generator().manual_seed(0))
    y = op.measure(smooth_images(2), generator=torch.Generator().manual_seed(1))
    out = Flash(LatentDPS(model, sampler="ddim", steps=10)).reconstruct(y, op, generator=_gens(0, 1), progress=False)
    assert out.images.shape == (2, 3, 32, 32) and torch.isfinite(out.images).all()
    assert out.nfe.tolist() == out.start_step.tolist() and (out.nfe <= 10).all()


def test_hyperparameters_resolve_solver_then_model_then_user(tiny_model, tmp_path):
    assert LatentDPS(tiny_model).hyperparameters("random-inpainting") == {"c": 1.2, "eta": 7.0}
    tiny_model.solver_defaults = {"latent-dps": {"random-inpainting": {"eta": 3.0}}}
    tiny_model.save_pretrained(tmp_path / "m")
    loaded = LatentDiffusion.from_pretrained(tmp_path / "m")
    assert loaded.solver_defaults == tiny_model.solver_defaults
    assert LatentDPS(loaded).hyperparameters("random-inpainting") == {"c": 1.2, "eta": 3.0}
    assert LatentDPS(loaded, eta=0.5).hyperparameters("random-inpainting") == {"c": 1.2, "eta": 0.5}
    assert LatentDPS(loaded).hyperparameters("gaussian-blur") == {"c": 1.2, "eta": 1.0}
