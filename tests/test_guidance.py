"""The public guidance terms (``flash_wrap.guidance``) as the three gradient-based solvers use
them: a guided step moves towards the measurement, acts per sample, decodes once per step, and
with γ = 0 the gluing solvers are exactly Latent-DPS."""

from __future__ import annotations

import pytest
import torch

from flash_wrap.guidance import gluing_norm, residual_norm
from flash_wrap.operators import GaussianBlur, RandomInpainting, SuperResolution
from flash_wrap.testing import assert_step_reduces_residual, generators, make_state, smooth_images
from flash_wrap_plugins.gml_dps import GMLDPS
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.psld import PSLD

GUIDED = [(LatentDPS, ("eta",)), (GMLDPS, ("eta", "gamma")), (PSLD, ("eta", "gamma"))]
OPERATORS = [
    ("gaussian-blur", lambda: GaussianBlur([0.5, 1.5, 2.5])),
    ("random-inpainting", lambda: RandomInpainting([0.7, 0.75, 0.8])),
    ("super-resolution", lambda: SuperResolution(4)),
]


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("solver_class,weights", GUIDED, ids=[c.name for c, _ in GUIDED])
@pytest.mark.parametrize("task,make_op", OPERATORS, ids=[t for t, _ in OPERATORS])
def test_one_step_reduces_the_residual(programmed_model, solver_class, weights, task, make_op):
    op = make_op()
    assert_step_reduces_residual(solver_class, programmed_model, task, op, _measure(op, smooth_images(3)), weights)


@pytest.mark.parametrize("solver_class", [GMLDPS, PSLD], ids=["gml-dps", "psld"])
def test_the_gluing_term_acts_per_sample(programmed_model, solver_class):
    # γ alone (η = 0) changes the step, and in float64 it does so for each sample as if alone.
    model = programmed_model.double()
    op = GaussianBlur(torch.tensor([0.4, 2.0, 1.2]))
    y = _measure(op, smooth_images(3, seed=2))
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    glued, prior = solver_class(model, eta=0.0, gamma=0.5), solver_class(model, eta=0.0, gamma=0.0)
    batched = glued.step(make_state(glued, z, y, op, 400, generators([0, 1, 2])))
    for i in range(3):
        alone = glued.step(make_state(glued, z[i : i + 1], y[i : i + 1], op.select([i]), 400, generators([i])))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-10, rtol=1e-10)
    prior_only = prior.step(make_state(prior, z, y, op, 400, generators([0, 1, 2])))
    assert (batched - prior_only).abs().amax() > 1e-4


@pytest.mark.parametrize("solver_class", [GMLDPS, PSLD], ids=["gml-dps", "psld"])
def test_gamma_zero_is_exactly_latent_dps(programmed_model, solver_class):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    ours = solver_class(programmed_model, sampler="ddim", steps=8, eta=3.0, gamma=0.0)
    ldps = LatentDPS(programmed_model, sampler="ddim", steps=8, eta=3.0)
    a = ours.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    b = ldps.reconstruct(y, op, generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images)
    c = solver_class(programmed_model, sampler="ddim", steps=8, eta=3.0).reconstruct(  # the default γ > 0 differs
        y, op, generator=torch.Generator().manual_seed(5), progress=False
    )
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize("solver_class", [c for c, _ in GUIDED], ids=[c.name for c, _ in GUIDED])
def test_decodes_once_per_step_for_both_terms(programmed_model, solver_class):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = _measure(op, smooth_images(2))
    out = solver_class(programmed_model, sampler="ddim", steps=10).reconstruct(y, op, generators([0, 1]), progress=False)
    assert out.nfe.tolist() == [10, 10] and out.decoder_calls.tolist() == [10, 10]


def test_residual_norm_is_per_sample_in_minus_one_one_units(programmed_model):
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    x = smooth_images(2)
    y = op(x)
    state = make_state(LatentDPS(programmed_model), torch.zeros(2, *programmed_model.latent_shape), y, op, 10)
    shifted = x + torch.tensor([0.0, 0.1]).view(2, 1, 1, 1)
    norms = residual_norm(state, torch.zeros(2, *programmed_model.latent_shape), decoded=shifted)
    expected = (2 * (y - op(shifted))).flatten(1).norm(dim=1)  # twice the [0, 1] residual
    torch.testing.assert_close(norms, expected)
    assert norms[0] == pytest.approx(0.0, abs=1e-6) and norms[1] > 0


def test_gluing_norm_is_zero_for_a_fixed_point(programmed_model):
    x = smooth_images(2)
    z0 = programmed_model.encode(x, estimate=True)
    assert gluing_norm(programmed_model, z0, x).abs().max() < 1e-5
    assert (gluing_norm(programmed_model, z0 + 0.1, x) > 0.1).all()
