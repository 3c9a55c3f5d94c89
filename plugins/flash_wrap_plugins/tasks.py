"""The four built-in tasks, registered through ``flash_wrap_register_tasks`` like a third party's.

Levels t ∈ [0, 1] map to physical parameters stated at 256² that scale with ``image_size / 256``
(flash_wrap/ALGORITHMS.md §6). pyproject.toml lists this module once per task name in the
``flash_wrap`` entry-point group, so each name can be checked from the metadata alone.
"""

from __future__ import annotations

import torch

from flash_wrap import hookimpl, operators
from flash_wrap.operators import Operator, Task


def _scale(image_size: int) -> float:
    return image_size / operators.REFERENCE_SIZE


def _gaussian_blur(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return operators.GaussianBlur((0.3 + 2.7 * t) * _scale(size), noise_std)


def _random_inpainting(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return operators.RandomInpainting(0.8 * t, noise_std)


def _motion_blur(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return operators.NonlinearMotionBlur((2 + 30 * t) * _scale(size), 1.5 + 2.0 * t, seed, noise_std)


def _super_resolution(t: torch.Tensor, size: int, noise_std: float, seed: torch.Tensor) -> Operator:
    return operators.SuperResolution(4, noise_std)


# The inverse maps (Task.level_of): the level t of an operator's samples, beyond [0, 1] when its
# parameters lie outside the task's map; None for an operator the map does not describe.
def _gaussian_blur_level(op: Operator, size: int) -> torch.Tensor | None:
    if not isinstance(op, operators.GaussianBlur):
        return None
    return (op.sigma.double() / _scale(size) - 0.3) / 2.7


def _random_inpainting_level(op: Operator, size: int) -> torch.Tensor | None:
    if not isinstance(op, operators.RandomInpainting) or op.missing_ratio is None:
        return None  # an explicit mask: its pattern, not only its fraction, is what the encoder saw or not
    return op.missing_ratio.double() / 0.8


def _motion_blur_level(op: Operator, size: int) -> torch.Tensor | None:
    if not isinstance(op, operators.NonlinearMotionBlur):
        return None
    by_length = (op.length.double() / _scale(size) - 2) / 30
    by_turning = (op.turning.double() - 1.5) / 2.0
    # the level farther outside [0, 1] of the two parameters (they move together along the map)
    return torch.where((by_length - 0.5).abs() >= (by_turning - 0.5).abs(), by_length, by_turning)


def _super_resolution_level(op: Operator, size: int) -> torch.Tensor | None:
    if not isinstance(op, operators.SuperResolution):
        return None
    # ×4 is the task's only severity; any other factor is one the encoder never saw
    return torch.full((op.batch_size,), 0.0 if op.factor == 4 else float("inf"), dtype=torch.float64)


GAUSSIAN_BLUR = Task(
    "gaussian-blur", "sigma = (0.3 + 2.7 t) * H/256 px", (0.0, 1.0), (0.0, 1.0), _gaussian_blur,
    # the training range's two ends, σ = 0.3 and 3.0 px at 256²
    demo_levels=(0.0, 1.0), severity_format="σ {:.2f} px", official_operators=("gaussian_blur",),
    level_of=_gaussian_blur_level,
)
RANDOM_INPAINTING = Task(
    "random-inpainting", "missing fraction = 0.8 t (nested shared mask)", (0.875, 1.0), (0.0, 1.0),
    _random_inpainting,
    # 30 % and 80 % of the pixels missing
    demo_levels=(0.375, 1.0), severity_format="{:.0%} missing", official_operators=("inpainting/random",),
    level_of=_random_inpainting_level,
)
MOTION_BLUR = Task(
    "motion-blur", "nlmotion: length = (2 + 30 t) * H/256 px, turning = 1.5 + 2 t rad", (0.0, 1.0), (0.0, 1.0),
    _motion_blur,
    # the official nonlinear_blur (bkse's KernelWizard) is what this task stands in for
    demo_levels=(0.0, 1.0), severity_format="length {:.1f} px", official_operators=("nonlinear_blur",),
    level_of=_motion_blur_level,
)
SUPER_RESOLUTION = Task(
    "super-resolution", "bicubic x4 downsampling; t ignored", (0.0, 1.0), (0.0, 1.0), _super_resolution,
    # ×4 whatever t: a single severity
    demo_levels=(0.0,), severity_format="×{:.0f} bicubic", level_of=_super_resolution_level,
)


@hookimpl
def flash_wrap_register_tasks(register):
    for task in (GAUSSIAN_BLUR, RANDOM_INPAINTING, MOTION_BLUR, SUPER_RESOLUTION):
        register(task)
