"""PSLD: posterior sampling with latent diffusion (Rout et al., NeurIPS 2023), as Flash runs it.

flash_wrap/ALGORITHMS.md §5 [C class ``PSLD``; PSLD repo ``psld.py``]: GML-DPS with a different gluing
target, at each step

    ẑ0 = Tweedie(z_t),   z'_{t−1} = prior step(z_t),   x0 = D(ẑ0),
    x̃ = Aᵀ(y) + x0 − Aᵀ(A(x0))                        ([0, 1] image units)
    z_{t−1} = z'_{t−1} − ∇_{z_t} [ η·‖y − A(x0)‖₂ + γ·‖ẑ0 − E(x̃)‖₂ ]

x̃ keeps the part of x0 the measurement cannot see (x0 − AᵀA x0) and takes the rest from y
(Aᵀy). flash_wrap/ALGORITHMS.md states it in [−1, 1] units, x̃₋₁ = A₋₁ᵀ(y₋₁) + x0₋₁ − A₋₁ᵀ(A₋₁(x0₋₁)) with
A₋₁(v) = 2A((v+1)/2) − 1 and A₋₁ᵀ(u) = 2Aᵀ((u+1)/2) − 1. Substituting v₋₁ = 2v − 1 for every
image and measurement gives A₋₁ᵀ(2u − 1) = 2Aᵀ(u) − 1, hence

    x̃₋₁ = (2Aᵀy − 1) + (2x0 − 1) − (2AᵀA x0 − 1) = 2·[Aᵀy + x0 − AᵀA x0] − 1,

i.e. exactly the [0, 1] formula above, which is what we compute (E takes [0, 1] images). The
measurement term is Latent-DPS's residual in [−1, 1] units
(:func:`flash_wrap.guidance.residual_norm`). x̃ is not clamped; both ẑ0 occurrences
and x̃ depend on z_t (the gradient flows through UNet, decoder, A, Aᵀ and encoder).

Choices:

* **No fresh noise on the predicted measurement.** The official PSLD repo adds new noise to
  A(x0) before the norm; flash_wrap/ALGORITHMS.md §5 gives Flash's re-implementation (whose numbers these
  defaults reproduce) as "same as GML-DPS" with the noiseless residual y − A(D(ẑ0)), so we do
  the same. The solver's only randomness is then the prior step's, and with γ = 0 PSLD equals
  Latent-DPS exactly.
* Unsquared per-sample norms, constant η, γ, DDPM over all 1000 steps (Flash's code; the
  official PSLD runs DDIM-1000 with η_DDIM = 0 and squared-norm notation in the paper).
* Needs the transpose Aᵀ, so only linear operators (``Operator.linear``, ``Operator.adjoint``):
  Gaussian blur, random inpainting, super-resolution. The nonlinear motion blur is rejected
  before any work (the paper's table marks that cell "-").

Defaults (c, η, γ) per task from the FFHQ configs (flash_wrap/ALGORITHMS.md §5 table): Gaussian blur
1.0 / 2.0 / 0.2, random inpainting 1.0 / 10.0 / 0.5. Super-resolution is not in the Flash paper:
we use the Gaussian-blur values (×4 SR is a low-pass operator like blur; the official PSLD
scripts weight SR's measurement term more, ω = 0.9 vs 0.1, but in another normalization).
"""

from __future__ import annotations

import torch

from flash_wrap import Solver, StepState, hookimpl
from flash_wrap.guidance import guided_step
from flash_wrap.operators import Operator


def psld_target(state: StepState, decoded: torch.Tensor) -> torch.Tensor:
    """x̃ = Aᵀ(y) + x0 − Aᵀ(A(x0)) in [0, 1] units, ``(b, 3, H, W)``; differentiable in ``x0``."""
    op = state.operator
    with torch.no_grad():
        seen = op.adjoint(state.y.to(decoded.dtype))
    return seen + decoded - op.adjoint(op(decoded))


class PSLD(Solver):
    """PSLD: GML-DPS whose gluing target replaces the measured part of D(ẑ0) by Aᵀy.

    Hyper-parameters: ``eta`` (measurement weight η), ``gamma`` (gluing weight γ), ``c`` (Flash
    noise correction). Linear operators only (they must provide ``adjoint``).
    """

    name = "psld"
    summary = "PSLD: Latent-DPS + gluing term ||z0 - E(A^T y + (I - A^T A) D(z0))|| (DDPM; linear operators)"
    reference = (
        "Rout et al., Solving Linear Inverse Problems Provably via Posterior Sampling with Latent "
        "Diffusion Models (NeurIPS 2023); Fabian et al., Adapt and Diffuse (ICML 2024)"
    )
    defaults = {
        "gaussian-blur": {"c": 1.0, "eta": 2.0, "gamma": 0.2},
        "random-inpainting": {"c": 1.0, "eta": 10.0, "gamma": 0.5},
        "super-resolution": {"c": 1.0, "eta": 2.0, "gamma": 0.2},
    }
    fallback = {"c": 1.0, "eta": 2.0, "gamma": 0.2}

    def check_operator(self, operator: Operator) -> None:
        super().check_operator(operator)
        if not getattr(operator, "linear", False):
            raise ValueError(
                f"PSLD needs the transpose Aᵀ of a linear operator, but {type(operator).__name__} "
                f"(task {operator.task!r}) is not linear and has no transpose; PSLD is undefined "
                "there (the PSLD and Flash-Diffusion papers mark nonlinear blur '-'). "
                "Use gml-dps or latent-dps instead"
            )

    def step(self, state: StepState) -> torch.Tensor:
        params = state.params
        return guided_step(state, eta=float(params["eta"]), gamma=float(params["gamma"]), target=psld_target)


@hookimpl
def flash_wrap_register_solvers(register):
    register(PSLD)
