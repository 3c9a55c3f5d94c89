"""``eval --nfe-budget``: one SNR scale λ for the whole dataset, calibrated before any image is reconstructed.

Every image is degraded exactly as its batch will degrade it (:func:`~flash_wrap.degradation.degrade`,
its own seed) and encoded once; :func:`flash_wrap.budget.calibrate_budget` then picks the smallest
``λ >= 1`` whose mean start step over all images is within the budget (ALGORITHMS.md §3.1). Every
process of a launch computes the same λ from the same files, so none waits for another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...budget import calibrate_budget, mean_start
from ...degradation import degrade
from ...images import load_image
from ...models import LatentDiffusion
from ...operators import Task


@torch.no_grad()
def dataset_snr_scale(model: LatentDiffusion, task: Task, files: list[Path], level_range: tuple[float, float],
                      seed: int, batch_size: int, snr: torch.Tensor, budget: float) -> dict[str, Any]:
    """``{"nfe_budget", "snr_scale", "calibrated_on", "nfe_mean_expected"}`` for ``files`` under ``budget``.

    ``nfe_mean_expected`` is the mean start step the calibrated scale gives these images (the
    mean NFE of a built-in solver)."""
    encoder = model.severity_encoder(task.name)
    variances = []
    for first in range(0, len(files), batch_size):
        batch = files[first : first + batch_size]
        x = torch.stack([load_image(f, model.image_size) for f in batch]).to(model.device)
        _, _, operator, y = degrade(task, [f.name for f in batch], x, level_range, seed)
        variances.append(encoder(operator.to_image(y))[1].cpu())
    sigma_hat = torch.cat(variances)
    scale = calibrate_budget(sigma_hat, snr, budget)
    return {"nfe_budget": budget, "snr_scale": scale, "calibrated_on": len(files),
            "nfe_mean_expected": mean_start(sigma_hat, snr, scale)}
