"""What a denoiser predicts, and the conversion to the ε every solver works with (ALGORITHMS.md §11).

With ``z_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε`` [DDPM, Ho et al. 2020]:

* ``epsilon``: the network predicts ε;
* ``v_prediction``: it predicts ``v = √ᾱ·ε − √(1−ᾱ)·z₀`` [Salimans & Ho 2022], so
  ``ε = √ᾱ·v + √(1−ᾱ)·z_t``;
* ``sample``: it predicts ``ẑ₀``, so ``ε = (z_t − √ᾱ·ẑ₀) / √(1−ᾱ)``.
"""

from __future__ import annotations

import torch

from ..errors import InvalidInput

#: The values of a diffusers scheduler's ``prediction_type`` that can be converted to ε.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def check_prediction_type(prediction_type: object, where: str = "prediction_type") -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise InvalidInput(f"{where}: prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got "
                         f"{prediction_type!r}")
    return str(prediction_type)


def to_epsilon(output: torch.Tensor, z_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The network's ``output`` ``(B, C, h, w)`` at noisy latents ``z_t`` (same shape) → ε.

    Args:
        alpha_bar: ``ᾱ_t`` per sample, ``(B,)``, in (0, 1).
        prediction_type: one of :data:`PREDICTION_TYPES`.
    """
    if prediction_type == "epsilon":
        return output
    a = alpha_bar.to(z_t.dtype).view(-1, *([1] * (z_t.dim() - 1)))
    if prediction_type == "v_prediction":
        return a.sqrt() * output + (1 - a).sqrt() * z_t
    if prediction_type == "sample":
        return (z_t - a.sqrt() * output) / (1 - a).sqrt()
    raise InvalidInput(check_prediction_type(prediction_type))
