"""The plugin's own tests, run against the *installed* package (``pip install -e ".[test]"`` here,
then ``python -m pytest``): flash-wrap's solver contract suite, plus the checks specific to latent
DDNM, on tiny random models built in the test (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap.operators import GaussianBlur, RandomInpainting, SuperResolution
from flash_wrap.registry import load_registry
from flash_wrap.testing import SolverContract, generators, make_state, smooth_images, tiny_model
from flash_wrap_ddnm import LatentDDNM, null_space_correction, pseudo_inverse


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    yield
    torch.set_num_threads(previous)


class TestLatentDDNMContract(SolverContract):
    solver_class = LatentDDNM
    tasks = ("gaussian-blur", "random-inpainting", "super-resolution")
    refused_tasks = ("motion-blur",)  # no pseudo-inverse for a nonlinear operator
    steps = 10


@pytest.fixture
def model():
    return tiny_model("vq", image_size=32, seed=0)


def inpainting_problem():
    op = RandomInpainting([0.7, 0.8])  # per-sample parameters
    y = op.measure(smooth_images(2, brightness=[0.2, 0.6], seed=1), generator=torch.Generator().manual_seed(0))
    return y, op


def test_comes_from_this_distribution_through_the_entry_point():
    record = load_registry(strict=True).solvers["latent-ddnm"]
    assert record.cls is LatentDDNM and record.plugin == "latent-ddnm"
    assert record.origin.startswith("flash-wrap-ddnm ") and "flash_wrap_ddnm.solver" in record.origin
    assert flash_wrap.get_solver("latent-ddnm") is LatentDDNM


def test_inpainting_correction_is_the_exact_null_space_projection(model):
    y, op = inpainting_problem()
    state = make_state(LatentDDNM(model), torch.zeros(2, *model.latent_shape), y, op, 5)
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2  # may leave [0, 1]
    mask = op.mask_for(32)
    x_tilde = null_space_correction(state, x0)
    torch.testing.assert_close(x_tilde, mask * y + (1 - mask) * x0)
    torch.testing.assert_close(op(x_tilde), op(y))  # consistent with y where A sees it


@pytest.mark.parametrize("op", [GaussianBlur(torch.tensor([0.5, 2.0])), SuperResolution(4)])
def test_regularised_pseudo_inverse_inverts_the_operator(op):
    u = op(smooth_images(2, brightness=[0.3, 0.7]))
    restored = op(pseudo_inverse(op, u, delta=1e-5, iterations=30))
    assert ((restored - u).flatten(1).norm(dim=1) < 1e-2 * u.flatten(1).norm(dim=1)).all()


def test_lam_zero_is_exactly_the_unconditional_step(model):
    y, op = inpainting_problem()
    z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    solver = LatentDDNM(model, lam=0.0)
    state = make_state(solver, z, y, op, 50, generators([0, 1]))
    stepped = solver.step(state)
    assert state.denoiser_calls == 1 and state.decoder_calls == [0, 0]  # no correction: no decode
    with torch.no_grad():
        index = torch.full((2,), 50)
        eps = model.predict_noise(z, solver.sampler.timesteps[index])
        prior = solver.sampler.step(z, eps, solver.sampler.tweedie(z, eps, index), index, generators([0, 1]))
    assert torch.equal(stepped, prior)
    full = LatentDDNM(model)
    corrected = full.step(make_state(full, z, y, op, 50, generators([0, 1])))
    assert (corrected - prior).abs().amax() > 1e-4  # the projection acts


def test_decodes_once_per_step(model):
    y, op = inpainting_problem()
    out = LatentDDNM(model, steps=8).reconstruct(y, op, generator=generators([0, 1]), progress=False)
    assert out.nfe.tolist() == [8, 8] and out.decoder_calls.tolist() == [8, 8]


def test_own_sampler_is_ddnm_setting(model):
    assert (LatentDDNM(model).grid.kind, LatentDDNM(model).grid.steps, LatentDDNM(model).grid.eta) == ("ddim", 100, 0.85)
