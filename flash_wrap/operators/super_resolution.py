"""Bicubic ×f super-resolution (the DPS/ReSample/PSLD ×4 task; optional for Flash, ALGORITHMS.md §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import InvalidInput
from ._filters import RowIndex, working_dtype
from .base import DEFAULT_NOISE_STD, Operator


class SuperResolution(Operator):
    """``A(x)`` = antialiased bicubic downsampling by an integer ``factor``: ``(B,3,H,W)`` →
    ``(B,3,H/f,W/f)``; ``H`` and ``W`` must be divisible by ``factor``.

    SR has no severity parameter of its own: the operator is shared by any batch
    (``batch_size == 1``) and ``severity`` is the factor, constant across samples.

    Args:
        factor: integer downsampling factor ``>= 1``.
        noise_std: σ_y of the measurement noise on [0, 1] images.
    """

    task = "super-resolution"
    #: Linear; :meth:`adjoint` (``(B,3,h,w)`` → ``(B,3,f·h,f·w)``) is the exact vector-Jacobian
    #: product of the antialiased bicubic downsampling, see :meth:`Operator.adjoint`.
    linear = True

    def __init__(self, factor: int = 4, noise_std: float = DEFAULT_NOISE_STD) -> None:
        super().__init__(noise_std)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise InvalidInput(f"factor must be an integer >= 1, got {factor!r}")
        self.factor = factor

    @property
    def batch_size(self) -> int:
        return 1

    @property
    def severity(self) -> torch.Tensor:
        """``tensor([factor])``: the factor, since SR has no per-sample severity."""
        return torch.tensor([float(self.factor)])

    def _low_res(self, h: int, w: int) -> tuple[int, int]:
        if h % self.factor or w % self.factor:
            raise InvalidInput(
                f"SuperResolution factor {self.factor} must divide the image size, got {h}x{w}"
            )
        return h // self.factor, w // self.factor

    def measurement_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        return (c, *self._low_res(h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Low-resolution ``(B, 3, H/f, W/f)``, same device and dtype as ``x``."""
        size = self._low_res(*x.shape[-2:])
        work = x.to(working_dtype(x))
        return F.interpolate(work, size=size, mode="bicubic", align_corners=False, antialias=True).to(x.dtype)

    def image_shape(self, measurement_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = measurement_shape
        return (c, h * self.factor, w * self.factor)

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling (no antialias) of ``(B, 3, h, w)`` back to ``(B, 3, f·h, f·w)``;
        only the severity encoder's input, not a reconstruction."""
        size = (y.shape[-2] * self.factor, y.shape[-1] * self.factor)
        work = y.to(working_dtype(y))
        return F.interpolate(work, size=size, mode="bicubic", align_corners=False).to(y.dtype)

    def select(self, index: RowIndex) -> SuperResolution:
        return SuperResolution(self.factor, self.noise_std)

    @classmethod
    def join_rows(cls, parts: Sequence[SuperResolution]) -> SuperResolution | None:
        """One factor is one operator already (shared by any batch), else ``None``."""
        return parts[0] if len({part.factor for part in parts}) == 1 else None
