"""Guidance terms of the gradient-based latent solvers, public so every plugin shares them.

[P eq. 5–6] (Latent-DPS) and [PSLD eq. 7] (the gluing term of GML-DPS and PSLD), in the form the
official codes use (flash_wrap/ALGORITHMS.md §5): *unsquared*, per-sample norms, constant
weights, residuals in [−1, 1] image units (twice the [0, 1] residual), gradients taken with
respect to ``z_t`` (through the UNet, the decoder and, for gluing, the encoder) and subtracted
from the unconditional prior step:

    z_{t−1} = z'_{t−1} − ∇_{z_t} [ η·‖y − A(D(ẑ0))‖₂ + γ·‖ẑ0 − E(target(D(ẑ0)))‖₂ ]

Every norm is per sample, so a sample's step never depends on its batch mates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .models import LatentDiffusion
from .state import StepState

#: ``target(state, decoded) -> image``: maps the decoded estimate D(ẑ0) ``(b, 3, H, W)`` on the
#: [0, 1] scale to the image whose encoding ẑ0 is glued to (differentiable).
GluingTarget = Callable[[StepState, torch.Tensor], torch.Tensor]


def residual_norm(state: StepState, z0: torch.Tensor, decoded: torch.Tensor | None = None) -> torch.Tensor:
    """``(b,)`` per-sample ‖y − A(D(ẑ0))‖₂ in [−1, 1] units; differentiable in ``z0``.

    Decodes through ``state.decode`` (one counted decoder call per row) unless the caller passes
    ``decoded = D(ẑ0)``, ``(b, 3, H, W)`` on the [0, 1] scale, that it already computed.
    """
    residual = 2.0 * (state.y - state.operator(state.decode(z0) if decoded is None else decoded))
    return residual.flatten(1).norm(dim=1)


def gluing_norm(model: LatentDiffusion, z0: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``(b,)`` per-sample ‖ẑ0 − E(images)‖₂ (unsquared), differentiable in both; ``images`` on the
    [0, 1] scale, possibly outside it (the encoder's estimate mode accepts any values)."""
    return (z0 - model.encode(images, estimate=True)).flatten(1).norm(dim=1)


def decoded_estimate(state: StepState, decoded: torch.Tensor) -> torch.Tensor:
    """The GML-DPS gluing target: D(ẑ0) itself (ẑ0 should be a fixed point of E∘D)."""
    return decoded


def guided_step(
    state: StepState, eta: float, gamma: float = 0.0, target: GluingTarget = decoded_estimate
) -> torch.Tensor:
    """Prior step minus ∇_{z_t}[η·‖y − A(D(ẑ0))‖₂ + γ·‖ẑ0 − E(target(state, D(ẑ0)))‖₂].

    With ``gamma = 0`` the gluing term is skipped: this is Latent-DPS [P eq. 6, code form η·∇‖r‖].
    One denoiser call (``state.predict``) and one counted decoder call per row; the
    decoded estimate is shared by both terms. No graph outlives the call.

    Args:
        state: the step's rows; ``state.z`` ``(b, C, h, w)`` at level ``state.t``.
        eta: measurement weight η; gamma: gluing weight γ; target: see :data:`GluingTarget`.
    Returns:
        ``(b, C, h, w)`` detached latents one grid level below.
    """
    z_t = state.z.detach().requires_grad_(True)
    with torch.enable_grad():
        prediction = state.predict(z_t)
        eps, z0 = prediction.eps, prediction.z0
        if gamma == 0.0:
            (grad,) = torch.autograd.grad(residual_norm(state, z0).sum(), z_t)
            correction = eta * grad
        else:
            decoded = state.decode(z0)
            glued = gluing_norm(state.model, z0, target(state, decoded))
            loss = eta * residual_norm(state, z0, decoded) + gamma * glued
            (correction,) = torch.autograd.grad(loss.sum(), z_t)
    z_prev = state.sampler.step(z_t.detach(), eps.detach(), z0.detach(), state.index, state.generator)
    return z_prev - correction
