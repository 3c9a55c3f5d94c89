"""Unconditional samples from a bundle's prior (no measurement): a check that the prior works."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ._random import GeneratorArg, randn
from .models import LatentDiffusion
from .samplers import Sampler


@torch.no_grad()
def sample_prior(
    model: LatentDiffusion,
    n: int,
    *,
    steps: int | None = None,
    ddim_eta: float = 1.0,
    generator: GeneratorArg = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Draw ``n`` images ``(n, 3, H, W)`` in [0, 1] by ancestral DDPM (``steps`` = None or T)
    or DDIM with ``steps`` < T, starting from ``z ~ N(0, I)``."""
    total = model.num_train_timesteps
    ac = model.alphas_cumprod
    sampler = Sampler.ddpm(ac) if steps in (None, total) else Sampler.ddim(ac, steps, ddim_eta)
    z = randn((n, *model.latent_shape), generator, device=model.device, dtype=model.dtype)
    for k in tqdm(range(sampler.num_steps - 1, -1, -1), desc="sampling", disable=None if progress is None else not progress):
        index = torch.full((n,), k, dtype=torch.long, device=model.device)
        eps = model.predict_noise(z, sampler.timesteps[index])
        z = sampler.step(z, eps, sampler.tweedie(z, eps, index), index, generator)
    return model.decode(z).clamp(0, 1)
