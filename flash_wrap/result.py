"""The object every reconstruction returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Reconstruction:
    """Per-sample outputs of a reconstruction (bare solver or ``Flash``-wrapped).

    Attributes:
        images: ``(B, 3, H, W)`` reconstructions in [0, 1] (the decoder output, clipped).
        latents: ``(B, C, h, w)`` final latents ``z_0`` before decoding.
        nfe: ``(B,)`` long, denoiser evaluations spent on each sample.
        decoder_calls: ``(B,)`` long, decoder evaluations (forward passes) the solver's steps spent
            on each sample, e.g. for data consistency; the one final decode into ``images`` and the
            backward passes are not counted. Zeros when not given (same device as ``nfe``).
        start_step: ``(B,)`` long grid index each sample started from (``M`` = pure noise at the top).
        sigma_hat: ``(B,)`` the paper's σ̂ [P eq. 3], which is a predicted error *variance* ``v`` of
            ``z_hat`` (not a standard deviation); ``None`` for a bare solver.
        z_hat: ``(B, C, h, w)`` severity encoder's latent estimate, ``None`` for a bare solver.
        snr_scale: the common SNR scale ``λ >= 1`` of Flash's start rule (``1.0`` unbudgeted;
            ALGORITHMS.md §3.1), ``None`` for a bare solver.
        out_of_range: ``(B,)`` bool, σ̂ outside the range the severity encoder recorded on its
            training data; ``None`` for a bare solver or an encoder that records none.
        solver: solver name; ``sampler``: "ddpm" or "ddim"; ``steps``: grid length ``M``;
            ``eta``: the DDIM stochasticity η (``None`` for DDPM). These three are the
            :class:`~flash_wrap.grid.GridSpec` the solver ran.
        path: the model's noise path, ``"vp"`` (DDPM schedule) or ``"flow"`` (rectified flow on its σ grid,
            ALGORITHMS.md §12).
    """

    images: torch.Tensor
    latents: torch.Tensor
    nfe: torch.Tensor
    start_step: torch.Tensor
    solver: str
    sampler: str
    steps: int
    eta: float | None = None
    sigma_hat: torch.Tensor | None = None
    z_hat: torch.Tensor | None = None
    # None (the default) becomes zeros in __post_init__, so the attribute is always a tensor
    decoder_calls: torch.Tensor = None  # type: ignore[assignment]
    snr_scale: float | None = None
    out_of_range: torch.Tensor | None = None
    path: str = "vp"

    def __post_init__(self) -> None:
        if self.decoder_calls is None:
            self.decoder_calls = torch.zeros_like(self.nfe, dtype=torch.long)
