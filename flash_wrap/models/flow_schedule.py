"""The σ grid of a flow-matching pipeline folder, as its diffusers pipeline asks its scheduler for it.

``FlowMatchEulerDiscreteScheduler`` builds σ_0 = 1-ish > … > σ_{N−1} > σ_N = 0 from its config;
the pipelines differ only in how they call ``set_timesteps``, recorded in a small dict, the
*flow grid rule* (:func:`flow_grid_rule`):

* ``{"style": "sd3", ...}``: ``set_timesteps(N)`` (σ evenly spaced in timestep, then the config's
  ``shift``), with ``mu`` only when the config shifts dynamically;
* ``{"style": "flux", ...}``: ``set_timesteps(sigmas=linspace(1, 1/N, N), mu=mu)``;

where ``mu = base_shift + (max_shift − base_shift)·(n − base_image_seq_len)/(max_image_seq_len −
base_image_seq_len)`` for ``n`` image tokens (``(h/patch)·(w/patch)`` of the latent). ``steps`` for
a flow model means the pipeline's ``num_inference_steps``: N model calls on that grid.

Schedulers flash-wrap cannot reproduce are refused from the config (:func:`check_flow_scheduler`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidInput

FLOW_SCHEDULER = "FlowMatchEulerDiscreteScheduler"
#: Config switches whose grids or steps flash-wrap does not reproduce, with why.
_REFUSED_OPTIONS = {
    "stochastic_sampling": "stochastic sampling re-noises at every step, which is not the Euler step",
    "use_karras_sigmas": "Karras σ spacing",
    "use_exponential_sigmas": "exponential σ spacing",
    "use_beta_sigmas": "beta σ spacing",
    "invert_sigmas": "inverted σ (Mochi-style) schedules",
}
#: The defaults each pipeline falls back on for dynamic shifting (FLUX 1.15, SD3 1.16 for max_shift).
_SHIFT_DEFAULTS = {"sd3": (256, 4096, 0.5, 1.16), "flux": (256, 4096, 0.5, 1.15)}


def check_flow_scheduler(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The full scheduler config (diffusers' defaults filled in) of a ``FlowMatchEulerDiscreteScheduler``
    config flash-wrap can reproduce; another class or a refused option is an error naming it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    name = config.get("_class_name")
    if name != FLOW_SCHEDULER:
        raise InvalidInput(f"{where}: scheduler {name!r} is not supported for a flow-matching pipeline; flash-wrap "
                           f"reproduces {FLOW_SCHEDULER} only (Euler steps on the flow's σ grid)")
    for key, what in _REFUSED_OPTIONS.items():
        if config.get(key):
            raise InvalidInput(f"{where}: {key}=true ({what}) is not supported; flash-wrap reproduces the "
                               f"deterministic Euler sampler on the plain shifted σ grid (set {key} to false)")
    try:
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"{where}: diffusers cannot build a {FLOW_SCHEDULER} from it ({err})") from None
    full = dict(scheduler.config)
    if full.get("num_train_timesteps") != 1000:
        raise InvalidInput(f"{where}: num_train_timesteps={full.get('num_train_timesteps')!r}; the SD3 and FLUX "
                           "pipelines feed the transformer σ·1000, so flash-wrap needs 1000")
    return full


def flow_grid_rule(style: str, scheduler_config: dict[str, Any], patch: int) -> dict[str, Any]:
    """The rule dict for a pipeline ``style`` (``"sd3"`` or ``"flux"``): ``{"style", "patch",
    "mu"}`` with ``mu`` ``None`` (no resolution-dependent shift) or ``{"base_image_seq_len",
    "max_image_seq_len", "base_shift", "max_shift"}``; ``scheduler_config`` is the full config
    of :func:`check_flow_scheduler`."""
    if style not in _SHIFT_DEFAULTS:
        raise InvalidInput(f"flow grid style must be 'sd3' or 'flux', got {style!r}")
    mu = None
    if style == "flux" or scheduler_config.get("use_dynamic_shifting"):
        keys = ("base_image_seq_len", "max_image_seq_len", "base_shift", "max_shift")
        mu = {k: scheduler_config.get(k, d) for k, d in zip(keys, _SHIFT_DEFAULTS[style])}
    return {"style": style, "patch": int(patch), "mu": mu}


def flow_mu(rule: dict[str, Any], image_seq_len: int) -> float | None:
    """The pipelines' ``mu`` for ``image_seq_len`` tokens (``None`` when the rule has none)."""
    mu = rule.get("mu")
    if mu is None:
        return None
    slope = (mu["max_shift"] - mu["base_shift"]) / (mu["max_image_seq_len"] - mu["base_image_seq_len"])
    return image_seq_len * slope + (mu["base_shift"] - slope * mu["base_image_seq_len"])


def pipeline_sigmas(scheduler_config: dict[str, Any], rule: dict[str, Any], steps: int,
                    latent_hw: tuple[int, int]) -> torch.Tensor:
    """The pipeline's σ grid ``(steps + 1,)`` float32, decreasing to a final 0, for a latent of
    side ``latent_hw``: diffusers' scheduler called exactly as the pipeline calls it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInput(f"steps must be a positive integer (the pipeline's num_inference_steps), got {steps!r}")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    h, w = latent_hw
    mu = flow_mu(rule, (h // rule["patch"]) * (w // rule["patch"]))
    kwargs: dict[str, Any] = {} if mu is None else {"mu": mu}
    if rule["style"] == "flux" and not scheduler_config.get("use_flow_sigmas"):
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), **kwargs)
    else:
        scheduler.set_timesteps(steps, **kwargs)
    return scheduler.sigmas.to(torch.float32).clone()
