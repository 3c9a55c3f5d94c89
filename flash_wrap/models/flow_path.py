"""The rectified-flow path seen as a VP path (flash_wrap/ALGORITHMS.md §12).

A rectified-flow model is trained on ``z_σ = (1 − σ)·z₀ + σ·ε``, σ ∈ (0, 1], and predicts the velocity
``u = ε − z₀``. With ``s(σ) = √((1 − σ)² + σ²)`` the rescaled state ``x = z/s`` is the VP state
``a·z₀ + b·ε`` at ``a = (1 − σ)/s``, ``b = σ/s`` (``a² + b² = 1``), i.e. at
``ᾱ(σ) = (1 − σ)²/((1 − σ)² + σ²)``, with the same SNR ``(1 − σ)²/σ²``. Conversely a VP state ``x`` at
``(a, b)`` is the flow state ``z = x/(a + b)`` at ``σ = b/(a + b)``. Every function here is plain
tensor arithmetic in the dtype it is given (pass float64 for exact tables) and is finite at σ = 1
(``a = 0``) and σ = 0.
"""

from __future__ import annotations

import torch


def flow_alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    """``ᾱ(σ) = (1 − σ)²/((1 − σ)² + σ²)`` for σ ∈ [0, 1] (ᾱ(0) = 1, ᾱ(1) = 0), same shape."""
    return (1 - sigma) ** 2 / ((1 - sigma) ** 2 + sigma**2)


def flow_snr(sigma: torch.Tensor) -> torch.Tensor:
    """``SNR(σ) = (1 − σ)²/σ² = ᾱ/(1 − ᾱ)`` for σ ∈ (0, 1] (0 at σ = 1), same shape."""
    return (1 - sigma) ** 2 / sigma**2


def flow_state_scale(sigma: torch.Tensor) -> torch.Tensor:
    """``1/(a + b) = √((1 − σ)² + σ²)``: the flow state is ``z = x · flow_state_scale(σ)``; in [1/√2, 1]."""
    return ((1 - sigma) ** 2 + sigma**2).sqrt()


def vp_to_flow(x: torch.Tensor, alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VP state ``x`` at ``ᾱ`` (``a = √ᾱ``, ``b = √(1 − ᾱ)``) → ``(z, σ)`` with ``σ = b/(a + b)``
    and ``z = x/(a + b)``. ``alpha_bar`` broadcasts against ``x`` (e.g. ``(B, 1, 1, 1)``), in [0, 1]."""
    a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return x / (a + b), b / (a + b)


def flow_to_vp(z: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow state ``z`` at ``σ`` → ``(x, ᾱ)``: the VP state ``x = z/√((1 − σ)² + σ²)`` and ``ᾱ(σ)``."""
    return z / flow_state_scale(sigma), flow_alpha_bar(sigma)


def velocity_to_eps_z0(z: torch.Tensor, sigma: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity ``u = ε − z₀`` at the flow state ``z`` → ``(ε, ẑ₀) = (z + (1 − σ)·u, z − σ·u)``.

    Both are finite for every σ ∈ [0, 1]; at σ = 1 ``ẑ₀ = z − u`` although the VP form of Tweedie
    divides by ``a = 0`` there. ``sigma`` broadcasts against ``z`` (e.g. ``(B, 1, 1, 1)``)."""
    return z + (1 - sigma) * u, z - sigma * u
