"""Centred box inpainting: ``A(x) = m ⊙ x`` with ``m`` zero in a centred square, per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flash_wrap.operators import DEFAULT_NOISE_STD, Operator


class BoxInpainting(Operator):
    """A centred square hole of side ``side · H`` by ``side · W`` pixels, shared by the 3 channels.

    A pixel is missing when its centre lies inside the square; the actual missing fraction
    (``severity``) grows with ``side`` (about ``side²``). The map is a diagonal 0/1 mask, so it is
    linear and its own adjoint.

    Args:
        side: per-sample side of the hole as a fraction of the image, in [0, 1], scalar or ``(B,)``.
        noise_std: σ_y of the measurement noise on [0, 1] images.
        image_size: the images' ``H`` (= ``W``) the severity is reported for.
    """

    task = "box-inpainting"
    linear = True

    def __init__(self, side: float | Sequence[float] | torch.Tensor, noise_std: float = DEFAULT_NOISE_STD,
                 image_size: int = 256) -> None:
        super().__init__(noise_std)
        side = torch.as_tensor(side, dtype=torch.float64).detach().cpu().reshape(-1)
        if side.numel() == 0 or not bool(((side >= 0) & (side <= 1)).all()):
            raise ValueError(f"BoxInpainting side must be fractions in [0, 1], one per sample; got {side.tolist()}")
        self.side = side
        self.image_size = int(image_size)

    @property
    def batch_size(self) -> int:
        return self.side.shape[0]

    @property
    def severity(self) -> torch.Tensor:
        """The missing fraction of each mask at ``image_size``², ``(batch_size,)``."""
        mask = self.mask((self.image_size, self.image_size), torch.device("cpu"), torch.float64)
        return (1 - mask.mean(dim=(1, 2, 3))).to(torch.get_default_dtype())

    def mask(self, size: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``(batch_size, 1, H, W)``: 1 where a pixel is kept, 0 in the hole."""
        h, w = size
        rows = ((torch.arange(h, dtype=torch.float64) + 0.5) / h - 0.5).abs().view(1, 1, h, 1)
        cols = ((torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5).abs().view(1, 1, 1, w)
        half = self.side.view(-1, 1, 1, 1) / 2
        hole = (rows < half) & (cols < half)
        return (~hole).to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masked ``(B, 3, H, W)``, same device and dtype as ``x``."""
        if self.batch_size not in (1, x.shape[0]):
            raise ValueError(f"BoxInpainting has {self.batch_size} sides for a batch of {x.shape[0]} images")
        return x * self.mask(tuple(x.shape[-2:]), x.device, x.dtype)

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        """``Aᵀ(u) = m ⊙ u``: a 0/1 diagonal map is its own transpose."""
        return self.forward(u)

    def select(self, index: torch.Tensor | slice | list[int]) -> BoxInpainting:
        side = self.side if self.batch_size == 1 else self.side[index]
        return BoxInpainting(side, self.noise_std, self.image_size)
