"""Learning-free nonlinear motion blur "nlmotion" (ALGORITHMS.md §6, [OURS])."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import check_batch, per_sample
from ..errors import InvalidInput
from ._filters import (
    RowIndex,
    container_radius,
    filter_per_sample,
    reflect_pad,
    take_rows,
    working_dtype,
)
from .base import DEFAULT_NOISE_STD, Operator

#: Sub-steps of the camera trajectory.
TRAJECTORY_STEPS = 256
#: Camera response g(u) = (u + ε)^{1/γ} − ε^{1/γ}; ε keeps g smooth (finite slope) at 0.
CRF_GAMMA = 2.2
CRF_EPS = 1e-4
_CRF_OFFSET = CRF_EPS ** (1 / CRF_GAMMA)


def crf(u: torch.Tensor) -> torch.Tensor:
    """Linear intensity ``u >= 0`` → display value ``g(u)``, with ``g(0) = 0``."""
    return (u + CRF_EPS) ** (1 / CRF_GAMMA) - _CRF_OFFSET


def crf_inverse(v: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`crf` for ``v >= 0``."""
    return (v + _CRF_OFFSET) ** CRF_GAMMA - CRF_EPS


def trajectory(seed: int, length: float, turning: float, steps: int = TRAJECTORY_STEPS) -> torch.Tensor:
    """Random-walk camera path: ``(steps + 1, 2)`` float64 ``(x, y)`` points in px, starting at 0.

    Heading θ_0 ~ U[0, 2π), θ_{k+1} = θ_k + δ_k with δ_k ~ N(0, (turning/√steps)²), step
    ``length/steps``. Standard draws come from ``seed`` and are scaled afterwards, so the path is
    a deterministic, continuous function of ``(length, turning)`` for a fixed seed.
    """
    gen = torch.Generator().manual_seed(seed)
    heading0 = 2 * math.pi * torch.rand((), generator=gen, dtype=torch.float64)
    turns = torch.randn(steps, generator=gen, dtype=torch.float64) * (turning / math.sqrt(steps))
    heading = heading0 + torch.cumsum(turns, dim=0)
    moves = (length / steps) * torch.stack((heading.cos(), heading.sin()), dim=1)
    return torch.cat((torch.zeros(1, 2, dtype=torch.float64), torch.cumsum(moves, dim=0)))


def splat(points: torch.Tensor, radius: int) -> torch.Tensor:
    """Bilinearly splat ``(N, 2)`` points, centred at their centroid, onto a ``(2r+1)²`` grid.

    Returns:
        ``(2r+1, 2r+1)`` kernel indexed ``[y, x]``, nonnegative, summing to 1.
    """
    size = 2 * radius + 1
    pos = points - points.mean(dim=0) + radius
    corner = pos.floor()
    frac = pos - corner
    kernel = torch.zeros(size * size, dtype=pos.dtype)
    for dx in (0, 1):
        for dy in (0, 1):
            weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            col, row = corner[:, 0] + dx, corner[:, 1] + dy
            inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
            kernel.index_add_(0, (row * size + col)[inside].long(), weight[inside])
    # Dropping mass silently would bias the blur; a path that leaves the container is an error.
    if float(kernel.sum()) < points.shape[0] * (1 - 1e-9):
        raise InvalidInput(
            f"motion path leaves the {size}x{size} kernel container; use a shorter length "
            f"(at most about {radius} px at this image size)"
        )
    return (kernel / kernel.sum()).view(size, size)


def _check_seeds(seed: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    seeds = torch.as_tensor(seed).reshape(-1)
    if seeds.is_floating_point() and not bool((seeds == seeds.round()).all()):
        raise InvalidInput(f"seed must hold integers, got {seeds.tolist()}")
    if seeds.numel() == 0:
        raise InvalidInput("seed is empty")
    return seeds.to("cpu", torch.int64)


class NonlinearMotionBlur(Operator):
    """Camera-shake blur applied in linear intensity: ``A(x) = g(k ⊛ g⁻¹(clip(x, 0, 1)))``.

    A learning-free substitute for the paper's nonlinear blur. The paper (and DPS) used the learned
    GOPRO blur network of Tran et al. 2021, which we do not ship; results on this task will **not**
    match the paper's NL-blur numbers. Per sample, a random-walk trajectory (:func:`trajectory`)
    is splatted into a ``(2r+1)²`` kernel, ``r = round(30·H/256)``, and applied depthwise on RGB
    with reflect padding ``r``; ``g`` is the gamma-2.2 camera response (:func:`crf`).

    Args:
        length: per-sample path length in the image's own pixels, ``>= 0``.
        turning: per-sample total turning κ in radians, ``>= 0``.
        seed: per-sample integer seed of the trajectory's random draws.
        noise_std: σ_y of the measurement noise on [0, 1] images.

    Each of ``length``, ``turning``, ``seed`` is a scalar or holds one value per sample.
    """

    task = "motion-blur"
    #: The camera response makes the map nonlinear: no transpose, :meth:`adjoint` raises.
    linear = False

    def __init__(
        self,
        length: float | Sequence[float] | torch.Tensor,
        turning: float | Sequence[float] | torch.Tensor,
        seed: int | Sequence[int] | torch.Tensor,
        noise_std: float = DEFAULT_NOISE_STD,
    ) -> None:
        super().__init__(noise_std)
        self.length = per_sample(length, "length", minimum=0.0).detach().cpu()
        self.turning = per_sample(turning, "turning", minimum=0.0).detach().cpu()
        self.seed = _check_seeds(seed)
        counts = {"length": len(self.length), "turning": len(self.turning), "seed": len(self.seed)}
        batches = set(counts.values()) - {1}
        if len(batches) > 1:
            raise InvalidInput(f"length, turning and seed must each hold 1 or B values, got {counts}")
        self._batch = batches.pop() if batches else 1
        self._kernels: dict[int, torch.Tensor] = {}
        self._cache: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    @property
    def batch_size(self) -> int:
        return self._batch

    @property
    def severity(self) -> torch.Tensor:
        """Path length in pixels, ``(batch_size,)``."""
        return self.length.expand(self._batch).clone()

    def _row(self, param: torch.Tensor, i: int) -> float | int:
        return param[i if len(param) > 1 else 0].item()

    def _kernels64(self, image_height: int) -> torch.Tensor:
        if image_height not in self._kernels:
            radius = container_radius(image_height)
            paths = [
                trajectory(int(self._row(self.seed, i)), self._row(self.length, i), self._row(self.turning, i))
                for i in range(self._batch)
            ]
            self._kernels[image_height] = torch.stack([splat(path, radius) for path in paths])
        return self._kernels[image_height]

    def kernels(self, image_size: int) -> torch.Tensor:
        """Per-sample blur kernels for images ``image_size`` px high: ``(batch_size, k, k)``,
        ``k = 2·round(30·H/256) + 1``, nonnegative, each summing to 1, indexed ``[y, x]``."""
        return self._kernels64(int(image_size)).to(torch.get_default_dtype())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blurred ``(B, 3, H, W)`` in [0, 1], same device and dtype as ``x``."""
        check_batch(self.batch_size, x.shape[0], "NonlinearMotionBlur parameters")
        dtype = working_dtype(x)
        key = (x.device, dtype, x.shape[-2])
        if key not in self._cache:
            # conv2d correlates; flipping makes it the convolution k ⊛ x.
            flipped = self._kernels64(x.shape[-2]).flip(-2, -1)
            self._cache[key] = flipped.to(device=x.device, dtype=dtype)
        kernel = self._cache[key]
        linear = crf_inverse(x.to(dtype).clamp(0, 1))
        padded = reflect_pad(linear, (kernel.shape[-1] - 1) // 2, "NonlinearMotionBlur")
        return crf(filter_per_sample(padded, kernel)).to(x.dtype)

    def select(self, index: RowIndex) -> NonlinearMotionBlur:
        return NonlinearMotionBlur(
            take_rows(self.length, index),
            take_rows(self.turning, index),
            take_rows(self.seed, index),
            self.noise_std,
        )

    @classmethod
    def join_rows(cls, parts: Sequence[NonlinearMotionBlur]) -> NonlinearMotionBlur:
        """Every part's path parameters in one operator."""
        return NonlinearMotionBlur(
            torch.cat([part.length for part in parts]),
            torch.cat([part.turning for part in parts]),
            torch.cat([part.seed for part in parts]),
            parts[0].noise_std,
        )
