"""A minimal operator for tests: linear, shared by the batch, belonging to no task."""

from __future__ import annotations

import torch

from ..operators import Operator


class Darken(Operator):
    """``A(x) = x / 2`` on ``(B, 3, H, W)`` images in [0, 1]; its own adjoint. It has no task, so
    no severity encoder applies to it (``Flash`` must refuse it) and solvers use ``fallback``."""

    linear = True

    @property
    def batch_size(self) -> int:
        return 1

    @property
    def severity(self) -> torch.Tensor:
        return torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        return 0.5 * u

    def select(self, index):
        return self
