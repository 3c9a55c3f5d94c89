"""What a solver's ``step`` receives: the active rows of the batch at one grid index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .rng import GeneratorArg
from .samplers import Sampler

if TYPE_CHECKING:
    from .models import LatentDiffusion, Prediction
    from .operators import Operator


@dataclass
class StepState:
    """One reverse step for the ``b`` active rows of a batch.

    Samples that have not reached their start step, and samples that are done, are not in the
    state at all: every row here is being stepped. ``z`` is the step's input; the runner never
    writes into it, so an observer called after the step sees the input beside the output.

    Attributes:
        z: ``(b, C, h, w)`` current latents at level ``t``.
        index: ``(b,)`` long grid index ``k`` of the sampler (the step maps level ``g_k`` to ``g_{k−1}``).
        t: ``(b,)`` timestep ``g_k``: long on a VP model, float64 ``σ·T`` on a flow model.
        rows: ``(b,)`` long positions of these rows in the caller's batch.
        y: ``(b, C', h', w')`` measurements in [0, 1] image units (noisy, unclamped).
        operator: forward model restricted to these rows.
        model: the latent diffusion bundle.
        sampler: the prior's grid and update rule.
        params: the solver's hyper-parameters resolved for this task (e.g. ``{"eta": 1.0}``).
        generator: noise source for these rows (one, or one per row).
        denoiser_calls: denoiser evaluations made through :meth:`predict` (or :meth:`predict_noise`) in this step (each
            call evaluates every row, so it counts once for every row).
        decoder_calls: ``b`` ints, decoder evaluations made through :meth:`decode` in this step,
            per row (a call may decode a subset of the rows, so the counts can differ).
    """

    z: torch.Tensor
    index: torch.Tensor
    t: torch.Tensor
    rows: torch.Tensor
    y: torch.Tensor
    operator: Operator
    model: LatentDiffusion
    sampler: Sampler
    params: dict[str, Any]
    generator: GeneratorArg = None
    denoiser_calls: int = field(default=0)
    decoder_calls: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.decoder_calls:
            self.decoder_calls = [0] * int(self.z.shape[0])

    def predict(self, z: torch.Tensor) -> Prediction:
        """``Prediction(eps, z0)`` at ``(z, t)`` for these rows: ε̂ and ẑ₀ on the VP path, finite on every
        level (also at σ = 1 of a flow grid); the counted way to call the denoiser (1 NFE each call)."""
        self.denoiser_calls += 1
        return self.model.predict(z, self.t)

    def predict_noise(self, z: torch.Tensor) -> torch.Tensor:
        """ε_θ(z, t) for these rows: :meth:`predict`'s ``eps`` (counted the same way)."""
        return self.predict(z).eps

    def decode(self, z0: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """``D(z0)``: images on the [0, 1] scale, unclamped and differentiable; the counted way to
        call the decoder (one decoder call for each decoded row; the backward pass is not counted).

        Args:
            z0: ``(n, C, h, w)`` latents: all ``b`` rows, or the rows listed in ``rows``.
            rows: positions (``0 ≤ i < b``) of ``z0``'s rows in this state; ``None`` = every row.
        """
        positions = range(len(self.decoder_calls)) if rows is None else list(rows)
        if len(positions) != z0.shape[0]:
            raise ValueError(f"decode got {z0.shape[0]} latents for {len(positions)} counted rows")
        for i in positions:
            self.decoder_calls[i] += 1
        return self.model.decode(z0)
