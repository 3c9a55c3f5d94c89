"""The latent denoiser: a diffusers UNet called unconditionally (one fixed conditioning)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from ..errors import InvalidInput, NotFound, WrongType
from ._io import build_from_folder, load_tensors, read_json, read_metadata, save_tensors

#: File holding the fixed conditioning of a ``UNet2DConditionModel``, inside the unet folder.
EMPTY_CONDITIONING_FILE = "empty_conditioning.safetensors"
#: UNet config entries that mean an extra input the bundle cannot reproduce (SDXL's pooled text and
#: size embeddings, class labels, image projections).
_EXTRA_INPUTS = ("addition_embed_type", "class_embed_type", "num_class_embeds", "encoder_hid_dim_type")
_HOW_TO_CONDITION = (
    "load the pipeline folder with its text encoder and tokenizer (LatentDiffusion.from_pretrained(PIPELINE_DIR) "
    "encodes the empty prompt), or pass empty_conditioning= explicitly (shape (1, L, cross_attention_dim))"
)


def check_unet_config(config: dict, where: str) -> None:
    """Refuse, from its config alone, a UNet this denoiser cannot drive: other input and output
    channel counts (inpainting and upscaling UNets take extra channels) or inputs beyond the
    noisy latent, the timestep and one fixed text conditioning."""
    if config.get("in_channels") != config.get("out_channels"):
        raise InvalidInput(
            f"{where}: the UNet takes {config.get('in_channels')} channels and predicts {config.get('out_channels')}; "
            "flash-wrap needs a denoiser that predicts over its own input channels (inpainting or upscaling UNets "
            "with extra input channels are not supported)"
        )
    extra = [f"{key}={config[key]!r}" for key in _EXTRA_INPUTS if config.get(key) is not None]
    if extra:
        raise InvalidInput(
            f"{where}: the UNet needs inputs besides the text conditioning ({', '.join(extra)}), e.g. SDXL's pooled "
            "text and image-size embeddings, which a flash-wrap bundle cannot reproduce; supported: UNet2DModel, and "
            "UNet2DConditionModel with cross-attention only (Stable Diffusion 1.x/2.x)"
        )


class Denoiser(nn.Module):
    """The network ``f(z_t, t)`` over latents ``(B, C, h, w)``; what it predicts (ε, v or x̂₀) is
    the scheduler's ``prediction_type`` and is converted to ε by
    :meth:`flash_wrap.models.LatentDiffusion.predict` (a flow model's velocity: ALGORITHMS.md §12).

    Wraps a ``UNet2DModel``, or a ``UNet2DConditionModel`` used unconditionally: it always sees the
    same ``empty_conditioning`` ``(1, L, D)`` (a buffer) expanded to the batch: for Stable
    Diffusion the text encoder's embedding of the empty prompt, as the pipeline computes it. A
    conditional UNet without a conditioning is an error (zeros are never assumed).

    Args:
        unet: the diffusers UNet.
        empty_conditioning: ``(1, L, cross_attention_dim)``, required for a ``UNet2DConditionModel``.
        conditioning_source: how the conditioning was made, kept with it (e.g. ``'text encoder, prompt ""'``).
    """

    empty_conditioning: torch.Tensor | None  # a registered buffer, declared for the type checker

    def __init__(
        self, unet: UNet2DModel | UNet2DConditionModel, empty_conditioning: torch.Tensor | None = None,
        *, conditioning_source: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(unet, (UNet2DModel, UNet2DConditionModel)):
            raise WrongType(f"unet must be a diffusers UNet2DModel or UNet2DConditionModel, got {type(unet).__name__}")
        check_unet_config(dict(unet.config), type(unet).__name__)
        self.unet = unet
        if isinstance(unet, UNet2DConditionModel):
            empty_conditioning = self._check_conditioning(unet, empty_conditioning)
        elif empty_conditioning is not None:
            raise InvalidInput("empty_conditioning is only used with a UNet2DConditionModel")
        self.register_buffer("empty_conditioning", empty_conditioning)
        self.conditioning_source = (conditioning_source or "given") if empty_conditioning is not None else None

    @staticmethod
    def _check_conditioning(unet: UNet2DConditionModel, cond: torch.Tensor | None) -> torch.Tensor:
        dim = unet.config.cross_attention_dim
        if cond is None:
            raise InvalidInput(f"a UNet2DConditionModel needs its conditioning, and zeros are not the empty prompt: "
                             f"{_HOW_TO_CONDITION}")
        if not isinstance(cond, torch.Tensor) or cond.dim() != 3 or cond.shape[0] != 1:
            shape = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise InvalidInput(f"empty_conditioning must be a tensor of shape (1, L, D), got {shape}")
        if isinstance(dim, int) and cond.shape[-1] != dim:
            raise InvalidInput(f"empty_conditioning has width {cond.shape[-1]}, the UNet's cross_attention_dim is {dim}")
        if not cond.is_floating_point() or not bool(torch.isfinite(cond).all()):
            raise InvalidInput("empty_conditioning must hold finite floating-point values")
        return cond.detach().clone()

    @property
    def kind(self) -> str:
        """``"unet2d"`` or ``"unet2d-condition"``."""
        return "unet2d-condition" if self.empty_conditioning is not None else "unet2d"

    @property
    def in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.unet.config.out_channels)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Args:
            latents: noisy scaled latents ``z_t`` ``(B, C, h, w)``.
            timesteps: ``(B,)`` integer diffusion steps in ``[0, T)``, or float ``σ·T`` in ``(0, T]`` for a
                flow model.
        Returns:
            the network's raw output ``(B, C, h, w)`` (ε, v or x̂₀, see the class docstring).
        """
        if self.empty_conditioning is None:
            return self.unet(latents, timesteps).sample
        cond = self.empty_conditioning.expand(latents.shape[0], -1, -1)
        return self.unet(latents, timesteps, encoder_hidden_states=cond).sample

    def save_pretrained(self, path: str | Path) -> None:
        """diffusers ``save_pretrained`` (safetensors), plus the conditioning if any."""
        path = Path(path)
        self.unet.save_pretrained(str(path), safe_serialization=True)
        if self.empty_conditioning is not None:
            save_tensors({"empty_conditioning": self.empty_conditioning}, path / EMPTY_CONDITIONING_FILE,
                         metadata={"source": self.conditioning_source or "given"})

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, empty_conditioning: torch.Tensor | None = None, variant: str | None = None,
        conditioning_source: str | None = None,
    ) -> Denoiser:
        """Load a UNet from a local folder (never the network): one written by :meth:`save_pretrained`,
        or a diffusers ``unet/`` folder. A conditional UNet takes ``empty_conditioning`` if given,
        else the folder's ``empty_conditioning.safetensors``; with neither it is an error."""
        path = Path(path)
        config = read_json(path / "config.json")
        name = config.get("_class_name")
        classes = {"UNet2DModel": UNet2DModel, "UNet2DConditionModel": UNet2DConditionModel}
        if name not in classes:
            raise InvalidInput(f"{path / 'config.json'} names class {name!r}; supported: {', '.join(classes)}")
        check_unet_config(config, str(path / "config.json"))
        file = path / EMPTY_CONDITIONING_FILE
        if name == "UNet2DConditionModel" and empty_conditioning is None:
            if not file.is_file():
                raise NotFound(f"{path} holds a UNet2DConditionModel and no {EMPTY_CONDITIONING_FILE}: "
                                        f"{_HOW_TO_CONDITION}")
            tensors = load_tensors(file)
            if "empty_conditioning" not in tensors:
                raise InvalidInput(f"{file} has no tensor 'empty_conditioning'")
            empty_conditioning = tensors["empty_conditioning"]
            conditioning_source = read_metadata(file).get("source", "given")
        unet = build_from_folder(classes[name], path, variant=variant)
        return cls(unet, empty_conditioning, conditioning_source=conditioning_source)
