"""Noise schedules as diffusers ``DDPMScheduler`` objects (ALGORITHMS.md §1 and §11), and the
rectified-flow ``FlowMatchEulerDiscreteScheduler`` configs flash-wrap reproduces exactly (§12)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from ..errors import InvalidInput
from .prediction import check_prediction_type

#: diffusers schedulers that sample a DDPM-trained model: their configs carry the training betas
#: (``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule`` / ``trained_betas``).
DDPM_FAMILY = frozenset({
    "DDPMScheduler", "DDIMScheduler", "DDIMInverseScheduler", "PNDMScheduler", "LMSDiscreteScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "DPMSolverSDEScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    "DDPMParallelScheduler", "DDIMParallelScheduler", "LCMScheduler", "TCDScheduler",
})
#: The entries of a scheduler config that define the training schedule and the prediction type.
_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")


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


def sd_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """The training schedule of Stable Diffusion 1.x/2.x: T = 1000, "scaled_linear" from 0.00085 to
    0.012; ``prediction_type`` "epsilon" (1.x, 2.x-base) or "v_prediction" (2.x at 768²)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, variance_type="fixed_small",
                         prediction_type=check_prediction_type(prediction_type))


def ddpm_schedule_from_config(config: dict[str, Any], where: str) -> DDPMScheduler:
    """The training schedule of any DDPM-family scheduler config as a ``DDPMScheduler``.

    The sampler a pipeline ships (PNDM, DDIM, Euler, ...) does not matter here, only the betas
    it was configured with and the prediction type. Refused, naming what is supported: flow-matching
    and other non-DDPM schedulers, configs without betas, zero-terminal-SNR rescaling (ᾱ_T = 0 has
    no start-time rule).
    """
    name = config.get("_class_name")
    if name not in DDPM_FAMILY:
        raise InvalidInput(
            f"{where}: scheduler {name!r} is not a DDPM-family scheduler (flow-matching and other schedules are not "
            "supported); flash-wrap supports models trained with a DDPM noise schedule, whose scheduler is one of "
            f"{', '.join(sorted(DDPM_FAMILY))}"
        )
    if "beta_schedule" not in config and config.get("trained_betas") is None:
        raise InvalidInput(f"{where}: the {name} config has neither beta_schedule nor trained_betas; cannot rebuild the "
                         "noise schedule the model was trained with")
    if config.get("timestep_type", "discrete") != "discrete" or config.get("use_flow_sigmas"):
        raise InvalidInput(f"{where}: the {name} config samples continuous or flow-matching noise levels "
                         f"(timestep_type={config.get('timestep_type')!r}, use_flow_sigmas={config.get('use_flow_sigmas')!r}); "
                         "flash-wrap supports models trained on the discrete DDPM timesteps 0..T-1")
    betas, steps = config.get("trained_betas"), config.get("num_train_timesteps", 1000)
    if betas is not None and (not isinstance(betas, list) or len(betas) != steps):
        got = len(betas) if isinstance(betas, list) else type(betas).__name__
        raise InvalidInput(f"{where}: trained_betas has {got} entries but num_train_timesteps is {steps}; they must agree")
    if config.get("rescale_betas_zero_snr"):
        raise InvalidInput(f"{where}: rescale_betas_zero_snr is set (ᾱ_T = 0, zero terminal SNR); the adaptive start "
                         "needs ᾱ_t > 0 at every step, so these schedules are not supported")
    own = _own_scheduler(name, config, where)
    # the keys a config leaves out take the folder's own class's defaults, not DDPMScheduler's
    # (LCMScheduler's betas default to 0.00085..0.012, DDPMScheduler's to 0.0001..0.02)
    filled = dict(own.config) if own is not None else config
    kwargs = {key: filled[key] for key in _SCHEDULE_KEYS if filled.get(key) is not None}
    kwargs["prediction_type"] = check_prediction_type(kwargs.get("prediction_type", "epsilon"), where)
    try:
        scheduler = DDPMScheduler(**kwargs, clip_sample=False, variance_type="fixed_small")
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as err:
        raise InvalidInput(f"{where}: not a usable DDPM schedule ({err})") from None
    theirs = getattr(own, "betas", None)
    if isinstance(theirs, torch.Tensor) and not torch.allclose(theirs.double(), scheduler.betas.double(),
                                                               rtol=1e-5, atol=1e-9):
        raise InvalidInput(f"{where}: {name} builds other betas from this config than the DDPM rebuild of its "
                         f"entries ({', '.join(f'{k}={v!r}' for k, v in kwargs.items() if k != 'trained_betas')}); "
                         "flash-wrap cannot reproduce the schedule the model was trained with")
    return scheduler


def _own_scheduler(name: str, config: dict[str, Any], where: str) -> Any:
    """The folder's own scheduler class built from its config (what diffusers would sample with),
    or ``None`` when the class needs an optional package that is not installed; then every
    schedule entry must be explicit, since that class's defaults are unknown here."""
    import diffusers

    try:
        return getattr(diffusers, name).from_config(config)
    except (ImportError, AttributeError):
        missing = [k for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule") if k not in config]
        if config.get("trained_betas") is None and missing:
            raise InvalidInput(f"{where}: {name} cannot be built here (an optional dependency is missing) and its "
                             f"config leaves out {', '.join(missing)}, whose defaults are that class's; write them "
                             "into the config or install the dependency") from None
        return None
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as err:
        raise InvalidInput(f"{where}: diffusers' own {name} cannot build this config ({err}); the folder's "
                         "scheduler is unusable as it is") from None


def schedule_tensors(scheduler: DDPMScheduler, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``betas`` and ``alphas_cumprod`` ``(T,)`` of ``scheduler``: the cumulative product is taken
    in float64 (ᾱ_999 ≈ 1.4e-4 is a product of 1000 factors), the results are float32."""
    betas = scheduler.betas.to(torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return betas.float().to(device), alphas_cumprod.float().to(device)


#: Flow-matching scheduler options flash-wrap reproduces exactly, beside ``num_train_timesteps``.
FLOW_OPTIONS = ("shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len")
#: Options that change the σ grid or the step in ways flash-wrap does not reproduce, with the value that is
#: neutral (a config holding another value is refused).
_FLOW_REFUSED = {"stochastic_sampling": False, "invert_sigmas": False, "shift_terminal": None,
                 "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
                 "time_shift_type": "exponential"}


def check_flow_config(config: dict[str, Any], where: str) -> None:
    """Refuse, in one line naming the entry, a ``FlowMatchEulerDiscreteScheduler`` config whose grid or
    step flash-wrap cannot reproduce (ALGORITHMS.md §12): stochastic sampling, Karras/exponential/beta
    σ's, inverted σ's, a terminal shift, a time shift other than exponential."""
    name = config.get("_class_name", "FlowMatchEulerDiscreteScheduler")
    if name != "FlowMatchEulerDiscreteScheduler":
        raise InvalidInput(f"{where}: scheduler {name!r} is not FlowMatchEulerDiscreteScheduler, the one flow-matching "
                         "scheduler flash-wrap reproduces")
    for key, neutral in _FLOW_REFUSED.items():
        if config.get(key) not in (None, neutral):
            raise InvalidInput(f"{where}: {key}={config[key]!r} is not supported (flash-wrap reproduces "
                             f"FlowMatchEulerDiscreteScheduler's deterministic σ grid with {key}={neutral!r} only)")
    steps, shift = config.get("num_train_timesteps", 1000), config.get("shift", 1.0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInput(f"{where}: num_train_timesteps must be a positive integer, got {steps!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0 < shift < float("inf"):
        raise InvalidInput(f"{where}: shift must be a finite number > 0, got {shift!r}")


def flow_schedule_from_config(config: dict[str, Any], where: str) -> FlowMatchEulerDiscreteScheduler:
    """A rectified-flow scheduler config (``scheduler_config.json`` of an SD3/FLUX-class folder or a
    flash-wrap flow bundle) as a ``FlowMatchEulerDiscreteScheduler`` holding only what flash-wrap
    reproduces: ``num_train_timesteps`` and :data:`FLOW_OPTIONS` (``shift``, or dynamic shifting with
    base/max shift and base/max image sequence length). Anything else that changes the grid is
    refused (:func:`check_flow_config`)."""
    check_flow_config(config, where)
    kwargs = {key: config[key] for key in ("num_train_timesteps", *FLOW_OPTIONS) if config.get(key) is not None}
    try:
        return FlowMatchEulerDiscreteScheduler(**kwargs)
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as err:
        raise InvalidInput(f"{where}: not a usable flow-matching schedule ({err})") from None
