"""Shared fixtures: tiny random models built in the test session (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch

from flash_wrap import LatentDiffusion
from flash_wrap.severity import SeverityEncoder


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_test_process():
    # Tiny models gain nothing from intra-op threads, and on a 2-core machine shared with other
    # processes, spinning OpenMP threads slow everything down by orders of magnitude.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class ProgrammedSeverity(SeverityEncoder):
    """A severity encoder whose variance is a known function of the measurement:
    ``v = scale · mean(y)``, so tests choose each sample's start step through its brightness."""

    def __init__(self, model: LatentDiffusion, scale: float = 1.0) -> None:
        base = model.make_severity_encoder()
        super().__init__(base.backbone, model.latent_channels)
        self.scale = scale

    def forward(self, y_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_hat, _ = super().forward(y_image)
        return z_hat, self.scale * y_image.flatten(1).mean(dim=1).clamp_min(0)


@pytest.fixture
def tiny_model() -> LatentDiffusion:
    """A tiny VQ model for 32x32 images with a programmed Gaussian-blur severity encoder."""
    model = LatentDiffusion.tiny_random("vq", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", ProgrammedSeverity(model))
    return model


def smooth_images(batch: int, size: int = 32, seed: int = 0, brightness: list[float] | None = None) -> torch.Tensor:
    """``(batch, 3, size, size)`` smooth random images in [0, 1] (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    if brightness is not None:
        levels = torch.tensor(brightness).view(-1, 1, 1, 1)
        x = (0.2 * x + levels - 0.1).clamp(0, 1)
    return x


def write_images(folder: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """Write ``n`` smooth random RGB PNGs of ``width`` x ``height`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        coarse = (rng.random((6, 5, 3)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR).save(folder / f"{i:03d}.png")
    return folder
