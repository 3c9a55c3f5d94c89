"""Randomly initialised models of the paper's size, for timing and memory (speed does not depend
on weight values). Each is built from diffusers classes with the published shapes.

* ``full-ldm-vq4``: the LDM-VQ-4 CelebA-HQ / FFHQ model of the paper [LDM
  ``configs/latent-diffusion/celebahq-ldm-vq-4.yaml``]: 256×256 images, VQ-f4 autoencoder with
  3 latent channels (ch 128, mult 1-2-4, 2 res blocks, 8192 codes), UNet over 64×64×3 latents
  with 224 base channels, mult 1-2-3-4, 2 res blocks, attention at 32², 16², 8² (head width 32).
* ``sd-v1``: a Stable Diffusion v1-class model: KL-f8 autoencoder with 4 latent channels
  (ch 128, mult 1-2-4-4), ``UNet2DConditionModel`` (320-640-1280-1280, cross-attention width 768)
  with a fixed (1, 77, 768) conditioning, 512×512 images, latent scale 0.18215, SD's schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel, VQModel

from .bundle import LatentDiffusion
from .schedule_config import sd_scheduler


def ldm_vq4_autoencoder() -> VQModel:
    """LDM's VQ-f4 first stage (embed_dim 3, n_embed 8192), 256×256 ↔ 64×64×3."""
    return VQModel(
        in_channels=3, out_channels=3, latent_channels=3, vq_embed_dim=3, num_vq_embeddings=8192,
        block_out_channels=(128, 256, 512), layers_per_block=2, norm_num_groups=32, sample_size=256,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    )


def ldm_vq4_unet() -> UNet2DModel:
    """LDM CelebA-HQ UNet: 64×64×3 latents, 224·(1, 2, 3, 4) channels, attention below 32²."""
    return UNet2DModel(
        sample_size=64, in_channels=3, out_channels=3, layers_per_block=2,
        block_out_channels=(224, 448, 672, 896), attention_head_dim=32,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )


def sd_v1_autoencoder() -> AutoencoderKL:
    """Stable Diffusion v1 KL-f8 autoencoder, 512×512 ↔ 64×64×4."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
        layers_per_block=2, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )


def sd_v1_unet() -> UNet2DConditionModel:
    """Stable Diffusion v1 UNet (860 M parameters), cross-attention width 768."""
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    )


def full_ldm_vq4() -> LatentDiffusion:
    """A random LDM-VQ-4 bundle (256×256 images, 64×64×3 latents, latent scale 1)."""
    return LatentDiffusion.from_diffusers(ldm_vq4_autoencoder(), ldm_vq4_unet(), image_size=256)


def sd_v1() -> LatentDiffusion:
    """A random SD-v1-class bundle (512×512 images, 64×64×4 latents, latent scale 0.18215, SD's
    schedule). The conditioning is random of the real shape (1, 77, 768): with random weights no
    text encoder's output would mean more, and the cross-attention costs what it costs in SD."""
    cond = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(0))
    return LatentDiffusion.from_diffusers(sd_v1_autoencoder(), sd_v1_unet(), image_size=512, latent_scale=0.18215,
                                          scheduler=sd_scheduler(), empty_conditioning=cond)


#: ``--model`` names of the benchmark.
FULL_SIZE_CONFIGS: dict[str, Callable[[], LatentDiffusion]] = {"full-ldm-vq4": full_ldm_vq4, "sd-v1": sd_v1}

__all__ = ["FULL_SIZE_CONFIGS", "full_ldm_vq4", "sd_v1"]
