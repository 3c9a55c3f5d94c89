"""Flow-matching transformers (SD3, FLUX) as latent denoisers with one fixed conditioning (ALGORITHMS.md §12).

Each wrapper has the surface of :class:`~flash_wrap.models.denoiser.Denoiser`: ``kind``,
``in_channels``, ``out_channels``, ``forward(latents, timesteps)``, ``save_pretrained`` and
``from_pretrained``. ``forward`` takes unpacked scaled latents ``z_σ (B, C, h, w)`` (C = 16) and
float timesteps ``(B,)`` = σ·1000 (σ ∈ [0, 1], the scheduler's ``num_train_timesteps`` is 1000) and
returns the transformer's raw velocity ``u = ε − z₀`` ``(B, C, h, w)``, called exactly as its
diffusers pipeline calls it:

* SD3 (``SD3Transformer2DModel``): the timestep σ·1000 as is, the latents as is;
* FLUX (``FluxTransformer2DModel``): the timestep divided by 1000, the latents packed 2×2 into
  ``(B, h/2 · w/2, 4C)`` tokens with image ids ``(h/2 · w/2, 3)`` = (0, row, column), text ids zeros
  ``(L, 3)``, and for guidance-distilled models (``guidance_embeds``) the guidance value.

The conditioning (the empty prompt's T5/CLIP hidden states ``(1, L, D)`` and pooled projections
``(1, P)``) is held as buffers and expanded to the batch. Saved in the transformer's folder as
:data:`FLOW_CONDITIONING_FILE` beside diffusers' own ``config.json`` and safetensors weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import FluxTransformer2DModel, ModelMixin, SD3Transformer2DModel
from torch import nn

from ..errors import InvalidInput, NotFound, WrongType
from ._io import build_from_folder, load_tensors, read_json, read_metadata, save_tensors

#: File holding the fixed conditioning (and FLUX's guidance value), inside the transformer folder.
FLOW_CONDITIONING_FILE = "flow_conditioning.safetensors"
#: The guidance value FluxPipeline uses by default (``guidance_scale=3.5``).
FLUX_DEFAULT_GUIDANCE = 3.5
#: Both pipelines feed the transformer σ·1000; FLUX's divides by this constant again.
_TIMESTEP_SCALE = 1000.0


def _check_tensor(value: object, name: str, dims: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != dims or value.shape[0] != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        want = "(1, L, D)" if dims == 3 else "(1, P)"
        raise InvalidInput(f"{name} must be a tensor of shape {want}, got {shape}")
    if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
        raise InvalidInput(f"{name} must hold finite floating-point values")
    return value.detach().clone()


class FlowTransformerDenoiser(nn.Module):
    """Common part of :class:`SD3Denoiser` and :class:`FluxDenoiser`: the transformer, the fixed
    conditioning buffers, input checks and the folder layout.

    Args:
        transformer: the diffusers transformer.
        encoder_hidden_states: ``(1, L, joint_attention_dim)``, the prompt's text hidden states.
        pooled_projections: ``(1, pooled_projection_dim)``, the prompt's pooled text embedding.
        conditioning_source: how the conditioning was made (e.g. ``'text encoders, prompt ""'``).
    """

    kind: ClassVar[str]
    transformer_class: ClassVar[type[ModelMixin]]
    encoder_hidden_states: torch.Tensor  # registered buffers, declared for the type checker
    pooled_projections: torch.Tensor

    def __init__(self, transformer: ModelMixin, encoder_hidden_states: torch.Tensor, pooled_projections: torch.Tensor,
                 *, conditioning_source: str | None = None) -> None:
        super().__init__()
        if not isinstance(transformer, self.transformer_class):
            raise WrongType(f"{type(self).__name__} wraps a {self.transformer_class.__name__}, "
                            f"got {type(transformer).__name__}")
        self.transformer = transformer
        hidden = _check_tensor(encoder_hidden_states, "encoder_hidden_states", 3)
        pooled = _check_tensor(pooled_projections, "pooled_projections", 2)
        config = transformer.config
        if hidden.shape[-1] != config.joint_attention_dim:
            raise InvalidInput(f"encoder_hidden_states has width {hidden.shape[-1]}, the transformer's "
                               f"joint_attention_dim is {config.joint_attention_dim}")
        if pooled.shape[-1] != config.pooled_projection_dim:
            raise InvalidInput(f"pooled_projections has width {pooled.shape[-1]}, the transformer's "
                               f"pooled_projection_dim is {config.pooled_projection_dim}")
        self.register_buffer("encoder_hidden_states", hidden)
        self.register_buffer("pooled_projections", pooled)
        self.conditioning_source = conditioning_source or "given"

    @property
    def in_channels(self) -> int:
        """Channels of the unpacked latents the denoiser takes."""
        return self.out_channels

    @property
    def out_channels(self) -> int:
        """Channels of the unpacked latents (and velocity) it returns (16 for SD3 and FLUX)."""
        raise NotImplementedError

    @property
    def patch(self) -> int:
        """Latent pixels per token side (SD3: the transformer's ``patch_size``; FLUX: 2, the packing)."""
        raise NotImplementedError

    def image_seq_len(self, h: int, w: int) -> int:
        """Image tokens of an ``h × w`` latent, ``(h // patch) · (w // patch)``: the count the
        pipelines' dynamic shifting of the σ grid reads (``mu``)."""
        return (int(h) // self.patch) * (int(w) // self.patch)

    def _check_inputs(self, latents: torch.Tensor, timesteps: torch.Tensor) -> None:
        if not isinstance(latents, torch.Tensor) or latents.dim() != 4 or latents.shape[1] != self.out_channels:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise InvalidInput(f"{self.kind}: latents must be (B, {self.out_channels}, h, w), got {shape}")
        h, w = latents.shape[-2:]
        if h % self.patch or w % self.patch:
            raise InvalidInput(f"{self.kind}: latent side {h}×{w} is not a multiple of {self.patch} (the transformer's "
                               "patches); use an image size divisible by the autoencoder factor × the patch")
        if not isinstance(timesteps, torch.Tensor) or timesteps.shape != (latents.shape[0],):
            shape = tuple(timesteps.shape) if isinstance(timesteps, torch.Tensor) else type(timesteps).__name__
            raise InvalidInput(f"{self.kind}: timesteps must be ({latents.shape[0]},) = σ·1000 per latent, got {shape}")
        if not timesteps.is_floating_point():
            raise InvalidInput(f"{self.kind}: timesteps must be float σ·1000 (flow models take continuous times), "
                               f"got {timesteps.dtype}")

    def _conditioning(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder_hidden_states.expand(batch, -1, -1), self.pooled_projections.expand(batch, -1)

    def _extra_metadata(self) -> dict[str, str]:
        return {}

    def save_pretrained(self, path: str | Path) -> None:
        """diffusers ``save_pretrained`` of the transformer (safetensors) plus
        :data:`FLOW_CONDITIONING_FILE` (the conditioning tensors; kind, source and FLUX's guidance
        in its header)."""
        path = Path(path)
        self.transformer.save_pretrained(str(path), safe_serialization=True)
        save_tensors({"encoder_hidden_states": self.encoder_hidden_states, "pooled_projections": self.pooled_projections},
                     path / FLOW_CONDITIONING_FILE,
                     metadata={"kind": self.kind, "source": self.conditioning_source, **self._extra_metadata()})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, variant: str | None = None) -> FlowTransformerDenoiser:
        """Load a folder written by :meth:`save_pretrained` (local files only); called on the base
        class it picks the wrapper from the folder's ``config.json``."""
        path = Path(path)
        name = read_json(path / "config.json").get("_class_name")
        wrapper = FLOW_DENOISERS.get(str(name))
        if wrapper is None or (cls is not FlowTransformerDenoiser and wrapper is not cls):
            want = cls.transformer_class.__name__ if cls is not FlowTransformerDenoiser else " or ".join(FLOW_DENOISERS)
            raise InvalidInput(f"{path / 'config.json'} names class {name!r}; expected {want}")
        file = path / FLOW_CONDITIONING_FILE
        if not file.is_file():
            raise NotFound(f"{path} holds a {name} but no {FLOW_CONDITIONING_FILE} (its fixed conditioning); "
                           "load the pipeline folder with flash_wrap.models.pipeline.load_flow_pipeline to compute it")
        tensors, metadata = load_tensors(file), read_metadata(file)
        missing = [k for k in ("encoder_hidden_states", "pooled_projections") if k not in tensors]
        if missing:
            raise InvalidInput(f"{file} has no tensor {missing[0]!r}")
        if metadata.get("kind", wrapper.kind) != wrapper.kind:
            raise InvalidInput(f"{file} was written for a {metadata['kind']!r} denoiser, the folder holds a {wrapper.kind}")
        transformer = build_from_folder(wrapper.transformer_class, path, variant=variant)
        return wrapper._build(transformer, tensors["encoder_hidden_states"], tensors["pooled_projections"], metadata)

    @classmethod
    def _build(cls, transformer: ModelMixin, hidden: torch.Tensor, pooled: torch.Tensor,
               metadata: dict[str, str]) -> FlowTransformerDenoiser:
        return cls(transformer, hidden, pooled, conditioning_source=metadata.get("source"))


class SD3Denoiser(FlowTransformerDenoiser):
    """``SD3Transformer2DModel`` called as ``StableDiffusion3Pipeline`` calls it, without CFG."""

    kind = "sd3-transformer"
    transformer_class = SD3Transformer2DModel

    def __init__(self, transformer: SD3Transformer2DModel, encoder_hidden_states: torch.Tensor,
                 pooled_projections: torch.Tensor, *, conditioning_source: str | None = None) -> None:
        super().__init__(transformer, encoder_hidden_states, pooled_projections, conditioning_source=conditioning_source)
        if transformer.config.in_channels != transformer.config.out_channels:
            raise InvalidInput(f"{self.kind}: the transformer takes {transformer.config.in_channels} channels and "
                               f"predicts {transformer.config.out_channels}; flash-wrap needs the same count")

    @property
    def out_channels(self) -> int:
        return int(self.transformer.config.out_channels)

    @property
    def patch(self) -> int:
        return int(self.transformer.config.patch_size)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Args:
            latents: ``z_σ (B, 16, h, w)``, scaled latents; ``h / patch_size`` at most the
                transformer's ``pos_embed_max_size``.
            timesteps: ``(B,)`` float σ·1000.
        Returns:
            velocity ``u (B, 16, h, w)``."""
        self._check_inputs(latents, timesteps)
        limit = self.transformer.config.pos_embed_max_size
        if limit is not None and max(latents.shape[-2:]) // self.patch > limit:
            raise InvalidInput(f"{self.kind}: latent side {max(latents.shape[-2:])} exceeds the transformer's positional "
                               f"table ({limit} patches of {self.patch}); use a smaller image size")
        hidden, pooled = self._conditioning(latents.shape[0])
        return self.transformer(hidden_states=latents, timestep=timesteps, encoder_hidden_states=hidden,
                                pooled_projections=pooled, return_dict=False)[0]


class FluxDenoiser(FlowTransformerDenoiser):
    """``FluxTransformer2DModel`` called as ``FluxPipeline`` calls it (2×2 packing, ids, guidance).

    Args:
        guidance: the distilled guidance value of a ``guidance_embeds`` transformer (default the
            pipeline's 3.5); must be ``None`` for a transformer without guidance embedding.
    """

    kind = "flux-transformer"
    transformer_class = FluxTransformer2DModel
    text_ids: torch.Tensor

    def __init__(self, transformer: FluxTransformer2DModel, encoder_hidden_states: torch.Tensor,
                 pooled_projections: torch.Tensor, *, guidance: float | None = None,
                 conditioning_source: str | None = None) -> None:
        super().__init__(transformer, encoder_hidden_states, pooled_projections, conditioning_source=conditioning_source)
        if transformer.config.in_channels % 4:
            raise InvalidInput(f"{self.kind}: the transformer takes {transformer.config.in_channels} channels per token, "
                               "not 4 × the latent channels of 2×2 packing")
        if (transformer.config.out_channels or transformer.config.in_channels) != transformer.config.in_channels:
            raise InvalidInput(f"{self.kind}: the transformer predicts {transformer.config.out_channels} channels per "
                               f"token from {transformer.config.in_channels}; flash-wrap needs the same count")
        # the pipeline's text ids: zeros (L, 3), fixed with the conditioning's length
        self.register_buffer("text_ids", torch.zeros(self.encoder_hidden_states.shape[1], 3), persistent=False)
        self._guidance: float | None = None
        if transformer.config.guidance_embeds:
            self.guidance = FLUX_DEFAULT_GUIDANCE if guidance is None else guidance
        elif guidance is not None:
            raise InvalidInput(f"{self.kind}: guidance={guidance!r} given, but the transformer has no guidance "
                               "embedding (guidance_embeds is false)")

    @property
    def guidance(self) -> float | None:
        """The guidance value fed to a guidance-distilled transformer (``None`` without one)."""
        return self._guidance

    @guidance.setter
    def guidance(self, value: float) -> None:
        if not self.transformer.config.guidance_embeds:
            raise InvalidInput(f"{self.kind}: the transformer has no guidance embedding; guidance cannot be set")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(f"{self.kind}: guidance must be a finite number (FluxPipeline's default 3.5), got {value!r}")
        self._guidance = float(value)

    @property
    def out_channels(self) -> int:
        return int(self.transformer.config.in_channels) // 4

    @property
    def patch(self) -> int:
        return 2

    def _extra_metadata(self) -> dict[str, str]:
        return {} if self._guidance is None else {"guidance": repr(self._guidance)}

    @classmethod
    def _build(cls, transformer: ModelMixin, hidden: torch.Tensor, pooled: torch.Tensor,
               metadata: dict[str, str]) -> FlowTransformerDenoiser:
        guidance = metadata.get("guidance")
        try:
            value = None if guidance is None else float(guidance)
        except ValueError:
            raise InvalidInput(f"{FLOW_CONDITIONING_FILE}: guidance {guidance!r} is not a number") from None
        assert isinstance(transformer, FluxTransformer2DModel)
        return cls(transformer, hidden, pooled, guidance=value, conditioning_source=metadata.get("source"))

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` → ``(B, h/2 · w/2, 4C)`` tokens, FluxPipeline's packing."""
        b, c, h, w = latents.shape
        return latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), 4 * c)

    def unpack(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``(B, h/2 · w/2, 4C)`` → ``(B, C, h, w)``, the inverse of :meth:`pack`."""
        b, _, channels = tokens.shape
        c = channels // 4
        return tokens.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    @staticmethod
    def image_ids(rows: int, columns: int, *, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(rows · columns, 3)``: (0, row, column) per token, row-major (FluxPipeline's image ids)."""
        ids = torch.zeros(rows, columns, 3, device=device, dtype=dtype)
        ids[..., 1] = torch.arange(rows, device=device, dtype=dtype)[:, None]
        ids[..., 2] = torch.arange(columns, device=device, dtype=dtype)[None, :]
        return ids.reshape(rows * columns, 3)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Args:
            latents: ``z_σ (B, 16, h, w)``, unpacked scaled latents, ``h`` and ``w`` even.
            timesteps: ``(B,)`` float σ·1000.
        Returns:
            velocity ``u (B, 16, h, w)``, unpacked."""
        self._check_inputs(latents, timesteps)
        b, _, h, w = latents.shape
        hidden, pooled = self._conditioning(b)
        guidance = None
        if self._guidance is not None:
            guidance = torch.full((b,), self._guidance, device=latents.device, dtype=torch.float32)
        tokens = self.transformer(
            hidden_states=self.pack(latents), timestep=timesteps.to(latents.dtype) / _TIMESTEP_SCALE, guidance=guidance,
            pooled_projections=pooled, encoder_hidden_states=hidden, txt_ids=self.text_ids.to(latents.dtype),
            img_ids=self.image_ids(h // 2, w // 2, device=latents.device, dtype=latents.dtype), return_dict=False,
        )[0]
        return self.unpack(tokens, h, w)


#: Wrapper per transformer class (the ``_class_name`` of the transformer's ``config.json``).
FLOW_DENOISERS: dict[str, type[FlowTransformerDenoiser]] = {
    "SD3Transformer2DModel": SD3Denoiser, "FluxTransformer2DModel": FluxDenoiser,
}
#: Wrapper per ``kind`` (as a bundle records it).
FLOW_DENOISER_KINDS: dict[str, type[FlowTransformerDenoiser]] = {w.kind: w for w in FLOW_DENOISERS.values()}
