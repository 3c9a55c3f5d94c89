"""Latent-DPS: diffusion posterior sampling in the latent space of an autoencoder.

flash_wrap/ALGORITHMS.md §5 [P eq. 5-6; C ``samplers/latent_recon.py`` ``LDPS``]: at each step

    ẑ0 = Tweedie(z_t),   z'_{t−1} = prior step(z_t),
    z_{t−1} = z'_{t−1} − η · ∇_{z_t} ‖ y − A(D(ẑ0(z_t))) ‖₂

with the residual in [−1, 1] image units (twice the [0, 1] residual) and the *unsquared* norm,
as in the official code (the paper's η_t = η/‖r‖ on ∇‖r‖² is 2η·∇‖r‖). The norm is taken per
sample, so a sample's step does not depend on its batch. DDPM over all 1000 steps by default.
The step is :func:`flash_wrap.guidance.guided_step` without a gluing term.

On a DDIM grid (``LatentDPS(model, steps=N)`` with N < T) the DDIM stochasticity is the class's
``ddim_eta`` = 0: the paper's better setting for Flash ([P Table 5], N = 100: 28.04 dB at δ = 0 vs
27.70 at δ = 1); measured on the demo model, DDIM-100, 3 faces × 2 levels: Flash 25.3 dB at η = 0
vs 24.6 at η = 1 (Gaussian blur), 24.2 vs 23.1 (motion blur). From pure noise the bare solver is
weak on a short DDIM grid either way ([P Table 6]: 16.6–18.2 dB).
"""

from __future__ import annotations

import torch

from flash_wrap import Solver, StepState, hookimpl
from flash_wrap.guidance import guided_step


class LatentDPS(Solver):
    """Latent-DPS (LDPS), the latent-space DPS baseline of Flash-Diffusion.

    Hyper-parameters: ``eta`` (data-consistency step size η), ``c`` (Flash noise correction).
    Defaults per task from the official FFHQ configs (flash_wrap/ALGORITHMS.md §5 table); the
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
    ddim_eta = 0.0  # on a DDIM grid; see the module docstring

    def step(self, state: StepState) -> torch.Tensor:
        return guided_step(state, eta=float(state.params["eta"]))


@hookimpl
def flash_wrap_register_solvers(register):
    register(LatentDPS)
