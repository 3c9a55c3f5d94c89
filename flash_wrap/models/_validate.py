"""Argument checks for the model bundle, raised before any work with messages naming both sides."""

from __future__ import annotations

import re

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from .._numbers import is_finite_number
from ..errors import InvalidInput, WrongType
from .autoencoders import Autoencoder
from .denoiser import Denoiser
from .flow_denoisers import FlowTransformerDenoiser
from .prediction import check_prediction_type
from .schedule_config import check_flow_config

#: Task names become folder names and ``nn.ModuleDict`` keys: no dots, no slashes.
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_task_name(task: object) -> None:
    if not isinstance(task, str) or not _TASK_NAME.fullmatch(task):
        raise InvalidInput(f"task name must be letters, digits, '-' or '_' (no dots or slashes), got {task!r}")


def check_parts(
    autoencoder: object, denoiser: object, scheduler: object, image_size: object, scale: object, shift: object
) -> None:
    """Arguments of ``LatentDiffusion(...)``: types, the schedule (DDPM with a known prediction type,
    or a flow-matching scheduler flash-wrap reproduces), image size vs. downsampling, matching latent
    channels, a finite positive latent scale.

    A UNet :class:`Denoiser` goes with either schedule (a UNet trained on velocity is a flow prior,
    e.g. demo-flow); a flow transformer (SD3, FLUX) predicts velocity only, so it needs the flow
    scheduler."""
    if not isinstance(autoencoder, Autoencoder):
        raise WrongType(f"autoencoder must be an Autoencoder adapter, got {type(autoencoder).__name__}")
    if not isinstance(denoiser, (Denoiser, FlowTransformerDenoiser)):
        raise WrongType(f"denoiser must be a Denoiser or a FlowTransformerDenoiser (SD3, FLUX), got "
                        f"{type(denoiser).__name__}")
    if isinstance(denoiser, FlowTransformerDenoiser) and not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        raise InvalidInput(f"a {denoiser.kind} denoiser predicts rectified-flow velocity, so it needs a "
                           f"FlowMatchEulerDiscreteScheduler, got {type(scheduler).__name__}; pass the pipeline "
                           "folder's own scheduler (flow_schedule_from_config)")
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        check_flow_config(dict(scheduler.config), "the scheduler")
    elif not isinstance(scheduler, DDPMScheduler):
        raise WrongType(
            f"scheduler must be a diffusers DDPMScheduler or FlowMatchEulerDiscreteScheduler, got "
            f"{type(scheduler).__name__} (convert a DDPM-family one with DDPMScheduler.from_config(scheduler.config))"
        )
    else:
        check_prediction_type(scheduler.config.prediction_type, "the scheduler")
        check_schedule(scheduler)
    f = autoencoder.downsample_factor
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % f:
        raise InvalidInput(
            f"image_size must be a positive multiple of the autoencoder's downsampling factor {f}, got {image_size!r}"
        )
    if denoiser.in_channels != autoencoder.latent_channels:
        raise InvalidInput(
            f"the denoiser takes {denoiser.in_channels} channels but the autoencoder's latents "
            f"have {autoencoder.latent_channels}"
        )
    for name, value in (("latent_scale", scale), ("latent_shift", shift)):
        if not is_finite_number(value):
            raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    if scale <= 0:  # type: ignore[operator]
        raise InvalidInput(f"latent_scale must be > 0, got {scale}")


def check_schedule(scheduler: DDPMScheduler) -> None:
    """A usable noise schedule: at least one timestep, every β in (0, 1), ᾱ finite and decreasing."""
    betas = scheduler.betas.double()
    if betas.numel() < 1:
        raise InvalidInput("the scheduler has no timesteps (num_train_timesteps must be >= 1)")
    if betas.numel() != scheduler.config.num_train_timesteps:
        raise InvalidInput(f"the scheduler has {betas.numel()} betas but num_train_timesteps is "
                         f"{scheduler.config.num_train_timesteps}; they must agree")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise InvalidInput(f"the scheduler's betas must lie in (0, 1), got [{float(betas.min()):.4g}, "
                         f"{float(betas.max()):.4g}] (check beta_start, beta_end, trained_betas)")
    alphas_cumprod = scheduler.alphas_cumprod.double()
    if not bool(torch.isfinite(alphas_cumprod).all()) or bool((alphas_cumprod[1:] >= alphas_cumprod[:-1]).any()):
        raise InvalidInput("the scheduler's alphas_cumprod must be finite and strictly decreasing")
