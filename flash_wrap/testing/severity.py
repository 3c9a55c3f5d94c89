"""A severity encoder whose output the test chooses, to put samples at known start steps."""

from __future__ import annotations

import torch

from ..models import LatentDiffusion
from ..severity import SeverityEncoder


class ProgrammedSeverity(SeverityEncoder):
    """A real severity-encoder module whose variance is a known function of the measurement:
    ``v = scale · mean(y)`` (clamped at 0), so a test picks each sample's start step through its
    brightness. ``z_hat`` is the wrapped model's untrained encoder output, as for a real encoder.

    Args:
        model: the bundle whose encoder the backbone copies.
        scale: factor from mean brightness (in [0, 1]) to the variance ``v``.
    """

    def __init__(self, model: LatentDiffusion, scale: float = 1.0) -> None:
        base = model.make_severity_encoder()
        super().__init__(base.backbone, model.latent_channels)
        self.scale = scale

    def forward(self, y_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_hat, _ = super().forward(y_image)
        return z_hat, self.scale * y_image.flatten(1).mean(dim=1).clamp_min(0)
