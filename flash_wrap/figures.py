"""Figures: image grids written as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .models import LatentDiffusion
from .unconditional import sample_prior


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] → ``(B, H, W, 3)`` uint8."""
    return (images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write one ``(3, H, W)`` image in [0, 1] as an 8-bit PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image[None])[0]).save(path)
    return path


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> Image.Image:
    """Tile ``(B, 3, H, W)`` images in [0, 1] into one RGB image, white gaps of ``pad`` pixels."""
    pixels = to_uint8(images)
    b, h, w, _ = pixels.shape
    cols = columns or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(b):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = pixels[i]
    return Image.fromarray(canvas)


def sample_grid(model: str | Path, out: str | Path, *, n: int = 16, seed: int = 0, steps: int = 1000,
                scale: int = 2) -> Path:
    """Draw ``n`` unconditional samples from ``model``'s prior and save them as a PNG grid."""
    bundle = LatentDiffusion.from_pretrained(model)
    images = sample_prior(bundle, n, steps=steps, generator=torch.Generator().manual_seed(seed))
    grid = image_grid(images)
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
