"""Images in and out: loading files and folders as ``(3, size, size)`` / ``(N, 3, size, size)``
float32 tensors in [0, 1] (the one place where images are cropped and resized, and it says so) and
saving a ``(3, H, W)`` tensor in [0, 1] as an 8-bit PNG."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import InvalidInput, NotFound

__all__ = ["IMAGE_SUFFIXES", "ImageFileError", "ImageFolder", "check_images", "list_images", "load_image",
           "load_images", "save_image", "to_uint8", "usable_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
log = logging.getLogger(__name__)


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (png/jpg/jpeg/bmp/webp) directly inside ``folder``; entries that are not
    regular files (folders named like images, broken or looping links) are refused by name."""
    root = Path(folder)
    if not root.is_dir():
        raise NotFound(f"image folder {root} does not exist")
    candidates = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    odd = []
    for p in candidates:
        try:
            if not p.is_file():
                odd.append(p.name)
        except OSError:  # e.g. a symlink loop
            odd.append(p.name)
    if odd:
        raise ImageFileError(f"{root} has entries named like images that are not readable files: {', '.join(odd[:5])}")
    files = candidates
    if not files:
        raise InvalidInput(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return files


#: Single-channel modes with more than 8 bits and the value that maps to 1.0.
_WIDE_GRAY = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}


class ImageFileError(InvalidInput):
    """An image file that cannot be used as it is (unreadable, transparent, unsupported mode)."""


def _opaque_rgb(img: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB of ``img``; refuses transparency rather than dropping it (a fully transparent
    pixel has no colour to evaluate)."""
    if "transparency" in img.info and img.mode in ("P", "RGB", "L"):  # a palette or colour-key transparency
        img = img.convert("RGBA" if img.mode != "L" else "LA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = img.getchannel("A")
        # one band: getextrema() is (min, max); its annotation also covers multi-band images
        lowest = cast(tuple[int, int], alpha.getextrema())[0]
        if lowest < 255:
            raise ImageFileError(
                f"{path} has transparent pixels (alpha down to {lowest}/255); flash-wrap does not guess a "
                "background: flatten it onto one yourself (e.g. PIL Image.alpha_composite) and save it as RGB"
            )
    return img.convert("RGB")


def _crop_resize(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.Resampling.BICUBIC) if side != size else img


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Load an image, centre-crop it to a square and resize to ``size``² (bicubic).

    Colour: 8-bit RGB, grayscale (replicated to 3 channels), palette and CMYK images are converted
    to RGB; 16-bit grayscale is scaled by 1/65535 and resized in floating point (never saturated
    to white by an 8-bit conversion). Alpha: an image with any pixel below full opacity is
    refused (:class:`ImageFileError`), a fully opaque alpha channel is dropped. Unreadable,
    truncated or oversized files (PIL's decompression-bomb limit) raise :class:`ImageFileError`.

    Returns ``(3, size, size)`` float32 in [0, 1].
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                if img.mode in _WIDE_GRAY:
                    plane = np.asarray(img, dtype=np.float32) / _WIDE_GRAY[img.mode]
                    resized = _crop_resize(Image.fromarray(plane, mode="F"), size)
                    array = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
                    return torch.from_numpy(array).expand(3, size, size).contiguous()
                if img.mode == "F":
                    raise ImageFileError(f"{path} holds floating-point pixels (mode F) whose range is unknown; "
                                         "save it as an 8- or 16-bit image")
                rgb = _crop_resize(_opaque_rgb(img, path), size)
                array = np.asarray(rgb, dtype=np.float32) / 255.0
    except ImageFileError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageFileError(f"{path} is not a readable image ({type(err).__name__}: {err})") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def check_images(files: Sequence[Path], size: int) -> list[tuple[Path, str]]:
    """Load every file as :func:`load_image` would; returns ``(file, reason)`` for each one that fails.

    Run before any heavy work, so a bad file is found in seconds, not in batch 300.
    """
    bad = []
    for path in files:
        try:
            load_image(path, size)
        except ImageFileError as err:
            bad.append((path, str(err)))
    return bad


def usable_images(files: Sequence[Path], size: int, *, skip_unreadable: bool = False) -> list[Path]:
    """``files`` after :func:`check_images`: all of them, or an :class:`ImageFileError` naming every
    bad file; with ``skip_unreadable`` the good ones, with a warning naming what was skipped."""
    bad = check_images(files, size)
    if not bad:
        return list(files)
    listing = "; ".join(reason for _, reason in bad[:5]) + (f"; … {len(bad) - 5} more" if len(bad) > 5 else "")
    if len(bad) == len(files):
        raise ImageFileError(f"none of the {len(files)} images can be used: {listing}")
    if not skip_unreadable:
        raise ImageFileError(f"{len(bad)} of {len(files)} images cannot be used: {listing} "
                             "(fix or remove them, or pass --skip-unreadable)")
    log.warning("skipping %d unusable image(s): %s", len(bad), listing)
    skipped = {path for path, _ in bad}
    return [f for f in files if f not in skipped]


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


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] → ``(B, H, W, 3)`` uint8 (rounded; values outside [0, 1] are clipped)."""
    return (images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write one ``(3, H, W)`` image in [0, 1] as an 8-bit PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image[None])[0]).save(path)
    return path
