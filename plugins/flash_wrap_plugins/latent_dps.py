"""Latent-DPS: diffusion posterior sampling in the latent space of an autoencoder.

ALGORITHMS.md §5 [P eq. 5-6; C ``samplers/latent_recon.py`` ``LDPS``]: at each step

    ẑ0 = Tweedie(z_t),   z'_{t−1} = prior step(z_t),
    z_{t−1} = z'_{t−1} − η · ∇_{z_t} ‖ y − A(D(ẑ0(z_t))) ‖₂

with the residual in [−1, 1] image units (twice the [0, 1] residual) and the *unsquared* norm,
as in the official code (the paper's η_t = η/‖r‖ on ∇‖r‖² is 2η·∇‖r‖). The norm is taken per
sample, so a sample's step does not depend on its batch. DDPM over all 1000 steps by default.
"""

from __future__ import annotations

import torch

from flash_wrap import Solver, StepState, hookimpl


def residual_norm(state: StepState, z0: torch.Tensor, decoded: torch.Tensor | None = None) -> torch.Tensor:
    """``(b,)`` per-sample ‖y − A(D(ẑ0))‖₂ in [−1, 1] units; differentiable in ``z0``.

    Decodes through ``state.decode`` (one counted decoder call per row) unless the caller passes
    ``decoded = D(ẑ0)``, ``(b, 3, H, W)`` on the [0, 1] scale, that it already computed.
    """
    residual = 2.0 * (state.y - state.operator(state.decode(z0) if decoded is None else decoded))
    return residual.flatten(1).norm(dim=1)


class LatentDPS(Solver):
    """Latent-DPS (LDPS), the latent-space DPS baseline of Flash-Diffusion.

    Hyper-parameters: ``eta`` (data-consistency step size η), ``c`` (Flash noise correction).
    Defaults per task from the official FFHQ configs (ALGORITHMS.md §5 table); the
    super-resolution values are ours (the paper has no SR experiment).
    """

    name = "latent-dps"
    summary = "Latent DPS: DDPM prior step + gradient of the unsquared residual norm through the decoder"
    reference = "Fabian, Tinaz, Soltanolkotabi, Adapt and Diffuse (ICML 2024), eq. 5-6; Chung et al., DPS (ICLR 2023)"
    defaults = {
        "gaussian-blur": {"c": 1.2, "eta": 1.0},
        "motion-blur": {"c": 1.0, "eta": 1.0},
        "random-inpainting": {"c": 1.2, "eta": 7.0},
        "super-resolution": {"c": 1.2, "eta": 1.0},
    }
    fallback = {"c": 1.2, "eta": 1.0}

    def step(self, state: StepState) -> torch.Tensor:
        z_t = state.z.detach().requires_grad_(True)
        with torch.enable_grad():
            eps = state.predict_noise(z_t)
            z0 = state.sampler.tweedie(z_t, eps, state.index)
            (grad,) = torch.autograd.grad(residual_norm(state, z0).sum(), z_t)
        z_prev = state.sampler.step(z_t.detach(), eps.detach(), z0.detach(), state.index, state.generator)
        return z_prev - state.params["eta"] * grad


@hookimpl
def flash_wrap_register_solvers(register):
    register(LatentDPS)
