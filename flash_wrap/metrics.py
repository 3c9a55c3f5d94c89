"""Image-quality metrics on ``(B, 3, H, W)`` images in [0, 1] (ALGORITHMS.md §7)."""

from __future__ import annotations

import torch

#: PSNR of identical images is infinite; it is reported as this cap instead (documented).
PSNR_CAP_DB = 100.0


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, ``20·log10(1/√MSE)``, with ``estimate`` clipped to [0, 1].

    Returns ``(B,)``; identical images give :data:`PSNR_CAP_DB`.
    """
    if estimate.shape != target.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(estimate.shape)} and {tuple(target.shape)}")
    mse = (estimate.clamp(0, 1) - target).double().square().flatten(1).mean(dim=1)
    value = -10.0 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))
    return value.float()
