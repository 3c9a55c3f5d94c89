"""The ``box-inpainting`` task: level t ∈ [0, 1] → a centred hole of side ``0.25 + 0.5 t``."""

from __future__ import annotations

import torch

from flash_wrap import hookimpl
from flash_wrap.operators import Operator, Task

from .operator import BoxInpainting


def _build(t: torch.Tensor, image_size: int, noise_std: float, seeds: torch.Tensor) -> Operator:
    return BoxInpainting(0.25 + 0.5 * t, noise_std, image_size)


BOX_INPAINTING = Task(
    "box-inpainting", "centred square hole, side = (0.25 + 0.5 t) * H", (0.0, 1.0), (0.0, 1.0), _build,
    severity_format="{:.0%} missing",
)


@hookimpl
def flash_wrap_register_tasks(register):
    register(BOX_INPAINTING)
