"""Flash-Diffusion's adaptive start: the start-step rule and the noise correction.

Settled here (ALGORITHMS.md §3-4): the severity encoder's scalar output ``v`` is a *variance*
(it is regressed onto the sample variance σ̄² of the latent error). The paper calls it σ̂ and
writes ``1/σ̂`` and ``c·σ̂²``; the poster writes σ̂² for the same quantity; the official code uses
``1/v`` and ``c·v``. We follow the code: ``1/v`` for the start rule and ``c·v`` for the noise,
never a further square.
"""

from __future__ import annotations

import warnings

import torch

from .errors import InvalidInput
from .rng import GeneratorArg, randn

#: Largest fraction of noise the correction may inject: c·v at or above 1 would make
#: √(1 − c·v) imaginary (the official code returns NaN there).
MAX_NOISE_FRACTION = 1.0 - 1e-4


def start_index(variance: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """Grid index whose SNR is closest to ``1/v`` [P eq. 4; ALGORITHMS.md §3].

    ``s = argmin_k |SNR(g_k) − 1/v|`` over the sampler's own grid; ties go to the lowest index.
    The reverse loop then runs grid indices ``s−1, …, 0``, i.e. ``s`` denoiser calls; ``s = 0``
    means no diffusion step at all (the output is the decoded corrected latent).

    Args:
        variance: ``(B,)`` predicted error variance ``v >= 0`` (``v = 0`` maps to index 0).
        snr: ``(M,)`` SNR of the grid, decreasing in ``k`` (``Sampler.snr``).
    Returns:
        ``(B,)`` long tensor in ``[0, M−1]``, on ``variance``'s device.
    """
    target = 1.0 / variance.detach().double().clamp_min(0).cpu()
    distance = (snr.double().cpu()[None, :] - target[:, None]).abs()
    return distance.argmin(dim=1).to(variance.device)


def correct_noise(
    z_hat: torch.Tensor,
    variance: torch.Tensor,
    c: float,
    generator: GeneratorArg = None,
) -> torch.Tensor:
    """``z_start = √(1 − c·v)·ẑ + √(c·v)·ε``, ``ε ~ N(0, I)`` [P Sec. 3.2; ALGORITHMS.md §4].

    ``ẑ`` is not pre-scaled by √ᾱ (as in the official code). Where ``c·v`` reaches 1 the
    fraction is capped at :data:`MAX_NOISE_FRACTION` and a warning names the affected samples.

    Args:
        z_hat: ``(B, C, h, w)`` latent estimate from the severity encoder.
        variance: ``(B,)`` predicted variance ``v``.
        c: correction constant (per task and solver, e.g. 1.2 for Gaussian blur).
        generator: source of ε (one, or one per sample).
    """
    if c < 0:
        raise InvalidInput(f"noise-correction constant c must be >= 0, got {c}")
    fraction = (c * variance.detach()).clamp_min(0)
    over = fraction >= MAX_NOISE_FRACTION
    if bool(over.any()):
        rows = over.nonzero().flatten().tolist()
        warnings.warn(
            f"noise correction c·v >= 1 for samples {rows} (c={c}, v={variance[over].tolist()}); "
            f"capping c·v at {MAX_NOISE_FRACTION} (start from almost pure noise)",
            RuntimeWarning,
            stacklevel=2,
        )
        fraction = fraction.clamp_max(MAX_NOISE_FRACTION)
    fraction = fraction.to(z_hat.dtype).view(-1, *([1] * (z_hat.dim() - 1)))
    eps = randn(z_hat.shape, generator, device=z_hat.device, dtype=z_hat.dtype)
    return (1 - fraction).sqrt() * z_hat + fraction.sqrt() * eps
