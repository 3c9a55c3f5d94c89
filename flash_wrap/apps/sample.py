"""``flash-wrap sample``: unconditional samples from a bundle's prior (no measurement), a check
that the prior works."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..errors import InvalidInput
from ..figures import image_grid
from ..grid import OwnSampler, grid_for
from ..models import LatentDiffusion
from ..models.bundle_io import resolve as resolve_bundle
from ..rng import GeneratorArg, randn
from .runs import check_new_file

#: DDPM over every timestep by default; a shorter grid is DDIM with η = 1 (ancestral-like noise).
PRIOR_SAMPLER = OwnSampler(sampler_kind="ddpm", default_steps=None, ddim_eta=1.0)


@torch.no_grad()
def sample_prior(
    model: LatentDiffusion,
    n: int,
    *,
    steps: int | None = None,
    ddim_eta: float | None = None,
    generator: GeneratorArg = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Draw ``n`` images ``(n, 3, H, W)`` in [0, 1] by ancestral DDPM (``steps`` = None or T)
    or DDIM with ``steps`` < T (η = ``ddim_eta``, default 1), from ``z ~ N(0, I)``; the grid
    comes from the one grid rule, :func:`flash_wrap.grid.grid_for`."""
    z = randn((n, *model.latent_shape), generator, device=model.device, dtype=model.dtype)
    z = sample_latents(model, z, steps=steps, ddim_eta=ddim_eta, generator=generator, progress=progress)
    return model.decode(z).clamp(0, 1)


@torch.no_grad()
def sample_latents(
    model: LatentDiffusion,
    z: torch.Tensor,
    *,
    steps: int | None = None,
    ddim_eta: float | None = None,
    generator: GeneratorArg = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """The prior's reverse process from the initial noise ``z`` ``(n, *latent_shape)`` at the top of the
    grid to the final latents ``(n, *latent_shape)`` (same dtype), on the grid of :func:`sample_prior`.
    On a flow model (ALGORITHMS.md §12) the grid is DDIM over ``steps`` σ's (default
    :data:`flash_wrap.grid.FLOW_DEFAULT_STEPS`), and η = 0 is the scheduler's own Euler sampler."""
    grid = grid_for(PRIOR_SAMPLER, model.num_train_timesteps, steps=steps, ddim_eta=ddim_eta, path=model.path)
    sampler = grid.build(model)
    n = z.shape[0]
    for k in tqdm(range(sampler.num_steps - 1, -1, -1), desc="sampling", disable=None if progress is None else not progress):
        index = torch.full((n,), k, dtype=torch.long, device=model.device)
        prediction = model.predict(z, sampler.timesteps[index])
        z = sampler.step(z, prediction.eps, prediction.z0, index, generator)
    return z


def sample_grid(model: str | Path, out: str | Path, *, n: int = 16, seed: int = 0, steps: int = 1000,
                scale: int = 2, force: bool = False) -> Path:
    """Draw ``n`` unconditional samples from ``model``'s prior and save them as a PNG grid
    (``out`` is checked first: a ``.png`` name, not an existing file unless ``force``, not
    inside the model folder)."""
    if Path(out).suffix.lower() != ".png":
        raise InvalidInput(f"--out {out} must be a .png file name")
    check_new_file(out, force=force, inputs=[resolve_bundle(model)])
    bundle = LatentDiffusion.from_pretrained(model)
    images = sample_prior(bundle, n, steps=steps, generator=torch.Generator().manual_seed(seed))
    grid = image_grid(images)
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
