"""The σ grid of a rectified-flow model, as diffusers' ``FlowMatchEulerDiscreteScheduler`` builds it
for the pipelines (flash_wrap/ALGORITHMS.md §12).

Two styles exist: ``StableDiffusion3Pipeline`` calls ``set_timesteps(N)`` (timesteps evenly spaced
from σ_max·T to σ_min·T, then shifted), ``FluxPipeline`` passes ``sigmas = linspace(1, 1/N, N)``
(then shifted). With ``use_dynamic_shifting`` both pass ``mu``, linear in the latent's token count
between (``base_image_seq_len``, ``base_shift``) and (``max_image_seq_len``, ``max_shift``).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ..errors import InvalidInput

#: The σ grid styles: ``"sd3"`` (``set_timesteps(N)``) and ``"flux"`` (``sigmas = linspace(1, 1/N, N)``).
FLOW_GRID_STYLES = ("sd3", "flux")


def check_flow_grid_style(style: object, where: str) -> str:
    if style not in FLOW_GRID_STYLES:
        raise InvalidInput(f"{where}: the flow grid style must be one of {', '.join(FLOW_GRID_STYLES)}, got {style!r}")
    return str(style)


def dynamic_shift_mu(config: dict, image_seq_len: int) -> float:
    """``mu`` for ``image_seq_len`` tokens: the line through (base_image_seq_len, base_shift) and
    (max_image_seq_len, max_shift) of the scheduler ``config``, as the SD3/FLUX pipelines compute it."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + (base_shift - slope * base_len)


def flow_sigmas(scheduler: FlowMatchEulerDiscreteScheduler, steps: int, style: str, image_seq_len: int) -> torch.Tensor:
    """``(steps,)`` float64 σ's, decreasing, exactly diffusers' (float32) values for ``steps`` Euler steps.

    Args:
        scheduler: the model's scheduler (its config is read, the object is not changed).
        steps: number of Euler steps ``N ≥ 1``.
        style: one of :data:`FLOW_GRID_STYLES`.
        image_seq_len: the latent's token count (used only with dynamic shifting).
    Raises:
        ValueError: a bad ``steps``, or a grid that is not strictly decreasing within (0, 1].
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInput(f"flow grid steps must be an integer >= 1, got {steps!r}")
    check_flow_grid_style(style, "flow grid")
    own = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    mu = dynamic_shift_mu(dict(own.config), image_seq_len) if own.config.use_dynamic_shifting else None
    if style == "sd3":
        own.set_timesteps(steps, mu=mu)
    else:
        own.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    sigmas = own.sigmas[:-1].to(torch.float64)  # diffusers appends the final σ = 0
    if not bool(((sigmas > 0) & (sigmas <= 1)).all()) or bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise InvalidInput(f"the scheduler's σ grid for {steps} steps is not strictly decreasing within (0, 1] "
                           f"(got {sigmas.tolist()[:4]}...); flash-wrap cannot run it")
    return sigmas
