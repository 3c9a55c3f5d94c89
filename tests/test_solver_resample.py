"""ReSample (Flash re-implementation): schedule, hard data consistency, costs, Flash wrapping,
per-sample independence, determinism; decoder-call counting (also for Latent-DPS)."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import Flash, LatentDiffusion, StepState
from flash_wrap.operators import GaussianBlur
from flash_wrap.solvers import LatentDPS, ReSample, get_solver
from flash_wrap.start import start_index

from .conftest import smooth_images


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _problem(noise_std=0.05):
    """Three blurred images (measured with σ_y = 0.05) and the operator the solver is given,
    whose ``noise_std`` sets the discrepancy threshold (2σ_y)²: 0 → never reached."""
    x = smooth_images(3, brightness=[0.05, 0.6, 0.3], seed=1)
    sigma = torch.tensor([0.4, 2.8, 1.5])
    y = GaussianBlur(sigma=sigma).measure(x, generator=torch.Generator().manual_seed(0))
    return y, GaussianBlur(sigma=sigma, noise_std=noise_std)


def _state(model, solver, z, y, op, k, generator=None):
    index = torch.full((z.shape[0],), k)
    return StepState(
        z=z, index=index, t=solver.sampler.timesteps[index], t_prev=solver.sampler.timesteps[index - 1],
        active=torch.ones(z.shape[0], dtype=torch.bool), rows=torch.arange(z.shape[0]), y=y, operator=op,
        model=model, sampler=solver.sampler, params=solver.hyperparameters("gaussian-blur"), generator=generator,
    )


def _residual(model, op, y, z0):
    """Per-sample mean squared residual ``(A₋₁(D(z0)) − y₋₁)²``."""
    with torch.no_grad():
        return (2 * (op(model.decode(z0)) - y)).flatten(1).pow(2).mean(dim=1)


def _decodes(solver, steps_below, iterations):
    """Decoder calls of a trajectory over grid indices ``< steps_below`` when no solve ever
    reaches the threshold: 1 per pixel solve, ``iterations`` per latent solve."""
    stages = [stage for k, _, stage in solver.consistency_schedule() if k < steps_below]
    return stages.count("pixel") + iterations * stages.count("latent")


def test_registered_with_the_paper_settings(tiny_model):
    assert get_solver("resample") is ReSample
    assert ReSample.summary and "Hard Data Consistency" in ReSample.reference
    solver = ReSample(tiny_model)
    sampler = solver.sampler
    assert (sampler.kind, sampler.num_steps, sampler.eta) == ("ddim", 500, 1.0)
    common = {"every_n": 10, "iterations": 100, "lr": 0.1, "lam": 1.0}
    assert solver.hyperparameters("gaussian-blur") == {"c": 1.2, "gamma": 400.0, **common}
    assert solver.hyperparameters("motion-blur")["gamma"] == 200.0
    assert solver.hyperparameters("random-inpainting")["gamma"] == 200.0
    assert solver.hyperparameters("super-resolution") == {"c": 1.2, "gamma": 400.0, **common}


def test_consistency_schedule_ddim500():
    model = LatentDiffusion.tiny_random("vq", image_size=32, seed=0)
    schedule = ReSample(model).consistency_schedule()
    assert [k for k, _, _ in schedule] == list(range(0, 500, 10))
    assert all(t == 2 * k + 1 for k, t, _ in schedule)  # g_k = 2k + 1: g_0 = 1, g_10 = 21, …
    by_stage = {s: [k for k, _, stage in schedule if stage == s] for s in ("latent", "pixel", "skip")}
    assert by_stage["latent"] == list(range(0, 150, 10))  # t = 1 … 281 ≤ 300
    assert by_stage["pixel"] == list(range(150, 380, 10))  # t = 301 … 741
    assert by_stage["skip"] == list(range(380, 500, 10))  # t = 761 … 981 > 750
    # every_n as an override; the final step (k = 0) is always included
    assert [k for k, _, _ in ReSample(model, every_n=7).consistency_schedule()][:3] == [0, 7, 14]


def test_consistency_schedule_short_grid(tiny_model):
    solver = ReSample(tiny_model, steps=25)  # g_k = 40k + 1
    assert solver.consistency_schedule() == [(0, 1, "latent"), (10, 401, "pixel"), (20, 801, "skip")]
    assert ReSample.stage(0, 1, every_n=10) == "latent" and ReSample.stage(3, 1, every_n=10) is None


def test_hard_consistency_reduces_the_residual(tiny_model):
    y, op = _problem()
    solver = ReSample(tiny_model, steps=25, iterations=20)
    z = torch.randn(3, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(0))
    for k in (0, 10):
        state = _state(tiny_model, solver, z, y, op, k)
        with torch.no_grad():
            z0 = solver.sampler.tweedie(z, tiny_model.predict_noise(z, state.t), state.index)
        before = _residual(tiny_model, op, y, z0)
        if k == 0:  # latent solve: A₋₁(D(w)) − y
            after = _residual(tiny_model, op, y, solver.latent_solve(state, z0, [0, 1, 2]))
            assert state.decoder_calls == [20, 20, 20]
            # A random tiny decoder reaches little of y, so the gain is small but strict.
            assert (after < before).all() and after.mean() < before.mean(), (before, after)
        else:  # pixel solve: A₋₁(u) − y, before re-encoding (E is not D⁻¹ for random weights)
            u = solver.pixel_minimize(state, tiny_model.decode(z0), [0, 1, 2])
            after = (2 * (op(u) - y)).flatten(1).pow(2).mean(dim=1)
            assert after.mean() < 0.5 * before.mean(), (before, after)


def test_a_dc_step_departs_from_the_prior_step_and_leaks_no_graph(tiny_model):
    y, op = _problem()
    solver, prior = ReSample(tiny_model, steps=25, iterations=20), ReSample(tiny_model, steps=25, iterations=0)
    z = torch.randn(3, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(0))
    out = solver.step(_state(tiny_model, solver, z, y, op, 10, _gens(0, 1, 2)))
    ref = prior.step(_state(tiny_model, prior, z, y, op, 10, _gens(0, 1, 2)))  # ẑ0^c = E(D(ẑ0))
    assert not out.requires_grad and out.grad_fn is None
    assert (out - ref).abs().amax() > 1e-3
    plain = solver.step(_state(tiny_model, solver, z, y, op, 9, _gens(0, 1, 2)))  # not a DC index
    direct = ReSample(tiny_model, steps=25)
    with torch.no_grad():
        eps = tiny_model.predict_noise(z, torch.full((3,), 361))
        z0 = direct.sampler.tweedie(z, eps, torch.full((3,), 9))
        expected = direct.sampler.step(z, eps, z0, torch.full((3,), 9), _gens(0, 1, 2))
    torch.testing.assert_close(plain, expected)


def test_bare_solver_spends_every_step_and_counts_decoder_calls(tiny_model):
    y, op = _problem(noise_std=0.0)  # threshold 0: every latent solve runs all its iterations
    solver = ReSample(tiny_model, steps=25, iterations=4)
    out = solver.reconstruct(y, op, generator=_gens(0, 1, 2), progress=False)
    assert out.nfe.tolist() == [25, 25, 25] and out.start_step.tolist() == [25, 25, 25]
    assert out.decoder_calls.tolist() == [_decodes(solver, 25, 4)] * 3 == [1 + 4] * 3
    assert out.decoder_calls.dtype == torch.long
    assert torch.isfinite(out.images).all() and out.images.min() >= 0 and out.images.max() <= 1

    # A huge σ_y: every solve stops at its first check (no update), so each solve decodes once.
    _, lax = _problem(noise_std=1.0)
    out = solver.reconstruct(y, lax, generator=_gens(0, 1, 2), progress=False)
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
        alone, n = ReSample.minimize(x0[i : i + 1], lambda x, rows: residual(x, [i]), params, tolerance=1e-3)
        assert n == [updates[i]] and torch.equal(alone[0], x[i])


def test_flash_starts_at_the_adaptive_step(tiny_model):
    y, op = _problem(noise_std=0.0)
    solver = ReSample(tiny_model, steps=50, iterations=3)
    out = Flash(solver).reconstruct(y, op, generator=_gens(0, 1, 2), progress=False)
    assert out.start_step.tolist() == start_index(out.sigma_hat, solver.sampler.snr).tolist()
    assert out.nfe.tolist() == out.start_step.tolist() and (out.nfe < 50).all()
    assert out.decoder_calls.tolist() == [_decodes(solver, s, 3) for s in out.start_step.tolist()]
    assert torch.isfinite(out.images).all()


def test_a_sample_alone_equals_the_sample_batched(tiny_model):
    # Samples join at different grid indices (25: all stages incl. skip; 12: pixel + latent;
    # 5: latent only). With one Adam update per solve (≈ lr·sign(∇), insensitive to rounding)
    # the whole trajectory agrees to 1e-5, convergence checks and decoder counts exactly.
    # With many updates, Adam's normalised steps amplify float rounding: ANY 1e-7 perturbation of
    # ẑ0 (e.g. a conv kernel's batch-size-dependent summation order) moves a 100-iteration latent
    # solve by ~1e-5–5e-5, batched or not (measured on the tiny VQ and KL models alike); the
    # per-sample logic itself is exact (test_converged_samples_stop_while_others_continue), and
    # the single step below bounds the amplified difference.
    y, op = _problem()
    solver = ReSample(tiny_model, steps=25, iterations=1)
    z = torch.randn(3, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(0))
    start = torch.tensor([5, 25, 12])
    params = solver.hyperparameters("gaussian-blur")
    together = solver.run_counted(z, start, y, op, _gens(10, 11, 12), params, progress=False)
    assert together[2].tolist() == [5, 25, 12] and together[3].tolist() == [1, 2, 2]
    for i in range(3):
        alone = solver.run_counted(z[i : i + 1], start[i : i + 1], y[i : i + 1], op.select([i]), _gens(10 + i),
                                   params, progress=False)
        assert alone[2].tolist() == [together[2][i]] and alone[3].tolist() == [together[3][i]]
        torch.testing.assert_close(alone[0][0], together[0][i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone[1][0], together[1][i], atol=1e-5, rtol=1e-5)

    full = ReSample(tiny_model, steps=25)  # 100 iterations
    batched = full.step(_state(tiny_model, full, z, y, op, 0, _gens(0, 1, 2)))
    for i in range(3):
        alone = full.step(_state(tiny_model, full, z[i : i + 1], y[i : i + 1], op.select([i]), 0, _gens(i)))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-4, rtol=1e-4)


def test_a_sample_alone_equals_the_sample_batched_with_full_iterations_in_float64(tiny_model):
    # The full 100-iteration solves over whole trajectories, in float64: rounding is ~1e-16, so
    # Adam's amplification stays far below 1e-5 unless batch mates really interact.
    model = tiny_model.double()
    y, op = _problem()
    y = y.double()
    solver = ReSample(model, steps=25)
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = torch.tensor([5, 25, 12])
    params = solver.hyperparameters("gaussian-blur")
    together = solver.run_counted(z, start, y, op, _gens(10, 11, 12), params, progress=False)
    assert together[3].max() > 25  # the optimisation really iterated
    for i in range(3):
        alone = solver.run_counted(z[i : i + 1], start[i : i + 1], y[i : i + 1], op.select([i]), _gens(10 + i),
                                   params, progress=False)
        assert alone[2].tolist() == [together[2][i]] and alone[3].tolist() == [together[3][i]]
        torch.testing.assert_close(alone[0][0], together[0][i], atol=1e-5, rtol=1e-5)


def test_same_generator_is_bit_identical(tiny_model):
    y, op = _problem()
    flash = Flash(ReSample(tiny_model, steps=50, iterations=5))
    a = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(3), progress=False)
    b = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(3), progress=False)
    c = flash.reconstruct(y, op, generator=torch.Generator().manual_seed(4), progress=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.decoder_calls, b.decoder_calls)
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize("wrapped", [False, True])
def test_latent_dps_decodes_once_per_step(tiny_model, wrapped):
    y, op = _problem()
    solver = LatentDPS(tiny_model, sampler="ddim", steps=20)
    runner = Flash(solver) if wrapped else solver
    out = runner.reconstruct(y, op, generator=_gens(0, 1, 2), progress=False)
    assert out.decoder_calls.tolist() == out.nfe.tolist()
    assert wrapped or out.nfe.tolist() == [20, 20, 20]
