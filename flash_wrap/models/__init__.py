"""The model bundle: autoencoder + latent denoiser + noise schedule (+ severity encoders).

:class:`LatentDiffusion` is the only layer that knows value ranges and the latent scale; every
public tensor here is an image ``(B, 3, H, W)`` in [0, 1] or a scaled latent ``(B, C, h, w)``.
"""

from .autoencoders import (
    Autoencoder,
    KLAutoencoder,
    TAEF2Autoencoder,
    TinyAutoencoder,
    VQAutoencoder,
    autoencoder_from_diffusers,
)
from .bundle import LatentDiffusion, LatentEncoder, Prediction
from .denoiser import Denoiser
from .schedule_config import flow_schedule_from_config, ldm_scheduler
from .taef2 import TAEF2, convert_taef2

__all__ = [
    "Autoencoder",
    "Denoiser",
    "KLAutoencoder",
    "LatentDiffusion",
    "LatentEncoder",
    "Prediction",
    "TAEF2",
    "TAEF2Autoencoder",
    "TinyAutoencoder",
    "VQAutoencoder",
    "autoencoder_from_diffusers",
    "convert_taef2",
    "flow_schedule_from_config",
    "ldm_scheduler",
]
