"""The latent denoiser: a diffusers UNet predicting the noise ε, called unconditionally."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from ._io import build_from_folder, check_folder, load_tensors, read_json, save_tensors

#: File holding the fixed conditioning of a ``UNet2DConditionModel``, inside the unet folder.
EMPTY_CONDITIONING_FILE = "empty_conditioning.safetensors"


class Denoiser(nn.Module):
    """ε-prediction network ``eps = f(z_t, t)`` over latents ``(B, C, h, w)``.

    Wraps a ``UNet2DModel``, or a ``UNet2DConditionModel`` used unconditionally: it always sees
    the same ``empty_conditioning`` ``(1, L, D)`` (a buffer, default zeros of shape
    ``(1, 1, cross_attention_dim)``) expanded to the batch.
    """

    def __init__(
        self, unet: UNet2DModel | UNet2DConditionModel, empty_conditioning: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if not isinstance(unet, (UNet2DModel, UNet2DConditionModel)):
            raise TypeError(f"unet must be a diffusers UNet2DModel or UNet2DConditionModel, got {type(unet).__name__}")
        if unet.config.in_channels != unet.config.out_channels:
            raise ValueError(
                f"the UNet must predict ε with as many channels as it takes: in_channels "
                f"{unet.config.in_channels} != out_channels {unet.config.out_channels}"
            )
        self.unet = unet
        if isinstance(unet, UNet2DConditionModel):
            empty_conditioning = self._check_conditioning(unet, empty_conditioning)
        elif empty_conditioning is not None:
            raise ValueError("empty_conditioning is only used with a UNet2DConditionModel")
        self.register_buffer("empty_conditioning", empty_conditioning)

    @staticmethod
    def _check_conditioning(unet: UNet2DConditionModel, cond: torch.Tensor | None) -> torch.Tensor:
        dim = unet.config.cross_attention_dim
        if cond is None:
            if not isinstance(dim, int):
                raise ValueError(f"cross_attention_dim is {dim!r}: pass empty_conditioning explicitly")
            return torch.zeros(1, 1, dim)
        if not isinstance(cond, torch.Tensor) or cond.dim() != 3 or cond.shape[0] != 1:
            shape = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"empty_conditioning must be a tensor of shape (1, L, D), got {shape}")
        if isinstance(dim, int) and cond.shape[-1] != dim:
            raise ValueError(f"empty_conditioning has width {cond.shape[-1]}, the UNet's cross_attention_dim is {dim}")
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
            timesteps: ``(B,)`` integer diffusion steps in ``[0, T)``.
        Returns:
            predicted noise ``(B, C, h, w)``.
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
            save_tensors({"empty_conditioning": self.empty_conditioning}, path / EMPTY_CONDITIONING_FILE)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Denoiser:
        """Load from a local folder written by :meth:`save_pretrained` (never the network)."""
        path = Path(path)
        name = read_json(path / "config.json").get("_class_name")
        classes = {"UNet2DModel": UNet2DModel, "UNet2DConditionModel": UNet2DConditionModel}
        if name not in classes:
            raise ValueError(f"{path / 'config.json'} names class {name!r}; supported: {', '.join(classes)}")
        check_folder(path)
        unet = build_from_folder(classes[name], path)
        cond = None
        if name == "UNet2DConditionModel":
            file = path / EMPTY_CONDITIONING_FILE
            tensors = load_tensors(file)
            if "empty_conditioning" not in tensors:
                raise ValueError(f"{file} has no tensor 'empty_conditioning'")
            cond = tensors["empty_conditioning"]
        return cls(unet, cond)
