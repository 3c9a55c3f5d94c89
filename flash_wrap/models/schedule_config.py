"""The LDM noise schedule as a diffusers scheduler (ALGORITHMS.md §1)."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler


def ldm_scheduler() -> DDPMScheduler:
    """DDPM schedule of the LDM CelebA-HQ / FFHQ models [LDM ``celeba256/config.yaml``].

    T = 1000, β_t = (√0.0015 + t/(T−1)·(√0.0195 − √0.0015))² ("scaled_linear" in diffusers),
    ε-prediction, no sample clipping, posterior variance β̃_t ("fixed_small").
    1/SNR_t at t = 10, 100, 500 is 0.0171, 0.2149, 7.70.
    """
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.0015,
        beta_end=0.0195,
        clip_sample=False,
        variance_type="fixed_small",
        prediction_type="epsilon",
    )


def schedule_tensors(scheduler: DDPMScheduler, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``betas`` and ``alphas_cumprod`` ``(T,)`` of ``scheduler``: the cumulative product is taken
    in float64 (ᾱ_999 ≈ 1.4e-4 is a product of 1000 factors), the results are float32."""
    betas = scheduler.betas.to(torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return betas.float().to(device), alphas_cumprod.float().to(device)
