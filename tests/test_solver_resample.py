"""ReSample (Flash re-implementation): the solver contract, plus what is specific to it (the
hard-DC schedule, the pixel and latent solves, stochastic resampling, decoder-call costs,
per-sample convergence, batch independence of whole trajectories with many Adam iterations)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap import Flash
from flash_wrap.operators import GaussianBlur
from flash_wrap.runner import run_reverse
from flash_wrap.start import start_index
from flash_wrap.testing import SolverContract, generators, make_state, smooth_images, tiny_model
from flash_wrap_plugins.resample import ReSample


class TestReSampleContract(SolverContract):
    solver_class = ReSample
    tasks = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")
    steps = 10  # g_k = 100k + 1
    # every_n = 3: hard DC at k = 0 (latent), 3 and 6 (pixel), 9 (skipped), so every stage runs;
    # 3 Adam iterations keep the solves cheap.
    overrides = {"iterations": 3, "every_n": 3}


def _problem(noise_std=0.05):
    """Three blurred images (measured with σ_y = 0.05) and the operator the solver is given,
    whose ``noise_std`` sets the discrepancy threshold (2σ_y)²: 0 → never reached."""
    x = smooth_images(3, brightness=[0.05, 0.6, 0.3], seed=1)
    sigma = torch.tensor([0.4, 2.8, 1.5])
    y = GaussianBlur(sigma=sigma).measure(x, generator=torch.Generator().manual_seed(0))
    return y, GaussianBlur(sigma=sigma, noise_std=noise_std)


def _residual(model, op, y, z0):
    """Per-sample mean squared residual ``(A₋₁(D(z0)) − y₋₁)²``."""
    with torch.no_grad():
        return (2 * (op(model.decode(z0)) - y)).flatten(1).pow(2).mean(dim=1)


def _decodes(solver, steps_below, iterations):
    """Decoder calls of a trajectory over grid indices ``< steps_below`` when no solve ever
    reaches the threshold: 1 per pixel solve, ``iterations`` per latent solve."""
    stages = [stage for k, _, stage in solver.consistency_schedule() if k < steps_below]
    return stages.count("pixel") + iterations * stages.count("latent")


def test_registered_with_the_paper_settings(programmed_model):
    assert flash_wrap.get_solver("resample") is ReSample
    assert ReSample.summary and "Hard Data Consistency" in ReSample.reference
    solver = ReSample(programmed_model)
    assert (solver.grid.kind, solver.grid.steps, solver.grid.eta) == ("ddim", 500, 1.0)
    sampler = solver.sampler
    assert (sampler.kind, sampler.num_steps, sampler.eta) == ("ddim", 500, 1.0)
    common = {"every_n": 10, "iterations": 100, "lr": 0.1, "lam": 1.0}
    assert solver.hyperparameters("gaussian-blur") == {"c": 1.2, "gamma": 400.0, **common}
    assert solver.hyperparameters("motion-blur")["gamma"] == 200.0
    assert solver.hyperparameters("random-inpainting")["gamma"] == 200.0
    assert solver.hyperparameters("super-resolution") == {"c": 1.2, "gamma": 400.0, **common}


def test_counts_must_be_whole_numbers(programmed_model):
    """``every_n`` and ``iterations`` count: 2.5 would be truncated and 0 divides by zero mid-run."""
    for name, bad, least in (("every_n", 0, 1), ("every_n", 2.5, 1), ("iterations", 0.5, 0), ("iterations", -1, 0)):
        with pytest.raises(ValueError, match=rf"ReSample: {name} counts steps or iterations and must be a whole number >= {least}"):
            ReSample(programmed_model, **{name: bad})
    with pytest.raises(ValueError, match=r"ReSample: gamma must be >= 0, got -1.0"):
        ReSample(programmed_model, gamma=-1.0)


def test_consistency_schedule_ddim500():
    model = tiny_model("vq", image_size=32, seed=0)
    schedule = ReSample(model).consistency_schedule()
    assert [k for k, _, _ in schedule] == list(range(0, 500, 10))
    assert all(t == 2 * k + 1 for k, t, _ in schedule)  # g_k = 2k + 1: g_0 = 1, g_10 = 21, …
    by_stage = {s: [k for k, _, stage in schedule if stage == s] for s in ("latent", "pixel", "skip")}
    assert by_stage["latent"] == list(range(0, 150, 10))  # t = 1 … 281 ≤ 300
    assert by_stage["pixel"] == list(range(150, 380, 10))  # t = 301 … 741
    assert by_stage["skip"] == list(range(380, 500, 10))  # t = 761 … 981 > 750
    # every_n as an override; the final step (k = 0) is always included
    assert [k for k, _, _ in ReSample(model, every_n=7).consistency_schedule()][:3] == [0, 7, 14]


def test_consistency_schedule_short_grid(programmed_model):
    solver = ReSample(programmed_model, steps=25)  # g_k = 40k + 1
    assert solver.consistency_schedule() == [(0, 1, "latent"), (10, 401, "pixel"), (20, 801, "skip")]
    assert ReSample.stage(0, 1, every_n=10) == "latent" and ReSample.stage(3, 1, every_n=10) is None


def test_hard_consistency_reduces_the_residual(programmed_model):
    y, op = _problem()
    solver = ReSample(programmed_model, steps=25, iterations=20)
    z = torch.randn(3, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(0))
    for k in (0, 10):
        state = make_state(solver, z, y, op, k)
        with torch.no_grad():
            z0 = solver.sampler.tweedie(z, programmed_model.predict_noise(z, state.t), state.index)
        before = _residual(programmed_model, op, y, z0)
        if k == 0:  # latent solve: A₋₁(D(w)) − y
            after = _residual(programmed_model, op, y, solver.latent_solve(state, z0, [0, 1, 2]))
            assert state.decoder_calls == [20, 20, 20]
            # A random tiny decoder reaches little of y, so the gain is small but strict.
            assert (after < before).all() and after.mean() < before.mean(), (before, after)
        else:  # pixel solve: A₋₁(u) − y, before re-encoding (E is not D⁻¹ for random weights)
            u = solver.pixel_minimize(state, programmed_model.decode(z0), [0, 1, 2])
            after = (2 * (op(u) - y)).flatten(1).pow(2).mean(dim=1)
            assert after.mean() < 0.5 * before.mean(), (before, after)


def test_a_dc_step_departs_from_the_prior_step_and_a_plain_step_is_the_prior(programmed_model):
    y, op = _problem()
    solver = ReSample(programmed_model, steps=25, iterations=20)
    prior = ReSample(programmed_model, steps=25, iterations=0)  # ẑ0^c = E(D(ẑ0)), then resampling
    z = torch.randn(3, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(0))
    out = solver.step(make_state(solver, z, y, op, 10, generators([0, 1, 2])))
    ref = prior.step(make_state(prior, z, y, op, 10, generators([0, 1, 2])))
    assert not out.requires_grad and out.grad_fn is None
    assert (out - ref).abs().amax() > 1e-3
    plain = solver.step(make_state(solver, z, y, op, 9, generators([0, 1, 2])))  # not a DC index
    with torch.no_grad():
        index = torch.full((3,), 9)
        eps = programmed_model.predict_noise(z, torch.full((3,), 361))
        z0 = solver.sampler.tweedie(z, eps, index)
        expected = solver.sampler.step(z, eps, z0, index, generators([0, 1, 2]))
    torch.testing.assert_close(plain, expected)


def test_bare_solver_counts_decoder_calls(programmed_model):
    y, op = _problem(noise_std=0.0)  # threshold 0: every latent solve runs all its iterations
    solver = ReSample(programmed_model, steps=25, iterations=4)
    out = solver.reconstruct(y, op, generator=generators([0, 1, 2]), progress=False)
    assert out.nfe.tolist() == [25, 25, 25] and out.start_step.tolist() == [25, 25, 25]
    assert out.decoder_calls.tolist() == [_decodes(solver, 25, 4)] * 3 == [1 + 4] * 3
    assert out.decoder_calls.dtype == torch.long
    # A huge σ_y: every solve stops at its first check (no update), so each solve decodes once.
    _, lax = _problem(noise_std=1.0)
    out = solver.reconstruct(y, lax, generator=generators([0, 1, 2]), progress=False)
    assert out.decoder_calls.tolist() == [2, 2, 2]


def test_converged_samples_stop_while_others_continue():
    # Elementwise residuals (batch-invariant arithmetic) so batched and alone must agree exactly.
    x0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    target[1] = x0[1] + 0.01  # row 1 already fits: mean r² = 1e-4 ≤ tolerance
    scale = torch.tensor([1.0, 1.0, 3.0]).view(3, 1, 1, 1)

    def residual(x, rows):
        return scale[rows] * x - target[rows]

    params = {"iterations": 30, "lr": 0.1, "lam": 1.0}
    x, updates = ReSample.minimize(x0, residual, params, tolerance=1e-3)
    assert updates[1] == 0 and torch.equal(x[1], x0[1])
    assert updates[0] > 0 and updates[2] > 0
    for i in (0, 2):
        alone, n = ReSample.minimize(x0[i : i + 1], lambda x, rows, i=i: residual(x, [i]), params, tolerance=1e-3)
        assert n == [updates[i]] and torch.equal(alone[0], x[i])


def test_flash_decoder_calls_follow_the_schedule_below_each_start(programmed_model):
    y, op = _problem(noise_std=0.0)
    solver = ReSample(programmed_model, steps=50, iterations=3)
    out = Flash(solver).reconstruct(y, op, generator=generators([0, 1, 2]), progress=False)
    assert out.start_step.tolist() == start_index(out.sigma_hat, solver.sampler.snr).tolist()
    assert out.nfe.tolist() == out.start_step.tolist() and (out.nfe < 50).all()
    assert len(set(out.start_step.tolist())) > 1
    assert out.decoder_calls.tolist() == [_decodes(solver, s, 3) for s in out.start_step.tolist()]


def _run(solver, z, start, y, op, seeds):
    params = solver.hyperparameters("gaussian-blur")
    return run_reverse(solver, z, start, y, op, generators(seeds), params, progress=False)


def test_a_sample_alone_equals_the_sample_batched_in_float32(programmed_model):
    # Samples join at different grid indices (25: all stages incl. skip; 12: pixel + latent;
    # 5: latent only). With one Adam update per solve (≈ lr·sign(∇), insensitive to rounding)
    # the whole trajectory agrees to 1e-5, convergence checks and decoder counts exactly. With
    # many updates Adam's normalised steps amplify float32 rounding (any 1e-7 perturbation of ẑ0
    # moves a 100-iteration latent solve by ~1e-5, batched or not), so that case runs in float64
    # below, and a single full step bounds the amplified float32 difference here.
    y, op = _problem()
    solver = ReSample(programmed_model, steps=25, iterations=1)
    z = torch.randn(3, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(0))
    start = torch.tensor([5, 25, 12])
    latents, nfe, decodes = _run(solver, z, start, y, op, [10, 11, 12])
    assert nfe.tolist() == [5, 25, 12] and decodes.tolist() == [1, 2, 2]
    for i in range(3):
        alone = _run(solver, z[i : i + 1], start[i : i + 1], y[i : i + 1], op.select([i]), [10 + i])
        assert alone[1].tolist() == [nfe[i]] and alone[2].tolist() == [decodes[i]]
        torch.testing.assert_close(alone[0][0], latents[i], atol=1e-5, rtol=1e-5)

    full = ReSample(programmed_model, steps=25)  # 100 iterations
    batched = full.step(make_state(full, z, y, op, 0, generators([0, 1, 2])))
    for i in range(3):
        alone = full.step(make_state(full, z[i : i + 1], y[i : i + 1], op.select([i]), 0, generators([i])))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-4, rtol=1e-4)


def test_a_sample_alone_equals_the_sample_batched_with_full_iterations_in_float64(programmed_model):
    # The full 100-iteration solves over whole trajectories, in float64: rounding is ~1e-16, so
    # Adam's amplification stays far below the tolerance unless batch mates really interact.
    model = programmed_model.double()
    y, op = _problem()
    solver = ReSample(model, steps=25)
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = torch.tensor([5, 25, 12])
    latents, nfe, decodes = _run(solver, z, start, y.double(), op, [10, 11, 12])
    assert decodes.max() > 25  # the optimisation really iterated
    for i in range(3):
        alone = _run(solver, z[i : i + 1], start[i : i + 1], y[i : i + 1].double(), op.select([i]), [10 + i])
        assert alone[1].tolist() == [nfe[i]] and alone[2].tolist() == [decodes[i]]
        torch.testing.assert_close(alone[0][0], latents[i], atol=1e-9, rtol=1e-9)
