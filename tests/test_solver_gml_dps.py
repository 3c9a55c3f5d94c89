"""GML-DPS: the solver contract, plus what is specific to it (one step reduces the residual, the
goodness term acts per sample, γ = 0 is exactly Latent-DPS, re-encoding out-of-range estimates,
one decode per step, defaults, registration)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap.operators import GaussianBlur, RandomInpainting, SuperResolution
from flash_wrap.registry import load_registry
from flash_wrap.testing import SolverContract, generators, make_state, smooth_images, tweedie_residual
from flash_wrap_plugins.gml_dps import GMLDPS
from flash_wrap_plugins.latent_dps import LatentDPS


class TestGMLDPSContract(SolverContract):
    solver_class = GMLDPS
    tasks = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")
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
    # Same latents, same generators: the next latents differ only by the guidance (measurement
    # and goodness terms), so the residual of their Tweedie estimates must drop; the same step
    # with the correction's sign flipped must raise it.
    op = make_op()
    y = _measure(op, smooth_images(3))
    params = GMLDPS(programmed_model).hyperparameters(task)
    z = torch.randn(3, *programmed_model.latent_shape, generator=torch.Generator().manual_seed(1))
    k = 100

    def residual_after_step(eta, gamma):
        solver = GMLDPS(programmed_model, eta=eta, gamma=gamma)
        stepped = solver.step(make_state(solver, z, y, op, k, generators([2, 3, 4]), task))
        return tweedie_residual(solver, stepped, k - 1, y, op)

    plain = residual_after_step(0.0, 0.0)
    guided = residual_after_step(params["eta"], params["gamma"])
    assert (guided < plain).all() and plain.mean() - guided.mean() > 1e-3 * plain.mean()
    assert (residual_after_step(-params["eta"], -params["gamma"]) > plain).all()


def test_the_goodness_term_acts_per_sample(programmed_model):
    # γ alone (η = 0) changes the step, and in float64 it does so for each sample as if alone.
    model = programmed_model.double()
    op = GaussianBlur(torch.tensor([0.4, 2.0, 1.2]))
    y = _measure(op, smooth_images(3, seed=2))
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    glued, prior = GMLDPS(model, eta=0.0, gamma=0.5), GMLDPS(model, eta=0.0, gamma=0.0)
    batched = glued.step(make_state(glued, z, y, op, 400, generators([0, 1, 2])))
    for i in range(3):
        alone = glued.step(make_state(glued, z[i : i + 1], y[i : i + 1], op.select([i]), 400, generators([i])))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-10, rtol=1e-10)
    prior_only = prior.step(make_state(prior, z, y, op, 400, generators([0, 1, 2])))
    assert (batched - prior_only).abs().amax() > 1e-4


def test_gamma_zero_is_exactly_latent_dps(programmed_model):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    ours = GMLDPS(programmed_model, sampler="ddim", steps=8, eta=3.0, gamma=0.0)
    ldps = LatentDPS(programmed_model, sampler="ddim", steps=8, eta=3.0)
    a = ours.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    b = ldps.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images)
    c = GMLDPS(programmed_model, sampler="ddim", steps=8, eta=3.0).reconstruct(  # the default γ > 0 differs
        y, op, generator=torch.Generator().manual_seed(5), progress=False
    )
    assert not torch.equal(a.latents, c.latents)


def test_decodes_once_per_step_for_both_terms(programmed_model):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    out = GMLDPS(programmed_model, sampler="ddim", steps=10).reconstruct(y, op, generators([0, 1]), progress=False)
    assert out.nfe.tolist() == [10, 10] and out.decoder_calls.tolist() == [10, 10]


def test_encoding_accepts_out_of_range_estimates(programmed_model):
    # The goodness term re-encodes D(ẑ0), which leaves [0, 1]: estimate mode accepts it (and
    # equals the plain encoder inside [0, 1]), plain mode refuses it, NaN is refused in both.
    x = smooth_images(1)
    torch.testing.assert_close(programmed_model.encode(x, estimate=True), programmed_model.encode(x))
    assert torch.isfinite(programmed_model.encode(1.5 * x - 0.2, estimate=True)).all()
    with pytest.raises(ValueError, match="must lie in"):
        programmed_model.encode(1.5 * x - 0.2)
    with pytest.raises(ValueError, match="NaN"):
        programmed_model.encode(torch.full_like(x, float("nan")), estimate=True)


def test_defaults_per_task():
    assert GMLDPS.defaults["gaussian-blur"] == GMLDPS.defaults["motion-blur"] == {"c": 1.2, "eta": 3.0, "gamma": 0.05}
    assert GMLDPS.defaults["random-inpainting"] == {"c": 1.0, "eta": 10.0, "gamma": 0.05}
    assert GMLDPS.defaults["super-resolution"] == GMLDPS.defaults["gaussian-blur"]
    assert GMLDPS.hyperparameter_names() == {"c", "eta", "gamma"}
    assert GMLDPS.sampler_kind == "ddpm" and GMLDPS.default_steps is None


def test_registered_and_listed(capsys):
    record = load_registry().solvers["gml-dps"]
    assert record.cls is GMLDPS and "flash_wrap_plugins.gml_dps" in record.origin
    assert flash_wrap.get_solver("gml-dps") is GMLDPS
    assert GMLDPS.summary and "Rout et al." in GMLDPS.reference and "NeurIPS 2023" in GMLDPS.reference
    cli = pytest.importorskip("flash_wrap.apps.cli", reason="the CLI is moving to flash_wrap.apps")
    assert cli.main(["solvers", "--details"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("gml-dps ") for line in out.splitlines())
    assert "random-inpainting: c=1, eta=10, gamma=0.05" in out
