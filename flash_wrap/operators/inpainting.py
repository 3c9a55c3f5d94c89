"""Random-pixel inpainting: keep a random subset of pixels, zero the rest (ALGORITHMS.md §6)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .._checks import check_batch, check_tensor, per_sample
from ..errors import InvalidInput
from ._filters import RowIndex, take_rows
from .base import DEFAULT_NOISE_STD, Operator

ImageSize = int | tuple[int, int]


def _hw(image_size: ImageSize) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return int(h), int(w)


@functools.lru_cache(maxsize=8)
def _field(seed: int, h: int, w: int) -> torch.Tensor:
    """The shared uniform field ``U`` in [0, 1)^{H×W}; read-only (cached across operators)."""
    return torch.rand((h, w), generator=torch.Generator().manual_seed(seed))


def _check_mask(mask: object) -> torch.Tensor:
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
        mask = mask.to(torch.get_default_dtype())
    mask = check_tensor(mask, "mask")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise InvalidInput(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise InvalidInput("mask values must be 0 (missing) or 1 (kept); got other values")
    return mask.detach().to("cpu", torch.get_default_dtype())


class RandomInpainting(Operator):
    """``A(x) = m ⊙ x``: pixel masking shared by the 3 channels, missing pixels set to 0.

    By default the mask comes from one uniform field ``U`` drawn with ``field_seed`` at the image's
    resolution and shared by all images, as in the official code: pixel kept iff
    ``U < 1 − missing_ratio``. Masks are therefore nested in the ratio, which keeps severity
    monotone. Noise is added to every pixel, masked ones included (:meth:`Operator.measure`).

    Args:
        missing_ratio: per-sample fraction of missing pixels in [0, 1], scalar or ``(B,)``.
        noise_std: σ_y of the measurement noise on [0, 1] images.
        mask: instead of ``missing_ratio``, an explicit ``(B or 1, 1, H, W)`` mask, bool or 0/1
            float, 1 = kept; it fixes the image size.
        field_seed: seed of the shared field.
    """

    task = "random-inpainting"
    linear = True

    def __init__(
        self,
        missing_ratio: float | Sequence[float] | torch.Tensor | None = None,
        noise_std: float = DEFAULT_NOISE_STD,
        mask: torch.Tensor | None = None,
        field_seed: int = 0,
    ) -> None:
        super().__init__(noise_std)
        if (missing_ratio is None) == (mask is None):
            raise InvalidInput("RandomInpainting needs exactly one of missing_ratio or mask")
        self.field_seed = int(field_seed)
        self.mask = None if mask is None else _check_mask(mask)
        self.missing_ratio = (
            None
            if missing_ratio is None
            else per_sample(missing_ratio, "missing_ratio", minimum=0.0, maximum=1.0).detach().cpu()
        )
        self._cache: dict[tuple[torch.device, torch.dtype, int, int], torch.Tensor] = {}

    @classmethod
    def per_image(
        cls,
        missing_ratio: float | Sequence[float] | torch.Tensor,
        image_size: ImageSize,
        generator: torch.Generator,
        noise_std: float = DEFAULT_NOISE_STD,
        *,
        batch: int | None = None,
    ) -> RandomInpainting:
        """An independent random mask per image (the DPS/ReSample style), drawn from ``generator``.

        ``batch`` broadcasts a scalar ratio to that many images; by default one mask per ratio.
        ``severity`` is then each mask's actual missing fraction.
        """
        ratio = per_sample(missing_ratio, "missing_ratio", minimum=0.0, maximum=1.0)
        n = ratio.shape[0] if batch is None else batch
        check_batch(ratio.shape[0], n, "missing_ratio")
        field = torch.rand((n, 1, *_hw(image_size)), generator=generator, device=generator.device).cpu()
        return cls(mask=field < 1 - ratio.view(-1, 1, 1, 1), noise_std=noise_std)

    @property
    def _ratio(self) -> torch.Tensor:
        """``missing_ratio`` where there is no explicit mask (the constructor takes exactly one)."""
        assert self.missing_ratio is not None
        return self.missing_ratio

    @property
    def batch_size(self) -> int:
        return (self.mask if self.mask is not None else self._ratio).shape[0]

    @property
    def severity(self) -> torch.Tensor:
        """Missing fraction in [0, 1], ``(batch_size,)``: nominal ratio, or the explicit mask's."""
        if self.mask is not None:
            return 1 - self.mask.mean(dim=(1, 2, 3))
        return self._ratio.clone()

    def mask_for(self, image_size: ImageSize) -> torch.Tensor:
        """The ``(batch_size, 1, H, W)`` float mask on CPU for images of ``image_size``; 1 = kept."""
        h, w = _hw(image_size)
        if self.mask is not None:
            if tuple(self.mask.shape[-2:]) != (h, w):
                raise InvalidInput(f"mask of shape {tuple(self.mask.shape)} does not fit {h}x{w} images")
            return self.mask.clone()
        keep = _field(self.field_seed, h, w) < 1 - self._ratio.view(-1, 1, 1, 1)
        return keep.to(torch.get_default_dtype())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masked ``(B, 3, H, W)``, same device and dtype as ``x``."""
        if self.mask is not None and self.mask.shape[0] not in (1, x.shape[0]):
            raise InvalidInput(
                f"mask of shape {tuple(self.mask.shape)} does not fit images of shape {tuple(x.shape)}"
            )
        check_batch(self.batch_size, x.shape[0], "RandomInpainting missing_ratio")
        key = (x.device, x.dtype, x.shape[-2], x.shape[-1])
        if key not in self._cache:
            self._cache[key] = self.mask_for((x.shape[-2], x.shape[-1])).to(device=x.device, dtype=x.dtype)
        return x * self._cache[key]

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        """``Aᵀ(u) = m ⊙ u``: masking is a diagonal 0/1 map, hence self-adjoint (explicit formula)."""
        return self.forward(u)

    def select(self, index: RowIndex) -> RandomInpainting:
        if self.mask is not None:
            return RandomInpainting(mask=take_rows(self.mask, index), noise_std=self.noise_std)
        ratio = take_rows(self._ratio, index)
        return RandomInpainting(ratio, self.noise_std, field_seed=self.field_seed)

    @classmethod
    def join_rows(cls, parts: Sequence[RandomInpainting]) -> RandomInpainting | None:
        """Every part's missing ratio (one shared field) or every part's mask (one size) in one
        operator, else ``None``."""
        noise_std = parts[0].noise_std
        ratios = [part.missing_ratio for part in parts if part.missing_ratio is not None]
        if len(ratios) == len(parts) and len({part.field_seed for part in parts}) == 1:
            return RandomInpainting(torch.cat(ratios), noise_std, field_seed=parts[0].field_seed)
        masks = [part.mask for part in parts if part.mask is not None]
        if len(masks) == len(parts) and len({tuple(m.shape[1:]) for m in masks}) == 1:
            return RandomInpainting(mask=torch.cat(masks), noise_std=noise_std)
        return None
