"""What a solver's ``step`` receives: the active rows of the batch at one grid index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ._random import GeneratorArg
from .samplers import Sampler

if TYPE_CHECKING:
    from .models import LatentDiffusion
    from .operators import Operator


@dataclass
class StepState:
    """One reverse step for the ``b`` active rows of a batch.

    Samples that have not reached their start step, and samples that are done, are not in the
    state at all: every row here is active (``active`` is all True, kept for observers).

    Attributes:
        z: ``(b, C, h, w)`` current latents at level ``t``.
        index: ``(b,)`` long grid index ``k`` of the sampler (the step maps level ``g_k`` to ``g_{k−1}``).
        t: ``(b,)`` long timestep ``g_k``; ``t_prev``: ``(b,)`` ``g_{k−1}``, −1 below ``g_0``.
        active: ``(b,)`` bool.
        rows: ``(b,)`` long positions of these rows in the caller's batch.
        y: ``(b, C', h', w')`` measurements in [0, 1] image units (noisy, unclamped).
        operator: forward model restricted to these rows.
        model: the latent diffusion bundle.
        sampler: the prior's grid and update rule.
        params: the solver's hyper-parameters resolved for this task (e.g. ``{"eta": 1.0}``).
        generator: noise source for these rows (one, or one per row).
    """

    z: torch.Tensor
    index: torch.Tensor
    t: torch.Tensor
    t_prev: torch.Tensor
    active: torch.Tensor
    rows: torch.Tensor
    y: torch.Tensor
    operator: Operator
    model: LatentDiffusion
    sampler: Sampler
    params: dict[str, Any]
    generator: GeneratorArg = None
    denoiser_calls: int = field(default=0)

    def predict_noise(self, z: torch.Tensor) -> torch.Tensor:
        """ε_θ(z, t) for these rows; the one counted way to call the denoiser (1 NFE each)."""
        self.denoiser_calls += 1
        return self.model.predict_noise(z, self.t)
