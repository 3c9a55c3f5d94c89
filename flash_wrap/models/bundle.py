"""``LatentDiffusion``: autoencoder + latent denoiser + noise path + severity encoders.

The bundle is the one place that knows the latent scale: the denoiser and the severity
encoders see *scaled* latents ``z = (raw − latent_shift) · latent_scale`` (ALGORITHMS.md §1;
the LDM VQ-f4 models use scale 1, shift 0). Images are ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from torch import nn

from .._checks import check_images, check_tensor
from ..errors import InvalidInput, NotFound, WrongType
from ..severity.encoder import SeverityEncoder
from ._io import read_json
from ._validate import check_parts, check_task_name
from .autoencoders import Autoencoder, autoencoder_from_diffusers
from .bundle_io import folder_kind, load_bundle, save_bundle, save_severity, save_tuned_values
from .denoiser import Denoiser
from .flow_denoisers import FlowTransformerDenoiser
from .flow_grid import check_flow_grid_style, flow_sigmas
from .flow_path import flow_state_scale, velocity_to_eps_z0
from .latent_space import check_encoder_source
from .prediction import to_epsilon
from .schedule_config import ddpm_schedule_from_config, flow_schedule_from_config, ldm_scheduler, schedule_tensors

#: What a scheduler makes of a bundle: ``"vp"`` (a ``DDPMScheduler``) or ``"flow"`` (a rectified-flow
#: ``FlowMatchEulerDiscreteScheduler``, offered as an ε-predictor on the VP path, ALGORITHMS.md §12).
PATHS = ("vp", "flow")


@dataclass(frozen=True)
class Prediction:
    """One denoiser evaluation seen on the VP path: ``eps`` (ε̂) and ``z0`` (ẑ₀), both ``(B, C, h, w)``
    in the latents' dtype. VP models: ``z0`` is Tweedie's ``(z_t − √(1−ᾱ)·ε̂)/√ᾱ``; flow models: the flow
    form ``z − σ·u``, finite at σ = 1 where Tweedie divides by zero (ALGORITHMS.md §12)."""

    eps: torch.Tensor
    z0: torch.Tensor


def _checkpoint(module: nn.Module, *args: Any) -> Any:
    return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)


def _model_folder(path: str | Path, what: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise NotFound(f"{what}: {folder} is not a model folder (no config.json)")
    return folder


class LatentEncoder(nn.Module):
    """[0, 1] images ``(B, 3, H, W)`` → scaled latents: an autoencoder's encoder path, then
    ``(raw − shift) · scale``. The backbone of a :class:`SeverityEncoder`."""

    def __init__(self, encoder: nn.Module, latent_scale: float, latent_shift: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.latent_scale = latent_scale
        self.latent_shift = latent_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.encoder(x) - self.latent_shift) * self.latent_scale


class LatentDiffusion(nn.Module):
    """A latent diffusion prior for images of one size.

    Args:
        autoencoder: an :class:`Autoencoder` adapter.
        denoiser: :class:`Denoiser` (a UNet, any schedule) or a flow transformer
            (:class:`~flash_wrap.models.flow_denoisers.FlowTransformerDenoiser`: SD3, FLUX; flow
            scheduler only) whose channels equal the latent channels.
        scheduler: a diffusers ``DDPMScheduler``: the training schedule, and in its
            ``prediction_type`` what the denoiser predicts ("epsilon", "v_prediction" or "sample";
            :meth:`predict_noise` always returns ε); or a ``FlowMatchEulerDiscreteScheduler``: a
            rectified-flow (velocity) model, :attr:`path` ``"flow"``, its grid from
            :meth:`flow_sigmas` (options flash-wrap cannot reproduce are refused).
        image_size: side ``H = W`` of the images, a multiple of the autoencoder's downsampling.
        latent_scale, latent_shift: ``z = (raw − shift) · scale``.
        flow_grid: flow models only: how the σ grid is spaced, ``"sd3"`` (``set_timesteps(N)``, as
            ``StableDiffusion3Pipeline``) or ``"flux"`` (σ's ``linspace(1, 1/N, N)``, as ``FluxPipeline``);
            see :meth:`flow_sigmas`.
    """

    _betas: torch.Tensor
    _alphas_cumprod: torch.Tensor

    def __init__(
        self,
        autoencoder: Autoencoder,
        denoiser: Denoiser | FlowTransformerDenoiser,
        scheduler: DDPMScheduler | FlowMatchEulerDiscreteScheduler,
        *,
        image_size: int,
        latent_scale: float = 1.0,
        latent_shift: float = 0.0,
        flow_grid: str = "sd3",
    ) -> None:
        super().__init__()
        check_parts(autoencoder, denoiser, scheduler, image_size, latent_scale, latent_shift)
        if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            check_flow_grid_style(flow_grid, "flow_grid")
        elif flow_grid != "sd3":
            raise InvalidInput(f"flow_grid={flow_grid!r} was given but the scheduler is a DDPMScheduler (VP path); "
                               "it applies to flow-matching models only")
        self.autoencoder = autoencoder
        self.denoiser = denoiser
        self.scheduler = scheduler
        self._latent_scale = float(latent_scale)
        self._latent_shift = float(latent_shift)
        self._image_size = image_size
        self.severity_encoders = nn.ModuleDict()
        #: dtype of ``torch.autocast`` around the networks, ``None`` = off (see :meth:`set_runtime`).
        self.autocast_dtype: torch.dtype | None = None
        self.memory_format: torch.memory_format = torch.contiguous_format
        #: task → free-form dict saved in ``severity_encoders/<task>/config.json``.
        self.severity_metadata: dict[str, dict[str, Any]] = {}
        #: Hyper-parameters tuned for this model, as the JSON table saved in ``model_index.json``
        #: (``{"solver_defaults": ..., "flash_defaults": ..., "baseline_defaults": ...}``). The bundle
        #: only carries it: :mod:`flash_wrap.tuning` reads, validates and writes it, and owns which
        #: value a solver uses.
        self.tuned_values: dict[str, Any] = {}
        #: where :attr:`tuned_values` came from, for error messages (the index file of a loaded bundle)
        self.tuned_source = "the model's tuned values"
        self._flow_grid = flow_grid
        betas, alphas_cumprod = self._schedule(next(denoiser.parameters()).device)
        self.register_buffer("_betas", betas, persistent=False)
        self.register_buffer("_alphas_cumprod", alphas_cumprod, persistent=False)

    def _schedule(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.path == "flow":  # no discrete training schedule: empty placeholders that follow the device
            empty = torch.zeros(0, device=device)
            return empty, empty
        return schedule_tensors(self.scheduler, device)

    def _apply(self, fn: Any, recurse: bool = True) -> LatentDiffusion:
        super()._apply(fn, recurse)
        # The schedule stays float32 whatever dtype the networks are cast to: recompute it
        # rather than round-trip it through float16.
        self._betas, self._alphas_cumprod = self._schedule(self._betas.device)
        return self

    def _vp_only(self, name: str) -> None:
        if self.path == "flow":
            raise InvalidInput(f"{name}: this is a flow-matching model (FlowMatchEulerDiscreteScheduler), which has no "
                               "discrete DDPM schedule; use model.flow_sigmas(steps) or a solver's sampler tables "
                               "(sampler.snr, sampler.sqrt_alpha_bar) instead")

    @property
    def betas(self) -> torch.Tensor:
        """``(T,)`` float32 β_t of the DDPM schedule; VP models only (flow models raise, saying what to use)."""
        self._vp_only("betas")
        return self._betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``(T,)`` float32 ᾱ_t of the DDPM schedule; VP models only (flow models raise, saying what to use)."""
        self._vp_only("alphas_cumprod")
        return self._alphas_cumprod

    @property
    def path(self) -> str:
        """``"vp"`` (DDPM schedule) or ``"flow"`` (rectified flow, ALGORITHMS.md §12)."""
        return "flow" if isinstance(self.scheduler, FlowMatchEulerDiscreteScheduler) else "vp"

    @property
    def flow_grid(self) -> str | None:
        """Flow models: the σ grid style, ``"sd3"`` or ``"flux"`` (:mod:`~flash_wrap.models.flow_grid`); ``None`` for VP models."""
        return self._flow_grid if self.path == "flow" else None

    def image_seq_len(self) -> int:
        """The token count of one latent, for dynamic shifting: the denoiser's own
        ``image_seq_len(h, w)`` if it defines one (FLUX packs 2×2 patches: ``(h//2)·(w//2)``), else ``h·w``."""
        _, h, w = self.latent_shape
        own = getattr(self.denoiser, "image_seq_len", None)
        return int(own(h, w)) if callable(own) else h * w

    def flow_sigmas(self, steps: int) -> torch.Tensor:
        """``(steps,)`` float64 σ's, decreasing, σ_0 = 1 at the top, as diffusers' scheduler computes them for
        ``steps`` Euler steps in this bundle's :attr:`flow_grid` style (``mu`` from :meth:`image_seq_len`
        when dynamic shifting is on). Flow models only."""
        if self.path != "flow":
            raise InvalidInput("flow_sigmas: this is a VP (DDPM) model; its grid comes from alphas_cumprod")
        return flow_sigmas(self.scheduler, steps, self._flow_grid, self.image_seq_len())

    # -- shapes and placement ------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def latent_scale(self) -> float:
        """``scale`` in ``z = (raw − shift) · scale`` (fixed at construction)."""
        return self._latent_scale

    @property
    def latent_shift(self) -> float:
        return self._latent_shift

    @property
    def latent_channels(self) -> int:
        return self.autoencoder.latent_channels

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one latent."""
        side = self._image_size // self.autoencoder.downsample_factor
        return (self.latent_channels, side, side)

    @property
    def prediction_type(self) -> str:
        """What the denoiser network predicts: "epsilon", "v_prediction" or "sample" (the
        scheduler's ``prediction_type``), or "velocity" on a flow model; :meth:`predict` converts it."""
        return "velocity" if self.path == "flow" else str(self.scheduler.config.prediction_type)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    def _check_device(self, x: torch.Tensor, name: str) -> None:
        if x.device != self.device:
            raise InvalidInput(f"{name} is on {x.device} but the model is on {self.device}; move one of them first")

    def _check_latents(self, latents: object, name: str = "latents") -> torch.Tensor:
        latents = check_tensor(latents, name)
        if latents.dim() != 4 or tuple(latents.shape[1:]) != self.latent_shape:
            want = ", ".join(map(str, self.latent_shape))
            raise InvalidInput(f"{name} must have shape (B, {want}), got {tuple(latents.shape)}")
        self._check_device(latents, name)
        return latents

    # -- runtime options (GPU path) ---------------------------------------------------------
    def set_runtime(
        self,
        *,
        autocast: torch.dtype | str | None = None,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        channels_last: bool = False,
    ) -> LatentDiffusion:
        """Speed and memory options; none changes what is computed beyond float rounding.

        Args:
            autocast: run the networks under ``torch.autocast`` in this dtype ("fp16"/"bf16",
                or a torch dtype; ``None``/"fp32": off). Weights, latents, the schedule and every
                update stay float32. bf16 covers the denoiser and the decoder; fp16 only the
                denoiser, because gradients through the decoder (Latent-DPS) can overflow in fp16.
            gradient_checkpointing: recompute UNet and decoder activations during the
                data-consistency backward pass instead of storing them (less memory, about one
                extra forward pass of time).
            compile: ``torch.compile`` the denoiser and the decoder in place (first calls are slow).
            channels_last: store the denoiser's and the autoencoder's convolution weights, and feed
                them activations, in NHWC order; about 20 % faster per Latent-DPS step on CPU
                (oneDNN) and usually on GPU. Outputs of :meth:`decode` and :meth:`predict_noise`
                keep the standard layout (gradients flowing back to their inputs may be NHWC).
        Returns ``self``.
        """
        names = {"fp32": None, "float32": None, "fp16": torch.float16, "float16": torch.float16,
                 "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
        if isinstance(autocast, str):
            if autocast not in names:
                raise InvalidInput(f"autocast must be one of {sorted(names)} or a torch dtype, got {autocast!r}")
            autocast = names[autocast]
        if autocast not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise InvalidInput(f"autocast dtype must be float16 or bfloat16, got {autocast}")
        self.autocast_dtype = None if autocast == torch.float32 else autocast
        network = self.denoiser.unet if isinstance(self.denoiser, Denoiser) else self.denoiser.transformer
        for module in (network, self.autoencoder):
            for sub in module.modules():
                if hasattr(sub, "gradient_checkpointing") and isinstance(sub.gradient_checkpointing, bool):
                    # diffusers blocks read ``_gradient_checkpointing_func``; TAEF2 reads only the flag
                    sub._gradient_checkpointing_func = _checkpoint
                    sub.gradient_checkpointing = gradient_checkpointing
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for module in (network, self.autoencoder):
            module.to(memory_format=self.memory_format)  # type: ignore[call-overload]  # torch's stubs omit memory_format
        if compile:
            network.compile()
            self.autoencoder.compile()
        return self

    def _autocast(self, part: str) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype
        if dtype is None or (part == "decoder" and dtype == torch.float16):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # -- the three maps --------------------------------------------------------------------
    def encode(self, images: torch.Tensor, *, estimate: bool = False) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] → scaled latents ``(B, *latent_shape)``
        (deterministic: VQ pre-quantization, KL posterior mean; differentiable).

        ``estimate=True`` accepts images on the [0, 1] *scale* that may leave it, such as unclamped
        decoder outputs that solvers re-encode (PSLD/GML-DPS gluing, ReSample's pixel solve);
        only NaN/inf are rejected then.
        """
        check_images(images, "images", size=self._image_size, value_range=None if estimate else (0.0, 1.0))
        self._check_device(images, "images")
        raw = self.autoencoder.encode(images.to(self.dtype))
        return ((raw - self.latent_shift) * self.latent_scale).to(images.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, *latent_shape)`` → images ``(B, 3, H, W)`` on the [0, 1] scale,
        unclamped and differentiable (VQ: straight-through quantization)."""
        self._check_latents(latents)
        raw = latents.to(self.dtype) / self.latent_scale + self.latent_shift
        with self._autocast("decoder"):
            images = self.autoencoder.decode(raw.contiguous(memory_format=self.memory_format))
        return images.to(latents.dtype).contiguous()

    def predict_noise(self, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """ε_θ(z_t, t): :meth:`predict`'s ``eps`` (see there for the arguments)."""
        return self.predict(latents, timesteps).eps

    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor) -> Prediction:
        """One denoiser evaluation as ``Prediction(eps, z0)``: noisy scaled latents ``(B, *latent_shape)``
        on the VP path → predicted noise ε̂ and clean latents ẑ₀, same shape and dtype.

        VP models: integer ``timesteps`` ``(B,)`` (or a scalar) in ``[0, T)``; a v- or x₀-predicting
        network's output is converted to ε (ALGORITHMS.md §11), ẑ₀ is Tweedie's estimate. Flow models:
        float timesteps ``σ·T`` in ``(0, T]``; the VP state ``x`` becomes the flow state
        ``z = x·√((1−σ)²+σ²)``, the network predicts ``u`` at ``(z, σ·T)``, and ``ε = z + (1−σ)·u``,
        ``ẑ₀ = z − σ·u`` (§12), finite at σ = 1."""
        self._check_latents(latents)
        flow = self.path == "flow"
        if not isinstance(timesteps, torch.Tensor) or timesteps.is_complex() or timesteps.is_floating_point() != flow:
            got = timesteps.dtype if isinstance(timesteps, torch.Tensor) else type(timesteps).__name__
            want = "a floating tensor σ·T (flow model)" if flow else "an integer tensor (torch.long)"
            raise WrongType(f"timesteps must be {want}, got {got}")
        batch = latents.shape[0]
        timesteps = timesteps.expand(batch) if timesteps.dim() == 0 else timesteps
        if tuple(timesteps.shape) != (batch,):
            raise InvalidInput(f"timesteps must have shape ({batch},) to match the latents, got {tuple(timesteps.shape)}")
        self._check_device(timesteps, "timesteps")
        total = self.num_train_timesteps
        if batch and flow and not bool(((timesteps > 0) & (timesteps <= total)).all()):
            raise InvalidInput(f"flow timesteps σ·T must lie in (0, {total}], got [{float(timesteps.min())}, "
                               f"{float(timesteps.max())}]")
        lo, hi = (int(timesteps.min()), int(timesteps.max())) if batch and not flow else (0, 0)
        if lo < 0 or hi >= total:
            raise InvalidInput(f"timesteps must lie in [0, {total}), got [{lo}, {hi}]")
        view = (-1, *([1] * (latents.dim() - 1)))
        if flow:
            sigma = timesteps.double() / total
            z = latents * flow_state_scale(sigma).to(latents.dtype).view(view)
            u = self._denoise(z, timesteps)
            eps, z0 = velocity_to_eps_z0(z, sigma.to(latents.dtype).view(view), u)
            return Prediction(eps, z0)
        eps = to_epsilon(self._denoise(latents, timesteps), latents, self._alphas_cumprod[timesteps],
                         self.prediction_type)
        a_bar = self._alphas_cumprod[timesteps].double()
        z0 = (latents - (1 - a_bar).sqrt().to(latents.dtype).view(view) * eps) / a_bar.sqrt().to(latents.dtype).view(view)
        return Prediction(eps, z0)

    def _denoise(self, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        with self._autocast("denoiser"):
            out = self.denoiser(latents.to(self.dtype).contiguous(memory_format=self.memory_format), timesteps)
        return out.to(latents.dtype).contiguous()

    # -- severity encoders -----------------------------------------------------------------
    def make_severity_encoder(self) -> SeverityEncoder:
        """A new, trainable severity encoder: a copy of the encoder path (weights copied, no
        parameter shared with this model) mapping [0, 1] images to scaled latents, plus a
        freshly initialised variance head."""
        backbone = LatentEncoder(self.autoencoder.make_encoder(), self.latent_scale, self.latent_shift)
        return SeverityEncoder(backbone, self.latent_channels).to(device=self.device, dtype=self.dtype)

    def severity_encoder(self, task: str) -> SeverityEncoder:
        """The severity encoder trained for ``task``; ``ValueError`` saying how to train one."""
        if task not in self.severity_encoders:
            has = ", ".join(self.severity_encoders) or "none"
            raise InvalidInput(
                f"no severity encoder for task {task!r} in this model (has: {has}); train one with: "
                f"flash-wrap train-severity --model MODEL --task {task} --data IMAGE_DIR [--save-to NEW_BUNDLE, "
                "required for a diffusers pipeline folder], or import a released one with flash-wrap import-encoder"
            )
        encoder = self.severity_encoders[task]
        assert isinstance(encoder, SeverityEncoder)
        return encoder

    def add_severity_encoder(
        self, task: str, encoder: SeverityEncoder, metadata: dict[str, Any] | None = None
    ) -> None:
        """Register (or replace) the severity encoder of ``task``, with optional metadata."""
        check_task_name(task)
        if not isinstance(encoder, SeverityEncoder):
            raise WrongType(f"encoder must be a SeverityEncoder, got {type(encoder).__name__}")
        if encoder.variance_head.in_channels != self.latent_channels:
            raise InvalidInput(
                f"the severity encoder works on {encoder.variance_head.in_channels} latent channels, "
                f"this model's latents have {self.latent_channels}"
            )
        self.severity_encoders[task] = encoder
        self.severity_metadata[task] = dict(metadata or {})

    def adopt_severity_encoders(self, source: LatentDiffusion, tasks: list[str], *, origin: str = "source") -> None:
        """Use ``source``'s severity encoders for ``tasks`` as they are (moved to this model's
        device and dtype), e.g. a diffusers pipeline folder with the encoders of a bundle trained
        from it. Refused (``ValueError``, nothing adopted) unless ``source`` has each task and the
        same latent space, autoencoder weights included (:mod:`~flash_wrap.models.latent_space`)."""
        check_encoder_source(self, source, tasks, origin=origin, weights=True)
        for task in tasks:
            encoder = source.severity_encoder(task).to(device=self.device, dtype=self.dtype)
            self.add_severity_encoder(task, encoder, {**source.severity_metadata.get(task, {}), "adopted_from": origin})

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write the bundle as a folder: ``model_index.json``, ``autoencoder/``, ``unet/``,
        ``scheduler/`` and ``severity_encoders/<task>/`` (safetensors + JSON only)."""
        save_bundle(self, Path(path))

    def save_severity_encoder(
        self, path: str | Path, task: str, metadata: dict[str, Any] | None = None
    ) -> None:
        """Write only ``task``'s severity encoder into the existing bundle folder ``path`` and
        list it in ``model_index.json``; ``metadata`` (if given) replaces the task's metadata."""
        self.severity_encoder(task)
        if metadata is not None:
            self.severity_metadata[task] = dict(metadata)
        save_severity(self, Path(path), task)

    def save_tuned_values(self, path: str | Path) -> None:
        """Write only :attr:`tuned_values` into the ``model_index.json`` of the existing bundle folder
        ``path`` (written to a temporary file, then renamed into place)."""
        save_tuned_values(Path(path), self.tuned_values)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
        image_size: int | None = None, prompt: str | None = None, conditioning: torch.Tensor | None = None,
        variant: str | None = None, latent_scale: float | None = None, latent_shift: float | None = None,
        guidance: float | None = None,
    ) -> LatentDiffusion:
        """Load a model from a local folder (never the network): a flash-wrap bundle, ``"demo"`` (the
        demo bundle shipped in the package), or a diffusers pipeline folder (``LDMPipeline``,
        ``StableDiffusionPipeline`` 1.x/2.x, ...; told apart by ``model_index.json``'s
        ``_class_name``). Returned in eval mode with frozen parameters.

        Args:
            device, dtype: where and in which precision the model is returned.
            image_size, prompt, conditioning, variant, latent_scale, latent_shift, guidance: pipeline
                folders only (see :func:`flash_wrap.models.pipeline.load_pipeline`; SD3/FLUX folders take
                image_size, prompt, variant and, FLUX, guidance); a bundle records its own.

        Raises ``FileNotFoundError`` for a missing folder or file, ``ValueError`` for a corrupt
        safetensors file, an unsupported model family, or a severity encoder that does not fit."""
        if folder_kind(path) == "pipeline":
            from .pipeline import load_pipeline

            model = load_pipeline(cls, path, image_size=image_size, prompt=prompt, conditioning=conditioning,
                                  variant=variant, latent_scale=latent_scale, latent_shift=latent_shift,
                                  guidance=guidance)
        else:
            given = [n for n, v in (("image_size", image_size), ("prompt", prompt), ("conditioning", conditioning),
                                    ("variant", variant), ("latent_scale", latent_scale),
                                    ("latent_shift", latent_shift), ("guidance", guidance)) if v is not None]
            if given:
                raise InvalidInput(f"{', '.join(given)}: only for diffusers pipeline folders; the bundle {path} "
                                 "records its own (re-create it from its pipeline folder to change them)")
            model = load_bundle(cls, path)
        model.requires_grad_(False).eval()
        return model.to(device=device, dtype=dtype) if device is not None or dtype is not None else model

    @classmethod
    def from_diffusers(
        cls,
        autoencoder: str | Path | nn.Module,
        unet: str | Path | nn.Module,
        *,
        image_size: int,
        scheduler: str | Path | DDPMScheduler | FlowMatchEulerDiscreteScheduler | None = None,
        latent_scale: float | None = None,
        latent_shift: float | None = None,
        empty_conditioning: torch.Tensor | None = None,
    ) -> LatentDiffusion:
        """Build a bundle from diffusers models or local diffusers component folders (never the
        network). For a whole pipeline folder use :meth:`from_pretrained`, which reads all of this
        from the folder.

        Args:
            autoencoder: a ``VQModel``, ``AutoencoderKL`` or ``AutoencoderTiny`` (or one of our
                adapters, e.g. TAEF2), or a folder saved by ``save_pretrained`` (the class is read
                from its ``config.json``; safetensors weights only).
            unet: a ``UNet2DModel`` or ``UNet2DConditionModel`` (which needs ``empty_conditioning``
                unless its folder holds one), or a folder holding one.
            image_size: side of the square images the model works on.
            scheduler: a ``DDPMScheduler`` or ``FlowMatchEulerDiscreteScheduler``, or a folder with the
                ``scheduler_config.json`` of any DDPM-family scheduler (its training betas and prediction
                type are kept) or of a flow-matching one (a rectified-flow model, "sd3"-style σ grid;
                options flash-wrap cannot reproduce are refused). Default the
                LDM schedule (:func:`ldm_scheduler`), allowed only with a ``UNet2DModel``: a Stable
                Diffusion UNet was trained with another schedule.
            latent_scale, latent_shift: ``z = (raw − shift) · scale``; default the LDM convention for a
                VQ autoencoder (1, 0) and the autoencoder config's ``scaling_factor`` /
                ``shift_factor`` otherwise (SD v1: 0.18215).
            empty_conditioning: the fixed conditioning ``(1, L, D)`` of a ``UNet2DConditionModel``
                (for Stable Diffusion the text encoder's embedding of ``""``; never assumed zeros).

        Returned in eval mode with frozen parameters; add severity encoders with
        ``flash-wrap train-severity`` after ``save_pretrained``.
        """
        if isinstance(autoencoder, nn.Module):
            ae = autoencoder if isinstance(autoencoder, Autoencoder) else autoencoder_from_diffusers(autoencoder)
        else:
            ae = Autoencoder.from_pretrained(_model_folder(autoencoder, "autoencoder"))
        if isinstance(unet, nn.Module):
            denoiser = Denoiser(unet, empty_conditioning)
        else:
            denoiser = Denoiser.from_pretrained(_model_folder(unet, "unet"), empty_conditioning=empty_conditioning)
        if scheduler is None:
            if denoiser.kind != "unet2d":
                raise InvalidInput("scheduler: a UNet2DConditionModel (Stable Diffusion) was not trained with the LDM "
                                 "schedule that is the default here; pass its scheduler folder, or load the whole "
                                 "pipeline folder with LatentDiffusion.from_pretrained(PIPELINE_DIR)")
            scheduler = ldm_scheduler()
        elif not isinstance(scheduler, (DDPMScheduler, FlowMatchEulerDiscreteScheduler)):
            file = Path(scheduler) / "scheduler_config.json"
            if not file.is_file():
                raise NotFound(f"scheduler: no scheduler_config.json in {scheduler}")
            entries = read_json(file)
            flow = entries.get("_class_name") == "FlowMatchEulerDiscreteScheduler"
            scheduler = (flow_schedule_from_config if flow else ddpm_schedule_from_config)(entries, str(file))
        config = getattr(getattr(ae, "model", None), "config", {})
        if latent_scale is None:
            latent_scale = 1.0 if ae.kind in ("vq", "taef2") else float(config.get("scaling_factor") or 1.0)
        if latent_shift is None:
            latent_shift = 0.0 if ae.kind in ("vq", "taef2") else float(config.get("shift_factor") or 0.0)
        model = cls(ae, denoiser, scheduler, image_size=image_size, latent_scale=latent_scale,
                    latent_shift=latent_shift)
        return model.requires_grad_(False).eval()
