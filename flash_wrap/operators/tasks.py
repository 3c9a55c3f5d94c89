"""Tasks: an operator family plus the map from a normalized severity level t ∈ [0, 1] to its
physical parameters, and the level ranges used for training and evaluation (ALGORITHMS.md §2, §6).

Physical parameters are stated at 256² and scale with ``image_size / 256``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .._checks import per_sample
from ..errors import InvalidInput
from ._filters import REFERENCE_SIZE
from .base import DEFAULT_NOISE_STD, Operator
from .gaussian_blur import GaussianBlur
from .inpainting import RandomInpainting
from .motion_blur import NonlinearMotionBlur
from .super_resolution import SuperResolution

#: ``(levels (B,), image_size, noise_std, seeds (B,) int64) -> Operator``
Builder = Callable[[torch.Tensor, int, float, torch.Tensor], Operator]

#: Seeds drawn by :meth:`Task.sample` lie in [0, SEED_BOUND).
SEED_BOUND = 2**31 - 1


def _check_range(level_range: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in level_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise InvalidInput(f"{name} must satisfy 0 <= low <= high <= 1, got {level_range!r}")
    return lo, hi


@dataclass(frozen=True)
class Task:
    """A degradation family with its severity parametrization.

    Attributes:
        name: task name, equal to the ``task`` attribute of the operators it builds.
        summary: one line describing the level → parameter map.
        eval_range: levels t drawn at evaluation, ``(low, high)`` within [0, 1].
        train_range: levels t drawn for severity-encoder training.
        build: makes the operator from levels, image size, noise level and seeds.
    """

    name: str
    summary: str
    eval_range: tuple[float, float]
    train_range: tuple[float, float]
    build: Builder = field(repr=False, compare=False)

    def operator(
        self,
        level: float | Sequence[float] | torch.Tensor,
        image_size: int,
        *,
        noise_std: float = DEFAULT_NOISE_STD,
        seed: int | Sequence[int] | torch.Tensor | None = None,
    ) -> Operator:
        """The operator for levels ``t`` ∈ [0, 1] (scalar or ``(B,)``) on ``image_size``² images.

        ``seed`` (``(B,)`` integers, default ``0..B-1``) picks the random kernels of motion blur;
        other tasks ignore it.
        """
        levels = per_sample(level, "level", minimum=0.0, maximum=1.0)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise InvalidInput(f"image_size must be a positive integer (pixels), got {image_size!r}")
        seeds = torch.arange(len(levels)) if seed is None else torch.as_tensor(seed)
        return self.build(levels, image_size, noise_std, seeds)

    def sample(
        self,
        batch: int,
        image_size: int,
        generator: torch.Generator,
        *,
        noise_std: float = DEFAULT_NOISE_STD,
        level_range: tuple[float, float] | None = None,
    ) -> tuple[Operator, torch.Tensor]:
        """Draw ``t ~ U[level_range or train_range]`` per sample, and motion-blur seeds, from
        ``generator``; return the operator and the levels ``(batch,)``."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(f"batch must be a positive integer, got {batch!r}")
        lo, hi = _check_range(level_range or self.train_range, "level_range")
        draw = torch.rand(batch, generator=generator, device=generator.device, dtype=torch.float64)
        levels = (lo + (hi - lo) * draw.cpu()).to(torch.get_default_dtype())
        # Drawn for every task so a generator advances the same way whatever the task.
        seeds = torch.randint(0, SEED_BOUND, (batch,), generator=generator, device=generator.device)
        return self.operator(levels, image_size, noise_std=noise_std, seed=seeds.cpu()), levels


def _scale(image_size: int) -> float:
    return image_size / REFERENCE_SIZE


def _gaussian_blur(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return GaussianBlur((0.3 + 2.7 * t) * _scale(size), noise_std)


def _random_inpainting(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return RandomInpainting(0.8 * t, noise_std)


def _motion_blur(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return NonlinearMotionBlur((2 + 30 * t) * _scale(size), 1.5 + 2.0 * t, seed, noise_std)


def _super_resolution(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return SuperResolution(4, noise_std)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("gaussian-blur", "sigma = (0.3 + 2.7 t) * H/256 px", (0.0, 1.0), (0.0, 1.0), _gaussian_blur),
        Task("random-inpainting", "missing fraction = 0.8 t (nested shared mask)", (0.875, 1.0), (0.0, 1.0),
             _random_inpainting),
        Task("motion-blur", "nlmotion: length = (2 + 30 t) * H/256 px, turning = 1.5 + 2 t rad",
             (0.0, 1.0), (0.0, 1.0), _motion_blur),
        Task("super-resolution", "bicubic x4 downsampling; t ignored", (0.0, 1.0), (0.0, 1.0),
             _super_resolution),
    )
}


def task_names() -> list[str]:
    """Names of the known tasks."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise InvalidInput(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
