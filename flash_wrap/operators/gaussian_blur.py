"""Gaussian blur with a per-sample standard deviation (ALGORITHMS.md §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_batch, per_sample
from ..errors import InvalidInput
from ._filters import RowIndex, container_radius, filter_per_sample, reflect_pad, take_rows, working_dtype
from .base import DEFAULT_NOISE_STD, Operator


def gaussian_kernels_1d(sigma: torch.Tensor, truncate: float, max_radius: int) -> torch.Tensor:
    """Normalized 1-D Gaussians, one per row of ``sigma``, as scipy's ``gaussian_filter`` builds them.

    Row ``i`` is truncated at radius ``min(⌊truncate·σ_i + 0.5⌋, max_radius)`` and zero-padded to the
    batch's largest radius ``R``, so a sample filters exactly as it would alone.

    Returns:
        ``(len(sigma), 2R + 1)`` float64, each row summing to 1; σ = 0 gives a unit impulse.
    """
    sigma = sigma.detach().to("cpu", torch.float64)
    radius = torch.floor(truncate * sigma + 0.5).clamp(max=max_radius)
    big = int(radius.max())
    offsets = torch.arange(-big, big + 1, dtype=torch.float64)
    # Clamping σ keeps σ = 0 finite: every offset but 0 then gets exp(-inf) = 0.
    scaled = offsets / sigma.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    weights = torch.exp(-0.5 * scaled**2) * (offsets.abs() <= radius[:, None])
    return weights / weights.sum(dim=1, keepdim=True)


class GaussianBlur(Operator):
    """Isotropic Gaussian blur, depthwise on RGB, with reflect padding; output has the input's size.

    The separable kernel matches ``scipy.ndimage.gaussian_filter(·, σ, truncate=truncate)`` (6.0 in
    the official code, ALGORITHMS.md §6). The map is linear and has a transpose (:meth:`adjoint`).
    Its radius is capped at the official 61×61 container,
    ``round(30·H/256)`` px (rounded half up), and renormalized; at 256² and σ ≤ 3 the cap never
    binds.

    Args:
        sigma: per-sample standard deviation in the image's own pixels, ``>= 0`` (0 is the
            identity); a scalar or ``(B,)``, length 1 shared by any batch.
        noise_std: σ_y of the measurement noise on [0, 1] images.
        truncate: kernel radius in standard deviations.
    """

    task = "gaussian-blur"
    #: Linear; :meth:`adjoint` is the exact vector-Jacobian product of :meth:`forward` (the
    #: transposed depthwise convolution, with the reflect-padded borders folded back onto the
    #: pixels they mirror), see :meth:`Operator.adjoint`.
    linear = True

    def __init__(
        self,
        sigma: float | Sequence[float] | torch.Tensor,
        noise_std: float = DEFAULT_NOISE_STD,
        truncate: float = 6.0,
    ) -> None:
        super().__init__(noise_std)
        if not truncate > 0:
            raise InvalidInput(f"truncate must be positive, got {truncate!r}")
        self.sigma = per_sample(sigma, "sigma", minimum=0.0).detach().cpu()
        self.truncate = float(truncate)
        self._cache: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    @property
    def batch_size(self) -> int:
        return self.sigma.shape[0]

    @property
    def severity(self) -> torch.Tensor:
        """σ in pixels, ``(batch_size,)``."""
        return self.sigma.clone()

    def kernels_1d(self, image_height: int) -> torch.Tensor:
        """Per-sample 1-D kernels used at ``image_height``: ``(batch_size, 2R + 1)`` float64."""
        return gaussian_kernels_1d(self.sigma, self.truncate, container_radius(image_height))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blurred ``(B, 3, H, W)``, same device and dtype as ``x``."""
        check_batch(self.batch_size, x.shape[0], "GaussianBlur sigma")
        dtype = working_dtype(x)
        key = (x.device, dtype, x.shape[-2])
        if key not in self._cache:
            self._cache[key] = self.kernels_1d(x.shape[-2]).to(device=x.device, dtype=dtype)
        kernel = self._cache[key]
        padded = reflect_pad(x.to(dtype), (kernel.shape[-1] - 1) // 2, "GaussianBlur")
        rows = filter_per_sample(padded, kernel[:, :, None])
        return filter_per_sample(rows, kernel[:, None, :]).to(x.dtype)

    def select(self, index: RowIndex) -> GaussianBlur:
        return GaussianBlur(take_rows(self.sigma, index), self.noise_std, self.truncate)

    @classmethod
    def join_rows(cls, parts: Sequence[GaussianBlur]) -> GaussianBlur | None:
        """Every part's σ in one operator (same ``truncate``), else ``None``."""
        if len({part.truncate for part in parts}) > 1:
            return None
        return GaussianBlur(torch.cat([part.sigma for part in parts]), parts[0].noise_std, parts[0].truncate)
