"""Image folders: the one place where images are cropped and resized (and it says so)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
log = logging.getLogger(__name__)


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (png/jpg/jpeg/bmp/webp) directly inside ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return files


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Load an RGB image, centre-crop it to a square and resize to ``size``² (bicubic).

    Returns ``(3, size, size)`` float32 in [0, 1].
    """
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class ImageFolder(Dataset):
    """Images of a folder as ``(3, size, size)`` tensors in [0, 1], centre-cropped and resized."""

    def __init__(self, folder: str | Path, size: int, files: list[Path] | None = None) -> None:
        self.files = list_images(folder) if files is None else files
        self.size = size
        with Image.open(self.files[0]) as first:
            if first.size != (size, size):
                log.info("images in %s (e.g. %dx%d) are centre-cropped and resized to %dx%d",
                         folder, *first.size, size, size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index], self.size)


def load_images(folder: str | Path, size: int, limit: int | None = None) -> torch.Tensor:
    """The first ``limit`` images of ``folder`` (sorted, see :func:`list_images`) as
    ``(N, 3, size, size)`` float32 in [0, 1], each loaded by :func:`load_image`."""
    return torch.stack([load_image(p, size) for p in list_images(folder)[:limit]])
