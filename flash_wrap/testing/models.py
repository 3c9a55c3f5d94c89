"""Tiny random models for tests (a few ten-thousand parameters, CPU-fast), built in-process.

All autoencoders here downsample by 4, like the LDM VQ-f4 they stand in for. Nothing in the
library proper uses them; they are public so a plugin's tests can use the same models.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    FlowMatchEulerDiscreteScheduler,
    UNet2DConditionModel,
    UNet2DModel,
    VQModel,
)

from ..models import LatentDiffusion, ldm_scheduler
from ..models.autoencoders import AUTOENCODER_KINDS, Autoencoder, TAEF2Autoencoder, autoencoder_from_diffusers
from ..models.denoiser import Denoiser
from ..models.taef2 import TAEF2

#: Default latent channels per kind: 3 as in LDM VQ-f4, 4 for the others.
DEFAULT_LATENT_CHANNELS = {"vq": 3, "kl": 4, "tiny": 4, "taef2": 4}

_CONV_AE = {
    "block_out_channels": (8, 8, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": 1,
    "norm_num_groups": 4,
}


def tiny_autoencoder(kind: str, latent_channels: int) -> Autoencoder:
    """A randomly initialised autoencoder of the given kind ("vq", "kl", "tiny", "taef2")."""
    if kind == "vq":
        return autoencoder_from_diffusers(VQModel(**_CONV_AE, latent_channels=latent_channels, num_vq_embeddings=64))
    if kind == "kl":
        return autoencoder_from_diffusers(AutoencoderKL(**_CONV_AE, latent_channels=latent_channels))
    if kind == "tiny":
        return autoencoder_from_diffusers(
            AutoencoderTiny(
                encoder_block_out_channels=(8, 8, 8),
                decoder_block_out_channels=(8, 8, 8),
                num_encoder_blocks=(1, 1, 1),
                num_decoder_blocks=(1, 1, 1),
                latent_channels=latent_channels,
            )
        )
    if kind == "taef2":
        return TAEF2Autoencoder(
            TAEF2(latent_channels=latent_channels, channels=8, pool_channels=16, pool_groups=4, num_downsamples=2)
        )
    raise ValueError(f"unknown autoencoder kind {kind!r}; choose one of {', '.join(AUTOENCODER_KINDS)}")


def tiny_denoiser(channels: int, latent_size: int, *, cross_attention: bool = False) -> Denoiser:
    """A two-level UNet over ``(channels, latent_size, latent_size)`` latents; with
    ``cross_attention`` a ``UNet2DConditionModel`` with a random ``(1, 2, 8)`` conditioning."""
    common = {
        "sample_size": latent_size,
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
    }
    if not cross_attention:
        return Denoiser(
            UNet2DModel(**common, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
        )
    unet = UNet2DConditionModel(
        **common,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=4,
    )
    return Denoiser(unet, torch.randn(1, 2, 8))


def tiny_model(
    kind: str = "vq",
    image_size: int = 32,
    seed: int = 0,
    latent_channels: int | None = None,
    cross_attention: bool = False,
    flow_shift: float | None = None,
) -> LatentDiffusion:
    """A tiny randomly initialised bundle (downsampling 4, ~50-100k parameters), identical for
    equal arguments, with :func:`~flash_wrap.models.ldm_scheduler`'s schedule, in eval mode with
    frozen parameters. ``kind`` is the autoencoder ("vq", "kl", "tiny", "taef2");
    ``latent_channels`` defaults to 3 for "vq" and 4 for the others. The global RNG is forked,
    so its state is left untouched. With ``flow_shift`` the bundle is a rectified-flow model instead
    (path "flow"): a ``FlowMatchEulerDiscreteScheduler`` with that ``shift``, "sd3"-style σ grid."""
    if kind not in DEFAULT_LATENT_CHANNELS:
        raise ValueError(f"unknown autoencoder kind {kind!r}; choose one of {', '.join(DEFAULT_LATENT_CHANNELS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % 8:
        raise ValueError(f"tiny models need image_size a positive multiple of 8, got {image_size!r}")
    channels = latent_channels or DEFAULT_LATENT_CHANNELS[kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        autoencoder = tiny_autoencoder(kind, channels)
        denoiser = tiny_denoiser(channels, image_size // 4, cross_attention=cross_attention)
    scheduler = ldm_scheduler() if flow_shift is None else FlowMatchEulerDiscreteScheduler(shift=flow_shift)
    model = LatentDiffusion(autoencoder, denoiser, scheduler, image_size=image_size)
    return model.requires_grad_(False).eval()
