"""GML-DPS: goodness-modified latent DPS, the baseline of the PSLD paper (flash_wrap/ALGORITHMS.md §5).

[C class ``GML_DPS``; Rout et al., NeurIPS 2023]: at each step

    ẑ0 = Tweedie(z_t),   z'_{t−1} = prior step(z_t),
    z_{t−1} = z'_{t−1} − ∇_{z_t} [ η·‖y − A(D(ẑ0))‖₂ + γ·‖ẑ0 − E(D(ẑ0))‖₂ ]

The first term is Latent-DPS's (:func:`flash_wrap.guidance.residual_norm`: residual in
[−1, 1] units, i.e. twice the [0, 1] residual); the second, the "goodness" (gluing) term, asks
ẑ0 to be a fixed point of decode-then-encode. Both ẑ0 occurrences depend on z_t (the gradient
flows through the UNet, the decoder and the encoder). E is the bundle's deterministic encoder
(VQ: pre-quantization output after ``quant_conv``), applied to the *unclamped* decoded image as
in the official code; D includes VQ quantization (straight-through).

Choices, following Flash's code rather than the PSLD paper's text:

* unsquared per-sample norms and constant weights η, γ (the paper writes squared norms with
  per-step sizes); a sample's step does not depend on its batch;
* DDPM over all 1000 training steps (like Latent-DPS);
* with γ = 0 the step is computed by exactly Latent-DPS's operations, so it equals Latent-DPS
  bit for bit.

Defaults (c, η, γ) per task from the FFHQ configs (flash_wrap/ALGORITHMS.md §5 table): Gaussian blur
1.2 / 3.0 / 0.05, motion blur 1.2 / 3.0 / 0.05, random inpainting 1.0 / 10.0 / 0.05.
Super-resolution is not in the paper: we use the Gaussian-blur values (both are low-pass
operators); tune them for serious SR work.
"""

from __future__ import annotations

import torch

from flash_wrap import Solver, StepState, hookimpl
from flash_wrap.guidance import decoded_estimate, guided_step


class GMLDPS(Solver):
    """GML-DPS: Latent-DPS plus the γ-weighted goodness term ‖ẑ0 − E(D(ẑ0))‖₂.

    Hyper-parameters: ``eta`` (measurement weight η), ``gamma`` (gluing weight γ), ``c`` (Flash
    noise correction). Works with any differentiable operator, nonlinear ones included.
    """

    name = "gml-dps"
    summary = "GML-DPS: Latent-DPS + gradient of the goodness term ||z0 - E(D(z0))|| (DDPM)"
    reference = (
        "Rout et al., Solving Linear Inverse Problems Provably via Posterior Sampling with Latent "
        "Diffusion Models (NeurIPS 2023), GML-DPS baseline; Fabian et al., Adapt and Diffuse (ICML 2024)"
    )
    defaults = {
        "gaussian-blur": {"c": 1.2, "eta": 3.0, "gamma": 0.05},
        "motion-blur": {"c": 1.2, "eta": 3.0, "gamma": 0.05},
        "random-inpainting": {"c": 1.0, "eta": 10.0, "gamma": 0.05},
        "super-resolution": {"c": 1.2, "eta": 3.0, "gamma": 0.05},
    }
    fallback = {"c": 1.2, "eta": 3.0, "gamma": 0.05}

    def step(self, state: StepState) -> torch.Tensor:
        params = state.params
        return guided_step(state, eta=float(params["eta"]), gamma=float(params["gamma"]), target=decoded_estimate)


@hookimpl
def flash_wrap_register_solvers(register):
    register(GMLDPS)
