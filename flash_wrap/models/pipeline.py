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
from .schedule_config import ddpm_schedule_from_config, flow_schedule_from_config
from .text_conditioning import check_text_components, encode_prompt

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    from .bundle import LatentDiffusion
    from .flow_denoisers import FlowTransformerDenoiser

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
            flow = (" (a flow-matching pipeline: LatentDiffusion.from_pretrained loads it through plan_flow_pipeline)"
                    if pipeline in FLOW_PIPELINES else "")
            raise _unsupported(folder, pipeline, f"its denoiser is a {_component(index, name)} ({name}), not a UNet{flow}")
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
                  latent_shift: float | None = None, guidance: float | None = None) -> LatentDiffusion:
    """Build ``cls`` from a diffusers pipeline folder, on the CPU in float32; SD3-class and FLUX-class
    folders (:func:`is_flow_pipeline`) become flow models through :func:`load_flow_pipeline`.

    Args:
        image_size: images' side; default the UNet's ``sample_size`` × the autoencoder's
            downsampling (256 for LDM-VQ-4, 512 for SD 1.5, 768 for SD 2.1). Another value is
            allowed (convolutional UNets run at other sizes) with a warning.
        prompt: the fixed prompt of a text-conditioned UNet (default ``""``, its unconditional input).
        conditioning: an explicit conditioning ``(1, L, D)`` instead of the text encoder's.
        variant: diffusers weights variant, e.g. ``"fp16"`` (default: the plain weights, or the only
            variant the folder has).
        latent_scale, latent_shift: override the pipeline's latent convention (needed only for a
            pipeline class other than LDMPipeline / StableDiffusion*, which warns); not for flow
            pipelines, whose VAE config states it.
        guidance: FLUX guidance-distilled models only: the distilled guidance value (default 3.5).
    """
    if is_flow_pipeline(folder):
        given = [n for n, v in (("conditioning", conditioning), ("latent_scale", latent_scale),
                                ("latent_shift", latent_shift)) if v is not None]
        if given:
            raise InvalidInput(f"{', '.join(given)}: not for the flow-matching pipeline folder {folder} (its text "
                               "encoders give the conditioning and its VAE config the latent scale and shift); "
                               "pass prompt= instead of conditioning=")
        parts = load_flow_pipeline(folder, image_size=image_size, prompt=prompt or "", guidance=guidance,
                                   variant=variant)
        return cls(parts.autoencoder, parts.denoiser, parts.scheduler, image_size=parts.image_size,
                   latent_scale=parts.latent_scale, latent_shift=parts.latent_shift, flow_grid=parts.flow_grid)
    if guidance is not None:
        raise InvalidInput(f"guidance= is for guidance-distilled FLUX pipeline folders, not {folder}")
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


# -- flow-matching pipeline folders (SD3-class, FLUX-class; ALGORITHMS.md §12) -------------------
#: Flow-matching pipeline classes and their (transformer class, grid style).
FLOW_PIPELINES = {"StableDiffusion3Pipeline": ("SD3Transformer2DModel", "sd3"),
                  "FluxPipeline": ("FluxTransformer2DModel", "flux")}
#: FluxPipeline's default latent side (``default_sample_size``); images are this × the VAE factor.
FLUX_DEFAULT_SAMPLE_SIZE = 128


@dataclass(frozen=True)
class FlowPipelinePlan:
    """What a flow-matching pipeline folder holds, read from its JSON files (no weights yet)."""

    folder: Path
    pipeline: str
    scheduler: FlowMatchEulerDiscreteScheduler
    flow_grid: str  # the σ grid style, "sd3" or "flux" (flash_wrap.models.flow_grid)
    patch: int  # latent pixels per image token side
    latent_scale: float
    latent_shift: float
    sample_size: int  # latent side of the pipeline's default image size
    text_parts: tuple  # flow_text_conditioning.TextPart per text encoder used
    joint_attention_dim: int


@dataclass(frozen=True)
class FlowPipelineParts:
    """The parts of a flow-matching pipeline folder, as :func:`load_pipeline` hands them to ``LatentDiffusion``.

    Attributes:
        autoencoder: the 16-channel KL adapter (raw latents; scale and shift below).
        denoiser: :class:`~flash_wrap.models.flow_denoisers.SD3Denoiser` or ``FluxDenoiser``, which
            returns the velocity ``u`` for unpacked latents and σ·1000.
        scheduler: the folder's ``FlowMatchEulerDiscreteScheduler`` as flash-wrap reproduces it
            (:func:`~flash_wrap.models.schedule_config.flow_schedule_from_config`).
        flow_grid: how the pipeline asks for its σ grid, ``"sd3"`` or ``"flux"``; the grid for N steps
            is :func:`~flash_wrap.models.flow_grid.flow_sigmas` with the denoiser's ``image_seq_len``.
        image_size: images' side in pixels.
        latent_scale, latent_shift: ``z = (raw − shift) · scale`` (the VAE config's
            ``scaling_factor`` and ``shift_factor``).
        conditioning_source: how the fixed conditioning was made.
    """

    autoencoder: Autoencoder
    denoiser: FlowTransformerDenoiser
    scheduler: FlowMatchEulerDiscreteScheduler
    flow_grid: str
    image_size: int
    latent_scale: float
    latent_shift: float
    conditioning_source: str


FLOW_SUPPORTED = ("StableDiffusion3Pipeline (SD3Transformer2DModel) and guidance-distilled or dynamically shifted "
                  "FluxPipeline (FluxTransformer2DModel) folders with a 16-channel AutoencoderKL and a "
                  "FlowMatchEulerDiscreteScheduler")


def _flow_unsupported(folder: Path, pipeline: str, what: str) -> ValueError:
    return InvalidInput(f"{folder} ({pipeline}) is not supported: {what}; supported: {FLOW_SUPPORTED}")


def is_flow_pipeline(folder: str | Path) -> bool:
    """Whether ``folder``'s ``model_index.json`` names a flow-matching pipeline (SD3 or FLUX class)."""
    return read_json(Path(folder) / "model_index.json").get("_class_name") in FLOW_PIPELINES


def _number(config: dict, key: str, where: Path) -> float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where}: {key} must be a number (the pipeline decodes latents / scaling_factor + "
                           f"shift_factor), got {value!r}")
    return float(value)


def plan_flow_pipeline(folder: str | Path) -> FlowPipelinePlan:
    """Read and check an SD3-class or FLUX-class pipeline folder's configs; every refusal is here.

    Refused: other pipeline classes, a transformer of the other family, a scheduler other than a
    reproducible ``FlowMatchEulerDiscreteScheduler``, timestep-distilled few-step models (a
    ``FluxPipeline`` whose transformer has no guidance embedding and whose scheduler does not
    shift dynamically: FLUX.1-schnell's configs), and folders whose prompt cannot be encoded."""
    from .flow_text_conditioning import plan_text_parts, read_encoder_width

    folder = Path(folder)
    index = read_json(folder / "model_index.json")
    pipeline = index.get("_class_name")
    if pipeline not in FLOW_PIPELINES:
        raise InvalidInput(f"{folder}: {pipeline!r} is not a flow-matching pipeline flash-wrap loads; supported: "
                           f"{', '.join(FLOW_PIPELINES)}")
    transformer_class, style = FLOW_PIPELINES[pipeline]
    named = _component(index, "transformer")
    transformer_file = folder / "transformer" / "config.json"
    transformer_config = read_json(transformer_file)
    if named != transformer_class or transformer_config.get("_class_name") != transformer_class:
        raise _flow_unsupported(folder, pipeline, f"its transformer is {named!r} ({transformer_config.get('_class_name')!r} in "
                                             f"its config), the {pipeline} needs a {transformer_class}")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler_config = read_json(scheduler_file)
    scheduler = flow_schedule_from_config(scheduler_config, str(scheduler_file))
    # a FluxPipeline whose scheduler config sets use_flow_sigmas calls set_timesteps(N, mu=mu), the "sd3" grid
    grid = "sd3" if style == "flux" and scheduler_config.get("use_flow_sigmas") else style
    if style == "flux" and scheduler.config.num_train_timesteps != 1000:
        raise _flow_unsupported(folder, pipeline, f"{scheduler_file} has num_train_timesteps="
                                f"{scheduler.config.num_train_timesteps}; FluxPipeline feeds the transformer σ·T/1000, "
                                "so only T = 1000 reproduces it")
    if style == "flux" and not transformer_config.get("guidance_embeds") and not scheduler.config.use_dynamic_shifting:
        raise _flow_unsupported(folder, pipeline, "it looks timestep-distilled (FLUX.1-schnell-like: no guidance embedding "
                                             "and no dynamic shifting), a few-step model whose σ grid Flash cannot "
                                             "shorten or restart")
    if _component(index, "vae") != "AutoencoderKL":
        raise _flow_unsupported(folder, pipeline, f"its vae is {_component(index, 'vae')!r}, not an AutoencoderKL")
    vae_file = folder / "vae" / "config.json"
    vae_config = read_json(vae_file)
    scale, shift = _number(vae_config, "scaling_factor", vae_file), _number(vae_config, "shift_factor", vae_file)
    channels = vae_config.get("latent_channels")
    token_channels = transformer_config.get("in_channels")
    expected = channels if style == "sd3" else (channels or 0) * 4
    if token_channels != expected:
        raise InvalidInput(f"{folder}: the transformer takes {token_channels} channels, the VAE's {channels} latent "
                           f"channels need {expected}" + (" (2×2 packing)" if style == "flux" else "")
                           + "; the folder's components do not belong together")
    joint = transformer_config.get("joint_attention_dim")
    if isinstance(joint, bool) or not isinstance(joint, int) or joint <= 0:
        raise InvalidInput(f"{transformer_file}: joint_attention_dim must be a positive integer, got {joint!r}")
    pooled = transformer_config.get("pooled_projection_dim")
    parts = plan_text_parts(folder, index, pipeline)
    if style == "sd3":
        side = transformer_config.get("sample_size")
        if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
            raise InvalidInput(f"{transformer_file}: sample_size must be a positive integer, got {side!r}")
        widths = [read_encoder_width(folder, p, "projection_dim") for p in parts if p.encoder_class != "T5EncoderModel"]
        patch = int(transformer_config.get("patch_size") or 2)
    else:
        side, patch = FLUX_DEFAULT_SAMPLE_SIZE, 2
        widths = [read_encoder_width(folder, p, "hidden_size") for p in parts if p.encoder_class == "CLIPTextModel"]
    if all(isinstance(w, int) for w in widths) and sum(w for w in widths if isinstance(w, int)) != pooled:
        raise InvalidInput(f"{folder}: the CLIP encoders' pooled widths {widths} do not add up to the transformer's "
                           f"pooled_projection_dim {pooled}; the folder's components do not belong together")
    return FlowPipelinePlan(folder, pipeline, scheduler, grid, patch, scale, shift, int(side), tuple(parts), joint)


def load_flow_pipeline(folder: str | Path, *, image_size: int | None = None, prompt: str = "",
                       max_sequence_length: int | None = None, guidance: float | None = None,
                       variant: str | None = None) -> FlowPipelineParts:
    """Load an SD3-class or FLUX-class pipeline folder into :class:`FlowPipelineParts`, on the CPU in float32.

    Args:
        image_size: images' side; default the pipeline's own default: SD3 the transformer's
            ``sample_size`` × the VAE factor, FLUX 128 × the VAE factor (1024 for the real
            models). Must be a multiple of the VAE factor × the patch (2).
        prompt: the fixed prompt (default ``""``, the unconditional input).
        max_sequence_length: T5 prompt length, default the pipeline's (SD3 256, FLUX 512).
        guidance: FLUX guidance-distilled models only: the guidance value (default 3.5).
        variant: diffusers weights variant, e.g. ``"fp16"``.
    """
    from .flow_denoisers import FluxDenoiser, SD3Denoiser
    from .flow_text_conditioning import DEFAULT_MAX_SEQUENCE_LENGTH, flux_conditioning, sd3_conditioning

    plan = plan_flow_pipeline(folder)
    style = FLOW_PIPELINES[plan.pipeline][1]
    if guidance is not None and style != "flux":
        raise InvalidInput(f"{plan.folder}: guidance= is for guidance-distilled FLUX transformers, not a {plan.pipeline}")
    length = DEFAULT_MAX_SEQUENCE_LENGTH[plan.pipeline] if max_sequence_length is None else max_sequence_length
    autoencoder = Autoencoder.from_pretrained(plan.folder / "vae", variant=variant)
    factor = autoencoder.downsample_factor
    native = plan.sample_size * factor
    image_size = native if image_size is None else image_size
    step = factor * plan.patch
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % step:
        raise InvalidInput(f"image_size must be a positive multiple of {step} (VAE factor {factor} × patch "
                           f"{plan.patch}) for {plan.folder}, got {image_size!r}")
    parts = list(plan.text_parts)
    if style == "sd3":
        hidden, pooled = sd3_conditioning(plan.folder, parts, plan.joint_attention_dim, prompt=prompt,
                                          max_sequence_length=length, variant=variant)
    else:
        hidden, pooled = flux_conditioning(plan.folder, parts, prompt=prompt, max_sequence_length=length, variant=variant)
    encoders = "+".join(p.encoder_class for p in parts)
    source = f"text encoders {encoders}, prompt {prompt!r}, max_sequence_length {length}"
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    from ._io import build_from_folder

    denoiser: FlowTransformerDenoiser
    if style == "sd3":
        transformer = build_from_folder(SD3Transformer2DModel, plan.folder / "transformer", variant=variant)
        denoiser = SD3Denoiser(transformer, hidden, pooled, conditioning_source=source)
    else:
        transformer = build_from_folder(FluxTransformer2DModel, plan.folder / "transformer", variant=variant)
        denoiser = FluxDenoiser(transformer, hidden, pooled, guidance=guidance, conditioning_source=source)
    log.info("loaded %s from %s: %d² images, z = (E(x) − %.6g) × %.6g, flow grid %s", plan.pipeline, plan.folder,
             image_size, plan.latent_shift, plan.latent_scale, plan.flow_grid)
    return FlowPipelineParts(autoencoder, denoiser.requires_grad_(False).eval(), plan.scheduler, plan.flow_grid,
                             image_size, plan.latent_scale, plan.latent_shift, source)
