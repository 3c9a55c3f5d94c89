"""Autoencoder adapters: one interface over diffusers VQ/KL/tiny autoencoders and TAEF2.

Every adapter takes and returns images ``(B, 3, H, W)`` in [0, 1]. The adapters are the only
code that knows an autoencoder's native range: diffusers ``VQModel``, ``AutoencoderKL`` and
``AutoencoderTiny`` work in [-1, 1], TAEF2 in [0, 1]. Latents here are *raw* (unscaled); the
latent scale lives in :class:`flash_wrap.models.LatentDiffusion`. diffusers' own
``scaling_factor`` config entry is ignored.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, ModelMixin, VQModel
from torch import nn

from ..errors import InvalidInput, WrongType
from ._io import build_from_folder, load_strict, load_tensors, read_json, save_tensors, write_json
from .taef2 import TAEF2, TAEF2_LICENSE


class EncoderPath(nn.Module):
    """[0, 1] images ``(B, 3, H, W)`` → raw latents ``(B, C, h, w)``: optional rescale to
    [-1, 1], the encoder, an optional 1×1 ``quant_conv``, and optionally the first ``keep``
    channels (a KL posterior's mean)."""

    def __init__(
        self, encoder: nn.Module, quant_conv: nn.Module | None = None, *, signed_input: bool, keep: int | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.quant_conv = quant_conv
        self.signed_input = signed_input
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x * 2 - 1 if self.signed_input else x)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        return h if self.keep is None else h[:, : self.keep]


class Autoencoder(nn.Module, ABC):
    """An image autoencoder seen through [0, 1] images and raw latents.

    Attributes:
        kind: short name stored in bundle configs ("vq", "kl", "tiny", "taef2").
        native_class: the ``_class_name`` written to the adapter's ``config.json``.
    """

    kind: ClassVar[str]
    native_class: ClassVar[str]

    @property
    @abstractmethod
    def latent_channels(self) -> int:
        """Channels ``C`` of the raw latent."""

    @property
    @abstractmethod
    def downsample_factor(self) -> int:
        """Spatial factor ``f``: an ``H×W`` image has an ``H/f × W/f`` latent."""

    @abstractmethod
    def _encoder_path(self) -> EncoderPath:
        """The encode computation, sharing this autoencoder's parameters."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents ``(B, C, h, w)`` → images ``(B, 3, h·f, w·f)`` on the [0, 1] scale.

        Not clamped and differentiable in ``z`` (VQ quantization passes a straight-through
        gradient)."""

    @abstractmethod
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` plus safetensors weights into the folder ``path``."""

    @classmethod
    @abstractmethod
    def _load(cls, path: Path, variant: str | None = None) -> Autoencoder: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] → raw latents ``(B, C, H/f, W/f)``, deterministic
        (VQ: before quantization; KL: posterior mean)."""
        return self._encoder_path()(x)

    def make_encoder(self) -> nn.Module:
        """A new module computing :meth:`encode`, with its own deep-copied trainable parameters
        (nothing shared with this autoencoder, no decoder)."""
        return copy.deepcopy(self._encoder_path()).requires_grad_(True)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, variant: str | None = None) -> Autoencoder:
        """Load an adapter from a local folder; the adapter class comes from ``config.json``.
        ``variant``: a diffusers weights variant such as ``"fp16"`` (diffusers autoencoders only)."""
        path = Path(path)
        name = read_json(path / "config.json").get("_class_name")
        adapter = _ADAPTERS.get(str(name))
        if adapter is None:
            known = ", ".join(_ADAPTERS)
            raise InvalidInput(f"{path / 'config.json'} names class {name!r}; supported autoencoders: {known}")
        if cls is not Autoencoder and adapter is not cls:
            raise InvalidInput(f"{path} holds a {name}, not a {cls.native_class}")
        return adapter._load(path, variant)


class _DiffusersAutoencoder(Autoencoder):
    """A diffusers autoencoder working in [-1, 1]."""

    model_class: ClassVar[type[ModelMixin]]

    def __init__(self, model: ModelMixin) -> None:
        super().__init__()
        if not isinstance(model, self.model_class):
            raise WrongType(f"{type(self).__name__} wraps a {self.native_class}, got {type(model).__name__}")
        self.model = model

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.latent_channels)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (self.model.decode(z).sample + 1) / 2

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(str(path), safe_serialization=True)

    @classmethod
    def _load(cls, path: Path, variant: str | None = None) -> Autoencoder:
        return cls(build_from_folder(cls.model_class, path, variant=variant))


class VQAutoencoder(_DiffusersAutoencoder):
    """diffusers ``VQModel`` (e.g. LDM VQ-f4). Latents are the pre-quantization ``quant_conv``
    output; :meth:`decode` quantizes (nearest code, straight-through gradient)."""

    kind = "vq"
    native_class = "VQModel"
    model_class = VQModel

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.vq_embed_dim or self.model.config.latent_channels)

    def _encoder_path(self) -> EncoderPath:
        return EncoderPath(self.model.encoder, self.model.quant_conv, signed_input=True)


class KLAutoencoder(_DiffusersAutoencoder):
    """diffusers ``AutoencoderKL``; latents are the posterior mean."""

    kind = "kl"
    native_class = "AutoencoderKL"
    model_class = AutoencoderKL

    def _encoder_path(self) -> EncoderPath:
        return EncoderPath(self.model.encoder, self.model.quant_conv, signed_input=True, keep=self.latent_channels)


class TinyAutoencoder(_DiffusersAutoencoder):
    """diffusers ``AutoencoderTiny`` (TAESD family); latents are its encoder's output."""

    kind = "tiny"
    native_class = "AutoencoderTiny"
    model_class = AutoencoderTiny

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.model.config.encoder_block_out_channels) - 1)

    def _encoder_path(self) -> EncoderPath:
        return EncoderPath(self.model.encoder, signed_input=True)


class TAEF2Autoencoder(Autoencoder):
    """Our :class:`TAEF2`, which works in [0, 1] natively. Saved as ``config.json`` +
    ``model.safetensors``."""

    kind = "taef2"
    native_class = "TAEF2"

    def __init__(self, model: TAEF2) -> None:
        super().__init__()
        if not isinstance(model, TAEF2):
            raise WrongType(f"TAEF2Autoencoder wraps a TAEF2, got {type(model).__name__}")
        self.model = model

    @property
    def latent_channels(self) -> int:
        return self.model.latent_channels

    @property
    def downsample_factor(self) -> int:
        return self.model.downsample_factor

    def _encoder_path(self) -> EncoderPath:
        return EncoderPath(self.model.encoder, signed_input=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "config.json", {"_class_name": self.native_class, **self.model.config})
        save_tensors(self.model.state_dict(), path / "model.safetensors")
        (path / "LICENSE").write_text(TAEF2_LICENSE)

    @classmethod
    def _load(cls, path: Path, variant: str | None = None) -> Autoencoder:
        config = read_json(path / "config.json")
        config.pop("_class_name", None)
        try:
            model = TAEF2(**config)
        except (TypeError, ValueError, RuntimeError) as err:  # e.g. negative channel counts
            raise InvalidInput(f"{path / 'config.json'} is not a usable TAEF2 config: {err}") from None
        file = path / "model.safetensors"
        load_strict(model, load_tensors(file), str(file))
        return cls(model)


_ADAPTERS: dict[str, type[Autoencoder]] = {
    a.native_class: a for a in (VQAutoencoder, KLAutoencoder, TinyAutoencoder, TAEF2Autoencoder)
}
AUTOENCODER_KINDS: dict[str, type[Autoencoder]] = {a.kind: a for a in _ADAPTERS.values()}


def autoencoder_from_diffusers(model: nn.Module) -> Autoencoder:
    """Wrap a diffusers ``VQModel``, ``AutoencoderKL`` or ``AutoencoderTiny`` in its adapter."""
    for adapter in (VQAutoencoder, KLAutoencoder, TinyAutoencoder):
        if isinstance(model, adapter.model_class):
            return adapter(model)
    raise WrongType(
        f"unsupported autoencoder {type(model).__name__}; supported diffusers classes: "
        "VQModel, AutoencoderKL, AutoencoderTiny (wrap a TAEF2 in TAEF2Autoencoder)"
    )
