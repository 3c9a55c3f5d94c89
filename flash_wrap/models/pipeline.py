"""A diffusers pipeline folder loaded as a :class:`~flash_wrap.models.LatentDiffusion` (ALGORITHMS.md §11).

Everything comes from the folder's own configs: the autoencoder class, the latent scale and shift
(by the pipeline's own convention), the training noise schedule whatever sampler the folder ships,
the prediction type (converted to ε by the bundle), the image size (UNet ``sample_size`` × the
autoencoder's downsampling) and, for a text-conditioned UNet, the embedding of the empty prompt.
Every refusal is decided from JSON alone, before any weights are read.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import InvalidInput
from ._io import read_json
from .autoencoders import Autoencoder
from .denoiser import Denoiser, check_unet_config
from .schedule_config import ddpm_schedule_from_config
from .text_conditioning import check_text_components, encode_prompt

if TYPE_CHECKING:
    from diffusers import DDPMScheduler

    from .bundle import LatentDiffusion

log = logging.getLogger(__name__)

SUPPORTED = ("LDMPipeline and StableDiffusionPipeline (1.x, 2.x) folders, or any pipeline folder with an autoencoder "
             "(vae or vqvae: VQModel, AutoencoderKL, AutoencoderTiny), a unet (UNet2DModel, or UNet2DConditionModel "
             "with one CLIP text encoder) and a DDPM-family scheduler")
_AUTOENCODERS = ("VQModel", "AutoencoderKL", "AutoencoderTiny")
#: Pipelines that decode their latents unscaled (``vqvae.decode(latents)``), whatever the VQ config's
#: ``scaling_factor`` says.
_UNSCALED = ("LDMPipeline",)


@dataclass(frozen=True)
class PipelinePlan:
    """What a pipeline folder holds, read from its JSON files (no weights yet)."""

    folder: Path
    pipeline: str
    autoencoder: str  # subfolder: "vae" or "vqvae"
    scheduler: DDPMScheduler
    latent_scale: float
    latent_shift: float
    sample_size: int  # the UNet's latent side
    conditional: bool
    tokenizer_class: str | None  # set when the conditioning comes from the folder's text encoder

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.config.prediction_type)


def _component(index: dict, name: str) -> str | None:
    """The class of component ``name`` in a pipeline index, ``None`` when absent or null."""
    entry = index.get(name)
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None:
        return str(entry[1])
    return None


def _unsupported(folder: Path, pipeline: str, what: str) -> ValueError:
    return ValueError(f"{folder} ({pipeline}) is not supported: {what}; supported: {SUPPORTED}")


def plan_pipeline(folder: str | Path, *, prompt: str | None = None,
                  conditioning: torch.Tensor | None = None) -> PipelinePlan:
    """Read and check a pipeline folder's configs; every unsupported family is refused here."""
    folder = Path(folder)
    index = read_json(folder / "model_index.json")
    if not isinstance(index.get("_class_name"), str):
        raise InvalidInput(f"{folder / 'model_index.json'} has no _class_name: it is neither a flash-wrap bundle index "
                         "nor a diffusers pipeline index")
    pipeline = index["_class_name"]
    for name in ("transformer", "prior", "decoder"):
        if _component(index, name):
            raise _unsupported(folder, pipeline, f"its denoiser is a {_component(index, name)} ({name}), not a UNet")
    unet_class = _component(index, "unet")
    if unet_class not in ("UNet2DModel", "UNet2DConditionModel"):
        raise _unsupported(folder, pipeline, f"it has no UNet denoiser (unet: {unet_class!r})")
    names = [n for n in ("vqvae", "vae") if _component(index, n)]
    if not names:
        raise _unsupported(folder, pipeline, "it has no autoencoder (vae or vqvae), so it is not a latent diffusion "
                                             "model")
    ae_name = names[0]
    ae_config = read_json(folder / ae_name / "config.json")
    if ae_config.get("_class_name") not in _AUTOENCODERS:
        raise _unsupported(folder, pipeline, f"autoencoder {ae_config.get('_class_name')!r}")
    if _component(index, "scheduler") is None:
        raise _unsupported(folder, pipeline, "it names no scheduler, so its noise schedule is unknown")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = ddpm_schedule_from_config(read_json(scheduler_file), str(scheduler_file))
    unet_config = read_json(folder / "unet" / "config.json")
    check_unet_config(unet_config, str(folder / "unet" / "config.json"))
    if unet_config.get("_class_name") != unet_class:
        raise InvalidInput(f"{folder}: model_index.json names a {unet_class} but unet/config.json a "
                         f"{unet_config.get('_class_name')}")
    side = unet_config.get("sample_size")
    if isinstance(side, (list, tuple)) and len(side) == 2 and side[0] == side[1]:
        side = side[0]
    if side is None:
        side = 0  # unknown: load_pipeline then needs image_size
    elif isinstance(side, bool) or not isinstance(side, int) or side <= 0:
        raise _unsupported(folder, pipeline, f"the UNet's sample_size is {side!r}; flash-wrap works on square images")

    conditional = unet_class == "UNet2DConditionModel"
    tokenizer_class = None
    if not conditional:
        if prompt is not None or conditioning is not None:
            raise InvalidInput(f"{folder}: its {unet_class} takes no text conditioning; drop the prompt / conditioning")
    else:
        if _component(index, "text_encoder_2") or _component(index, "tokenizer_2"):
            raise _unsupported(folder, pipeline, "it has two text encoders (SDXL-style conditioning), which a "
                                                 "flash-wrap bundle cannot reproduce")
        if prompt is not None and conditioning is not None:
            raise InvalidInput("pass either prompt or conditioning, not both")
        if conditioning is None:
            encoder_class, tokenizer_class = _component(index, "text_encoder"), _component(index, "tokenizer")
            if encoder_class is None or tokenizer_class is None:
                raise InvalidInput(
                    f"{folder} holds a UNet2DConditionModel but no text_encoder and tokenizer to compute its "
                    "unconditional input (zeros are not the empty prompt); add them to the folder or pass "
                    "conditioning= (shape (1, L, cross_attention_dim)) explicitly"
                )
            check_text_components(folder, encoder_class, tokenizer_class, unet_config.get("cross_attention_dim"))

    scale, shift = _latent_convention(folder / ae_name / "config.json", ae_config, pipeline)
    return PipelinePlan(folder, pipeline, ae_name, scheduler, scale, shift, int(side), conditional, tokenizer_class)


def _latent_convention(where: Path, ae_config: dict, pipeline: str) -> tuple[float, float]:
    """``(scale, shift)`` as the pipeline applies them: LDMPipeline decodes unscaled latents,
    Stable Diffusion pipelines divide by ``scaling_factor`` (no shift); for another pipeline class
    the autoencoder config's ``scaling_factor`` and ``shift_factor`` are used, with a warning."""
    if pipeline in _UNSCALED:
        return 1.0, 0.0
    values = {}
    for key, default in (("scaling_factor", 1.0 if ae_config.get("_class_name") == "AutoencoderTiny" else 0.18215),
                         ("shift_factor", 0.0)):
        value = ae_config.get(key)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"{where}: {key} must be a number, got {value!r}")
        values[key] = float(value)
    if pipeline.startswith("StableDiffusion"):
        return values["scaling_factor"], 0.0  # the shift is an SD3/FLUX convention, unused by these pipelines
    # another pipeline class: load_pipeline warns unless the caller gives the scale
    return values["scaling_factor"], values["shift_factor"]


def _warn_unknown_convention(plan: PipelinePlan) -> None:
    warnings.warn(
        f"{plan.pipeline} is not a pipeline whose latent convention flash-wrap knows (LDMPipeline: unscaled; "
        f"StableDiffusion*: × scaling_factor); using the autoencoder config's z = (E(x) − {plan.latent_shift:.6g})"
        f" × {plan.latent_scale:.6g}. If the pipeline scales otherwise, pass latent_scale= and latent_shift=",
        UserWarning, stacklevel=4,
    )


def load_pipeline(cls: type[LatentDiffusion], folder: str | Path, *, image_size: int | None = None,
                  prompt: str | None = None, conditioning: torch.Tensor | None = None,
                  variant: str | None = None, latent_scale: float | None = None,
                  latent_shift: float | None = None) -> LatentDiffusion:
    """Build ``cls`` from a diffusers pipeline folder, on the CPU in float32.

    Args:
        image_size: images' side; default the UNet's ``sample_size`` × the autoencoder's
            downsampling (256 for LDM-VQ-4, 512 for SD 1.5, 768 for SD 2.1). Another value is
            allowed (convolutional UNets run at other sizes) with a warning.
        prompt: the fixed prompt of a text-conditioned UNet (default ``""``, its unconditional input).
        conditioning: an explicit conditioning ``(1, L, D)`` instead of the text encoder's.
        variant: diffusers weights variant, e.g. ``"fp16"`` (default: the plain weights, or the only
            variant the folder has).
        latent_scale, latent_shift: override the pipeline's latent convention (needed only for a
            pipeline class other than LDMPipeline / StableDiffusion*, which warns).
    """
    plan = plan_pipeline(folder, prompt=prompt, conditioning=conditioning)
    if plan.sample_size == 0 and image_size is None:
        raise InvalidInput(f"{plan.folder / 'unet' / 'config.json'} has no sample_size, so the image size the model was "
                         "trained at is unknown; pass image_size=")
    if latent_scale is None and plan.pipeline not in _UNSCALED and not plan.pipeline.startswith("StableDiffusion"):
        _warn_unknown_convention(plan)
    autoencoder = Autoencoder.from_pretrained(plan.folder / plan.autoencoder, variant=variant)
    native = plan.sample_size * autoencoder.downsample_factor
    if image_size is None:
        image_size = native
    elif image_size != native and native:
        warnings.warn(f"{plan.folder}: image_size {image_size} differs from the size the model was trained at "
                      f"({native} = UNet sample_size {plan.sample_size} × downsampling {autoencoder.downsample_factor})",
                      UserWarning, stacklevel=3)
    source = None
    if plan.tokenizer_class is not None:
        conditioning = encode_prompt(plan.folder, plan.tokenizer_class, prompt or "", variant=variant)
        source = f"text encoder, prompt {prompt or ''!r}"
    denoiser = Denoiser.from_pretrained(plan.folder / "unet", empty_conditioning=conditioning, variant=variant,
                                        conditioning_source=source)
    log.info("loaded %s from %s: %s latents × %.6g, %s prediction, %d² images", plan.pipeline, plan.folder,
             autoencoder.kind, plan.latent_scale, plan.prediction_type, image_size)
    return cls(autoencoder, denoiser, plan.scheduler, image_size=image_size,
               latent_scale=plan.latent_scale if latent_scale is None else latent_scale,
               latent_shift=plan.latent_shift if latent_shift is None else latent_shift)
