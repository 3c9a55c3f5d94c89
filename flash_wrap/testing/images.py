"""Synthetic test images: smooth, reproducible, in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import torch


def smooth_images(batch: int, size: int = 32, seed: int = 0, brightness: list[float] | None = None) -> torch.Tensor:
    """``(batch, 3, size, size)`` smooth random images in [0, 1] (bilinearly upsampled noise).

    With ``brightness`` (one value per image), image ``i`` is compressed around that mean, which
    with :class:`~flash_wrap.testing.ProgrammedSeverity` sets its start step.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(size // 8, 1), max(size // 8, 1), generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    if brightness is not None:
        levels = torch.tensor(brightness).view(-1, 1, 1, 1)
        x = (0.2 * x + levels - 0.1).clamp(0, 1)
    return x


def write_images(folder: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """Write ``n`` smooth random 8-bit RGB PNGs of ``width`` x ``height`` into ``folder``
    (named ``000.png``, ``001.png``, …); returns ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        coarse = (rng.random((6, 5, 3)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR).save(folder / f"{i:03d}.png")
    return folder
