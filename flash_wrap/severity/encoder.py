"""The severity encoder: the autoencoder's encoder, fine-tuned, plus a variance head.

ALGORITHMS.md §2 [P App. A, C `severity_encoder.py`]: ``z_hat = E_θ(y)``; ``s = Conv1x1(z_hat)``
with C→C channels; ``v = mean(s²)`` over all ``C·h·w`` entries. ``v`` estimates the variance of
the latent error ``z_hat − z0`` (the paper's σ̂, the poster's σ̂²; see :mod:`flash_wrap.start`).
"""

from __future__ import annotations

import torch
from torch import nn


class SeverityEncoder(nn.Module):
    """Map a degraded image to a latent estimate and a scalar predicted error variance.

    Args:
        backbone: module mapping ``(B, 3, H, W)`` images in [0, 1] to latents ``(B, C, h, w)`` in the
            diffusion model's (scaled) latent space; normally a copy of the bundle's encoder path.
        latent_channels: ``C``.
    """

    def __init__(self, backbone: nn.Module, latent_channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.variance_head = nn.Conv2d(latent_channels, latent_channels, kernel_size=1)

    def forward(self, y_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            y_image: measurement on the image grid ``(B, 3, H, W)``, roughly in [0, 1] (noisy).
        Returns:
            ``z_hat`` ``(B, C, h, w)`` scaled latents and ``v`` ``(B,)``, ``v >= 0``.
        """
        z_hat = self.backbone(y_image)
        v = self.variance_head(z_hat).square().flatten(1).mean(dim=1)
        return z_hat, v
